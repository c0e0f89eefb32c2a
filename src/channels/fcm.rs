//! Firebase Cloud Messaging, HTTP v1 API: `POST {api}/v1/projects/{project}/messages:send`
//! with an OAuth 2.0 access token.
//!
//! The token comes from the service account's own key by the JWT bearer grant (RFC 7523): an
//! RS256 assertion posted to the account's `token_uri`. It is kept and reused until five
//! minutes before it runs out, then fetched again, one fetch at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tickethub_actors::notification::excerpt;
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use crate::delivery::outbound::header;
use crate::channels::push;
use crate::delivery::{http_client, network_error};
use crate::channels::push::PushContent;
use crate::setting::ConfigError;

/// The FCM settings: the Firebase service account.
#[derive(clap::Args, Clone, Debug)]
#[group(skip)]
pub struct Settings {
    /// Firebase service-account JSON (from the Firebase console); FCM is off without it.
    #[arg(long, env = "TICKETHUB_FCM_SERVICE_ACCOUNT")]
    pub fcm_service_account: Option<PathBuf>,

    /// FCM HTTP v1 base URL.
    #[arg(
        long,
        env = "TICKETHUB_FCM_API_URL",
        default_value = "https://fcm.googleapis.com"
    )]
    pub fcm_api_url: String,
}

/// Firebase Cloud Messaging (HTTP v1), to apps' tokens: a carrier of `push`, on with a service
/// account.
pub struct Fcm;

impl crate::channels::Plugin for Fcm {
    const NAME: &'static str = "fcm";
    const REACH: tickethub_actors::routing::Reach = tickethub_actors::routing::Reach::Carrier;
    type Settings = Settings;

    fn transport(
        settings: &crate::channels::Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn tickethub_actors::ports::Transport>>, ConfigError> {
        if settings.fcm.fcm_service_account.is_none() {
            return Ok(None);
        }
        Ok(Some(Arc::new(FcmTransport::new(settings, ctx.timeout)?)))
    }
}


const SETTING: &str = "--fcm-service-account (TICKETHUB_FCM_SERVICE_ACCOUNT)";

/// The OAuth 2.0 scope of sending FCM messages.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The `grant_type` of the JWT bearer grant (RFC 7523 §2.1).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Google's token endpoint, for a service-account file that does not name one.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// How long an assertion is valid: the most Google accepts.
const ASSERTION_LIFETIME: i64 = 3600;

/// How long before its expiry an access token is replaced.
const REFRESH_EARLY: Duration = Duration::from_secs(300);

/// A Firebase service account: who signs, for which project, and where tokens come from.
pub struct ServiceAccount {
    /// The account's address: the assertion's issuer.
    pub client_email: String,
    /// The Firebase project messages are sent for.
    pub project_id: String,
    /// The OAuth 2.0 token endpoint: the assertion's audience.
    pub token_uri: String,
    key: jsonwebtoken::EncodingKey,
}

/// The fields of a service-account file this transport reads.
#[derive(Deserialize)]
struct AccountFile {
    client_email: Option<String>,
    private_key: Option<String>,
    project_id: Option<String>,
    token_uri: Option<String>,
}

/// The claims of the assertion (RFC 7523 §3, with Google's `scope`).
#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

impl ServiceAccount {
    /// An account from the text of its JSON file; its key is tried once, so that a key that
    /// cannot sign is found at start.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: AccountFile = serde_json::from_str(text)
            .map_err(|e| format!("not a service-account JSON file: {e}"))?;
        let field = |value: Option<String>, name: &str| {
            value
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| format!("the service account has no `{name}`"))
        };
        let client_email = field(file.client_email, "client_email")?;
        let project_id = field(file.project_id, "project_id")?;
        let private_key = field(file.private_key, "private_key")?;
        let token_uri = file
            .token_uri
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        let url: reqwest::Url = token_uri
            .parse()
            .map_err(|e| format!("`token_uri` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("`token_uri` must be an https URL".to_owned());
        }
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes())
            .map_err(|e| format!("`private_key` is not an RSA private key in PEM: {e}"))?;
        let account = Self {
            client_email,
            project_id,
            token_uri,
            key,
        };
        account
            .assertion(chrono::Utc::now().timestamp())
            .map_err(|e| format!("cannot sign with `private_key`: {e}"))?;
        Ok(account)
    }

    /// The account in the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(SETTING, format!("cannot read {}: {e}", path.display()))
        })?;
        Self::parse(&text)
            .map_err(|e| ConfigError::new(SETTING, format!("{}: {e}", path.display())))
    }

    /// A signed assertion issued at `iat` (Unix seconds), valid for an hour.
    pub fn assertion(&self, iat: i64) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &Assertion {
                iss: &self.client_email,
                scope: SCOPE,
                aud: &self.token_uri,
                iat,
                exp: iat + ASSERTION_LIFETIME,
            },
            &self.key,
        )
    }
}

