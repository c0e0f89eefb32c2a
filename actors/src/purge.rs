//! The purge actor: keeps the database the size of its retention, not of its age.
//!
//! Every `interval` it sweeps the tables retention applies to, one short batch at a time
//! ([`RetentionStore::purge`]), each batch a message of its own: between two batches the
//! actor answers snapshots, and the writer commits whatever else waits, so a live commit waits
//! at most one batch behind a sweep. A failed batch is tried again after a growing pause (a
//! database busy or restarting for a moment), [`BATCH_TRIES`] times in all; then the sweep
//! ends, and the next starts after `interval`. What a batch deletes of notifications, outbox rows and escalation steps is
//! folded into the delivery analytics' hourly rollups in the same transaction
//! ([`crate::analytics`]), so the figures outlive the rows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::ports::{Purgeable, RetentionStore};

/// What is kept, and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// How long read and deleted notifications and the history tables are kept.
    pub retention: Duration,
    /// How long an unread notification that was delivered once is kept; `None`: for ever.
    pub unread: Option<Duration>,
    /// Time between two sweeps.
    pub interval: Duration,
    /// Rows deleted per batch (one transaction).
    pub batch: i64,
    /// Pause between two batches of a sweep.
    pub pause: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(180 * 86_400),
            unread: None,
            interval: Duration::from_secs(3600),
            batch: 200,
            pause: Duration::from_millis(10),
        }
    }
}

impl RetentionPolicy {
    /// The cutoff of each kind of row at `now`: what is older goes. Unread notifications have
    /// none without `unread`.
    pub fn cutoffs(&self, now: DateTime<Utc>) -> Vec<(Purgeable, DateTime<Utc>)> {
        let before = |d: Duration| {
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        Purgeable::ALL
            .into_iter()
            .filter_map(|what| match what {
                Purgeable::UnreadNotifications => self.unread.map(|d| (what, before(d))),
                // An expired refresh token is worth nothing, however young.
                Purgeable::RefreshTokens => Some((what, now)),
                // Kept for the day a retry may come in, whatever the retention.
                Purgeable::IdempotencyKeys => Some((what, before(crate::ports::IDEMPOTENCY_TTL))),
                _ => Some((what, before(self.retention))),
            })
            .collect()
    }
}

/// The purge actor.
#[derive(Clone)]
pub struct PurgeActor {
    /// Where the rows are.
    pub store: Arc<dyn RetentionStore>,
    /// What to keep.
    pub policy: RetentionPolicy,
}

/// Messages of the purge actor.
#[derive(Debug)]
pub enum PurgeMsg {
    /// Start a sweep (once the running one ends, if one runs).
    Sweep,
    /// Delete the next batch of the running sweep.
    Batch,
    /// Describe the actor.
    Snapshot(RpcReplyPort<PurgeSnapshot>),
    /// Panic inside the handler, for fault-injection tests.
    #[cfg(feature = "testing")]
    InjectFault,
}

/// A point-in-time view of the purge actor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeSnapshot {
    /// Whether a sweep is under way.
    pub sweeping: bool,
    /// Sweeps finished since the actor started.
    pub sweeps: u64,
    /// Rows deleted since the actor started, per table.
    pub removed: BTreeMap<&'static str, u64>,
    /// When the last sweep started and ended, and what it removed.
    pub last_started: Option<DateTime<Utc>>,
    /// See `last_started`.
    pub last_finished: Option<DateTime<Utc>>,
    /// See `last_started`.
    pub last_removed: u64,
    /// Tables vacuumed after a sweep since the actor started ([`RetentionStore::reclaim`]).
    pub vacuumed: u64,
    /// Batches (and reclaims) that failed since the actor started.
    pub errors: u64,
    /// Why the last failed.
    pub last_error: Option<String>,
}

/// How many times a batch is tried before its sweep gives up.
pub const BATCH_TRIES: u32 = 4;

/// The pause before a failed batch is tried again the first time; it doubles each time.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A sweep under way.
struct Sweep {
    /// What is left to purge, each with its cutoff.
    left: Vec<(Purgeable, DateTime<Utc>)>,
    removed: u64,
    /// What it deleted rows of.
    purged: Vec<Purgeable>,
    /// The failures of the batch being tried, in a row.
    failures: u32,
}

/// The state of the purge actor.
pub struct PurgeState {
    snapshot: PurgeSnapshot,
    sweep: Option<Sweep>,
    /// A sweep was asked for while one ran.
    again: bool,
}

