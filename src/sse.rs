//! `GET /sse/notifications/`: the notification stream as Server-Sent Events, for clients
//! whose network refuses WebSockets (a proxy that breaks upgrades) and for `EventSource`.
//!
//! A stream is a connection of its user actor like a socket: the same bounded outbound queue
//! (a reader that stops reading is a slow consumer and is ended), the same replay (from
//! `Last-Event-ID`, `?last_event_id=` for `EventSource`, which cannot set headers, or
//! `?last_seq=`), the same per-user cap, and it shows in the supervision tree among the user's
//! sockets. Each live notification is an event whose `id` is its seq and whose `data` is the
//! socket's frame in the connection's dialect; inbox changes are events named like the socket's
//! frames. Commands go through the REST API. Comments every [`HEARTBEAT`] keep proxies from
//! closing a quiet stream.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use tickethub_actors::connection::{
    ConnHandle, ConnId, ConnShared, ConnectionMsg, Disconnect, Outbound, Replay,
};
use tickethub_actors::domain::UserId;
use tickethub_actors::user::{Resume, UserMsg};
use tokio::sync::mpsc;

use crate::auth::{AuthError, TokenType};
use crate::http::error::ApiError;
use crate::http::error::ErrorBody;
use crate::state::AppState;
use crate::wire::dialect::Dialect;
use crate::ws::protocol::ServerFrame;

/// How often a quiet stream gets a comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// How long before a token's expiry the stream says so (`token_expiring`).
const EXPIRY_WARNING: i64 = 30;

/// Chunks waiting for the client beside the connection's queue.
const CHUNKS: usize = 16;

/// How long a stream may take, at shutdown, to write what is queued.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// The routes of this module.
pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(notifications))
}

#[derive(Deserialize, Default)]
struct SseQuery {
    token: Option<String>,
    last_event_id: Option<String>,
    last_seq: Option<String>,
    dialect: Option<String>,
}

/// The notification stream as Server-Sent Events (`text/event-stream`): `connection_established`,
/// the replay (`replay_truncated`, `notification` events with `replayed: true`, one
/// `replay_complete`), then each live notification as `id: <seq>`, `event: notification`,
/// `data: <the socket's frame>`; inbox changes as `notification_updated`,
/// `notifications_cleared`, `all_marked_read`; `token_expiring` 30 s before the token's `exp`;
/// and as the stream ends, `error` (`invalid_token`, `slow_consumer`, `revoked`) or
/// `shutdown`. Resume with `Last-Event-ID` (or `?last_event_id=`). The token: `Authorization:
/// Bearer`, or `?token=` (never logged).
#[utoipa::path(
    get,
    path = "/sse/notifications/",
    operation_id = "notifications_stream",
    tag = "notifications",
    params(
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "Resume after this seq."),
        ("last_event_id" = Option<i64>, Query, minimum = 0, description = "Resume after this seq (for `EventSource`, which cannot set headers)."),
        ("last_seq" = Option<i64>, Query, minimum = 0, description = "The same, named as on the socket."),
        ("dialect" = inline(Option<crate::wire::DialectName>), Query, description = "The frame shapes of `data` (default: the hub's `--ws-dialect`)."),
        ("token" = Option<String>, Query, description = "An access token, when no `Authorization` header can be sent."),
    ),
    responses(
        (status = 200, description = "The stream: one event per frame.", content_type = "text/event-stream", body = crate::wire::StreamEvent),
        (status = 400, description = "A resume point or dialect that is not valid.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 429, description = "The user holds as many sockets and streams as this node allows.", body = ErrorBody),
        (status = 503, description = "The hub cannot take the stream now.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn notifications(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match open(state, &headers, query).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// A resume point: a non-negative integer.
fn resume_point(value: &str, name: &str) -> Result<i64, ApiError> {
    match value.trim().parse::<i64>() {
        Ok(seq) if seq >= 0 => Ok(seq),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a non-negative integer."
        ))),
    }
}

