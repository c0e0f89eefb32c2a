//! One socket's session: a single task that reads, writes and watches the token clock.
//!
//! The session owns the socket and nothing else. It hands its user actor a
//! [`ConnHandle`](tickethub_actors::connection::ConnHandle) (the sending end of its bounded
//! outbound queue) and forwards the client's frames. A socket costs one task, two small
//! buffers and a queue; there is no actor per socket.
//!
//! fastwebsockets' frame reader is not cancel-safe, so the read future is created once per
//! frame and polled to completion across loop turns, while writes go to the other half.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fastwebsockets::upgrade::UpgradeFut;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite};
use futures::future::Either;
use futures::FutureExt;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tickethub_actors::connection::{
    ConnHandle, ConnId, ConnShared, ConnectionMsg, Outbound, Replay, Update,
};
use tickethub_actors::domain::{Role, User, UserId};
use tickethub_actors::ports::{NotificationFilter, Page};
use tickethub_actors::ticket_domain::TicketId;
use tickethub_actors::user::{CommandOutcome, Resume, UserCommand, UserMsg};
use tokio::io::{ReadHalf, WriteHalf};

use ractor::ActorRef;
use tickethub_actors::domain::ProjectId;
use tickethub_actors::room::{PresenceCommand, RoomMsg, RoomSocket};

use super::batch::{Batched, Cork};
use super::close::CloseCode;
use super::dialect::Dialect;
use super::protocol::{ClientFrame, ServerFrame};
use super::{SocketSlot, WsSettings};
use crate::auth::{AuthError, TokenError, TokenType, Verified};
use crate::state::AppState;
use crate::wire;

type Io = TokioIo<hyper::upgrade::Upgraded>;
type Writer = WebSocketWrite<Batched<WriteHalf<Io>>>;

/// Counted for every client frame: the handle is looked up once.
static FRAMES_IN: std::sync::LazyLock<metrics::Counter> =
    std::sync::LazyLock::new(|| metrics::counter!("tickethub_frames_in_total"));

/// How long a socket may take, at shutdown, to write what is queued before its 1001.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// How long a closing socket waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long before a token's expiry the client is warned.
const EXPIRY_WARNING: i64 = 30;

/// Everything a session starts with.
pub struct Session {
    /// Shared handles.
    pub state: AppState,
    /// The pending upgrade.
    pub upgrade: UpgradeFut,
    /// The authenticated user and token, or why there is none.
    pub user: Result<(User, Verified), TokenError>,
    /// Where the user's notification stream stood, if the handshake read it with the user.
    pub hint: Option<tickethub_actors::user::CursorHint>,
    /// When the handshake began reading its user (see [`tickethub_actors::Hub::ended_since`]).
    pub authenticated_at: std::time::Instant,
    /// The `last_seq` the client asked to resume from.
    pub last_seq: Option<i64>,
    /// The frame shapes this socket speaks.
    pub dialect: Dialect,
    /// A project socket (board or presence) instead of `/ws/notifications/`; `Err` when the
    /// user may not see the project (closed with 4003, no actor started).
    pub room: Option<Result<(ProjectId, RoomSocket), ()>>,
    /// A presence socket that takes joins and leaves as `presence_diff` frames.
    pub diff: bool,
    /// The connection's place among the hub's open connections (`--max-connections`), held
    /// for as long as the socket is open.
    pub connection: Option<crate::serve::ConnectionSlot>,
    /// An echo socket for the conformance suite (`--features conformance` only): the same
    /// read path, frame handling, limits and close logic, with text echoed back.
    pub echo: bool,
}

/// The actor that owns a socket.
enum Owner {
    User(ActorRef<UserMsg>),
    Room(ActorRef<RoomMsg>, RoomSocket, ProjectId),
    /// Nobody: the socket echoes (conformance testing only). It holds its own queue's sending
    /// end, which would otherwise close with the opening.
    Echo {
        _queue: Box<ConnHandle>,
    },
}