impl Actor for PurgeActor {
    type Msg = PurgeMsg;
    type State = PurgeState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        // The first sweep soon after start, so that a hub restarted often still purges.
        myself.send_after(self.policy.interval.min(Duration::from_secs(60)), || {
            PurgeMsg::Sweep
        });
        Ok(PurgeState {
            snapshot: PurgeSnapshot::default(),
            sweep: None,
            again: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // Asked while one runs: another starts once it ends, so that whoever asked gets a
            // sweep that began after the asking.
            PurgeMsg::Sweep if state.sweep.is_some() => state.again = true,
            PurgeMsg::Sweep => {
                let now = Utc::now();
                let mut left = self.policy.cutoffs(now);
                left.reverse();
                state.sweep = Some(Sweep {
                    left,
                    removed: 0,
                    purged: Vec::new(),
                    failures: 0,
                });
                state.snapshot.sweeping = true;
                state.snapshot.last_started = Some(now);
                let _ = myself.send_message(PurgeMsg::Batch);
            }
            PurgeMsg::Batch => self.batch(&myself, state).await,
            PurgeMsg::Snapshot(reply) => {
                let _ = reply.send(state.snapshot.clone());
            }
            #[cfg(feature = "testing")]
            PurgeMsg::InjectFault => panic!("injected fault"),
        }
        Ok(())
    }
}

impl PurgeActor {
    async fn batch(&self, myself: &ActorRef<PurgeMsg>, state: &mut PurgeState) {
        let Some(sweep) = state.sweep.as_mut() else {
            return;
        };
        let Some(&(what, cutoff)) = sweep.left.last() else {
            return self.finish(myself, state);
        };
        let started = std::time::Instant::now();
        let purged = self.store.purge(what, cutoff, self.policy.batch).await;
        metrics::histogram!("tickethub_purge_batch_seconds")
            .record(started.elapsed().as_secs_f64());
        match purged {
            Ok(n) => {
                sweep.failures = 0;
                if n > 0 {
                    metrics::counter!("tickethub_purged_rows_total", "table" => what.as_str())
                        .increment(n);
                    *state.snapshot.removed.entry(what.as_str()).or_default() += n;
                    sweep.removed += n;
                    if !sweep.purged.contains(&what) {
                        sweep.purged.push(what);
                    }
                }
                // A short batch: nothing of this kind is left.
                if (n as i64) < self.policy.batch {
                    sweep.left.pop();
                }
                if sweep.left.is_empty() {
                    let purged = std::mem::take(&mut sweep.purged);
                    self.reclaim(&purged, &mut state.snapshot).await;
                    self.finish(myself, state);
                } else {
                    myself.send_after(self.policy.pause, || PurgeMsg::Batch);
                }
            }
            Err(e) => {
                tracing::warn!(table = what.as_str(), error = %e, tries = sweep.failures + 1, "purge: a batch failed");
                metrics::counter!("tickethub_purge_errors_total").increment(1);
                state.snapshot.errors += 1;
                state.snapshot.last_error = Some(e.to_string());
                sweep.failures += 1;
                if sweep.failures < BATCH_TRIES {
                    let pause = RETRY_PAUSE * 2u32.pow(sweep.failures - 1);
                    myself.send_after(pause, || PurgeMsg::Batch);
                } else {
                    self.finish(myself, state);
                }
            }
        }
    }

    /// Gives the space of what a finished sweep deleted back to the database, where it
    /// would not take it back on its own. A failure is logged and counted; the rows are gone
    /// either way, and the next sweep that deletes rows vacuums their tables again.
    async fn reclaim(&self, purged: &[Purgeable], snapshot: &mut PurgeSnapshot) {
        if purged.is_empty() {
            return;
        }
        match self.store.reclaim(purged).await {
            Ok(tables) => {
                if !tables.is_empty() {
                    tracing::debug!(?tables, "purge: vacuumed what the sweep deleted");
                    metrics::counter!("tickethub_purge_vacuums_total")
                        .increment(tables.len() as u64);
                    snapshot.vacuumed += tables.len() as u64;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "purge: vacuuming what the sweep deleted failed");
                metrics::counter!("tickethub_purge_errors_total").increment(1);
                snapshot.errors += 1;
                snapshot.last_error = Some(e.to_string());
            }
        }
    }

