//! Ports: the traits the storage adapters implement for the core.
//!
//! Request/response IO is an `async_trait` trait object (`Arc<dyn Store>`); pushes into
//! adapters are message types owned by the core (see `crate::connection`).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{NewUser, Project, ProjectId, Role, User, UserId};
use crate::notification::{Draft, Notification};
use crate::routing::{Channel, Preferences};
use crate::ticket_domain::{Category, Change, Comment, Priority, Ticket, TicketId};

mod access;
mod analytics;
mod attachments;
mod audit;
mod bus;
mod chat;
mod credentials;
mod devices;
mod digests;
mod escalation;
mod history;
mod hold;
mod invitations;
mod oncall;
mod receipts;
mod reply;
mod retention;
mod schedule;
mod ticket_lists;
mod user_cache;
mod verification;
mod webhooks;
pub use crate::domain::IdempotencyMark;
pub use access::{
    ApiKey, ApiKeyStore, IdempotencyClaim, IdempotencyStore, NewApiKey, Progress, IDEMPOTENCY_TTL,
};
pub use analytics::AnalyticsStore;
pub use attachments::{Attachment, AttachmentStore, NewAttachment};
pub use audit::{AuditEvent, AuditFilter, AuditStore, NewAuditEvent};
pub use bus::{interest, publish, BoardNotice, Bus, BusEvent, BusFaults, PresenceStore, Topic};
pub use chat::{ChatStore, ChatUpdate, NewProjectChat, ProjectChat};
pub use credentials::{CredentialStore, RefreshRecord, Rotation};
pub use devices::{Device, DeviceStore, NewDevice, Registered};
pub use digests::{DigestStore, DueDigest};
pub use escalation::{EscalationJob, EscalationStore, Finish, Settled};
pub use history::{
    DeliveryAttempt, EscalationRow, FollowUp, HistoryStore, PushRecord, Pushed, TicketEvent,
    TimelineRecord,
};
pub use hold::{HoldStore, MaintenanceWindow, Quiet};
pub use invitations::{Invitation, InvitationStore, JoinRequest, NewInvitation};
pub use oncall::{NewOncallSchedule, OncallSchedule, OncallStore};
pub use receipts::{NewSuppression, Receipt, ReceiptStore, Report, Suppression};
pub use reply::{Acknowledgement, ReplyStore, Replyable};
pub use retention::{Purgeable, RetentionStore, StoreFaults};
pub use schedule::{
    Cancelled, Fired, NewScheduledSend, ScheduleStore, Scheduled, ScheduledSend, Sender,
};
pub use ticket_lists::{TicketFilter, TicketOrdering};
pub use user_cache::{Generation, UserCache, UserCacheOptions};
pub use verification::{Checked, NewVerification, Started, VerificationLimits, VerificationStore};
pub use webhooks::{
    NewWebhook, Webhook, WebhookDelivery, WebhookFailed, WebhookJob, WebhookStore,
    EVENTS as WEBHOOK_EVENTS, TEST_EVENT as WEBHOOK_TEST_EVENT,
};

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write (e.g. a taken username).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A referenced row does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The row changed since it was read (its `version` moved on); reload and decide again.
    #[error("stale: {0}")]
    Stale(String),
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Users and their credentials.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// The store's cache of active users, if it keeps one (see [`UserCache`]).
    fn user_cache(&self) -> Option<&UserCache> {
        None
    }
    /// Creates a user; a taken username is [`StoreError::Conflict`].
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError>;
    /// Finds a user by id.
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;
    /// Finds a user by id for a socket's handshake: when the user is not cached, where their
    /// notification stream stands comes with the row, in the same read.
    async fn user_and_cursor(
        &self,
        id: UserId,
    ) -> Result<Option<(User, Option<NotificationCursor>)>, StoreError> {
        Ok(self.user_by_id(id).await?.map(|u| (u, None)))
    }
    /// Up to `limit` active users with where each one's notification stream stands, the newest
    /// accounts first: what a start reads in one statement to warm the user cache (see
    /// [`UserCache::warm`]). A store without a cache reads none.
    async fn warm_users(
        &self,
        limit: usize,
    ) -> Result<Vec<(User, NotificationCursor)>, StoreError> {
        let _ = limit;
        Ok(Vec::new())
    }
    /// Finds a user and their password hash by username.
    async fn user_with_hash(&self, username: &str) -> Result<Option<(User, String)>, StoreError>;
    /// Lists every user, ordered by id.
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// A page of the users a query matches, ordered by id, and how many match in all.
    async fn find_users(
        &self,
        query: UserQuery,
        page: Page,
    ) -> Result<(i64, Vec<User>), StoreError>;
    /// The active users of a role, ordered by id.
    async fn users_with_role(&self, role: Role) -> Result<Vec<User>, StoreError>;
    /// The users with these ids (unknown ids are left out), ordered by id.
    async fn users_by_ids(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError>;
    /// The active users among these ids (unknown ids are left out), ordered by id: all that
    /// drafting needs of recipients reached in the app only.
    async fn active_user_ids(&self, ids: &[UserId]) -> Result<Vec<UserId>, StoreError>;
    /// Changes a user's name and addresses; `None` leaves a field as it is, `Some(None)`
    /// clears an address. A changed address is verified if the change is vouched for, else
    /// unverified; an address set again unchanged keeps its state. Taking away the powers a
    /// pending scheduled send needed (another role than admin, a deactivation) cancels the
    /// user's pending sends in the same transaction, with the reason and an audit event.
    async fn update_profile(
        &self,
        user: UserId,
        changes: ProfileChanges,
    ) -> Result<Option<User>, StoreError>;
    /// Erases a person, in one transaction: their inbox (with its deliveries and escalation
    /// steps), preferences, tokens, provider links, socket history and memberships go; their
    /// row stays, nameless and inactive (`Erased user`, `erased-<id>`), so that the tickets and
    /// comments they wrote keep an author; other people's notifications that open with their
    /// name, or announce their sign-up, are reworded; their pending scheduled sends are
    /// cancelled. `None` for an unknown user.
    async fn erase_user(&self, user: UserId, by: &str) -> Result<Option<User>, StoreError>;
    /// Creates a user who signed up themselves: as [`UserStore::create_user`], but the
    /// addresses they gave are unverified.
    async fn register_user(&self, user: NewUser) -> Result<User, StoreError>;
    /// Where the user's notification stream stands.
    async fn notification_cursor(&self, user: UserId) -> Result<NotificationCursor, StoreError>;
    /// The highest seq allocated to each of these users, in one batched read (unknown ids are
    /// left out).
    async fn last_seqs(&self, users: &[UserId]) -> Result<Vec<(UserId, i64)>, StoreError>;
    /// Marks a user's phone number as refused for good by the SMS provider, if it is still
    /// `number` and not marked yet, and fails the SMS still queued to it, in one transaction:
    /// routing then treats the user as having no number until they set one again. Answers
    /// whether it marked the number.
    async fn phone_number_invalid(
        &self,
        user: UserId,
        number: &str,
        why: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// Which users a list shows.
#[derive(Clone, Debug, Default)]
pub struct UserQuery {
    /// Only this role.
    pub role: Option<Role>,
    /// Only active (`true`) or inactive (`false`) users.
    pub active: Option<bool>,
    /// Only this user and those who share a project with them.
    pub visible_to: Option<UserId>,
    /// Only usernames containing this text.
    pub username_contains: Option<String>,
}

/// Changes to a user's profile.
#[derive(Clone, Debug, Default)]
pub struct ProfileChanges {
    /// A new display name.
    pub display_name: Option<String>,
    /// Addresses to set (`Some`) or remove (`None`), one per personal channel; setting one
    /// clears any mark that the provider refused it.
    pub addresses: Vec<(Channel, Option<String>)>,
    /// A new role (admins only).
    pub role: Option<crate::domain::Role>,
    /// Activate or deactivate the account (admins only).
    pub is_active: Option<bool>,
    /// A new password hash (the command line, or the user's own change).
    pub password_hash: Option<String>,
    /// Ends every token the user holds, as a new password does (logging out everywhere).
    pub end_sessions: bool,
    /// Addresses set here count as verified: an admin (or the command line) set them and
    /// vouches for them. Otherwise a changed address is unverified until its owner proves it.
    pub vouched: bool,
    /// Who makes the change, for the audit trail (`user:<id>`, `key:<id>`, `cli`); `None`: the
    /// user themselves.
    pub by: Option<String>,
}

/// Where a user's notification stream stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotificationCursor {
    /// The highest seq allocated to the user (0 when they have none).
    pub last_seq: i64,
    /// The highest seq any of the user's clients acknowledged.
    pub acked_seq: i64,
    /// The highest seq written to any of the user's sockets.
    pub sent_seq: i64,
}

/// Projects and their members.
#[async_trait]
pub trait ProjectStore: Send + Sync {
    /// Creates a project with the given members; a taken key is [`StoreError::Conflict`].
    async fn create_project(
        &self,
        key: &str,
        name: &str,
        members: &[UserId],
    ) -> Result<Project, StoreError>;
    /// Finds a project by id.
    async fn project_by_id(&self, id: ProjectId) -> Result<Option<Project>, StoreError>;
    /// Whether a user is a member of a project: `None` if there is no such project. One
    /// short query, whatever the number of members.
    async fn membership(&self, id: ProjectId, user: UserId) -> Result<Option<bool>, StoreError>;
    /// Finds a project by key.
    async fn project_by_key(&self, key: &str) -> Result<Option<Project>, StoreError>;
    /// Lists every project, or only those `member` belongs to.
    async fn list_projects(&self, member: Option<UserId>) -> Result<Vec<Project>, StoreError>;
    /// Adds members to a project; members already present are kept once.
    async fn add_members(&self, project: ProjectId, members: &[UserId]) -> Result<(), StoreError>;
    /// Removes members from a project.
    async fn remove_members(
        &self,
        project: ProjectId,
        members: &[UserId],
    ) -> Result<(), StoreError>;
    /// Renames a project.
    async fn rename_project(&self, project: ProjectId, name: &str) -> Result<(), StoreError>;
}

/// The fields of a new ticket.
#[derive(Clone, Debug)]
pub struct NewTicket {
    /// Its project.
    pub project: ProjectId,
    /// One line.
    pub title: String,
    /// Free text.
    pub description: String,
    /// Urgency.
    pub priority: Priority,
    /// Kind of work.
    pub category: Category,
    /// The creating client.
    pub created_by: UserId,
    /// The idempotent request that creates it, marked committed in the same transaction.
    pub idempotency: Option<IdempotencyMark>,
}

/// A slice of a list.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return.
    pub limit: i64,
}

