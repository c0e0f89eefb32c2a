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

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use crate::delivery::classify;
use crate::delivery::outbound::{self, check_literal, request_error};
use crate::setting::ConfigError;
use crate::wire;

/// The webhook settings: where every notification is posted, and how it is signed.
#[derive(clap::Args, Clone, Debug)]
#[group(skip)]
pub struct Settings {
    /// URLs that receive every notification as a signed POST, comma-separated.
    #[arg(long, env = "TICKETHUB_WEBHOOK_URLS", value_delimiter = ',')]
    pub webhook_urls: Vec<String>,

    /// Standard Webhooks signing secret (`whsec_` + base64).
    #[arg(long, env = "TICKETHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Allow webhook URLs (the channel's and event webhooks') that resolve to private,
    /// loopback or link-local addresses.
    #[arg(long, env = "TICKETHUB_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,

    /// Turn an event webhook off once every post to it has failed for this many days (0: at
    /// its first failure).
    #[arg(long, env = "TICKETHUB_WEBHOOK_DISABLE_AFTER_DAYS", default_value_t = 5)]
    pub webhook_disable_after_days: u32,
}

/// Webhooks: every notification posted, signed (Standard Webhooks), to each of the
/// deployment's URLs.
pub struct Webhook;

impl crate::channels::Plugin for Webhook {
    const NAME: &'static str = "webhook";
    const REACH: tickethub_actors::routing::Reach = tickethub_actors::routing::Reach::Deployment;
    type Settings = Settings;

    fn validate(s: &Settings) -> Result<(), ConfigError> {
        for url in &s.webhook_urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::new(
                    "--webhook-urls (TICKETHUB_WEBHOOK_URLS)",
                    format!("`{url}` is not an http(s) URL"),
                ));
            }
        }
        if !s.webhook_urls.is_empty() {
            let ok = s.webhook_secret.as_deref().is_some_and(|s| {
                use base64::Engine;
                s.strip_prefix("whsec_").is_some_and(|b| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .is_ok_and(|k| k.len() >= 16)
                })
            });
            if !ok {
                return Err(ConfigError::new(
                    "--webhook-secret (TICKETHUB_WEBHOOK_SECRET)",
                    "webhooks need a secret of the form whsec_<base64 of at least 16 bytes>",
                ));
            }
        }
        Ok(())
    }

    fn transport(
        settings: &crate::channels::Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn tickethub_actors::ports::Transport>>, ConfigError> {
        if settings.webhook.webhook_urls.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(WebhookTransport::new(settings, ctx.timeout)?)))
    }

    fn destinations(s: &Settings) -> Vec<String> {
        s.webhook_urls.clone()
    }
}


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
    pub fn new(settings: &crate::channels::Settings, timeout: Duration) -> Result<Self, ConfigError> {
        const SETTING: &str = "--webhook-secret (TICKETHUB_WEBHOOK_SECRET)";
        let secret = settings
            .webhook
            .webhook_secret
            .as_deref()
            .and_then(|s| s.strip_prefix("whsec_"))
            .ok_or_else(|| ConfigError::new(SETTING, "is required with webhook URLs"))?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret)
            .map_err(|e| ConfigError::new(SETTING, format!("not base64: {e}")))?;
        let client = outbound::client(timeout, !settings.webhook.webhook_allow_private).map_err(|e| {
            ConfigError::new(
                "--delivery-timeout (TICKETHUB_DELIVERY_TIMEOUT)",
                e.to_string(),
            )
        })?;
        Ok(Self {
            client,
            key,
            allow_private: settings.webhook.webhook_allow_private,
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
