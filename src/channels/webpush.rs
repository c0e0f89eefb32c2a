//! Web Push (RFC 8030): the payload encrypted for the browser (RFC 8291, `aes128gcm`, by
//! `web-push-native`), signed for the push service with the hub's VAPID key (RFC 8292), and
//! posted through the hub's own client, which connects only to public addresses unless
//! `--push-allow-private`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use serde::Serialize;
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use crate::delivery::outbound::{self, check_literal, request_error};
use crate::channels::push::{self, VapidKey};
use crate::channels::push::PushContent;
use crate::setting::ConfigError;

/// The Web Push settings: the VAPID key and contact.
#[derive(clap::Args, Clone, Debug)]
#[group(skip)]
pub struct Settings {
    /// Web Push (VAPID) private key: a PEM file (PKCS#8 or SEC1, P-256), or a file holding
    /// the raw key in base64url. Without it an embedded hub keeps one beside its SQLite file
    /// (`<database>.vapid.pem`); with PostgreSQL, Web Push is off without it.
    #[arg(long, env = "TICKETHUB_WEBPUSH_VAPID_KEY")]
    pub webpush_vapid_key: Option<PathBuf>,

    /// The contact push services may use about this sender (`mailto:…` or `https:…`), the
    /// `sub` of the VAPID token; `--public-url` when it is an `https:` one and this is not
    /// set. Apple's push service (Safari) refuses a token without it.
    #[arg(long, env = "TICKETHUB_WEBPUSH_SUBJECT")]
    pub webpush_subject: Option<String>,
}

/// Web Push (RFC 8030, 8291, 8292), to browsers' subscriptions: a carrier of `push`, on with a
/// VAPID key.
pub struct WebPush;

impl crate::channels::Plugin for WebPush {
    const NAME: &'static str = "webpush";
    const REACH: tickethub_actors::routing::Reach = tickethub_actors::routing::Reach::Carrier;
    type Settings = Settings;

    fn validate(s: &Settings) -> Result<(), ConfigError> {
        if let Some(subject) = &s.webpush_subject {
            if !(subject.starts_with("mailto:") || subject.starts_with("https://")) {
                return Err(ConfigError::new(
                    "--webpush-subject (TICKETHUB_WEBPUSH_SUBJECT)",
                    "must be a mailto: or https: URL",
                ));
            }
        }
        Ok(())
    }

    fn transport(
        settings: &crate::channels::Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn tickethub_actors::ports::Transport>>, ConfigError> {
        let Some(vapid) = ctx.vapid.clone() else {
            return Ok(None);
        };
        let subject = settings.webpush.webpush_subject.clone().or_else(|| {
            ctx.public_url
                .clone()
                .filter(|url| url.starts_with("https://"))
        });
        if subject.is_none() {
            tracing::warn!("Web Push without --webpush-subject (nor an https: --public-url): Apple's push service refuses its pushes");
        }
        Ok(Some(Arc::new(WebPushTransport::new(
            settings, vapid, subject, ctx.timeout,
        )?)))
    }
}


/// Sends pushes to browsers' subscriptions.
pub struct WebPushTransport {
    client: reqwest::Client,
    vapid: Arc<VapidKey>,
    signing: jsonwebtoken::EncodingKey,
    subject: Option<String>,
    ttl: u64,
    content: PushContent,
    allow_private: bool,
}

/// The claims of a VAPID token.
#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
}

/// Why a subscription's endpoint is refused when registered.
pub fn check_endpoint(endpoint: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let url: reqwest::Url = endpoint
        .parse()
        .map_err(|e| format!("`endpoint` is not a URL: {e}"))?;
    if url.scheme() != "https" && !(allow_private && url.scheme() == "http") {
        return Err("`endpoint` must be an https URL".to_owned());
    }
    if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err("`endpoint` must name a host, without credentials".to_owned());
    }
    if !allow_private {
        check_literal(&url).map_err(|e| match e {
            TransportError::Permanent(m) => format!("`endpoint`: {m}"),
            other => other.to_string(),
        })?;
    }
    Ok(url)
}

