//! What the push carriers share: the payload a push carries, and the hub's VAPID key.
//!
//! A push is small and says little: its title, a body, the link to open, and the ids an app
//! needs to fetch the rest from the API (`notification_id`, `seq`). With `--push-content
//! minimal` it carries the title alone, for notifications whose words must not pass through a
//! push provider.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::{json, Value};
use tickethub_actors::notification::excerpt;
use tickethub_actors::ports::{DeliveryJob, Device, TransportError};

use super::PushContent;
use crate::setting::ConfigError;

/// The longest body a push carries, in characters: every provider's payload limit is 4 KiB,
/// and the body is trimmed well within it.
pub const BODY_CHARS: usize = 1000;

/// The priority a push speaks of: its ticket's, or a sent notification's `data.priority`,
/// or `MEDIUM`.
pub fn priority(job: &DeliveryJob) -> String {
    let n = &job.notification;
    if let Some(t) = &n.ticket {
        return t.priority.as_str().to_owned();
    }
    serde_json::from_str::<Value>(&n.data)
        .ok()
        .and_then(|d| d["priority"].as_str().map(str::to_ascii_uppercase))
        .filter(|p| ["LOW", "MEDIUM", "HIGH", "CRITICAL"].contains(&p.as_str()))
        .unwrap_or_else(|| "MEDIUM".to_owned())
}

/// Whether a push goes out with high urgency: its notification is about a CRITICAL matter.
pub fn is_critical(job: &DeliveryJob) -> bool {
    priority(job) == "CRITICAL"
}

/// The most bytes a push's JSON takes: every provider allows 4 KiB, its own envelope (APNs'
/// `aps`, Web Push's encryption header and padding) included.
pub const MAX_BYTES: usize = 3000;

/// The JSON a push carries (see the module's documentation), within [`MAX_BYTES`]: a body too
/// long for it is cut shorter, then the title, then the link is left out.
pub fn payload(job: &DeliveryJob, content: PushContent) -> Value {
    payload_within(job, content, |value| value.to_string().len())
}

/// [`payload`], with its size reckoned as a provider reckons what it carries of it (at most
/// [`MAX_BYTES`] of `size`, and of its JSON).
pub fn payload_within(
    job: &DeliveryJob,
    content: PushContent,
    size: impl Fn(&Value) -> usize,
) -> Value {
    let size = |value: &Value| size(value).max(value.to_string().len());
    let mut value = full_payload(job, content);
    for field in ["body", "title"] {
        while size(&value) > MAX_BYTES {
            let Some(text) = value[field].as_str().filter(|t| !t.is_empty()) else {
                break;
            };
            let count = text.chars().count();
            value[field] = if count <= 1 {
                String::new()
            } else {
                excerpt(text, (count * 3 / 4).clamp(1, count - 1))
            }
            .into();
        }
    }
    if size(&value) > MAX_BYTES {
        value["url"] = Value::Null;
    }
    value
}

fn full_payload(job: &DeliveryJob, content: PushContent) -> Value {
    let n = &job.notification;
    match content {
        PushContent::Full => json!({
            "title": excerpt(&n.title, 200),
            "body": excerpt(&n.message, BODY_CHARS),
            "url": n.action_url,
            "notification_id": n.id,
            "seq": n.seq,
            "type": n.notification_type.as_str(),
            "priority": priority(job),
        }),
        PushContent::Minimal => json!({
            "title": excerpt(&n.title, 200),
            "notification_id": n.id,
            "seq": n.seq,
        }),
    }
}

/// The device a push goes to, or why it cannot go: the device was removed after the push was
/// queued, or it is not of this carrier.
pub fn device(job: &DeliveryJob) -> Result<&Device, TransportError> {
    let device = job
        .device
        .as_ref()
        .ok_or_else(|| TransportError::Permanent("the device was removed".to_owned()))?;
    if device.user != job.notification.user_id {
        return Err(TransportError::Permanent(
            "the device was registered by another user since".to_owned(),
        ));
    }
    if device.device.kind != job.channel {
        return Err(TransportError::Permanent(format!(
            "device {} is a {} device, not {}",
            device.id,
            device.device.kind.as_str(),
            job.channel.as_str()
        )));
    }
    Ok(device)
}

