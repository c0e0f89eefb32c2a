//! Apple Push Notification service: `POST {url}/3/device/{token}` over HTTP/2 (ALPN `h2`
//! over TLS; prior knowledge on a plain `http://` URL), authenticated by a provider token.
//!
//! The provider token is an ES256 JWT signed with the team's `.p8` key (`kid` the key's id,
//! `iss` the team, `iat` when it was made). Apple refuses tokens older than an hour and
//! replacing them more often than every 20 minutes, so one token serves for 40 minutes, or
//! until APNs calls it expired.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tickethub_actors::notification::excerpt;
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use crate::delivery::outbound::header;
use crate::channels::push;
use crate::delivery::network_error;
use crate::channels::push::PushContent;
use crate::setting::ConfigError;

/// The APNs settings: the token-signing key, its id, the team and the app.
#[derive(clap::Args, Clone, Debug)]
#[group(skip)]
pub struct Settings {
    /// APNs token-signing key (`AuthKey_XXXXXXXXXX.p8`); APNs is off without it.
    #[arg(long, env = "TICKETHUB_APNS_KEY")]
    pub apns_key: Option<PathBuf>,

    /// The APNs key's id (10 characters).
    #[arg(long, env = "TICKETHUB_APNS_KEY_ID")]
    pub apns_key_id: Option<String>,

    /// The Apple developer team id (10 characters).
    #[arg(long, env = "TICKETHUB_APNS_TEAM_ID")]
    pub apns_team_id: Option<String>,

    /// The app's bundle id (`apns-topic`).
    #[arg(long, env = "TICKETHUB_APNS_TOPIC")]
    pub apns_topic: Option<String>,

    /// APNs base URL: `https://api.sandbox.push.apple.com` for development builds.
    #[arg(
        long,
        env = "TICKETHUB_APNS_URL",
        default_value = "https://api.push.apple.com"
    )]
    pub apns_url: String,
}

/// Apple Push Notification service (HTTP/2, token auth), to devices' tokens: a carrier of
/// `push`, on with a token key.
pub struct Apns;

impl crate::channels::Plugin for Apns {
    const NAME: &'static str = "apns";
    const REACH: tickethub_actors::routing::Reach = tickethub_actors::routing::Reach::Carrier;
    type Settings = Settings;

    fn validate(s: &Settings) -> Result<(), ConfigError> {
        if s.apns_key.is_some()
            && (s.apns_key_id.is_none() || s.apns_team_id.is_none() || s.apns_topic.is_none())
        {
            return Err(ConfigError::new(
                "--apns-key (TICKETHUB_APNS_KEY)",
                "APNs needs --apns-key-id, --apns-team-id and --apns-topic as well",
            ));
        }
        Ok(())
    }

    fn transport(
        settings: &crate::channels::Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn tickethub_actors::ports::Transport>>, ConfigError> {
        if settings.apns.apns_key.is_none() {
            return Ok(None);
        }
        Ok(Some(Arc::new(ApnsTransport::new(settings, ctx.timeout)?)))
    }
}


const SETTING: &str = "--apns-key (TICKETHUB_APNS_KEY)";

/// How long a provider token is used before a new one is signed.
pub const TOKEN_LIFE: Duration = Duration::from_secs(40 * 60);

/// The claims of a provider token.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
}

/// The provider token in use.
struct ProviderToken {
    jwt: String,
    iat: i64,
    made: Instant,
}

/// The provider token in use, and the `iat` of the last one APNs called expired: a new token
/// is issued later than that, so that it is never the refused one again.
#[derive(Default)]
struct Tokens {
    current: Option<ProviderToken>,
    refused_iat: i64,
}

/// Sends pushes to Apple devices.
pub struct ApnsTransport {
    client: reqwest::Client,
    base: String,
    signing: jsonwebtoken::EncodingKey,
    key_id: String,
    team_id: String,
    topic: String,
    ttl: u64,
    content: PushContent,
    tokens: std::sync::Mutex<Tokens>,
}

fn required<'a>(value: &'a Option<String>, setting: &'static str) -> Result<&'a str, ConfigError> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError::new(setting, "APNs needs it with --apns-key"))
}

