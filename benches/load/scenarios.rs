//! The scenarios that run against the hub and the baseline alike: idle, fanout, steady, slow,
//! and the hub's own lifecycle storm.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::check::{self, Tracker};
use crate::child::Seed;
use crate::clients::{self, wall_us, Connected, Pool};
use crate::report::{percentile_of, Report, Run};
use crate::target::{Kind, Principal, Target};
use crate::{bar, db_label, Common};
#[path = "scenarios/storm.rs"]
mod storm;
pub use storm::*;
#[path = "scenarios/long_run.rs"]
mod long_run;
pub use long_run::*;
#[path = "scenarios/slow.rs"]
mod slow;
pub use slow::*;

/// A small xorshift generator: the bench needs spread, not quality.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// `k` distinct items of `from`.
    fn pick(&mut self, from: &[i64], k: usize) -> Vec<i64> {
        let k = k.min(from.len());
        let mut out = Vec::with_capacity(k);
        while out.len() < k {
            let v = from[self.below(from.len())];
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }
}

async fn start(kind: Kind, common: &Common, seed: &Seed) -> Option<Target> {
    match Target::start(kind, common, seed).await {
        Ok(t) => {
            if let Some(pid) = t.pid {
                crate::child::pin_apart(&[pid], common.pin_hub.as_deref());
            }
            Some(t)
        }
        Err(e) => {
            eprintln!("{}: {e}", kind.label());
            None
        }
    }
}

/// Starts a target with `clients` clients and one admin, and connects every client.
async fn start_connected(
    kind: Kind,
    common: &Common,
    clients: usize,
) -> Option<(Arc<Target>, Pool, Connected)> {
    let seed = Seed {
        clients,
        admins: 1,
        ..Default::default()
    };
    let target = Arc::new(start(kind, common, &seed).await?);
    let who = target.clients[..clients].to_vec();
    let (pool, connected) = connect(&target, &who, common).await;
    Some((target, pool, connected))
}

/// Starts the workers and opens one socket per principal, with a progress bar.
async fn connect(target: &Target, who: &[Principal], common: &Common) -> (Pool, Connected) {
    let sources = clients::sources(common.sources);
    let mut pool = Pool::start(
        target.addr,
        target.kind == Kind::Hub,
        who.len(),
        common.per_process,
        &sources,
    )
    .await;
    let pb = bar(
        who.len() as u64,
        &format!("{} sockets", target.kind.label()),
    );
    let paths: Vec<(i64, String)> = who.iter().map(|p| (p.id, target.ws_path(p))).collect();
    let connected = pool.connect(&paths, common.concurrency, &pb).await;
    pb.finish_and_clear();
    if connected.failed > 0 {
        eprintln!(
            "{}: {} of {} sockets failed to open, e.g. {:?}",
            target.kind.label(),
            connected.failed,
            who.len(),
            connected.errors
        );
    }
    (pool, connected)
}

/// The CPU seconds of the load generator's worker processes.
fn workers_cpu(pool: &Pool) -> f64 {
    pool.pids().into_iter().map(crate::child::cpu_secs).sum()
}