/// Which notifications a list or bulk change covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    /// Only read (`true`) or unread (`false`) ones.
    pub is_read: Option<bool>,
    /// Only this type.
    pub notification_type: Option<String>,
    /// Only those about this ticket.
    pub ticket: Option<TicketId>,
    /// Only those with a smaller seq (for paging backwards through a socket).
    pub before_seq: Option<i64>,
}

/// The result of committing a ticket change.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The ticket after the change.
    pub ticket: Ticket,
    /// The notifications stored with it, each with its recipient's next seq.
    pub notifications: Vec<Notification>,
    /// The comment stored, for `comments`.
    pub comment: Option<Comment>,
}

/// How a notification's outbound deliveries stand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliverySummary {
    /// Deliveries in all.
    pub total: i64,
    /// Those sent.
    pub sent: i64,
    /// Those that failed for good.
    pub failed: i64,
    /// When the first was sent.
    pub first_sent_at: Option<DateTime<Utc>>,
}

/// One outbound delivery of a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The delivery's id.
    pub id: i64,
    /// Its notification.
    pub notification_id: i64,
    /// The channel.
    pub channel: Channel,
    /// Where it goes.
    pub address: String,
    /// `QUEUED`, `SENDING`, `SENT` or `FAILED`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// The provider's id for the sent message.
    pub provider_message_id: Option<String>,
    /// When the next attempt is due (for queued deliveries).
    pub next_attempt_at: DateTime<Utc>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
}

