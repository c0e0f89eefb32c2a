//! Several hub processes for real: the `tickethub` binary as child processes on one database,
//! and a private `redis-server` on a random port that a test can kill and start again.

use std::process::Stdio;
use std::sync::Arc;

use serde_json::{json, Value};
use tickethub::auth::Auth;
use tickethub_actors::domain::{NewUser, Role, User};
use tickethub_actors::ports::Store;

use crate::harness::{
    eventually, patience, send_body, test_config, Backend, Metrics, TestDb, Ws, SEND,
};

mod redis;
pub use redis::*;

/// Sends a running child process the signal `name` (`STOP`, `CONT`, …).
fn signal(child: Option<&tokio::process::Child>, name: &str) {
    let pid = child.and_then(|c| c.id()).expect("the process is running");
    let sent = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{name} {pid}");
}

/// A TCP port on loopback that was free a moment ago (bound, read and released): another
/// process may take it before it is bound again, so whoever binds it must be ready to fail.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One hub process.
pub struct Node {
    /// `127.0.0.1:<port>`: the port the first start was given by the system, kept across
    /// restarts when it is still free.
    pub addr: String,
    args: Vec<String>,
    child: Option<tokio::process::Child>,
    /// The file the clock shim reads the process's clock offset from, if its clock can be skewed.
    clock: Option<std::path::PathBuf>,
    /// This node's name in its log file's (see [`log_file`]).
    name: u64,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(file) = &self.clock {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The clock shim ([`Node::skewable`]), built from `nodes/clock_shim.c` with the system's C
/// compiler once per test process.
fn clock_shim() -> &'static std::path::Path {
    static SHIM: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    SHIM.get_or_init(|| {
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/nodes/clock_shim.c");
        let out = crate::harness::scratch_path("clock-shim").with_extension("so");
        let built = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&out)
            .arg(source)
            .output()
            .unwrap_or_else(|e| crate::harness::missing("cc (a C compiler)", &e));
        assert!(
            built.status.success(),
            "the clock shim does not build: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        out
    })
}

/// What nodes log (`RUST_LOG`): `TICKETHUB_NODE_LOG_LEVEL`, or warnings.
fn log_level() -> String {
    std::env::var("TICKETHUB_NODE_LOG_LEVEL").unwrap_or_else(|_| "warn".to_owned())
}

/// Where a node's log goes: with `TICKETHUB_NODE_LOGS=<folder>`, appended to
/// `<folder>/node-<name>.log` (a node's restarts write on), else nowhere.
fn log_file(name: u64) -> Stdio {
    match log_path(&format!("node-{name:016x}.log")) {
        Some(path) => Stdio::from(path),
        None => Stdio::null(),
    }
}

/// A file of the node log folder (`TICKETHUB_NODE_LOGS`), opened to append, if there is one.
pub fn log_path(file: &str) -> Option<std::fs::File> {
    let folder = std::env::var("TICKETHUB_NODE_LOGS").ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::path::Path::new(&folder).join(file))
        .expect("the node log folder can be written to");
    Some(file)
}

impl Node {
    /// This node's log file's name (see [`log_file`]), for timelines beside it.
    pub fn log_name(&self) -> String {
        format!("node-{:016x}", self.name)
    }

    /// Lets the process's wall clock be moved by [`Node::skew`], from the next restart on: it
    /// runs with a clock shim preloaded, which reads the offset from a file of its own at most
    /// 100 ms old; the monotonic clock (timers, timeouts) is left alone, as a skewed machine's
    /// is.
    pub fn skewable(&mut self) {
        clock_shim();
        let file = crate::harness::scratch_path("clock");
        std::fs::write(&file, "0\n").unwrap();
        self.clock = Some(file);
    }

    /// Whether the node runs on the machine's clock, not made [`Node::skewable`].
    pub fn clock_is_fixed(&self) -> bool {
        self.clock.is_none()
    }

    /// Moves the wall clock of a [`Node::skewable`] node `seconds` away from the machine's
    /// (0 puts it back), within a tenth of a second.
    pub fn skew(&self, seconds: i64) {
        let file = self.clock.as_ref().expect("the node was made skewable");
        std::fs::write(file, format!("{seconds}\n")).unwrap();
    }