impl ApnsTransport {
    /// A transport signing with the key of `--apns-key`.
    pub fn new(settings: &crate::channels::Settings, timeout: Duration) -> Result<Self, ConfigError> {
        let path = settings
            .apns
            .apns_key
            .as_deref()
            .ok_or_else(|| ConfigError::new(SETTING, "no key file is given"))?;
        let pem = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(SETTING, format!("cannot read {}: {e}", path.display()))
        })?;
        let signing = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| {
            ConfigError::new(
                SETTING,
                format!(
                    "{}: not a PKCS#8 EC private key in PEM: {e}",
                    path.display()
                ),
            )
        })?;
        let key_id = required(&settings.apns.apns_key_id, "--apns-key-id (TICKETHUB_APNS_KEY_ID)")?;
        let team_id = required(
            &settings.apns.apns_team_id,
            "--apns-team-id (TICKETHUB_APNS_TEAM_ID)",
        )?;
        let topic = required(&settings.apns.apns_topic, "--apns-topic (TICKETHUB_APNS_TOPIC)")?;
        let base = settings.apns.apns_url.trim_end_matches('/').to_owned();
        let url: reqwest::Url = base.parse().map_err(|e| {
            ConfigError::new("--apns-url (TICKETHUB_APNS_URL)", format!("not a URL: {e}"))
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(ConfigError::new(
                "--apns-url (TICKETHUB_APNS_URL)",
                "must be an https URL",
            ));
        }
        let transport = Self {
            client: client(timeout).map_err(|e| {
                ConfigError::new(
                    "--delivery-timeout (TICKETHUB_DELIVERY_TIMEOUT)",
                    e.to_string(),
                )
            })?,
            base,
            signing,
            key_id: key_id.to_owned(),
            team_id: team_id.to_owned(),
            topic: topic.to_owned(),
            ttl: settings.push.push_ttl,
            content: settings.push.push_content,
            tokens: std::sync::Mutex::default(),
        };
        // A key that parses but cannot sign is found at start.
        transport
            .sign(chrono::Utc::now().timestamp())
            .map_err(|e| {
                ConfigError::new(
                    SETTING,
                    format!("{}: cannot sign with the key: {e}", path.display()),
                )
            })?;
        Ok(transport)
    }

    /// A provider token issued at `iat`.
    fn sign(&self, iat: i64) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(
            &header,
            &Claims {
                iss: &self.team_id,
                iat,
            },
            &self.signing,
        )
    }

    /// The provider token to send with: the current one while it is younger than
    /// [`TOKEN_LIFE`], otherwise a new one.
    fn provider_token(&self) -> Result<String, TransportError> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(token) = tokens
            .current
            .as_ref()
            .filter(|t| t.made.elapsed() < TOKEN_LIFE)
        {
            return Ok(token.jwt.clone());
        }
        let iat = chrono::Utc::now().timestamp().max(tokens.refused_iat + 1);
        let jwt = self
            .sign(iat)
            .map_err(|e| TransportError::Permanent(format!("cannot sign the APNs token: {e}")))?;
        tokens.current = Some(ProviderToken {
            jwt: jwt.clone(),
            iat,
            made: Instant::now(),
        });
        Ok(jwt)
    }

    /// Drops `jwt` if it is the current token (APNs called it expired).
    fn forget_token(&self, jwt: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(token) = tokens.current.take_if(|t| t.jwt == jwt) {
            tokens.refused_iat = tokens.refused_iat.max(token.iat);
        }
    }

    /// The JSON of a push: the alert in `aps`, the payload's other fields beside it.
    fn body(&self, job: &DeliveryJob) -> Value {
        let payload = push::payload(job, self.content);
        let mut alert = serde_json::Map::new();
        let mut body = serde_json::Map::new();
        for (key, value) in payload.as_object().cloned().unwrap_or_default() {
            match key.as_str() {
                "title" | "body" => {
                    alert.insert(key, value);
                }
                _ if value.is_null() => {}
                _ => {
                    body.insert(key, value);
                }
            }
        }
        body.insert(
            "aps".to_owned(),
            json!({ "alert": alert, "sound": "default" }),
        );
        Value::Object(body)
    }
}

/// An HTTP/2-only client with timeouts and without redirects.
fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tickethub/", env!("CARGO_PKG_VERSION")))
        .http2_prior_knowledge()
        .build()
}