async fn open(
    state: AppState,
    headers: &HeaderMap,
    query: Option<String>,
) -> Result<Response, ApiError> {
    let query: SseQuery = match query {
        None => SseQuery::default(),
        Some(q) => {
            let uri = format!("/?{q}")
                .parse()
                .map_err(|_| ApiError::bad_request("Invalid query."))?;
            axum::extract::Query::<SseQuery>::try_from_uri(&uri)
                .map(|axum::extract::Query(q)| q)
                .map_err(|e| ApiError::bad_request(format!("Invalid query - {}", e.body_text())))?
        }
    };
    let header_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("invalid"));
    // Each resume point given must be valid; the header wins, then `last_event_id`.
    let points = [
        header_id
            .map(|v| resume_point(v, "Last-Event-ID"))
            .transpose()?,
        query
            .last_event_id
            .as_deref()
            .map(|v| resume_point(v, "last_event_id"))
            .transpose()?,
        query
            .last_seq
            .as_deref()
            .map(|v| resume_point(v, "last_seq"))
            .transpose()?,
    ];
    let last_seq = points.into_iter().flatten().next();
    let dialect = match query.dialect.as_deref() {
        None => state.ws.dialect,
        Some(name) => Dialect::from_name(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "dialect must be one of {}.",
                Dialect::ALL.map(Dialect::name).join(", ")
            ))
        })?,
    };
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .or(query.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authentication credentials were not provided."))?;
    let claimed = state
        .auth
        .verify(&token, TokenType::Access)
        .await
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    let _admitted = state
        .ws
        .handshakes
        .acquire()
        .await
        .expect("the handshake semaphore is never closed");
    let authenticated_at = std::time::Instant::now();
    let (user, verified, hint) = match crate::ws::resolve_with_hint(&state, claimed).await {
        Ok(found) => found,
        Err(AuthError::Token(e)) => return Err(ApiError::unauthorized(e.to_string())),
        Err(AuthError::Store(e)) => {
            tracing::error!(error = %e, "user lookup failed for an event stream");
            return Err(ApiError::unavailable("The database is unavailable."));
        }
    };
    let slot = state.ws.take_slot(user.id).ok_or_else(|| {
        metrics::counter!("tickethub_throttled_total", "limit" => "sockets_per_user").increment(1);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sockets for this user.",
        )
    })?;
    let (conn, rx) = ConnHandle::new(
        ConnId(state.ws.next_conn_id.fetch_add(1, Ordering::Relaxed)),
        state.ws.outbound_queue,
        state.ws.outbound_queue_bytes,
    );
    let shared = conn.shared.clone();
    let conn_id = conn.id;
    let resume = match last_seq {
        Some(seq) => Resume::After(seq),
        None => Resume::Unacknowledged,
    };
    let attached = match state.hub.attach(user.id, conn, resume, hint).await {
        Ok(a) => a,
        Err(e) => {
            if state.hub.ended_since(user.id, authenticated_at) {
                return Err(ApiError::unauthorized("Token has been revoked."));
            }
            tracing::warn!(user_id = user.id.0, error = %e, "cannot attach an event stream");
            return Err(ApiError::unavailable("The hub cannot take the stream now."));
        }
    };
    crate::telemetry::CONNECTIONS.open.increment(1.0);
    crate::telemetry::CONNECTIONS.streams_open.increment(1.0);
    crate::telemetry::CONNECTIONS.total.increment(1);
    let hello = ServerFrame::ConnectionEstablished {
        message: format!("Connected successfully as {}", user.username),
        user_id: user.id.0,
        last_seq: attached.last_seq,
    }
    .to_json();
    let (out, body) = mpsc::channel::<Bytes>(CHUNKS);
    let stream = Stream {
        state: state.clone(),
        user_id: user.id,
        exp: verified.exp,
        conn_id,
        shared,
        rx,
        out,
        dialect,
        actor: attached.actor,
        revoked_since: authenticated_at,
        _slot: slot,
    };
    state.ws.sessions.spawn(stream.serve(hello));
    let body = futures::stream::unfold(body, |mut body| async move {
        body.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), body))
    });
    let mut response = Body::from_stream(body).into_response();
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    // nginx buffers responses unless told not to.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// One event: `id` (if any), `event`, and `data` on one line (JSON has no raw newlines).
pub fn event(name: &str, id: Option<i64>, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + name.len() + 32);
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn json_event(name: &str, value: &Value) -> Bytes {
    event(
        name,
        None,
        &serde_json::to_vec(value).expect("JSON values serialize"),
    )
}

