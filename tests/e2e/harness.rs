//! The test harness: start a hub on a fresh database, make users, open sockets.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tickethub::auth::Auth;
use tickethub::{Application, ServeConfig};
use tickethub_actors::domain::{NewUser, Role, User};
use tickethub_actors::ports::Store;
use tickethub_actors::Hub;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The HS256 secret every test hub uses, so tests can forge tokens.
pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// How long any single expected event may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Which database a test hub runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    /// A fresh SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server at this admin URL.
    Postgres(String),
}

impl Backend {
    /// PostgreSQL at `TEST_DATABASE_URL`, or, when that is not set, at the local server's
    /// default address if it answers (`postgres://postgres@127.0.0.1:5432/postgres`). `None`
    /// (with a notice) if neither, unless `TICKETHUB_REQUIRE_SERVICES=1`, where a missing
    /// service is a failure.
    pub fn postgres() -> Option<Backend> {
        service(
            "TEST_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
            5432,
            "PostgreSQL",
        )
        .map(Backend::Postgres)
    }
}

/// The Redis URL for tests: `TEST_REDIS_URL`, or the local server's default address if it
/// answers (`redis://127.0.0.1:6379`); `None` (with a notice) if neither, unless
/// `TICKETHUB_REQUIRE_SERVICES=1`, where a missing service is a failure.
pub fn redis() -> Option<String> {
    service("TEST_REDIS_URL", "redis://127.0.0.1:6379", 6379, "Redis")
}

/// A test service's URL: from `var`, else `local` if something listens on its port.
fn service(var: &str, local: &str, port: u16, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => return Some(url),
        _ => {}
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)).is_ok() {
        return Some(local.to_owned());
    }
    if std::env::var("TICKETHUB_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{var} is not set, nothing answers on {addr}, and TICKETHUB_REQUIRE_SERVICES=1");
    }
    eprintln!("notice: {var} is not set and no {what} answers on {addr}; skipping a {what} test");
    None
}

/// Runs an async test body once per backend: SQLite, and PostgreSQL when available.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::harness::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(b) = $crate::harness::Backend::postgres() {
                        super::$name(b).await
                    }
                }
            }
        )*
    };
}