/// Builds a new ticket's notifications once the ticket (with its id and key) exists.
pub type PlanDrafts<'a> = &'a (dyn Fn(&Ticket) -> Vec<Draft> + Send + Sync);

/// Tickets, their changes and comments.
#[async_trait]
pub trait TicketStore: Send + Sync {
    /// Creates a ticket and, in the same transaction, the notifications `plan` drafts for it.
    async fn create_ticket(
        &self,
        ticket: NewTicket,
        plan: PlanDrafts<'_>,
    ) -> Result<(Ticket, Vec<Notification>), StoreError>;
    /// Loads a ticket.
    async fn ticket(&self, id: TicketId) -> Result<Option<Ticket>, StoreError>;
    /// Loads a ticket by its key's parts: `WEB-5` is project `WEB`, number 5.
    async fn ticket_by_key(
        &self,
        project_key: &str,
        number: i64,
    ) -> Result<Option<Ticket>, StoreError>;
    /// Commits a change made to the ticket at `expected_version`, with its notifications, in
    /// one transaction (with `mark`, the idempotent request that makes it is marked committed
    /// there too). A ticket whose version moved on is [`StoreError::Stale`].
    async fn commit_change(
        &self,
        id: TicketId,
        expected_version: i64,
        change: &Change,
        author: UserId,
        drafts: Vec<Draft>,
        mark: Option<&IdempotencyMark>,
    ) -> Result<Committed, StoreError>;
    /// Lists tickets, newest first, with the total count.
    async fn list_tickets(
        &self,
        filter: &TicketFilter,
        page: Page,
    ) -> Result<(i64, Vec<Ticket>), StoreError>;
    /// A page of a ticket's comments, oldest first, and how many it has in all.
    async fn comments(&self, id: TicketId, page: Page) -> Result<(i64, Vec<Comment>), StoreError>;
    /// A ticket's newest comments (at most `limit`), oldest first, and how many it has in all.
    async fn latest_comments(
        &self,
        id: TicketId,
        limit: i64,
    ) -> Result<(i64, Vec<Comment>), StoreError>;
    /// One comment.
    async fn comment(&self, id: i64) -> Result<Option<Comment>, StoreError>;
    /// Changes comment `id`'s text to `body` (marked edited at `at`), or with `None` deletes
    /// it: its text is emptied and it stays as a tombstone. Answers the comment as it is then.
    async fn change_comment(
        &self,
        id: i64,
        body: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Option<Comment>, StoreError>;
}

/// Notifications, read and changed by their recipient only.
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Stores notifications that belong to no ticket change (registrations, admin sends); with
    /// `mark`, the idempotent request that sends them is marked committed (with their count)
    /// in the same transaction.
    async fn commit_notifications(
        &self,
        drafts: Vec<Draft>,
        mark: Option<&IdempotencyMark>,
    ) -> Result<Vec<Notification>, StoreError>;
    /// Stores one part of an announcement committed in parts (its drafts in recipient
    /// order); with `mark`, recording in the same transaction how far the announcement got,
    /// and with `last` too, marking it committed as a whole.
    async fn commit_notifications_part(
        &self,
        drafts: Vec<Draft>,
        mark: Option<&IdempotencyMark>,
        last: bool,
    ) -> Result<Vec<Notification>, StoreError>;
    /// A user's notifications, newest first, with the total count.
    async fn list_notifications(
        &self,
        user: UserId,
        filter: &NotificationFilter,
        page: Page,
    ) -> Result<(i64, Vec<Notification>), StoreError>;
    /// A user's unread count, in all and by type.
    async fn unread_counts(&self, user: UserId) -> Result<(i64, Vec<(String, i64)>), StoreError>;
    /// One of a user's notifications.
    async fn notification(&self, user: UserId, id: i64)
        -> Result<Option<Notification>, StoreError>;
}