/// The event a stream ends with, for the reason the hub ended it.
fn ending(reason: Disconnect) -> Option<Bytes> {
    let (name, code, message) = match reason {
        Disconnect::Shutdown => ("shutdown", "shutdown", "The hub is shutting down."),
        Disconnect::SlowConsumer => ("error", "slow_consumer", "The stream was not read in time."),
        Disconnect::Idle => ("error", "idle", "The stream was not read in time."),
        Disconnect::Deactivated => ("error", "revoked", "Token has been revoked."),
        Disconnect::Forbidden => ("error", "forbidden", "Not allowed."),
        // The user's actor restarted: the stream just ends, and the client resumes.
        Disconnect::ActorRestart => return None,
    };
    Some(json_event(
        name,
        &json!({ "type": name, "code": code, "message": message }),
    ))
}

/// Why a stream stopped writing.
enum End {
    /// End with this event (if any), then close.
    With(Option<Bytes>),
    /// The client went away.
    Gone,
}

/// An open stream: the task that turns its connection's queue into events.
struct Stream {
    state: AppState,
    user_id: UserId,
    exp: i64,
    conn_id: ConnId,
    shared: Arc<ConnShared>,
    rx: Outbound,
    out: mpsc::Sender<Bytes>,
    dialect: Dialect,
    actor: ractor::ActorRef<UserMsg>,
    revoked_since: std::time::Instant,
    _slot: crate::ws::SocketSlot,
}

