//! The test harness: start a hub on a fresh database, make users, open sockets.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
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
mod private;
mod proxy;
pub use proxy::Proxy;
mod services;
pub use services::*;
mod tls;
pub use tls::*;
mod waiting;
pub use waiting::*;
mod ws;
pub use ws::*;

/// The HS256 secret every test hub uses, so tests can forge tokens.
pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// How long any single expected event may take before a test fails: 15 s, times
/// `TICKETHUB_TEST_PATIENCE` (a factor, e.g. `3` on a machine loaded by other work). Every wait
/// of the suite derives from it.
pub fn patience() -> Duration {
    static PATIENCE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *PATIENCE.get_or_init(|| {
        let factor = std::env::var("TICKETHUB_TEST_PATIENCE")
            .ok()
            .and_then(|f| f.parse::<f64>().ok())
            .filter(|f| *f > 0.0)
            .unwrap_or(1.0);
        Duration::from_secs_f64(15.0 * factor)
    })
}

/// [`patience()`] in milliseconds, for the actors' calls (`ractor::call_t!`).
pub fn patience_ms() -> u64 {
    patience().as_millis() as u64
}

/// The patience factor (`TICKETHUB_TEST_PATIENCE`, 1 when unset or not a positive number), as
/// it is handed to the node scripts, whose waits take the same factor.
pub fn patience_factor() -> String {
    (patience().as_secs_f64() / 15.0).to_string()
}

/// `ms` milliseconds, times the patience factor: for settings a test relies on to cover some
/// work (a grace period that must outlast a reconnect, say).
pub fn scaled_ms(ms: u64) -> u64 {
    (ms as f64 * patience().as_secs_f64() / 15.0).round() as u64
}

/// Which database a test hub runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    /// A fresh SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server at this admin URL.
    Postgres(String),
}

/// Why a test did not run: a panic with this payload ends the test as `ignored`.
pub struct Skip(pub String);

/// Ends the running test as `ignored`, with the reason (the runner catches it).
pub fn skip(reason: impl Into<String>) -> ! {
    std::panic::panic_any(Skip(reason.into()))
}

/// The suite's panic hook: a [`Skip`] is no failure, so it prints nothing; any other panic is
/// printed as usual.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<Skip>().is_none() {
            default(info);
        }
    }));
}

/// What a test's panic says.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "the test panicked".to_owned())
}

/// The outcome of a test body that ran (or panicked) on this thread.
fn outcome(
    ran: std::thread::Result<()>,
) -> Result<libtest_mimic::Completion, libtest_mimic::Failed> {
    match ran {
        Ok(()) => Ok(libtest_mimic::Completion::Completed),
        Err(payload) => match payload.downcast::<Skip>() {
            Ok(skip) => Ok(libtest_mimic::Completion::ignored_with(skip.0)),
            Err(payload) => Err(panic_message(&*payload).into()),
        },
    }
}

/// A test of an async body, run on a runtime of its own with two worker threads.
pub fn trial<F, Fut>(name: String, body: F) -> libtest_mimic::Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    libtest_mimic::Trial::ignorable_test(name, move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a test runtime");
        let ran =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(body())));
        // A test's leftover tasks are not waited for.
        runtime.shutdown_background();
        outcome(ran)
    })
}

/// A test of a plain body.
pub fn sync_trial(name: String, body: fn()) -> libtest_mimic::Trial {
    libtest_mimic::Trial::ignorable_test(name, move || outcome(std::panic::catch_unwind(body)))
}

/// Registers a module's tests: `both` run once per backend (`…::sqlite`, `…::postgres`, the
/// latter ignored without PostgreSQL), `tests` are async and run once, `sync` are plain.
#[macro_export]
macro_rules! trials {
    (
        both: [$($both:ident),* $(,)?],
        tests: [$($test:ident),* $(,)?],
        sync: [$($sync:ident),* $(,)?] $(,)?
    ) => {
        pub(crate) fn trials() -> Vec<libtest_mimic::Trial> {
            let module = module_path!().trim_start_matches("e2e::");
            #[allow(unused_mut)]
            let mut out: Vec<libtest_mimic::Trial> = Vec::new();
            $(
                out.push($crate::harness::trial(
                    format!("{module}::{}::sqlite", stringify!($both)),
                    || $both($crate::harness::Backend::Sqlite),
                ));
                out.push($crate::harness::trial(
                    format!("{module}::{}::postgres", stringify!($both)),
                    || async { $both($crate::harness::Backend::postgres()).await },
                ));
            )*
            $(
                out.push($crate::harness::trial(
                    format!("{module}::{}", stringify!($test)),
                    $test,
                ));
            )*
            $(
                out.push($crate::harness::sync_trial(
                    format!("{module}::{}", stringify!($sync)),
                    $sync,
                ));
            )*
            out
        }
    };
}