/// An access token and when it is replaced.
struct AccessToken {
    value: String,
    refresh_at: Instant,
    expires_at: Instant,
}

/// How long after it is issued a token that lives `expires_in` seconds is replaced: five
/// minutes before its end, or halfway through a shorter life.
pub fn refresh_after(expires_in: u64) -> Duration {
    let life = Duration::from_secs(expires_in);
    life.saturating_sub(REFRESH_EARLY).max(life / 2)
}

/// Sends pushes to apps through FCM.
pub struct FcmTransport {
    client: reqwest::Client,
    account: ServiceAccount,
    send_url: String,
    ttl: u64,
    content: PushContent,
    token: tokio::sync::Mutex<Option<AccessToken>>,
}

impl FcmTransport {
    /// A transport for the service account of `--fcm-service-account`.
    pub fn new(settings: &crate::channels::Settings, timeout: Duration) -> Result<Self, ConfigError> {
        let path = settings
            .fcm
            .fcm_service_account
            .as_deref()
            .ok_or_else(|| ConfigError::new(SETTING, "no service-account file is given"))?;
        let account = ServiceAccount::load(path)?;
        let api = settings.fcm.fcm_api_url.trim_end_matches('/');
        api.parse::<reqwest::Url>().map_err(|e| {
            ConfigError::new(
                "--fcm-api-url (TICKETHUB_FCM_API_URL)",
                format!("not a URL: {e}"),
            )
        })?;
        Ok(Self {
            client: http_client(timeout)?,
            send_url: format!("{api}/v1/projects/{}/messages:send", account.project_id),
            account,
            ttl: settings.push.push_ttl,
            content: settings.push.push_content,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The access token to send with: the one held, or a new one once it is due for
    /// replacement. Callers wait while one of them fetches.
    async fn access_token(&self) -> Result<String, TransportError> {
        let mut held = self.token.lock().await;
        let now = Instant::now();
        if let Some(token) = held.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(token.value.clone());
        }
        match self.fetch_token().await {
            Ok(fresh) => {
                let value = fresh.value.clone();
                *held = Some(fresh);
                Ok(value)
            }
            // A token not yet expired still serves while its replacement cannot be had.
            Err(e) => match held.as_ref().filter(|t| now < t.expires_at) {
                Some(token) => {
                    tracing::warn!(error = %e, "cannot refresh the FCM access token; the current one is used until it expires");
                    Ok(token.value.clone())
                }
                None => Err(e),
            },
        }
    }

    /// Drops `value` if it is the token held (the provider refused it).
    async fn forget_token(&self, value: &str) {
        let mut held = self.token.lock().await;
        if held.as_ref().is_some_and(|t| t.value == value) {
            *held = None;
        }
    }

    /// A new access token from the token endpoint.
    async fn fetch_token(&self) -> Result<AccessToken, TransportError> {
        let assertion = self
            .account
            .assertion(chrono::Utc::now().timestamp())
            .map_err(|e| {
                TransportError::Permanent(format!("cannot sign the FCM assertion: {e}"))
            })?;
        let body = format!(
            "grant_type={}&assertion={}",
            form_encode(GRANT_TYPE),
            form_encode(&assertion)
        );
        let issued = Instant::now();
        let response = self
            .client
            .post(&self.account.token_uri)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(network_error)?;
        let status = response.status();
        let retry_after = header(&response, reqwest::header::RETRY_AFTER);
        let text = crate::delivery::outbound::answer_text(response).await;
        let about = |e: TransportError| match e {
            TransportError::Permanent(m) => {
                TransportError::Permanent(format!("FCM access token: {m}"))
            }
            TransportError::Retryable {
                message,
                retry_after,
            } => TransportError::Retryable {
                message: format!("FCM access token: {message}"),
                retry_after,
            },
            other => other,
        };
        crate::delivery::classify(status, retry_after.as_deref(), &text).map_err(about)?;
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            expires_in: Option<u64>,
        }
        let answer: Answer =
            serde_json::from_str(&text).map_err(|e| TransportError::Retryable {
                message: format!("FCM access token: unreadable answer: {e}"),
                retry_after: None,
            })?;
        // What the token endpoint says, held to a day: a later refresh costs nothing.
        let expires_in = answer.expires_in.unwrap_or(3600).min(86_400);
        Ok(AccessToken {
            value: answer.access_token,
            refresh_at: issued + refresh_after(expires_in),
            expires_at: issued + Duration::from_secs(expires_in),
        })
    }

    /// The request body for `job` to the device token `token`.
    fn message(&self, job: &DeliveryJob, token: &str) -> Value {
        let payload = push::payload_within(job, self.content, carried_bytes);
        let fields = payload.as_object().cloned().unwrap_or_default();
        // `data` takes strings only; a missing link is left out.
        let data: Map<String, Value> = fields
            .iter()
            .filter_map(|(k, v)| match v {
                Value::Null => None,
                Value::String(s) => Some((k.clone(), Value::String(s.clone()))),
                other => Some((k.clone(), Value::String(other.to_string()))),
            })
            .collect();
        let mut notification = Map::new();
        for key in ["title", "body"] {
            if let Some(text) = fields.get(key).filter(|v| v.is_string()) {
                notification.insert(key.to_owned(), text.clone());
            }
        }
        json!({
            "message": {
                "token": token,
                "data": data,
                "notification": notification,
                "android": {
                    "priority": if push::is_critical(job) { "high" } else { "normal" },
                    "ttl": format!("{}s", self.ttl),
                },
            }
        })
    }
}

/// What FCM counts of a message against its 4 KiB limit: the `data` map's keys and values,
/// and the `notification`'s title and body, which repeat the payload's.
fn carried_bytes(payload: &Value) -> usize {
    let Some(fields) = payload.as_object() else {
        return 0;
    };
    fields
        .iter()
        .map(|(k, v)| match v {
            Value::Null => 0,
            Value::String(s) if k == "title" || k == "body" => k.len() + 2 * s.len(),
            Value::String(s) => k.len() + s.len(),
            other => k.len() + other.to_string().len(),
        })
        .sum()
}

/// `application/x-www-form-urlencoded` for one value: everything but unreserved characters
/// percent-encoded.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Google's error answer: `{"error": {"code", "message", "status", "details": [...]}}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: GoogleError,
}

