//! The processes under test: the hub (`serve-child`) and the raw-stack baseline
//! (`baseline-child`), both this same executable re-run in a hidden mode, plus what the driver
//! reads about them from `/proc`.
//!
//! A child prints one line `READY {json}` with its address, pid and seeded user ids, then
//! serves until its standard input closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use fastwebsockets::{Frame, OpCode, Payload};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// The HS256 secret of the embedded hub; the driver mints its users' tokens with it.
pub const SECRET: &str = "load-bench-secret-load-bench-secret-0123456789";
/// A valid argon2 hash shared by every seeded user: they log in with minted tokens.
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2hzYWx0YmVuY2g$3e1hTVsxkjh5o6I2LRR9HVKxoaMdWs9nBHM9aMCOLOg";

/// Settings every embedded hub child is started with, as `tickethub serve` takes them
/// (`--retention=2m`, …): the driver's `--hub-arg`s, and what a scenario adds.
static HUB_ARGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The CPUs (a `taskset` list) the hub and bare-stack children start on, if pinned.
static SERVER_CPUS: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Starts the hub and bare-stack children from now on on `cpus` (`--pin-hub`): pinned from
/// their first instruction, so that their runtimes size themselves for those CPUs (a process
/// pinned after it started keeps a worker thread per CPU of the machine, two workers taking
/// turns on one core), as a process started on them (`taskset`, a container's CPU limit) does.
pub fn start_servers_on(cpus: Option<&str>) {
    *SERVER_CPUS.lock().unwrap() = cpus.map(str::to_owned);
}

/// Adds settings for the hub children started from now on.
pub fn add_hub_args(args: impl IntoIterator<Item = String>) {
    HUB_ARGS.lock().unwrap().extend(args);
}

/// A hub child's place in a cluster.
#[derive(Clone, Debug, Default)]
pub struct NodeArgs {
    /// The Redis bus every node of the cluster shares.
    pub redis_url: Option<String>,
    /// Use `--database-url` as it is (created and seeded by the first node).
    pub join: bool,
}

/// What the hub child seeds.
#[derive(Clone, Debug, Default)]
pub struct Seed {
    /// Clients named `load0`, `load1`, …
    pub clients: usize,
    /// Admins (at least one, who sends).
    pub admins: usize,
    /// Developers.
    pub developers: usize,
    /// Whether to create a project with every client and developer as a member.
    pub project: bool,
    /// Whether the hub is stopped and started again on the seeded database before it is
    /// ready, as after a deploy: its users were written by a hub that is gone.
    pub restart: bool,
}

