//! Load scenarios for tickethub: `cargo bench --bench load -- <scenario> [options]`.
//!
//! The hub runs in a child process (this same executable, re-run in a hidden `serve-child`
//! mode) so that its memory and CPU are measured apart from the load generator's; so does the
//! raw-stack baseline (`baseline-child`), an axum + fastwebsockets broadcast server with no
//! actors and no database, which the scenarios that have a counterpart there also measure, so
//! that every figure comes with its ratio to the baseline. The WebSocket clients live in
//! worker processes (`client-child`), spread over several loopback source addresses.
//!
//! Every scenario prints a summary table, writes `<out>/<scenario>.json` and a latency plot
//! `<out>/<scenario>-latency.svg`, and exits non-zero if a notification was lost, duplicated,
//! delivered out of order or to someone who should not have had it.

#[path = "load/check.rs"]
mod check;
#[path = "load/child.rs"]
mod child;
#[path = "load/clients.rs"]
mod clients;
#[path = "load/cluster.rs"]
mod cluster;
#[path = "load/curves.rs"]
mod curves;
#[path = "load/report.rs"]
mod report;
#[path = "load/rooms.rs"]
mod rooms;
#[path = "load/scenarios.rs"]
mod scenarios;
#[path = "load/target.rs"]
mod target;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::child::{Child, Seed};
use crate::report::{Report, Run};
use crate::target::Kind;

const ABOUT: &str = "Load scenarios for tickethub.

The hub under test runs in a child process on SQLite (or on PostgreSQL with --database-url),
and the raw-stack baseline (axum + fastwebsockets, no actors, no database) in another; the
scenarios marked [baseline] measure both in the same run (see --against) and report every
figure with its ratio to the baseline. Clients run in worker processes, at most
--per-process sockets each, bound to 127.0.0.2, 127.0.0.3, … (--sources). All traffic stays on
127.0.0.0/8.

Scenarios and what they support:
  idle        N idle sockets: server RSS per socket, connect rate      [baseline] [--target]
  fanout      one notification to N users, K times: latency, rate      [baseline] [--target]
  steady      R notifications/s, stepped up until p99 or loss fails    [baseline] [--target]
  tail        R notifications/s for a minute: p50, p99, p99.9, max     [baseline] [--target]
  slow        a share of sockets stop reading: the others' p99         [baseline] [--target]
  lifecycle   a ticket storm through the REST API, every recipient     [--target]
  reconnect   M clients miss X notifications each and reconnect
  rooms       a project's board at a steady rate, and a presence join/leave storm
  cluster     --nodes hubs on PostgreSQL + a private redis-server: fan-out from one node to
              users on all of them; --bus-fault restarts Redis mid-run (needs --database-url)
  soak        a steady load for --minutes with retention short: database, WAL and RSS each
              minute, which must level off (SQLite's WAL must stay under 256 MiB)
  outbox      N notifications, each posted to a local webhook sink

With --target http://127.0.0.1:PORT the scenarios marked [--target] run against a hub that is
already running: the bench logs in as --admin-username/--admin-password, and acts as the users
<prefix>0, <prefix>1, … (--user-prefix, --user-password), registering the missing ones as
clients with --create-users. The lifecycle also needs developers <prefix>dev0, … (create them
with `tickethub users add --role developer`). With --jwt-secret (the target's HS256 secret)
tokens are minted instead of logged in. --target-pid lets the bench read the target's RSS and
CPU. reconnect and outbox need the embedded hub.

Results: a table on stdout, <out>/<scenario>.json and <out>/<scenario>-latency.svg. The exit
status is non-zero when a notification was lost, duplicated, out of order or unexpected, or
when a scenario's bound was broken.";

#[derive(Parser, Debug)]
#[command(name = "load", about = "Load scenarios for tickethub", long_about = ABOUT)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    #[command(flatten)]
    common: Common,
    /// Ignored: cargo passes `--bench` to bench executables.
    #[arg(long, global = true, hide = true)]
    bench: bool,
}

/// Which systems a scenario measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Against {
    /// The hub, then the baseline (scenarios without a baseline run the hub only).
    Both,
    /// The hub only.
    Hub,
    /// The baseline only.
    Baseline,
}

