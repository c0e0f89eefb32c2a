//! Load scenarios against a hub in a child process: `cargo bench --bench load -- <scenario>`.
//!
//! The hub runs in a child process (this same executable, re-run in `serve-child` mode) so
//! that its memory and CPU are measured apart from the load generator's.
//!
//! Scenarios:
//! - `idle`: N authenticated sockets, one user (and so one user actor) each; reports the hub's
//!   resident memory per socket and the connect rate.
//! - `outbox`: N notifications committed through the hub, each with a webhook delivery to a
//!   local sink; reports deliveries per second.
//! - `reconnect`: M clients connect, drop, miss X notifications each, and reconnect at once with
//!   `last_seq`; reports the time until every client has its backlog, and checks that each got
//!   exactly its missed seqs, in order.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures::StreamExt;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

const SECRET: &str = "load-bench-secret-load-bench-secret-0123456789";
/// A valid argon2 hash shared by every bench user: they log in with tokens, not passwords.
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2hzYWx0YmVuY2g$3e1hTVsxkjh5o6I2LRR9HVKxoaMdWs9nBHM9aMCOLOg";

#[derive(Parser, Debug)]
#[command(name = "load", about = "Load scenarios for tickethub")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Ignored: cargo passes `--bench` to bench executables.
    #[arg(long, global = true, hide = true)]
    bench: bool,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// N idle authenticated sockets: hub RSS per socket and connect rate.
    Idle {
        /// How many sockets (one user each).
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// Sockets opened at once.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Where the JSON result goes.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// M clients drop, miss X notifications each, and reconnect at once with `last_seq`.
    Reconnect {
        /// How many clients (one user each).
        #[arg(long, default_value_t = 5_000)]
        clients: usize,
        /// Notifications each client misses while away.
        #[arg(long, default_value_t = 100)]
        missed: usize,
        /// Where the JSON result goes.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// Internal: run a hub for the scenarios, seeded with `users` users.
    #[command(hide = true)]
    ServeChild {
        #[arg(long)]
        users: usize,
        #[arg(long)]
        dir: PathBuf,
        /// A webhook URL every notification is also posted to.
        #[arg(long)]
        webhook: Option<String>,
    },
    /// Outbox throughput: N notifications, each posted to a local webhook sink.
    Outbox {
        /// How many deliveries.
        #[arg(long, default_value_t = 10_000)]
        deliveries: usize,
        /// Where the JSON result goes.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match cli.scenario {
        Scenario::ServeChild {
            users,
            dir,
            webhook,
        } => rt.block_on(serve_child(users, dir, webhook)),
        Scenario::Outbox { deliveries, out } => rt.block_on(outbox(deliveries, out)),
        Scenario::Idle {
            clients,
            concurrency,
            out,
        } => rt.block_on(idle(clients, concurrency, out)),
        Scenario::Reconnect {
            clients,
            missed,
            out,
        } => rt.block_on(reconnect(clients, missed, out)),
    }
}

/// The hub process: seed users, print the address, serve until stdin closes.
async fn serve_child(users: usize, dir: PathBuf, webhook: Option<String>) {
    let mut config = tickethub::ServeConfig::defaults();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.database_url = format!("sqlite://{}", dir.join("load.db").display());
    config.jwt_secret = Some(SECRET.into());
    config.ws_idle_timeout = 600;
    config.ws_ping_interval = 300;
    config.mail_outbox_dir = dir.join("mail");
    if let Some(url) = webhook {
        config.webhook_urls = vec![url];
        config.webhook_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        config.webhook_allow_private = true;
        config.delivery_concurrency = 32;
    }
    let app = tickethub::Application::build(config).await.unwrap();
    let store = app.store();
    let hub = app.hub();
    for i in 0..users {
        store
            .create_user(tickethub_actors::domain::NewUser {
                username: format!("load{i}"),
                display_name: String::new(),
                email: None,
                whatsapp_number: None,
                role: tickethub_actors::domain::Role::Client,
                is_superuser: false,
                password_hash: HASH.into(),
            })
            .await
            .unwrap();
    }
    println!("READY {} {}", app.local_addr(), std::process::id());
    // Commands on stdin: `MISS n` commits n notifications for every user (straight to the
    // store, as if sent while they were away); anything else, or end of input, stops the hub.
    let stop = async move {
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = stdin.next_line().await {
            if let Some(n) = line
                .strip_prefix("ANNOUNCE ")
                .and_then(|n| n.parse::<usize>().ok())
            {
                // n notifications through the hub (commit, fan-out, outbox), spread over the users.
                let mut left = n;
                while left > 0 {
                    let batch = left.min(users);
                    hub.announce(tickethub_actors::hub::Announcement {
                        to: tickethub_actors::hub::Recipients::Users(
                            (1..=batch as i64)
                                .map(tickethub_actors::domain::UserId)
                                .collect(),
                        ),
                        notification_type: "load".into(),
                        title: "Outbox".into(),
                        message: "A notification for the outbox bench".into(),
                        data: "{}".into(),
                        link: None,
                        channels: Vec::new(),
                    })
                    .await
                    .unwrap();
                    left -= batch;
                }
                println!("DONE");
                continue;
            }
            let Some(n) = line
                .strip_prefix("MISS ")
                .and_then(|n| n.parse::<usize>().ok())
            else {
                break;
            };
            for round in 0..n {
                let drafts = (1..=users as i64)
                    .map(|id| tickethub_actors::notification::Draft {
                        recipient: tickethub_actors::domain::UserId(id),
                        notification_type: "load".parse().unwrap(),
                        title: format!("missed {round}"),
                        message: "A notification sent while the client was away".into(),
                        ticket: None,
                        data: "{}".into(),
                        action_url: None,
                        deliveries: Vec::new(),
                    })
                    .collect();
                store.commit_notifications(drafts).await.unwrap();
            }
            println!("DONE");
        }
    };
    app.run_until_stopped(stop).await.unwrap();
}

struct Child {
    proc: tokio::process::Child,
    addr: String,
    pid: u32,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    _dir: tempfile::TempDir,
}

async fn spawn_hub(users: usize) -> Child {
    spawn_hub_with(users, &[]).await
}

async fn spawn_hub_with(users: usize, extra: &[&str]) -> Child {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["serve-child", "--users", &users.to_string(), "--dir"])
        .arg(dir.path())
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next_line().await.unwrap().expect("hub exited early");
        if let Some(rest) = line.strip_prefix("READY ") {
            let mut parts = rest.split(' ');
            let addr = parts.next().unwrap().to_owned();
            let pid = parts.next().unwrap().parse().unwrap();
            return Child {
                proc,
                addr,
                pid,
                lines,
                _dir: dir,
            };
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn token(user_id: i64) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    encode(
        &Header::default(),
        &json!({"user_id": user_id, "exp": exp, "token_type": "access"}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(addr: &str, user_id: i64) -> Socket {
    open_from(addr, user_id, None).await.0
}

/// Connects, reads the greeting and the replay; returns the socket, the replayed seqs and the
/// `last_seq` of `replay_complete`, or panics on anything out of place.
async fn open_from(addr: &str, user_id: i64, last_seq: Option<i64>) -> (Socket, Vec<i64>, i64) {
    use tokio_tungstenite::tungstenite::Message;
    let mut url = format!("ws://{addr}/ws/notifications/?token={}", token(user_id));
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

async fn idle(clients: usize, concurrency: usize, out: PathBuf) {
    let mut hub = spawn_hub(clients).await;
    // Let the hub settle, then take the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(hub.pid);
    let started = Instant::now();
    let sockets: Vec<Socket> = futures::stream::iter(1..=clients as i64)
        .map(|id| open(&hub.addr, id))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(hub.pid);
    let per_socket = (after.saturating_sub(before)) as f64 / clients as f64;
    let result = json!({
        "scenario": "idle",
        "clients": clients,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_per_socket_kib": (per_socket * 100.0).round() / 100.0,
        "connect_seconds": connect_secs,
        "connects_per_second": (clients as f64 / connect_secs).round(),
    });
    println!("scenario   clients  hub RSS before  hub RSS after  per socket  connect rate");
    println!(
        "idle       {clients:>7}  {before:>10} KiB  {after:>9} KiB  {per_socket:>6.2} KiB  {:>8.0}/s",
        clients as f64 / connect_secs
    );
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("idle.json"),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
    drop(sockets);
    drop(hub.proc.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(20), hub.proc.wait()).await;
}

async fn reconnect(clients: usize, missed: usize, out: PathBuf) {
    let mut hub = spawn_hub(clients).await;
    let addr = hub.addr.clone();
    // Everyone connects once and learns where they stand.
    let first: Vec<(Socket, Vec<i64>, i64)> = futures::stream::iter(1..=clients as i64)
        .map(|id| open_from(&addr, id, None))
        .buffer_unordered(256)
        .collect()
        .await;
    let last_seen: std::collections::HashMap<i64, i64> = (1..=clients as i64)
        .zip(first.iter().map(|f| f.2))
        .collect();
    drop(first);
    // They miss `missed` notifications each while away.
    let setup = Instant::now();
    let stdin = hub.proc.stdin.as_mut().unwrap();
    tokio::io::AsyncWriteExt::write_all(stdin, format!("MISS {missed}\n").as_bytes())
        .await
        .unwrap();
    loop {
        let line = hub.lines.next_line().await.unwrap().expect("hub exited");
        if line == "DONE" {
            break;
        }
    }
    let commit_secs = setup.elapsed().as_secs_f64();
    // All reconnect at once with last_seq.
    let started = Instant::now();
    let results: Vec<(i64, Vec<i64>, f64)> =
        futures::future::join_all((1..=clients as i64).map(|id| {
            let addr = addr.clone();
            let from = last_seen[&id];
            async move {
                let (_ws, seqs, _) = open_from(&addr, id, Some(from)).await;
                (from, seqs, started.elapsed().as_secs_f64())
            }
        }))
        .await;
    let all_secs = started.elapsed().as_secs_f64();
    let mut lost = 0usize;
    let mut out_of_order = 0usize;
    let mut duplicated = 0usize;
    for (from, seqs, _) in &results {
        let want: Vec<i64> = (from + 1..=from + missed as i64).collect();
        if seqs != &want {
            let mut sorted = seqs.clone();
            sorted.sort_unstable();
            sorted.dedup();
            duplicated += seqs.len() - sorted.len();
            lost += want.iter().filter(|s| !sorted.contains(s)).count();
            out_of_order += usize::from(sorted.len() == seqs.len() && seqs != &sorted);
        }
    }
    let mut times: Vec<f64> = results.iter().map(|r| r.2).collect();
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    let delivered = clients * missed;
    println!("scenario   clients  missed  commit (setup)  all caught up   p50      p99   replayed/s  lost  dup  order");
    println!(
        "reconnect  {clients:>7}  {missed:>6}  {commit_secs:>12.1} s  {all_secs:>11.2} s  {:>5.2} s  {:>5.2} s  {:>9.0}  {lost:>4}  {duplicated:>3}  {out_of_order:>5}",
        pct(0.5),
        pct(0.99),
        delivered as f64 / all_secs
    );
    let result = json!({
        "scenario": "reconnect",
        "clients": clients,
        "missed_each": missed,
        "setup_commit_seconds": commit_secs,
        "all_caught_up_seconds": all_secs,
        "p50_seconds": pct(0.5),
        "p99_seconds": pct(0.99),
        "replayed_per_second": (delivered as f64 / all_secs).round(),
        "lost": lost,
        "duplicated": duplicated,
        "out_of_order": out_of_order,
    });
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("reconnect.json"),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
    drop(hub.proc.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(20), hub.proc.wait()).await;
    assert_eq!(
        lost + duplicated + out_of_order,
        0,
        "notifications were lost, duplicated or out of order"
    );
}

async fn outbox(deliveries: usize, out: PathBuf) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // The sink: counts POSTs and answers 200.
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
    let users = deliveries.min(1000);
    let mut hub = spawn_hub_with(users, &["--webhook", &sink_url]).await;
    let started = Instant::now();
    let stdin = hub.proc.stdin.as_mut().unwrap();
    tokio::io::AsyncWriteExt::write_all(stdin, format!("ANNOUNCE {deliveries}\n").as_bytes())
        .await
        .unwrap();
    loop {
        if hub.lines.next_line().await.unwrap().expect("hub exited") == "DONE" {
            break;
        }
    }
    let committed = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.load(Ordering::Relaxed) < deliveries && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    println!("scenario  deliveries  committed in  all delivered in  deliveries/s");
    println!(
        "outbox    {got:>10}  {committed:>10.2} s  {secs:>14.2} s  {:>12.0}",
        got as f64 / secs
    );
    let result = json!({
        "scenario": "outbox",
        "deliveries": got,
        "committed_seconds": committed,
        "delivered_seconds": secs,
        "deliveries_per_second": (got as f64 / secs).round(),
    });
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("outbox.json"),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
    drop(hub.proc.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(20), hub.proc.wait()).await;
    assert_eq!(got, deliveries, "deliveries were lost");
}