/// APNs' error answer.
#[derive(Deserialize)]
struct ErrorBody {
    reason: String,
}

/// The `reason` of an APNs error answer, if it has one.
pub fn reason(body: &str) -> Option<String> {
    serde_json::from_str::<ErrorBody>(body)
        .ok()
        .map(|e| e.reason)
}

/// What an APNs answer comes to: the `apns-id` on 200; `Gone` for a device that is no longer
/// the app's (410 `Unregistered`); a retry
/// for an expired provider token (403 `ExpiredProviderToken`, after which a new token is
/// signed), 429 and 5xx; any other answer is permanent, with its reason.
pub fn answer(
    status: reqwest::StatusCode,
    apns_id: Option<String>,
    retry_after: Option<&str>,
    body: &str,
) -> Result<Option<String>, TransportError> {
    if status == reqwest::StatusCode::OK {
        return Ok(apns_id);
    }
    let code = status.as_u16();
    let reason = reason(body);
    let message = match &reason {
        Some(reason) => format!("HTTP {code} {reason}"),
        None if body.trim().is_empty() => format!("HTTP {code}"),
        None => format!("HTTP {code}: {}", excerpt(body.trim(), 300)),
    };
    let reason = reason.as_deref().unwrap_or_default();
    // Only 410 says the device is gone. `BadDeviceToken` and `DeviceTokenNotForTopic` are also
    // what every device answers when the hub is pointed at the wrong environment (sandbox or
    // production) or topic: a setting to fix, so the device is kept and the push fails.
    if code == 410 {
        return Err(TransportError::Gone(message));
    }
    let retryable = (code == 403 && reason == "ExpiredProviderToken")
        || code == 429
        || status.is_server_error();
    Err(crate::delivery::refusal(retryable, message, retry_after))
}