    fn finish(&self, myself: &ActorRef<PurgeMsg>, state: &mut PurgeState) {
        if let Some(sweep) = state.sweep.take() {
            state.snapshot.sweeps += 1;
            state.snapshot.last_removed = sweep.removed;
        }
        state.snapshot.sweeping = false;
        state.snapshot.last_finished = Some(Utc::now());
        metrics::counter!("tickethub_purge_sweeps_total").increment(1);
        if std::mem::take(&mut state.again) {
            let _ = myself.send_message(PurgeMsg::Sweep);
        } else {
            myself.send_after(self.policy.interval, || PurgeMsg::Sweep);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::ports::StoreError;

    /// Rows of read notifications, whose first `failing` purges fail.
    struct Flaky {
        failing: AtomicU32,
        read_rows: Mutex<u64>,
    }

    #[async_trait::async_trait]
    impl RetentionStore for Flaky {
        async fn purge(
            &self,
            what: Purgeable,
            _: DateTime<Utc>,
            limit: i64,
        ) -> Result<u64, StoreError> {
            if what != Purgeable::ReadNotifications {
                return Ok(0);
            }
            if self.failing.load(Ordering::SeqCst) > 0 {
                self.failing.fetch_sub(1, Ordering::SeqCst);
                return Err(StoreError::Backend("the pool timed out".into()));
            }
            let mut rows = self.read_rows.lock().unwrap();
            let n = (*rows).min(limit as u64);
            *rows -= n;
            Ok(n)
        }

        async fn purgeable(&self, _: Purgeable, _: DateTime<Utc>) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    /// Sweeps `asks` times in a row (each ask sent at once) with a store whose first
    /// `failing` batches fail; answers the snapshot once `sweeps` sweeps finished, and the
    /// rows left.
    async fn sweeps_with(failing: u32, asks: u64) -> (PurgeSnapshot, u64) {
        let store = Arc::new(Flaky {
            failing: AtomicU32::new(failing),
            read_rows: Mutex::new(3),
        });
        let actor = PurgeActor {
            store: store.clone(),
            policy: RetentionPolicy::default(),
        };
        let (purge, handle) = Actor::spawn(None, actor, ()).await.unwrap();
        for _ in 0..asks {
            purge.send_message(PurgeMsg::Sweep).unwrap();
        }
        let finished = async {
            loop {
                let s = ractor::call!(purge, PurgeMsg::Snapshot).unwrap();
                if s.sweeps == asks {
                    break s;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let snapshot = tokio::time::timeout(Duration::from_secs(30), finished)
            .await
            .unwrap_or_else(|_| panic!("{asks} sweeps did not finish"));
        purge.stop(None);
        handle.await.unwrap();
        let left = *store.read_rows.lock().unwrap();
        (snapshot, left)
    }

    #[tokio::test]
    async fn a_sweep_asked_for_while_one_runs_starts_when_it_ends() {
        // The first sweep is still retrying its failed batch when the second ask arrives.
        let (snapshot, left) = sweeps_with(1, 2).await;
        assert_eq!((snapshot.sweeps, left), (2, 0), "{snapshot:?}");
        assert!(!snapshot.sweeping, "{snapshot:?}");
    }

    #[tokio::test]
    async fn a_failed_batch_is_tried_again_before_the_sweep_gives_up() {
        // Two failures in a row: the third try deletes the rows.
        let (snapshot, left) = sweeps_with(2, 1).await;
        assert_eq!((snapshot.errors, left), (2, 0), "{snapshot:?}");
        assert_eq!(snapshot.removed.get("read_notifications"), Some(&3));
        // As many failures as tries: the sweep ends, the rows wait for the next.
        let (snapshot, left) = sweeps_with(BATCH_TRIES, 1).await;
        assert_eq!(
            (snapshot.errors, left),
            (BATCH_TRIES as u64, 3),
            "{snapshot:?}"
        );
        assert_eq!(
            snapshot.last_error.as_deref(),
            Some("database error: the pool timed out")
        );
    }

    #[test]
    fn every_kind_has_its_cutoff_and_unread_only_when_asked() {
        let now = Utc::now();
        let mut policy = RetentionPolicy {
            retention: Duration::from_secs(3600),
            ..RetentionPolicy::default()
        };
        let cutoffs: BTreeMap<_, _> = policy.cutoffs(now).into_iter().collect();
        assert!(!cutoffs.contains_key(&Purgeable::UnreadNotifications));
        assert_eq!(
            cutoffs[&Purgeable::ReadNotifications],
            now - chrono::Duration::hours(1)
        );
        assert_eq!(cutoffs[&Purgeable::RefreshTokens], now);
        policy.unread = Some(Duration::from_secs(7200));
        let cutoffs: BTreeMap<_, _> = policy.cutoffs(now).into_iter().collect();
        assert_eq!(
            cutoffs[&Purgeable::UnreadNotifications],
            now - chrono::Duration::hours(2)
        );
        // A retention past the calendar's reach keeps everything, rather than panicking.
        policy.retention = Duration::MAX;
        assert!(policy.cutoffs(now).len() == Purgeable::ALL.len());
    }
}
