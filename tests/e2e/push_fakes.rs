//! Stand-ins for the mobile push providers, on random ports in this process, checking what
//! the real services check:
//!
//! - [`Fcm`]: Google's OAuth 2.0 token endpoint (the JWT bearer grant: an RS256 assertion,
//!   verified with the service account's public key) and the FCM HTTP v1 send endpoint
//!   (a bearer token it issued and that has not expired, the project, the message's shape),
//!   with errors in Google's format.
//! - [`Apns`]: APNs over HTTP/2 only, over TLS under the test run's certificate authority
//!   (hyper's HTTP/2 server; an HTTP/1.1 request is refused with 505), verifying the ES256 provider token with the `.p8` key's public half,
//!   its `kid`, `iss` and `iat`, and the `apns-*` headers, with errors in Apple's format.
//!
//! Both record every request and answer from a script, then with success.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::harness::patience;
mod apns;
pub use apns::*;
mod vapid;
pub use vapid::*;

/// Google's OAuth scope for sending FCM messages.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// An RSA key pair in PEM (PKCS#8 private, SPKI public).
pub struct RsaKey {
    pub private_pem: String,
    pub public_pem: String,
}

/// The service accounts' RSA key: 2048 bits, as Google's, made once per run (making one
/// takes a while in a debug build).
pub fn rsa_key() -> &'static RsaKey {
    static KEY: OnceLock<RsaKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        RsaKey {
            private_pem: private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            public_pem: private
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        }
    })
}