/// Options every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Where the JSON results and latency plots go.
    #[arg(long, global = true, default_value = "bench-results")]
    pub out: PathBuf,
    /// Which systems to measure.
    #[arg(long, global = true, value_enum, default_value_t = Against::Both)]
    pub against: Against,
    /// A hub already running, `http://127.0.0.1:PORT`, instead of the embedded one.
    #[arg(long, global = true)]
    pub target: Option<String>,
    /// The target's admin (sends notifications, opens and assigns tickets).
    #[arg(long, global = true, default_value = "admin")]
    pub admin_username: String,
    /// The admin's password.
    #[arg(long, global = true, default_value = "admin-demo")]
    pub admin_password: String,
    /// On the target, the load users are <prefix>0, <prefix>1, …; developers <prefix>dev0, …
    #[arg(long, global = true, default_value = "load")]
    pub user_prefix: String,
    /// The load users' password on the target.
    #[arg(long, global = true, default_value = "load-bench-password")]
    pub user_password: String,
    /// Register missing load users on the target (as clients, through /api/auth/register/).
    #[arg(long, global = true)]
    pub create_users: bool,
    /// The target's HS256 secret: mint tokens instead of logging every user in.
    #[arg(long, global = true)]
    pub jwt_secret: Option<String>,
    /// The target's pid, to read its RSS and CPU time from /proc.
    #[arg(long, global = true)]
    pub target_pid: Option<u32>,
    /// The embedded hub's database: SQLite in a temporary folder by default; with a
    /// `postgres://…` URL the hub gets a fresh database on that server, dropped afterwards.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// How many loopback source addresses the clients use (127.0.0.2 and up).
    #[arg(long, global = true, default_value_t = 4)]
    pub sources: usize,
    /// Sockets per client process (a process may open at most 20,000 files here).
    #[arg(long, global = true, default_value_t = clients::DEFAULT_PER_PROCESS)]
    pub per_process: usize,
    /// Sockets opened at once.
    #[arg(long, global = true, default_value_t = 256)]
    pub concurrency: usize,
    /// A setting for the embedded hub, as `tickethub serve` takes it (repeatable), e.g.
    /// `--hub-arg=--retention=2m`.
    #[arg(long = "hub-arg", global = true, allow_hyphen_values = true)]
    pub hub_args: Vec<String>,
    /// Start the hub processes (and the bare stack) on these CPUs (`taskset` list, e.g. `1`),
    /// and pin this driver with its clients to the others, so that the two never share a core.
    #[arg(long, global = true, alias = "pin")]
    pub pin_hub: Option<String>,
}

