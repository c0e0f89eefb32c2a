//! Which users may have news since a moment.
//!
//! A socket's handshake reads the user's row, and with it where the user's notification stream
//! stands (the cursor). The user's actor, if it starts for that socket, would read the cursor
//! again; it may take the handshake's instead if nothing could have reached the user since it
//! was read. Every path that hands a user's news to a local actor (a commit here, a commit on
//! another node, a shard newly heard, a resync) counts it here *before* it looks the actor up,
//! and the handshake takes a [`Stamp`] *before* its read. A user's actor counts its own last
//! writes too, as it stops (the sent seq it records then may be newer than a handshake's read,
//! and the next actor starts only once this one is gone). So when the actor finds the stamp
//! unchanged, any later news will find the actor and be pushed to it; when it finds it changed,
//! it reads the cursor itself, as it always did.
//!
//! A start's warm-up reads many users' cursors under one [`Snapshot`] and holds them for the
//! user cache's lifetime, a window in which a commit that counted no news here (another
//! process's, or one whose caller never learned its outcome) could go unseen: the hub catches
//! every connected user up from the database once that window ends.
//!
//! Users share counters (`user mod` [`SLOTS`]): news for one user sends the handshake of
//! another in the same slot to the database, which costs a read, never a notification.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::UserId;

/// How many counters users are spread over.
pub const SLOTS: usize = 4096;

/// News counters, one per slot of users, and one for everyone.
#[derive(Debug)]
pub struct Notices {
    slots: Box<[AtomicU64]>,
    everyone: AtomicU64,
}

/// The counters of a user's slot and of everyone at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    slot: u64,
    everyone: u64,
}

impl Default for Notices {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            everyone: AtomicU64::new(0),
        }
    }
}

impl Notices {
    fn slot(&self, user: UserId) -> &AtomicU64 {
        &self.slots[user.0.rem_euclid(SLOTS as i64) as usize]
    }

    /// Where the counters of `user` stand now; taken before a read that may stand in for the
    /// actor's.
    pub fn stamp(&self, user: UserId) -> Stamp {
        Stamp {
            slot: self.slot(user).load(Ordering::SeqCst),
            everyone: self.everyone.load(Ordering::SeqCst),
        }
    }

    /// `user` may have news: counted before the user's actor is looked up.
    pub fn news(&self, user: UserId) {
        self.slot(user).fetch_add(1, Ordering::SeqCst);
    }

    /// Anyone may have news (a gap on the bus).
    pub fn news_for_everyone(&self) {
        self.everyone.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether nothing was counted for `user` since `stamp`.
    pub fn unchanged(&self, user: UserId, stamp: Stamp) -> bool {
        self.stamp(user) == stamp
    }

    /// Every counter at one moment: the stamps of all users at once, taken before a read of
    /// many users' cursors (a start's warm-up of the user cache).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            slots: self
                .slots
                .iter()
                .map(|s| s.load(Ordering::SeqCst))
                .collect(),
            everyone: self.everyone.load(Ordering::SeqCst),
        }
    }
}

/// The counters of every slot at one moment: see [`Notices::snapshot`].
#[derive(Debug, Clone)]
pub struct Snapshot {
    slots: Box<[u64]>,
    everyone: u64,
}

impl Snapshot {
    /// The stamp `user` had when the snapshot was taken.
    pub fn stamp(&self, user: UserId) -> Stamp {
        Stamp {
            slot: self.slots[user.0.rem_euclid(SLOTS as i64) as usize],
            everyone: self.everyone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn news_for_a_user_or_everyone_changes_the_stamp() {
        let notices = Notices::default();
        let (a, b) = (UserId(7), UserId(8));
        let stamp = notices.stamp(a);
        assert!(notices.unchanged(a, stamp));
        notices.news(b);
        assert!(notices.unchanged(a, stamp), "another slot's news");
        notices.news(a);
        assert!(!notices.unchanged(a, stamp));

        let stamp = notices.stamp(a);
        notices.news(UserId(7 + SLOTS as i64));
        assert!(!notices.unchanged(a, stamp), "a user sharing the slot");

        let stamp = notices.stamp(a);
        notices.news_for_everyone();
        assert!(!notices.unchanged(a, stamp));
    }

    #[test]
    fn a_snapshot_stamps_every_user_as_of_its_moment() {
        let notices = Notices::default();
        let (a, b) = (UserId(7), UserId(8));
        notices.news(a);
        let snapshot = notices.snapshot();
        assert_eq!(snapshot.stamp(a), notices.stamp(a));
        assert!(notices.unchanged(b, snapshot.stamp(b)));
        notices.news(b);
        assert!(notices.unchanged(a, snapshot.stamp(a)));
        assert!(!notices.unchanged(b, snapshot.stamp(b)));
        notices.news_for_everyone();
        assert!(!notices.unchanged(a, snapshot.stamp(a)));
    }
}
