//! Delivery channels: one supervised actor per outbound channel, draining the durable outbox.
//!
//! A channel actor claims due rows, sends each through its [`Transport`] on a task of its own
//! (bounded concurrency), and records the outcome: `SENT`, `FAILED` (permanent error, or out of
//! attempts), or back to `QUEUED` with exponential backoff and jitter. Consecutive retryable
//! failures open a circuit: the actor stops claiming until a cooldown passes, then lets one
//! probe through (half-open). Nothing on the WebSocket path ever waits on a channel: commits
//! only wake the actors.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};

use crate::ports::{Store, Transport, TransportError};
use crate::routing::Channel;

/// How a channel retries.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts before a delivery is `FAILED`.
    pub max_attempts: i64,
    /// The first retry's delay; each next one doubles, up to `max_backoff`.
    pub base_backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
    /// Sends in flight at once per channel.
    pub concurrency: usize,
    /// How long a claim holds a row before another process may take it over.
    pub lease: Duration,
    /// Consecutive retryable failures that open the circuit.
    pub circuit_threshold: u32,
    /// How long an open circuit waits before a probe.
    pub circuit_cooldown: Duration,
    /// How often the actor looks for due retries without being woken.
    pub poll_interval: Duration,
    /// How long a person's updates about a ticket wait for each other.
    pub batching: crate::batch::Batching,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            concurrency: 8,
            lease: Duration::from_secs(120),
            circuit_threshold: 5,
            circuit_cooldown: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            batching: crate::batch::Batching::default(),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempts + 1`: exponential, capped, with jitter in
    /// [half, full], and never sooner than the provider's `Retry-After`, which is itself held to
    /// the longest backoff (a provider, or whoever answers for it, cannot park a row for days).
    pub fn backoff(&self, attempts: i64, retry_after: Option<Duration>) -> Duration {
        let exp = attempts.clamp(1, 30) as u32 - 1;
        let full = self
            .base_backoff
            .saturating_mul(1u32 << exp.min(20))
            .min(self.max_backoff);
        let jittered = full.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        jittered.max(retry_after.unwrap_or_default().min(self.max_backoff))
    }
}

/// The state of a channel's circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Circuit {
    /// Sending normally; counts consecutive retryable failures.
    Closed {
        /// Consecutive retryable failures so far.
        failures: u32,
    },
    /// Not sending until the cooldown passes.
    Open {
        /// When a probe may go.
        until: chrono::DateTime<Utc>,
    },
    /// One probe is allowed; its outcome closes or reopens the circuit.
    HalfOpen {
        /// The delivery sent as the probe, once it is in flight.
        probe: Option<i64>,
    },
}

/// What an attempt says about the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It answered and took the message.
    Healthy,
    /// It answered and refused the message for good (a bad address): nothing about its health.
    Neutral,
    /// It failed (a timeout, a 5xx, a 429).
    Failing,
}

impl Circuit {
    /// `closed`, `open` or `half_open`.
    pub fn name(&self) -> &'static str {
        match self {
            Circuit::Closed { .. } => "closed",
            Circuit::Open { .. } => "open",
            Circuit::HalfOpen { .. } => "half_open",
        }
    }

    /// The circuit after the attempt of delivery `id` at `now`. Closed, the `threshold`th
    /// failure in a row opens it for `cooldown`, a success starts the count again, and a
    /// permanent refusal leaves the count as it is. Half-open, only the probe's own outcome
    /// decides: a failure reopens it, any answer closes it; the late outcome of a send started
    /// before the circuit opened changes nothing. Open, it stays open until its cooldown passes.
    fn after(
        self,
        id: i64,
        verdict: Verdict,
        threshold: u32,
        cooldown: Duration,
        now: chrono::DateTime<Utc>,
    ) -> Circuit {
        let open = || Circuit::Open {
            until: now + chrono::Duration::from_std(cooldown).unwrap_or_default(),
        };
        match (self, verdict) {
            (Circuit::Open { .. }, _) => self,
            (Circuit::HalfOpen { probe }, _) if probe != Some(id) => self,
            (Circuit::HalfOpen { .. }, Verdict::Failing) => open(),
            (Circuit::HalfOpen { .. }, _) => Circuit::Closed { failures: 0 },
            (Circuit::Closed { .. }, Verdict::Healthy) => Circuit::Closed { failures: 0 },
            (Circuit::Closed { .. }, Verdict::Neutral) => self,
            (Circuit::Closed { failures }, Verdict::Failing) => {
                if failures.saturating_add(1) < threshold {
                    Circuit::Closed {
                        failures: failures + 1,
                    }
                } else {
                    open()
                }
            }
        }
    }
}

/// How many due deliveries a channel claims at `now`: none while its circuit is open (an open
/// circuit whose cooldown has passed turns half-open), one probe when half-open, otherwise its
/// free slots, in batches of at least a quarter of its concurrency while sends are in flight.
fn claim_slots(
    circuit: &mut Circuit,
    in_flight: usize,
    concurrency: usize,
    now: chrono::DateTime<Utc>,
) -> usize {
    if let Circuit::Open { until } = *circuit {
        if now < until {
            return 0;
        }
        *circuit = Circuit::HalfOpen { probe: None };
    }
    let free = concurrency.saturating_sub(in_flight);
    match *circuit {
        Circuit::HalfOpen { probe: Some(_) } => 0,
        // One probe, within the concurrency (sends from before the circuit opened may still
        // hold every slot).
        Circuit::HalfOpen { probe: None } => free.min(1),
        // Claim in batches: one query per quarter of the concurrency, not per delivery.
        _ if in_flight > 0 && free < concurrency.div_ceil(4) => 0,
        _ => free,
    }
}

/// What operators see of a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelStatus {
    /// The channel.
    pub channel: Channel,
    /// Its circuit.
    pub circuit: &'static str,
    /// Sends in flight.
    pub in_flight: usize,
    /// Deliveries sent since the actor started.
    pub sent: u64,
    /// Deliveries that failed for good since the actor started.
    pub failed: u64,
    /// Attempts that will be retried, since the actor started.
    pub retried: u64,
    /// Pushes not sent because their notification was seen while they waited.
    pub suppressed: u64,
    /// Wakes since the actor started: by the poll, and by each commit that queued a delivery on
    /// the channel.
    pub wakes: u64,
}

/// The outcome of one attempt, as far as the circuit and the counters go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent.
    Sent,
    /// Failed for good (a permanent error, or out of attempts after a retryable one).
    Failed {
        /// Whether the last error was retryable (so it counts against the provider).
        retryable: bool,
    },
    /// Queued again for a later attempt.
    Retried,
    /// Not sent: the notification was seen while the delivery waited for it not to be.
    Suppressed,
    /// Not sent yet: quiet hours or a maintenance window hold it back, untried.
    Held,
}

/// A channel actor.
#[derive(Clone)]
pub struct ChannelActor {
    /// Its channel.
    pub channel: Channel,
    /// The database.
    pub store: Arc<dyn Store>,
    /// The provider.
    pub transport: Arc<dyn Transport>,
    /// How it retries.
    pub policy: RetryPolicy,
    /// This hub process's id, written on the rows it claims.
    pub node: Arc<str>,
    /// The deliveries whose send task is running. Shared by the channel's actor and its
    /// restarts: a restarted actor never takes back (and sends again) a row a task of its
    /// failed predecessor is still sending.
    pub sending: Arc<std::sync::Mutex<HashSet<i64>>>,
}

/// Takes a delivery out of [`ChannelActor::sending`] when its task ends, however it ends.
struct Sending {
    set: Arc<std::sync::Mutex<HashSet<i64>>>,
    id: i64,
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.set
            .lock()
            .expect("sending set poisoned")
            .remove(&self.id);
    }
}

/// A channel actor's state.
pub struct ChannelState {
    circuit: Circuit,
    in_flight: HashSet<i64>,
    ticker: Option<JoinHandle<()>>,
    sent: u64,
    failed: u64,
    retried: u64,
    suppressed: u64,
    wakes: u64,
    /// Set by `InjectSendPanic`: the next send panics.
    panic_next_send: bool,
}

/// Messages a channel actor handles.
pub enum ChannelMsg {
    /// New deliveries may be queued.
    Wake,
    /// A send finished and its outcome is recorded.
    Done {
        /// The delivery.
        id: i64,
        /// What happened.
        outcome: Outcome,
    },
    /// Report the channel's status.
    Status(RpcReplyPort<ChannelStatus>),
    /// Panic inside the handler, for fault-injection tests.
    #[cfg(feature = "testing")]
    InjectFault,
    /// Make the next send panic on its task, for fault-injection tests.
    #[cfg(feature = "testing")]
    InjectSendPanic,
}

impl Actor for ChannelActor {
    type Msg = ChannelMsg;
    type State = ChannelState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        // Take back what a failed predecessor in this process held; rows queued before a crash
        // or restart are picked up by the first tick.
        let sending: Vec<i64> = self
            .sending
            .lock()
            .expect("sending set poisoned")
            .iter()
            .copied()
            .collect();
        self.store
            .delivery_reclaim(self.channel, &self.node, &sending)
            .await?;
        let ticker = myself.send_interval(self.policy.poll_interval, || ChannelMsg::Wake);
        Ok(ChannelState {
            circuit: Circuit::Closed { failures: 0 },
            in_flight: HashSet::new(),
            ticker: Some(ticker),
            sent: 0,
            failed: 0,
            retried: 0,
            suppressed: 0,
            wakes: 0,
            panic_next_send: false,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.ticker.take() {
            t.abort();
        }
        // Let the sends in flight finish and record (bounded by about the provider timeout), then give
        // back anything still held, so that another node sends it at once rather than after
        // the lease; a send is never released while a task may still make it.
        // (The lease is at least twice the provider timeout.)
        let deadline =
            tokio::time::Instant::now() + (self.policy.lease / 2).min(Duration::from_secs(10));
        while tokio::time::Instant::now() < deadline
            && state.in_flight.iter().any(|id| {
                self.sending
                    .lock()
                    .expect("sending set poisoned")
                    .contains(id)
            })
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let held: Vec<i64> = {
            let sending = self.sending.lock().expect("sending set poisoned");
            state
                .in_flight
                .drain()
                .filter(|id| !sending.contains(id))
                .collect()
        };
        if !held.is_empty() {
            release(self.store.as_ref(), self.channel, &held).await;
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
            ChannelMsg::Wake => state.wakes += 1,
            ChannelMsg::Done { id, outcome } => {
                state.in_flight.remove(&id);
                self.account(state, id, outcome);
            }
            ChannelMsg::Status(reply) => {
                let _ = reply.send(ChannelStatus {
                    channel: self.channel,
                    circuit: state.circuit.name(),
                    in_flight: state.in_flight.len(),
                    sent: state.sent,
                    failed: state.failed,
                    retried: state.retried,
                    suppressed: state.suppressed,
                    wakes: state.wakes,
                });
                return Ok(());
            }
            #[cfg(feature = "testing")]
            ChannelMsg::InjectFault => {
                panic!("injected fault in the {} channel", self.channel.as_str())
            }
            #[cfg(feature = "testing")]
            ChannelMsg::InjectSendPanic => state.panic_next_send = true,
        }
        self.drain(&myself, state).await;
        Ok(())
    }
}

impl ChannelActor {
    /// Claims as many due rows as the circuit and the concurrency bound allow, and starts
    /// sending them.
    async fn drain(&self, myself: &ActorRef<ChannelMsg>, state: &mut ChannelState) {
        let now = self.store.now();
        let slots = claim_slots(
            &mut state.circuit,
            state.in_flight.len(),
            self.policy.concurrency,
            now,
        );
        if slots == 0 {
            return;
        }
        let lease = now + chrono::Duration::from_std(self.policy.lease).unwrap_or_default();
        let jobs = match self
            .store
            .claim(self.channel, &self.node, slots as i64, now, lease)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(channel = self.channel.as_str(), error = %e, "cannot claim deliveries");
                return;
            }
        };
        if let Circuit::HalfOpen { probe } = &mut state.circuit {
            *probe = jobs.first().map(|j| j.id);
        }
        for job in jobs {
            state.in_flight.insert(job.id);
            self.sending
                .lock()
                .expect("sending set poisoned")
                .insert(job.id);
            let guard = Sending {
                set: self.sending.clone(),
                id: job.id,
            };
            let transport = self.transport.clone();
            let store = self.store.clone();
            let policy = self.policy.clone();
            let node = self.node.clone();
            let myself = myself.clone();
            let id = job.id;
            let job_channel = job.channel;
            let injected_panic = std::mem::take(&mut state.panic_next_send);
            // A send that panics is caught: it still frees its slot and gives its row back,
            // and the actor always hears.
            tokio::spawn(async move {
                use futures::FutureExt;
                let _guard = guard;
                // The task records its own outcome, so that sends and their writes run in
                // parallel; the actor only accounts for the circuit.
                let work = async {
                    if injected_panic {
                        panic!("injected panic in a send");
                    }
                    if job.seen {
                        let why = "the notification was seen before the push was due";
                        return suppress(store.as_ref(), &node, &job, why).await;
                    }
                    if let Some(reason) = &job.suppressed {
                        let why = format!("the address is on the suppression list: {reason}");
                        return suppress(store.as_ref(), &node, &job, &why).await;
                    }
                    if let Some(hold) = holds(store.as_ref(), &job).await {
                        return hold_back(store.as_ref(), &node, &job, hold).await;
                    }
                    let batching = &policy.batching;
                    let n = &job.notification;
                    if let Some(until) =
                        batching.wait_until(job.channel, n, job.attempts, store.now())
                    {
                        let hold = crate::quiet::Hold {
                            until,
                            reason: "batch",
                        };
                        return hold_back(store.as_ref(), &node, &job, hold).await;
                    }
                    let mut job = job;
                    if batching.batches(job.channel, &job.notification) {
                        let channel = job.channel;
                        let joins =
                            |n: &crate::notification::Notification| batching.batches(channel, n);
                        match store.gather_batch(job.id, &node, &joins).await {
                            Ok(Some(batch)) => job.batch = batch,
                            Ok(None) => {
                                // An older one leads the batch: it gathers this one soon.
                                let until = store.now() + chrono::Duration::seconds(1);
                                let hold = crate::quiet::Hold {
                                    until,
                                    reason: "batch",
                                };
                                return hold_back(store.as_ref(), &node, &job, hold).await;
                            }
                            Err(e) => {
                                tracing::warn!(id = job.id, error = %e, "cannot gather a delivery's batch; it goes alone")
                            }
                        }
                    }
                    let result = transport.send(&job).await;
                    settle_device(store.as_ref(), &job, &result).await;
                    settle_address(store.as_ref(), &job, &result).await;
                    record(store.as_ref(), &policy, &node, &job, result).await
                };
                let outcome = match std::panic::AssertUnwindSafe(work).catch_unwind().await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        tracing::error!(
                            id,
                            "a delivery send panicked; its row goes back to the queue"
                        );
                        release(store.as_ref(), job_channel, &[id]).await;
                        Outcome::Retried
                    }
                };
                let _ = myself.send_message(ChannelMsg::Done { id, outcome });
            });
        }
    }

    /// Moves the circuit and the counters after an attempt.
    fn account(&self, state: &mut ChannelState, id: i64, outcome: Outcome) {
        let verdict = state.count(&outcome);
        let next = state.circuit.after(
            id,
            verdict,
            self.policy.circuit_threshold,
            self.policy.circuit_cooldown,
            Utc::now(),
        );
        if matches!(next, Circuit::Open { .. }) && !matches!(state.circuit, Circuit::Open { .. }) {
            tracing::warn!(channel = self.channel.as_str(), "circuit opens");
        }
        state.circuit = next;
    }
}

impl ChannelState {
    /// Counts an attempt's outcome; answers what it says about the provider.
    fn count(&mut self, outcome: &Outcome) -> Verdict {
        match outcome {
            Outcome::Sent => {
                self.sent += 1;
                Verdict::Healthy
            }
            Outcome::Failed { retryable: true } => {
                self.failed += 1;
                Verdict::Failing
            }
            Outcome::Failed { retryable: false } => {
                self.failed += 1;
                Verdict::Neutral
            }
            Outcome::Retried => {
                self.retried += 1;
                Verdict::Failing
            }
            Outcome::Suppressed => {
                self.suppressed += 1;
                Verdict::Neutral
            }
            Outcome::Held => Verdict::Neutral,
        }
    }
}

/// Gives claimed rows back to the queue; a failure is logged and counted (the rows are taken
/// back anyway once their claim runs out).
async fn release(store: &dyn Store, channel: Channel, ids: &[i64]) {
    if let Err(e) = store.delivery_release(ids).await {
        tracing::warn!(channel = channel.as_str(), rows = ids.len(), error = %e, "cannot give claimed deliveries back; they return when their claim runs out");
        metrics::counter!("tickethub_outbox_release_failures_total", "channel" => channel.as_str())
            .increment(1);
    }
}

/// After a push's attempt: a device its provider says is gone is removed (with its other
/// queued pushes), and one that took the push is marked used. A failure to write is logged:
/// the device is tried again by the next push, and found gone again.
async fn settle_device(
    store: &dyn Store,
    job: &crate::ports::DeliveryJob,
    result: &Result<Option<String>, TransportError>,
) {
    let Some(device) = &job.device else {
        return;
    };
    let written = match result {
        Err(TransportError::Gone(why)) => {
            tracing::info!(device = device.id, channel = job.channel.as_str(), %why, "a push device is gone; it is removed");
            metrics::counter!("tickethub_push_devices_pruned_total", "channel" => job.channel.as_str())
                .increment(1);
            store.device_gone(device.id).await.map(|_| ())
        }
        Ok(_) => store.device_used(device.id, Utc::now()).await,
        Err(_) => Ok(()),
    };
    if let Err(e) = written {
        tracing::warn!(device = device.id, error = %e, "cannot record a push device's state");
    }
}

/// After an attempt the provider refused because the address cannot be reached for good (an
/// SMS number that is not a valid mobile number, or that unsubscribed): the user's number is
/// marked, with the SMS still queued to it, so that none is sent again until they set a
/// number, and the number goes on the suppression list. A failure to write is logged: the next SMS is refused again, and marks it then.
async fn settle_address(
    store: &dyn Store,
    job: &crate::ports::DeliveryJob,
    result: &Result<Option<String>, TransportError>,
) {
    let Err(TransportError::Unreachable(why)) = result else {
        return;
    };
    if job.channel != Channel::Sms {
        return;
    }
    let user = job.notification.user_id;
    tracing::info!(user = user.0, channel = job.channel.as_str(), %why, "a phone number is refused for good; no SMS goes to it until it is set again");
    metrics::counter!("tickethub_phone_numbers_invalidated_total", "channel" => job.channel.as_str())
        .increment(1);
    let note = format!("the number was refused for good ({why})");
    let now = Utc::now();
    if let Err(e) = store
        .phone_number_invalid(user, &job.address, &note, now)
        .await
    {
        tracing::warn!(user = user.0, error = %e, "cannot mark a phone number invalid");
    }
    let entry = crate::ports::NewSuppression {
        channel: job.channel,
        address: &job.address,
        source: "provider",
        reason: why,
        delivery_id: Some(job.id),
        at: now,
    };
    if let Err(e) = store.suppress(entry).await {
        tracing::warn!(user = user.0, error = %e, "cannot put a number on the suppression list");
    }
}

/// Records a delivery not sent: its notification was seen while it waited, or its address is
/// on the suppression list.
async fn suppress(
    store: &dyn Store,
    node: &str,
    job: &crate::ports::DeliveryJob,
    why: &str,
) -> Outcome {
    match store.delivery_suppressed(job.id, node, why).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(id = job.id, "a delivery's claim was lost"),
        Err(e) => {
            tracing::warn!(id = job.id, error = %e, "cannot record a suppressed delivery; the row is taken back once its claim runs out")
        }
    }
    metrics::counter!("tickethub_outbox_attempts_total", "channel" => job.channel.as_str(), "result" => "suppressed")
        .increment(1);
    Outcome::Suppressed
}

/// Whether a claimed delivery waits: a maintenance window of its ticket's project holds any
/// channel; the recipient's quiet hours hold a channel that reaches a person, unless the
/// notification is a page. A hold that cannot be read holds nothing back.
async fn holds(store: &dyn Store, job: &crate::ports::DeliveryJob) -> Option<crate::quiet::Hold> {
    let now = store.now();
    let n = &job.notification;
    let maintenance = match &n.ticket {
        Some(t) => store.maintenance_until(t.id, now).await,
        None => Ok(None),
    };
    let personal = matches!(
        job.channel.reach(),
        crate::event::Reach::Personal | crate::event::Reach::Devices
    );
    let quiet = match personal {
        true => store.quiet(n.user_id).await.map(|q| q.hours),
        false => Ok(None),
    };
    match (maintenance, quiet) {
        (Ok(until), Ok(hours)) => {
            crate::quiet::hold(now, hours.as_ref(), crate::reply::is_page(n), until)
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(id = job.id, error = %e, "cannot read a delivery's holds; it goes now");
            None
        }
    }
}

/// Puts a held delivery back until its hold ends.
async fn hold_back(
    store: &dyn Store,
    node: &str,
    job: &crate::ports::DeliveryJob,
    hold: crate::quiet::Hold,
) -> Outcome {
    match store
        .hold_delivery(job.id, node, hold.until, hold.reason)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(id = job.id, "a delivery's claim was lost"),
        Err(e) => {
            tracing::warn!(id = job.id, error = %e, "cannot hold a delivery back; the row is taken back once its claim runs out")
        }
    }
    metrics::counter!("tickethub_outbox_held_total", "channel" => job.channel.as_str(), "reason" => hold.reason)
        .increment(1);
    Outcome::Held
}

/// What an attempt's outcome writes to the outbox.
enum Write {
    Sent(Option<String>),
    Failed(String),
    Retry(chrono::DateTime<Utc>, String),
}

/// What attempt number `attempts`, which ended at `now` with `result`, comes to: sent, failed
/// for good (a permanent error, or the last attempt allowed), or retried after a backoff.
fn decide(
    policy: &RetryPolicy,
    attempts: i64,
    result: Result<Option<String>, TransportError>,
    now: chrono::DateTime<Utc>,
) -> (Outcome, Write) {
    match result {
        Ok(provider_id) => (Outcome::Sent, Write::Sent(provider_id)),
        Err(TransportError::Permanent(error)) => {
            (Outcome::Failed { retryable: false }, Write::Failed(error))
        }
        Err(TransportError::Gone(error)) => (
            Outcome::Failed { retryable: false },
            Write::Failed(format!("the device is gone ({error}); it was removed")),
        ),
        Err(TransportError::Unreachable(error)) => (
            Outcome::Failed { retryable: false },
            Write::Failed(format!(
                "{error}; the address is marked invalid and gets nothing more until it is set again"
            )),
        ),
        Err(TransportError::Retryable {
            message,
            retry_after,
        }) => {
            if attempts >= policy.max_attempts {
                let error = format!("gave up after {attempts} attempts: {message}");
                (Outcome::Failed { retryable: true }, Write::Failed(error))
            } else {
                let delay = policy.backoff(attempts, retry_after);
                let next = now + chrono::Duration::from_std(delay).unwrap_or_default();
                (Outcome::Retried, Write::Retry(next, message))
            }
        }
    }
}

/// Records one attempt's outcome in the outbox: `SENT`, `FAILED`, or back to `QUEUED` with
/// backoff. A write that fails is tried again, with a doubling wait, for as long as half the
/// claim's lease: a send that went out must not be sent again because its record did not land
/// (only past the lease, with the database down all that time, is the row taken back and sent
/// once more).
async fn record(
    store: &dyn Store,
    policy: &RetryPolicy,
    node: &str,
    job: &crate::ports::DeliveryJob,
    result: Result<Option<String>, TransportError>,
) -> Outcome {
    let attempts = job.attempts + 1;
    let (outcome, write) = decide(policy, attempts, result, store.now());
    let give_up = tokio::time::Instant::now() + policy.lease / 2;
    let mut wait = std::time::Duration::from_millis(50);
    let written = loop {
        let written = match &write {
            Write::Sent(provider_id) => {
                store
                    .delivery_sent(job.id, node, attempts, provider_id.as_deref())
                    .await
            }
            Write::Failed(error) => store.delivery_failed(job.id, node, attempts, error).await,
            Write::Retry(next, message) => {
                store
                    .delivery_retry(job.id, node, attempts, *next, message)
                    .await
            }
        };
        match written {
            Err(e) if tokio::time::Instant::now() + wait < give_up => {
                tracing::warn!(id = job.id, error = %e, ?wait, "cannot record a delivery's outcome; trying again");
                metrics::counter!("tickethub_outbox_record_retries_total", "channel" => job.channel.as_str())
                    .increment(1);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
            other => break other,
        }
    };
    match written {
        Ok(true) => {}
        // The claim ran out and another attempt holds the row: its outcome stands.
        Ok(false) => {
            tracing::warn!(
                id = job.id,
                "a delivery's claim was lost; its outcome is not recorded"
            );
            metrics::counter!("tickethub_outbox_claims_lost_total", "channel" => job.channel.as_str())
                .increment(1);
        }
        Err(e) => {
            tracing::error!(id = job.id, error = %e, "cannot record a delivery's outcome; the row is taken back once its claim runs out");
            metrics::counter!("tickethub_outbox_record_failures_total", "channel" => job.channel.as_str())
                .increment(1);
        }
    }
    let result = match outcome {
        Outcome::Sent => "sent",
        Outcome::Failed { .. } => "failed",
        Outcome::Retried => "retried",
        Outcome::Suppressed => "suppressed",
        Outcome::Held => "held",
    };
    metrics::counter!("tickethub_outbox_attempts_total", "channel" => job.channel.as_str(), "result" => result)
        .increment(1);
    outcome
}

/// The live channel actors, by channel.
pub type ChannelMap = Arc<RwLock<HashMap<Channel, ActorRef<ChannelMsg>>>>;

/// The channel actors, as children of their supervisor: a failed one is restarted alone, its
/// rows staying in the outbox for the new actor.
pub struct Channels {
    /// The actors to run.
    pub channels: Vec<ChannelActor>,
    /// The map the supervisor keeps current.
    pub map: ChannelMap,
}

/// Supervises the channel actors.
pub type DeliverySupervisor = crate::supervision::Supervisor<Channels>;

/// Messages of the delivery supervisor.
pub type DeliveryMsg = crate::supervision::SupervisorMsg<Channel>;

impl Channels {
    async fn start_one(&self, spec: &ChannelActor, supervisor: ActorCell) -> Result<(), SpawnErr> {
        let (actor, _) = Actor::spawn_linked(None, spec.clone(), (), supervisor).await?;
        self.map
            .write()
            .expect("channel map poisoned")
            .insert(spec.channel, actor);
        Ok(())
    }
}

impl crate::supervision::Children for Channels {
    type Key = Channel;
    const KIND: &'static str = "channel";

    async fn start_all(&self, supervisor: ActorCell) -> Result<(), SpawnErr> {
        for spec in &self.channels {
            self.start_one(spec, supervisor.clone()).await?;
        }
        Ok(())
    }

    async fn start(&self, key: Channel, supervisor: ActorCell) -> Result<(), SpawnErr> {
        match self.channels.iter().find(|s| s.channel == key) {
            Some(spec) => self.start_one(spec, supervisor).await,
            None => Ok(()),
        }
    }

    fn which(&self, actor: &ActorCell) -> Option<Channel> {
        self.map
            .read()
            .expect("channel map poisoned")
            .iter()
            .find(|(_, a)| a.get_id() == actor.get_id())
            .map(|(c, _)| *c)
    }

    fn name(key: Channel) -> String {
        format!("{} channel", key.as_str())
    }
}

#[cfg(test)]
mod tests;
