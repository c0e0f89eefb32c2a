//! Directories: get-or-spawn of keyed actors (users, tickets), and their supervisor.
//!
//! A directory is the only writer of its shared [`Map`]; anyone may read the map to find an
//! actor without a message round trip. It prunes an actor from the map when it stops or fails,
//! counts failures, and can drive a periodic tick of every child from one timer.
//!
//! A directory is a one-for-one supervisor of keyed children restarted lazily: the next message
//! for a key starts its actor again. It keeps the same [`RestartBudget`] as the fixed
//! supervisors of [`crate::supervision`]: the first failure of a key restarts at once, a key that
//! keeps failing waits longer each time, and the messages for it meanwhile wait in order.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::supervision::RestartBudget;

/// Messages held for one key while it waits for its restart; past this, the oldest are dropped.
const HELD_PER_KEY: usize = 10_000;

/// The live actors of a directory by key, readable by everyone.
pub type Map<K, M> = Arc<RwLock<HashMap<K, ActorRef<M>>>>;

/// An actor that lives in a directory under a key.
pub trait Keyed: Actor + Clone {
    /// What the actor is found by.
    type Key: Copy + Eq + Hash + Ord + Debug + Send + Sync + 'static;
    /// The kind of actor, for logs and operators.
    const KIND: &'static str;
    /// The actor's name for operators, e.g. `user:5`.
    fn label(key: Self::Key) -> String;
    /// The startup arguments for the actor of `key`.
    fn arguments(&self, key: Self::Key) -> Self::Arguments;
}

/// A periodic message: how often, and how to make it.
pub type Tick<M> = (Duration, fn() -> M);

/// A directory of keyed actors.
pub struct Directory<A: Keyed> {
    /// How each child is built.
    pub spec: A,
    /// The map this directory maintains.
    pub map: Map<A::Key, A::Msg>,
    /// An optional periodic message sent to every child.
    pub tick: Option<Tick<A::Msg>>,
}

impl<A: Keyed> Clone for Directory<A> {
    fn clone(&self) -> Self {
        Self {
            spec: self.spec.clone(),
            map: self.map.clone(),
            tick: self.tick,
        }
    }
}

/// Counters a directory keeps about its children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryStats {
    /// Children alive now.
    pub actors: usize,
    /// Children that failed (panicked or returned an error) since the hub started.
    pub failures: u64,
    /// The last failure's message, if any.
    pub last_failure: Option<String>,
}

/// A directory's state.
pub struct DirectoryState<K, M> {
    by_actor: HashMap<ActorId, (K, std::time::Instant)>,
    stats: DirectoryStats,
    ticker: Option<JoinHandle<()>>,
    failures_by_key: HashMap<K, u32>,
    budget: RestartBudget<K>,
    /// Messages for keys whose restart waits, in arrival order.
    held: HashMap<K, VecDeque<M>>,
}

/// One child in a directory listing.
#[derive(Debug, Clone)]
pub struct Listed<K, M> {
    /// Its key.
    pub key: K,
    /// The actor.
    pub actor: ActorRef<M>,
    /// How long it has been alive.
    pub uptime: std::time::Duration,
    /// How often an actor of this key failed since the hub started.
    pub failures: u32,
}

/// A page of a directory's children, ordered by key.
#[derive(Debug, Clone)]
pub struct Listing<K, M> {
    /// Children that matched the filter, in all.
    pub total: usize,
    /// The requested slice.
    pub items: Vec<Listed<K, M>>,
    /// The directory's counters.
    pub stats: DirectoryStats,
}

/// Which children a listing shows.
#[derive(Debug, Clone, Default)]
pub struct ListFilter<K> {
    /// Only children whose label contains this text…
    pub label: Option<String>,
    /// …or whose key is one of these.
    pub keys: Option<Vec<K>>,
    /// Rows to skip.
    pub offset: usize,
    /// Rows to return.
    pub limit: usize,
}

/// Messages a directory handles.
pub enum DirectoryMsg<K, M> {
    /// Deliver `msg` to the actor of `key`, starting it if needed. If it cannot start (its
    /// `pre_start` fails), the message is dropped, and with it any reply port it carries.
    Forward {
        /// Whose actor.
        key: K,
        /// The message.
        msg: M,
    },
    /// Send the tick message to every child.
    Tick,
    /// Send a message to every child; answers how many were sent one.
    Broadcast(fn() -> M, RpcReplyPort<usize>),
    /// Report the counters.
    Stats(RpcReplyPort<DirectoryStats>),
    /// List a page of children; the directory answers from its own state, without asking the
    /// children anything.
    List(ListFilter<K>, RpcReplyPort<Listing<K, M>>),
    /// Panic inside the handler. Used by fault-injection tests of the supervision tree.
    #[cfg(feature = "testing")]
    InjectFault,
    /// The wait before restarting the actor of this key is over: start it with what was held.
    Restart(K),
}