/// Drains deliveries into `tracker` until `want` have arrived or `deadline` passes; the bar
/// shows `base` + what arrived.
async fn collect(
    pool: &mut Pool,
    tracker: &mut Tracker,
    want: usize,
    deadline: Instant,
    pb: &indicatif::ProgressBar,
    base: u64,
) {
    loop {
        let records = pool.drain().await;
        let idle = records.is_empty();
        tracker.observe(records);
        pb.set_position(base + tracker.received as u64);
        if tracker.received >= want || Instant::now() >= deadline {
            break;
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn fill_checks(run: &mut Run, tracker: &Tracker) {
    run.lost += tracker.lost();
    run.duplicated += tracker.duplicated();
    run.out_of_order += tracker.out_of_order;
    run.unexpected += tracker.unexpected;
}

// ---------------------------------------------------------------------------------------------

/// Idle sockets: server RSS per socket, connect rate, CPU per connect; with `restart`, of a
/// hub restarted on its seeded database.
pub async fn idle(n: usize, hold: u64, restart: bool, common: &Common) -> bool {
    let mut report = Report::new(
        "idle",
        json!({"sockets": n, "sources": common.sources, "per_process": common.per_process,
               "database": db_label(common), "restart": restart}),
        "connect latency (TCP connect to greeting)",
    );
    for kind in common.kinds(true) {
        let seed = Seed {
            clients: n,
            admins: 1,
            restart,
            ..Default::default()
        };
        let Some(target) = start(kind, common, &seed).await else {
            return false;
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        // What the hub's live objects hold, as its allocator counts them (the baseline has no
        // metrics: 0), beside what the process holds from the system.
        let allocated0 = metric_sum(
            &metrics_text(&target).await,
            "tickethub_memory_allocated_bytes",
        );
        let rss0 = target.rss_kib();
        let cpu0 = target.cpu_secs();
        let started = Instant::now();
        let (pool, connected) = connect(&target, &target.clients[..n], common).await;
        let secs = started.elapsed().as_secs_f64();
        let cpu = target.cpu_secs().zip(cpu0).map(|(a, b)| a - b);
        tokio::time::sleep(Duration::from_secs(hold)).await;
        let rss1 = target.rss_kib();
        let allocated1 = metric_sum(
            &metrics_text(&target).await,
            "tickethub_memory_allocated_bytes",
        );
        let mut run = Run::new(kind.label());
        run.latencies_ms = connected
            .latencies_us
            .iter()
            .map(|us| *us as f64 / 1000.0)
            .collect();
        run.metric("sockets", connected.ok as f64, "");
        run.metric("client_processes", pool.len() as f64, "");
        if let (Some(a), Some(b)) = (rss0, rss1) {
            run.metric("rss_before_kib", a as f64, "KiB");
            run.metric("rss_after_kib", b as f64, "KiB");
            run.metric(
                "rss_per_socket_kib",
                b.saturating_sub(a) as f64 / connected.ok.max(1) as f64,
                "KiB",
            );
        }
        if allocated0 > 0.0 {
            run.metric(
                "allocated_per_socket_kib",
                (allocated1 - allocated0) / 1024.0 / connected.ok.max(1) as f64,
                "KiB",
            );
        }
        run.metric("connects_per_second", connected.ok as f64 / secs, "/s");
        run.metric(
            "connect_p50_ms",
            percentile_of(&run.latencies_ms, 0.5),
            "ms",
        );
        run.metric(
            "connect_p99_ms",
            percentile_of(&run.latencies_ms, 0.99),
            "ms",
        );
        if let Some(c) = cpu {
            run.metric(
                "server_cpu_us_per_connect",
                c * 1e6 / connected.ok.max(1) as f64,
                "us",
            );
        }
        if connected.failed > 0 {
            run.failures
                .push(format!("{} sockets failed to open", connected.failed));
        }
        report.runs.push(run);
        pool.close().await;
        target.stop().await;
    }
    report.finish(&common.out)
}

// ---------------------------------------------------------------------------------------------

/// Options of `fanout`.
#[derive(Args, Debug)]
pub struct FanoutArgs {
    /// Connected recipients (one user and socket each).
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    /// How many notifications, each to every recipient.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Pause between rounds, in ms.
    #[arg(long, default_value_t = 500)]
    pause_ms: u64,
    /// How long a round may take before what is missing counts as lost, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// One notification to every recipient, K times: per-recipient latency from the API call to
/// the frame, time to the last recipient, deliveries per second.
pub async fn fanout(a: FanoutArgs, common: &Common) -> bool {
    let n = a.clients;
    let mut report = Report::new(
        "fanout",
        json!({"recipients": n, "rounds": a.rounds, "database": db_label(common),
               "calls_per_round": n.div_ceil(10_000)}),
        "per-recipient latency, send call to frame",
    );
    for kind in common.kinds(true) {
        let seed = Seed {
            clients: n,
            admins: 1,
            ..Default::default()
        };
        let Some(target) = start(kind, common, &seed).await else {
            return false;
        };
        let who = &target.clients[..n];
        let (mut pool, connected) = connect(&target, who, common).await;
        let ids: Vec<i64> = who.iter().map(|p| p.id).collect();
        let mut tracker = Tracker::new(&connected.last_seq, check::by_title);
        let mut run = Run::new(kind.label());
        let pb = bar(
            (connected.ok * a.rounds) as u64,
            &format!("{} fanout", kind.label()),
        );
        let cpu0 = target.cpu_secs();
        let wcpu0 = workers_cpu(&pool);
        let mut round_ms = Vec::new();
        let mut call_ms = Vec::new();
        for k in 0..a.rounds {
            let title = format!("f{k}");
            let t0 = wall_us();
            tracker.expect(title.clone(), t0, ids.clone());
            let started = Instant::now();
            if let Err(e) = target.send(&ids, &title, None).await {
                run.failures.push(format!("send: {e}"));
                tracker.cancel(&title);
                continue;
            }
            call_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            let want = tracker.expected_total();
            let before = tracker.last_recv_us;
            collect(
                &mut pool,
                &mut tracker,
                want,
                Instant::now() + Duration::from_secs(a.timeout),
                &pb,
                0,
            )
            .await;
            round_ms.push((tracker.last_recv_us.max(before) - t0) as f64 / 1000.0);
            tokio::time::sleep(Duration::from_millis(a.pause_ms)).await;
        }
        pb.finish_and_clear();
        let cpu = target.cpu_secs().zip(cpu0).map(|(a, b)| a - b);
        let wcpu = workers_cpu(&pool) - wcpu0;
        tracker.settle();
        fill_checks(&mut run, &tracker);
        let delivered = tracker.received as f64;
        run.latencies_ms = tracker.take_latencies();
        run.metric("recipients", connected.ok as f64, "");
        run.latency_metrics("");
        run.metric(
            "slowest_round_ms",
            round_ms.iter().copied().fold(0.0, f64::max),
            "ms",
        );
        run.metric("median_round_ms", percentile_of(&round_ms, 0.5), "ms");
        run.metric("send_call_p50_ms", percentile_of(&call_ms, 0.5), "ms");
        run.metric(
            "delivered_per_second",
            delivered / (round_ms.iter().sum::<f64>() / 1000.0).max(1e-9),
            "/s",
        );
        if let Some(c) = cpu {
            run.metric(
                "server_cpu_us_per_delivery",
                c * 1e6 / delivered.max(1.0),
                "us",
            );
        }
        run.metric(
            "clients_cpu_us_per_delivery",
            wcpu * 1e6 / delivered.max(1.0),
            "us",
        );
        run.metric("socket_reconnects", pool.reconnects as f64, "");
        run.extra = json!({"round_ms": round_ms, "send_call_ms": call_ms});
        report.runs.push(run);
        pool.close().await;
        target.stop().await;
    }
    report.finish(&common.out)
}

// ---------------------------------------------------------------------------------------------

/// Options of `steady`.
#[derive(Args, Debug, Clone)]
pub struct SteadyArgs {
    /// Connected users the notifications go to, at random.
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    /// The first step's rate, notifications per second.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Each step's rate is the previous one's times this.
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// Seconds of sending per step (long enough that periodic stalls fall inside a step).
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// The highest rate tried.
    #[arg(long, default_value_t = 200_000.0)]
    max_rate: f64,
    /// A step fails when its p99 (scheduled send to frame) is above this, in ms.
    #[arg(long, default_value_t = 50.0)]
    p99_bound_ms: f64,
    /// Users per send call: one call carries this many notifications (one per user). One, as
    /// the seed backends send them.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Send calls in flight at most; a call that must wait is late, and its lateness counts.
    #[arg(long, default_value_t = 256)]
    inflight: usize,
    /// Seconds a step waits for stragglers before they count as lost.
    #[arg(long, default_value_t = 10)]
    drain: u64,
    /// Bytes of padding in each notification's data.
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
}

/// Options of `tail`.
#[derive(Args, Debug)]
pub struct TailArgs {
    /// Connected users the notifications go to, at random.
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    /// Notifications per second, one per send call.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Seconds of sending (60: two heartbeats, several checkpoints).
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Send calls in flight at most; a call that must wait is late, and its lateness counts.
    #[arg(long, default_value_t = 256)]
    inflight: usize,
    /// Seconds to wait for stragglers before they count as lost.
    #[arg(long, default_value_t = 10)]
    drain: u64,
}

/// A fixed rate of single-notification calls for a minute: the whole latency distribution,
/// p50 to max, scheduled send to frame.
pub async fn tail(a: TailArgs, common: &Common) -> bool {
    let mut report = Report::new(
        "tail",
        json!({"clients": a.clients, "rate": a.rate, "seconds": a.seconds,
               "users_per_send_call": 1, "inflight": a.inflight,
               "database": db_label(common)}),
        "latency at a fixed rate, scheduled send to frame",
    );
    for kind in common.kinds(true) {
        let Some((target, mut pool, connected)) = start_connected(kind, common, a.clients).await
        else {
            return false;
        };
        let ids: Vec<i64> = connected.last_seq.keys().copied().collect();
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let calls = (a.rate * a.seconds).ceil().max(1.0) as usize;
        let log_before = log_written_bytes(&target).await;
        let (step, _) = paced(
            &target,
            &mut pool,
            &connected.last_seq,
            &connected.last_seq,
            "t",
            calls,
            a.rate,
            1,
            |_| rng.pick(&ids, 1),
            None,
            a.inflight,
            Duration::from_secs(a.drain),
        )
        .await;
        println!(
            "  {}: {:>8.0}/s wanted, {:>8.0}/s sent, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, lost {}, dup {}, order {}",
            kind.label(),
            step.rate,
            step.achieved,
            step.p(0.5),
            step.p(0.99),
            step.p(0.999),
            step.p(1.0),
            step.lost,
            step.duplicated,
            step.out_of_order,
        );
        let mut run = Run::new(kind.label());
        run.lost += step.lost;
        run.duplicated += step.duplicated;
        run.out_of_order += step.out_of_order;
        run.unexpected += step.unexpected;
        run.metric("achieved_per_second", step.achieved, "/s");
        run.metric("p50_ms", step.p(0.5), "ms");
        run.metric("p99_ms", step.p(0.99), "ms");
        run.metric("p99_9_ms", step.p(0.999), "ms");
        run.metric("max_ms", step.p(1.0), "ms");
        if let Some(c) = step.server_cpu_us {
            run.metric("server_cpu_us_per_notification", c, "us");
        }
        if let (Some(before), Some(after)) = (log_before, log_written_bytes(&target).await) {
            if step.calls_ok > 0 {
                let per = (after - before) / 1024.0 / step.calls_ok as f64;
                println!(
                    "  {}: the database's log: {per:.2} KiB written per notification",
                    kind.label()
                );
                run.metric("log_kib_per_notification", per, "KiB");
            }
        }
        // The seconds whose slowest delivery was slowest: when a stall comes back on a period
        // (a timer's work), their times show it.
        let mut slowest = step.seconds.clone();
        slowest.sort_by(|a, b| b.max_ms.total_cmp(&a.max_ms));
        let shown: Vec<String> = slowest
            .iter()
            .take(8)
            .map(|s| format!("{}s {:.0} ms", s.second, s.max_ms))
            .collect();
        println!(
            "  {}: the slowest seconds (from the first call, max): {}",
            kind.label(),
            shown.join(", ")
        );
        let seconds: Vec<Value> = step
            .seconds
            .iter()
            .map(|s| json!([s.second, s.p99_ms, s.max_ms]))
            .collect();
        run.latencies_ms = step.latencies_ms.clone();
        run.extra = json!({"step": step.to_json(), "seconds_p99_max_ms": seconds});
        report.runs.push(run);
        pool.close().await;
        Arc::try_unwrap(target)
            .ok()
            .expect("no send in flight")
            .stop()
            .await;
    }
    report.notes.push("one notification per send call".into());
    report.finish(&common.out)
}

/// What one paced step gave.
struct Step {
    rate: f64,
    calls_ok: usize,
    calls_failed: usize,
    achieved: f64,
    delivered: usize,
    latencies_ms: Vec<f64>,
    /// Each second's p99 and max, by when the calls were due.
    seconds: Vec<crate::check::Second>,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    unexpected: u64,
    server_cpu_us: Option<f64>,
    clients_cpu_us: f64,
    reconnects: u64,
}

impl Step {
    fn p(&self, q: f64) -> f64 {
        percentile_of(&self.latencies_ms, q)
    }

    fn clean(&self) -> bool {
        self.lost + self.duplicated + self.out_of_order + self.unexpected == 0
    }

    fn to_json(&self) -> Value {
        json!({
            "rate": self.rate.round(), "achieved": self.achieved.round(),
            "calls_ok": self.calls_ok, "calls_failed": self.calls_failed,
            "delivered": self.delivered,
            "p50_ms": self.p(0.5), "p90_ms": self.p(0.9), "p99_ms": self.p(0.99),
            "max_ms": self.p(1.0),
            "lost": self.lost, "duplicated": self.duplicated, "out_of_order": self.out_of_order,
            "unexpected": self.unexpected, "server_cpu_us_per_notification": self.server_cpu_us,
            "clients_cpu_us_per_notification": self.clients_cpu_us,
            "socket_reconnects": self.reconnects,
        })
    }
}

/// Sends `calls` notifications, one call every `1 / calls_per_sec` seconds, each to the users
/// `pick` chooses, and checks every delivery to the users `start` names. Latency counts from
/// when a call was due, not when it went out, so a sender that falls behind shows as latency.
#[allow(clippy::too_many_arguments)]
async fn paced(
    target: &Arc<Target>,
    pool: &mut Pool,
    floor: &HashMap<i64, i64>,
    start: &HashMap<i64, i64>,
    label: &str,
    calls: usize,
    calls_per_sec: f64,
    users_per_call: usize,
    mut pick: impl FnMut(usize) -> Vec<i64>,
    payload: Option<Arc<str>>,
    inflight: usize,
    drain: Duration,
) -> (Step, Tracker) {
    let mut tracker = Tracker::continuing(floor, start, check::by_title);
    let interval_us = 1e6 / calls_per_sec;
    let plan: Vec<(String, Vec<i64>)> = (0..calls)
        .map(|i| (format!("{label}-{i}"), pick(i)))
        .collect();
    for (i, (title, users)) in plan.iter().enumerate() {
        tracker.expect(
            title.clone(),
            (i as f64 * interval_us) as i64,
            users.clone(),
        );
    }
    // The schedule starts once the plan is written (a minute at 1,000/s took about 100 ms
    // on a 2-core machine): started before, its first calls would leave late and count the
    // plan's writing as their latency.
    let begin = Instant::now() + Duration::from_millis(50);
    tracker.shift(wall_us() + 50_000);
    let want = tracker.expected_total();
    let pb = bar(want as u64, &format!("{} {label}", target.kind.label()));
    // Each failed call's title and why it failed.
    let failed: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let cpu0 = target.cpu_secs();
    let wcpu0 = workers_cpu(pool);
    let reconnects0 = pool.reconnects;
    let sender = {
        let target = target.clone();
        let failed = failed.clone();
        tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(inflight));
            let mut tasks = Vec::with_capacity(plan.len());
            for (i, (title, users)) in plan.into_iter().enumerate() {
                tokio::time::sleep_until(
                    (begin + Duration::from_micros((i as f64 * interval_us) as u64)).into(),
                )
                .await;
                let permit = permits.clone().acquire_owned().await.unwrap();
                let target = target.clone();
                let failed = failed.clone();
                let payload = payload.clone();
                tasks.push(tokio::spawn(async move {
                    if let Err(why) = target.send(&users, &title, payload.as_deref()).await {
                        failed.lock().unwrap().push((title, why));
                    }
                    drop(permit);
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            begin.elapsed().as_secs_f64()
        })
    };
    let mut sender = std::pin::pin!(sender);
    let send_secs = loop {
        tokio::select! {
            done = &mut sender => break done.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                let records = pool.drain().await;
                tracker.observe(records);
                pb.set_position(tracker.received as u64);
            }
        }
    };
    let failed = std::mem::take(&mut *failed.lock().unwrap());
    let mut reasons: Vec<&str> = failed.iter().map(|(_, why)| why.as_str()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    for why in reasons.iter().take(3) {
        println!(
            "  {} {label}: a send call failed: {why}",
            target.kind.label()
        );
    }
    for (title, _) in &failed {
        tracker.cancel(title);
    }
    let want = tracker.expected_total();
    collect(pool, &mut tracker, want, Instant::now() + drain, &pb, 0).await;
    pb.finish_and_clear();
    tracker.settle();
    let delivered = tracker.received;
    let server_cpu_us = target
        .cpu_secs()
        .zip(cpu0)
        .map(|(a, b)| (a - b) * 1e6 / delivered.max(1) as f64);
    let clients_cpu_us = (workers_cpu(pool) - wcpu0) * 1e6 / delivered.max(1) as f64;
    let calls_ok = calls - failed.len();
    let nominal = calls as f64 / calls_per_sec;
    let (latencies_ms, seconds) = tracker.take_seconds();
    let step = Step {
        rate: calls_per_sec * users_per_call as f64,
        calls_ok,
        calls_failed: failed.len(),
        achieved: (calls_ok * users_per_call) as f64 / send_secs.max(nominal),
        delivered,
        latencies_ms,
        seconds,
        lost: tracker.lost(),
        duplicated: tracker.duplicated(),
        out_of_order: tracker.out_of_order,
        unexpected: tracker.unexpected,
        server_cpu_us,
        clients_cpu_us,
        reconnects: pool.reconnects - reconnects0,
    };
    (step, tracker)
}

/// R notifications per second to random users, stepped up by a factor until p99 passes the
/// bound, something is lost, or the rate cannot be kept: the maximum sustainable rate.
pub async fn steady(a: SteadyArgs, common: &Common) -> bool {
    let mut report = Report::new(
        "steady",
        json!({"clients": a.clients, "start_rate": a.rate, "factor": a.factor,
               "seconds_per_step": a.seconds, "p99_bound_ms": a.p99_bound_ms,
               "users_per_send_call": a.batch, "inflight": a.inflight,
               "payload_bytes": a.payload_bytes, "database": db_label(common)}),
        "latency at the highest sustainable rate, scheduled send to frame",
    );
    let batch = a.batch.clamp(1, a.clients);
    let payload: Option<Arc<str>> =
        (a.payload_bytes > 0).then(|| Arc::from("x".repeat(a.payload_bytes)));
    for kind in common.kinds(true) {
        let Some((target, mut pool, connected)) = start_connected(kind, common, a.clients).await
        else {
            return false;
        };
        let ids: Vec<i64> = connected.last_seq.keys().copied().collect();
        let mut highs = connected.last_seq.clone();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut run = Run::new(kind.label());
        let mut steps: Vec<Step> = Vec::new();
        let mut best: Option<usize> = None;
        let mut rate = a.rate;
        let mut index = 0;
        while rate <= a.max_rate * 1.0001 {
            let calls = ((rate * a.seconds) / batch as f64).ceil().max(1.0) as usize;
            let calls_per_sec = rate / batch as f64;
            let (step, tracker) = paced(
                &target,
                &mut pool,
                &connected.last_seq,
                &highs,
                &format!("s{index}"),
                calls,
                calls_per_sec,
                batch,
                |_| rng.pick(&ids, batch),
                payload.clone(),
                a.inflight,
                Duration::from_secs(a.drain),
            )
            .await;
            highs = tracker.highs();
            let kept_up = step.achieved >= 0.95 * step.rate && step.calls_failed == 0;
            let passed = step.clean() && kept_up && step.p(0.99) <= a.p99_bound_ms;
            println!(
                "  {} step {index}: {:>8.0}/s wanted, {:>8.0}/s sent, p50 {:>7.2} ms, p99 {:>8.2} ms, lost {}, dup {}, order {}{}",
                kind.label(),
                step.rate,
                step.achieved,
                step.p(0.5),
                step.p(0.99),
                step.lost,
                step.duplicated,
                step.out_of_order,
                if passed { "" } else { "  ← stop" }
            );
            run.lost += step.lost;
            run.duplicated += step.duplicated;
            run.out_of_order += step.out_of_order;
            run.unexpected += step.unexpected;
            steps.push(step);
            if !passed {
                break;
            }
            best = Some(index);
            index += 1;
            rate *= a.factor;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if best.is_some() && best == Some(steps.len() - 1) {
            report.notes.push(format!(
                "{}: reached --max-rate {} without a failing step; the figure is a lower bound",
                kind.label(),
                a.max_rate
            ));
        }
        let shown = best.unwrap_or(steps.len() - 1);
        let s = &steps[shown];
        run.metric(
            "max_sustainable_per_second",
            best.map_or(0.0, |b| steps[b].rate),
            "/s",
        );
        run.metric("p50_ms", s.p(0.5), "ms");
        run.metric("p90_ms", s.p(0.9), "ms");
        run.metric("p99_ms", s.p(0.99), "ms");
        run.metric("max_ms", s.p(1.0), "ms");
        if let Some(c) = s.server_cpu_us {
            run.metric("server_cpu_us_per_notification", c, "us");
        }
        run.metric("clients_cpu_us_per_notification", s.clients_cpu_us, "us");
        let failing = steps.last().filter(|_| best != Some(steps.len() - 1));
        if let Some(f) = failing {
            run.metric("first_failing_rate", f.rate, "/s");
            run.metric("first_failing_p99_ms", f.p(0.99), "ms");
        }
        run.latencies_ms = s.latencies_ms.clone();
        run.extra = json!({"steps": steps.iter().map(Step::to_json).collect::<Vec<_>>()});
        report.runs.push(run);
        pool.close().await;
        Arc::try_unwrap(target)
            .ok()
            .expect("no send in flight")
            .stop()
            .await;
    }
    report.notes.push(format!(
        "each send call carries {batch} notifications (one per user); the rate counts notifications"
    ));
    report.finish(&common.out)
}
