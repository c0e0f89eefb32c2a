//! The nemesis: faults chosen by a seed, overlapping, each undone after a while.

use super::*;
use crate::nodes::RedisServer;

/// The Redis the nodes share: one server, a primary and its replica watched by a Sentinel, or
/// a Cluster of three masters and their replicas. On the last two the nemesis kills and
/// freezes whichever server is master at the time, so that a replica takes over (when the
/// fault lasts past the failure detection's second) and the old master comes back as its
/// replica.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Topology {
    Single,
    Sentinel,
    Cluster,
}

impl Topology {
    /// `n` nodes on PostgreSQL and on this Redis, each given `extra` settings too.
    pub(super) async fn start(self, n: usize, extra: &[&str]) -> Cluster {
        let backend = Backend::postgres();
        match self {
            Topology::Single => Cluster::start(&backend, n, extra).await,
            Topology::Sentinel => Cluster::start_on_redis_sentinel(&backend, n, extra).await,
            Topology::Cluster => Cluster::start_on_redis_cluster(&backend, n, extra).await,
        }
    }
}

/// The Redis server `k`: the one server, the Sentinel's first primary (0) or replica (1), or
/// the Cluster's `k`th.
fn redis_server(c: &mut Cluster, k: usize) -> &mut RedisServer {
    match (&mut c.redis_cluster, &mut c.redis_sentinel) {
        (Some(cluster), _) => &mut cluster.servers[k],
        (None, Some(sentinel)) => sentinel.server(k),
        (None, None) => &mut c.redis,
    }
}

/// The servers that are master now (sorted), if the Redis is whole (after a failover the old
/// master must have come back as a replica first, or the next fault would leave nobody to take
/// over).
async fn redis_masters(c: &Cluster) -> Option<Vec<usize>> {
    match (&c.redis_cluster, &c.redis_sentinel) {
        (Some(cluster), _) => {
            let mut masters = cluster.masters().await;
            masters.sort();
            (!masters.is_empty() && cluster.whole().await).then_some(masters)
        }
        (None, Some(sentinel)) => match sentinel.whole().await {
            true => sentinel.master().await.map(|m| vec![m]),
            false => None,
        },
        (None, None) => Some(vec![0]),
    }
}

