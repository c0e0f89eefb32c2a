//! The system under test: the embedded hub (a child process on SQLite or PostgreSQL), the
//! raw-stack baseline (a child process), or a hub already running at `--target`.
//!
//! A [`Target`] knows its users (ids and access tokens), how a user's socket is opened, and how
//! an admin sends a notification, so that the scenarios run unchanged against each.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use crate::child::{self, Child, Seed};
use crate::Common;

/// Which system a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// tickethub.
    Hub,
    /// The raw axum + fastwebsockets broadcast server.
    Baseline,
}

impl Kind {
    /// The label in tables and files.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Hub => "hub",
            Kind::Baseline => "baseline",
        }
    }
}

/// A user the bench acts as.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The user's id.
    pub id: i64,
    /// An access token (empty on the baseline).
    pub token: String,
}

/// A system under test with its users.
pub struct Target {
    /// Hub or baseline.
    pub kind: Kind,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://host:port`.
    pub base: String,
    /// Its pid, when it runs on this machine and is known (for RSS and CPU).
    pub pid: Option<u32>,
    /// The child process, when the bench started it.
    pub child: Option<Child>,
    /// A client for its REST API.
    pub http: reqwest::Client,
    /// The admin that sends.
    pub admin: Principal,
    /// The load users (clients).
    pub clients: Vec<Principal>,
    /// Admins the bench acts as (lifecycle).
    pub admins: Vec<Principal>,
    /// Developers (lifecycle).
    pub developers: Vec<Principal>,
    /// Every active admin's id: they all hear about new tickets.
    pub all_admin_ids: Vec<i64>,
    /// The project the lifecycle's tickets are filed in.
    pub project: Option<i64>,
}

