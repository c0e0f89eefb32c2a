//! The cluster scenario: several hub processes on one PostgreSQL database and a private
//! `redis-server`, with the clients spread over the nodes and every notification sent through
//! the first node, so that most deliveries cross the bus.
//!
//! Each round sends one notification to every user (one send call per 10,000 users) and waits
//! until all of them arrived. With `--bus-fault`, the middle round is sent while Redis is
//! down; Redis comes back after `--fault-seconds`, and the round's figure is the time from the
//! restart until its last delivery: the time to heal. Loss, duplicates and order are checked
//! over the whole run, through the outage.
//!
//! With `--targeted N`, N calls follow the rounds, each to one user of node 1, sent through
//! node 0 with `--targeted-concurrency` in flight: what such a send costs each node (its CPU
//! over the phase, per call) and Redis (bytes in and out per call). A node that holds none of
//! the recipients should spend nothing on them.
//!
//! With `--spread-seconds S`, the run ends with S seconds of calls to one user each at
//! `--spread-rate`, the users picked all over the cluster and the calls sent through the nodes
//! in turn, as a load balancer would: each node's CPU per delivery to its own sockets. Run with
//! the same clients and rate on 1, 3 and 7 nodes, it is the scaling curve: flat when a node pays
//! only for its own users.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::check::{self, Tracker};
use crate::child::{self, Child, NodeArgs, Seed};
use crate::clients::{self, wall_us, Pool};
use crate::report::{percentile_of, Report, Run};
use crate::{bar, db_label, Common};

/// Options of `cluster`.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Hub processes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Connected users in all, spread evenly over the nodes (one socket each).
    #[arg(long, default_value_t = 45_000)]
    clients: usize,
    /// Notifications to everyone, one per round.
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// Milliseconds between rounds.
    #[arg(long, default_value_t = 1_000)]
    pause_ms: u64,
    /// Kill Redis before the middle round and start it again after --fault-seconds.
    #[arg(long)]
    bus_fault: bool,
    /// How long Redis stays down with --bus-fault.
    #[arg(long, default_value_t = 2.0)]
    fault_seconds: f64,
    /// Seconds a round waits for its deliveries before they count as lost.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Calls to one user each, all to users of node 1, sent through node 0 after the rounds.
    #[arg(long, default_value_t = 0)]
    targeted: usize,
    /// Targeted calls in flight at once.
    #[arg(long, default_value_t = 8)]
    targeted_concurrency: usize,
    /// Seconds of spread sends after the rounds: calls to one user each, users picked all over
    /// the cluster, sent through the nodes in turn at --spread-rate (0: none).
    #[arg(long, default_value_t = 0)]
    spread_seconds: u64,
    /// Spread calls per second, sent on a clock whether or not the earlier ones answered.
    #[arg(long, default_value_t = 500)]
    spread_rate: u64,
    /// Send each spread call through the node that holds its user, so that no delivery
    /// crosses the bus: beside a run without it, what the bus adds to the scaling curve and
    /// what the number of processes does.
    #[arg(long)]
    spread_own_node: bool,
    /// Seconds before the spread sends with nothing sent, to measure what each node spends
    /// idle (heartbeats, reconciliation, timers); the spread's CPU per delivery is also given
    /// net of it.
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
}

/// A private redis-server on a random port.
pub struct Redis {
    port: u16,
    proc: Option<tokio::process::Child>,
}

impl Redis {
    /// Starts one.
    pub async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Redis { port, proc: None };
        r.restart().await;
        r
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let proc = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed");
        self.proc = Some(proc);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.info("used_memory").await.is_none() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it.
    pub async fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.start_kill();
            let _ = p.wait().await;
        }
    }

    /// Redis's counts of the bytes it read from and sent to its clients.
    async fn bytes(&self) -> (u64, u64) {
        let field = |f| async move { self.info(f).await.and_then(|v| v.parse().ok()).unwrap_or(0) };
        (
            field("total_net_input_bytes").await,
            field("total_net_output_bytes").await,
        )
    }

    /// A field of `INFO`, read with a raw RESP exchange.
    async fn info(&self, field: &str) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        s.write_all(b"INFO\r\n").await.ok()?;
        let mut text = String::new();
        let mut buf = vec![0u8; 65_536];
        // A bulk reply: `$<len>\r\n<body>\r\n`; read until the body is complete.
        loop {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            let (head, body) = text.split_once("\r\n")?;
            let len: usize = head.trim_start_matches('$').parse().ok()?;
            if body.len() >= len {
                break;
            }
        }
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_owned())
    }
}