/// The hub process: seeds users, prints `READY`, serves until stdin closes.
///
/// Commands on stdin: `MISS n` commits n notifications for every client straight to the store
/// (as if sent while they were away); `ANNOUNCE n` commits n notifications through the hub
/// (commit, fan-out, outbox), spread over the clients; anything else, or the end of input,
/// stops the hub.
///
/// In a cluster (`node`), every node is given a Redis bus; the first creates and seeds the
/// database, and the others `join` it as they find it.
pub async fn serve_child(
    seed: Seed,
    dir: PathBuf,
    webhook: Option<String>,
    database_url: Option<String>,
    node: NodeArgs,
) {
    let mut config = {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            serve: tickethub::ServeConfig,
        }
        let given = HUB_ARGS.lock().unwrap().clone();
        <Wrapper as clap::Parser>::try_parse_from(std::iter::once("serve".to_owned()).chain(given))
            .unwrap_or_else(|e| panic!("--hub-arg: {e}"))
            .serve
    };
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.redis_url = node.redis_url;
    // On PostgreSQL the hub gets a database of its own, dropped when it stops.
    let mut pg_admin: Option<(String, String)> = None;
    config.database_url = match database_url.filter(|u| u.starts_with("postgres")) {
        Some(url) if node.join => url,
        Some(url) => {
            let name = format!("tickethub_load_{}", std::process::id());
            run_pg(&url, &format!("CREATE DATABASE {name}")).await;
            // The database's name is the URL's path; a query (`?host=/var/run/postgresql`
            // for the server's socket) stays.
            let (path, query) = url.split_once('?').unwrap_or((&url, ""));
            let base = path.rsplit_once('/').map(|(b, _)| b).unwrap_or(path);
            let query = if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            };
            pg_admin = Some((url.clone(), name.clone()));
            format!("{base}/{name}{query}")
        }
        None => format!("sqlite://{}", dir.join("load.db").display()),
    };
    config.jwt_secret = Some(SECRET.into());
    config.ws_idle_timeout = 600;
    config.ws_ping_interval = 300;
    config.channels.email.mail_outbox_dir = dir.join("mail");
    // Each message is its own, as the figures before batching were measured.
    config.batch_window = std::time::Duration::ZERO;
    if let Some(url) = webhook {
        config.channels.webhook.webhook_urls = vec![url];
        config.channels.webhook.webhook_secret =
            Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        config.channels.webhook.webhook_allow_private = true;
        config.delivery_concurrency = 32;
    }
    let database_url_used = config.database_url.clone();
    let again = seed.restart.then(|| config.clone());
    // Logging as `tickethub serve` sets it up (`RUST_LOG`, default `info`): a span that the
    // default filter keeps costs memory and CPU, and the figures are the ones users get.
    tickethub::telemetry::init(config.log_format);
    let mut app = tickethub::Application::build(config).await.unwrap();
    let mut store = app.store();
    use tickethub_actors::domain::{NewUser, Role, UserId};
    let new_user = |username: String, role: Role| NewUser::new(username, role, HASH);
    let seed = if node.join { Seed::default() } else { seed };
    let mut wanted = Vec::new();
    for i in 0..seed.clients {
        wanted.push(new_user(format!("load{i}"), Role::Client));
    }
    for i in 0..if node.join { 0 } else { seed.admins.max(1) } {
        wanted.push(new_user(format!("loadadmin{i}"), Role::Admin));
    }
    for i in 0..seed.developers {
        wanted.push(new_user(format!("loaddev{i}"), Role::Developer));
    }
    // Users are created in order, a few at a time; their ids come back in the same order.
    let created: Vec<(Role, i64)> = futures::stream::iter(wanted)
        .map(|u| {
            let store = store.clone();
            async move {
                let role = u.role;
                (role, store.create_user(u).await.unwrap().id.0)
            }
        })
        .buffered(16)
        .collect()
        .await;
    let ids = |role: Role| -> Vec<i64> {
        created
            .iter()
            .filter(|(r, _)| *r == role)
            .map(|(_, id)| *id)
            .collect()
    };
    let (clients, admins, developers) = (ids(Role::Client), ids(Role::Admin), ids(Role::Developer));
    let project = if seed.project {
        let members: Vec<UserId> = clients
            .iter()
            .chain(&developers)
            .map(|id| UserId(*id))
            .collect();
        Some(
            store
                .create_project("LOAD", "Load test", &members)
                .await
                .unwrap()
                .id
                .0,
        )
    } else {
        None
    };
    if let Some(config) = again {
        app.run_until_stopped(async {}).await.unwrap();
        app = tickethub::Application::build(config).await.unwrap();
        store = app.store();
    }
    let hub = app.hub();
    let ready = json!({
        "database_url": database_url_used,
        "addr": app.local_addr().to_string(),
        "pid": std::process::id(),
        "clients": clients,
        "admins": admins,
        "developers": developers,
        "project": project,
    });
    println!("READY {ready}");
    let client_ids = clients.clone();
    let stop = async move {
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = stdin.next_line().await {
            if let Some(n) = line
                .strip_prefix("ANNOUNCE ")
                .and_then(|n| n.parse::<usize>().ok())
            {
                // One announcement per notification: a webhook receives one POST per event
                // (listing its recipients), so N events make N outbox rows to drain.
                use futures::StreamExt;
                futures::stream::iter(0..n)
                    .map(|i| {
                        hub.announce(tickethub_actors::hub::Announcement {
                            to: tickethub_actors::hub::Recipients::Users(vec![UserId(
                                client_ids[i % client_ids.len()],
                            )]),
                            notification_type: "load".into(),
                            title: "Outbox".into(),
                            message: "A notification for the outbox bench".into(),
                            data: "{}".into(),
                            link: None,
                            channels: Vec::new(),
                            sent_by: None,
                            idempotency: None,
                        })
                    })
                    .buffer_unordered(64)
                    .for_each(|r| async move {
                        r.unwrap();
                    })
                    .await;
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
                let drafts = client_ids
                    .iter()
                    .map(|id| tickethub_actors::notification::Draft {
                        recipient: UserId(*id),
                        notification_type: "load".parse().unwrap(),
                        title: format!("missed {round}"),
                        message: "A notification sent while the client was away".into(),
                        ticket: None,
                        data: "{}".into(),
                        action_url: None,
                        deliveries: Vec::new(),
                        webhook_recipients: Vec::new(),
                        cause: Default::default(),
                        escalations: Vec::new(),
                    })
                    .collect();
                store.commit_notifications(drafts, None).await.unwrap();
            }
            println!("DONE");
        }
    };
    app.run_until_stopped(stop).await.unwrap();
    if let Some((url, name)) = pg_admin {
        run_pg(
            &url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
    }
}

