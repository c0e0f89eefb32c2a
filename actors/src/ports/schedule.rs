//! Scheduled sends: an admin's notification stored to be sent later, and fired once, by
//! whichever node claims it when it is due.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{IdempotencyMark, UserId};
use crate::notification::{Announcement, Recipients};

/// A send to store.
#[derive(Clone, Debug)]
pub struct NewScheduledSend {
    /// What to send; its recipients are resolved when it fires.
    pub announcement: Announcement,
    /// When it is due.
    pub send_at: DateTime<Utc>,
    /// The API key that made it, if one did: the send is then the key's.
    pub api_key: Option<i64>,
}

/// Who a send belongs to: whoever may list and cancel it, and whose loss of power cancels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// A person, with their own token (the send's `created_by`, made without a key).
    Person(UserId),
    /// An API key (whatever user it acts as).
    Key(i64),
}

/// A stored send.
#[derive(Clone, Debug)]
pub struct ScheduledSend {
    /// Its id.
    pub id: i64,
    /// What to send (`sent_by` is who scheduled it).
    pub announcement: Announcement,
    /// When it is due.
    pub send_at: DateTime<Utc>,
    /// `PENDING`, `FIRING`, `FIRED`, `CANCELLED` or `FAILED`.
    pub status: String,
    /// When it fired.
    pub fired_at: Option<DateTime<Utc>>,
    /// How many users it notified.
    pub notified: Option<i64>,
    /// What firing did, or why it failed.
    pub detail: Option<String>,
    /// When it was scheduled.
    pub created_at: DateTime<Utc>,
    /// The API key that made it, if one did.
    pub api_key: Option<i64>,
    /// When it last changed (cancelled, fired, failed).
    pub updated_at: DateTime<Utc>,
}

impl ScheduledSend {
    /// Who scheduled it: the person, or the key's user.
    pub fn owner(&self) -> Option<UserId> {
        self.announcement.sent_by
    }

    /// Whom it belongs to.
    pub fn sender(&self) -> Option<Sender> {
        match self.api_key {
            Some(key) => Some(Sender::Key(key)),
            None => self.owner().map(Sender::Person),
        }
    }

    /// Whom it names: ids, or a role.
    pub fn recipients(&self) -> &Recipients {
        &self.announcement.to
    }
}

/// What scheduling came to.
#[derive(Clone, Debug)]
pub enum Scheduled {
    /// Stored.
    Stored(Box<ScheduledSend>),
    /// The caller has `cap` sends pending already.
    Full {
        /// The cap.
        cap: i64,
    },
    /// The sender lost the power to send while the request ran: why.
    Refused(String),
}

/// What cancelling came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// Cancelled: it will not fire.
    Cancelled,
    /// No such send (or not the caller's).
    NotFound,
    /// It fired, is firing, or was cancelled already: its status.
    Settled(String),
}

/// How a claimed send ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fired {
    /// It notified this many users; what happened, for people.
    Fired {
        /// Users notified.
        notified: i64,
        /// When it was committed.
        at: DateTime<Utc>,
        /// Words.
        detail: String,
    },
    /// It could not be sent and will not be tried again.
    Failed(String),
    /// Its sender lost the power it needed before it fired (a key revoked, an admin demoted,
    /// deactivated or erased): it will not fire; why.
    Cancelled(String),
}

/// Scheduled sends.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Stores a send, at most `cap` pending per sender (a person, or a key), if the sender still
    /// has the power to send (a key not revoked, acting as an active user; an active admin),
    /// checked in the transaction that stores it; `mark` is the scheduling request's
    /// idempotency record, marked committed with the row (its resource is the send's id).
    async fn schedule_send(
        &self,
        send: NewScheduledSend,
        cap: i64,
        mark: Option<&IdempotencyMark>,
    ) -> Result<Scheduled, StoreError>;
    /// One send.
    async fn scheduled_send(&self, id: i64) -> Result<Option<ScheduledSend>, StoreError>;
    /// Sends not yet fired (`PENDING`, `FIRING`), soonest first: `owner`'s, or everyone's.
    async fn pending_sends(
        &self,
        owner: Option<Sender>,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<ScheduledSend>), StoreError>;
    /// Cancels a pending send (`owner`'s only, if given), with an audit event by `actor`.
    async fn cancel_send(
        &self,
        owner: Option<Sender>,
        id: i64,
        actor: &str,
    ) -> Result<Cancelled, StoreError>;
    /// Claims up to `limit` due sends (pending and due, or firing with a claim run out). Each
    /// one's data gains `scheduled_send`: `{id, send_at, fired_at, late_seconds}`, `fired_at`
    /// being `now`.
    async fn claim_sends(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ScheduledSend>, StoreError>;
    /// Why the send's sender may no longer send, if so (checked again when it fires).
    async fn power_lost(&self, send: &ScheduledSend) -> Result<Option<String>, StoreError>;
    /// Settles a claimed send, if `node` still holds it; answers whether it did.
    async fn finish_send(&self, id: i64, node: &str, outcome: Fired) -> Result<bool, StoreError>;
    /// Gives claimed sends back to the queue, due again at `due`.
    async fn release_sends(
        &self,
        ids: &[i64],
        node: &str,
        due: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// How many sends wait, and when the next is due.
    async fn schedule_outlook(&self) -> Result<(i64, Option<DateTime<Utc>>), StoreError>;
}
