//! The hub as an operator runs it: the real binary on a random port, stopped by SIGTERM and
//! SIGINT, configured by flags, the environment and a TOML file.
//!
//! - A signal stops the hub gracefully: it stops accepting at once, closes every socket with
//!   1001, lets the requests in flight finish with their normal answers, and exits 0; a request
//!   that never ends holds it no longer than `--shutdown-timeout`.
//! - A setting given as a flag wins over the environment, the environment over the `--config`
//!   file (or `TICKETHUB_CONFIG`), and the file over the defaults.
//! - `--sqlite-synchronous normal` commits without waiting for the disk, as `full` does not
//!   (seen in the `fsync` calls the hub makes on its write-ahead log, traced with `strace`).
//! - `--ws-handshake-concurrency` bounds the handshakes reading the database at once: a connect
//!   storm against a locked `users` table holds one connection of the pool, and `/readyz`
//!   still reaches the database; without the bound the same storm takes the whole pool.
//! - An unusable value of any of these settings stops the hub with exit status 64 and one line
//!   naming it.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::{
    eventually, eventually_ok, patience, send_body, services_required, skip, Backend, TestDb, Ws,
    SECRET, SEND,
};
mod logging;
mod settings;
use logging::*;
use settings::*;

/// The log filter of every hub started here: the usual lines, and one per request as it
/// starts (`tower_http`'s debug line), so that a test can see a request arrive.
const LOG_FILTER: &str = "info,sqlx=warn,ractor=warn,tower_http=debug";

/// A `tickethub` command in `dir` (see [`crate::harness::tickethub_command`]), logging as
/// [`LOG_FILTER`] says.
fn tickethub(dir: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::from(crate::harness::tickethub_command());
    cmd.current_dir(dir)
        .env("RUST_LOG", LOG_FILTER)
        .kill_on_drop(true);
    cmd
}

/// A hub process: its address, and its log lines as they come.
struct Proc {
    child: tokio::process::Child,
    pid: u32,
    addr: String,
    logs: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
    /// The folder it runs in (its SQLite file unless told otherwise, its mail outbox).
    _dir: Option<tempfile::TempDir>,
}

impl Proc {
    /// Starts `tickethub serve` with `args` (and `--bind 127.0.0.1:0` unless `args` or the
    /// configuration name an address) in a fresh folder, on an SQLite file there unless `args`
    /// name a database, and waits for the line that gives its address.
    async fn serve(args: &[&str]) -> Proc {
        Self::serve_with(args, &[]).await
    }

    /// [`Proc::serve`], with environment variables.
    async fn serve_with(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let (cmd, dir) = Self::command(args, env);
        Self::start(cmd, Some(dir)).await
    }