/// The hub's Web Push application server key (RFC 8292), a P-256 key pair.
pub struct VapidKey {
    secret: p256::SecretKey,
    /// The private key as PKCS#8 PEM, for signing tokens.
    pub pem: String,
    /// The public key, uncompressed, base64url: what `pushManager.subscribe` takes as its
    /// `applicationServerKey`, and the `k=` of the `Authorization` header.
    pub public_key: String,
}

const SETTING: &str = "--webpush-vapid-key (TICKETHUB_WEBPUSH_VAPID_KEY)";

/// Where a push's Acknowledge button posts its token (served by `crate::http::inbound`).
pub const PUSH_ACK: &str = "/api/inbound/push/ack/";

/// How long a push's acknowledge button works.
pub const ACK_TOKEN_LIFE: chrono::TimeDelta = chrono::TimeDelta::days(7);

impl VapidKey {
    /// The key that signs acknowledge tokens: derived from the private key, so that only this
    /// hub (and the nodes that share its key) makes and accepts them.
    fn ack_key(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(b"tickethub push acknowledge\0");
        hash.update(self.pem.as_bytes());
        hash.finalize().into()
    }

    fn ack_mac(&self, claims: &str) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.ack_key())
            .expect("HMAC takes any key");
        mac.update(claims.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A token that acknowledges one notification for its recipient until `expires`:
    /// `<notification>.<user>.<expiry, unix seconds>.<HMAC-SHA256>`.
    pub fn ack_token(&self, notification: i64, user: i64, expires: chrono::DateTime<chrono::Utc>) -> String {
        let claims = crate::channels::signed::claims(notification, user, expires, '.');
        let mac = self.ack_mac(&claims);
        format!("{claims}.{mac}")
    }

    /// The notification and user an acknowledge token names, if it is this hub's and has not
    /// expired at `now`.
    pub fn check_ack_token(&self, token: &str, now: chrono::DateTime<chrono::Utc>) -> Result<(i64, i64), &'static str> {
        let (claims, mac) = token.rsplit_once('.').ok_or("not a token")?;
        crate::channels::signed::check(claims, mac, &self.ack_mac(claims), '.', now)
    }

    fn from_secret(secret: p256::SecretKey) -> Result<Self, ConfigError> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let pem = secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| ConfigError::new(SETTING, format!("cannot encode the key: {e}")))?
            .to_string();
        let public_key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(secret.public_key().to_encoded_point(false).as_bytes());
        Ok(Self {
            secret,
            pem,
            public_key,
        })
    }

    /// A fresh key.
    pub fn generate() -> Result<Self, ConfigError> {
        let mut bytes = [0u8; 32];
        loop {
            rand::fill(&mut bytes);
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
                return Self::from_secret(secret);
            }
        }
    }

    /// A key from its text: PKCS#8 or SEC1 PEM, or the raw 32-byte key in base64url (as the
    /// `web-push` tools print it).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let secret = if text.contains("-----BEGIN PRIVATE KEY-----") {
            p256::SecretKey::from_pkcs8_pem(text)
                .map_err(|e| format!("not a P-256 PKCS#8 key: {e}"))?
        } else if text.contains("-----BEGIN EC PRIVATE KEY-----") {
            p256::SecretKey::from_sec1_pem(text).map_err(|e| format!("not a P-256 EC key: {e}"))?
        } else {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|_| "neither PEM nor a base64url key".to_owned())?;
            p256::SecretKey::from_slice(&raw)
                .map_err(|_| "a raw key must be 32 bytes of a valid P-256 scalar".to_owned())?
        };
        Self::from_secret(secret).map_err(|e| e.to_string())
    }

    /// The key in `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(SETTING, format!("cannot read {}: {e}", path.display()))
        })?;
        Self::parse(&text)
            .map_err(|e| ConfigError::new(SETTING, format!("{}: {e}", path.display())))
    }

    /// The key kept beside an embedded hub's database (`<database>.vapid.pem`), made on first
    /// start so that browsers' subscriptions survive restarts.
    pub fn beside(database: &Path) -> Result<Self, ConfigError> {
        let mut path = database.to_path_buf().into_os_string();
        path.push(".vapid.pem");
        let path = PathBuf::from(path);
        if path.exists() {
            return Self::load(&path);
        }
        let key = Self::generate()?;
        crate::setting::write_private(&path, &key.pem).map_err(|e| {
            ConfigError::new(SETTING, format!("cannot write {}: {e}", path.display()))
        })?;
        tracing::info!(path = %path.display(), "generated a Web Push (VAPID) key");
        Ok(key)
    }

    /// The secret scalar, for tests that check a signature.
    pub fn secret(&self) -> &p256::SecretKey {
        &self.secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledge_tokens_name_one_notification_of_one_user_until_they_expire() {
        let key = VapidKey::generate().unwrap();
        let now = chrono::Utc::now();
        let token = key.ack_token(41, 7, now + ACK_TOKEN_LIFE);
        assert_eq!(key.check_ack_token(&token, now), Ok((41, 7)));
        assert_eq!(
            key.check_ack_token(&token, now + ACK_TOKEN_LIFE),
            Err("expired")
        );
        // Another notification or user in the same signature, or another hub's key: refused.
        let (_, mac) = token.rsplit_once('.').unwrap();
        let forged = format!("42.7.{}.{mac}", (now + ACK_TOKEN_LIFE).timestamp());
        assert_eq!(key.check_ack_token(&forged, now), Err("not signed by this hub"));
        let other = VapidKey::generate().unwrap();
        assert_eq!(other.check_ack_token(&token, now), Err("not signed by this hub"));
        assert_eq!(key.check_ack_token("nonsense", now), Err("not a token"));
    }
    use tickethub_actors::domain::UserId;
    use tickethub_actors::notification::Notification;
    use tickethub_actors::routing::{Channel, EventType};

    fn job(title: &str, message: &str, url: Option<String>, data: &str) -> DeliveryJob {
        DeliveryJob {
            id: 1,
            channel: Channel::Webpush,
            address: "7".into(),
            attempts: 0,
            notification: Notification {
                id: 41,
                user_id: UserId(3),
                seq: 9,
                notification_type: EventType::Custom("outage".into()),
                title: title.into(),
                message: message.into(),
                ticket: None,
                data: data.into(),
                action_url: url,
                is_read: false,
                read_at: None,
                created_at: chrono::Utc::now(),
            },
            recipient_name: "Ada".into(),
            recipients: Vec::new(),
            device: None,
            seen: false,
            suppressed: None,
            locale: None,
            time_zone: None,
            batch: Vec::new(),
        }
    }

    #[test]
    fn a_push_says_little_and_fits_every_provider() {
        let j = job(
            "Down",
            "The primary is down",
            Some("/tickets/5".into()),
            r#"{"priority":"critical"}"#,
        );
        assert_eq!(
            payload(&j, PushContent::Full),
            json!({"title": "Down", "body": "The primary is down", "url": "/tickets/5", "notification_id": 41, "seq": 9, "type": "outage", "priority": "CRITICAL"})
        );
        assert!(is_critical(&j));
        assert_eq!(
            payload(&j, PushContent::Minimal),
            json!({"title": "Down", "notification_id": 41, "seq": 9})
        );
        // Wide characters, escapes and a long link: still within the budget, the ids intact.
        let wide = "😀\"\\".repeat(2000);
        let j = job(&wide, &wide, Some(format!("/{}", "x".repeat(5000))), "{}");
        let p = payload(&j, PushContent::Full);
        assert!(p.to_string().len() <= MAX_BYTES, "{}", p.to_string().len());
        assert_eq!(
            (p["notification_id"].clone(), p["seq"].clone()),
            (json!(41), json!(9))
        );
        assert_eq!(p["priority"], "MEDIUM");
        assert!(!is_critical(&j));
    }
}