enum Flow {
    Continue,
    /// Send this close frame, then wait briefly for the client's.
    Close(CloseCode, &'static str),
    /// Drop the connection without a close frame: a write was abandoned half-way.
    Drop,
}

impl Session {
    /// Runs the socket until it closes: the handshake's end, then the socket's life. The
    /// two are separate futures, so that nothing of the opening (the session's arguments, the
    /// user's profile, the upgrade) stays in the task while the socket lives.
    pub fn run(self: Box<Self>) -> impl Future<Output = ()> + Send {
        Box::pin(self.open()).then(|open| match open {
            Some(open) => Either::Left(open.serve()),
            None => Either::Right(std::future::ready(())),
        })
    }
}

/// An open socket, attached and greeted.
struct Open {
    read: WebSocketRead<ReadHalf<Io>>,
    write: Writer,
    rx: Outbound,
    shared: Arc<ConnShared>,
    cork: Cork,
    ctx: Ctx,
    /// How the greeting went.
    outcome: Result<Flow, WebSocketError>,
    ws_settings: Arc<WsSettings>,
    /// The user's place among their sockets, given back when the socket ends.
    slot: SocketSlot,
    /// The connection's place among the hub's connections.
    connection: Option<crate::serve::ConnectionSlot>,
}

impl Open {
    /// Serves the socket until it closes. Not an `async fn`: the fields are moved into the
    /// future one by one, where an `async fn` would keep its argument beside them.
    fn serve(self) -> impl Future<Output = ()> + Send {
        let Open {
            mut read,
            mut write,
            mut rx,
            shared,
            cork,
            mut ctx,
            mut outcome,
            ws_settings,
            slot,
            connection,
        } = self;
        async move {
            let mut noop = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
            // What the socket waits on besides its frames and its queue lives as long as the
            // socket: each wake-up polls them, none is registered again per message.
            let mut kicked = pin!(shared.until_kicked());
            let mut shutdown = pin!(ws_settings.shutdown.cancelled());
            let mut clock_at = ctx.token_clock_at();
            // Boxed: a timer entry is 112 bytes, and in the task it would take each socket's
            // task past its allocation size class (1,024 bytes) into the next (1,280).
            let mut token_clock = Box::pin(tokio::time::sleep_until(instant_at(clock_at)));
            'frames: while let Ok(Flow::Continue) = outcome {
                let frame_fut = read.read_frame(&mut noop);
                let mut frame_fut = pin!(frame_fut);
                let frame = loop {
                    if ctx.token_clock_at() != clock_at {
                        clock_at = ctx.token_clock_at();
                        token_clock.as_mut().reset(instant_at(clock_at));
                    }
                    tokio::select! {
                        biased;
                        reason = &mut kicked => {
                            outcome = Ok(Flow::Close(reason.into(), "closed by the hub"));
                            break 'frames;
                        }
                        _ = &mut shutdown => {
                            // What is queued already goes out before the 1001, bounded: a client
                            // that stopped reading cannot hold the shutdown.
                            let flushed = Box::pin(tokio::time::timeout(SHUTDOWN_FLUSH, async {
                                while let Some(msg) = rx.try_recv() {
                                    match Box::pin(outbound(Some(msg), &mut rx, &mut write, &shared, ctx.dialect, &cork, kicked.as_mut())).await {
                                        Ok(Flow::Continue) => {}
                                        other => return other,
                                    }
                                }
                                Ok(Flow::Close(CloseCode::GoingAway, "server shutting down"))
                            }))
                            .await;
                            outcome = flushed.unwrap_or(Ok(Flow::Drop));
                            break 'frames;
                        }
                        msg = rx.recv() => {
                            // Boxed too: the write of a replay is large, and only the socket
                            // writing needs it for the moment it writes.
                            outcome = Box::pin(outbound(msg, &mut rx, &mut write, &shared, ctx.dialect, &cork, kicked.as_mut())).await;
                            if !matches!(outcome, Ok(Flow::Continue)) {
                                break 'frames;
                            }
                        }
                        _ = &mut token_clock => {
                            outcome = Box::pin(ctx.on_token_clock(&mut write)).await;
                            if !matches!(outcome, Ok(Flow::Continue)) {
                                break 'frames;
                            }
                        }
                        frame = &mut frame_fut => break frame,
                    }
                };
                shared.touch();
                FRAMES_IN.increment(1);
                outcome = match frame {
                    // Boxed: client frames are rare next to pushes, and their handling (commands
                    // with database calls) would otherwise sit in every idle socket's state.
                    Ok(frame) => Box::pin(ctx.on_frame(frame, &mut write)).await,
                    Err(e) => read_error(e),
                };
            }
            // Nothing more is written to the socket but its close: it leaves its owner first.
            match &ctx.owner {
                Owner::User(actor) => {
                    // The actor records what this socket was sent. One that crashed cannot (its
                    // clean-up never ran): the socket records it itself, so that a client that
                    // neither acks nor sends `last_seq` is not sent it all again.
                    if actor.send_message(UserMsg::Detach(ctx.conn_id)).is_err() {
                        let sent = shared.sent_seq();
                        if sent > 0 {
                            if let Err(e) =
                                Box::pin(ctx.state.store.record_sent(&[(ctx.user_id, sent)])).await
                            {
                                tracing::warn!(user_id = ctx.user_id.0, error = %e, "cannot record sent seq");
                            }
                        }
                    }
                }
                Owner::Room(room, _, _) => {
                    let _ = room.send_message(RoomMsg::Leave(ctx.conn_id));
                }
                Owner::Echo { .. } => {}
            }
            if let Ok(Flow::Close(code, reason)) = outcome {
                // A failed connection (RFC 6455 §7.1.7: a protocol error, invalid data) is closed
                // at once after its close frame; otherwise the client's close is awaited briefly.
                let failed = matches!(code, CloseCode::ProtocolError | CloseCode::InvalidData);
                if close(&mut write, code, reason).await.is_ok()
                    && code != CloseCode::Normal
                    && !failed
                {
                    // Complete the closing handshake: wait briefly for the client's close frame,
                    // so that the TCP close does not reset frames the client has yet to read.
                    let _ = Box::pin(tokio::time::timeout(CLOSE_GRACE, async {
                        while let Ok(frame) = read.read_frame(&mut noop).await {
                            if frame.opcode == OpCode::Close {
                                break;
                            }
                        }
                    }))
                    .await;
                }
            }
            crate::telemetry::CONNECTIONS.open.decrement(1.0);
            tracing::debug!(
                user_id = ctx.user_id.0,
                conn = ctx.conn_id.0,
                "socket closed"
            );
            drop(slot);
            drop(connection);
        }
    }
}