impl Common {
    /// The systems to measure, the hub first; `baseline` says whether the scenario has one.
    pub fn kinds(&self, baseline: bool) -> Vec<Kind> {
        match (self.against, baseline) {
            (Against::Both, true) => vec![Kind::Hub, Kind::Baseline],
            (Against::Baseline, true) => vec![Kind::Baseline],
            _ => vec![Kind::Hub],
        }
    }
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// N idle sockets: server RSS per socket and connect rate. [baseline] [--target]
    Idle {
        /// How many sockets (one user each).
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// Seconds to hold the sockets before measuring memory.
        #[arg(long, default_value_t = 2)]
        hold: u64,
        /// Restart the hub on its seeded database before connecting, as the sockets come
        /// back after a deploy (the bare stack has nothing to restart).
        #[arg(long)]
        restart: bool,
    },
    /// One notification to N connected users, K times. [baseline] [--target]
    Fanout(scenarios::FanoutArgs),
    /// R notifications/s to random users, stepped up until p99 or loss fails. [baseline] [--target]
    Steady(scenarios::SteadyArgs),
    /// A fixed rate of one-notification calls for a minute: p50, p99, p99.9, max. [baseline] [--target]
    Tail(scenarios::TailArgs),
    /// A share of sockets stop reading; the others' p99 must not move. [baseline] [--target]
    Slow(scenarios::SlowArgs),
    /// A ticket storm through the REST API with every recipient checked. [--target]
    Lifecycle(scenarios::LifecycleArgs),
    /// M clients drop, miss X notifications each, and reconnect at once with `last_seq`; then
    /// the official Rust client resumes ten of them from the same point (after the figures).
    Reconnect {
        /// How many clients (one user each).
        #[arg(long, default_value_t = 5_000)]
        clients: usize,
        /// Notifications each client misses while away.
        #[arg(long, default_value_t = 100)]
        missed: usize,
    },
    /// Several hub processes on PostgreSQL and a private Redis: fan-out from one node to users
    /// on every node, optionally through a Redis restart (--bus-fault).
    Cluster(cluster::ClusterArgs),
    /// A project's board and presence: board latency at a steady rate, a join/leave storm.
    Rooms(rooms::RoomsArgs),
    /// A steady load for minutes with retention set short: database, log and memory sizes
    /// each minute, which must level off.
    Soak(scenarios::SoakArgs),
    /// Outbox throughput: N notifications, each posted to a local webhook sink.
    Outbox {
        /// How many deliveries.
        #[arg(long, default_value_t = 10_000)]
        deliveries: usize,
    },
    /// Internal: run a hub for the scenarios.
    #[command(hide = true)]
    ServeChild {
        /// Clients to seed.
        #[arg(long)]
        users: usize,
        /// Admins to seed (at least one).
        #[arg(long, default_value_t = 1)]
        admins: usize,
        /// Developers to seed.
        #[arg(long, default_value_t = 0)]
        developers: usize,
        /// Create a project with every client and developer.
        #[arg(long)]
        project: bool,
        /// A folder for the database and mail.
        #[arg(long)]
        dir: PathBuf,
        /// A webhook URL every notification is also posted to.
        #[arg(long)]
        webhook: Option<String>,
        /// The Redis bus of a cluster.
        #[arg(long)]
        redis_url: Option<String>,
        /// Join the database at --database-url as it is (no creation, no seeding).
        #[arg(long)]
        join: bool,
        /// Stop the hub after seeding and start it again on the same database.
        #[arg(long)]
        restart: bool,
    },
    /// Internal: run the raw-stack baseline server.
    #[command(hide = true)]
    BaselineChild,
    /// Internal: hold client sockets for the driver.
    #[command(hide = true)]
    ClientChild {
        /// The server.
        #[arg(long)]
        addr: SocketAddr,
        /// Source addresses, comma-separated.
        #[arg(long)]
        from: String,
        /// The server is the hub (greeting ends at `replay_complete`; reconnect with replay).
        #[arg(long)]
        hub: bool,
    },
}

/// The hub's allocator, as in the `tickethub` binary (the hub and the baseline run in children
/// of this binary).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let common = cli.common;
    child::add_hub_args(common.hub_args.iter().cloned());
    child::start_servers_on(common.pin_hub.as_deref());
    let ok = match cli.scenario {
        Scenario::ServeChild {
            users,
            admins,
            developers,
            project,
            dir,
            webhook,
            redis_url,
            join,
            restart,
        } => {
            let seed = Seed {
                clients: users,
                admins,
                developers,
                project,
                restart,
            };
            let node = child::NodeArgs { redis_url, join };
            rt.block_on(child::serve_child(
                seed,
                dir,
                webhook,
                common.database_url,
                node,
            ));
            true
        }
        Scenario::BaselineChild => {
            rt.block_on(child::baseline_child());
            true
        }
        Scenario::ClientChild { addr, from, hub } => {
            let sources = from.split(',').filter_map(|s| s.parse().ok()).collect();
            rt.block_on(clients::client_child(addr, sources, hub));
            true
        }
        Scenario::Idle {
            clients,
            hold,
            restart,
        } => rt.block_on(scenarios::idle(clients, hold, restart, &common)),
        Scenario::Fanout(args) => rt.block_on(scenarios::fanout(args, &common)),
        Scenario::Steady(args) => rt.block_on(scenarios::steady(args, &common)),
        Scenario::Tail(args) => rt.block_on(scenarios::tail(args, &common)),
        Scenario::Slow(args) => rt.block_on(scenarios::slow(args, &common)),
        Scenario::Soak(args) => {
            embedded_only(&common, "soak");
            rt.block_on(scenarios::soak(args, &common))
        }
        Scenario::Lifecycle(args) => rt.block_on(scenarios::lifecycle(args, &common)),
        Scenario::Reconnect { clients, missed } => {
            embedded_only(&common, "reconnect");
            rt.block_on(reconnect(clients, missed, &common))
        }
        Scenario::Rooms(args) => {
            embedded_only(&common, "rooms");
            rt.block_on(rooms::rooms(args, &common))
        }
        Scenario::Cluster(args) => {
            embedded_only(&common, "cluster");
            rt.block_on(cluster::cluster(args, &common))
        }
        Scenario::Outbox { deliveries } => {
            embedded_only(&common, "outbox");
            rt.block_on(outbox(deliveries, &common))
        }
    };
    rt.shutdown_timeout(Duration::from_secs(1));
    if !ok {
        std::process::exit(1);
    }
}