/// A user's inbox changes: read, unread, delete.
#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Marks one of a user's notifications read or unread; `None` if it is not theirs.
    async fn set_read(
        &self,
        user: UserId,
        id: i64,
        read: bool,
    ) -> Result<Option<Notification>, StoreError>;
    /// Marks a user's unread notifications read; returns the ids changed.
    async fn mark_all_read(
        &self,
        user: UserId,
        filter: &NotificationFilter,
    ) -> Result<Vec<i64>, StoreError>;
    /// Deletes one of a user's notifications; `false` if it is not theirs.
    async fn delete_notification(&self, user: UserId, id: i64) -> Result<bool, StoreError>;
    /// Deletes all of a user's notifications; returns their ids.
    async fn delete_all_notifications(&self, user: UserId) -> Result<Vec<i64>, StoreError>;
    /// The notifications of these users that they changed (read, unread, deleted) at or after
    /// `since`, by [`Store::now`]'s clock, as each stands now: what a node whose bus was away
    /// may not have told its sockets, with when each changed. Ordered by user and id.
    async fn inbox_changes(
        &self,
        users: &[UserId],
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::notification::InboxChange>, StoreError>;
}

/// A user's stream of notifications as sockets see it: the backlog, gaps, acks and what was
/// sent.
#[async_trait]
pub trait StreamStore: Send + Sync {
    /// A user's backlog after `after_seq`, oldest first: the newest `cap` of them, and how many
    /// older ones the cap left out. Deleted notifications are not replayed.
    async fn backlog(
        &self,
        user: UserId,
        after_seq: i64,
        cap: i64,
    ) -> Result<(i64, Vec<Notification>), StoreError>;
    /// A user's notifications with `after < seq < before`, oldest first (to fill a gap in the
    /// live stream); deleted ones are left out.
    async fn seq_range(
        &self,
        user: UserId,
        after: i64,
        before: i64,
    ) -> Result<Vec<Notification>, StoreError>;
    /// For each `(user, after, before)`, the user's notifications with `after < seq < before`,
    /// ordered by user and seq, in batched reads; deleted ones are left out.
    async fn seq_ranges(
        &self,
        ranges: &[(UserId, i64, i64)],
    ) -> Result<Vec<Notification>, StoreError> {
        let mut out = Vec::new();
        for (user, after, before) in ranges {
            out.extend(self.seq_range(*user, *after, *before).await?);
        }
        Ok(out)
    }
    /// The notifications with these (recipient, seq) keys, in any order, in batched reads;
    /// deleted ones are left out.
    async fn notifications_at(
        &self,
        keys: &[(UserId, i64)],
    ) -> Result<Vec<Notification>, StoreError>;
    /// Records that the user's clients have shown everything up to `seq` (never moves back,
    /// never past the user's last seq); returns the acknowledged seq.
    async fn ack(&self, user: UserId, seq: i64) -> Result<i64, StoreError>;
    /// [`StreamStore::ack`] for several users in one transaction; answers the acknowledged
    /// seq of each user found (unknown users are left out).
    async fn ack_many(&self, acks: &[(UserId, i64)]) -> Result<Vec<(UserId, i64)>, StoreError> {
        let mut acked = Vec::with_capacity(acks.len());
        for (user, seq) in acks {
            match self.ack(*user, *seq).await {
                Ok(seq) => acked.push((*user, seq)),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(acked)
    }
    /// Records, for each user, that everything up to the seq was written to some socket of
    /// theirs (never moves back), in one transaction.
    async fn record_sent(&self, sent: &[(UserId, i64)]) -> Result<(), StoreError>;
}

/// Which channels users switched off, and which types they received.
#[async_trait]
pub trait PreferenceStore: Send + Sync {
    /// The preferences of these users.
    async fn preferences(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Preferences>, StoreError>;
    /// Sets some of a user's switches.
    async fn set_preferences(
        &self,
        user: UserId,
        switches: &[(String, Channel, bool)],
    ) -> Result<(), StoreError>;
    /// Which of these notification types the user has received at least once.
    async fn types_received(
        &self,
        user: UserId,
        types: &[String],
    ) -> Result<Vec<String>, StoreError>;
}

/// One claimed outbound delivery, with what it needs to be sent.
#[derive(Clone, Debug)]
pub struct DeliveryJob {
    /// The delivery's id.
    pub id: i64,
    /// Its channel.
    pub channel: Channel,
    /// Where it goes (email address, phone number, URL).
    pub address: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// The notification it carries.
    pub notification: Notification,
    /// The recipient's display name.
    pub recipient_name: String,
    /// Everyone the delivery speaks for: for a webhook, every recipient of the commit's event;
    /// otherwise the notification's recipient alone.
    pub recipients: Vec<crate::notification::Recipient>,
    /// A push's device (its address is the device's id); `None` once the device is removed.
    pub device: Option<Device>,
    /// The delivery was to go only if its notification stayed unseen, and a client of the
    /// recipient has acknowledged or read it since: it is not sent.
    pub seen: bool,
    /// The address is on the suppression list, for this reason: it is not sent.
    pub suppressed: Option<String>,
    /// The recipient's language for messages (a BCP 47 tag), if they gave one.
    pub locale: Option<String>,
    /// The recipient's IANA time zone, if they gave one.
    pub time_zone: Option<String>,
    /// The other notifications this message carries, oldest first: a batch's updates about
    /// the same ticket (`crate::batch`). Empty for a message of its own.
    pub batch: Vec<Notification>,
}

/// The durable outbox the channel actors drain.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims up to `limit` due deliveries of a channel (queued and due, or claimed by a
    /// process whose lease ran out), marking them `SENDING` until `lease_until`. Two processes
    /// never claim the same row at once.
    async fn claim(
        &self,
        channel: Channel,
        node: &str,
        limit: i64,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<DeliveryJob>, StoreError>;
    /// Records a successful send, if `node` still holds the row's claim; answers whether it
    /// did (a late attempt never overwrites a newer one).
    async fn delivery_sent(
        &self,
        id: i64,
        node: &str,
        attempts: i64,
        provider_id: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Records a final failure, if `node` still holds the claim.
    async fn delivery_failed(
        &self,
        id: i64,
        node: &str,
        attempts: i64,
        error: &str,
    ) -> Result<bool, StoreError>;
    /// Puts a delivery back in the queue for a later attempt, if `node` still holds the claim.
    async fn delivery_retry(
        &self,
        id: i64,
        node: &str,
        attempts: i64,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError>;
    /// Records that a delivery was not sent because its notification was seen first (a push
    /// held back `unless_seen_within`), if `node` still holds the claim.
    async fn delivery_suppressed(&self, id: i64, node: &str, why: &str)
        -> Result<bool, StoreError>;
    /// Releases claimed deliveries back to the queue untouched (on shutdown).
    async fn delivery_release(&self, ids: &[i64]) -> Result<(), StoreError>;
    /// Releases every delivery of a channel that this hub process (`node`) claimed, but those
    /// still being sent (`sending`): a restarted channel actor takes back what its failed
    /// predecessor held and no task is sending any more.
    async fn delivery_reclaim(
        &self,
        channel: Channel,
        node: &str,
        sending: &[i64],
    ) -> Result<u64, StoreError>;
    /// Gathers a batch for delivery `id`, which `node` holds: the deliveries still queued
    /// and untried on its channel, to its address, about the same ticket and person, whose
    /// notifications `joins` accepts, go out with it from now on (they settle as it does). Answers
    /// the notifications of every delivery it carries besides its own, oldest first (those
    /// gathered on an earlier attempt too); none if the claim was lost. `None` when an older
    /// untried delivery of the same batch, queued or being sent, leads it: this one waits to
    /// be gathered by that one.
    async fn gather_batch(
        &self,
        id: i64,
        node: &str,
        joins: &(dyn for<'n> Fn(&'n Notification) -> bool + Sync),
    ) -> Result<Option<Vec<Notification>>, StoreError>;
    /// Deliveries of a channel not yet final.
    async fn outbox_depth(&self, channel: Channel) -> Result<i64, StoreError>;
    /// The outbound deliveries of one of a user's notifications.
    async fn deliveries(&self, user: UserId, id: i64) -> Result<Option<Vec<Delivery>>, StoreError>;
    /// How the outbound deliveries of these notifications stand, per notification that has
    /// any (one query).
    async fn delivery_summaries(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, DeliverySummary>, StoreError>;
}

/// Why a transport could not send.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TransportError {
    /// Sending again will not help (a bad address, a refused number).
    #[error("permanent: {0}")]
    Permanent(String),
    /// The device is gone for good (unsubscribed, expired, uninstalled): the delivery fails
    /// and the device is removed, so that it costs no further attempt.
    #[error("gone: {0}")]
    Gone(String),
    /// The address cannot be reached for good (not a valid mobile number, or its owner
    /// unsubscribed): the delivery fails and the user's address is marked, so that it costs
    /// no further send until they set another.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Try again later, no sooner than `retry_after` if the provider said so.
    #[error("retryable: {message}")]
    Retryable {
        /// What happened.
        message: String,
        /// The provider's `Retry-After`, if any.
        retry_after: Option<std::time::Duration>,
    },
}

/// Sends one delivery through a provider (SMTP, WhatsApp Cloud API, a webhook).
#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends; returns the provider's message id, if it gives one.
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError>;
}

/// Everything the hub stores, behind one object.
#[async_trait]
pub trait Store:
    UserStore
    + ProjectStore
    + TicketStore
    + NotificationStore
    + InboxStore
    + StreamStore
    + PreferenceStore
    + OutboxStore
    + HistoryStore
    + EscalationStore
    + CredentialStore
    + RetentionStore
    + ApiKeyStore
    + IdempotencyStore
    + DeviceStore
    + ScheduleStore
    + AnalyticsStore
    + AuditStore
    + VerificationStore
    + OncallStore
    + ReplyStore
    + HoldStore
    + ChatStore
    + ReceiptStore
    + WebhookStore
    + DigestStore
    + AttachmentStore
    + InvitationStore
{
    /// The backend's name (`sqlite` or `postgres`), for logs and health output.
    fn backend(&self) -> &'static str;
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes the pool, waiting for in-flight transactions to finish.
    async fn close(&self);
    /// The faults this store simulates (none unless a test asks).
    #[doc(hidden)]
    fn faults(&self) -> &StoreFaults;
    /// The time by the database's clock, which every node of a cluster shares (a node's own
    /// clock may be set wrong): what leases and due times are measured by.
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
