//! The hub's settings, what it is started with, and the shapes of its commands.

use super::*;

/// Settings of the actor system.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// How often every socket is sent a protocol ping.
    pub ping_interval: Duration,
    /// A socket silent for longer than this is closed.
    pub idle_timeout: Duration,
    /// How long a call into an actor may take before it counts as failed.
    pub call_timeout: Duration,
    /// How long a ticket actor lives without messages.
    pub ticket_idle: Duration,
    /// The most notifications one replay sends.
    pub replay_cap: i64,
    /// How long an out-of-order live notification waits before the gap is read from the
    /// database.
    pub gap_wait: Duration,
    /// Project rooms: presence grace period and typing timings.
    pub rooms: crate::room::RoomConfig,
    /// Where the room actors run: a runtime of their own, whose threads run at a lower CPU
    /// priority, so that a presence storm yields the CPU to notifications. `None`: the
    /// runtime that starts the hub.
    pub rooms_runtime: Option<tokio::runtime::Handle>,
    /// Sign-up emails to super admins are coalesced over this window (zero: one per sign-up).
    pub signup_notice_interval: Duration,
    /// How often the escalation actor looks for steps due (other nodes schedule them too).
    pub escalation_poll: Duration,
    /// How long a node's claim on a firing escalation step holds before another node may take
    /// it over (a node that died while firing).
    pub escalation_lease: Duration,
    /// What the purge actor keeps, and for how long.
    pub retention: crate::purge::RetentionPolicy,
}

/// How often the users' heartbeat reports of what their sockets were sent are written, in one
/// transaction for all of them.
pub(super) const SENT_BATCH_INTERVAL: Duration = Duration::from_secs(1);

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            call_timeout: Duration::from_secs(10),
            ticket_idle: Duration::from_secs(60),
            replay_cap: 1000,
            gap_wait: Duration::from_millis(50),
            rooms: crate::room::RoomConfig::default(),
            rooms_runtime: None,
            signup_notice_interval: Duration::from_secs(300),
            escalation_poll: Duration::from_secs(1),
            escalation_lease: Duration::from_secs(60),
            retention: crate::purge::RetentionPolicy::default(),
        }
    }
}

/// What a command answers when the user's actor did not answer in time: it still runs, once.
pub const USER_ACTOR_BUSY: &str =
    "The hub is busy; the change will still be applied once, shortly.";

/// How often a socket's attach (or a room join) is tried before it gives up.
pub(super) const ATTACH_TRIES: u32 = 5;
/// The wait before the second try; each later one waits longer by as much.
pub(super) const ATTACH_RETRY_WAIT: Duration = Duration::from_millis(10);

/// Why a socket could not be handed to its user actor.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The hub is shutting down or its directory is unavailable.
    #[error("the hub is not accepting connections")]
    Unavailable,
}

/// The outbound channels a hub runs.
#[derive(Clone, Default)]
pub struct DeliveryConfig {
    /// A transport per outbound channel; channels without one are off (no outbox rows).
    pub transports: Vec<(Channel, Arc<dyn crate::ports::Transport>)>,
    /// Where every notification is also delivered, on the deployment's channels (a webhook's
    /// URLs, say), when the channel has a transport.
    pub destinations: Vec<(Channel, String)>,
    /// How channels retry.
    pub policy: crate::delivery::RetryPolicy,
}

/// Everything a hub needs besides its settings.
pub struct HubDeps {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Who hears about what.
    pub routing: RoutingTable,
    /// The outbound channels.
    pub delivery: DeliveryConfig,
    /// Fan-out to other hub processes, if any.
    pub bus: Option<Arc<dyn crate::ports::Bus>>,
    /// Presence across hub processes, if any.
    pub presence: Option<Arc<dyn crate::ports::PresenceStore>>,
}