fn embedded_only(common: &Common, scenario: &str) {
    if common.target.is_some() {
        eprintln!("{scenario} needs the embedded hub (it commits straight to the store or configures a webhook); drop --target");
        std::process::exit(2);
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn bar(len: u64, message: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>22} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap(),
    );
    pb.set_message(message.to_owned());
    pb
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, reads the greeting and the replay; returns the socket, the replayed seqs and the
/// `last_seq` of `replay_complete`, or panics on anything out of place.
async fn open_from(
    addr: SocketAddr,
    token: &str,
    last_seq: Option<i64>,
) -> (Socket, Vec<i64>, i64) {
    use tokio_tungstenite::tungstenite::Message;
    let mut url = format!("ws://{addr}/ws/notifications/?token={token}");
    if let Some(s) = last_seq {
        url.push_str(&format!("&last_seq={s}"));
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let mut seqs = Vec::new();
    loop {
        let frame = match ws.next().await {
            Some(Ok(Message::Text(t))) => serde_json::from_str::<serde_json::Value>(&t).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("socket ended during the greeting: {other:?}"),
        };
        match frame["type"].as_str() {
            Some("connection_established") => {}
            Some("notification") => seqs.push(frame["seq"].as_i64().unwrap()),
            Some("replay_complete") => return (ws, seqs, frame["last_seq"].as_i64().unwrap()),
            _ => panic!("unexpected frame {frame}"),
        }
    }
}

/// Reconnect storm: everyone connects, drops, misses `missed` notifications, and reconnects at
/// once with `last_seq`; each must get exactly its missed seqs, in order.
async fn reconnect(clients: usize, missed: usize, common: &Common) -> bool {
    let seed = Seed {
        clients,
        admins: 1,
        ..Default::default()
    };
    let mut hub = Child::hub(&seed, None, common.database_url.as_deref()).await;
    let addr = hub.addr;
    let users: Vec<(i64, String)> = hub.ready["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let id = v.as_i64().unwrap();
            (id, target::mint(child::SECRET, id))
        })
        .collect();
    let pb = bar(clients as u64, "first connect");
    let first: Vec<(i64, i64)> = futures::stream::iter(users.iter())
        .map(|(id, token)| {
            let pb = pb.clone();
            async move {
                let (_ws, _, last) = open_from(addr, token, None).await;
                pb.inc(1);
                (*id, last)
            }
        })
        .buffer_unordered(common.concurrency)
        .collect()
        .await;
    pb.finish_and_clear();
    let last_seen: std::collections::HashMap<i64, i64> = first.into_iter().collect();
    let setup = Instant::now();
    hub.command(&format!("MISS {missed}")).await;
    let commit_secs = setup.elapsed().as_secs_f64();
    let cpu0 = child::cpu_secs(hub.pid);
    let pb = bar(clients as u64, "reconnect storm");
    let started = Instant::now();
    let results: Vec<(i64, Vec<i64>, f64)> =
        futures::future::join_all(users.iter().map(|(id, token)| {
            let from = last_seen[id];
            let pb = pb.clone();
            async move {
                let (_ws, seqs, _) = open_from(addr, token, Some(from)).await;
                pb.inc(1);
                (from, seqs, started.elapsed().as_secs_f64())
            }
        }))
        .await;
    let all_secs = started.elapsed().as_secs_f64();
    let cpu = child::cpu_secs(hub.pid) - cpu0;
    pb.finish_and_clear();
    let mut run = Run::new("hub");
    for (from, seqs, _) in &results {
        let want: Vec<i64> = (from + 1..=from + missed as i64).collect();
        if seqs != &want {
            let mut sorted = seqs.clone();
            sorted.sort_unstable();
            sorted.dedup();
            run.duplicated += (seqs.len() - sorted.len()) as u64;
            run.lost += want.iter().filter(|s| !sorted.contains(s)).count() as u64;
            run.out_of_order += u64::from(sorted.len() == seqs.len() && seqs != &sorted);
        }
    }
    run.latencies_ms = results.iter().map(|r| r.2 * 1000.0).collect();
    let delivered = (clients * missed) as f64;
    run.metric("clients", clients as f64, "");
    run.metric("missed_each", missed as f64, "");
    run.metric("setup_commit_seconds", commit_secs, "s");
    run.metric("all_caught_up_seconds", all_secs, "s");
    run.metric(
        "p50_seconds",
        report::percentile_of(&run.latencies_ms, 0.5) / 1000.0,
        "s",
    );
    run.metric(
        "p99_seconds",
        report::percentile_of(&run.latencies_ms, 0.99) / 1000.0,
        "s",
    );
    run.metric("replayed_per_second", delivered / all_secs, "/s");
    run.metric("hub_cpu_us_per_replayed", cpu * 1e6 / delivered, "us");
    // The official Rust client resumes a sample of them from the same point, after the
    // figures: it must get the same backlog, once, in order.
    let mut checked = 0.0;
    for (id, token) in users.iter().take(10) {
        let from = last_seen[id];
        let want: Vec<i64> = (from + 1..=from + missed as i64).collect();
        let seqs = official_client_backlog(addr, token.clone(), from, missed).await;
        if seqs != want {
            eprintln!("the Rust client resumed user {id} after {from} with {seqs:?}, not {want:?}");
            run.lost += want.iter().filter(|s| !seqs.contains(s)).count().max(1) as u64;
        }
        checked += 1.0;
    }
    run.metric("official_client_resumes_checked", checked, "");
    let mut report = Report::new(
        "reconnect",
        json!({"clients": clients, "missed": missed, "database": db_label(common)}),
        "time from the storm's start until each client has its backlog",
    );
    report.runs.push(run);
    hub.stop().await;
    report.finish(&common.out)
}

/// The seqs the official Rust client (`tickethub-client`) is handed when it resumes after
/// `from`, up to its replay's end.
async fn official_client_backlog(
    addr: SocketAddr,
    token: String,
    from: i64,
    missed: usize,
) -> Vec<i64> {
    use tickethub_client::{BoxError, Client, Event, Subscribe};
    let client = Client::new(&format!("http://{addr}"), move |_| {
        let token = token.clone();
        async move { Ok::<_, BoxError>(token) }
    });
    let mut sub = client.subscribe(Subscribe {
        last_seq: Some(from),
        buffer: missed + 16,
        ..Default::default()
    });
    let mut seqs = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = sub.next().await {
            match event {
                Event::Notification(n) => seqs.push(n.seq),
                Event::Replayed { .. } | Event::Unauthorized => break,
                _ => {}
            }
        }
    })
    .await;
    if read.is_err() {
        eprintln!("the Rust client did not finish its replay within 60 s");
    }
    sub.close().await;
    seqs
}

