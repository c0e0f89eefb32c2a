//! Several hub processes for real: the `tickethub` binary as child processes on one database,
//! and a private `redis-server` on a random port that a test can kill and start again.

use std::process::Stdio;
use std::sync::Arc;

use serde_json::{json, Value};
use tickethub::auth::Auth;
use tickethub_actors::domain::{NewUser, Role, User};
use tickethub_actors::ports::Store;

use crate::harness::{
    eventually, patience, send_body, test_config, Backend, Metrics, TestDb, Ws, SECRET, SEND,
};

const BIN: &str = env!("CARGO_BIN_EXE_tickethub");

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

/// A `redis-server` of the test's own, on a random port.
pub struct RedisServer {
    pub port: u16,
    child: Option<tokio::process::Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it listens; if another process
    /// took the port between the choice and the bind, again on another one.
    pub async fn start() -> RedisServer {
        let mut server = RedisServer {
            port: 0,
            child: None,
        };
        let mut failures = Vec::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn().await {
                Ok(child) => {
                    server.child = Some(child);
                    return server;
                }
                Err(log) => failures.push(format!("port {}: {log}", server.port)),
            }
        }
        panic!("redis-server did not start: {failures:#?}");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL and waits for it to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    /// Freezes the server (SIGSTOP): its connections stay open and nothing is answered, as a
    /// server that hangs; [`RedisServer::thaw`] lets it go on.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        signal(self.child.as_ref(), name);
    }

    /// Starts the server again on the same port (after [`RedisServer::kill`]): the nodes know
    /// it by that port, so a port taken meanwhile fails the test with the server's log.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        match self.spawn().await {
            Ok(child) => self.child = Some(child),
            Err(log) => panic!("redis-server did not start again on {}: {log}", self.port),
        }
    }

    /// Runs `redis-server` on `self.port` and reads its log until it says it accepts
    /// connections (then it holds the port); its log when it exits first, as it does when it
    /// cannot bind.
    async fn spawn(&self) -> Result<tokio::process::Child, String> {
        self.spawn_with(&[]).await
    }

    /// [`RedisServer::spawn`] with more settings.
    async fn spawn_with(&self, extra: &[String]) -> Result<tokio::process::Child, String> {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                "",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| crate::harness::missing("redis-server", &e));
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut log = String::new();
        let ready = tokio::time::timeout(patience(), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let ready = line.contains("Ready to accept connections");
                log.push_str(&line);
                log.push('\n');
                if ready {
                    return true;
                }
            }
            false
        })
        .await
        .expect("redis-server starts or exits in time");
        if !ready {
            let _ = child.wait().await;
            return Err(log);
        }
        // The rest of its log is read and dropped, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(child)
    }
}