#[derive(Deserialize, Default)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

impl GoogleError {
    /// The FCM error code (`UNREGISTERED`, `SENDER_ID_MISMATCH`, …) of the details, if any.
    fn fcm_code(&self) -> Option<&str> {
        self.details
            .iter()
            .find_map(|d| d.get("errorCode").and_then(Value::as_str))
    }

    /// Whether a bad request is about the registration token.
    fn about_the_token(&self) -> bool {
        let field_is_token = self.details.iter().any(|d| {
            d.get("fieldViolations")
                .and_then(Value::as_array)
                .is_some_and(|v| v.iter().any(|f| f["field"] == "message.token"))
        });
        field_is_token
            || self
                .message
                .to_ascii_lowercase()
                .contains("registration token")
    }
}

/// What an answer of the send endpoint comes to: the message's `name` on success; `Gone` for
/// a token FCM no longer knows (404 `UNREGISTERED`) or one that is not a token (400
/// `INVALID_ARGUMENT` about `message.token`); permanent for one of another sender (403
/// `SENDER_ID_MISMATCH`, which every token answers when the service account is another
/// project's: a setting to fix, so the device is kept); a retry for 401 (the access token is dropped and fetched again),
/// 408, 425, 429 and 5xx, after `Retry-After` if given; any other answer is permanent.
pub fn answer(
    status: reqwest::StatusCode,
    retry_after: Option<&str>,
    body: &str,
) -> Result<Option<String>, TransportError> {
    if status.is_success() {
        return Ok(serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["name"].as_str().map(str::to_owned)));
    }
    let error = serde_json::from_str::<ErrorBody>(body)
        .unwrap_or_default()
        .error;
    let code = status.as_u16();
    let kind = error
        .fcm_code()
        .or((!error.status.is_empty()).then_some(error.status.as_str()));
    let said = if error.message.is_empty() {
        excerpt(body.trim(), 300)
    } else {
        excerpt(&error.message, 300)
    };
    let message = match kind {
        Some(kind) => format!("HTTP {code} {kind}: {said}"),
        None => format!("HTTP {code}: {said}"),
    };
    let fcm_code = error.fcm_code();
    let gone = match code {
        404 => fcm_code == Some("UNREGISTERED"),
        400 => {
            matches!(fcm_code, None | Some("INVALID_ARGUMENT"))
                && error.status == "INVALID_ARGUMENT"
                && error.about_the_token()
        }
        _ => false,
    };
    if gone {
        return Err(TransportError::Gone(message));
    }
    // A refused access token is fetched again; FCM's own trouble with the app's APNs or
    // Web Push credentials (`THIRD_PARTY_AUTH_ERROR`) is not the hub's to fix by retrying.
    let retryable = (code == 401 && fcm_code != Some("THIRD_PARTY_AUTH_ERROR"))
        || status.is_server_error()
        || matches!(code, 408 | 425 | 429);
    Err(crate::delivery::refusal(retryable, message, retry_after))
}

