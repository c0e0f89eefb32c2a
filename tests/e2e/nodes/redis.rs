//! Redis of the test's own: one server, a Cluster of three masters and their replicas, or a
//! primary and its replica watched by a Sentinel, each on random ports.

use super::*;

/// A `redis-server` of the test's own, on a random port.
pub struct RedisServer {
    pub port: u16,
    child: Option<tokio::process::Child>,
    /// Settings beside the port's (a Cluster member's, a replica's), kept for restarts.
    args: Vec<String>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it listens; if another process
    /// took the port between the choice and the bind, again on another one.
    pub async fn start() -> RedisServer {
        Self::start_with(Vec::new()).await
    }

    /// [`RedisServer::start`] with more settings.
    pub async fn start_with(args: Vec<String>) -> RedisServer {
        let mut server = RedisServer {
            port: 0,
            child: None,
            args,
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

    /// Starts the server again on the same port and with the same settings (after
    /// [`RedisServer::kill`]): the nodes know it by that port, so a port taken meanwhile fails
    /// the test with the server's log.
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
                // Its own file in a folder the servers of a Cluster or a Sentinel's pair share
                // (a replica writes what it is sent): another's data, loaded at a restart,
                // would hold keys of slots it does not serve.
                "--dbfilename",
                &format!("dump-{}.rdb", self.port) as &str,
            ])
            .args(&self.args)
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
            let args: Vec<String> = [
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
            let mut server = RedisServer {
                port,
                child: None,
                args,
            };
            if let Ok(child) = server.spawn().await {
                server.child = Some(child);
                servers.push(server);
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

    /// `CLUSTER NODES` as the first live server tells it: per line, the server's index (if
    /// it is one of ours), its flags, and whether it serves slots.
    async fn nodes(&self) -> Vec<(Option<usize>, String, bool)> {
        let Some(port) = self
            .servers
            .iter()
            .find(|s| s.child.is_some())
            .map(|s| s.port)
        else {
            return Vec::new();
        };
        let nodes = Self::cli(port, &["CLUSTER", "NODES"]).await;
        nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port: u16 = fields
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                Some((
                    self.servers.iter().position(|s| s.port == port),
                    fields.get(2)?.to_string(),
                    fields.len() > 8,
                ))
            })
            .collect()
    }

    /// The indexes of the masters that serve slots and are not flagged failed.
    pub async fn masters(&self) -> Vec<usize> {
        self.nodes()
            .await
            .into_iter()
            .filter(|(_, flags, slots)| {
                *slots && flags.contains("master") && !flags.contains("fail")
            })
            .filter_map(|(k, _, _)| k)
            .collect()
    }

    /// Whether the cluster is whole again: every server runs and says the cluster is ok, none
    /// is flagged failed, three masters serve the slots and each replica is in sync.
    pub async fn whole(&self) -> bool {
        if self.servers.iter().any(|s| s.child.is_none()) {
            return false;
        }
        for s in &self.servers {
            if !Self::cli(s.port, &["CLUSTER", "INFO"])
                .await
                .contains("cluster_state:ok")
            {
                return false;
            }
        }
        let nodes = self.nodes().await;
        if nodes.len() != self.servers.len()
            || nodes.iter().any(|(_, flags, _)| flags.contains("fail"))
            || self.masters().await.len() != 3
        {
            return false;
        }
        for (k, flags, _) in nodes {
            let Some(k) = k else { return false };
            if flags.contains("slave")
                && !Self::cli(self.servers[k].port, &["INFO", "replication"])
                    .await
                    .contains("master_link_status:up")
            {
                return false;
            }
        }
        true
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
        // The primary too, once a replica, writes what it is sent to the test's folder.
        let primary =
            RedisServer::start_with(vec!["--dir".into(), dir.display().to_string()]).await;
        // The replica writes the copy it is sent to its folder: the test's own, not the
        // working directory.
        let mut replica = RedisServer {
            port: free_port(),
            child: None,
            args: [
                "--replicaof",
                "127.0.0.1",
                &primary.port.to_string(),
                "--dir",
                &dir.display().to_string(),
            ]
            .map(String::from)
            .to_vec(),
        };
        replica.child = Some(replica.spawn().await.expect("the replica starts"));
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

    /// The server the Sentinel names primary now: 0 for the first primary, 1 for its replica.
    pub async fn master(&self) -> Option<usize> {
        let named = RedisCluster::cli(
            self.port,
            &["SENTINEL", "get-master-addr-by-name", SENTINEL_SERVICE],
        )
        .await;
        let port: u16 = named.lines().last()?.trim().parse().ok()?;
        [self.primary.port, self.replica.port]
            .iter()
            .position(|p| *p == port)
    }

    /// The first primary (0) or its replica (1).
    pub fn server(&mut self, k: usize) -> &mut RedisServer {
        if k == 0 {
            &mut self.primary
        } else {
            &mut self.replica
        }
    }

    /// Whether the pair is whole again: both run, the one the Sentinel names primary says it
    /// is, and the other replicates it, in sync.
    pub async fn whole(&self) -> bool {
        let Some(m) = self.master().await else {
            return false;
        };
        let servers = [&self.primary, &self.replica];
        if servers.iter().any(|s| s.child.is_none()) {
            return false;
        }
        let (master, other) = (servers[m].port, servers[1 - m].port);
        RedisCluster::cli(master, &["INFO", "replication"])
            .await
            .contains("role:master")
            && {
                let info = RedisCluster::cli(other, &["INFO", "replication"]).await;
                info.contains("role:slave")
                    && info.contains(&format!("master_port:{master}"))
                    && info.contains("master_link_status:up")
            }
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