/// A fresh database: its URL and what must be cleaned up.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    /// Creates an empty database on the backend.
    pub async fn create(backend: &Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("hub.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres(admin_url) => {
                use sqlx::Connection;
                let name = format!("th_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(admin_url)
                    .await
                    .expect("cannot reach TEST_DATABASE_URL");
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let _ = conn.close().await;
                let url = with_database(admin_url, &name);
                TestDb {
                    url,
                    _dir: None,
                    pg: Some((admin_url.clone(), name)),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            // Drop the database from a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// The admin URL with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A hub running in this process on port 0.
pub struct TestHub {
    pub addr: SocketAddr,
    /// Where `/metrics` is served when it has a listener of its own (`--metrics-bind`).
    pub metrics_addr: Option<SocketAddr>,
    pub hub: Hub,
    pub store: Arc<dyn Store>,
    pub auth: Arc<Auth>,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub db: TestDb,
}

/// The configuration every test hub starts from.
pub fn test_config(db_url: &str) -> ServeConfig {
    let mut c = ServeConfig::defaults();
    c.bind = "127.0.0.1:0".parse().unwrap();
    c.database_url = db_url.to_owned();
    c.jwt_secret = Some(SECRET.to_owned());
    c.shutdown_timeout = 5;
    // Mail goes to a folder nobody reads unless a test points the hub at its SMTP server.
    c.mail_outbox_dir =
        std::env::temp_dir().join(format!("tickethub-mail-{}", uuid::Uuid::new_v4().simple()));
    c
}

impl TestHub {
    /// A hub with the default test configuration.
    pub async fn start(backend: &Backend) -> TestHub {
        Self::start_with(backend, |_| {}).await
    }

    /// A hub whose configuration `tweak` adjusts first.
    pub async fn start_with(backend: &Backend, tweak: impl FnOnce(&mut ServeConfig)) -> TestHub {
        Self::start_on(TestDb::create(backend).await, tweak).await
    }

    /// A hub on an existing database (for restarts).
    pub async fn start_on(db: TestDb, tweak: impl FnOnce(&mut ServeConfig)) -> TestHub {
        let mut config = test_config(&db.url);
        tweak(&mut config);
        let app = Application::build(config).await.expect("hub builds");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let hub = app.hub();
        let store = app.store();
        let auth = app.auth();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        TestHub {
            addr,
            metrics_addr,
            hub,
            store,
            auth,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            db,
        }
    }

    /// Shuts the hub down gracefully and hands back its database.
    pub async fn stop_keep_db(mut self) -> TestDb {
        self.stop().await;
        std::mem::replace(
            &mut self.db,
            TestDb {
                url: String::new(),
                _dir: None,
                pg: None,
            },
        )
    }

    /// Shuts the hub down gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("hub stops in time")
                .unwrap()
                .unwrap();
        }
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `ws://addr/path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Creates a user directly in the store; the password is `<username>-password`.
    pub async fn user(&self, username: &str, role: Role) -> User {
        self.user_with(username, role, false).await
    }

    /// Creates a user, optionally a super admin.
    pub async fn user_with(&self, username: &str, role: Role, superuser: bool) -> User {
        self.store
            .create_user(NewUser {
                username: username.to_owned(),
                display_name: format!("{username} display"),
                email: Some(format!("{username}@example.test")),
                whatsapp_number: None,
                role,
                is_superuser: superuser,
                password_hash: tickethub::auth::hash_password_blocking(&format!(
                    "{username}-password"
                )),
            })
            .await
            .unwrap()
    }

    /// A valid access token for a user.
    pub fn token(&self, user: &User) -> String {
        self.auth.issue_access(user).unwrap()
    }

    /// Opens `/ws/notifications/?token=…` and reads `connection_established`.
    pub async fn connect(&self, user: &User) -> Ws {
        let mut ws =
            Ws::connect(&self.ws_url(&format!("/ws/notifications/?token={}", self.token(user))))
                .await;
        ws.established().await;
        ws
    }

    /// GET with a bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        respond(req).await
    }

    /// A request with a method, a bearer token and an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        respond(req).await
    }

    /// POST as a user; panics unless the status is `expect`.
    pub async fn post_as(&self, user: &User, path: &str, body: Value, expect: u16) -> Value {
        let (status, res) = self.post(path, Some(&self.token(user)), body).await;
        assert_eq!(status, expect, "POST {path} as {}: {res}", user.username);
        res
    }

    /// GET as a user; panics unless the status is `expect`.
    pub async fn get_as(&self, user: &User, path: &str, expect: u16) -> Value {
        let (status, res) = self.get(path, Some(&self.token(user))).await;
        assert_eq!(status, expect, "GET {path} as {}: {res}", user.username);
        res
    }

    /// Creates a project directly in the store.
    pub async fn project(&self, key: &str, members: &[&User]) -> tickethub_actors::domain::Project {
        let ids: Vec<_> = members.iter().map(|u| u.id).collect();
        self.store
            .create_project(key, &format!("{key} project"), &ids)
            .await
            .unwrap()
    }

    /// Starts a second hub on this hub's database (two processes sharing one database).
    pub async fn sibling(&self) -> TestHub {
        self.sibling_with(|_| {}).await
    }

    /// Starts a second hub on this hub's database, configured by `tweak`.
    pub async fn sibling_with(&self, tweak: impl FnOnce(&mut ServeConfig)) -> TestHub {
        let mut config = test_config(&self.db.url);
        config.bind = "127.0.0.1:0".parse().unwrap();
        tweak(&mut config);
        let app = Application::build(config).await.expect("sibling builds");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let hub = app.hub();
        let store = app.store();
        let auth = app.auth();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        TestHub {
            addr,
            metrics_addr,
            hub,
            store,
            auth,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            db: TestDb {
                url: self.db.url.clone(),
                _dir: None,
                pg: None,
            },
        }
    }

    /// Two hubs in this process on one fresh database and the test Redis (`TEST_REDIS_URL`),
    /// with a channel prefix of their own so that parallel tests stay apart; `None` (with a
    /// notice) without Redis.
    pub async fn pair_on_redis(backend: &Backend) -> Option<(TestHub, TestHub)> {
        let url = redis()?;
        let prefix = format!("tickethub-test-{}", uuid::Uuid::new_v4().simple());
        let (u1, p1) = (url.clone(), prefix.clone());
        let a = TestHub::start_with(backend, move |c| {
            c.redis_url = Some(u1);
            c.redis_prefix = p1;
        })
        .await;
        let b = a
            .sibling_with(move |c| {
                c.redis_url = Some(url);
                c.redis_prefix = prefix;
            })
            .await;
        Some((a, b))
    }

    /// POST JSON with a bearer token.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        respond(req).await
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn respond(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.send().await.expect("request sent");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

/// A WebSocket client.
pub struct Ws {
    pub inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `Sec-WebSocket-Protocol` the hub selected.
    pub protocol: Option<String>,
    /// The notifications replayed when the socket connected.
    pub replayed: Vec<Value>,
    /// The `replay_complete` frame.
    pub replay_complete: Value,
}

/// How a socket ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this code.
    Closed(u16),
    /// The TCP connection ended without a close frame.
    Dropped,
}

impl Ws {
    /// Connects to a URL with no extra headers.
    pub async fn connect(url: &str) -> Ws {
        Self::connect_with(url, &[])
            .await
            .expect("websocket handshake")
    }

    /// Connects with extra headers; an HTTP refusal is the error.
    pub async fn connect_with(
        url: &str,
        headers: &[(&'static str, String)],
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(*k, v.parse().unwrap());
        }
        let (inner, resp) = tokio_tungstenite::connect_async(req).await?;
        let protocol = resp
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        Ok(Ws {
            inner,
            protocol,
            replayed: Vec::new(),
            replay_complete: Value::Null,
        })
    }

    /// Reads `connection_established`, then the replay up to `replay_complete` (keeping the
    /// replayed notifications and any `replay_truncated`), and returns the greeting.
    pub async fn established(&mut self) -> Value {
        let hello = self.next_json().await;
        assert_eq!(hello["type"], "connection_established", "{hello}");
        loop {
            let v = self.next_json().await;
            match v["type"].as_str() {
                Some("notification") => {
                    assert_eq!(v["replayed"], true, "{v}");
                    self.replayed.push(v);
                }
                Some("replay_truncated") => self.replayed.push(v),
                Some("replay_complete") => {
                    assert_eq!(
                        v["count"].as_u64().unwrap() as usize,
                        self.replayed
                            .iter()
                            .filter(|n| n["type"] == "notification")
                            .count()
                    );
                    self.replay_complete = v;
                    return hello;
                }
                _ => panic!("unexpected frame during replay: {v}"),
            }
        }
    }

    /// The next text frame as JSON, skipping protocol pings and pongs.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.inner.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("frame ok");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Sends a JSON text frame.
    pub async fn send_json(&mut self, v: Value) {
        self.inner.send(Message::text(v.to_string())).await.unwrap();
    }

    /// Sends a raw message.
    pub async fn send(&mut self, m: Message) {
        self.inner.send(m).await.unwrap();
    }

    /// Reads until the socket ends, and says how.
    pub async fn ended(&mut self) -> Ended {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.inner.next())
                .await
                .expect("the socket ends in time");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Ended::Closed(u16::from(frame.code))
                }
                Some(Ok(Message::Close(None))) => return Ended::Closed(1005),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ended::Dropped,
            }
        }
    }

    /// Reads until a close frame arrives and returns its code; fails on anything else.
    pub async fn close_code(&mut self) -> u16 {
        match self.ended().await {
            Ended::Closed(code) => code,
            Ended::Dropped => panic!("socket dropped without a close frame"),
        }
    }

    /// The next `n` notification frames, failing on any other frame but pongs.
    pub async fn notifications(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let v = self.next_json().await;
            match v["type"].as_str() {
                Some("notification") => out.push(v),
                Some("pong") => continue,
                _ => panic!("expected a notification, got {v}"),
            }
        }
        out
    }

    /// The next frame of a given type, skipping notifications and pongs.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let v = self.next_json().await;
            if v["type"] == kind {
                return v;
            }
            assert!(
                v["type"] == "notification"
                    || v["type"] == "pong"
                    || v["type"] == "notification_updated",
                "waiting for {kind}, got {v}"
            );
        }
    }

    /// Sends an application ping and waits for its pong.
    pub async fn roundtrip(&mut self) {
        self.send_json(serde_json::json!({"type": "ping", "timestamp": 1}))
            .await;
        loop {
            let v = self.next_json().await;
            if v["type"] == "pong" {
                assert_eq!(v["timestamp"], 1);
                return;
            }
        }
    }
}

/// Unused-import guard for `CloseCode` users.
pub fn code(c: CloseCode) -> u16 {
    u16::from(c)
}

/// A number the database answers to `sql` (a `SELECT COUNT(*) …`, say), read past the hub:
/// what is really stored, not what the API shows.
pub async fn db_number(db: &TestDb, sql: &str) -> i64 {
    use sqlx::Connection;
    if db.url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
    }
}

/// Polls `probe` until it answers `Some`, and returns that; fails after [`PATIENCE`].
pub async fn eventually_some<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `cond` until it holds, failing after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
