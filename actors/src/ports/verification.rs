//! Address verification: before the hub sends anything but a verification message to an
//! address a person typed for themselves, they prove it is theirs with the code sent to it.
//! One pending code per user and channel; a code is tried a few times, then a new one is
//! needed; messages are rate-limited per user and channel and per address.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{User, UserId};
use crate::routing::Channel;

/// A verification to start: a new code for `address`, replacing any pending one.
#[derive(Clone, Debug)]
pub struct NewVerification {
    /// Whose address.
    pub user: UserId,
    /// `email`, `whatsapp` or `sms`.
    pub channel: Channel,
    /// The address, as stored on the user.
    pub address: String,
    /// The code's hash (the code itself is sent, never stored).
    pub code_hash: String,
    /// For an email, the hash of its link's token (a random token of its own: the link may be
    /// opened without logging in, so it carries no guessable code).
    pub link_hash: Option<String>,
    /// The address normalized for counting the messages it receives (an email in lower case).
    pub address_key: String,
    /// When the code stops working.
    pub expires_at: DateTime<Utc>,
    /// Now.
    pub now: DateTime<Utc>,
    /// The limits.
    pub limits: VerificationLimits,
}

/// How often verification messages may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerificationLimits {
    /// Between two messages to one user on one channel.
    pub gap: Duration,
    /// Messages to one user on one channel per day.
    pub per_user_per_day: i64,
    /// Messages to one address per day, whoever asked for them.
    pub per_address_per_day: i64,
    /// Wrong codes before a code stops working.
    pub attempts: i64,
}

impl Default for VerificationLimits {
    fn default() -> Self {
        Self {
            gap: Duration::from_secs(60),
            per_user_per_day: 5,
            per_address_per_day: 5,
            attempts: 5,
        }
    }
}

/// What starting a verification came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Started {
    /// Stored: send the code now.
    Send,
    /// Not now: too soon after the last message, or the day's messages are used up. Nothing
    /// was changed.
    Later {
        /// When a message may go again.
        at: DateTime<Utc>,
    },
    /// The user has no such address (any more).
    NoAddress,
    /// The address is verified already.
    Verified,
    /// The address is on the suppression list (it bounced, or its owner complained): nothing
    /// is sent to it until an admin takes it off.
    Suppressed {
        /// Why it is on the list.
        reason: String,
    },
}

/// What checking a code came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    /// The address is verified: the user as they are now.
    Verified(Box<User>),
    /// Not the code; this many tries are left.
    Wrong {
        /// Tries left before the code stops working.
        left: i64,
    },
    /// No code is pending, it expired or was tried too often, or the address changed since it
    /// was sent: ask for a new one.
    NoCode,
}

/// Pending verifications.
#[async_trait]
pub trait VerificationStore: Send + Sync {
    /// Stores a new code for the user's current address on the channel, within the limits.
    async fn start_verification(&self, v: NewVerification) -> Result<Started, StoreError>;
    /// Checks a code (by its hash, compared in constant time), spending a try first: right, the
    /// address is marked verified and the code is spent, in one transaction, with an
    /// `address.verified` event; wrong, the try stays spent.
    async fn check_verification(
        &self,
        user: UserId,
        channel: Channel,
        code_hash: &str,
        now: DateTime<Utc>,
        attempts: i64,
    ) -> Result<Checked, StoreError>;
    /// Verifies the email whose link carries the token hashed as `link_hash`, if the link is
    /// pending and not expired, as [`VerificationStore::check_verification`] does.
    async fn check_verification_link(
        &self,
        link_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Checked, StoreError>;
}
