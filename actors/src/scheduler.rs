//! Scheduled sends: the supervised actor that fires them when due.
//!
//! A send scheduled through the API is a row with a due time (see
//! [`crate::ports::ScheduleStore`]), so a restart or a crashed node loses none: every node's
//! scheduler claims due rows (`SKIP LOCKED` on PostgreSQL), and fires each through the same
//! path as an immediate send, resolving its recipients now. Firing is exactly once: the commit
//! of its notifications carries an idempotency record of the send (`scheduled:<id>`), so a node
//! that takes over a send whose firing node died after the commit finds it committed and only
//! records it, never sends it again. A send fired late (the hub was down when it was due) says
//! how late, in its notifications' data (`scheduled_send`, written by the claim) and timeline.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::domain::IdempotencyMark;
use crate::notifier::Deps;
use crate::ports::{Fired, IdempotencyClaim, ScheduledSend, StoreError};

/// The scheduler actor.
#[derive(Clone, Debug)]
pub struct SchedulerActor {
    /// Shared dependencies.
    pub deps: Arc<Deps>,
    /// This hub process, for claims.
    pub node: Arc<str>,
    /// How often the database is looked at for sends due (other nodes schedule too).
    pub poll: Duration,
    /// How long a claim holds before another node may take the send over.
    pub lease: Duration,
}

/// Messages of the scheduler.
#[derive(Debug)]
pub enum SchedulerMsg {
    /// Fire what is due, then set the timer for the next send.
    Tick,
    /// Describe the actor.
    Snapshot(RpcReplyPort<SchedulerSnapshot>),
    /// Panic inside the handler, for fault-injection tests.
    #[cfg(feature = "testing")]
    InjectFault,
}

/// A point-in-time view of the scheduler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerSnapshot {
    /// Sends waiting in the database (every node's).
    pub pending: i64,
    /// When the next is due.
    pub next_due: Option<DateTime<Utc>>,
    /// Sends this actor fired and failed since it started.
    pub fired: u64,
    /// See `fired`.
    pub failed: u64,
}

/// The scheduler's state.
pub struct SchedulerState {
    snapshot: SchedulerSnapshot,
    timer: Option<JoinHandle<Result<(), ractor::MessagingErr<SchedulerMsg>>>>,
}

/// At most this many sends are claimed at once.
const CLAIM_BATCH: i64 = 16;

/// The idempotency record whose commit with a send's notifications makes its firing once.
pub fn fire_mark(id: i64) -> IdempotencyMark {
    IdempotencyMark {
        caller: format!("scheduled:{id}"),
        key: "fire".to_owned(),
    }
}

impl Actor for SchedulerActor {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let _ = myself.send_message(SchedulerMsg::Tick);
        Ok(SchedulerState {
            snapshot: SchedulerSnapshot::default(),
            timer: None,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.timer.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::Tick => {
                let failed = match self.run_due(state).await {
                    Ok(()) => false,
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduler: cannot fire due sends; trying again");
                        true
                    }
                };
                let next_due = match self.deps.store.schedule_outlook().await {
                    Ok((pending, next_due)) => {
                        state.snapshot.pending = pending;
                        state.snapshot.next_due = next_due;
                        metrics::gauge!("tickethub_scheduled_sends_pending").set(pending as f64);
                        next_due
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduler: cannot read the next due send");
                        None
                    }
                };
                if let Some(t) = state.timer.take() {
                    t.abort();
                }
                let now = self.deps.store.now();
                let wait = crate::escalation::next_look(next_due, now, self.poll, failed);
                state.timer = Some(myself.send_after(wait, || SchedulerMsg::Tick));
            }
            SchedulerMsg::Snapshot(reply) => {
                let _ = reply.send(state.snapshot.clone());
            }
            #[cfg(feature = "testing")]
            SchedulerMsg::InjectFault => panic!("injected fault in the scheduler"),
        }
        Ok(())
    }
}

impl SchedulerActor {
    /// Claims and fires due sends until none is left.
    async fn run_due(&self, state: &mut SchedulerState) -> Result<(), StoreError> {
        loop {
            let now = self.deps.store.now();
            let lease = now + chrono::Duration::from_std(self.lease).unwrap_or_default();
            let due = self
                .deps
                .store
                .claim_sends(&self.node, now, lease, CLAIM_BATCH)
                .await?;
            if due.is_empty() {
                return Ok(());
            }
            let count = due.len();
            tracing::debug!(
                ids = ?due.iter().map(|s| s.id).collect::<Vec<_>>(),
                "scheduler: claimed due sends"
            );
            for send in due {
                let id = send.id;
                if let Err(e) = self.fire(state, send, lease).await {
                    // Given back, due again a little later.
                    let again = self.deps.store.now() + chrono::Duration::milliseconds(500);
                    let _ = self
                        .deps
                        .store
                        .release_sends(&[id], &self.node, again)
                        .await;
                    return Err(e);
                }
            }
            if (count as i64) < CLAIM_BATCH {
                return Ok(());
            }
        }
    }

