//! What every handler and socket can reach: the store, the hub, the token keys, the socket
//! settings, the throttles. Built once by `crate::app`.

use std::sync::Arc;

use tickethub_actors::ports::Store;
use tickethub_actors::Hub;

use crate::auth::Auth;
use crate::sockets::WsSettings;

/// What every handler can reach. Every request clones it (axum hands each handler and
/// middleware layer a copy), so it is one shared pointer to [`AppParts`].
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    /// Shares these parts.
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct AppParts {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Token issue and verification.
    pub auth: Arc<Auth>,
    /// The actor system.
    pub hub: Hub,
    /// WebSocket settings and the registry of live sessions.
    pub ws: Arc<WsSettings>,
    /// A valid argon2 hash of nothing, verified for unknown usernames to keep timing flat.
    pub dummy_hash: Arc<str>,
    /// The bus to other hub processes, if any.
    pub bus: Option<Arc<crate::bus::RedisBus>>,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// The hub's address as people reach it (`--public-url`), without a trailing `/`.
    pub public_url: Option<String>,
    /// Throttles.
    pub limits: Arc<crate::limits::Limits>,
    /// Whether anyone may sign up.
    pub registration: crate::config::Registration,
    /// Who may read `/metrics`, and where.
    pub metrics: Arc<MetricsAccess>,
    /// How long a request with an `Idempotency-Key` holds it before a retry may run.
    pub idempotency_lease: chrono::TimeDelta,
    /// Push devices and keys.
    pub push: Arc<PushSettings>,
    /// How far ahead, and how many pending per caller, sends may be scheduled.
    pub schedule: ScheduleLimits,
    /// The resolver of the checks made while a request waits.
    pub dns: Arc<crate::delivery::outbound::Dns>,
    /// Sends and checks the codes that verify the addresses people type.
    pub verifier: Arc<crate::verification::Verifier>,
    /// The Twilio auth token that signs inbound SMS webhooks, when the SMS channel is on.
    pub twilio_auth_token: Option<String>,
    /// The Web Push key, whose derived key signs the acknowledge tokens of pushes.
    pub vapid: Option<Arc<crate::channels::push::VapidKey>>,
    /// What takes Slack's interactions, when the Slack channel has a signing secret.
    pub slack: Option<Arc<crate::channels::slack::SlackInbound>>,
    /// Slack's members, looked up by email, when Slack is on.
    pub slack_members: Option<Arc<crate::channels::slack::SlackMembers>>,
    /// Checks the one-click unsubscribe links of notification emails.
    pub unsubscribe: Option<Arc<crate::channels::email::UnsubscribeKey>>,
    /// Where attached files are kept; none when the hub takes no attachments.
    pub attachments: Option<Arc<crate::attachments::Attachments>>,
    /// The chats project chats can post to, by channel name.
    pub rooms: crate::chats::Rooms,
    /// The token Mattermost's button clicks carry, when the Mattermost channel has buttons.
    pub mattermost_action_token: Option<String>,
}

/// Limits on scheduled sends.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleLimits {
    /// How far ahead.
    pub max_ahead: std::time::Duration,
    /// How many pending per caller.
    pub max_pending: i64,
}

/// What the devices API needs to know of push.
#[derive(Debug, Default)]
pub struct PushSettings {
    /// The Web Push application server key (base64url), if Web Push is on.
    pub vapid_public_key: Option<String>,
    /// Whether Web Push endpoints may be private (`--push-allow-private`).
    pub allow_private: bool,
    /// The most devices per user.
    pub device_cap: i64,
    /// Whether FCM is configured.
    pub fcm: bool,
    /// Whether APNs is configured.
    pub apns: bool,
}

/// Who may read `/metrics`, and where.
#[derive(Debug, Default)]
pub struct MetricsAccess {
    /// The bearer token `/metrics` asks for, if any (`--metrics-token`).
    pub token: Option<String>,
    /// Whether `/metrics` is served beside the API (`false` with `--metrics-bind`).
    pub on_main: bool,
}