async fn run_pg(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at the given --database-url: {e}"));
    sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The baseline's shared state: each user's sockets and seq counter, under one lock so that a
/// socket's greeting and its registration see the same seq.
#[derive(Default)]
struct Baseline {
    users: Mutex<HashMap<i64, BaselineUser>>,
}

#[derive(Default)]
struct BaselineUser {
    seq: i64,
    sockets: Vec<(u64, mpsc::Sender<Vec<u8>>)>,
}

/// Frames queued per baseline socket before it is dropped as a slow consumer.
const BASELINE_QUEUE: usize = 1024;

#[derive(Deserialize)]
struct WsQuery {
    user: i64,
}

#[derive(Deserialize)]
struct SendBody {
    user_ids: Vec<i64>,
    title: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

/// The raw-stack baseline: axum and fastwebsockets, no actors, no database, no auth.
///
/// `GET /ws?user=<id>` opens a socket that first receives
/// `{"type":"connection_established","user_id":id,"last_seq":s}`; `POST /send`
/// `{"user_ids":[…],"title":…}` pushes `{"type":"notification","seq":n,…}` to each user's
/// sockets, with a per-user seq so that loss and order can be checked like the hub's.
pub async fn baseline_child() {
    let state = Arc::new(Baseline::default());
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let app = axum::Router::new()
        .route(
            "/ws",
            axum::routing::get(
                move |State(state): State<Arc<Baseline>>,
                      Query(q): Query<WsQuery>,
                      mut req: axum::extract::Request| {
                    let next_id = next_id.clone();
                    async move {
                        let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
                            Ok(pair) => pair,
                            Err(e) => {
                                return (axum::http::StatusCode::BAD_REQUEST, e.to_string())
                                    .into_response()
                            }
                        };
                        let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::spawn(baseline_session(state, q.user, id, upgrade));
                        response.into_response()
                    }
                },
            ),
        )
        .route("/send", axum::routing::post(baseline_send))
        .with_state(state);
    // The same listener settings as the hub's: a deep backlog and no Nagle delay.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(4096).unwrap();
    let ready = json!({
        "addr": listener.local_addr().unwrap().to_string(),
        "pid": std::process::id(),
    });
    println!("READY {ready}");
    let stop = async {
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(_)) = stdin.next_line().await {}
    };
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .unwrap();
}

async fn baseline_send(
    State(state): State<Arc<Baseline>>,
    axum::Json(body): axum::Json<SendBody>,
) -> impl IntoResponse {
    let data = body.data.unwrap_or_else(|| json!({}));
    let mut users = state.users.lock().unwrap();
    for id in &body.user_ids {
        let user = users.entry(*id).or_default();
        user.seq += 1;
        if user.sockets.is_empty() {
            continue;
        }
        let frame = json!({
            "type": "notification",
            "seq": user.seq,
            "user_id": id,
            "notification_type": "load",
            "title": body.title,
            "message": body.message,
            "data": data,
        })
        .to_string()
        .into_bytes();
        // A socket whose queue is full is dropped, like the hub's slow consumers.
        user.sockets
            .retain(|(_, tx)| tx.try_send(frame.clone()).is_ok());
    }
    (
        axum::http::StatusCode::CREATED,
        axum::Json(json!({"success": true, "count": body.user_ids.len()})),
    )
}

async fn baseline_session(
    state: Arc<Baseline>,
    user: i64,
    socket_id: u64,
    upgrade: fastwebsockets::upgrade::UpgradeFut,
) {
    let Ok(ws) = upgrade.await else { return };
    let (mut read, mut write) = ws.split(tokio::io::split);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(BASELINE_QUEUE);
    let last_seq = {
        let mut users = state.users.lock().unwrap();
        let entry = users.entry(user).or_default();
        entry.sockets.push((socket_id, tx));
        entry.seq
    };
    let hello = json!({"type": "connection_established", "user_id": user, "last_seq": last_seq})
        .to_string()
        .into_bytes();
    if write
        .write_frame(Frame::text(Payload::Owned(hello)))
        .await
        .is_ok()
    {
        let mut noop = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
        'outer: loop {
            let frame_fut = read.read_frame(&mut noop);
            let mut frame_fut = std::pin::pin!(frame_fut);
            loop {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(bytes) => {
                            if write.write_frame(Frame::text(Payload::Owned(bytes))).await.is_err() {
                                break 'outer;
                            }
                        }
                        None => break 'outer,
                    },
                    frame = &mut frame_fut => match frame {
                        Ok(f) if f.opcode != OpCode::Close => break,
                        _ => break 'outer,
                    },
                }
            }
        }
    }
    let mut users = state.users.lock().unwrap();
    if let Some(entry) = users.get_mut(&user) {
        entry.sockets.retain(|(id, _)| *id != socket_id);
    }
}

