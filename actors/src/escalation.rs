//! Escalation of unseen notifications: policies as data, the steps they plan for a
//! notification, and the supervised actor that fires the due steps.
//!
//! A policy's steps are committed with the notification as rows with a due time (see
//! [`crate::ports::EscalationStore`]), so a restart or a crashed node loses none. Every node's
//! escalation actor claims due rows (`SKIP LOCKED` on PostgreSQL, so no step is claimed twice),
//! decides each one from what the database says now — read, acked, deleted, the ticket moved
//! on — and commits the outcome with the claim check: a step whose claim was lost (its lease ran
//! out and another node took it) commits nothing, so no step fires twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

pub use crate::policy::{human, plan, PlannedStep, Policy, Step, Unless, ESCALATED};
pub use crate::ports::{EscalationJob, Finish};

use crate::domain::{Role, UserId};
use crate::notification::Cause;
use crate::notifier::{Content, Deps};
use crate::ports::StoreError;
use crate::routing::{Audience, Channel, EventType};

/// Why a due step no longer applies, if it does not: the notification was deleted, read, or
/// (for `unless = "acked"`) acknowledged, or its ticket moved past the status that caused it.
pub fn cancel_reason(job: &EscalationJob) -> Option<String> {
    let n = &job.notification;
    if job.deleted {
        return Some("the recipient deleted the notification".into());
    }
    if n.is_read {
        return Some("the recipient read the notification".into());
    }
    if job.step.unless == Unless::Acked && job.acked_seq >= n.seq {
        return Some("a client of the recipient acknowledged the notification".into());
    }
    match (&job.ticket, job.cause_status) {
        (Some(t), Some(cause)) if t.status != cause => Some(format!(
            "the ticket moved from {} to {}",
            cause.as_str(),
            t.status.as_str()
        )),
        _ => None,
    }
}

/// How long an actor of due rows (escalation steps, scheduled sends) waits before it looks
/// again: until the next row it knows of is due by `now` (the database's clock, which the
/// rows are due by), and at most `poll` (other nodes add rows).
/// After a failure, a row given back is due at once: the next look then waits a little, so
/// that a row that keeps failing does not spin the actor.
pub fn next_look(
    next_due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    poll: Duration,
    failed: bool,
) -> Duration {
    let wait = next_due
        .map(|due| (due - now).to_std().unwrap_or(Duration::ZERO))
        .unwrap_or(poll)
        .min(poll);
    let least = if failed {
        (poll / 4).max(Duration::from_millis(50))
    } else {
        Duration::from_millis(10)
    };
    wait.max(least)
}

/// The escalation actor: claims and fires due steps, holding a timer for the next one.
#[derive(Clone, Debug)]
pub struct EscalationActor {
    /// Shared dependencies.
    pub deps: Arc<Deps>,
    /// This hub process, for claims.
    pub node: Arc<str>,
    /// How often the database is looked at for steps due (other nodes schedule too).
    pub poll: Duration,
    /// How long a claim holds before another node may take the step over.
    pub lease: Duration,
}

/// Messages of the escalation actor.
#[derive(Debug)]
pub enum EscalationMsg {
    /// Fire what is due, then set the timer for the next step.
    Tick,
    /// Describe the actor.
    Snapshot(RpcReplyPort<EscalationSnapshot>),
    /// Panic inside the handler, for fault-injection tests.
    #[cfg(feature = "testing")]
    InjectFault,
}

/// A point-in-time view of the escalation actor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EscalationSnapshot {
    /// Steps waiting in the database (every node's).
    pub pending: i64,
    /// When the next one is due.
    pub next_due: Option<DateTime<Utc>>,
    /// Steps this actor fired, cancelled and failed since it started.
    pub fired: u64,
    /// See `fired`.
    pub cancelled: u64,
    /// See `fired`.
    pub failed: u64,
}

/// The state of the escalation actor.
pub struct EscalationState {
    snapshot: EscalationSnapshot,
    /// Whether the database was looked at since the actor started.
    looked: bool,
    timer: Option<JoinHandle<Result<(), ractor::MessagingErr<EscalationMsg>>>>,
}