/// A Redis Cluster of the test's own: three masters and a replica of each, on ports whose
/// cluster bus port (the port + 10,000) is free too.
pub struct RedisCluster {
    pub servers: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "tickethub-redis-cluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut servers = Vec::new();
        while servers.len() < 6 {
            let port = free_port();
            if port >= 55_535 || std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_err()
            {
                continue;
            }
            let server = RedisServer { port, child: None };
            let extra: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &dir.join(format!("nodes-{port}.conf")).display().to_string(),
                "--cluster-node-timeout",
                "1000",
                // A replica takes over however long ago it last heard its master (a fresh
                // cluster's replica may have heard nothing since its first sync).
                "--cluster-replica-validity-factor",
                "0",
                "--dir",
                &dir.display().to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if let Ok(child) = server.spawn_with(&extra).await {
                servers.push(RedisServer {
                    port,
                    child: Some(child),
                });
            }
        }
        // The first three become masters, the others their replicas.
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(servers.iter().map(|s| format!("127.0.0.1:{}", s.port)));
        create.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let made = tokio::process::Command::new("redis-cli")
            .args(&create)
            .output()
            .await
            .unwrap();
        assert!(
            made.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&made.stdout)
        );
        let cluster = RedisCluster { servers, dir };
        for server in &cluster.servers {
            cluster.wait_ok(server.port).await;
        }
        cluster
    }

    /// `redis-cluster://` with every server as a seed.
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.servers[0].port);
        for (i, s) in self.servers.iter().enumerate().skip(1) {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", s.port));
        }
        url
    }

    /// `redis-cli -p <port> <args>`'s answer.
    pub async fn cli(port: u16, args: &[&str]) -> String {
        let out = tokio::process::Command::new("redis-cli")
            .arg("-p")
            .arg(port.to_string())
            .args(args)
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the server at `port` says the cluster is whole.
    pub async fn wait_ok(&self, port: u16) {
        eventually("the Redis Cluster is whole", || async move {
            Self::cli(port, &["CLUSTER", "INFO"])
                .await
                .contains("cluster_state:ok")
        })
        .await;
    }

    /// The index of the master that serves `channel`'s slot.
    pub async fn master_of(&self, channel: &str) -> usize {
        self.try_master_of(channel)
            .await
            .expect("a master serves the slot")
    }

    /// The index of the live master that serves `channel`'s slot, as a live server sees it;
    /// `None` while none does (a failover in progress).
    pub async fn try_master_of(&self, channel: &str) -> Option<usize> {
        let port = self
            .servers
            .iter()
            .find(|s| s.child.is_some())
            .unwrap()
            .port;
        let slot: u32 = Self::cli(port, &["CLUSTER", "KEYSLOT", channel])
            .await
            .trim()
            .parse()
            .unwrap();
        // `<id> <ip:port@bus> <flags> <master> … <slot ranges>`
        let nodes = Self::cli(port, &["CLUSTER", "NODES"]).await;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                match (a.parse::<u32>(), b.parse::<u32>()) {
                    (Ok(a), Ok(b)) => (a..=b).contains(&slot),
                    _ => false,
                }
            });
            if serves {
                let port: u16 = fields[1]
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                    .unwrap();
                return self.servers.iter().position(|s| s.port == port);
            }
        }
        None
    }

    /// Kills the master that serves `channel`'s slot and waits until its replica has taken
    /// over and the cluster is whole again.
    pub async fn fail_over(&mut self, channel: &str) {
        let gone = self.master_of(channel).await;
        self.servers[gone].kill().await;
        eventually("a replica takes over the slot", || async {
            self.try_master_of(channel)
                .await
                .is_some_and(|master| master != gone)
        })
        .await;
        for k in 0..self.servers.len() {
            if self.servers[k].child.is_some() {
                self.wait_ok(self.servers[k].port).await;
            }
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The service name a [`RedisSentinel`] watches.
const SENTINEL_SERVICE: &str = "tickethub";

/// A primary, its replica and a Sentinel watching them (quorum 1), of the test's own.
pub struct RedisSentinel {
    pub primary: RedisServer,
    pub replica: RedisServer,
    port: u16,
    _sentinel: tokio::process::Child,
    dir: std::path::PathBuf,
}

impl RedisSentinel {
    pub async fn start() -> RedisSentinel {
        let dir = std::env::temp_dir().join(format!(
            "tickethub-redis-sentinel-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let primary = RedisServer::start().await;
        let mut replica = RedisServer {
            port: free_port(),
            child: None,
        };
        // The replica writes the copy it is sent to its folder: the test's own, not the
        // working directory.
        let of = [
            "--replicaof",
            "127.0.0.1",
            &primary.port.to_string(),
            "--dir",
            &dir.display().to_string(),
        ]
        .map(String::from);
        replica.child = Some(replica.spawn_with(&of).await.expect("the replica starts"));
        let replica_port = replica.port;
        eventually("the replica has synced", || async move {
            RedisCluster::cli(replica_port, &["INFO", "replication"])
                .await
                .contains("master_link_status:up")
        })
        .await;
        // The Sentinel starts after the replica synced, so that its first look at the primary
        // finds it (it looks again only every 10 s).
        let port = free_port();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
                 sentinel failover-timeout {SENTINEL_SERVICE} 5000\n",
                dir.display(),
                primary.port
            ),
        )
        .unwrap();
        let sentinel = tokio::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed");
        eventually("the Sentinel knows the replica", || async move {
            RedisCluster::cli(port, &["SENTINEL", "replicas", SENTINEL_SERVICE])
                .await
                .contains(&replica_port.to_string())
        })
        .await;
        RedisSentinel {
            primary,
            replica,
            port,
            _sentinel: sentinel,
            dir,
        }
    }

    /// `redis-sentinel://` with the Sentinel as its one node.
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}?sentinelServiceName={SENTINEL_SERVICE}",
            self.port
        )
    }

    /// Kills the primary and waits until the Sentinel has promoted the replica.
    pub async fn fail_over(&mut self) {
        self.primary.kill().await;
        let (sentinel, replica) = (self.port, self.replica.port);
        eventually("the Sentinel promoted the replica", || async move {
            let master = RedisCluster::cli(
                sentinel,
                &["SENTINEL", "get-master-addr-by-name", SENTINEL_SERVICE],
            )
            .await;
            master.lines().last() == Some(&replica.to_string())
                && RedisCluster::cli(replica, &["INFO", "replication"])
                    .await
                    .contains("role:master")
        })
        .await;
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One hub process.
pub struct Node {
    /// `127.0.0.1:<port>`: the port the first start was given by the system, kept across
    /// restarts when it is still free.
    pub addr: String,
    args: Vec<String>,
    child: Option<tokio::process::Child>,
}

impl Node {
    /// Starts `tickethub serve` with these settings on a port the system picks.
    pub async fn start(args: Vec<String>) -> Node {
        // The test's reqwest clients need rustls' provider, which an in-process hub would
        // install; a test that only runs child processes installs it here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut node = Node {
            addr: "127.0.0.1:0".to_owned(),
            args,
            child: None,
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
        let mut child = tokio::process::Command::new(BIN)
            .arg("serve")
            .args(["--bind", bind])
            .args(&self.args)
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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
    pub db: TestDb,
    /// The Redis Cluster the nodes use instead of `redis`, if they were started on one.
    pub redis_cluster: Option<RedisCluster>,
    /// The Sentinel-watched primary the nodes use instead of `redis`, if they were started on
    /// one.
    pub redis_sentinel: Option<RedisSentinel>,
}

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
        let store = tickethub::store::connect(&db.url).await.unwrap();
        let prefix = format!("th-{}", uuid::Uuid::new_v4().simple());
        let mut args: Vec<String> = [
            "--database-url",
            &db.url,
            "--jwt-secret",
            SECRET,
            "--redis-url",
            &redis_url,
            "--redis-prefix",
            &prefix,
            "--mail-outbox-dir",
            &std::env::temp_dir()
                .join(format!("tickethub-mail-{prefix}"))
                .display()
                .to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(Node::start(args.clone()).await);
        }
        let auth = Auth::from_config(&test_config(&db.url), Some(SECRET)).unwrap();
        Cluster {
            nodes,
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