/// Whether an endpoint's host resolves only to public addresses (a name that resolves to a
/// private one is refused when registered, and again, pinned, at every send).
pub async fn resolves_publicly(
    url: &reqwest::Url,
    dns: &outbound::Dns,
) -> Result<(), outbound::DnsError> {
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let addrs = dns.lookup(host).await.map_err(|e| match e {
        outbound::DnsError::Failed(why) => outbound::DnsError::Failed(format!("`endpoint`: {why}")),
        busy => busy,
    })?;
    // Which address it resolved to is not said: the answer would map the hub's network.
    if addrs.is_empty() || addrs.iter().any(|a| !outbound::is_public(a)) {
        return Err(outbound::DnsError::Failed(format!(
            "`endpoint`: {host} is not on a public address"
        )));
    }
    Ok(())
}

impl WebPushTransport {
    /// A transport signing with `vapid`.
    pub fn new(
        settings: &crate::channels::Settings,
        vapid: Arc<VapidKey>,
        subject: Option<String>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let signing =
            jsonwebtoken::EncodingKey::from_ec_pem(vapid.pem.as_bytes()).map_err(|e| {
                ConfigError::new(
                    "--webpush-vapid-key (TICKETHUB_WEBPUSH_VAPID_KEY)",
                    format!("cannot sign with the key: {e}"),
                )
            })?;
        let client = outbound::client(timeout, !settings.push.push_allow_private).map_err(|e| {
            ConfigError::new(
                "--delivery-timeout (TICKETHUB_DELIVERY_TIMEOUT)",
                e.to_string(),
            )
        })?;
        Ok(Self {
            client,
            vapid,
            signing,
            subject,
            ttl: settings.push.push_ttl,
            content: settings.push.push_content,
            allow_private: settings.push.push_allow_private,
        })
    }

    /// The `Authorization: vapid t=…, k=…` of a request to `url`'s push service.
    fn authorization(&self, url: &reqwest::Url) -> Result<String, TransportError> {
        let origin = url.origin().ascii_serialization();
        let claims = Claims {
            aud: &origin,
            exp: chrono::Utc::now().timestamp() + 12 * 3600,
            sub: self.subject.as_deref(),
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &self.signing,
        )
        .map_err(|e| TransportError::Permanent(format!("cannot sign the VAPID token: {e}")))?;
        Ok(format!("vapid t={token}, k={}", self.vapid.public_key))
    }
}

fn decode_key(name: &str, value: Option<&str>) -> Result<Vec<u8>, TransportError> {
    let value = value.ok_or_else(|| {
        TransportError::Permanent(format!("the subscription has no `{name}` key"))
    })?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| {
            TransportError::Permanent(format!("the subscription's `{name}` is not base64url"))
        })
}

/// A subscription's keys, as the browser gave them: its P-256 public key and its 16-byte
/// authentication secret.
pub fn subscription_keys(
    p256dh: Option<&str>,
    auth: Option<&str>,
) -> Result<(p256::PublicKey, web_push_native::Auth), TransportError> {
    let public = p256::PublicKey::from_sec1_bytes(&decode_key("p256dh", p256dh)?)
        .map_err(|_| TransportError::Permanent("`p256dh` is not a P-256 public key".into()))?;
    let auth = decode_key("auth", auth)?;
    if auth.len() != 16 {
        return Err(TransportError::Permanent("`auth` must be 16 bytes".into()));
    }
    Ok((public, *web_push_native::Auth::from_slice(&auth)))
}