impl Stream {
    async fn serve(mut self, hello: Vec<u8>) {
        let shared = self.shared.clone();
        let mut kicked = pin!(shared.until_kicked());
        let shutdown_token = self.state.ws.shutdown.clone();
        let mut shutdown = pin!(shutdown_token.cancelled());
        let mut warned = false;
        let exp = self.exp;
        let clock_at = move |warned: bool| {
            if warned {
                exp
            } else {
                exp - EXPIRY_WARNING
            }
        };
        let mut token_clock = pin!(tokio::time::sleep_until(instant_at(clock_at(false))));
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        let mut end = self
            .emit(
                event("connection_established", None, &hello),
                kicked.as_mut(),
            )
            .await
            .err();
        if self.state.hub.ended_since(self.user_id, self.revoked_since) {
            end = Some(End::With(ending(Disconnect::Deactivated)));
        }
        while end.is_none() {
            let step = tokio::select! {
                biased;
                reason = &mut kicked => Err(End::With(ending(reason))),
                _ = &mut shutdown => {
                    let flushed = tokio::time::timeout(SHUTDOWN_FLUSH, async {
                        while let Some(msg) = self.rx.try_recv() {
                            self.write(msg, kicked.as_mut()).await?;
                        }
                        Ok::<(), End>(())
                    })
                    .await;
                    match flushed {
                        Ok(Err(end)) => Err(end),
                        _ => Err(End::With(ending(Disconnect::Shutdown))),
                    }
                }
                _ = self.out.closed() => Err(End::Gone),
                msg = self.rx.recv() => match msg {
                    None => Err(End::With(None)),
                    Some(msg) => self.write(msg, kicked.as_mut()).await,
                },
                _ = &mut token_clock => {
                    if warned || exp - Utc::now().timestamp() <= 0 {
                        Err(End::With(Some(json_event(
                            "error",
                            &json!({"type": "error", "code": "invalid_token", "message": "Token is expired."}),
                        ))))
                    } else {
                        warned = true;
                        token_clock.as_mut().reset(instant_at(clock_at(true)));
                        let left = (exp - Utc::now().timestamp()).min(EXPIRY_WARNING);
                        self.emit(
                            json_event("token_expiring", &json!({"type": "token_expiring", "expires_in": left})),
                            kicked.as_mut(),
                        )
                        .await
                    }
                }
                _ = heartbeat.tick() => {
                    self.emit(Bytes::from_static(b": heartbeat\n\n"), kicked.as_mut()).await
                }
            };
            if let Err(e) = step {
                end = Some(e);
            }
        }
        if let Some(End::With(Some(last))) = end {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.out.send(last)).await;
        }
        // The stream leaves its actor, which records what it was sent.
        if self
            .actor
            .send_message(UserMsg::Detach(self.conn_id))
            .is_err()
        {
            let sent = self.shared.sent_seq();
            if sent > 0 {
                if let Err(e) = self.state.store.record_sent(&[(self.user_id, sent)]).await {
                    tracing::warn!(user_id = self.user_id.0, error = %e, "cannot record sent seq");
                }
            }
        }
        crate::telemetry::CONNECTIONS.open.decrement(1.0);
        crate::telemetry::CONNECTIONS.streams_open.decrement(1.0);
    }

    /// Hands a chunk to the response body; a client that reads again counts as heard from.
    /// Gives up if the hub kicks the stream while the client does not read.
    async fn emit(
        &self,
        chunk: Bytes,
        kicked: Pin<&mut impl Future<Output = Disconnect>>,
    ) -> Result<(), End> {
        tokio::select! {
            biased;
            reason = kicked => Err(End::With(ending(reason))),
            sent = self.out.send(chunk) => {
                sent.map_err(|_| End::Gone)?;
                metrics::counter!("tickethub_frames_out_total").increment(1);
                self.shared.touch();
                Ok(())
            }
        }
    }

    /// Writes one queued message as events.
    async fn write(
        &self,
        msg: ConnectionMsg,
        mut kicked: Pin<&mut impl Future<Output = Disconnect>>,
    ) -> Result<(), End> {
        let bytes = msg.estimated_bytes();
        match msg {
            ConnectionMsg::Ping => {
                self.emit(Bytes::from_static(b": ping\n\n"), kicked.as_mut())
                    .await?
            }
            ConnectionMsg::Close(reason) => return Err(End::With(ending(reason))),
            ConnectionMsg::Notification(n) => {
                let data = self.dialect.notification_bytes(&n, false);
                self.emit(event("notification", Some(n.seq), &data), kicked.as_mut())
                    .await?;
                self.shared.mark_sent(n.seq);
                metrics::counter!("tickethub_notifications_delivered_total", "replayed" => "false")
                    .increment(1);
            }
            ConnectionMsg::Replay(replay) => {
                let Replay {
                    notifications,
                    remaining,
                    last_seq,
                } = *replay;
                let mut chunk = Vec::new();
                if remaining > 0 {
                    chunk.extend_from_slice(&json_event(
                        "replay_truncated",
                        &json!({"type": "replay_truncated", "remaining": remaining}),
                    ));
                }
                for n in &notifications {
                    chunk.extend_from_slice(&event(
                        "notification",
                        Some(n.seq),
                        &self.dialect.notification_bytes(n, true),
                    ));
                }
                // The completion carries the resume point, so that a client that got nothing
                // new resumes after it.
                chunk.extend_from_slice(&event(
                    "replay_complete",
                    Some(last_seq),
                    &serde_json::to_vec(&json!({
                        "type": "replay_complete",
                        "count": notifications.len(),
                        "last_seq": last_seq,
                    }))
                    .expect("JSON values serialize"),
                ));
                self.emit(Bytes::from(chunk), kicked.as_mut()).await?;
                if let Some(newest) = notifications.iter().map(|n| n.seq).max() {
                    self.shared.mark_sent(newest);
                }
                metrics::counter!("tickethub_notifications_delivered_total", "replayed" => "true")
                    .increment(notifications.len() as u64);
            }
            ConnectionMsg::Updated(update) => {
                let frame = crate::ws::session::update_frame(*update);
                let name = frame["type"].as_str().unwrap_or("update").to_owned();
                self.emit(json_event(&name, &frame), kicked.as_mut())
                    .await?;
            }
            // A user's connection never gets room frames.
            ConnectionMsg::Room(_) => {}
        }
        self.shared.written(bytes);
        Ok(())
    }
}

use crate::timespan::instant_at;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed_as_the_standard_says() {
        assert_eq!(
            &event("notification", Some(42), br#"{"a":1}"#)[..],
            b"id: 42\nevent: notification\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            &event("replay_complete", None, b"{}")[..],
            b"event: replay_complete\ndata: {}\n\n"
        );
        let end = ending(Disconnect::SlowConsumer).unwrap();
        assert!(end.starts_with(b"event: error\ndata: {"), "{end:?}");
        assert!(String::from_utf8_lossy(&end).contains("\"code\":\"slow_consumer\""));
        assert!(ending(Disconnect::ActorRestart).is_none());
        assert!(
            String::from_utf8_lossy(&ending(Disconnect::Shutdown).unwrap())
                .starts_with("event: shutdown\n")
        );
    }

    #[test]
    fn resume_points_are_non_negative_integers() {
        assert_eq!(resume_point("0", "x").unwrap(), 0);
        assert_eq!(resume_point(" 17 ", "x").unwrap(), 17);
        for bad in ["-1", "x", "", "1.5", "99999999999999999999"] {
            let e = resume_point(bad, "Last-Event-ID").unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
