//! What a user actor last told its sockets of each notification, so that a change is told
//! once, and the count of changes its sockets missed live and heard from a catch-up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::notification::{InboxChange, Update};

/// How long a told change is remembered: past the catch-ups' look back.
const TOLD_FOR: Duration = Duration::from_secs(300);

/// Past this many remembered changes, those told long ago are forgotten.
const PRUNE_AT: usize = 512;

/// How long a change first told by a periodic pass waits before it is counted as lost without
/// a sign: a resync or a new subscription that reads it within this time shows that its loss
/// had a sign (one the periodic pass merely came before).
const PROBATION: Duration = Duration::from_secs(10);

/// Why inbox changes were read back from the database and told again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// The node's bus was away, or another node asked every node to resync (it restarted).
    Resync,
    /// The node began to hear the user on the bus: what changed in the minute before.
    Heard,
    /// The periodic reconciliation: what changed since the last pass, with no sign that
    /// anything was lost.
    Periodic,
}

impl CatchUp {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Resync => "resync",
            CatchUp::Heard => "heard",
            CatchUp::Periodic => "periodic",
        }
    }
}

/// The changes an actor told lately, and since when it has had a socket.
#[derive(Debug, Default)]
pub(crate) struct Told {
    changes: HashMap<i64, (Update, Instant)>,
    /// When the actor's first socket attached (by the store's clock): it stops with its last.
    live_since: Option<DateTime<Utc>>,
    /// Changes missed live that a periodic pass told, not counted yet (see [`PROBATION`]).
    probation: Vec<(Update, Instant)>,
}

impl Drop for Told {
    fn drop(&mut self) {
        count(CatchUp::Periodic, self.probation.len());
    }
}

/// Counts changes missed live, by why they were read.
fn count(why: CatchUp, changes: usize) {
    if changes > 0 {
        metrics::counter!("tickethub_inbox_changes_healed_total", "after" => why.as_str())
            .increment(changes as u64);
    }
}

impl Told {
    /// A socket attached at `now`.
    pub(crate) fn attached(&mut self, now: DateTime<Utc>) {
        self.live_since.get_or_insert(now);
    }

    /// Whether an inbox change is news: not the state last told of its notification (changes
    /// of every notification, bulk ones, always are).
    pub(crate) fn is_news(&self, update: &Update) -> bool {
        match update {
            Update::Read { id, .. } | Update::Deleted { id } => {
                self.changes.get(id).map(|(told, _)| told) != Some(update)
            }
            Update::AllRead { .. } | Update::AllDeleted { .. } => true,
        }
    }

    /// Remembers a change told (a bulk change as each notification it names), forgetting
    /// those told long ago once there are many.
    pub(crate) fn remember(&mut self, update: &Update) {
        let now = Instant::now();
        if self.changes.len() >= PRUNE_AT {
            self.changes
                .retain(|_, (_, at)| now.duration_since(*at) < TOLD_FOR);
        }
        match update {
            Update::Read { id, .. } | Update::Deleted { id } => {
                self.changes.insert(*id, (update.clone(), now));
            }
            Update::AllRead { ids, .. } => {
                for &id in ids {
                    let read = Update::Read { id, is_read: true };
                    self.changes.insert(id, (read, now));
                }
            }
            Update::AllDeleted { ids, .. } => {
                for &id in ids {
                    self.changes.insert(id, (Update::Deleted { id }, now));
                }
            }
        }
    }

    /// Of the changes a catch-up read, the news; those made while a socket was attached here
    /// were missed live, and are counted by why they were read (those a periodic pass read
    /// after [`PROBATION`], unless a resync reads them again meanwhile). Returns the news and
    /// how many of them were missed live.
    pub(crate) fn news(
        &mut self,
        user: crate::domain::UserId,
        changes: Vec<InboxChange>,
        why: CatchUp,
    ) -> (Vec<Update>, usize) {
        let now = Instant::now();
        if why != CatchUp::Periodic && !self.probation.is_empty() {
            let before = self.probation.len();
            self.probation
                .retain(|(told, _)| !changes.iter().any(|c| &c.update == told));
            count(why, before - self.probation.len());
        }
        let (news, missed): (Vec<InboxChange>, usize) = {
            let news: Vec<InboxChange> = changes
                .into_iter()
                .filter(|c| self.is_news(&c.update))
                .collect();
            let missed: Vec<&InboxChange> = news
                .iter()
                .filter(|c| self.live_since.is_some_and(|since| c.at >= since))
                .collect();
            if !missed.is_empty() {
                tracing::debug!(user_id = user.0, after = why.as_str(), live_since = ?self.live_since, changes = ?missed, "inbox changes missed live, told from the database");
                if why == CatchUp::Periodic {
                    self.probation
                        .extend(missed.iter().map(|c| (c.update.clone(), now)));
                } else {
                    count(why, missed.len());
                }
            }
            let missed = missed.len();
            (news, missed)
        };
        self.settle(now);
        (news.into_iter().map(|c| c.update).collect(), missed)
    }