    /// Starts `tickethub serve` with these settings on a port the system picks.
    pub async fn start(args: Vec<String>) -> Node {
        // The test's reqwest clients need rustls' provider, which an in-process hub would
        // install; a test that only runs child processes installs it here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut node = Node {
            addr: "127.0.0.1:0".to_owned(),
            args,
            child: None,
            clock: None,
            name: rand::random(),
        };
        node.restart().await;
        node
    }

    /// Starts the process again (after [`Node::kill`]) on its address; if another process
    /// took the port meanwhile, on a new one.
    pub async fn restart(&mut self) {
        assert!(
            self.try_restart().await,
            "the node starts on a port of the system's choice"
        );
    }

    /// [`Node::restart`]; `false` if the process exited at once (on its own address and on
    /// another), as it does when its Redis cannot be reached.
    pub async fn try_restart(&mut self) -> bool {
        assert!(self.child.is_none(), "the node is already running");
        for bind in [self.addr.clone(), "127.0.0.1:0".to_owned()] {
            if let Some(child) = self.spawn(&bind).await {
                self.child = Some(child);
                return true;
            }
        }
        false
    }

    /// Starts `serve` on `bind`; reads the address it listens on from its first line. `None`
    /// when it could not listen there.
    async fn spawn(&mut self, bind: &str) -> Option<tokio::process::Child> {
        let mut command = tokio::process::Command::new(crate::harness::hub_bin());
        if let Some(file) = &self.clock {
            command
                .env("LD_PRELOAD", clock_shim())
                .env("CLOCK_SHIM_FILE", file);
        }
        let mut child = command
            .arg("serve")
            .args(["--bind", bind])
            .args(&self.args)
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env("TICKETHUB_BATCH_WINDOW", "0s")
            .env("RUST_LOG", log_level())
            .stdout(Stdio::piped())
            .stderr(log_file(self.name))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let read = tokio::time::timeout(
            patience(),
            tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line),
        )
        .await
        .expect("the node starts in time")
        .unwrap();
        if read == 0 {
            // It exited: the address was taken.
            let _ = child.wait().await;
            return None;
        }
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        self.addr = addr.to_owned();
        Some(child)
    }

    /// Kills the process with SIGKILL and waits for it to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    /// Sets the value of a setting given at start (`--database-url`, …), from the next
    /// [`Node::restart`] on.
    pub fn set_arg(&mut self, flag: &str, value: &str) {
        let at = self
            .args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("the node was not started with {flag}"));
        self.args[at + 1] = value.to_owned();
    }

    /// Freezes the process (SIGSTOP): its sockets stay open and nothing is answered.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen process go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        signal(self.child.as_ref(), name);
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Several hub processes on one database and one private Redis.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub redis: RedisServer,
    pub store: Arc<dyn Store>,
    pub auth: Auth,
    pub http: reqwest::Client,
    /// The nodes' Redis channel prefix.
    pub prefix: String,
    /// The secret its tokens are signed with: its own, so that a request that reaches another
    /// test's hub (on a port a killed node left, before the node is back) is refused there.
    pub secret: String,
    pub db: TestDb,
    /// The Redis Cluster the nodes use instead of `redis`, if they were started on one.
    pub redis_cluster: Option<RedisCluster>,
    /// The Sentinel-watched primary the nodes use instead of `redis`, if they were started on
    /// one.
    pub redis_sentinel: Option<RedisSentinel>,
}

/// Settings that leave a bus gap to the reconnect's own healing: no periodic reconciliation
/// and no catch-ups while the bus is away, within a test's time.
pub const ONLY_THE_RECONNECT_HEALS: &[&str] = &[
    "--bus-reconcile-interval",
    "3600",
    "--bus-outage-poll-ms",
    "3600000",
];

impl Cluster {
    /// `n` nodes on a fresh database of `backend`, each given `extra` settings too.
    pub async fn start(backend: &Backend, n: usize, extra: &[&str]) -> Cluster {
        Self::start_on(backend, n, extra, None, None).await
    }

    /// `n` nodes on a Redis Cluster of three masters and three replicas.
    pub async fn start_on_redis_cluster(backend: &Backend, n: usize, extra: &[&str]) -> Cluster {
        Self::start_on(backend, n, extra, Some(RedisCluster::start().await), None).await
    }

    /// `n` nodes on a primary and its replica watched by a Sentinel.
    pub async fn start_on_redis_sentinel(backend: &Backend, n: usize, extra: &[&str]) -> Cluster {
        Self::start_on(backend, n, extra, None, Some(RedisSentinel::start().await)).await
    }

    async fn start_on(
        backend: &Backend,
        n: usize,
        extra: &[&str],
        redis_cluster: Option<RedisCluster>,
        redis_sentinel: Option<RedisSentinel>,
    ) -> Cluster {
        let db = TestDb::create(backend).await;
        // The standalone server is started either way, and idles beside a Redis Cluster or a
        // Sentinel's primary.
        let redis = RedisServer::start().await;
        let redis_url = match (&redis_cluster, &redis_sentinel) {
            (Some(cluster), _) => cluster.url(),
            (None, Some(sentinel)) => sentinel.url(),
            (None, None) => redis.url(),
        };
        // A few connections for the test's own reads and writes: PostgreSQL serves 100 in
        // all, and two clusters under a nemesis run side by side.
        let options = tickethub::store::StoreOptions {
            max_connections: 4,
            ..Default::default()
        };
        let store = tickethub::store::connect_with(&db.url, options)
            .await
            .unwrap();
        let prefix = format!("th-{}", uuid::Uuid::new_v4().simple());
        let secret = format!("cluster-secret-{}", uuid::Uuid::new_v4().simple());
        let mut args: Vec<String> = [
            "--database-url",
            &db.url,
            "--jwt-secret",
            &secret,
            "--redis-url",
            &redis_url,
            "--redis-prefix",
            &prefix,
            "--mail-outbox-dir",
            &crate::harness::scratch_path("mail").display().to_string(),
            // Eight connections a node (six pooled, two for handshakes): three nodes of two
            // clusters side by side, and the other tests' hubs, stay within PostgreSQL's 100.
            "--db-max-connections",
            "8",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(Node::start(args.clone()).await);
        }
        let auth = Auth::from_config(&test_config(&db.url), Some(&secret)).unwrap();
        Cluster {
            nodes,
            secret,
            redis,
            store,
            auth,
            http: reqwest::Client::builder()
                .timeout(patience())
                .build()
                .unwrap(),
            prefix,
            db,
            redis_cluster,
            redis_sentinel,
        }
    }

