//! A user's notifications over the hub's WebSocket: connect, resume, acknowledge, renew the
//! token, reconnect with backoff, and stop when a refused token is given again.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::{token_expiry, Client, Event, InboxChange, Notification, TokenReason};

/// How a subscription starts.
#[derive(Clone, Debug)]
pub struct Subscribe {
    /// The seq the application has already seen: delivery resumes after it. Without it, the
    /// hub starts after the user's highest acknowledged seq.
    pub last_seq: Option<i64>,
    /// The first backoff ceiling (500 ms); it doubles per failed attempt.
    pub backoff_base: Duration,
    /// The largest backoff ceiling (30 s).
    pub backoff_max: Duration,
    /// Events held for an application that has not taken them yet (256). Past it the socket
    /// is not read either: a consumer that falls behind is seen by the hub as slow, closed
    /// (4008), and resumes where it stopped once it reads again, instead of this process
    /// buffering without end.
    pub buffer: usize,
}

impl Default for Subscribe {
    fn default() -> Self {
        Subscribe {
            last_seq: None,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            buffer: 256,
        }
    }
}

/// A running subscription: [`Subscription::next`] hands over its [`Event`]s in order.
#[derive(Debug)]
pub struct Subscription {
    events: mpsc::Receiver<Event>,
    last_seq: watch::Receiver<Option<i64>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    pub(crate) fn start(client: Client, options: Subscribe) -> Subscription {
        let (events, rx) = mpsc::channel(options.buffer.max(1));
        let (seq_tx, seq_rx) = watch::channel(options.last_seq);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run(client, options, events, seq_tx, stopped));
        Subscription {
            events: rx,
            last_seq: seq_rx,
            stop: Some(stop),
            task,
        }
    }

    /// The next event; `None` once the subscription has ended (closed, 4003, or
    /// [`Event::Unauthorized`]).
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The seq of the last notification handed over (save it to resume in another process).
    pub fn last_seq(&self) -> Option<i64> {
        *self.last_seq.borrow()
    }

    /// Stops: acknowledges what was delivered, closes the socket with 1000.
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

/// The frames the hub sends on `/ws/notifications/`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Frame {
    ConnectionEstablished {},
    Notification(Box<Notification>),
    ReplayComplete {
        count: i64,
        #[serde(default)]
        last_seq: Option<i64>,
    },
    ReplayTruncated {
        remaining: i64,
    },
    NotificationUpdated {
        id: i64,
        #[serde(default)]
        is_read: bool,
        #[serde(default)]
        deleted: bool,
    },
    NotificationsCleared {
        count: i64,
    },
    AllMarkedRead {
        count: i64,
    },
    TokenExpiring {},
    TokenRefreshed {},
    Error {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    },
    #[serde(other)]
    Other,
}

/// Full-jitter backoff: random in [0, min(max, base·2ⁿ)).
fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let ceiling = base
        .saturating_mul(2u32.saturating_pow(attempt.min(20)))
        .min(max);
    ceiling.mul_f64(rand::random::<f64>())
}

/// Whether `next` renews nothing of `held`: the same token, or a JWT that runs out no later.
fn no_newer(next: &str, held: &str) -> bool {
    next == held || matches!((token_expiry(next), token_expiry(held)), (Some(a), Some(b)) if a <= b)
}

/// Whether `token` is no answer to the refusal of `refused`: the same, or run out.
fn no_answer(token: &str, refused: &str) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    token == refused || token_expiry(token).is_some_and(|exp| exp <= now)
}

/// How a connection ended.
enum End {
    /// The application stopped the subscription.
    Stopped,
    /// Closed with this code (1006: broken) and reason, holding this token.
    Closed(u16, String, String),
    /// The events' receiver went away.
    Gone,
}

async fn run(
    client: Client,
    options: Subscribe,
    events: mpsc::Sender<Event>,
    last_seq: watch::Sender<Option<i64>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let mut attempt = 0u32;
    let mut refused: Option<String> = None;
    loop {
        let reason = if refused.is_some() {
            TokenReason::Refused
        } else {
            TokenReason::Connect
        };
        let token = tokio::select! {
            t = client.token(reason) => t,
            _ = &mut stopped => return,
        };
        let token = match token {
            Ok(t) => t,
            Err(e) => {
                if events.send(Event::Warning(e.to_string())).await.is_err() {
                    return;
                }
                if wait(
                    &mut stopped,
                    backoff(attempt, options.backoff_base, options.backoff_max),
                )
                .await
                {
                    return;
                }
                attempt += 1;
                continue;
            }
        };
        if let Some(old) = &refused {
            if no_answer(&token, old) {
                let _ = events.send(Event::Unauthorized).await;
                return;
            }
        }
        refused = None;
        let end = connection(
            &client,
            &token,
            &events,
            &last_seq,
            &mut stopped,
            &mut attempt,
        )
        .await;
        let (code, reason, held) = match end {
            End::Stopped | End::Gone => return,
            End::Closed(code, reason, held) => (code, reason, held),
        };
        let again = code != 4003;
        if events
            .send(Event::Disconnected {
                code,
                reason,
                will_reconnect: again,
            })
            .await
            .is_err()
            || !again
        {
            return;
        }
        if code == 4001 {
            refused = Some(held);
        }
        if wait(
            &mut stopped,
            backoff(attempt, options.backoff_base, options.backoff_max),
        )
        .await
        {
            return;
        }
        attempt += 1;
    }
}