/// A child process of this executable, serving until its stdin closes.
pub struct Child {
    /// The process.
    pub proc: tokio::process::Child,
    /// Its listening address.
    pub addr: SocketAddr,
    /// Its pid.
    pub pid: u32,
    /// Its `READY` line.
    pub ready: Value,
    /// Its remaining output.
    pub lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    _dir: Option<tempfile::TempDir>,
}

impl Child {
    /// Starts `serve-child` with `seed`, an optional webhook and database URL.
    pub async fn hub(seed: &Seed, webhook: Option<&str>, database_url: Option<&str>) -> Child {
        Self::node(seed, webhook, database_url, &NodeArgs::default()).await
    }

    /// Starts `serve-child` as a node of a cluster.
    pub async fn node(
        seed: &Seed,
        webhook: Option<&str>,
        database_url: Option<&str>,
        node: &NodeArgs,
    ) -> Child {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = vec![
            "serve-child".into(),
            "--users".into(),
            seed.clients.to_string(),
            "--admins".into(),
            seed.admins.to_string(),
            "--developers".into(),
            seed.developers.to_string(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        if seed.project {
            args.push("--project".into());
        }
        if let Some(url) = webhook {
            args.extend(["--webhook".into(), url.into()]);
        }
        if let Some(url) = database_url {
            args.extend(["--database-url".into(), url.into()]);
        }
        if let Some(url) = &node.redis_url {
            args.extend(["--redis-url".into(), url.clone()]);
        }
        if node.join {
            args.push("--join".into());
        }
        if seed.restart {
            args.push("--restart".into());
        }
        for arg in HUB_ARGS.lock().unwrap().iter() {
            args.push(format!("--hub-arg={arg}"));
        }
        Self::spawn(&args, Some(dir)).await
    }

    /// Starts `baseline-child`.
    pub async fn baseline() -> Child {
        Self::spawn(&["baseline-child".to_owned()], None).await
    }

    async fn spawn(args: &[String], dir: Option<tempfile::TempDir>) -> Child {
        let exe = std::env::current_exe().unwrap();
        let cpus = SERVER_CPUS.lock().unwrap().clone();
        let mut command = match &cpus {
            Some(cpus) => {
                let mut c = tokio::process::Command::new("taskset");
                c.args(["-c", cpus]).arg(exe);
                c
            }
            None => tokio::process::Command::new(exe),
        };
        let mut proc = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{} exited early", args[0]));
            if let Some(rest) = line.strip_prefix("READY ") {
                let ready: Value = serde_json::from_str(rest).unwrap();
                return Child {
                    proc,
                    addr: ready["addr"].as_str().unwrap().parse().unwrap(),
                    pid: ready["pid"].as_u64().unwrap() as u32,
                    ready,
                    lines,
                    _dir: dir,
                };
            }
        }
    }

    /// The folder of the child's files (the SQLite database among them), if it has one.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(|d| d.path())
    }

    /// Sends one command line and waits for `DONE`.
    pub async fn command(&mut self, line: &str) {
        let stdin = self.proc.stdin.as_mut().unwrap();
        tokio::io::AsyncWriteExt::write_all(stdin, format!("{line}\n").as_bytes())
            .await
            .unwrap();
        loop {
            let line = self.lines.next_line().await.unwrap().expect("child exited");
            if line == "DONE" {
                break;
            }
        }
    }

    /// Closes stdin and waits (bounded) for the process to end.
    pub async fn stop(mut self) {
        drop(self.proc.stdin.take());
        if tokio::time::timeout(std::time::Duration::from_secs(30), self.proc.wait())
            .await
            .is_err()
        {
            let _ = self.proc.kill().await;
        }
    }
}

/// Pins every thread of `pid` to `cpus` (a `taskset` list); threads started later inherit it.
pub fn pin(pid: u32, cpus: &str) {
    let ok = std::process::Command::new("taskset")
        .args(["-a", "-pc", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "taskset -a -pc {cpus} {pid} failed");
}

/// With `--pin-hub`, pins the hub processes to those CPUs and this process to the rest.
pub fn pin_apart(hubs: &[u32], hub_cpus: Option<&str>) {
    let Some(cpus) = hub_cpus else { return };
    let hub_set: Vec<usize> = cpus
        .split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![part.parse().expect("a CPU list")],
        })
        .collect();
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rest: Vec<String> = (0..all)
        .filter(|c| !hub_set.contains(c))
        .map(|c| c.to_string())
        .collect();
    for hub in hubs {
        pin(*hub, cpus);
    }
    if !rest.is_empty() {
        pin(std::process::id(), &rest.join(","));
    }
}

/// A process's resident memory in KiB (0 if unknown).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A process's CPU time (user + system) in seconds, from `/proc/<pid>/stat`, which counts in
/// clock ticks of 1/100 s on Linux.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, after)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    // After the command name: state is field 3, utime field 14, stime field 15.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (tick(11) + tick(12)) as f64 / 100.0
}