/// A fresh database: its URL and what must be cleaned up.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    /// A handle on a database that exists already (nothing is cleaned up after it).
    pub fn existing(url: &str) -> TestDb {
        TestDb {
            url: url.to_owned(),
            _dir: None,
            pg: None,
        }
    }

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
    /// The SMTP listener for replies, when it is on (`--inbound-smtp-bind`).
    pub smtp_addr: Option<SocketAddr>,
    pub hub: Hub,
    pub store: Arc<dyn Store>,
    pub auth: Arc<Auth>,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub db: TestDb,
}

/// The folder this test process writes its files to (the hubs' mail and attachments, keys,
/// clocks), under the system's temporary folder; `main` removes it once every test has run.
pub fn scratch() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tickethub-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// A fresh path in [`scratch`]: `what` followed by a random suffix.
pub fn scratch_path(what: &str) -> std::path::PathBuf {
    scratch().join(format!("{what}-{}", uuid::Uuid::new_v4().simple()))
}

/// The configuration every test hub starts from.
pub fn test_config(db_url: &str) -> ServeConfig {
    let mut c = ServeConfig::defaults();
    c.bind = "127.0.0.1:0".parse().unwrap();
    c.database_url = db_url.to_owned();
    c.jwt_secret = Some(SECRET.to_owned());
    c.shutdown_timeout = 5;
    // Each message goes at once; the batching tests set a window.
    c.batch_window = std::time::Duration::ZERO;
    // Mail goes to a folder nobody reads unless a test points the hub at its SMTP server.
    c.channels.email.mail_outbox_dir = scratch_path("mail");
    // An SQLite hub keeps attachments beside its database; a PostgreSQL one needs a folder.
    if !db_url.starts_with("sqlite") {
        c.attachments.attachments_dir = Some(scratch_path("attachments"));
    }
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
        Self::launch(db, config).await
    }

    async fn launch(db: TestDb, config: ServeConfig) -> TestHub {
        let app = Application::build(config).await.expect("hub builds");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let smtp_addr = app.smtp_addr();
        let hub = app.hub();
        let store = app.store();
        let auth = app.auth();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        TestHub {
            addr,
            metrics_addr,
            smtp_addr,
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
            tokio::time::timeout(patience(), task)
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
                phone_number: None,
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

    /// The purge actor's snapshot (asked again while a batch keeps it busy).
    pub async fn purge_snapshot(&self) -> tickethub_actors::purge::PurgeSnapshot {
        eventually_some("the purge actor answers", || async {
            self.hub.purge_snapshot().await
        })
        .await
    }

    /// Asks for a sweep and waits until one that began after the asking has finished; answers
    /// the purge actor's snapshot then.
    pub async fn sweep(&self) -> tickethub_actors::purge::PurgeSnapshot {
        let asked = chrono::Utc::now();
        self.hub.purge_now();
        eventually_some("a sweep finishes", || async {
            let s = self.hub.purge_snapshot().await?;
            (!s.sweeping && s.last_started.is_some_and(|t| t >= asked)).then_some(s)
        })
        .await
    }

    /// Waits until a user's sockets are all gone (their actor has stopped): nothing more is
    /// written to them.
    pub async fn offline(&self, user: &User) {
        eventually(&format!("{} has no socket left", user.username), || async {
            self.hub.user(user.id).is_none()
        })
        .await;
    }

    /// Opens `/ws/notifications/?token=…` and reads `connection_established`.
    pub async fn connect(&self, user: &User) -> Ws {
        let mut ws =
            Ws::connect(&self.ws_url(&format!("/ws/notifications/?token={}", self.token(user))))
                .await;
        ws.established().await;
        ws
    }

    /// `/metrics` as text (served beside the API, without a token).
    pub async fn metrics_text(&self) -> String {
        let res = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.text().await.unwrap()
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

    /// A hub whose routing file holds `routing` (read once, as it starts), looking for due
    /// escalation steps every 100 ms; `tweak` adjusts the rest.
    pub async fn start_routed(
        backend: &Backend,
        routing: &str,
        tweak: impl FnOnce(&mut ServeConfig),
    ) -> TestHub {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), routing).unwrap();
        let path = file.path().to_owned();
        Self::start_with(backend, |c| {
            c.routing = Some(path);
            c.escalation_poll_ms = 100;
            tweak(c);
        })
        .await
    }

    /// Starts a second hub on this hub's database (two processes sharing one database).
    pub async fn sibling(&self) -> TestHub {
        self.sibling_with(|_| {}).await
    }

    /// Starts a second hub on this hub's database, configured by `tweak`.
    pub async fn sibling_with(&self, tweak: impl FnOnce(&mut ServeConfig)) -> TestHub {
        Self::start_on(TestDb::existing(&self.db.url), tweak).await
    }

    /// `by` sends a notification (`POST /api/notifications/send/`) to `to`; `extra` adds to or
    /// overrides the body (`{"channels": [...]}`, say). Answers the created notifications.
    pub async fn send(&self, by: &User, to: &[&User], extra: Value) -> Value {
        self.send_ids(by, &ids(to), extra).await
    }

    /// [`TestHub::send`] to user ids (ids of nobody too, for the endpoint to skip).
    pub async fn send_ids(&self, by: &User, to: &[i64], extra: Value) -> Value {
        self.post_as(by, SEND, send_body(to, extra), 201).await
    }

    /// [`TestHub::send`] that answers the status instead of asserting it.
    pub async fn try_send(&self, by: &User, to: &[&User], extra: Value) -> (u16, Value) {
        self.post(SEND, Some(&self.token(by)), send_body(&ids(to), extra))
            .await
    }

    /// A ticket brought to `status` through the real actions (see [`ticket_in`]).
    pub async fn ticket_in(&self, status: &str, crew: &Crew<'_>, fields: Value) -> Value {
        ticket_in(self, status, crew, fields).await
    }

    /// The hub's `/metrics`, scraped now.
    pub async fn metrics(&self) -> Metrics {
        let addr = self.metrics_addr.unwrap_or(self.addr);
        Metrics::scrape(&self.http, &format!("http://{addr}/metrics")).await
    }

    /// Two hubs in this process on one fresh database and the test Redis (`TEST_REDIS_URL`),
    /// with a channel prefix of their own so that parallel tests stay apart (the test is
    /// ignored without Redis).
    pub async fn pair_on_redis(backend: &Backend) -> (TestHub, TestHub) {
        let url = redis();
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
        (a, b)
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

/// The send endpoint.
pub const SEND: &str = "/api/notifications/send/";

/// The users' ids.
pub fn ids(users: &[&User]) -> Vec<i64> {
    users.iter().map(|u| u.id.0).collect()
}

/// Adds `extra`'s members to the object `body`, replacing those of the same name.
fn merge(body: &mut Value, extra: Value) {
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
}

/// The body of `POST /api/notifications/send/` to `user_ids`: a title and a message, with
/// `extra` added or overriding (`{"title": …}`, `{"channels": […]}`).
pub fn send_body(user_ids: &[i64], extra: Value) -> Value {
    let mut body = json!({
        "user_ids": user_ids,
        "title": "Notice",
        "message": "Something happened",
    });
    merge(&mut body, extra);
    body
}

/// Where a test's requests go: a hub in this process, or one node of a cluster.
pub trait Api {
    /// POST as a user; panics unless the status is `expect`.
    async fn post_as(&self, user: &User, path: &str, body: Value, expect: u16) -> Value;
}

impl Api for TestHub {
    async fn post_as(&self, user: &User, path: &str, body: Value, expect: u16) -> Value {
        TestHub::post_as(self, user, path, body, expect).await
    }
}

/// A ticket brought to `status` through the real actions: `crew.creator` creates it (with
/// `fields` over a default title, description, priority and category; `project` is
/// required), `crew.admin` opens it and assigns `crew.devs`, the first developer starts
/// and finishes work, and the creator approves or rejects it. Answers the ticket as the
/// last action left it.
pub async fn ticket_in(api: &impl Api, status: &str, crew: &Crew<'_>, fields: Value) -> Value {
    let order = [
        "NEW",
        "OPEN",
        "ASSIGNED",
        "IN_PROGRESS",
        "FINISHED",
        "APPROVED",
    ];
    let reach = match status {
        "REJECTED" => order.len(),
        other => {
            order
                .iter()
                .position(|s| *s == other)
                .unwrap_or_else(|| panic!("no way to a ticket in {other}"))
                + 1
        }
    };
    let mut body = json!({
        "title": "A ticket",
        "description": "It is down",
        "priority": "HIGH",
        "category": "BUG",
    });
    merge(&mut body, fields);
    assert!(
        body["project"].is_i64(),
        "ticket_in needs a project: {body}"
    );
    let mut ticket = api.post_as(crew.creator, "/api/tickets/", body, 201).await;
    let id = ticket["id"].as_i64().unwrap();
    let dev = crew.devs.first().copied();
    let needs_dev = || dev.unwrap_or_else(|| panic!("a ticket in {status} needs developers"));
    let action = |name: &str| format!("/api/tickets/{id}/{name}/");
    for step in &order[1..reach.min(order.len())] {
        ticket = match *step {
            "OPEN" => {
                api.post_as(crew.admin, &action("open_ticket"), json!({}), 200)
                    .await
            }
            "ASSIGNED" => {
                let devs: Vec<i64> = crew.devs.iter().map(|d| d.id.0).collect();
                assert!(!devs.is_empty(), "a ticket in {status} needs developers");
                api.post_as(
                    crew.admin,
                    &action("assign"),
                    json!({ "developer_ids": devs }),
                    200,
                )
                .await
            }
            "IN_PROGRESS" => {
                api.post_as(needs_dev(), &action("start_work"), json!({}), 200)
                    .await
            }
            "FINISHED" => {
                api.post_as(needs_dev(), &action("finish_work"), json!({}), 200)
                    .await
            }
            _ => {
                let verdict = if status == "REJECTED" {
                    "reject"
                } else {
                    "approve"
                };
                api.post_as(crew.creator, &action(verdict), json!({}), 200)
                    .await
            }
        };
    }
    assert_eq!(ticket["status"], status, "{ticket}");
    ticket
}

/// Who takes a ticket's actions in [`TestHub::ticket_in`].
pub struct Crew<'a> {
    /// Creates the ticket, and approves or rejects it.
    pub creator: &'a User,
    /// Opens and assigns it.
    pub admin: &'a User,
    /// Are assigned; the first starts and finishes the work.
    pub devs: &'a [&'a User],
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

/// An admin (`boss`) and a client (`alice`) written straight into a database no hub runs on
/// yet, for tests that start hub processes themselves.
pub async fn admin_and_client(db: &TestDb) -> (User, User) {
    let store = tickethub::store::connect(&db.url).await.unwrap();
    let mk = |name: &str, role| NewUser::new(name, role, "x");
    let admin = store.create_user(mk("boss", Role::Admin)).await.unwrap();
    let alice = store.create_user(mk("alice", Role::Client)).await.unwrap();
    store.close().await;
    (admin, alice)
}

/// The hub binary this build made.
pub const BIN: &str = env!("CARGO_BIN_EXE_tickethub");

/// The hub binary the hubs of the suite run: [`BIN`], or `TICKETHUB_TEST_BIN` when set (a
/// copy of a build, say, so that long runs go on while the tree is built again).
pub fn hub_bin() -> String {
    std::env::var("TICKETHUB_TEST_BIN").unwrap_or_else(|_| BIN.to_owned())
}

/// A `tickethub` command with none of the test's own settings leaking in (no `TICKETHUB_*`,
/// `DATABASE_URL` or `REDIS_URL` from this environment), its stdin closed and its output
/// piped. Turn it into a `tokio::process::Command` with `From` to run it from a test body.
pub fn tickethub_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(hub_bin());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("TICKETHUB_") || key == "DATABASE_URL" || key == "REDIS_URL" {
            cmd.env_remove(key);
        }
    }
    // Each message goes at once, as in the in-process hubs; a test may pass a window.
    cmd.env("TICKETHUB_BATCH_WINDOW", "0s");
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// What a command-line run of `tickethub` said.
pub struct CliRun {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tickethub <args>` (see [`tickethub_command`]) to its end, within the patience.
pub async fn cli(args: &[&str]) -> CliRun {
    let mut cmd = tokio::process::Command::from(tickethub_command());
    cmd.args(args).kill_on_drop(true);
    let out = tokio::time::timeout(patience(), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("`tickethub {}` did not end in time", args.join(" ")))
        .expect("tickethub runs");
    CliRun {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `tickethub <args>`, fails unless it succeeds, and answers what it printed.
pub async fn cli_ok(args: &[&str]) -> String {
    let run = cli(args).await;
    assert!(
        run.ok,
        "`tickethub {}` failed ({:?}):\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        run.code,
        run.stdout,
        run.stderr
    );
    run.stdout
}