/// At most this many steps are claimed at once.
const CLAIM_BATCH: i64 = 32;

impl Actor for EscalationActor {
    type Msg = EscalationMsg;
    type State = EscalationState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let _ = myself.send_message(EscalationMsg::Tick);
        Ok(EscalationState {
            snapshot: EscalationSnapshot::default(),
            looked: false,
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
            EscalationMsg::Tick => {
                // Nothing waiting (the usual case without policies): no claim statement.
                let mut failed = false;
                if state.snapshot.pending > 0 || !state.looked {
                    if let Err(e) = self.run_due(state).await {
                        tracing::warn!(error = %e, "escalation: cannot fire due steps; trying again");
                        failed = true;
                    }
                }
                state.looked = true;
                let next_due = match self.deps.store.escalation_outlook().await {
                    Ok((pending, next_due)) => {
                        state.snapshot.pending = pending;
                        state.snapshot.next_due = next_due;
                        metrics::gauge!("tickethub_escalations_pending").set(pending as f64);
                        next_due
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "escalation: cannot read the next due step");
                        None
                    }
                };
                if let Some(t) = state.timer.take() {
                    t.abort();
                }
                let wait = next_look(next_due, self.deps.store.now(), self.poll, failed);
                state.timer = Some(myself.send_after(wait, || EscalationMsg::Tick));
            }
            EscalationMsg::Snapshot(reply) => {
                let _ = reply.send(state.snapshot.clone());
            }
            #[cfg(feature = "testing")]
            EscalationMsg::InjectFault => panic!("injected fault in the escalation actor"),
        }
        Ok(())
    }
}

impl EscalationActor {
    /// Claims and settles due steps until none is left.
    /// Decides and settles one claimed step.
    async fn settle(
        &self,
        state: &mut EscalationState,
        job: EscalationJob,
    ) -> Result<(), StoreError> {
        let store = &self.deps.store;
        let finish = match cancel_reason(&job) {
            Some(reason) => Finish::Cancelled(reason),
            None => self.fire(&job).await?,
        };
        let queued = match &finish {
            Finish::Fired {
                deliveries, drafts, ..
            } => {
                let mut c: Vec<Channel> = deliveries.iter().flat_map(|(c, _)| c.queues()).collect();
                c.extend(Deps::queued_channels(drafts));
                c.sort_by_key(|c| c.as_str());
                c.dedup();
                c
            }
            _ => Vec::new(),
        };
        match store.finish_escalation(job.id, &self.node, finish).await? {
            Some(settled) => {
                let (outcome, notifications) = (settled.outcome, settled.notifications);
                metrics::counter!("tickethub_escalation_steps_total", "outcome" => outcome)
                    .increment(1);
                match outcome {
                    "fired" => state.snapshot.fired += 1,
                    "cancelled" => state.snapshot.cancelled += 1,
                    _ => state.snapshot.failed += 1,
                }
                tracing::info!(
                    step = job.id,
                    notification = job.notification.id,
                    outcome,
                    "escalation step settled"
                );
                self.deps.deliver_queued(notifications, &[]);
                // The recipient's own deliveries are rows of an existing notification: their
                // channels are woken whether or not a notice was committed.
                self.deps.wake(&queued);
            }
            None => {
                tracing::info!(step = job.id, "escalation step taken over by another node");
            }
        }
        Ok(())
    }

