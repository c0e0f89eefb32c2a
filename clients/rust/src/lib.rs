//! The official Rust client of tickethub.
//!
//! [`Client::subscribe`] follows a user's notifications over the hub's WebSocket
//! (`/ws/notifications/`) and hands each one over exactly once, in `seq` order, across
//! reconnects and hub restarts: every connection resumes after the last seq delivered
//! (`?last_seq=`), anything at or below it that arrives again is dropped, and delivered seqs
//! are acknowledged (`{"type":"ack"}`). Tokens come from the application's provider: asked for
//! every connection, once per expiry when the hub warns (the new token goes on the open
//! socket), and after the hub refuses one; a provider that gives a refused token again stops
//! the subscription ([`Event::Unauthorized`]) instead of reconnecting for ever.
//!
//! The inbox commands (read, unread, delete, list) go over REST with the same tokens;
//! [`Sender`] sends notifications with an API key and an `Idempotency-Key`, so a retried send
//! notifies once.
//!
//! ```no_run
//! use tickethub_client::{Client, Event, Subscribe, TokenReason};
//!
//! # async fn run() -> Result<(), tickethub_client::Error> {
//! let client = Client::new("http://127.0.0.1:8080", |reason: TokenReason| async move {
//!     // Log in (or trade the refresh token) and answer the access token.
//!     let _ = reason;
//!     Ok::<_, tickethub_client::BoxError>("an access token".to_owned())
//! });
//! let mut notifications = client.subscribe(Subscribe::default());
//! while let Some(event) = notifications.next().await {
//!     match event {
//!         Event::Notification(n) => println!("{} {}", n.seq, n.title),
//!         Event::Unauthorized => break,
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod rest;
mod subscription;

pub use rest::{NewNotification, Sender};
pub use subscription::{Subscribe, Subscription};

/// Any error a token provider answers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the client asks for a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenReason {
    /// A new connection: a cached token that is still valid will do.
    Connect,
    /// The hub says the held token runs out within 30 s: answer a new one.
    Expiring,
    /// The hub refused the last token (close code 4001, HTTP 401): answer a new one.
    Refused,
}

type TokenFuture = Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>>;
type Provider = dyn Fn(TokenReason) -> TokenFuture + Send + Sync;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The hub answered a REST call with an error status; `detail` is its message.
    #[error("HTTP {status}: {detail}")]
    Http {
        /// The status.
        status: u16,
        /// The hub's `detail`, or the body.
        detail: String,
    },
    /// The token provider failed.
    #[error("the token provider failed: {0}")]
    Token(String),
    /// The hub refused a token and the provider gave it again.
    #[error("the hub refused the token, and the token provider gave it again")]
    TokenRefused,
    /// The request could not be made or its answer read.
    #[error("{0}")]
    Transport(String),
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Error::Transport(e.to_string())
    }
}

/// A notification as the hub pushes it (seed 001's shape).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Notification {
    /// Its id.
    pub id: i64,
    /// Its place in the user's stream.
    pub seq: i64,
    /// Its type (`ticket_assigned`, …).
    pub notification_type: String,
    /// The title.
    pub title: String,
    /// The message.
    pub message: String,
    /// The ticket it is about.
    #[serde(default)]
    pub ticket: Option<TicketRef>,
    /// Extra data.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Where the notification leads.
    #[serde(default)]
    pub action_url: Option<String>,
    /// Whether it was read.
    #[serde(default)]
    pub is_read: bool,
    /// When it was made.
    #[serde(default)]
    pub timestamp: String,
    /// Whether it came in a replay (missed while away).
    #[serde(default)]
    pub replayed: bool,
}

/// The ticket a notification is about.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct TicketRef {
    /// Its id.
    pub id: i64,
    /// Its key (`WEB-5`).
    pub key: String,
    /// Its title.
    pub title: String,
    /// Its status.
    #[serde(default)]
    pub status: String,
}

/// A change of the inbox, made by any client of the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboxChange {
    /// A notification was read.
    Read(i64),
    /// A notification was marked unread.
    Unread(i64),
    /// A notification was deleted.
    Deleted(i64),
    /// The inbox was cleared.
    Cleared {
        /// How many went.
        count: i64,
    },
    /// Every (or every matching) notification was marked read.
    AllRead {
        /// How many.
        count: i64,
    },
}

/// What a subscription hands over, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The hub greeted a connection.
    Connected,
    /// A notification, once, in `seq` order.
    Notification(Box<Notification>),
    /// A connection's backlog was sent: `count` replayed, the hub's resume point `last_seq`.
    Replayed {
        /// How many.
        count: i64,
        /// The hub's resume point.
        last_seq: Option<i64>,
    },
    /// The backlog was over the hub's cap: `remaining` older ones were left (list them).
    Truncated {
        /// How many.
        remaining: i64,
    },
    /// A change of the inbox.
    Inbox(InboxChange),
    /// The hub took a renewed token on the socket.
    Renewed,
    /// The connection ended; `will_reconnect` says whether the client tries again.
    Disconnected {
        /// The close code (1006 when the connection broke).
        code: u16,
        /// The reason.
        reason: String,
        /// Whether a reconnection follows (after a backoff).
        will_reconnect: bool,
    },
    /// Something went wrong that the subscription survives: a provider failure, an error
    /// frame of the hub, a token given back unchanged for a renewal.
    Warning(String),
    /// The hub refused a token and the provider gave it again (or one run out): the
    /// subscription has stopped; subscribe again once the provider has a new token.
    Unauthorized,
}

/// The HTTP client of every call. An idle connection is dropped after 5 s, before the hub
/// closes it: the hub's keep-alive is its `--http-header-timeout` (10 s by default), and a call
/// sent on a connection at the moment the hub closes it fails with no answer (reqwest's own
/// default keeps idle connections for 90 s).
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("an HTTP client builds as reqwest::Client::new's does")
}

/// A client of one hub, for one user (whose tokens the provider gives).
#[derive(Clone)]
pub struct Client {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) tokens: Arc<Provider>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the hub at `base` (`http://host:8080`), with the application's token
    /// provider.
    pub fn new<F, Fut>(base: &str, provider: F) -> Client
    where
        F: Fn(TokenReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, BoxError>> + Send + 'static,
    {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            http: http_client(),
            tokens: Arc::new(move |reason| Box::pin(provider(reason)) as TokenFuture),
        }
    }

    /// A token from the provider.
    pub(crate) async fn token(&self, reason: TokenReason) -> Result<String, Error> {
        let token = (self.tokens)(reason)
            .await
            .map_err(|e| Error::Token(e.to_string()))?;
        if token.is_empty() {
            return Err(Error::Token("the provider gave an empty token".into()));
        }
        Ok(token)
    }

    /// Follows the user's notifications (see [`Subscription`]).
    pub fn subscribe(&self, options: Subscribe) -> Subscription {
        Subscription::start(self.clone(), options)
    }
}

/// The `exp` claim of a JWT, in seconds since the epoch; `None` for a token that is not one.
pub fn token_expiry(token: &str) -> Option<i64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["exp"].as_i64()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_jwt_expiry_is_read_and_anything_else_has_none() {
        // {"exp":1795845785,"user_id":1}
        let token = "e30.eyJleHAiOjE3OTU4NDU3ODUsInVzZXJfaWQiOjF9.sig";
        assert_eq!(super::token_expiry(token), Some(1_795_845_785));
        assert_eq!(super::token_expiry("not-a-token"), None);
        assert_eq!(super::token_expiry("e30.e30.x"), None);
    }
}

/// The README's example, compiled as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