    /// The command [`Proc::serve_with`] starts, and the fresh folder it runs in.
    fn command(
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (tokio::process::Command, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = tickethub(dir.path());
        cmd.arg("serve");
        if !args.contains(&"--bind") && !env.iter().any(|(k, _)| *k == "TICKETHUB_BIND") {
            cmd.args(["--bind", "127.0.0.1:0"]);
        }
        if !args.contains(&"--database-url") {
            let db = format!("sqlite://{}", dir.path().join("hub.db").display());
            cmd.args(["--database-url", &db]);
        }
        cmd.args(args).envs(env.iter().copied());
        (cmd, dir)
    }

    /// Spawns `cmd` and waits for its first line on stdout, which names the address.
    async fn start(mut cmd: tokio::process::Command, dir: Option<tempfile::TempDir>) -> Proc {
        // No hub runs in this process to choose the HTTP client's crypto.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut child = cmd.spawn().expect("tickethub starts");
        let pid = child.id().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn({
            let logs = logs.clone();
            async move {
                while let Ok(Some(line)) = stderr.next_line().await {
                    logs.lock().unwrap().push(line);
                }
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(patience(), stdout.next_line())
            .await
            .expect("the hub prints its address in time")
            .unwrap();
        let Some(first) = first else {
            let status = tokio::time::timeout(patience(), child.wait()).await;
            panic!(
                "the hub ended before printing its address ({status:?}):\n{}",
                logs.lock().unwrap().join("\n")
            );
        };
        // The demo's instructions follow; nobody reads them, but the pipe must not fill.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_owned();
        Proc {
            child,
            pid,
            addr,
            logs,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Sends `signal` (`TERM`, `INT`) with `kill`, as an operator or a supervisor does.
    fn signal(&self, signal: &str) {
        send_signal(self.pid, signal);
    }

    /// Whether the process has ended.
    fn ended(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the process to end.
    async fn exit(&mut self) -> ExitStatus {
        match tokio::time::timeout(patience(), self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "the hub did not exit in time:\n{}",
                self.logs.lock().unwrap().join("\n")
            ),
        }
    }

    /// Stops the hub with SIGTERM and checks that it exits 0.
    async fn stop(mut self) {
        self.signal("TERM");
        let status = self.exit().await;
        assert_eq!(status.code(), Some(0), "{}", self.log_text());
    }

    /// Every log line so far.
    fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// How many log lines so far satisfy `pred`.
    fn count_logged(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| pred(l.as_str()))
            .count()
    }

    /// Waits until `n` log lines satisfy `pred`.
    async fn logged(&self, what: &str, n: usize, pred: impl Fn(&str) -> bool) {
        eventually_ok(what, || async {
            if self.count_logged(&pred) >= n {
                Ok(())
            } else {
                Err(format!("the log so far:\n{}", self.log_text()))
            }
        })
        .await;
    }

    /// Logs in over REST; answers the token pair.
    async fn login(&self, username: &str, password: &str) -> Value {
        let res = self
            .http
            .post(self.url("/api/auth/login/"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "login as {username}");
        res.json().await.unwrap()
    }

    /// The status of `GET /metrics`, with this bearer token if any.
    async fn metrics_status(&self, token: Option<&str>) -> u16 {
        let mut req = self.http.get(self.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// The status of a sign-up whose password is too short: 400 while registration is open
    /// (the password is refused), 403 while it is closed (nothing is looked at).
    async fn register_status(&self) -> u16 {
        self.http
            .post(self.url("/api/auth/register/"))
            .json(&json!({"username": "newcomer", "password": "short"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn send_signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// The database arguments of a hub on `backend`: a fresh SQLite file or PostgreSQL database,
/// with the secret PostgreSQL requires.
async fn database(backend: &Backend) -> (TestDb, Vec<String>) {
    let db = TestDb::create(backend).await;
    let mut args = vec!["--database-url".to_owned(), db.url.clone()];
    if matches!(backend, Backend::Postgres(_)) {
        args.extend(["--jwt-secret".to_owned(), SECRET.to_owned()]);
    }
    (db, args)
}

/// An HTTP/1.1 request in flight, written by hand: its head is sent and the hub's handler is
/// reading its chunked body, which arrives only when the test says so.
struct InFlight {
    stream: TcpStream,
}

impl InFlight {
    /// Sends the head of `POST path` with a chunked JSON body and `Expect: 100-continue`, and
    /// waits for the hub's `100 Continue`, which it sends once a handler reads the body.
    async fn begin(addr: &str, path: &str) -> InFlight {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let interim = read_head(&mut stream).await;
        assert!(
            interim.starts_with("HTTP/1.1 100"),
            "expected 100 Continue, got {interim:?}"
        );
        InFlight { stream }
    }

    /// Sends one chunk of the body.
    async fn send(&mut self, part: &str) {
        let chunk = format!("{:x}\r\n{part}\r\n", part.len());
        self.stream.write_all(chunk.as_bytes()).await.unwrap();
    }

    /// Ends the body and reads the answer: its status and JSON body.
    async fn finish(mut self) -> (u16, Value) {
        self.stream.write_all(b"0\r\n\r\n").await.unwrap();
        let head = read_head(&mut self.stream).await;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {head:?}"));
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no content-length in {head:?}"));
        let mut body = vec![0; length];
        tokio::time::timeout(patience(), self.stream.read_exact(&mut body))
            .await
            .expect("the body in time")
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// Reads until the hub closes the connection; answers what it sent meanwhile.
    async fn closed_by_hub(mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(patience(), self.stream.read(&mut buf))
                .await
                .expect("the hub closes the connection in time")
            {
                Ok(0) | Err(_) => return rest,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
    }
}

/// Reads one response head (up to the blank line), byte by byte so that nothing after it is
/// consumed.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    tokio::time::timeout(patience(), async {
        while !head.ends_with(b"\r\n\r\n") {
            let byte = stream.read_u8().await.expect("the connection stays open");
            head.push(byte);
        }
    })
    .await
    .expect("an answer in time");
    String::from_utf8(head).unwrap()
}

/// Whether a connection to `addr` is refused (nothing listens there any more).
async fn refused(addr: &str) -> bool {
    matches!(
        TcpStream::connect(addr).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// The graceful stop `signal` starts: a request in flight finishes with its normal answer,
/// new connections are refused, open sockets are closed with 1001, and the hub exits 0.
async fn stops_gracefully_on(backend: &Backend, signal: &str) {
    let (_db, db_args) = database(backend).await;
    // Longer than any step below may take: only the request's end may end the drain.
    let drain = (2 * patience().as_secs()).to_string();
    let mut args: Vec<&str> = db_args.iter().map(String::as_str).collect();
    args.extend(["--demo", "--shutdown-timeout", &drain]);
    let mut hub = Proc::serve(&args).await;
    let tokens = hub.login("client", "client-demo").await;
    let mut ws = Ws::connect(&hub.ws_url(&format!(
        "/ws/notifications/?token={}",
        tokens["access"].as_str().unwrap()
    )))
    .await;
    ws.established().await;
    let mut request = InFlight::begin(&hub.addr, "/api/auth/refresh/").await;
    request.send("{\"refresh\": ").await;

    hub.signal(signal);
    hub.logged("the hub begins to shut down", 1, |l| {
        l.contains("shutting down")
    })
    .await;
    assert_eq!(ws.close_code().await, 1001, "an open socket is told 1001");
    eventually("new connections are refused", || refused(&hub.addr)).await;
    assert!(
        !hub.ended(),
        "the hub exited with a request in flight:\n{}",
        hub.log_text()
    );

    request
        .send(&format!("\"{}\"}}", tokens["refresh"].as_str().unwrap()))
        .await;
    let (status, body) = request.finish().await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access"].is_string(), "{body}");
    assert!(body["refresh"].is_string(), "{body}");
    let exit = hub.exit().await;
    assert_eq!(exit.code(), Some(0), "{}", hub.log_text());
}

/// SIGTERM: the in-flight request is answered as usual, new connections are refused, open
/// sockets get 1001, exit status 0.
async fn sigterm_lets_the_request_in_flight_finish_refuses_new_connections_and_exits_0(
    backend: Backend,
) {
    stops_gracefully_on(&backend, "TERM").await;
}

/// SIGINT (Ctrl-C) stops the hub exactly as SIGTERM does.
async fn sigint_stops_the_hub_as_sigterm_does() {
    stops_gracefully_on(&Backend::Sqlite, "INT").await;
}

/// A request whose body never ends holds the stopping hub for `--shutdown-timeout` and no
/// longer: the hub gives up on it, says so, and exits.
async fn a_request_that_never_ends_holds_the_hub_only_for_the_shutdown_timeout() {
    const SHUTDOWN_TIMEOUT: u64 = 2;
    let timeout = SHUTDOWN_TIMEOUT.to_string();
    // The request's own deadline is far away: only the shutdown timeout can end it.
    let mut hub = Proc::serve(&[
        "--shutdown-timeout",
        &timeout,
        "--http-request-timeout",
        "3600",
    ])
    .await;
    let mut request = InFlight::begin(&hub.addr, "/api/auth/login/").await;
    request.send("{\"username\": ").await;
    assert!(!hub.ended(), "the hub ended before the signal");

    let signalled = Instant::now();
    hub.signal("TERM");
    let exit = hub.exit().await;
    let took = signalled.elapsed();
    assert_eq!(exit.code(), Some(0), "{}", hub.log_text());
    assert!(
        took >= Duration::from_secs(SHUTDOWN_TIMEOUT),
        "the hub did not wait for the request ({took:?})"
    );
    // Nor much longer: the request's own deadline is an hour away, and the exit comes within
    // the shutdown timeout plus a margin for stopping (scaled on a loaded machine).
    let bound = Duration::from_secs(SHUTDOWN_TIMEOUT) + patience() / 5;
    assert!(took < bound, "the hub waited {took:?}, past {bound:?}");
    assert!(
        hub.log_text()
            .contains("some requests did not finish in time"),
        "{}",
        hub.log_text()
    );
    // The request got no answer: its connection simply ended.
    let answer = request.closed_by_hub().await;
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 2"),
        "{answer:?}"
    );
}

/// The line with the hub's address means it is running: a SIGTERM or SIGINT sent as soon as
/// it is printed stops the hub gracefully (exit 0), not by the signal's default action.
async fn a_signal_right_after_the_address_line_is_still_a_graceful_stop() {
    for round in 0..6 {
        let signal = if round % 2 == 0 { "TERM" } else { "INT" };
        let dir = tempfile::tempdir().unwrap();
        let mut child = tickethub(dir.path())
            .args(["serve", "--bind", "127.0.0.1:0", "--database-url"])
            .arg(format!("sqlite://{}", dir.path().join("hub.db").display()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(patience(), stdout.next_line())
            .await
            .expect("the hub prints its address in time")
            .unwrap();
        assert!(first.is_some_and(|l| l.contains("http://")));
        send_signal(child.id().unwrap(), signal);
        let exit = tokio::time::timeout(patience(), child.wait())
            .await
            .expect("the hub exits in time")
            .unwrap();
        assert_eq!(
            exit.code(),
            Some(0),
            "round {round}: SIG{signal} right after the address line ended the hub with {exit}"
        );
    }
}

/// A setting as a flag wins over the environment, the environment over the `--config` file (or
/// the file `TICKETHUB_CONFIG` names), and the file over the defaults. Keys are the flag names,
/// with `-` or `_`.
async fn flags_win_over_the_environment_which_wins_over_the_config_file_over_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tickethub.toml");
    std::fs::write(
        &file,
        "metrics_token = \"from-the-file\"\nregistration = \"closed\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();

    // Defaults: `/metrics` answers anyone, registration is open.
    let hub = Proc::serve(&[]).await;
    assert_eq!(hub.metrics_status(None).await, 200);
    assert_eq!(hub.register_status().await, 400);
    hub.stop().await;

    // The file, given with `--config`, over the defaults.
    let hub = Proc::serve(&["--config", file]).await;
    assert_eq!(hub.metrics_status(None).await, 401);
    assert_eq!(hub.metrics_status(Some("from-the-file")).await, 200);
    assert_eq!(hub.register_status().await, 403);
    hub.stop().await;

    // The environment over the file (here given with `TICKETHUB_CONFIG`), for the setting it
    // names only: registration stays closed as the file says.
    let hub = Proc::serve_with(
        &[],
        &[
            ("TICKETHUB_CONFIG", file),
            ("TICKETHUB_METRICS_TOKEN", "from-the-environment"),
        ],
    )
    .await;
    assert_eq!(hub.metrics_status(Some("from-the-environment")).await, 200);
    assert_eq!(hub.metrics_status(Some("from-the-file")).await, 401);
    assert_eq!(hub.register_status().await, 403);
    hub.stop().await;

    // A flag over the environment and the file; the environment over the file again.
    let hub = Proc::serve_with(
        &["--config", file, "--metrics-token", "from-the-flag"],
        &[
            ("TICKETHUB_METRICS_TOKEN", "from-the-environment"),
            ("TICKETHUB_REGISTRATION", "open"),
        ],
    )
    .await;
    assert_eq!(hub.metrics_status(Some("from-the-flag")).await, 200);
    assert_eq!(hub.metrics_status(Some("from-the-environment")).await, 401);
    assert_eq!(hub.register_status().await, 400);
    hub.stop().await;
}

/// The syncs a hub makes of its write-ahead log while it commits `commits` notifications one
/// after the other, traced with `strace` attached to the process: in all, and of those the
/// `fsync` calls (the others are `fdatasync`).
async fn wal_syncs_during_commits(extra: &[&str], commits: usize) -> (usize, usize) {
    let mut args = vec!["--demo"];
    args.extend_from_slice(extra);
    let hub = Proc::serve(&args).await;
    let admin = hub.login("admin", "admin-demo").await;
    let access = admin["access"].as_str().unwrap().to_owned();
    let me: Value = hub
        .http
        .get(hub.url("/api/users/me/"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let send = || async {
        let res = hub
            .http
            .post(hub.url(SEND))
            .bearer_auth(&access)
            .json(&send_body(
                &[me["id"].as_i64().unwrap()],
                json!({"message": "Committed"}),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    };
    // The user's actor and the commit path are up before the count starts.
    send().await;

    let trace_dir = tempfile::tempdir().unwrap();
    let trace = trace_dir.path().join("syncs.txt");
    let mut strace = tokio::process::Command::new("strace")
        .args(["-f", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .args(["-p", &hub.pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("strace starts");
    let mut said = BufReader::new(strace.stderr.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(patience(), said.next_line())
            .await
            .expect("strace attaches in time")
            .unwrap();
        match line {
            Some(l) if l.contains("attached") => break,
            Some(_) => continue,
            None => {
                let status = strace.wait().await.unwrap();
                if services_required() {
                    panic!("strace cannot attach to the hub ({status})");
                }
                skip(format!("strace cannot attach to the hub ({status})"));
            }
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = said.next_line().await {} });

    for _ in 0..commits {
        send().await;
    }

    // strace detaches on SIGINT and writes out what it saw.
    send_signal(strace.id().unwrap(), "INT");
    tokio::time::timeout(patience(), strace.wait())
        .await
        .expect("strace detaches in time")
        .unwrap();
    let seen = std::fs::read_to_string(&trace).unwrap();
    hub.stop().await;
    let log: Vec<&str> = seen
        .lines()
        .filter(|l| l.contains("sync(") && l.contains("-wal>"))
        .collect();
    let fsyncs = log.iter().filter(|l| l.contains("fsync(")).count();
    (log.len(), fsyncs)
}

/// `--sqlite-synchronous normal` is applied to the hub's connections: its commits do not wait
/// for the disk, while under the default (`full`) each commit syncs the write-ahead log.
async fn sqlite_synchronous_normal_commits_without_syncing_the_log() {
    let runs = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        if services_required() {
            panic!("strace is missing: install it to observe the hub's fsync calls");
        }
        skip("no strace: install it to observe the hub's fsync calls");
    }
    const COMMITS: usize = 40;
    let (full, fsyncs) = wal_syncs_during_commits(&[], COMMITS).await;
    let (normal, _) = wal_syncs_during_commits(&["--sqlite-synchronous", "normal"], COMMITS).await;
    // SQLite as built here (`LIBSQLITE3_FLAGS` in `.cargo/config.toml`) syncs its files with
    // `fdatasync`, which leaves out the inode when only its times changed.
    assert_eq!(
        fsyncs, 0,
        "the log is synced with fdatasync, not fsync ({fsyncs} of {full})"
    );
    // `full`: at least one sync per commit. `normal`: only the checkpoints (every 500 ms)
    // sync the log.
    assert!(
        full >= COMMITS,
        "full: {full} syncs of the log for {COMMITS} commits"
    );
    assert!(
        normal < COMMITS / 2,
        "normal: {normal} syncs of the log for {COMMITS} commits (full: {full})"
    );
}

/// What a connect storm against a locked `users` table did to a hub on PostgreSQL.
struct Storm {
    /// `/readyz` while the storm waited.
    readyz: u16,
    /// Handshakes of the storm waiting on the database (in `pg_stat_activity`).
    reading: i64,
    /// Sockets of the storm that connected once the table was free.
    connected: usize,
}

const STORM: usize = 24;

/// Handshakes waiting on the locked `users` table: hub connections blocked reading a user.
async fn handshake_reads(observer: &mut sqlx::PgConnection) -> i64 {
    let sql = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
               AND wait_event_type = 'Lock' AND query LIKE '%FROM users WHERE id%'";
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(observer)
        .await
        .unwrap()
}

/// Locks `users`, opens [`STORM`] sockets at once, and looks at the hub and the database once
/// every handshake has reached the hub.
async fn storm(backend: &Backend, concurrency: u32) -> Storm {
    use sqlx::{Connection, Executor};
    let (db, db_args) = database(backend).await;
    let concurrency = concurrency.to_string();
    let mut args: Vec<&str> = db_args.iter().map(String::as_str).collect();
    args.extend([
        "--demo",
        "--ws-handshake-concurrency",
        &concurrency,
        "--max-sockets-per-user",
        "0",
        "--db-acquire-timeout-ms",
        "500",
    ]);
    let hub = Proc::serve(&args).await;
    let access = hub.login("client", "client-demo").await["access"]
        .as_str()
        .unwrap()
        .to_owned();
    let observer = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut locker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    locker.execute("BEGIN").await.unwrap();
    locker
        .execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let arrivals = |l: &str| {
        l.contains("started processing request") && l.contains("route=/ws/notifications/")
    };
    let before = hub.count_logged(arrivals);
    let url = hub.ws_url(&format!("/ws/notifications/?token={access}"));
    let sockets: Vec<_> = (0..STORM)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut ws = Ws::connect_with(&url, &[]).await.ok()?;
                ws.established().await;
                Some(ws)
            })
        })
        .collect();
    hub.logged("every handshake reaches the hub", before + STORM, arrivals)
        .await;
    let observer = tokio::sync::Mutex::new(observer);
    eventually("a handshake reads the locked table", || async {
        handshake_reads(&mut *observer.lock().await).await > 0
    })
    .await;
    let mut observer = observer.into_inner();
    let readyz = hub
        .http
        .get(hub.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    let reading = handshake_reads(&mut observer).await;

    locker.execute("ROLLBACK").await.unwrap();
    let mut connected = 0;
    for socket in sockets {
        if let Ok(Ok(Some(_ws))) = tokio::time::timeout(patience(), socket).await {
            connected += 1;
        }
    }
    hub.stop().await;
    Storm {
        readyz,
        reading,
        connected,
    }
}

/// `--ws-handshake-concurrency 1`: a connect storm whose handshakes cannot read the database
/// (its `users` table is locked) holds one database connection; the rest wait their turn, the
/// pool stays free for everything else (`/readyz` reaches the database), and every socket
/// connects once the table is free. With a bound wider than the storm, the same storm holds
/// the whole pool and `/readyz` cannot reach the database.
async fn ws_handshake_concurrency_keeps_a_connect_storm_off_the_database_pool() {
    let backend = Backend::postgres();
    let bounded = storm(&backend, 1).await;
    assert_eq!(
        bounded.reading, 1,
        "handshakes reading the database at once"
    );
    assert_eq!(bounded.readyz, 200, "/readyz during the storm");
    assert_eq!(
        bounded.connected, STORM,
        "sockets connected after the storm"
    );

    let unbounded = storm(&backend, 1000).await;
    assert!(
        unbounded.reading > 1,
        "without the bound, {} handshakes read at once",
        unbounded.reading
    );
    assert_eq!(unbounded.readyz, 503, "/readyz during an unbounded storm");
}

/// A command line, its environment, and the setting its error must name.
/// What the hub writes holds people's data: the SQLite database and its log, the secret and
/// key it generates, the mail outbox and each mail in it are its own user's alone.
async fn what_the_hub_writes_is_readable_by_its_user_alone() {
    use std::os::unix::fs::PermissionsExt;
    let hub = Proc::serve(&["--demo"]).await;
    let dir = hub._dir.as_ref().unwrap().path().to_owned();
    let tokens = hub.login("admin", "admin-demo").await;
    let access = tokens["access"].as_str().unwrap().to_owned();
    let me: Value = hub
        .http
        .get(hub.url("/api/users/me/"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sent = hub
        .http
        .post(hub.url(SEND))
        .bearer_auth(&access)
        .json(&send_body(
            &[me["id"].as_i64().unwrap()],
            json!({"channels": ["email"]}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    let outbox = dir.join("mail-outbox");
    let mail = eventually_ok("the mail is written", || async {
        std::fs::read_dir(&outbox)
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "eml"))
            .ok_or_else(|| "no mail yet".to_owned())
    })
    .await;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    for file in [
        "hub.db",
        "hub.db-wal",
        "hub.db.jwt-secret",
        "hub.db.vapid.pem",
    ] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&outbox), 0o700, "the mail outbox");
    assert_eq!(mode(&mail), 0o600, "{}", mail.display());
    hub.stop().await;
}

type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

crate::trials! {
    both: [
        sigterm_lets_the_request_in_flight_finish_refuses_new_connections_and_exits_0,
    ],
    tests: [
        sigint_stops_the_hub_as_sigterm_does,
        a_request_that_never_ends_holds_the_hub_only_for_the_shutdown_timeout,
        a_failed_request_is_logged_with_its_route_and_a_shed_one_is_not,
        a_signal_right_after_the_address_line_is_still_a_graceful_stop,
        flags_win_over_the_environment_which_wins_over_the_config_file_over_defaults,
        sqlite_synchronous_normal_commits_without_syncing_the_log,
        ws_handshake_concurrency_keeps_a_connect_storm_off_the_database_pool,
        what_the_hub_writes_is_readable_by_its_user_alone,
    ],
    sync: [
        bad_values_of_these_settings_exit_64_naming_them,
    ],
}