    /// Kills the Redis master that serves `channel` (on a Redis Cluster) or the Sentinel's
    /// primary, and waits until a replica has taken over.
    pub async fn fail_over_redis(&mut self, channel: &str) {
        match (&mut self.redis_cluster, &mut self.redis_sentinel) {
            (Some(cluster), _) => cluster.fail_over(channel).await,
            (None, Some(sentinel)) => sentinel.fail_over().await,
            (None, None) => panic!("the nodes run on one Redis server, which has no replica"),
        }
    }

    /// Creates a user directly in the database (no password).
    pub async fn user(&self, username: &str, role: Role) -> User {
        self.store
            .create_user(NewUser {
                display_name: format!("{username} display"),
                ..NewUser::new(username, role, "x")
            })
            .await
            .unwrap()
    }

    /// The database every node runs on.
    pub fn db_url(&self) -> &str {
        &self.db.url
    }

    /// A node's `/metrics` value of a counter (summed over its labels; 0 when absent).
    pub async fn counter(&self, node: usize, name: &str) -> f64 {
        Metrics::scrape(&self.http, &self.nodes[node].url("/metrics"))
            .await
            .total(name)
    }

    /// A node's `/metrics` value of a counter, over the samples with each of these labels.
    pub async fn counter_with(&self, node: usize, name: &str, labels: &[&str]) -> f64 {
        Metrics::scrape(&self.http, &self.nodes[node].url("/metrics"))
            .await
            .value(name, labels)
    }

    /// A valid access token.
    pub fn token(&self, user: &User) -> String {
        self.auth.issue_access(user).unwrap()
    }

    /// Opens `/ws/notifications/` on a node (optionally resuming after `last_seq`), through
    /// its replay.
    pub async fn connect(&self, node: usize, user: &User, last_seq: Option<i64>) -> Ws {
        let resume = last_seq.map_or(String::new(), |s| format!("&last_seq={s}"));
        let mut ws = Ws::connect(&format!(
            "ws://{}/ws/notifications/?token={}{resume}",
            self.nodes[node].addr,
            self.token(user)
        ))
        .await;
        ws.established().await;
        ws
    }

    /// A request to a node as a user; returns the status and the JSON body.
    pub async fn call(
        &self,
        node: usize,
        method: reqwest::Method,
        user: &User,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.nodes[node].url(path))
            .bearer_auth(self.token(user));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POST as a user to a node; panics unless the status is `expect`.
    pub async fn post(
        &self,
        node: usize,
        user: &User,
        path: &str,
        body: Value,
        expect: u16,
    ) -> Value {
        let (status, res) = self
            .call(node, reqwest::Method::POST, user, path, Some(body))
            .await;
        assert_eq!(
            status, expect,
            "POST {path} on node {node} as {}: {res}",
            user.username
        );
        res
    }

    /// An admin's notification to one user, sent through a node.
    pub async fn send(&self, node: usize, admin: &User, to: &User, title: &str) {
        self.send_ids(node, admin, &[to.id.0], json!({ "title": title }))
            .await;
    }

    /// `POST /api/notifications/send/` through a node to user ids (see
    /// [`crate::harness::send_body`]); answers the created notifications.
    pub async fn send_ids(&self, node: usize, admin: &User, to: &[i64], extra: Value) -> Value {
        self.post(node, admin, SEND, send_body(to, extra), 201)
            .await
    }

    /// One node, to send requests to (as [`crate::harness::Api`]).
    pub fn on(&self, node: usize) -> OnNode<'_> {
        OnNode {
            cluster: self,
            node,
        }
    }

    /// A node's `/readyz`.
    pub async fn ready(&self, node: usize) -> (u16, Value) {
        let res = self
            .http
            .get(self.nodes[node].url("/readyz"))
            .send()
            .await
            .expect("readyz answers");
        (res.status().as_u16(), res.json().await.unwrap())
    }

    /// Waits until a node's `/readyz` reports the bus in this state.
    pub async fn bus_is(&self, node: usize, state: &str) {
        eventually(&format!("node {node}'s bus is {state}"), || async move {
            let (status, body) = self.ready(node).await;
            assert_eq!(status, 200, "{body}");
            body["bus"] == state
        })
        .await;
    }
}

/// One node of a cluster, where requests go.
pub struct OnNode<'a> {
    cluster: &'a Cluster,
    node: usize,
}

impl crate::harness::Api for OnNode<'_> {
    async fn post_as(&self, user: &User, path: &str, body: Value, expect: u16) -> Value {
        self.cluster.post(self.node, user, path, body, expect).await
    }
}