impl<A: Keyed> Actor for Directory<A> {
    type Msg = DirectoryMsg<A::Key, A::Msg>;
    type State = DirectoryState<A::Key, A::Msg>;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        // A restarted directory starts from an empty map: the previous one's children are gone.
        self.map.write().expect("directory map poisoned").clear();
        let ticker = self
            .tick
            .map(|(every, _)| myself.send_interval(every, || DirectoryMsg::Tick));
        Ok(DirectoryState {
            by_actor: HashMap::new(),
            stats: DirectoryStats::default(),
            ticker,
            failures_by_key: HashMap::new(),
            budget: RestartBudget::default(),
            held: HashMap::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(h) = state.ticker.take() {
            h.abort();
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
            #[cfg(feature = "testing")]
            DirectoryMsg::InjectFault => panic!("injected fault in a directory"),
            DirectoryMsg::Forward { key, msg } => {
                if let Some(queue) = state.held.get_mut(&key) {
                    if queue.len() >= HELD_PER_KEY {
                        queue.pop_front();
                    }
                    queue.push_back(msg);
                    return Ok(());
                }
                if let Some(actor) = self.actor_for(key, &myself, state).await {
                    // If the actor stops before it reads this, any reply port is dropped and
                    // the caller retries or reports the failure.
                    let _ = actor.send_message(msg);
                }
            }
            DirectoryMsg::Restart(key) => {
                let held = state.held.remove(&key).unwrap_or_default();
                if let Some(actor) = self.actor_for(key, &myself, state).await {
                    for msg in held {
                        let _ = actor.send_message(msg);
                    }
                }
            }
            DirectoryMsg::Tick => {
                if let Some((_, make)) = self.tick {
                    for actor in self.map.read().expect("directory map poisoned").values() {
                        let _ = actor.send_message(make());
                    }
                }
            }
            DirectoryMsg::Broadcast(make, reply) => {
                let actors: Vec<_> = self
                    .map
                    .read()
                    .expect("directory map poisoned")
                    .values()
                    .cloned()
                    .collect();
                for actor in &actors {
                    let _ = actor.send_message(make());
                }
                let _ = reply.send(actors.len());
            }
            DirectoryMsg::Stats(reply) => {
                let mut stats = state.stats.clone();
                stats.actors = state.by_actor.len();
                let _ = reply.send(stats);
            }
            DirectoryMsg::List(filter, reply) => {
                let map = self.map.read().expect("directory map poisoned");
                let mut rows: Vec<(A::Key, std::time::Instant, ActorRef<A::Msg>)> = state
                    .by_actor
                    .values()
                    .filter(|(key, _)| {
                        let by_label = filter
                            .label
                            .as_deref()
                            .is_none_or(|q| A::label(*key).contains(q));
                        let by_key = filter.keys.as_ref().is_some_and(|keys| keys.contains(key));
                        if filter.label.is_some() && filter.keys.is_some() {
                            by_label || by_key
                        } else {
                            by_label && filter.keys.as_ref().is_none_or(|_| by_key)
                        }
                    })
                    .filter_map(|(key, started)| map.get(key).map(|a| (*key, *started, a.clone())))
                    .collect();
                drop(map);
                rows.sort_by_key(|(key, _, _)| *key);
                let total = rows.len();
                let items = rows
                    .into_iter()
                    .skip(filter.offset)
                    .take(filter.limit)
                    .map(|(key, started, actor)| Listed {
                        key,
                        actor,
                        uptime: started.elapsed(),
                        failures: state.failures_by_key.get(&key).copied().unwrap_or(0),
                    })
                    .collect();
                let mut stats = state.stats.clone();
                stats.actors = state.by_actor.len();
                let _ = reply.send(Listing {
                    total,
                    items,
                    stats,
                });
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
        // Unlike ractor's default, a child's exit never stops the directory; the next message
        // for its key starts a fresh one.
        let Some((cell, failure)) = crate::supervision::ended(&event) else {
            return Ok(());
        };
        if let Some((key, _)) = state.by_actor.remove(&cell.get_id()) {
            let mut map = self.map.write().expect("directory map poisoned");
            if map.get(&key).map(|a| a.get_id()) == Some(cell.get_id()) {
                map.remove(&key);
            }
            if let Some(err) = failure {
                tracing::warn!(kind = A::KIND, ?key, error = %err, "actor failed; removed");
                metrics::counter!("tickethub_actor_failures_total", "kind" => A::KIND).increment(1);
                if state.failures_by_key.len() < 100_000 {
                    *state.failures_by_key.entry(key).or_default() += 1;
                }
                state.stats.failures += 1;
                state.stats.last_failure = Some(err);
                let wait = state.budget.failed(key);
                if !wait.is_zero() && !state.held.contains_key(&key) {
                    state.held.insert(key, VecDeque::new());
                    myself.send_after(wait, move || DirectoryMsg::Restart(key));
                }
            }
        }
        Ok(())
    }
}

impl<A: Keyed> Directory<A> {
    /// The live actor of `key`, started if there is none; `None` if it cannot start (its
    /// `pre_start` fails).
    async fn actor_for(
        &self,
        key: A::Key,
        myself: &ActorRef<DirectoryMsg<A::Key, A::Msg>>,
        state: &mut DirectoryState<A::Key, A::Msg>,
    ) -> Option<ActorRef<A::Msg>> {
        let existing = self
            .map
            .read()
            .expect("directory map poisoned")
            .get(&key)
            .cloned();
        if let Some(actor) = existing {
            if ractor::ACTIVE_STATES.contains(&actor.get_status()) {
                return Some(actor);
            }
        }
        let spawned = Actor::spawn_linked(
            None,
            self.spec.clone(),
            self.spec.arguments(key),
            myself.get_cell(),
        )
        .await;
        match spawned {
            Ok((actor, _)) => {
                state
                    .by_actor
                    .insert(actor.get_id(), (key, std::time::Instant::now()));
                self.map
                    .write()
                    .expect("directory map poisoned")
                    .insert(key, actor.clone());
                Some(actor)
            }
            Err(e) => {
                tracing::debug!(kind = A::KIND, ?key, error = %e, "cannot start actor");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that records what it hears and fails on `Crash`.
    #[derive(Clone)]
    struct Echo(tokio::sync::mpsc::UnboundedSender<(u32, &'static str)>);

    enum EchoMsg {
        Say(&'static str),
        Crash,
    }

    impl Actor for Echo {
        type Msg = EchoMsg;
        type State = u32;
        type Arguments = u32;

        async fn pre_start(
            &self,
            _: ActorRef<EchoMsg>,
            key: u32,
        ) -> Result<u32, ActorProcessingErr> {
            Ok(key)
        }

        async fn handle(
            &self,
            _: ActorRef<EchoMsg>,
            msg: EchoMsg,
            key: &mut u32,
        ) -> Result<(), ActorProcessingErr> {
            match msg {
                EchoMsg::Say(word) => {
                    let _ = self.0.send((*key, word));
                    Ok(())
                }
                EchoMsg::Crash => Err("crash".into()),
            }
        }
    }

    impl Keyed for Echo {
        type Key = u32;
        const KIND: &'static str = "echo";
        fn label(key: u32) -> String {
            format!("echo:{key}")
        }
        fn arguments(&self, key: u32) -> u32 {
            key
        }
    }

    #[tokio::test]
    async fn a_key_that_keeps_failing_waits_for_its_restart_and_keeps_its_messages_in_order() {
        let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
        let directory = Directory {
            spec: Echo(tx),
            map: Map::default(),
            tick: None,
        };
        let (dir, handle) = Actor::spawn(None, directory, ()).await.unwrap();
        let say = |key, word| {
            dir.send_message(DirectoryMsg::Forward {
                key,
                msg: EchoMsg::Say(word),
            })
            .unwrap()
        };
        let crash = |key| {
            dir.send_message(DirectoryMsg::Forward {
                key,
                msg: EchoMsg::Crash,
            })
            .unwrap()
        };

        // Until the directory reads a failure, messages still go to the failing actor and are
        // lost with it (as for any actor); so the test waits for each failure to be counted.
        let failures = |n: u64| {
            let dir = dir.clone();
            async move {
                while ractor::call!(dir, DirectoryMsg::Stats).unwrap().failures < n {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };

        // The first failure restarts at once.
        crash(1);
        failures(1).await;
        say(1, "a");
        assert_eq!(heard.recv().await, Some((1, "a")));

        // The second, within the window, holds key 1's messages until its wait is over; they
        // arrive in order, and other keys are not held.
        crash(1);
        failures(2).await;
        for word in ["b", "c", "d"] {
            say(1, word);
        }
        say(2, "x");
        assert_eq!(heard.recv().await, Some((2, "x")));
        for word in ["b", "c", "d"] {
            assert_eq!(heard.recv().await, Some((1, word)));
        }

        dir.stop(None);
        handle.await.unwrap();
    }
}