    /// Fires one claimed send, once.
    async fn fire(
        &self,
        state: &mut SchedulerState,
        send: ScheduledSend,
        lease: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let store = &self.deps.store;
        let mark = fire_mark(send.id);
        let now = store.now();
        let late = (now - send.send_at).to_std().unwrap_or_default();
        let outcome = match store.claim_idempotency(&mark, "fire", now, lease).await? {
            // A sender that lost its power since it scheduled the send (a race the cancelling
            // transaction could not see, or a send claimed when it happened): not fired.
            IdempotencyClaim::Claimed => match store.power_lost(&send).await? {
                Some(why) => {
                    let _ = store.release_idempotency(&mark).await;
                    Fired::Cancelled(why)
                }
                None => {
                    // Its data says when it was due and when it fired (the claim wrote that in).
                    let mut announcement = send.announcement.clone();
                    announcement.idempotency = Some(mark.clone());
                    // An on-call send goes to whoever is on call as it fires.
                    let announcement = match self.deps.page(announcement).await {
                        Ok(a) => Ok(a),
                        Err(crate::notifier::Unpaged::Store(e)) => {
                            let _ = store.release_idempotency(&mark).await;
                            return Err(e);
                        }
                        Err(unpaged) => {
                            let _ = store.release_idempotency(&mark).await;
                            Err(Fired::Failed(unpaged.to_string()))
                        }
                    };
                    match announcement {
                        Err(failed) => failed,
                        Ok(announcement) => match self.deps.announce(announcement).await {
                            Ok(announced) => {
                                let notified = announced.count;
                                let _ = store
                                    .answer_idempotency(&mark, 201, &notified.to_string())
                                    .await;
                                Fired::Fired {
                                    notified,
                                    at: now,
                                    detail: fired_detail(notified, late),
                                }
                            }
                            Err(e) => {
                                let _ = store.release_idempotency(&mark).await;
                                return Err(e);
                            }
                        },
                    }
                }
            },
            // Another try committed it (and its node died before recording it): record only.
            IdempotencyClaim::Committed { resource } => Fired::Fired {
                notified: resource.unwrap_or(0),
                at: now,
                detail: fired_detail(resource.unwrap_or(0), late),
            },
            IdempotencyClaim::Answered { body, .. } => {
                let notified = body.parse().unwrap_or(0);
                Fired::Fired {
                    notified,
                    at: now,
                    detail: fired_detail(notified, late),
                }
            }
            // A try of a node that died may still be running: its claim decides, later.
            IdempotencyClaim::InProgress => {
                tracing::debug!(
                    id = send.id,
                    "scheduler: another try of the send still runs"
                );
                let again =
                    store.now() + chrono::Duration::from_std(self.lease).unwrap_or_default();
                store.release_sends(&[send.id], &self.node, again).await?;
                return Ok(());
            }
            IdempotencyClaim::Mismatch => {
                Fired::Failed("its firing record belongs to another request".to_owned())
            }
        };
        tracing::debug!(id = send.id, late = ?late, outcome = ?outcome, "scheduler: send done");
        let kind = match &outcome {
            Fired::Fired { .. } => "fired",
            Fired::Failed(_) => "failed",
            Fired::Cancelled(_) => "cancelled",
        };
        if store.finish_send(send.id, &self.node, outcome).await? {
            match kind {
                "fired" => {
                    state.snapshot.fired += 1;
                    metrics::histogram!("tickethub_scheduled_send_lateness_seconds")
                        .record(late.as_secs_f64());
                }
                "failed" => state.snapshot.failed += 1,
                _ => {}
            }
            metrics::counter!("tickethub_scheduled_sends_total", "outcome" => kind).increment(1);
        }
        Ok(())
    }
}

/// What a fired send did, in words.
fn fired_detail(notified: i64, late: Duration) -> String {
    let people = if notified == 1 { "user" } else { "users" };
    if late >= Duration::from_secs(1) {
        format!(
            "notified {notified} {people}, {} after its time",
            crate::policy::human(late)
        )
    } else {
        format!("notified {notified} {people}, on time")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_send_says_how_late() {
        assert_eq!(
            fired_detail(3, Duration::from_millis(200)),
            "notified 3 users, on time"
        );
        assert_eq!(
            fired_detail(1, Duration::from_secs(95)),
            "notified 1 user, 1m35s after its time"
        );
    }
}