#[async_trait]
impl Transport for ApnsTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
        let device = push::device(job)?;
        let token = &device.device.token;
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TransportError::Gone(
                "an APNs device token is hexadecimal".to_owned(),
            ));
        }
        let jwt = self.provider_token()?;
        let expiration = match self.ttl {
            0 => 0,
            ttl => chrono::Utc::now().timestamp() + ttl as i64,
        };
        let priority = if push::is_critical(job) { "10" } else { "5" };
        let response = self
            .client
            .post(format!("{}/3/device/{token}", self.base))
            .header(reqwest::header::AUTHORIZATION, format!("bearer {jwt}"))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", priority)
            .header("apns-expiration", expiration.to_string())
            .json(&self.body(job))
            .send()
            .await
            .map_err(network_error)?;
        let status = response.status();
        let apns_id = header(
            &response,
            reqwest::header::HeaderName::from_static("apns-id"),
        );
        let retry_after = header(&response, reqwest::header::RETRY_AFTER);
        let text = crate::delivery::outbound::answer_text(response).await;
        let result = answer(status, apns_id, retry_after.as_deref(), &text);
        if status == reqwest::StatusCode::FORBIDDEN
            && reason(&text).as_deref() == Some("ExpiredProviderToken")
        {
            self.forget_token(&jwt);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode as S;

    fn apple(reason: &str) -> String {
        json!({"reason": reason, "timestamp": 1_700_000_000_000_i64}).to_string()
    }

    #[test]
    fn a_sent_push_is_named_by_its_apns_id() {
        assert_eq!(
            answer(S::OK, Some("EB6B4F2C-0000".into()), None, ""),
            Ok(Some("EB6B4F2C-0000".into()))
        );
    }

    #[test]
    fn dead_device_tokens_are_gone() {
        assert_eq!(
            answer(S::GONE, None, None, &apple("Unregistered")),
            Err(TransportError::Gone("HTTP 410 Unregistered".into()))
        );
        // Bad requests are the hub's to fix, not the device's: a token of the other environment
        // or another app's answers `BadDeviceToken` or `DeviceTokenNotForTopic`.
        for reason in [
            "BadDeviceToken",
            "DeviceTokenNotForTopic",
            "BadTopic",
            "PayloadTooLarge",
            "MissingTopic",
            "BadExpirationDate",
        ] {
            assert!(
                matches!(answer(S::BAD_REQUEST, None, None, &apple(reason)), Err(TransportError::Permanent(m)) if m.contains(reason)),
                "{reason}"
            );
        }
    }

    #[test]
    fn expired_tokens_and_busy_answers_are_retried() {
        assert!(matches!(
            answer(S::FORBIDDEN, None, None, &apple("ExpiredProviderToken")),
            Err(TransportError::Retryable { message, .. }) if message == "HTTP 403 ExpiredProviderToken"
        ));
        assert!(matches!(
            answer(S::FORBIDDEN, None, None, &apple("InvalidProviderToken")),
            Err(TransportError::Permanent(m)) if m == "HTTP 403 InvalidProviderToken"
        ));
        assert_eq!(
            answer(
                S::TOO_MANY_REQUESTS,
                None,
                Some("3"),
                &apple("TooManyRequests")
            ),
            Err(TransportError::Retryable {
                message: "HTTP 429 TooManyRequests".into(),
                retry_after: Some(Duration::from_secs(3)),
            })
        );
        for status in [S::INTERNAL_SERVER_ERROR, S::SERVICE_UNAVAILABLE] {
            assert!(matches!(
                answer(status, None, None, ""),
                Err(TransportError::Retryable { .. })
            ));
        }
        assert!(matches!(
            answer(
                S::METHOD_NOT_ALLOWED,
                None,
                None,
                &apple("MethodNotAllowed")
            ),
            Err(TransportError::Permanent(_))
        ));
        assert!(matches!(
            answer(S::NOT_FOUND, None, None, "nope"),
            Err(TransportError::Permanent(m)) if m == "HTTP 404: nope"
        ));
    }

    fn transport(dir: &std::path::Path) -> ApnsTransport {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let secret = loop {
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
                break secret;
            }
        };
        let path = dir.join("AuthKey_KEY1234567.p8");
        std::fs::write(
            &path,
            secret.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        let mut config = crate::config::ServeConfig::defaults();
        config.channels.apns.apns_key = Some(path);
        config.channels.apns.apns_key_id = Some("KEY1234567".into());
        config.channels.apns.apns_team_id = Some("TEAM123456".into());
        config.channels.apns.apns_topic = Some("com.example.app".into());
        ApnsTransport::new(&config.channels, Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn a_provider_token_is_reused_and_replaced_once_refused() {
        let dir = tempfile::tempdir().unwrap();
        let apns = transport(dir.path());
        let first = apns.provider_token().unwrap();
        assert_eq!(apns.provider_token().unwrap(), first, "reused");
        let header = jsonwebtoken::decode_header(&first).unwrap();
        assert_eq!(
            (header.alg, header.kid.as_deref()),
            (jsonwebtoken::Algorithm::ES256, Some("KEY1234567"))
        );
        let iat = |jwt: &str| {
            let claims = jwt.split('.').nth(1).unwrap();
            use base64::Engine as _;
            let claims: Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(claims)
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(claims["iss"], "TEAM123456");
            claims["iat"].as_i64().unwrap()
        };
        // A token called expired is never sent again: its successor is issued later.
        apns.forget_token(&first);
        let second = apns.provider_token().unwrap();
        assert_ne!(second, first);
        assert!(iat(&second) > iat(&first));
        // Forgetting a token no longer in use changes nothing.
        apns.forget_token(&first);
        assert_eq!(apns.provider_token().unwrap(), second);
    }

    #[test]
    fn a_key_that_is_not_an_ec_key_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("AuthKey.p8");
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let mut config = crate::config::ServeConfig::defaults();
        config.channels.apns.apns_key = Some(path);
        config.channels.apns.apns_key_id = Some("KEY1234567".into());
        config.channels.apns.apns_team_id = Some("TEAM123456".into());
        config.channels.apns.apns_topic = Some("com.example.app".into());
        let err = ApnsTransport::new(&config.channels, Duration::from_secs(5))
            .err()
            .expect("refused");
        assert_eq!(err.setting, SETTING);
        config.channels.apns.apns_key = Some(dir.path().join("missing.p8"));
        let err = ApnsTransport::new(&config.channels, Duration::from_secs(5))
            .err()
            .expect("refused");
        assert!(err.message.contains("cannot read"), "{err}");
    }
}