/// Mints an access token for the embedded hub.
pub fn mint(secret: &str, user_id: i64) -> String {
    let exp = chrono::Utc::now().timestamp() + 4 * 3600;
    encode(
        &Header::default(),
        &json!({"user_id": user_id, "exp": exp, "token_type": "access"}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Idle connections are dropped before the hub closes them (`--http-header-timeout`, 10 s by
/// default, is also its keep-alive): reqwest keeps them 90 s, and a call sent on a connection
/// as the hub closes it fails.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

impl Target {
    /// Starts (or, with `--target`, reaches) a system with `seed`'s users.
    pub async fn start(kind: Kind, common: &Common, seed: &Seed) -> Result<Target, String> {
        match (kind, &common.target) {
            (Kind::Baseline, _) => Ok(Self::baseline(seed).await),
            (Kind::Hub, None) => Ok(Self::embedded(common, seed).await),
            (Kind::Hub, Some(url)) => Self::external(url, common, seed).await,
        }
    }

    async fn embedded(common: &Common, seed: &Seed) -> Target {
        let child = Child::hub(seed, None, common.database_url.as_deref()).await;
        let ids = |key: &str| -> Vec<Principal> {
            child.ready[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_i64)
                        .map(|id| Principal {
                            id,
                            token: mint(child::SECRET, id),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let (clients, admins, developers) = (ids("clients"), ids("admins"), ids("developers"));
        Target {
            kind: Kind::Hub,
            addr: child.addr,
            base: format!("http://{}", child.addr),
            pid: Some(child.pid),
            http: http_client(),
            admin: admins[0].clone(),
            all_admin_ids: admins.iter().map(|a| a.id).collect(),
            project: child.ready["project"].as_i64(),
            clients,
            admins,
            developers,
            child: Some(child),
        }
    }

    async fn baseline(seed: &Seed) -> Target {
        let child = Child::baseline().await;
        let none = |id| Principal {
            id,
            token: String::new(),
        };
        Target {
            kind: Kind::Baseline,
            addr: child.addr,
            base: format!("http://{}", child.addr),
            pid: Some(child.pid),
            http: http_client(),
            admin: none(0),
            clients: (1..=seed.clients as i64).map(none).collect(),
            admins: Vec::new(),
            developers: Vec::new(),
            all_admin_ids: Vec::new(),
            project: None,
            child: Some(child),
        }
    }

    /// A running hub: log in as the admin, then find (or register) the load users.
    async fn external(url: &str, common: &Common, seed: &Seed) -> Result<Target, String> {
        let base = url.trim_end_matches('/').to_owned();
        let hostport = base
            .strip_prefix("http://")
            .ok_or("--target must be http://host:port")?;
        let addr: SocketAddr = tokio::net::lookup_host(hostport)
            .await
            .map_err(|e| format!("--target: {e}"))?
            .next()
            .ok_or("--target: no address")?;
        if !addr.ip().is_loopback() {
            return Err("--target must be a loopback address (127.0.0.0/8)".into());
        }
        let http = http_client();
        let mut target = Target {
            kind: Kind::Hub,
            addr,
            base,
            pid: common.target_pid,
            child: None,
            http,
            admin: Principal {
                id: 0,
                token: String::new(),
            },
            clients: Vec::new(),
            admins: Vec::new(),
            developers: Vec::new(),
            all_admin_ids: Vec::new(),
            project: None,
        };
        let admin_token = target
            .login(&common.admin_username, &common.admin_password)
            .await?
            .ok_or("--admin-username/--admin-password: refused")?;
        let me = target
            .call(&admin_token, reqwest::Method::GET, "/api/users/me/", None)
            .await?;
        target.admin = Principal {
            id: me["id"].as_i64().ok_or("/api/users/me/ has no id")?,
            token: admin_token,
        };
        let prefix = &common.user_prefix;
        let clients: Vec<String> = (0..seed.clients).map(|i| format!("{prefix}{i}")).collect();
        let developers: Vec<String> = (0..seed.developers)
            .map(|i| format!("{prefix}dev{i}"))
            .collect();
        let mut ids = target.user_ids().await?;
        if common.create_users {
            let missing: Vec<&String> = clients.iter().filter(|u| !ids.contains_key(*u)).collect();
            eprintln!("registering {} users", missing.len());
            let results: Vec<Result<(), String>> =
                futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
                    futures::stream::iter(missing.into_iter().map(|name| {
                        let t = &target;
                        async move {
                            t.call(
                                "",
                                reqwest::Method::POST,
                                "/api/auth/register/",
                                Some(json!({"username": name, "password": common.user_password})),
                            )
                            .await
                            .map(|_| ())
                        }
                    })),
                    8,
                ))
                .await;
            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                return Err(format!("registering users: {e}"));
            }
            ids = target.user_ids().await?;
        }
        target.clients = target.principals(&clients, &ids, common).await?;
        target.developers = target.principals(&developers, &ids, common).await?;
        target.admins = vec![target.admin.clone()];
        let admins = target
            .call(
                &target.admin.token,
                reqwest::Method::GET,
                "/api/users/?role=admin",
                None,
            )
            .await?;
        target.all_admin_ids = admins
            .as_array()
            .map(|a| a.iter().filter_map(|u| u["id"].as_i64()).collect())
            .unwrap_or_default();
        if seed.project {
            let members: Vec<i64> = target
                .clients
                .iter()
                .chain(&target.developers)
                .map(|p| p.id)
                .collect();
            let key = format!("LD{}", std::process::id() % 100_000);
            let project = target
                .call(
                    &target.admin.token,
                    reqwest::Method::POST,
                    "/api/projects/",
                    Some(json!({"key": key, "name": "Load test", "member_ids": members})),
                )
                .await?;
            target.project = project["id"].as_i64();
        }
        Ok(target)
    }

    /// Every user's id by username (as the admin).
    async fn user_ids(&self) -> Result<HashMap<String, i64>, String> {
        // The list is paginated (`{"count", "next", "results"}`); a bare array is read too.
        let mut ids = HashMap::new();
        for page in 1.. {
            let list = self
                .call(
                    &self.admin.token,
                    reqwest::Method::GET,
                    &format!("/api/users/?page={page}"),
                    None,
                )
                .await?;
            let users = list["results"].as_array().or(list.as_array());
            ids.extend(
                users
                    .into_iter()
                    .flatten()
                    .filter_map(|u| Some((u["username"].as_str()?.to_owned(), u["id"].as_i64()?))),
            );
            if list["next"].is_null() {
                break;
            }
        }
        Ok(ids)
    }

    /// Tokens for named users: minted with `--jwt-secret`, else by logging in.
    async fn principals(
        &self,
        names: &[String],
        ids: &HashMap<String, i64>,
        common: &Common,
    ) -> Result<Vec<Principal>, String> {
        if let Some(missing) = names.iter().find(|n| !ids.contains_key(*n)) {
            return Err(format!(
                "user {missing} does not exist on the target: pass --create-users for clients, \
                 or create it with `tickethub users add --username {missing} --role developer --password …`"
            ));
        }
        if let Some(secret) = &common.jwt_secret {
            return Ok(names
                .iter()
                .map(|n| Principal {
                    id: ids[n],
                    token: mint(secret, ids[n]),
                })
                .collect());
        }
        let logins = futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::buffered(
            futures::stream::iter(
                names
                    .iter()
                    .map(|n| async move { (n, self.login(n, &common.user_password).await) }),
            ),
            8,
        ))
        .await;
        logins
            .into_iter()
            .map(|(n, r)| match r {
                Ok(Some(token)) => Ok(Principal { id: ids[n], token }),
                Ok(None) => Err(format!("{n}: --user-password refused")),
                Err(e) => Err(e),
            })
            .collect()
    }

    async fn login(&self, username: &str, password: &str) -> Result<Option<String>, String> {
        let response = self
            .http
            .post(format!("{}/api/auth/login/", self.base))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .map_err(|e| format!("login: {e}"))?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Ok(None);
        }
        let body: Value = response.json().await.map_err(|e| format!("login: {e}"))?;
        Ok(body["access"].as_str().map(str::to_owned))
    }

    /// One REST call as `token` (none when empty); the JSON body of a 2xx answer.
    pub async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("{path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The request path of a user's socket.
    pub fn ws_path(&self, p: &Principal) -> String {
        match self.kind {
            Kind::Hub => format!("/ws/notifications/?token={}", p.token),
            Kind::Baseline => format!("/ws?user={}", p.id),
        }
    }

    /// Sends one notification to `ids` as the admin (the hub takes at most 10,000 ids a call).
    pub async fn send(
        &self,
        ids: &[i64],
        title: &str,
        payload: Option<&str>,
    ) -> Result<(), String> {
        let data = payload.map_or_else(|| json!({}), |p| json!({"blob": p}));
        let calls = ids.chunks(10_000).map(|chunk| {
            let body = json!({
                "user_ids": chunk,
                "title": title,
                "message": "A notification from the load bench",
                "notification_type": "load",
                "data": data,
            });
            match self.kind {
                Kind::Hub => self.call(
                    &self.admin.token,
                    reqwest::Method::POST,
                    "/api/notifications/send/",
                    Some(body),
                ),
                Kind::Baseline => self.call("", reqwest::Method::POST, "/send", Some(body)),
            }
        });
        for r in futures::future::join_all(calls).await {
            r?;
        }
        Ok(())
    }

    /// The process's resident memory in KiB, when known.
    pub fn rss_kib(&self) -> Option<u64> {
        self.pid.map(child::rss_kib)
    }

    /// The process's CPU seconds so far, when known.
    pub fn cpu_secs(&self) -> Option<f64> {
        self.pid.map(child::cpu_secs)
    }

    /// Stops the child process, if the bench started it.
    pub async fn stop(self) {
        if let Some(child) = self.child {
            child.stop().await;
        }
    }
}