    async fn run_due(&self, state: &mut EscalationState) -> Result<(), StoreError> {
        let store = &self.deps.store;
        loop {
            let now = store.now();
            let lease = chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX);
            let jobs = store
                .claim_escalations(&self.node, now, now + lease, CLAIM_BATCH)
                .await?;
            if jobs.is_empty() {
                return Ok(());
            }
            // Each step on its own: one that fails is given back and tried at the next look,
            // and the rest of the batch goes on; a batch with a failure ends this look.
            let mut failed = None;
            for job in jobs {
                let id = job.id;
                if let Err(e) = self.settle(state, job).await {
                    tracing::warn!(step = id, error = %e, "escalation: a step failed; it is tried again at the next look");
                    metrics::counter!("tickethub_escalation_step_errors_total").increment(1);
                    if let Err(e) = store.release_escalations(&[id], &self.node).await {
                        tracing::warn!(step = id, error = %e, "escalation: cannot give a step back; it returns when its claim runs out");
                    }
                    failed = Some(e);
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
    }

    /// What firing a step sends: the recipient's notification on the step's channels they can
    /// be reached on, and a `ticket_escalated` notification to the `also` audience.
    async fn fire(&self, job: &EscalationJob) -> Result<Finish, StoreError> {
        let n = &job.notification;
        let store = &self.deps.store;
        let mut also: Vec<UserId> = Vec::new();
        for audience in &job.step.also {
            match audience {
                Audience::Admins | Audience::SuperAdmins => {
                    for admin in store.users_with_role(Role::Admin).await? {
                        if *audience == Audience::Admins || admin.is_superuser {
                            also.push(admin.id);
                        }
                    }
                }
                Audience::Creator => also.extend(job.ticket.as_ref().map(|t| t.created_by)),
                Audience::Assignees | Audience::NewlyAssigned => {
                    also.extend(job.ticket.iter().flat_map(|t| t.assignees.iter().copied()))
                }
                // Who a text mentioned is known as it commits only.
                Audience::Mentioned => {}
            }
        }
        // Whoever the step's on-call schedules name now, and why.
        let mut on_call = Vec::new();
        for target in &job.step.oncall {
            match crate::notifier::resolve(store.as_ref(), target, store.now()).await {
                Ok(paged) => {
                    also.push(paged.user);
                    on_call.push(paged.why());
                }
                Err(crate::notifier::Unpaged::Store(e)) => return Err(e),
                Err(nobody) => on_call.push(format!("{}: {nobody}", target.name())),
            }
        }
        also.retain(|id| *id != n.user_id);
        also.sort();
        also.dedup();
        let mut candidates = also.clone();
        candidates.push(n.user_id);
        let escalated = EventType::Custom(ESCALATED.into());
        let audience = self.deps.audience(&escalated, &candidates).await?;
        let Some(recipient) = audience.user(n.user_id).filter(|u| u.is_active) else {
            return Ok(Finish::Cancelled(
                "the recipient was deactivated".to_owned(),
            ));
        };
        let name = if recipient.display_name.is_empty() {
            recipient.username.clone()
        } else {
            recipient.display_name.clone()
        };
        let (mut deliveries, skipped) =
            audience.reach(recipient, &job.step.channels, &n.notification_type);
        if let Some(wait) = job.step.push_unless_seen {
            for (channel, address) in &mut deliveries {
                if *channel == Channel::Push {
                    *address = crate::routing::push_held(address, wait);
                }
            }
        }
        let waited = (job.due_at - n.created_at).to_std().unwrap_or_default();
        let content = Content {
            event: escalated,
            title: format!("Escalated: {}", n.title),
            message: format!(
                "{name} has not read \"{}\" for {}: {}",
                n.title,
                human(waited),
                n.message
            ),
            ticket: n.ticket.clone(),
            data: format!(
                "{{\"notification_id\":{},\"policy_step\":{},\"user_id\":{}}}",
                n.id, job.step.step, n.user_id.0
            ),
            action_url: n.action_url.clone(),
            cause: Cause {
                action: "escalate",
                actor: None,
            },
        };
        let mut channels = job.step.channels.clone();
        channels.push(Channel::Websocket);
        let drafts = audience.drafts_for(&also, &channels, &content);
        let mut detail = on_call;
        if !deliveries.is_empty() {
            detail.push(format!(
                "sent on {}",
                deliveries
                    .iter()
                    .map(|(c, _)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for (channel, why) in &skipped {
            detail.push(format!("{}: {why}", channel.as_str()));
        }
        if !drafts.is_empty() {
            detail.push(format!(
                "told {}",
                drafts
                    .iter()
                    .filter_map(|d| audience.user(d.recipient))
                    .map(|u| u.username.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let detail = detail.join("; ");
        if deliveries.is_empty() && drafts.is_empty() {
            return Ok(Finish::Failed(format!("reached nobody: {detail}")));
        }
        Ok(Finish::Fired {
            deliveries,
            drafts,
            detail,
        })
    }
}