/// A fresh P-256 key pair in PEM, as an APNs `.p8` (PKCS#8 private, SPKI public).
pub fn ec_key() -> (String, String) {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let secret = loop {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
            break secret;
        }
    };
    (
        secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Decodes `application/x-www-form-urlencoded`.
fn form_decode(body: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => match s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Waits until `count()` reaches `n`, woken by `arrived`; fails with what the stand-in
/// refused, which is often why.
async fn wait_until(
    what: &str,
    arrived: &Notify,
    n: usize,
    count: impl Fn() -> usize,
    refusals: impl Fn() -> Vec<String>,
) {
    tokio::time::timeout(patience(), async {
        loop {
            let notified = arrived.notified();
            if count() >= n {
                return;
            }
            notified.await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{n} {what} did not arrive; got {}; refused: {:?}",
            count(),
            refusals()
        )
    })
}

// ---------------------------------------------------------------------------------------
// FCM
// ---------------------------------------------------------------------------------------

/// What the FCM send endpoint answers next, once a request has passed its checks.
#[derive(Clone, Debug)]
pub enum FcmReply {
    /// An error in Google's format.
    Error {
        code: u16,
        status: &'static str,
        error_code: &'static str,
        message: &'static str,
        retry_after: Option<&'static str>,
    },
    /// The access token the request carried is revoked: 401, and it is refused from now on.
    RevokeToken,
}

impl FcmReply {
    /// 404 `UNREGISTERED`: the app was uninstalled, the token is dead.
    pub fn unregistered() -> FcmReply {
        FcmReply::Error {
            code: 404,
            status: "NOT_FOUND",
            error_code: "UNREGISTERED",
            message: "Requested entity was not found.",
            retry_after: None,
        }
    }

    /// 503 `UNAVAILABLE`, with a `Retry-After` if given.
    pub fn unavailable(retry_after: Option<&'static str>) -> FcmReply {
        FcmReply::Error {
            code: 503,
            status: "UNAVAILABLE",
            error_code: "UNAVAILABLE",
            message: "The service is currently unavailable.",
            retry_after,
        }
    }

    /// 429 `QUOTA_EXCEEDED`, with a `Retry-After` if given.
    pub fn quota_exceeded(retry_after: Option<&'static str>) -> FcmReply {
        FcmReply::Error {
            code: 429,
            status: "RESOURCE_EXHAUSTED",
            error_code: "QUOTA_EXCEEDED",
            message: "Quota exceeded for quota metric 'Send requests'.",
            retry_after,
        }
    }
}

/// One access token the token endpoint issued.
#[derive(Clone, Debug)]
pub struct Grant {
    pub at: Instant,
    /// The verified assertion's claims.
    pub claims: Value,
    pub access_token: String,
}

/// One request to the send endpoint.
#[derive(Clone, Debug)]
pub struct FcmMessage {
    pub at: Instant,
    pub path: String,
    /// The bearer token it carried.
    pub bearer: String,
    pub body: Value,
    /// The status it was answered.
    pub status: u16,
    /// The `name` it was answered, on success.
    pub name: Option<String>,
}

/// The FCM stand-in: token endpoint at `/token`, send endpoint at
/// `/v1/projects/{project}/messages:send`.
#[derive(Clone)]
pub struct Fcm {
    pub addr: SocketAddr,
    inner: Arc<FcmInner>,
}

struct FcmInner {
    project_id: String,
    client_email: String,
    account_file: PathBuf,
    public_key: jsonwebtoken::DecodingKey,
    expires_in: AtomicU64,
    script: Mutex<VecDeque<FcmReply>>,
    /// Issued access tokens and when they expire.
    issued: Mutex<HashMap<String, Instant>>,
    grants: Mutex<Vec<Grant>>,
    messages: Mutex<Vec<FcmMessage>>,
    /// Requests a check refused, and why.
    refusals: Mutex<Vec<String>>,
    arrived: Notify,
    _dir: tempfile::TempDir,
}

impl Fcm {
    /// Starts the stand-in and writes a service-account file whose `token_uri` is its token
    /// endpoint, signed with [`rsa_key`].
    pub async fn start() -> Fcm {
        let key = tokio::task::spawn_blocking(rsa_key).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let project_id = "tickethub-test".to_owned();
        let client_email =
            "firebase-adminsdk-test@tickethub-test.iam.gserviceaccount.com".to_owned();
        let account_file = dir.path().join("service-account.json");
        std::fs::write(
            &account_file,
            json!({
                "type": "service_account",
                "project_id": project_id,
                "private_key_id": "0123456789abcdef",
                "private_key": key.private_pem,
                "client_email": client_email,
                "client_id": "100000000000000000000",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": format!("http://{addr}/token"),
            })
            .to_string(),
        )
        .unwrap();
        let fcm = Fcm {
            addr,
            inner: Arc::new(FcmInner {
                project_id,
                client_email,
                account_file,
                public_key: jsonwebtoken::DecodingKey::from_rsa_pem(key.public_pem.as_bytes())
                    .unwrap(),
                expires_in: AtomicU64::new(3599),
                script: Mutex::default(),
                issued: Mutex::default(),
                grants: Mutex::default(),
                messages: Mutex::default(),
                refusals: Mutex::default(),
                arrived: Notify::new(),
                _dir: dir,
            }),
        };
        let app = Router::new()
            .fallback(any(fcm_handle))
            .with_state(fcm.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fcm
    }

    /// Points a hub at the stand-in.
    pub fn configure(&self, c: &mut tickethub::ServeConfig) {
        c.channels.fcm.fcm_service_account = Some(self.inner.account_file.clone());
        c.channels.fcm.fcm_api_url = self.url();
    }

    /// `http://addr`: the hub's `fcm_api_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint's URL: the service account's `token_uri`, the assertions' `aud`.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn project_id(&self) -> &str {
        &self.inner.project_id
    }

    pub fn client_email(&self) -> &str {
        &self.inner.client_email
    }

    /// The `expires_in` of the tokens issued from now on.
    pub fn set_expires_in(&self, seconds: u64) {
        self.inner.expires_in.store(seconds, Ordering::SeqCst);
    }

    /// Queues the send endpoint's next answers.
    pub fn script(&self, replies: impl IntoIterator<Item = FcmReply>) {
        self.inner.script.lock().unwrap().extend(replies);
    }

    /// Every access token issued so far.
    pub fn grants(&self) -> Vec<Grant> {
        self.inner.grants.lock().unwrap().clone()
    }

    /// Every request to the send endpoint so far.
    pub fn messages(&self) -> Vec<FcmMessage> {
        self.inner.messages.lock().unwrap().clone()
    }

    /// The requests a check refused, and why.
    pub fn refusals(&self) -> Vec<String> {
        self.inner.refusals.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests reached the send endpoint.
    pub async fn wait_for(&self, n: usize) -> Vec<FcmMessage> {
        wait_until(
            "FCM messages",
            &self.inner.arrived,
            n,
            || self.inner.messages.lock().unwrap().len(),
            || self.refusals(),
        )
        .await;
        self.messages()
    }

    fn refuse(&self, why: String) {
        self.inner.refusals.lock().unwrap().push(why);
    }

    /// Checks an assertion as Google does: RS256 by the account's key, `iss`, `aud`,
    /// `scope`, and a lifetime of at most an hour that has begun and not ended.
    fn check_assertion(&self, assertion: &str) -> Result<Value, String> {
        let header = jsonwebtoken::decode_header(assertion).map_err(|e| format!("header: {e}"))?;
        if header.alg != jsonwebtoken::Algorithm::RS256 {
            return Err(format!("alg {:?}, not RS256", header.alg));
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[self.token_url()]);
        validation.set_issuer(&[self.client_email()]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Value>(assertion, &self.inner.public_key, &validation)
            .map_err(|e| format!("assertion: {e}"))?
            .claims;
        let scopes = claims["scope"].as_str().unwrap_or_default();
        if !scopes.split(' ').any(|s| s == FCM_SCOPE) {
            return Err(format!("scope {scopes:?} lacks {FCM_SCOPE}"));
        }
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap_or(0),
            claims["exp"].as_i64().unwrap_or(0),
        );
        if iat > now() + 60 {
            return Err(format!("iat {iat} is in the future"));
        }
        if exp - iat > 3600 || exp <= iat {
            return Err(format!(
                "iat {iat} to exp {exp} is not a lifetime up to an hour"
            ));
        }
        Ok(claims)
    }

    fn token(&self, headers: &HeaderMap, body: &str) -> Response {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let form = form_decode(body);
        let checked = if !content_type.starts_with("application/x-www-form-urlencoded") {
            Err(format!("content-type {content_type:?}"))
        } else if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER) {
            Err(format!("grant_type {:?}", form.get("grant_type")))
        } else {
            self.check_assertion(
                form.get("assertion")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )
        };
        let claims = match checked {
            Ok(claims) => claims,
            Err(why) => {
                self.refuse(format!("token: {why}"));
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "invalid_grant", "error_description": why})),
                )
                    .into_response();
            }
        };
        let expires_in = self.inner.expires_in.load(Ordering::SeqCst);
        let access_token = format!("ya29.test-{}", uuid::Uuid::new_v4().simple());
        self.inner.issued.lock().unwrap().insert(
            access_token.clone(),
            Instant::now() + Duration::from_secs(expires_in),
        );
        self.inner.grants.lock().unwrap().push(Grant {
            at: Instant::now(),
            claims,
            access_token: access_token.clone(),
        });
        axum::Json(json!({
            "access_token": access_token,
            "expires_in": expires_in,
            "token_type": "Bearer",
        }))
        .into_response()
    }

    /// The message's shape, as FCM checks it.
    fn check_message(body: &Value) -> Result<(), String> {
        let message = body["message"].as_object().ok_or("no `message` object")?;
        let known = [
            "name",
            "data",
            "notification",
            "android",
            "webpush",
            "apns",
            "fcm_options",
            "token",
            "topic",
            "condition",
        ];
        if let Some(unknown) = message.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!("Unknown name \"{unknown}\" at 'message'"));
        }
        let targets = ["token", "topic", "condition"]
            .iter()
            .filter(|t| message.contains_key(**t))
            .count();
        if targets != 1 {
            return Err("exactly one of token, topic or condition".into());
        }
        if message["token"].as_str().is_none_or(str::is_empty) {
            return Err("`message.token` must be a non-empty string".into());
        }
        if let Some(data) = message.get("data") {
            let data = data.as_object().ok_or("`message.data` is not a map")?;
            for (k, v) in data {
                if !v.is_string() {
                    return Err(format!("Invalid value at 'message.data[{k}].value' ({v})"));
                }
                let reserved = ["from", "notification", "message_type"].contains(&k.as_str())
                    || k.starts_with("google")
                    || k.starts_with("gcm");
                if reserved {
                    return Err(format!("`message.data` uses the reserved key {k:?}"));
                }
            }
        }
        if let Some(n) = message.get("notification") {
            let n = n
                .as_object()
                .ok_or("`message.notification` is not an object")?;
            for (k, v) in n {
                if !["title", "body", "image"].contains(&k.as_str()) || !v.is_string() {
                    return Err(format!("Invalid value at 'message.notification.{k}'"));
                }
            }
        }
        // FCM's limit on what a message carries: its data's keys and values and its
        // notification's texts, 4,096 bytes.
        let data_bytes: usize = message
            .get("data")
            .and_then(Value::as_object)
            .map(|d| {
                d.iter()
                    .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                    .sum()
            })
            .unwrap_or(0);
        let notification_bytes: usize = message
            .get("notification")
            .and_then(Value::as_object)
            .map(|n| n.values().map(|v| v.as_str().map_or(0, str::len)).sum())
            .unwrap_or(0);
        if data_bytes + notification_bytes > 4096 {
            return Err(format!(
                "Message is too big: {} bytes",
                data_bytes + notification_bytes
            ));
        }
        if let Some(a) = message.get("android") {
            if let Some(p) = a.get("priority") {
                if !matches!(p.as_str(), Some("high" | "normal")) {
                    return Err(format!("Invalid value at 'message.android.priority' ({p})"));
                }
            }
            if let Some(ttl) = a.get("ttl") {
                let ok = ttl
                    .as_str()
                    .and_then(|t| t.strip_suffix('s'))
                    .is_some_and(|n| !n.is_empty() && n.parse::<f64>().is_ok_and(|s| s >= 0.0));
                if !ok {
                    return Err(format!("Invalid value at 'message.android.ttl' ({ttl})"));
                }
            }
        }
        Ok(())
    }

    fn send(&self, method: &Method, path: &str, headers: &HeaderMap, raw: &str) -> Response {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        let body: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
        let mut record = FcmMessage {
            at: Instant::now(),
            path: path.to_owned(),
            bearer: bearer.clone(),
            body: body.clone(),
            status: 200,
            name: None,
        };
        let expected = format!("/v1/projects/{}/messages:send", self.project_id());
        let valid_token = self
            .inner
            .issued
            .lock()
            .unwrap()
            .get(&bearer)
            .is_some_and(|expires| Instant::now() < *expires);
        let refused = if !valid_token {
            Some((
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.".to_owned(),
            ))
        } else if *method != Method::POST || path != expected {
            Some((
                403,
                "PERMISSION_DENIED",
                format!("{method} {path}: not {expected}"),
            ))
        } else if !headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
        {
            Some((
                400,
                "INVALID_ARGUMENT",
                "Invalid JSON payload received.".to_owned(),
            ))
        } else {
            Self::check_message(&body)
                .err()
                .map(|why| (400, "INVALID_ARGUMENT", why))
        };
        let response = if let Some((code, status, message)) = refused {
            self.refuse(format!("send: HTTP {code}: {message}"));
            record.status = code;
            google_error(code, status, None, &message, None)
        } else {
            match self.inner.script.lock().unwrap().pop_front() {
                None => {
                    let name = format!(
                        "projects/{}/messages/0:{}",
                        self.project_id(),
                        uuid::Uuid::new_v4().as_u128() % 10_000_000_000_000_000
                    );
                    record.name = Some(name.clone());
                    axum::Json(json!({ "name": name })).into_response()
                }
                Some(FcmReply::RevokeToken) => {
                    self.inner.issued.lock().unwrap().remove(&bearer);
                    record.status = 401;
                    google_error(
                        401,
                        "UNAUTHENTICATED",
                        None,
                        "Request had invalid authentication credentials.",
                        None,
                    )
                }
                Some(FcmReply::Error {
                    code,
                    status,
                    error_code,
                    message,
                    retry_after,
                }) => {
                    record.status = code;
                    google_error(code, status, Some(error_code), message, retry_after)
                }
            }
        };
        self.inner.messages.lock().unwrap().push(record);
        self.inner.arrived.notify_waiters();
        response
    }
}

/// An error answer in Google's format.
fn google_error(
    code: u16,
    status: &str,
    error_code: Option<&str>,
    message: &str,
    retry_after: Option<&str>,
) -> Response {
    let details = match error_code {
        Some(c) => {
            json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}])
        }
        None => json!([]),
    };
    let mut res = (
        StatusCode::from_u16(code).unwrap(),
        axum::Json(json!({"error": {"code": code, "message": message, "status": status, "details": details}})),
    )
        .into_response();
    if let Some(after) = retry_after {
        res.headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    res
}

async fn fcm_handle(
    State(fcm): State<Fcm>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    if uri.path() == "/token" && method == Method::POST {
        fcm.token(&headers, &body)
    } else {
        fcm.send(&method, uri.path(), &headers, &body)
    }
}