#[async_trait]
impl Transport for WebPushTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
        let device = push::device(job)?;
        let url = check_endpoint(&device.device.token, self.allow_private)
            .map_err(TransportError::Permanent)?;
        let (public, auth) = subscription_keys(
            device.device.p256dh.as_deref(),
            device.device.auth.as_deref(),
        )?;
        let mut payload = push::payload(job, self.content);
        // A page gets an Acknowledge button: the service worker posts its token.
        let n = &job.notification;
        if tickethub_actors::reply::is_page(n) {
            let expires = chrono::Utc::now() + push::ACK_TOKEN_LIFE;
            payload["actions"] = serde_json::json!([{"action": "ack", "title": "Acknowledge"}]);
            payload["ack"] = serde_json::json!({
                "url": push::PUSH_ACK,
                "token": self.vapid.ack_token(n.id, n.user_id.0, expires),
                "code": tickethub_actors::reply::code(n.seq),
            });
        }
        let plain = payload.to_string().into_bytes();
        let body = web_push_native::encrypt(plain, &public, &auth)
            .map_err(|e| TransportError::Permanent(format!("cannot encrypt the push: {e}")))?;
        let urgency = if push::is_critical(job) {
            "high"
        } else {
            "normal"
        };
        let response = self
            .client
            .post(url.clone())
            .header("TTL", self.ttl.to_string())
            .header("Urgency", urgency)
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("Authorization", self.authorization(&url)?)
            .body(body)
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        let location = outbound::header(&response, reqwest::header::LOCATION);
        let retry_after = outbound::header(&response, reqwest::header::RETRY_AFTER);
        let text = outbound::answer_text(response).await;
        // RFC 8030 §7.3: 404 and 410 say the subscription is gone.
        if matches!(status.as_u16(), 404 | 410) {
            return Err(TransportError::Gone(format!(
                "HTTP {}: {}",
                status.as_u16(),
                tickethub_actors::notification::excerpt(text.trim(), 200)
            )));
        }
        crate::delivery::classify(status, retry_after.as_deref(), &text)?;
        Ok(location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_https_on_a_public_address() {
        assert!(check_endpoint("https://fcm.googleapis.com/fcm/send/abc", false).is_ok());
        for (endpoint, needle) in [
            ("http://fcm.googleapis.com/fcm/send/abc", "https"),
            ("https://10.0.0.8/push", "non-public"),
            ("https://[fd00::1]/push", "non-public"),
            ("https://169.254.169.254/latest/meta-data", "non-public"),
            ("https://user:pw@push.example.com/x", "credentials"),
            ("push.example.com/x", "not a URL"),
        ] {
            let err = check_endpoint(endpoint, false).unwrap_err();
            assert!(err.contains(needle), "{endpoint}: {err}");
        }
        assert!(check_endpoint("http://127.0.0.1:9000/push", true).is_ok());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_private_address_is_refused() {
        let url = reqwest::Url::parse("https://localhost/push").unwrap();
        let dns = outbound::Dns::new(None, 4).unwrap();
        let err = resolves_publicly(&url, &dns).await.unwrap_err().to_string();
        assert!(
            err.contains("not on a public address") && !err.contains("127.0.0.1"),
            "{err}"
        );
    }

    #[test]
    fn a_push_decrypts_with_the_browser_s_keys_and_the_token_verifies_with_the_hub_s() {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // The browser's side.
        let ua = p256::SecretKey::from_slice(&[42u8; 32]).unwrap();
        let auth = [9u8; 16];
        let p256dh = b64.encode(ua.public_key().to_encoded_point(false).as_bytes());
        let (public, auth_key) = subscription_keys(Some(&p256dh), Some(&b64.encode(auth))).unwrap();
        let body =
            web_push_native::encrypt(b"{\"title\":\"hi\"}".to_vec(), &public, &auth_key).unwrap();
        // aes128gcm: salt, record size, key id length 65, the sender's public key.
        assert_eq!(body[20], 65);
        let plain = web_push_native::decrypt(body, &ua, &auth_key).unwrap();
        assert_eq!(plain, b"{\"title\":\"hi\"}");
        // VAPID: the key survives PEM and raw forms, and signs tokens its public key verifies.
        let key = VapidKey::generate().unwrap();
        let again = VapidKey::parse(&key.pem).unwrap();
        assert_eq!(again.public_key, key.public_key);
        let raw = b64.encode(key.secret().to_bytes());
        assert_eq!(VapidKey::parse(&raw).unwrap().public_key, key.public_key);
        assert!(VapidKey::parse("not a key").is_err());
        let transport = WebPushTransport {
            client: outbound::client(Duration::from_secs(1), true).unwrap(),
            signing: jsonwebtoken::EncodingKey::from_ec_pem(key.pem.as_bytes()).unwrap(),
            vapid: Arc::new(key),
            subject: Some("mailto:ops@example.com".into()),
            ttl: 60,
            content: PushContent::Full,
            allow_private: false,
        };
        let url = reqwest::Url::parse("https://push.example.com:8443/send/x").unwrap();
        let header = transport.authorization(&url).unwrap();
        let (t, k) = header
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .unwrap();
        assert_eq!(k, transport.vapid.public_key);
        let public_pem = {
            use p256::pkcs8::EncodePublicKey;
            transport
                .vapid
                .secret()
                .public_key()
                .to_public_key_pem(p256::pkcs8::LineEnding::LF)
                .unwrap()
        };
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&["https://push.example.com:8443"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            t,
            &jsonwebtoken::DecodingKey::from_ec_pem(public_pem.as_bytes()).unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        // Ahead, and no more than the 24 hours push services accept.
        let ahead = claims["exp"].as_i64().unwrap() - chrono::Utc::now().timestamp();
        assert!((1..=24 * 3600).contains(&ahead), "{ahead}");
    }
}