/// Waits until the Redis is whole again after the last fault was undone: a Sentinel turns
/// an old primary that came back into a replica only after seconds of looking at it.
pub(super) async fn redis_healed(c: &Cluster) {
    let deadline = Instant::now() + patience() * 6;
    loop {
        let whole = match (&c.redis_cluster, &c.redis_sentinel) {
            (Some(cluster), _) => cluster.whole().await,
            (None, Some(sentinel)) => sentinel.whole().await,
            (None, None) => true,
        };
        if whole {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the Redis did not become whole again"
        );
        // Each look runs a few `redis-cli`s.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the nemesis did to a target, and undoes later.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Fault {
    KillNode(usize),
    PauseNode(usize),
    CutDatabase(usize),
    CutClients(usize),
    KillRedis(usize),
    FreezeRedis(usize),
    /// A node's wall clock moved this many seconds.
    SkewClock(usize, i64),
    /// A node cut off Redis (its other links kept).
    CutRedis(usize),
}

impl Fault {
    fn on_redis(self) -> bool {
        matches!(self, Fault::KillRedis(_) | Fault::FreezeRedis(_))
    }
}

/// Runs `faults` overlapping faults, then heals everything.
pub(super) async fn nemesis(
    c: &mut Cluster,
    proxies: &Proxies,
    faults: usize,
    seed: u64,
) -> BTreeMap<&'static str, usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut active: Vec<(Instant, Fault)> = Vec::new();
    let mut done: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut applied = 0;
    let replicated = c.redis_cluster.is_some() || c.redis_sentinel.is_some();
    // The masters the last Redis fault found, to count the failovers since.
    let mut masters_before: Option<Vec<usize>> = None;
    // Since when every fault was applied and the rest are being healed.
    let mut healing_since: Option<Instant> = None;
    loop {
        // Heal what is due (everything once the faults are all applied).
        let now = Instant::now();
        let (mut due, rest): (Vec<_>, Vec<_>) = active
            .into_iter()
            .partition(|(at, _)| *at <= now || applied >= faults);
        active = rest;
        // Redis first: a node does not start without it.
        due.sort_by_key(|(_, f)| !f.on_redis());
        for (_, fault) in due {
            if !heal(c, proxies, fault).await {
                // Tried again shortly, as a supervisor would.
                active.push((Instant::now() + Duration::from_millis(200), fault));
            }
        }
        if applied >= faults {
            if active.is_empty() {
                break;
            }
            let healing = healing_since.get_or_insert_with(Instant::now);
            assert!(
                healing.elapsed() < patience() * 8,
                "not healed {:?} after the last fault: {active:?}",
                healing.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // A new fault on a target no other fault holds, leaving at least one node whole.
        let held: Vec<Fault> = active.iter().map(|(_, f)| *f).collect();
        let nodes_held = held
            .iter()
            .filter(|f| matches!(f, Fault::KillNode(_) | Fault::PauseNode(_)))
            .count();
        let node = rng.random_range(0..c.nodes.len());
        let node_free =
            !held.contains(&Fault::KillNode(node)) && !held.contains(&Fault::PauseNode(node));
        let redis_free = !held.iter().any(|f| f.on_redis());
        // A replicated Redis is failed over as often as the nodes are faulted; one server is
        // cut off a node instead (through the node's proxy to it).
        let choice = match rng.random_range(0..if replicated { 9 } else { 8 }) {
            7 if replicated => 4,
            8 => 5,
            choice => choice,
        };
        let skewed = held
            .iter()
            .any(|f| matches!(f, Fault::SkewClock(k, _) if *k == node));
        let redis = match choice {
            4 | 5 if redis_free => redis_masters(c).await,
            _ => None,
        };
        if let Some(masters) = &redis {
            if masters_before
                .as_ref()
                .is_some_and(|before| before != masters)
            {
                *done.entry("Redis failovers seen").or_default() += 1;
            }
            masters_before = Some(masters.clone());
        }
        let redis = redis.map(|masters| masters[rng.random_range(0..masters.len())]);
        let fault = match (choice, redis) {
            (0, _) if node_free && nodes_held + 1 < c.nodes.len() => Fault::KillNode(node),
            (1, _) if node_free && nodes_held + 1 < c.nodes.len() => Fault::PauseNode(node),
            (2, _) if !held.contains(&Fault::CutDatabase(node)) => Fault::CutDatabase(node),
            (3, _) if !held.contains(&Fault::CutClients(node)) => Fault::CutClients(node),
            (4, Some(k)) => Fault::KillRedis(k),
            (5, Some(k)) => Fault::FreezeRedis(k),
            (7, _) if !held.contains(&Fault::CutRedis(node)) => Fault::CutRedis(node),
            // Up to a minute ahead or behind.
            (6, _) if !skewed => {
                let seconds = rng.random_range(5..60);
                Fault::SkewClock(node, if rng.random() { seconds } else { -seconds })
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        timeline(c, "apply", fault);
        match fault {
            Fault::KillNode(k) => c.nodes[k].kill().await,
            Fault::PauseNode(k) => c.nodes[k].pause(),
            Fault::CutDatabase(k) => proxies.db[k].down(),
            Fault::CutClients(k) => proxies.clients[k].down(),
            Fault::KillRedis(k) => redis_server(c, k).kill().await,
            Fault::FreezeRedis(k) => redis_server(c, k).freeze(),
            Fault::SkewClock(k, seconds) => c.nodes[k].skew(seconds),
            Fault::CutRedis(k) => proxies.redis[k].down(),
        }
        *done
            .entry(match fault {
                Fault::KillNode(_) => "kill -9 a node",
                Fault::PauseNode(_) => "pause a node",
                Fault::CutDatabase(_) => "cut a node off PostgreSQL",
                Fault::CutClients(_) => "cut the clients off a node",
                Fault::KillRedis(_) => "kill a Redis master",
                Fault::FreezeRedis(_) => "freeze a Redis master",
                Fault::SkewClock(..) => "skew a node's clock",
                Fault::CutRedis(_) => "cut a node off Redis",
            })
            .or_default() += 1;
        applied += 1;
        // Long enough, some of the time, for a replica to take over from a master.
        let lasts = match fault.on_redis() && replicated {
            true => Duration::from_millis(rng.random_range(500..4000)),
            false => Duration::from_millis(rng.random_range(200..1500)),
        };
        active.push((Instant::now() + lasts, fault));
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
    }
    done
}

/// Undoes a fault; `false` if a killed node did not start again (it does not while its Redis
/// is unreachable), to be tried again.
pub(super) async fn heal(c: &mut Cluster, proxies: &Proxies, fault: Fault) -> bool {
    timeline(c, "heal", fault);
    match fault {
        Fault::KillNode(k) => {
            if !c.nodes[k].try_restart().await {
                return false;
            }
            // On another port if its own was taken meanwhile.
            proxies.clients[k].retarget(c.nodes[k].addr.clone());
        }
        Fault::PauseNode(k) => c.nodes[k].resume(),
        Fault::CutDatabase(k) => proxies.db[k].up(),
        Fault::CutClients(k) => proxies.clients[k].up(),
        Fault::KillRedis(k) => redis_server(c, k).restart().await,
        Fault::FreezeRedis(k) => redis_server(c, k).thaw(),
        Fault::SkewClock(k, _) => c.nodes[k].skew(0),
        Fault::CutRedis(k) => proxies.redis[k].up(),
    }
    true
}

/// With `TICKETHUB_NODE_LOGS`, each fault applied and healed, at the wall clock's time, in
/// `faults.log` beside the nodes' logs (a node named by its log's name): to read the nodes'
/// logs against.
fn timeline(c: &Cluster, what: &str, fault: Fault) {
    use std::io::Write as _;
    let Some(mut file) = crate::nodes::log_path("faults.log") else {
        return;
    };
    let node = match fault {
        Fault::KillNode(k)
        | Fault::PauseNode(k)
        | Fault::CutDatabase(k)
        | Fault::CutClients(k)
        | Fault::SkewClock(k, _)
        | Fault::CutRedis(k) => c.nodes[k].log_name(),
        Fault::KillRedis(_) | Fault::FreezeRedis(_) => String::from("redis"),
    };
    let now = chrono::Utc::now().format("%H:%M:%S%.3f");
    let _ = writeln!(file, "{now} {what} {fault:?} on {node}");
}