#[async_trait]
impl Transport for FcmTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
        let device = push::device(job)?;
        let token = self.access_token().await?;
        let response = self
            .client
            .post(&self.send_url)
            .bearer_auth(&token)
            .json(&self.message(job, &device.device.token))
            .send()
            .await
            .map_err(network_error)?;
        let status = response.status();
        let retry_after = header(&response, reqwest::header::RETRY_AFTER);
        let text = crate::delivery::outbound::answer_text(response).await;
        let result = answer(status, retry_after.as_deref(), &text);
        if status == reqwest::StatusCode::UNAUTHORIZED
            && matches!(result, Err(TransportError::Retryable { .. }))
        {
            self.forget_token(&token).await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode as S;

    fn google(code: u16, status: &str, message: &str, details: Value) -> String {
        json!({"error": {"code": code, "message": message, "status": status, "details": details}})
            .to_string()
    }

    fn fcm_error(code: &str) -> Value {
        json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}])
    }

    #[test]
    fn a_sent_message_is_named() {
        assert_eq!(
            answer(S::OK, None, r#"{"name": "projects/p/messages/0:1"}"#),
            Ok(Some("projects/p/messages/0:1".to_owned()))
        );
        assert_eq!(answer(S::OK, None, "not json"), Ok(None));
    }

    #[test]
    fn dead_tokens_are_gone() {
        let unregistered = google(
            404,
            "NOT_FOUND",
            "Requested entity was not found.",
            fcm_error("UNREGISTERED"),
        );
        assert_eq!(
            answer(S::NOT_FOUND, None, &unregistered),
            Err(TransportError::Gone(
                "HTTP 404 UNREGISTERED: Requested entity was not found.".into()
            ))
        );
        let not_a_token = google(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            fcm_error("INVALID_ARGUMENT"),
        );
        assert!(matches!(
            answer(S::BAD_REQUEST, None, &not_a_token),
            Err(TransportError::Gone(_))
        ));
        let field = google(
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            json!([{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}]}]),
        );
        assert!(matches!(
            answer(S::BAD_REQUEST, None, &field),
            Err(TransportError::Gone(_))
        ));
        let mismatch = google(
            403,
            "PERMISSION_DENIED",
            "SenderId mismatch",
            fcm_error("SENDER_ID_MISMATCH"),
        );
        assert!(matches!(
            answer(S::FORBIDDEN, None, &mismatch),
            Err(TransportError::Permanent(m)) if m.contains("SENDER_ID_MISMATCH")
        ));
    }

    #[test]
    fn other_refusals_are_permanent() {
        let bad_payload = google(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.android.ttl'",
            fcm_error("INVALID_ARGUMENT"),
        );
        assert!(matches!(
            answer(S::BAD_REQUEST, None, &bad_payload),
            Err(TransportError::Permanent(m)) if m.contains("message.android.ttl")
        ));
        let denied = google(403, "PERMISSION_DENIED", "Permission denied", json!([]));
        assert!(matches!(
            answer(S::FORBIDDEN, None, &denied),
            Err(TransportError::Permanent(m)) if m.starts_with("HTTP 403 PERMISSION_DENIED")
        ));
        // A 404 that is not about the token (a wrong project) removes nothing.
        let project = google(404, "NOT_FOUND", "Project not found", json!([]));
        assert!(matches!(
            answer(S::NOT_FOUND, None, &project),
            Err(TransportError::Permanent(_))
        ));
        let third_party = google(
            401,
            "UNAUTHENTICATED",
            "Auth error from APNS or Web Push Service",
            fcm_error("THIRD_PARTY_AUTH_ERROR"),
        );
        assert!(matches!(
            answer(S::UNAUTHORIZED, None, &third_party),
            Err(TransportError::Permanent(_))
        ));
        assert!(matches!(
            answer(S::BAD_REQUEST, None, "<html>bad</html>"),
            Err(TransportError::Permanent(m)) if m == "HTTP 400: <html>bad</html>"
        ));
    }

    #[test]
    fn busy_and_unauthenticated_answers_are_retried() {
        let quota = google(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded",
            fcm_error("QUOTA_EXCEEDED"),
        );
        assert_eq!(
            answer(S::TOO_MANY_REQUESTS, Some("30"), &quota),
            Err(TransportError::Retryable {
                message: "HTTP 429 QUOTA_EXCEEDED: Quota exceeded".into(),
                retry_after: Some(Duration::from_secs(30)),
            })
        );
        let unavailable = google(
            503,
            "UNAVAILABLE",
            "The service is unavailable.",
            fcm_error("UNAVAILABLE"),
        );
        assert!(matches!(
            answer(S::SERVICE_UNAVAILABLE, None, &unavailable),
            Err(TransportError::Retryable {
                retry_after: None,
                ..
            })
        ));
        assert!(matches!(
            answer(S::INTERNAL_SERVER_ERROR, Some("2"), ""),
            Err(TransportError::Retryable { retry_after: Some(d), .. }) if d == Duration::from_secs(2)
        ));
        let expired = google(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
            json!([]),
        );
        assert!(matches!(
            answer(S::UNAUTHORIZED, None, &expired),
            Err(TransportError::Retryable { .. })
        ));
    }

    #[test]
    fn tokens_are_replaced_before_they_run_out() {
        assert_eq!(refresh_after(3599), Duration::from_secs(3299));
        assert_eq!(refresh_after(600), Duration::from_secs(300));
        // A short-lived token is replaced halfway.
        assert_eq!(refresh_after(120), Duration::from_secs(60));
        assert_eq!(refresh_after(0), Duration::ZERO);
    }

    #[test]
    fn the_grant_is_form_encoded() {
        assert_eq!(
            form_encode(GRANT_TYPE),
            "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
        );
        assert_eq!(form_encode("eyJ.a-b_c~"), "eyJ.a-b_c~");
        assert_eq!(form_encode("a b/+="), "a%20b%2F%2B%3D");
    }

    #[test]
    fn a_service_account_needs_its_fields_and_a_usable_key() {
        let err = |text: &str| ServiceAccount::parse(text).err().expect("refused");
        assert!(err("not json").contains("not a service-account JSON file"));
        assert!(err(r#"{"project_id": "p", "private_key": "x"}"#).contains("`client_email`"));
        assert!(err(r#"{"client_email": "a@b", "private_key": "x"}"#).contains("`project_id`"));
        assert!(err(r#"{"client_email": "a@b", "project_id": "p"}"#).contains("`private_key`"));
        assert!(err(r#"{"client_email": "a@b", "project_id": "p", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#).contains("`private_key`"));
        assert!(err(r#"{"client_email": "a@b", "project_id": "p", "private_key": "x", "token_uri": "ftp://x/token"}"#).contains("`token_uri`"));
        let missing = ServiceAccount::load(Path::new("/nonexistent/service-account.json"))
            .err()
            .expect("refused");
        assert_eq!(missing.setting, SETTING);
    }
}