    /// Counts the changes past their probation as lost without a sign.
    pub(crate) fn settle(&mut self, now: Instant) {
        let before = self.probation.len();
        self.probation
            .retain(|(_, at)| now.duration_since(*at) < PROBATION);
        count(CatchUp::Periodic, before - self.probation.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn change(id: i64, at: DateTime<Utc>) -> InboxChange {
        InboxChange {
            user: UserId(1),
            update: Update::Read { id, is_read: true },
            at,
        }
    }

    #[test]
    fn a_bulk_change_remembers_each_notification_it_names() {
        let mut told = Told::default();
        told.remember(&Update::AllRead {
            count: 2,
            ids: vec![4, 5],
            notification_type: None,
            ticket: None,
        });
        told.remember(&Update::AllDeleted {
            count: 1,
            ids: vec![6],
        });
        assert!(!told.is_news(&Update::Read {
            id: 4,
            is_read: true
        }));
        assert!(told.is_news(&Update::Read {
            id: 4,
            is_read: false
        }));
        assert!(!told.is_news(&Update::Deleted { id: 6 }));
        assert!(told.is_news(&Update::Read {
            id: 7,
            is_read: true
        }));
    }

    /// Runs `f` with a recorder of its own; answers the healed counts by label, sorted.
    fn counted(f: impl FnOnce()) -> Vec<String> {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, f);
        let mut counts: Vec<String> = handle
            .render()
            .lines()
            .filter(|l| l.starts_with("tickethub_inbox_changes_healed_total{"))
            .map(str::to_owned)
            .collect();
        counts.sort();
        counts
    }

    #[test]
    fn a_periodic_heal_that_a_resync_reads_again_soon_had_a_sign() {
        let now = Utc::now();
        let counts = counted(|| {
            let mut told = Told::default();
            told.attached(now);
            let (news, missed) = told.news(UserId(1), vec![change(1, now)], CatchUp::Periodic);
            told.remember(&news[0]);
            assert_eq!((told.probation.len(), missed), (1, 1));
            // A resync reads it again: the loss had a sign; it is not news any more.
            let (news, _) = told.news(UserId(1), vec![change(1, now)], CatchUp::Resync);
            assert!(news.is_empty());
            assert!(told.probation.is_empty());
            // One that no resync reads is counted once its probation is over.
            told.news(UserId(1), vec![change(2, now)], CatchUp::Periodic);
            told.settle(Instant::now() + PROBATION);
            assert!(told.probation.is_empty());
            // And one still on probation when the actor stops, then.
            told.news(UserId(1), vec![change(3, now)], CatchUp::Periodic);
        });
        assert_eq!(
            counts,
            [
                r#"tickethub_inbox_changes_healed_total{after="periodic"} 2"#,
                r#"tickethub_inbox_changes_healed_total{after="resync"} 1"#,
            ]
        );
    }

    #[test]
    fn only_news_is_told_and_only_news_from_while_a_socket_was_here_is_missed() {
        let now = Utc::now();
        let mut told = Told::default();
        told.attached(now);
        told.attached(now + chrono::Duration::seconds(5));
        told.remember(&Update::Read {
            id: 1,
            is_read: true,
        });
        let before = now - chrono::Duration::seconds(1);
        let changes = vec![change(1, now), change(2, before), change(3, now)];
        let (news, missed) = told.news(UserId(1), changes, CatchUp::Periodic);
        assert_eq!(
            missed, 1,
            "the change from before the first socket was not missed"
        );
        assert_eq!(
            news,
            [
                Update::Read {
                    id: 2,
                    is_read: true
                },
                Update::Read {
                    id: 3,
                    is_read: true
                }
            ]
        );
    }
}
