//! Supervision: one generic one-for-one supervisor with a restart budget.
//!
//! A [`Supervisor`] owns a fixed set of children, described by a [`Children`] value: how to
//! start them all, how to start one again, and which child a failed actor was. A child that
//! fails is restarted alone, within a [`RestartBudget`]; the supervisor itself never stops
//! because a child ended, and never `?`s a restart: a restart that fails is tried again
//! later. The hub's root and the delivery supervisor are `Supervisor`s; the directories
//! (`crate::directory`) supervise keyed children that are restarted lazily, by the next
//! message for their key, with the same [`RestartBudget`] per key, and share [`ended`] to read
//! a child's end.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use ractor::SupervisionEvent;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};

/// A restart budget: the first failure of a child is restarted at once; each further failure
/// within [`RestartBudget::WINDOW`] doubles the wait before the restart (from 100 ms up to
/// 10 s), so that a child failing in a loop never spins the node.
#[derive(Debug)]
pub struct RestartBudget<K> {
    failures: Vec<(K, std::time::Instant)>,
}

impl<K> Default for RestartBudget<K> {
    fn default() -> Self {
        Self {
            failures: Vec::new(),
        }
    }
}

impl<K: PartialEq + Copy> RestartBudget<K> {
    /// Failures count against the budget this long.
    pub const WINDOW: Duration = Duration::from_secs(60);

    /// Records a failure of `child` and answers how long to wait before restarting it.
    pub fn failed(&mut self, child: K) -> Duration {
        let now = std::time::Instant::now();
        self.failures
            .retain(|(_, at)| now.duration_since(*at) < Self::WINDOW);
        self.failures.push((child, now));
        let recent = self.failures.iter().filter(|(c, _)| *c == child).count() as u32;
        match recent {
            0 | 1 => Duration::ZERO,
            n => (Duration::from_millis(100) * 2u32.saturating_pow((n - 2).min(7)))
                .min(Duration::from_secs(10)),
        }
    }
}

/// How a child ended, read from a supervision event: the child, and why it failed (`None`:
/// it stopped). Other events (a child started, a process group changed) are `None`.
pub fn ended(event: &SupervisionEvent) -> Option<(&ActorCell, Option<String>)> {
    match event {
        SupervisionEvent::ActorTerminated(cell, _, _) => Some((cell, None)),
        SupervisionEvent::ActorFailed(cell, err) => Some((cell, Some(err.to_string()))),
        _ => None,
    }
}

/// The fixed children of a [`Supervisor`].
pub trait Children: Send + Sync + 'static {
    /// Names one child.
    type Key: Copy + Eq + Hash + Debug + Send + Sync + 'static;

    /// What its children are, in logs and in `tickethub_actor_failures_total{kind}`
    /// (`root_child`, `channel`).
    const KIND: &'static str;

    /// Starts every child, linked to `supervisor` (the supervisor's own start; a failure here
    /// fails the supervisor's start).
    fn start_all(&self, supervisor: ActorCell)
        -> impl Future<Output = Result<(), SpawnErr>> + Send;

    /// Starts one child again, linked to `supervisor`, in place of the one that failed.
    fn start(
        &self,
        key: Self::Key,
        supervisor: ActorCell,
    ) -> impl Future<Output = Result<(), SpawnErr>> + Send;

    /// Which child `actor` is, if it is one of the current children.
    fn which(&self, actor: &ActorCell) -> Option<Self::Key>;

    /// The child's name, in logs.
    fn name(key: Self::Key) -> String;
}

/// A one-for-one supervisor of `C`'s children.
pub struct Supervisor<C>(pub Arc<C>);

impl<C> Supervisor<C> {
    /// A supervisor of these children.
    pub fn new(children: C) -> Self {
        Self(Arc::new(children))
    }
}

impl<C> Clone for Supervisor<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// What a supervisor remembers.
pub struct SupervisorState<K> {
    budget: RestartBudget<K>,
    restarts: HashMap<K, u64>,
    down: HashSet<K>,
}

/// Messages of a supervisor.
pub enum SupervisorMsg<K> {
    /// Start a failed child again.
    Restart(K),
    /// How often each child was restarted.
    Restarts(RpcReplyPort<HashMap<K, u64>>),
    /// Whether every child is up (none waits for its restart).
    Healthy(RpcReplyPort<bool>),
    /// Panic inside the handler. Used by fault-injection tests of the supervision tree.
    #[cfg(feature = "testing")]
    InjectFault,
}

/// The least wait before a restart that failed is tried again.
const RETRY_AT_LEAST: Duration = Duration::from_millis(100);

impl<C: Children> Actor for Supervisor<C> {
    type Msg = SupervisorMsg<C::Key>;
    type State = SupervisorState<C::Key>;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        self.0.start_all(myself.get_cell()).await?;
        Ok(SupervisorState {
            budget: RestartBudget::default(),
            restarts: HashMap::new(),
            down: HashSet::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Restarts(reply) => {
                let _ = reply.send(state.restarts.clone());
            }
            SupervisorMsg::Healthy(reply) => {
                let _ = reply.send(state.down.is_empty());
            }
            SupervisorMsg::Restart(child) => match self.0.start(child, myself.get_cell()).await {
                Ok(()) => {
                    state.down.remove(&child);
                }
                Err(e) => {
                    // Never `?`: a failed restart is tried again, the supervisor stays.
                    let wait = state.budget.failed(child).max(RETRY_AT_LEAST);
                    tracing::error!(
                        supervisor = C::KIND,
                        child = C::name(child),
                        error = %e,
                        ?wait,
                        "restart failed; trying again"
                    );
                    myself.send_after(wait, move || SupervisorMsg::Restart(child));
                }
            },
            #[cfg(feature = "testing")]
            SupervisorMsg::InjectFault => {
                panic!("injected fault in the supervisor of {}s", C::KIND)
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A failed child is restarted alone, within its restart budget; the supervisor never
        // stops because a child ended (ractor's default would).
        let SupervisionEvent::ActorFailed(cell, err) = event else {
            return Ok(());
        };
        let Some(child) = self.0.which(&cell) else {
            return Ok(());
        };
        *state.restarts.entry(child).or_default() += 1;
        state.down.insert(child);
        metrics::counter!("tickethub_actor_failures_total", "kind" => C::KIND).increment(1);
        let wait = state.budget.failed(child);
        tracing::error!(
            supervisor = C::KIND,
            child = C::name(child),
            error = %err,
            ?wait,
            "failed; restarting"
        );
        if wait.is_zero() {
            let _ = myself.send_message(SupervisorMsg::Restart(child));
        } else {
            myself.send_after(wait, move || SupervisorMsg::Restart(child));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_budget_waits_longer_for_each_failure_in_its_window() {
        let mut budget = RestartBudget::default();
        let waits: Vec<u128> = (0..10).map(|_| budget.failed('a').as_millis()).collect();
        assert_eq!(
            waits,
            vec![0, 100, 200, 400, 800, 1_600, 3_200, 6_400, 10_000, 10_000]
        );
        // Each child has its own count.
        assert_eq!(budget.failed('b'), Duration::ZERO);
    }
}