/// The per-socket state the frame handlers work on.
struct Ctx {
    state: AppState,
    user_id: UserId,
    /// The user's role as the socket was opened (it decides `send_notification`).
    role: Role,
    token: Verified,
    conn_id: ConnId,
    warned: bool,
    /// The text message being received in fragments, if one is.
    fragments: Option<Vec<u8>>,
    dialect: Dialect,
    owner: Owner,
    /// This socket's command rate, if limited.
    commands: Option<crate::limits::CommandLimiter>,
    /// Frames refused in a row for the rate: past the burst, the socket is closed.
    refused: u32,
}

impl Ctx {
    /// When the token clock next needs attention: the warning, then the expiry.
    fn token_clock_at(&self) -> i64 {
        if self.warned {
            self.token.exp
        } else {
            self.token.exp - EXPIRY_WARNING
        }
    }

    async fn on_token_clock(&mut self, write: &mut Writer) -> Result<Flow, WebSocketError> {
        let left = self.token.exp - Utc::now().timestamp();
        if left <= 0 {
            return Ok(Flow::Close(CloseCode::Unauthorized, "Token is expired."));
        }
        if !self.warned {
            self.warned = true;
            send(
                write,
                &ServerFrame::TokenExpiring {
                    expires_in: left.min(EXPIRY_WARNING),
                },
            )
            .await?;
        }
        Ok(Flow::Continue)
    }