/// Runs the scenario; false when a delivery was lost, duplicated or out of order.
pub async fn cluster(a: ClusterArgs, common: &Common) -> bool {
    let Some(db) = common
        .database_url
        .as_deref()
        .filter(|u| u.starts_with("postgres"))
    else {
        eprintln!("cluster needs --database-url postgres://… (the nodes share one database)");
        return false;
    };
    let nodes = a.nodes.max(1);
    // Every node opens up to --db-max-connections to the one database: kept within the
    // server's 100 (its default), with room for the bench's own.
    if !std::env::args().any(|a| a.contains("db-max-connections")) {
        let each = (90 / nodes).clamp(2, 16);
        child::add_hub_args([format!("--db-max-connections={each}")]);
    }
    let mut redis = Redis::start().await;
    let bus = NodeArgs {
        redis_url: Some(redis.url()),
        join: false,
    };
    let seed = Seed {
        clients: a.clients,
        admins: 1,
        ..Default::default()
    };
    let first = Child::node(&seed, None, Some(db), &bus).await;
    let shared_db = first.ready["database_url"].as_str().unwrap().to_owned();
    let mut children = vec![first];
    for _ in 1..nodes {
        let join = NodeArgs {
            join: true,
            ..bus.clone()
        };
        children.push(Child::node(&Seed::default(), None, Some(&shared_db), &join).await);
    }
    let ids: Vec<i64> = children[0].ready["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_i64())
        .collect();
    let admin = children[0].ready["admins"][0].as_i64().unwrap();
    let admin_token = crate::target::mint(child::SECRET, admin);

    // Users are dealt to the nodes in turn; each node gets its own client workers.
    let sources = clients::sources(common.sources);
    let mut pools = Vec::new();
    let mut start_seqs = HashMap::new();
    let mut per_node = Vec::new();
    let rss_before: Vec<u64> = children.iter().map(|c| child::rss_kib(c.pid)).collect();
    let connect_started = Instant::now();
    for (k, node) in children.iter().enumerate() {
        let mine: Vec<(i64, String)> = ids
            .iter()
            .skip(k)
            .step_by(nodes)
            .map(|id| {
                let token = crate::target::mint(child::SECRET, *id);
                (*id, format!("/ws/notifications/?token={token}"))
            })
            .collect();
        let mut pool = Pool::start(node.addr, true, mine.len(), common.per_process, &sources).await;
        let pb = bar(mine.len() as u64, &format!("node {k} sockets"));
        let connected = pool.connect(&mine, common.concurrency, &pb).await;
        pb.finish_and_clear();
        if connected.failed > 0 {
            eprintln!(
                "node {k}: {} of {} sockets failed, e.g. {:?}",
                connected.failed,
                mine.len(),
                connected.errors
            );
        }
        per_node.push(connected.ok);
        start_seqs.extend(connected.last_seq);
        pools.push(pool);
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let sockets = start_seqs.len();
    let rss_connected: Vec<u64> = children.iter().map(|c| child::rss_kib(c.pid)).collect();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let sender = format!("http://{}/api/notifications/send/", children[0].addr);
    let mut tracker = Tracker::new(&start_seqs, check::by_title);
    let mut run = Run::new("hub");
    let fault_round = a.bus_fault.then_some(a.rounds / 2);
    let pb = bar((sockets * a.rounds) as u64, "cluster fanout");
    let cpu0 = cpu_of(&children);
    let redis0 = redis.bytes().await;
    let mut round_ms = Vec::new();
    let mut send_ms = Vec::new();
    let mut steady_latencies = Vec::new();
    let mut fault_latencies = Vec::new();
    let mut heal_secs = None;
    let mut restarted_at = None;
    for k in 0..a.rounds {
        let faulty = fault_round == Some(k);
        if faulty {
            redis.kill().await;
        }
        let title = format!("c{k}");
        let t0 = wall_us();
        tracker.expect(title.clone(), t0, ids.clone());
        let calls = ids.chunks(10_000).map(|chunk| {
            http.post(&sender)
                .bearer_auth(&admin_token)
                .json(
                    &json!({"user_ids": chunk, "title": title, "message": "cluster bench",
                              "notification_type": "load"}),
                )
                .send()
        });
        let called = Instant::now();
        let answers = futures::future::join_all(calls).await;
        if !faulty {
            send_ms.push(called.elapsed().as_secs_f64() * 1000.0);
        }
        for r in answers {
            match r {
                Ok(res) if res.status().is_success() => {}
                Ok(res) => run.failures.push(format!("send: {}", res.status())),
                Err(e) => run.failures.push(format!("send: {e}")),
            }
        }
        if faulty {
            tokio::time::sleep(Duration::from_secs_f64(a.fault_seconds)).await;
            redis.restart().await;
            restarted_at = Some(wall_us());
        }
        let want = tracker.expected_total();
        let before = tracker.last_recv_us;
        let deadline = Instant::now() + Duration::from_secs(a.timeout);
        loop {
            let mut idle = true;
            for pool in pools.iter_mut() {
                let records = pool.drain().await;
                idle &= records.is_empty();
                tracker.observe(records);
            }
            pb.set_position(tracker.received as u64);
            if tracker.received >= want || Instant::now() >= deadline {
                break;
            }
            if idle {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let last = tracker.last_recv_us.max(before);
        round_ms.push((last - t0) as f64 / 1000.0);
        if faulty {
            fault_latencies.extend(tracker.take_latencies());
            heal_secs = restarted_at.map(|r| (last - r) as f64 / 1e6);
        } else {
            steady_latencies.extend(tracker.take_latencies());
        }
        tokio::time::sleep(Duration::from_millis(a.pause_ms)).await;
    }
    pb.finish_and_clear();
    let cpu = cpu_since(&children, &cpu0);
    let delivered = tracker.received as f64;
    // Redis was restarted in a fault round: its counters began again.
    let rounds_bytes = if fault_round.is_none() && a.rounds > 0 {
        let (i1, o1) = redis.bytes().await;
        Some(((i1 - redis0.0) as f64, (o1 - redis0.1) as f64))
    } else {
        None
    };
    let targeted = if a.targeted > 0 && nodes > 1 {
        let on_1: Vec<i64> = ids.iter().skip(1).step_by(nodes).copied().collect();
        Some(
            targeted_phase(
                &a,
                &children,
                &redis,
                &http,
                &sender,
                &admin_token,
                &on_1,
                &mut tracker,
                &mut pools,
            )
            .await,
        )
    } else {
        None
    };
    let spread = if a.spread_seconds > 0 {
        let senders: Vec<String> = children
            .iter()
            .map(|c| format!("http://{}/api/notifications/send/", c.addr))
            .collect();
        Some(
            spread_phase(
                &a,
                &children,
                &redis,
                &http,
                &senders,
                &admin_token,
                &ids,
                &mut tracker,
                &mut pools,
            )
            .await,
        )
    } else {
        None
    };
    tracker.settle();
    run.lost += tracker.lost();
    run.duplicated += tracker.duplicated();
    run.out_of_order += tracker.out_of_order;
    run.unexpected += tracker.unexpected;
    let steady_rounds: Vec<f64> = round_ms
        .iter()
        .enumerate()
        .filter(|(k, _)| Some(*k) != fault_round)
        .map(|(_, ms)| *ms)
        .collect();
    let steady_delivered = (sockets * steady_rounds.len()) as f64;
    run.latencies_ms = steady_latencies;
    run.metric("nodes", nodes as f64, "");
    run.metric("sockets", sockets as f64, "");
    run.metric("connect_seconds", connect_secs, "s");
    if a.rounds > 0 {
        run.latency_metrics("");
        run.metric(
            "delivered_per_second",
            steady_delivered / (steady_rounds.iter().sum::<f64>() / 1000.0).max(1e-9),
            "/s",
        );
        run.metric("median_round_ms", percentile_of(&steady_rounds, 0.5), "ms");
        run.metric("median_send_calls_ms", percentile_of(&send_ms, 0.5), "ms");
        run.metric(
            "slowest_round_ms",
            steady_rounds.iter().copied().fold(0.0, f64::max),
            "ms",
        );
    }
    if let Some(h) = heal_secs {
        run.metric("heal_after_redis_restart_seconds", h, "s");
        run.metric(
            "fault_round_p99_ms",
            percentile_of(&fault_latencies, 0.99),
            "ms",
        );
    }
    for (k, c) in children.iter().enumerate() {
        run.metric(&format!("node{k}_sockets"), per_node[k] as f64, "");
        run.metric(
            &format!("node{k}_kib_per_socket"),
            rss_connected[k].saturating_sub(rss_before[k]) as f64 / per_node[k].max(1) as f64,
            "KiB",
        );
        run.metric(
            &format!("node{k}_rss_after_kib"),
            child::rss_kib(c.pid) as f64,
            "KiB",
        );
        if a.rounds > 0 {
            run.metric(
                &format!("node{k}_cpu_us_per_delivery"),
                cpu[k] * 1e6 / (delivered / nodes as f64).max(1.0),
                "us",
            );
        }
    }
    if let Some((bytes_in, bytes_out)) = rounds_bytes {
        run.metric(
            "rounds_redis_in_bytes_per_delivery",
            bytes_in / delivered.max(1.0),
            "B",
        );
        run.metric(
            "rounds_redis_out_bytes_per_delivery",
            bytes_out / delivered.max(1.0),
            "B",
        );
    }
    if let Some(t) = &targeted {
        run.metric("targeted_calls", t.calls as f64, "");
        run.metric(
            "targeted_calls_per_second",
            t.calls as f64 / t.seconds,
            "/s",
        );
        run.metric(
            "targeted_redis_in_bytes_per_call",
            t.redis_in / t.calls as f64,
            "B",
        );
        run.metric(
            "targeted_redis_out_bytes_per_call",
            t.redis_out / t.calls as f64,
            "B",
        );
        for (k, cpu) in t.cpu.iter().enumerate() {
            run.metric(
                &format!("node{k}_targeted_cpu_us_per_call"),
                cpu * 1e6 / t.calls as f64,
                "us",
            );
        }
    }
    if let Some(s) = &spread {
        run.failures.extend(s.failures.iter().cloned());
        let delivered: u64 = s.delivered.iter().sum();
        let cpu: f64 = s.cpu.iter().sum();
        run.metric("spread_calls", s.calls as f64, "");
        run.metric("spread_calls_per_second", s.calls as f64 / s.seconds, "/s");
        for (name, p) in [("p50", 0.50), ("p99", 0.99), ("max", 1.0)] {
            run.metric(
                &format!("spread_{name}_ms"),
                percentile_of(&s.latencies_ms, p),
                "ms",
            );
        }
        run.metric(
            "spread_cluster_cpu_us_per_delivery",
            cpu * 1e6 / delivered.max(1) as f64,
            "us",
        );
        run.metric(
            "spread_redis_out_bytes_per_delivery",
            s.redis_out / delivered.max(1) as f64,
            "B",
        );
        let idle: f64 = s.idle_per_second.iter().sum();
        run.metric(
            "spread_cluster_cpu_us_per_delivery_above_idle",
            (cpu - idle * s.seconds) * 1e6 / delivered.max(1) as f64,
            "us",
        );
        for (k, (cpu, n)) in s.cpu.iter().zip(&s.delivered).enumerate() {
            let idle = s.idle_per_second[k];
            run.metric(&format!("node{k}_spread_deliveries"), *n as f64, "");
            run.metric(&format!("node{k}_idle_cpu_ms_per_second"), idle * 1e3, "ms");
            run.metric(
                &format!("node{k}_spread_cpu_us_per_delivery"),
                cpu * 1e6 / (*n).max(1) as f64,
                "us",
            );
            run.metric(
                &format!("node{k}_spread_cpu_us_per_delivery_above_idle"),
                (cpu - idle * s.seconds) * 1e6 / (*n).max(1) as f64,
                "us",
            );
        }
    }
    if let Some(mem) = redis.info("used_memory").await {
        run.metric(
            "redis_used_memory_kib",
            mem.parse::<f64>().unwrap_or(0.0) / 1024.0,
            "KiB",
        );
    }
    run.extra = json!({"round_ms": round_ms, "send_calls_ms": send_ms, "fault_round": fault_round});
    let mut report = Report::new(
        "cluster",
        json!({"nodes": nodes, "clients": a.clients, "rounds": a.rounds,
               "bus_fault": a.bus_fault, "spread_seconds": a.spread_seconds,
               "spread_rate": a.spread_rate, "spread_own_node": a.spread_own_node, "database": db_label(common)}),
        "per-recipient latency, send call on node 0 to frame on any node (the fault round left out)",
    );
    report.runs.push(run);
    for pool in pools {
        pool.close().await;
    }
    // The first node created the database and drops it: stop the others first.
    for c in children.into_iter().rev() {
        c.stop().await;
    }
    redis.kill().await;
    report.finish(&common.out)
}

/// What the targeted phase measured.
struct Targeted {
    calls: usize,
    seconds: f64,
    redis_in: f64,
    redis_out: f64,
    /// CPU seconds of each node over the phase.
    cpu: Vec<f64>,
}

/// `--targeted` calls, each to one user of node 1, through node 0; waits for every delivery.
#[allow(clippy::too_many_arguments)]
async fn targeted_phase(
    a: &ClusterArgs,
    children: &[Child],
    redis: &Redis,
    http: &reqwest::Client,
    sender: &str,
    admin_token: &str,
    users: &[i64],
    tracker: &mut Tracker,
    pools: &mut [Pool],
) -> Targeted {
    use futures::StreamExt;
    let cpu0 = cpu_of(children);
    let (in0, out0) = redis.bytes().await;
    let started = Instant::now();
    let pb = bar(a.targeted as u64, "targeted sends");
    let mut sent = 0;
    // Every delivery is expected before the first call, so that none arrives unannounced (the
    // phase's latencies are not reported).
    let t0 = wall_us();
    for k in 0..a.targeted {
        tracker.expect(format!("t{k}"), t0, vec![users[k % users.len()]]);
    }
    let mut calls = futures::stream::iter((0..a.targeted).map(|k| {
        let body = json!({"user_ids": [users[k % users.len()]], "title": format!("t{k}"),
                          "message": "targeted", "notification_type": "load"});
        http.post(sender)
            .bearer_auth(admin_token)
            .json(&body)
            .send()
    }))
    .buffer_unordered(a.targeted_concurrency.max(1));
    while let Some(answer) = calls.next().await {
        if !matches!(answer, Ok(ref r) if r.status().is_success()) {
            eprintln!("a targeted send failed: {answer:?}");
        }
        sent += 1;
        pb.set_position(sent);
        for pool in pools.iter_mut() {
            tracker.observe(pool.drain().await);
        }
    }
    settle(pools, tracker, Duration::from_secs(a.timeout), |_, _| {}).await;
    pb.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let (in1, out1) = redis.bytes().await;
    Targeted {
        calls: a.targeted,
        seconds,
        redis_in: (in1 - in0) as f64,
        redis_out: (out1 - out0) as f64,
        cpu: cpu_since(children, &cpu0),
    }
}

/// What the spread phase measured.
struct Spread {
    calls: usize,
    seconds: f64,
    redis_out: f64,
    /// Each node's CPU seconds over the phase.
    cpu: Vec<f64>,
    /// Deliveries to each node's sockets.
    delivered: Vec<u64>,
    /// Each node's CPU seconds per second while nothing was sent.
    idle_per_second: Vec<f64>,
    latencies_ms: Vec<f64>,
    failures: Vec<String>,
}

/// `--spread-seconds` of calls at `--spread-rate`, each to one user, through the nodes in turn;
/// waits for every delivery.
#[allow(clippy::too_many_arguments)]
async fn spread_phase(
    a: &ClusterArgs,
    children: &[Child],
    redis: &Redis,
    http: &reqwest::Client,
    senders: &[String],
    admin_token: &str,
    users: &[i64],
    tracker: &mut Tracker,
    pools: &mut [Pool],
) -> Spread {
    use futures::{FutureExt, StreamExt};
    let total = (a.spread_seconds * a.spread_rate.max(1)) as usize;
    // A fixed scatter of the users, the same on every run.
    // Users are dealt to the nodes in turn: the user at `i` is on node `i % nodes`.
    let pick = |k: usize| {
        let h = (k as u64 ^ 0x5eed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 17) as usize % users.len()
    };
    let user_of = |k: usize| users[pick(k)];
    let through = |k: usize| {
        if a.spread_own_node {
            &senders[pick(k) % senders.len()]
        } else {
            &senders[k % senders.len()]
        }
    };
    let latencies_before = tracker.take_latencies();
    let idle0 = cpu_of(children);
    tokio::time::sleep(Duration::from_secs(a.idle_seconds)).await;
    let cpu0 = cpu_of(children);
    let idle_per_second = cpu0
        .iter()
        .zip(&idle0)
        .map(|(c, c0)| (c - c0) / a.idle_seconds.max(1) as f64)
        .collect();
    let (_, out0) = redis.bytes().await;
    let pb = bar(total as u64, "spread sends");
    let mut delivered = vec![0u64; pools.len()];
    let mut failures = Vec::new();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let mut sent = 0;
    let mut count = |k: usize, records: &[crate::clients::Rec]| {
        delivered[k] += records.iter().filter(|r| r.title.starts_with('s')).count() as u64;
    };
    while sent < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * a.spread_rate as f64) as usize).min(total);
        while sent < due {
            let (title, user) = (format!("s{sent}"), user_of(sent));
            tracker.expect(title.clone(), wall_us(), vec![user]);
            let body = json!({"user_ids": [user], "title": title, "message": "spread",
                              "notification_type": "load"});
            let call = http
                .post(through(sent))
                .bearer_auth(admin_token)
                .json(&body)
                .send();
            in_flight.push(async move { (title, call.await) });
            sent += 1;
        }
        pb.set_position(sent as u64);
        while let Some(Some((title, answer))) = in_flight.next().now_or_never() {
            if !matches!(answer, Ok(ref r) if r.status().is_success()) {
                failures.push(format!("spread send: {answer:?}"));
                tracker.cancel(&title);
            }
        }
        for (k, pool) in pools.iter_mut().enumerate() {
            let records = pool.drain().await;
            count(k, &records);
            tracker.observe(records);
        }
    }
    while let Some((title, answer)) = in_flight.next().await {
        if !matches!(answer, Ok(ref r) if r.status().is_success()) {
            failures.push(format!("spread send: {answer:?}"));
            tracker.cancel(&title);
        }
    }
    settle(pools, tracker, Duration::from_secs(a.timeout), count).await;
    pb.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let (_, out1) = redis.bytes().await;
    let latencies_ms = std::mem::replace(&mut tracker.latencies_ms, latencies_before);
    Spread {
        calls: total,
        seconds,
        redis_out: (out1 - out0) as f64,
        cpu: cpu_since(children, &cpu0),
        delivered,
        idle_per_second,
        latencies_ms,
        failures,
    }
}

/// Each node's CPU seconds so far.
fn cpu_of(children: &[Child]) -> Vec<f64> {
    children.iter().map(|c| child::cpu_secs(c.pid)).collect()
}

/// Each node's CPU seconds since `before` (from [`cpu_of`]).
fn cpu_since(children: &[Child], before: &[f64]) -> Vec<f64> {
    children
        .iter()
        .zip(before)
        .map(|(c, c0)| child::cpu_secs(c.pid) - c0)
        .collect()
}

/// Drains every node's clients into `tracker` until each expected delivery arrived or
/// `timeout` passed; `seen` is shown each node's records first.
async fn settle(
    pools: &mut [Pool],
    tracker: &mut Tracker,
    timeout: Duration,
    mut seen: impl FnMut(usize, &[crate::clients::Rec]),
) {
    let want = tracker.expected_total();
    let deadline = Instant::now() + timeout;
    while tracker.received < want && Instant::now() < deadline {
        let mut idle = true;
        for (k, pool) in pools.iter_mut().enumerate() {
            let records = pool.drain().await;
            idle &= records.is_empty();
            seen(k, &records);
            tracker.observe(records);
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