/// Outbox throughput: notifications committed through the hub, each with one webhook
/// delivery to a sink in this process.
async fn outbox(deliveries: usize, common: &Common) -> bool {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let sink = axum::Router::new().fallback(axum::routing::post(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_url = format!("http://{}/sink", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, sink).await;
    });
    let seed = Seed {
        clients: deliveries.min(1000),
        admins: 1,
        ..Default::default()
    };
    let mut hub = Child::hub(&seed, Some(&sink_url), common.database_url.as_deref()).await;
    let pb = bar(deliveries as u64, "webhook deliveries");
    let started = Instant::now();
    hub.command(&format!("ANNOUNCE {deliveries}")).await;
    let committed = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.load(Ordering::Relaxed) < deliveries && Instant::now() < deadline {
        pb.set_position(received.load(Ordering::Relaxed) as u64);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    let mut run = Run::new("hub");
    run.metric("deliveries", got as f64, "");
    run.metric("committed_seconds", committed, "s");
    run.metric("delivered_seconds", secs, "s");
    run.metric("deliveries_per_second", got as f64 / secs, "/s");
    run.lost = (deliveries - got.min(deliveries)) as u64;
    let mut report = Report::new(
        "outbox",
        json!({"deliveries": deliveries, "database": db_label(common)}),
        "",
    );
    report.runs.push(run);
    hub.stop().await;
    report.finish(&common.out)
}

/// The database the embedded hub runs on, for the parameters of a result.
pub fn db_label(common: &Common) -> &'static str {
    match (&common.target, &common.database_url) {
        (Some(_), _) => "target",
        (None, Some(u)) if u.starts_with("postgres") => "postgresql",
        _ => "sqlite",
    }
}