    async fn on_frame(
        &mut self,
        frame: Frame<'_>,
        write: &mut Writer,
    ) -> Result<Flow, WebSocketError> {
        match frame.opcode {
            // RFC 6455 §5.4: a new data frame inside a fragmented message, or a continuation
            // with no message to continue, fails the connection.
            OpCode::Text | OpCode::Binary if self.fragments.is_some() => Ok(Flow::Close(
                CloseCode::ProtocolError,
                "a new message inside a fragmented one",
            )),
            OpCode::Text if frame.fin => self.on_text(&frame.payload, write).await,
            OpCode::Text => {
                self.fragments = Some(frame.payload.to_vec());
                Ok(Flow::Continue)
            }
            OpCode::Continuation => match continue_message(
                &mut self.fragments,
                &frame.payload,
                frame.fin,
                self.state.ws.max_message_bytes,
            ) {
                Ok(Some(text)) => self.on_text(&text, write).await,
                Ok(None) => Ok(Flow::Continue),
                Err(flow) => Ok(flow),
            },
            OpCode::Binary => Ok(Flow::Close(
                CloseCode::Unsupported,
                "binary frames are not supported",
            )),
            OpCode::Close => Ok(close_reply(&frame.payload)),
            OpCode::Ping => {
                write
                    .write_frame(Frame::pong(Payload::Owned(frame.payload.to_vec())))
                    .await?;
                Ok(Flow::Continue)
            }
            // A control frame carries at most 125 bytes.
            OpCode::Pong if frame.payload.len() > 125 => Ok(Flow::Close(
                CloseCode::ProtocolError,
                "control frame too large",
            )),
            OpCode::Pong => Ok(Flow::Continue),
        }
    }

