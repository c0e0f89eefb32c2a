//! Webhooks signed as the Standard Webhooks specification describes.
//!
//! A commit's event reaches each URL once, however many users it notifies: `data` is the first
//! recipient's notification, and `data.recipients` lists everyone it was for.
//!
//! Each delivery is a `POST` of `{"type", "timestamp", "data"}` with the headers `webhook-id`
//! (stable across retries, so receivers can drop duplicates), `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
//! base64-decoded part of the `whsec_` secret. Destinations on private, loopback, link-local
//! or other non-public addresses are refused unless explicitly allowed: checked as the name
//! resolves for the connection itself (`outbound`), so that no second resolution can differ.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use super::classify;
use super::outbound::{self, check_literal, request_error};
use crate::config::{ConfigError, ServeConfig};
use crate::wire;

/// Posts notifications to webhook URLs.
pub struct WebhookTransport {
    client: reqwest::Client,
    key: Vec<u8>,
    allow_private: bool,
}

/// Whether an address is on the public internet (see [`outbound::is_public`]).
pub use outbound::is_public;

impl WebhookTransport {
    /// A transport with the configured secret.
    pub fn new(config: &ServeConfig, timeout: Duration) -> Result<Self, ConfigError> {
        const SETTING: &str = "--webhook-secret (TICKETHUB_WEBHOOK_SECRET)";
        let secret = config
            .webhook_secret
            .as_deref()
            .and_then(|s| s.strip_prefix("whsec_"))
            .ok_or_else(|| ConfigError::new(SETTING, "is required with webhook URLs"))?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret)
            .map_err(|e| ConfigError::new(SETTING, format!("not base64: {e}")))?;
        let client = outbound::client(timeout, !config.webhook_allow_private).map_err(|e| {
            ConfigError::new(
                "--delivery-timeout (TICKETHUB_DELIVERY_TIMEOUT)",
                e.to_string(),
            )
        })?;
        Ok(Self {
            client,
            key,
            allow_private: config.webhook_allow_private,
        })
    }
}

/// The Standard Webhooks signature of a message.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[async_trait]
impl Transport for WebhookTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
        let url: reqwest::Url = job
            .address
            .parse()
            .map_err(|e| TransportError::Permanent(format!("bad URL `{}`: {e}", job.address)))?;
        if !self.allow_private {
            check_literal(&url)?;
        }
        let n = &job.notification;
        let mut data = wire::notification_frame(n, false);
        if let Some(obj) = data.as_object_mut() {
            obj.remove("type");
            obj.remove("replayed");
            obj.insert("recipient".into(), n.user_id.0.into());
            obj.insert("recipient_name".into(), job.recipient_name.clone().into());
            obj.insert(
                "recipients".into(),
                job.recipients
                    .iter()
                    .map(|r| {
                        json!({
                            "user_id": r.user_id.0,
                            "username": r.username,
                            "display_name": r.display_name,
                        })
                    })
                    .collect(),
            );
        }
        let body = json!({
            "type": n.notification_type.as_str(),
            "timestamp": crate::wire::timestamp(n.created_at),
            "data": data,
        })
        .to_string();
        let id = format!("msg_{}", job.id);
        let timestamp = chrono::Utc::now().timestamp();
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sign(&self.key, &id, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        let retry_after = outbound::header(&response, reqwest::header::RETRY_AFTER);
        let text = outbound::answer_text(response).await;
        classify(status, retry_after.as_deref(), &text)?;
        Ok(Some(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        // The example from the Standard Webhooks specification.
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
