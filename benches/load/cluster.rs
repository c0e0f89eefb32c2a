//! The cluster scenario: several hub processes on one PostgreSQL database and a private
//! `redis-server`, with the clients spread over the nodes and every notification sent through
//! the first node, so that most deliveries cross the bus.
//!
//! Each round sends one notification to every user (one send call per 10,000 users) and waits
//! until all of them arrived. With `--bus-fault`, the middle round is sent while Redis is
//! down; Redis comes back after `--fault-seconds`, and the round's figure is the time from the
//! restart until its last delivery: the time to heal. Loss, duplicates and order are checked
//! over the whole run, through the outage.

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
    let cpu0: Vec<f64> = children.iter().map(|c| child::cpu_secs(c.pid)).collect();
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
    tracker.settle();
    run.lost += tracker.lost();
    run.duplicated += tracker.duplicated();
    run.out_of_order += tracker.out_of_order;
    run.unexpected += tracker.unexpected;
    let cpu: Vec<f64> = children
        .iter()
        .zip(&cpu0)
        .map(|(c, c0)| child::cpu_secs(c.pid) - c0)
        .collect();
    let delivered = tracker.received as f64;
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
        run.metric(
            &format!("node{k}_cpu_us_per_delivery"),
            cpu[k] * 1e6 / (delivered / nodes as f64).max(1.0),
            "us",
        );
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
               "bus_fault": a.bus_fault, "database": db_label(common)}),
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