/// Sleeps `d`; true if the subscription was stopped meanwhile.
async fn wait(stopped: &mut tokio::sync::oneshot::Receiver<()>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stopped => true,
    }
}

/// One connection, until it ends.
async fn connection(
    client: &Client,
    token: &str,
    events: &mpsc::Sender<Event>,
    last_seq: &watch::Sender<Option<i64>>,
    stopped: &mut tokio::sync::oneshot::Receiver<()>,
    attempt: &mut u32,
) -> End {
    let base = client
        .base
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let resume = *last_seq.borrow();
    let url = match resume {
        Some(seq) => format!("{base}/ws/notifications/?last_seq={seq}"),
        None => format!("{base}/ws/notifications/"),
    };
    let Ok(mut request) = url.as_str().into_client_request() else {
        return End::Closed(1006, format!("not a URL: {url}"), token.to_owned());
    };
    let Ok(protocols) = format!("tickethub.v1, bearer.{token}").parse() else {
        return End::Closed(
            4001,
            "the token cannot travel in a header".into(),
            token.to_owned(),
        );
    };
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocols);
    let socket = tokio::select! {
        s = tokio_tungstenite::connect_async(request) => s,
        _ = &mut *stopped => return End::Stopped,
    };
    let mut socket = match socket {
        Ok((socket, _)) => socket,
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            let code = if res.status() == 401 { 4001 } else { 1006 };
            return End::Closed(code, format!("HTTP {}", res.status()), token.to_owned());
        }
        Err(e) => return End::Closed(1006, e.to_string(), token.to_owned()),
    };
    let mut held = token.to_owned();
    let mut renewed_for: Option<String> = None;
    let mut acked: Option<i64> = resume;
    let mut ack_timer = tokio::time::interval(Duration::from_millis(250));
    ack_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            m = socket.next() => m,
            _ = ack_timer.tick() => {
                let seq = *last_seq.borrow();
                if seq.is_some() && seq != acked {
                    let frame = serde_json::json!({"type": "ack", "seq": seq}).to_string();
                    if socket.send(Message::text(frame)).await.is_err() {
                        return End::Closed(1006, "the connection broke".into(), held);
                    }
                    acked = seq;
                }
                continue;
            }
            _ = &mut *stopped => {
                let seq = *last_seq.borrow();
                if seq.is_some() && seq != acked {
                    let frame = serde_json::json!({"type": "ack", "seq": seq}).to_string();
                    let _ = socket.send(Message::text(frame)).await;
                }
                let _ = socket.close(None).await;
                return End::Stopped;
            }
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
                return End::Closed(code, reason, held);
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return End::Closed(1006, e.to_string(), held),
            None => return End::Closed(1006, "the connection ended".into(), held),
        };
        let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
            continue;
        };
        let event = match frame {
            Frame::ConnectionEstablished {} => {
                *attempt = 0;
                Event::Connected
            }
            Frame::Notification(n) => {
                let seen = *last_seq.borrow();
                if seen.is_some_and(|s| n.seq <= s) {
                    continue;
                }
                last_seq.send_replace(Some(n.seq));
                Event::Notification(n)
            }
            Frame::ReplayComplete {
                count,
                last_seq: hub_seq,
            } => {
                // The hub's resume point: a client delivered nothing resumes after it.
                if let Some(h) = hub_seq {
                    last_seq.send_if_modified(|s| {
                        let newer = s.is_none_or(|s| h > s);
                        if newer {
                            *s = Some(h);
                        }
                        newer
                    });
                }
                Event::Replayed {
                    count,
                    last_seq: hub_seq,
                }
            }
            Frame::ReplayTruncated { remaining } => Event::Truncated { remaining },
            Frame::NotificationUpdated {
                id,
                is_read,
                deleted,
            } => Event::Inbox(if deleted {
                InboxChange::Deleted(id)
            } else if is_read {
                InboxChange::Read(id)
            } else {
                InboxChange::Unread(id)
            }),
            Frame::NotificationsCleared { count } => Event::Inbox(InboxChange::Cleared { count }),
            Frame::AllMarkedRead { count } => Event::Inbox(InboxChange::AllRead { count }),
            Frame::TokenExpiring {} => {
                // Once per token, however often the hub warns.
                if renewed_for.as_deref() == Some(held.as_str()) {
                    continue;
                }
                renewed_for = Some(held.clone());
                match client.token(TokenReason::Expiring).await {
                    Ok(new) if !no_newer(&new, &held) => {
                        let frame =
                            serde_json::json!({"type": "refresh_token", "token": new}).to_string();
                        if socket.send(Message::text(frame)).await.is_err() {
                            return End::Closed(1006, "the connection broke".into(), held);
                        }
                        held = new;
                        continue;
                    }
                    Ok(_) => Event::Warning(
                        "the token provider gave back the token that runs out; the hub refuses it when it does".into(),
                    ),
                    Err(e) => Event::Warning(e.to_string()),
                }
            }
            Frame::TokenRefreshed {} => Event::Renewed,
            Frame::Error { code, message } => Event::Warning(format!("{code}: {message}")),
            Frame::Other => continue,
        };
        if events.send(event).await.is_err() {
            let _ = socket
                .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                }))
                .await;
            return End::Gone;
        }
    }
}