    async fn on_text(&mut self, text: &[u8], write: &mut Writer) -> Result<Flow, WebSocketError> {
        if let Owner::Echo { .. } = self.owner {
            write
                .write_frame(Frame::text(Payload::Borrowed(text)))
                .await?;
            return Ok(Flow::Continue);
        }
        if let Some(limiter) = &self.commands {
            if limiter.check().is_err() {
                self.refused += 1;
                metrics::counter!("tickethub_throttled_total", "limit" => "ws_commands")
                    .increment(1);
                if self.refused > self.state.limits.flood_after() {
                    return Ok(Flow::Close(CloseCode::Policy, "rate limit exceeded"));
                }
                send(
                    write,
                    &ServerFrame::Error {
                        code: "rate_limited",
                        message: "Too many messages; slow down.".into(),
                    },
                )
                .await?;
                return Ok(Flow::Continue);
            }
            self.refused = 0;
        }
        let frame = match ClientFrame::decode(text) {
            Ok(frame) => frame,
            Err(e) => {
                send(write, &e.to_frame()).await?;
                return Ok(Flow::Continue);
            }
        };
        if let Owner::Room(room, kind, project) = &self.owner {
            return self
                .on_room_frame(room.clone(), *kind, *project, frame, write)
                .await;
        }
        match frame {
            ClientFrame::Ping { timestamp } => {
                let timestamp = timestamp.unwrap_or_else(|| Utc::now().timestamp_millis().into());
                send(write, &ServerFrame::Pong { timestamp }).await?;
            }
            ClientFrame::RefreshToken { token } => self.refresh(&token, write).await?,
            ClientFrame::Ack { seq } => {
                // Acknowledgements have no answer; a failure is logged, and the client acks again.
                if let Err(e) = self
                    .state
                    .hub
                    .user_command(self.user_id, Some(self.conn_id), UserCommand::Ack(seq))
                    .await
                {
                    tracing::warn!(user_id = self.user_id.0, error = %e, "ack failed");
                }
            }
            other => {
                let reply = match self.command(other).await {
                    Ok(v) => v,
                    Err((code, message)) => {
                        serde_json::to_value(ServerFrame::Error { code, message })
                            .expect("error frames serialize")
                    }
                };
                send_value(write, &reply).await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// `refresh_token`: the socket runs on the new token from now on.
    async fn refresh(&mut self, token: &str, write: &mut Writer) -> Result<(), WebSocketError> {
        // A deactivated account's tokens no longer count, however fresh.
        let verified = self
            .state
            .auth
            .authenticate(&*self.state.store, token, TokenType::Access)
            .await;
        match verified {
            Ok((_, v)) if v.user_id == self.user_id => {
                self.token = v;
                self.warned = false;
                send(write, &ServerFrame::TokenRefreshed { expires_at: v.exp }).await?;
            }
            Ok(_) => {
                send(
                    write,
                    &ServerFrame::Error {
                        code: "invalid_token",
                        message: "The new token belongs to another user.".into(),
                    },
                )
                .await?;
            }
            Err(AuthError::Store(e)) => {
                tracing::warn!(user_id = self.user_id.0, error = %e, "token refresh failed");
                send(
                    write,
                    &ServerFrame::Error {
                        code: "unavailable",
                        message: "The database is unavailable; try again shortly.".into(),
                    },
                )
                .await?;
            }
            Err(AuthError::Token(e)) => {
                send(
                    write,
                    &ServerFrame::Error {
                        code: "invalid_token",
                        message: e.to_string(),
                    },
                )
                .await?;
            }
        }
        Ok(())
    }

    /// A frame on a project socket: pings and token refreshes as anywhere; presence sockets
    /// also say what their user looks at and types; nothing else is understood there.
    async fn on_room_frame(
        &mut self,
        room: ActorRef<RoomMsg>,
        kind: RoomSocket,
        project: ProjectId,
        frame: ClientFrame,
        write: &mut Writer,
    ) -> Result<Flow, WebSocketError> {
        let cmd = match frame {
            ClientFrame::Ping { timestamp } => {
                let timestamp = timestamp.unwrap_or_else(|| Utc::now().timestamp_millis().into());
                send(write, &ServerFrame::Pong { timestamp }).await?;
                return Ok(Flow::Continue);
            }
            ClientFrame::RefreshToken { token } => {
                self.refresh(&token, write).await?;
                return Ok(Flow::Continue);
            }
            ClientFrame::TicketViewing { ticket_id } if kind == RoomSocket::Presence => {
                PresenceCommand::Viewing(ticket_id.map(TicketId))
            }
            ClientFrame::UserTyping {
                ticket_id,
                is_typing,
            } if kind == RoomSocket::Presence => PresenceCommand::Typing {
                ticket_id: TicketId(ticket_id),
                is_typing,
            },
            _ => {
                send(
                    write,
                    &ServerFrame::Error {
                        code: "unknown_type",
                        message: match kind {
                            RoomSocket::Board => "The ticket stream takes only ping and refresh_token.".into(),
                            RoomSocket::Presence => "Presence sockets take ping, refresh_token, ticket_viewing and user_typing.".into(),
                        },
                    },
                )
                .await?;
                return Ok(Flow::Continue);
            }
        };
        let ticket = match cmd {
            PresenceCommand::Viewing(t) => t,
            PresenceCommand::Typing { ticket_id, .. } => Some(ticket_id),
        };
        if let Some(t) = ticket {
            // Checked here, on this socket's own time: the room only hears of tickets that are
            // in its project.
            let found = self
                .state
                .ws
                .ticket_projects
                .project_of(self.state.store.as_ref(), t)
                .await;
            let refusal = match found {
                Ok(Some(p)) if p == project => None,
                Ok(_) => Some(("not_found", format!("Ticket {t} is not in this project."))),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check a ticket's project");
                    Some((
                        "unavailable",
                        "The database is unavailable; try again shortly.".to_owned(),
                    ))
                }
            };
            if let Some((code, message)) = refusal {
                send(write, &ServerFrame::Error { code, message }).await?;
                return Ok(Flow::Continue);
            }
        }
        let _ = room.send_message(RoomMsg::Presence {
            conn: self.conn_id,
            cmd,
        });
        Ok(Flow::Continue)
    }
}

/// How a failed read ends the socket: a close frame for a frame the client got wrong, or the
/// error itself when the connection is gone.
fn read_error(e: WebSocketError) -> Result<Flow, WebSocketError> {
    match e {
        WebSocketError::FrameTooLarge => Ok(Flow::Close(CloseCode::TooBig, "message too big")),
        WebSocketError::InvalidUTF8 => Ok(Flow::Close(CloseCode::InvalidData, "invalid UTF-8")),
        // A frame that breaks RFC 6455 fails the connection with 1002.
        WebSocketError::ReservedBitsNotZero
        | WebSocketError::ControlFrameFragmented
        | WebSocketError::PingFrameTooLarge
        | WebSocketError::InvalidValue
        | WebSocketError::InvalidFragment
        | WebSocketError::InvalidContinuationFrame
        | WebSocketError::InvalidCloseFrame
        | WebSocketError::InvalidCloseCode => {
            Ok(Flow::Close(CloseCode::ProtocolError, "protocol error"))
        }
        e => {
            tracing::debug!(error = %e, "socket read ended");
            Err(e)
        }
    }
}

/// Adds a continuation frame to the text message being received in `fragments`: the whole
/// message once `fin` ends it, `None` while more is to come, or how the socket closes (no
/// message to continue, more than `max` bytes, not UTF-8).
fn continue_message(
    fragments: &mut Option<Vec<u8>>,
    payload: &[u8],
    fin: bool,
    max: usize,
) -> Result<Option<Vec<u8>>, Flow> {
    let Some(received) = fragments.as_mut() else {
        return Err(Flow::Close(
            CloseCode::ProtocolError,
            "a continuation frame with no message to continue",
        ));
    };
    if received.len() + payload.len() > max {
        return Err(Flow::Close(CloseCode::TooBig, "message too big"));
    }
    received.extend_from_slice(payload);
    if !fin {
        return Ok(None);
    }
    let text = fragments.take().unwrap_or_default();
    if std::str::from_utf8(&text).is_err() {
        return Err(Flow::Close(CloseCode::InvalidData, "invalid UTF-8"));
    }
    Ok(Some(text))
}

/// The answer to a client's close frame (RFC 6455 §5.5.1, §7.4): 1000 for a valid one, 1002 for
/// a malformed payload or a code a client must not send, 1007 for a reason that is not UTF-8.
fn close_reply(payload: &[u8]) -> Flow {
    let protocol = |why| Flow::Close(CloseCode::ProtocolError, why);
    match payload.len() {
        0 => return Flow::Close(CloseCode::Normal, ""),
        1 => return protocol("a close payload of one byte"),
        n if n > 125 => return protocol("control frame too large"),
        _ => {}
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
    if !allowed {
        return protocol("a close code a client must not send");
    }
    if std::str::from_utf8(&payload[2..]).is_err() {
        return Flow::Close(CloseCode::InvalidData, "invalid UTF-8");
    }
    Flow::Close(CloseCode::Normal, "")
}

use crate::timespan::instant_at;

mod commands;
mod open;
mod writer;

pub(crate) use writer::update_frame;
use writer::*;

#[cfg(test)]
mod tests;
