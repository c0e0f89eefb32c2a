//! The rooms scenario: a project's live board and presence under load, on one hub.
//!
//! 1. **Board.** `--members` board sockets of one project; clients of the project create
//!    tickets at `--rate` per second for `--seconds`, one per call; every board socket must see
//!    every `created` update. Latency: the create call's start to the frame.
//! 2. **Storm.** `--storm` presence sockets of one project join at once, then leave at once,
//!    while one user's notification socket receives an admin's notification every 100 ms.
//!    Figures: the time until an observer's presence has converged (everyone joined; everyone
//!    left, which includes the grace period), and the notification latency before and during
//!    the storm, which must stay unharmed.
//!
//! With `--nodes 2` the same runs on two hub processes sharing one PostgreSQL database
//! (`--database-url`) and a private `redis-server`, every socket dealt to the nodes in turn:
//! board events and presence cross the bus. With `--pin-hub`, the hubs run on those CPUs and
//! this driver, which holds every socket, on the others.
//!
//! The sockets live in the driver process (at most 20,000 files a process here).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::child::{self, Child, NodeArgs, Seed};
use crate::report::{percentile_of, Report, Run};
use crate::{bar, db_label, Common};

/// Options of `rooms`.
#[derive(Args, Debug, Clone)]
pub struct RoomsArgs {
    /// Board sockets, one member each.
    #[arg(long, default_value_t = 2_000)]
    members: usize,
    /// Tickets created per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Seconds of ticket creation.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Presence sockets in the join/leave storm.
    #[arg(long, default_value_t = 5_000)]
    storm: usize,
    /// How the storm's presence sockets take joins and leaves: `diff` (one `presence_diff`
    /// frame per batch, `?presence=diff`) or `events` (seed 002's `user_status` per user).
    #[arg(long, default_value = "diff", value_parser = ["diff", "events"])]
    presence: String,
    /// Hub processes (2: one PostgreSQL database and a private redis-server).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(addr: std::net::SocketAddr, path: &str, token: &str) -> Ws {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!("ws://{addr}{path}{sep}token={token}");
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return serde_json::from_str(&t).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the scenario; false when an update was lost.
pub async fn rooms(a: RoomsArgs, common: &Common) -> bool {
    let users = a.members.max(a.storm) + 2;
    let seed = Seed {
        clients: users,
        admins: 1,
        project: true,
        ..Default::default()
    };
    let nodes = a.nodes.max(1);
    let mut redis = None;
    let hub = if nodes == 1 {
        Child::hub(&seed, None, common.database_url.as_deref()).await
    } else {
        let Some(db) = common
            .database_url
            .as_deref()
            .filter(|u| u.starts_with("postgres"))
        else {
            eprintln!("rooms --nodes 2 needs --database-url postgres://… (the nodes share it)");
            return false;
        };
        let r = crate::cluster::Redis::start().await;
        let bus = NodeArgs {
            redis_url: Some(r.url()),
            join: false,
        };
        redis = Some(r);
        Child::node(&seed, None, Some(db), &bus).await
    };
    let mut others = Vec::new();
    for _ in 1..nodes {
        let join = NodeArgs {
            redis_url: redis.as_ref().map(|r| r.url()),
            join: true,
        };
        let db = hub.ready["database_url"].as_str().map(str::to_owned);
        others.push(Child::node(&Seed::default(), None, db.as_deref(), &join).await);
    }
    let pids: Vec<u32> = std::iter::once(hub.pid)
        .chain(others.iter().map(|c| c.pid))
        .collect();
    child::pin_apart(&pids, common.pin_hub.as_deref());
    let addrs: Vec<std::net::SocketAddr> = std::iter::once(hub.addr)
        .chain(others.iter().map(|c| c.addr))
        .collect();
    let node_of = |i: usize| addrs[i % addrs.len()];
    let hub_cpu = || pids.iter().map(|p| child::cpu_secs(*p)).sum::<f64>();
    let addr = hub.addr;
    let project = hub.ready["project"].as_i64().expect("a project");
    let ids: Vec<i64> = hub.ready["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    let admin = hub.ready["admins"][0].as_i64().unwrap();
    let token = |id: i64| crate::target::mint(child::SECRET, id);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut run = Run::new("hub");

    // 1. Board: every member's socket sees every created ticket.
    let board_path = format!("/ws/projects/{project}/tickets/");
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let pb = bar(a.members as u64, "board sockets");
    let sockets: Vec<Ws> = futures::stream::iter(ids[..a.members].iter().copied().enumerate())
        .map(|(i, id)| {
            let (path, pb) = (board_path.clone(), pb.clone());
            let (t, at) = (token(id), node_of(i));
            async move {
                let mut ws = open(at, &path, &t).await;
                let hello = next_json(&mut ws).await.expect("greeting");
                assert_eq!(hello["type"], "connection_established", "{hello}");
                pb.inc(1);
                ws
            }
        })
        .buffer_unordered(common.concurrency)
        .collect()
        .await;
    pb.finish_and_clear();
    for mut ws in sockets {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(v) = next_json(&mut ws).await {
                if v["type"] == "ticket_update" && v["action"] == "created" {
                    if let Some(title) = v["data"]["title"].as_str() {
                        let _ = tx.send((title.to_owned(), Instant::now()));
                    }
                }
            }
        });
    }
    drop(tx);
    let total = (a.rate * a.seconds).round() as usize;
    let every = Duration::from_secs_f64(1.0 / a.rate.max(0.001));
    let started = Instant::now();
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let pb = bar((total * a.members) as u64, "board updates");
    let cpu0 = hub_cpu();
    let mut latencies = Vec::with_capacity(total * a.members);
    let mut failures = 0usize;
    for i in 0..total {
        let due = started + every * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let title = format!("r{i}");
        let creator = ids[i % a.members];
        sent_at.insert(title.clone(), Instant::now());
        let res = http
            .post(format!("http://{addr}/api/tickets/"))
            .bearer_auth(token(creator))
            .json(
                &json!({"project": project, "title": title, "priority": "LOW", "category": "BUG"}),
            )
            .send()
            .await;
        if !res.is_ok_and(|r| r.status() == 201) {
            failures += 1;
        }
        while let Ok((title, at)) = rx.try_recv() {
            if let Some(s) = sent_at.get(&title) {
                latencies.push(ms(at - *s));
                pb.inc(1);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while latencies.len() < total * a.members && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            Ok(Some((title, at))) => {
                if let Some(s) = sent_at.get(&title) {
                    latencies.push(ms(at - *s));
                    pb.inc(1);
                }
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    pb.finish_and_clear();
    let cpu = hub_cpu() - cpu0;
    let expected = total * a.members;
    run.lost += expected.saturating_sub(latencies.len()) as u64;
    run.metric("board_sockets", a.members as f64, "");
    run.metric("tickets_created", total as f64, "");
    run.metric("board_updates_delivered", latencies.len() as f64, "");
    run.metric("create_failures", failures as f64, "");
    run.metric("board_p50_ms", percentile_of(&latencies, 0.5), "ms");
    run.metric("board_p99_ms", percentile_of(&latencies, 0.99), "ms");
    run.metric(
        "board_max_ms",
        latencies.iter().copied().fold(0.0, f64::max),
        "ms",
    );
    run.metric(
        "hub_cpu_us_per_board_update",
        cpu * 1e6 / latencies.len().max(1) as f64,
        "us",
    );
    run.latencies_ms = latencies;

    // 2. Storm: presence converges, and notifications stay fast meanwhile.
    let presence_path = match a.presence.as_str() {
        "diff" => format!("/ws/projects/{project}/presence/?presence=diff"),
        _ => format!("/ws/projects/{project}/presence/"),
    };
    let observer_id = ids[a.members.max(a.storm)];
    let probe_id = ids[a.members.max(a.storm) + 1];
    // The observer sits on the last node: with two, every storm socket on the first crosses.
    let mut observer = open(*addrs.last().unwrap(), &presence_path, &token(observer_id)).await;
    let state = next_json(&mut observer).await.expect("presence_state");
    assert_eq!(state["type"], "presence_state");
    let (ptx, mut prx) = mpsc::unbounded_channel::<(bool, Instant)>();
    tokio::spawn(async move {
        while let Some(v) = next_json(&mut observer).await {
            let now = Instant::now();
            if v["type"] == "user_status" {
                let _ = ptx.send((v["action"] == "joined", now));
            } else if v["type"] == "presence_diff" {
                for (list, joined) in [("joins", true), ("leaves", false)] {
                    for _ in v[list].as_array().into_iter().flatten() {
                        let _ = ptx.send((joined, now));
                    }
                }
            }
        }
    });
    // The probe: a notification socket that an admin sends to every 100 ms.
    let mut probe = open(addr, "/ws/notifications/", &token(probe_id)).await;
    loop {
        let v = next_json(&mut probe).await.expect("probe greeting");
        if v["type"] == "replay_complete" {
            break;
        }
    }
    let (ltx, mut lrx) = mpsc::unbounded_channel::<(String, Instant)>();
    tokio::spawn(async move {
        while let Some(v) = next_json(&mut probe).await {
            if v["type"] == "notification" {
                let _ = ltx.send((v["title"].as_str().unwrap_or("").to_owned(), Instant::now()));
            }
        }
    });
    let probing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (stx, mut srx) = mpsc::unbounded_channel::<(String, Instant)>();
    let prober = {
        let (http, probing) = (http.clone(), probing.clone());
        let admin_token = token(admin);
        tokio::spawn(async move {
            let mut i = 0u64;
            while probing.load(std::sync::atomic::Ordering::Relaxed) {
                let title = format!("p{i}");
                let _ = stx.send((title.clone(), Instant::now()));
                let _ = http
                    .post(format!("http://{addr}/api/notifications/send/"))
                    .bearer_auth(&admin_token)
                    .json(&json!({"user_ids": [probe_id], "title": title, "message": "probe"}))
                    .send()
                    .await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let collect_probe = |srx: &mut mpsc::UnboundedReceiver<(String, Instant)>,
                         lrx: &mut mpsc::UnboundedReceiver<(String, Instant)>,
                         sent: &mut HashMap<String, Instant>,
                         out: &mut Vec<f64>| {
        while let Ok((t, at)) = srx.try_recv() {
            sent.insert(t, at);
        }
        while let Ok((t, at)) = lrx.try_recv() {
            if let Some(s) = sent.get(&t) {
                out.push(ms(at - *s));
            }
        }
    };
    let mut probe_sent = HashMap::new();
    let mut before = Vec::new();
    tokio::time::sleep(Duration::from_secs(3)).await;
    collect_probe(&mut srx, &mut lrx, &mut probe_sent, &mut before);

    let storm_ids: Vec<i64> = ids[..a.storm].to_vec();
    // The storm's 5,000 clients share the driver's core with the probe, which stands for one
    // user on a machine of their own: they run on threads at nice 10, so that the probe's
    // figures are the hub's and not the driver's own backlog.
    let storm_clients =
        tickethub::app::NicedRuntime::start("storm-clients", 10).expect("storm client threads");
    let joined_at = Instant::now();
    let pb = bar(a.storm as u64, "presence storm");
    // Each storm socket reads what it is sent, as a browser would.
    let storm: Vec<tokio::task::AbortHandle> =
        futures::stream::iter(storm_ids.iter().copied().enumerate())
            .map(|(i, id)| {
                let (path, pb) = (presence_path.clone(), pb.clone());
                let (t, at) = (token(id), node_of(i));
                let (connected, is_connected) = tokio::sync::oneshot::channel();
                let reader = storm_clients.handle().spawn(async move {
                    let mut ws = open(at, &path, &t).await;
                    pb.inc(1);
                    let _ = connected.send(());
                    // Read, as a browser would, but unparsed.
                    while let Some(Ok(m)) = ws.next().await {
                        if m.is_close() {
                            break;
                        }
                    }
                });
                async move {
                    is_connected.await.expect("a storm socket connects");
                    reader.abort_handle()
                }
            })
            .buffer_unordered(common.concurrency)
            .collect()
            .await;
    pb.finish_and_clear();
    let connect_secs = joined_at.elapsed().as_secs_f64();
    let mut joins = 0usize;
    let mut during = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut converged_join = None;
    while Instant::now() < deadline {
        collect_probe(&mut srx, &mut lrx, &mut probe_sent, &mut during);
        if let Ok(Some((true, at))) =
            tokio::time::timeout(Duration::from_millis(50), prx.recv()).await
        {
            joins += 1;
            if joins == a.storm {
                converged_join = Some(at - joined_at);
                break;
            }
        }
    }
    let left_at = Instant::now();
    for reader in storm {
        reader.abort();
    }
    let mut lefts = 0usize;
    let mut converged_leave = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        collect_probe(&mut srx, &mut lrx, &mut probe_sent, &mut during);
        if let Ok(Some((false, at))) =
            tokio::time::timeout(Duration::from_millis(50), prx.recv()).await
        {
            lefts += 1;
            if lefts == a.storm {
                converged_leave = Some(at - left_at);
                break;
            }
        }
    }
    probing.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = prober.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    collect_probe(&mut srx, &mut lrx, &mut probe_sent, &mut during);
    run.lost += (a.storm - joins) as u64 + (a.storm - lefts) as u64;
    run.metric("storm_sockets", a.storm as f64, "");
    run.metric("storm_connect_seconds", connect_secs, "s");
    run.metric(
        "presence_all_joined_seconds",
        converged_join.map_or(f64::NAN, |d| d.as_secs_f64()),
        "s",
    );
    run.metric(
        "presence_all_left_seconds_incl_grace",
        converged_leave.map_or(f64::NAN, |d| d.as_secs_f64()),
        "s",
    );
    run.metric("probe_p50_ms_before", percentile_of(&before, 0.5), "ms");
    run.metric("probe_p99_ms_before", percentile_of(&before, 0.99), "ms");
    run.metric(
        "probe_p50_ms_during_storm",
        percentile_of(&during, 0.5),
        "ms",
    );
    run.metric(
        "probe_p99_ms_during_storm",
        percentile_of(&during, 0.99),
        "ms",
    );
    run.metric(
        "probe_max_ms_during_storm",
        during.iter().copied().fold(0.0, f64::max),
        "ms",
    );
    run.extra = json!({"probe_before_ms": before, "probe_during_ms": during});
    let mut report = Report::new(
        "rooms",
        json!({"members": a.members, "rate": a.rate, "seconds": a.seconds, "storm": a.storm,
               "presence": a.presence, "nodes": nodes, "pin_hub": common.pin_hub,
               "database": db_label(common)}),
        "board latency, ticket create call to `ticket_update` on each board socket",
    );
    report.runs.push(run);
    for node in others {
        node.stop().await;
    }
    hub.stop().await;
    if let Some(mut r) = redis {
        r.kill().await;
    }
    report.finish(&common.out)
}
