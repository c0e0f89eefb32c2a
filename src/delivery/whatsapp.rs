//! WhatsApp Cloud API: `POST {api}/{phone_number_id}/messages` with a bearer token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use super::templates::{Part, Templates};
use super::{classify, http_client, network_error};
use crate::config::{ConfigError, ServeConfig, WhatsappMode};

/// Sends notifications as WhatsApp template or text messages.
pub struct WhatsappTransport {
    client: reqwest::Client,
    url: String,
    token: String,
    mode: WhatsappMode,
    language: String,
    templates: HashMap<String, (String, String)>,
    texts: Arc<Templates>,
}

impl WhatsappTransport {
    /// A transport for one sending phone number.
    pub fn new(
        config: &ServeConfig,
        token: &str,
        phone_number_id: &str,
        texts: Arc<Templates>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let templates = config
            .whatsapp_templates
            .iter()
            .filter_map(|t| t.split_once('='))
            .map(|(kind, spec)| {
                let (name, lang) = spec
                    .split_once(':')
                    .unwrap_or((spec, config.whatsapp_language.as_str()));
                (kind.to_owned(), (name.to_owned(), lang.to_owned()))
            })
            .collect();
        Ok(Self {
            client: http_client(timeout)?,
            url: format!(
                "{}/{}/messages",
                config.whatsapp_api_url.trim_end_matches('/'),
                phone_number_id
            ),
            token: token.to_owned(),
            mode: config.whatsapp_mode,
            language: config.whatsapp_language.clone(),
            templates,
            texts,
        })
    }

    fn body(&self, job: &DeliveryJob) -> Result<Value, TransportError> {
        let to = job.address.trim_start_matches('+');
        let n = &job.notification;
        Ok(match self.mode {
            WhatsappMode::Template => {
                let kind = n.notification_type.as_str();
                let (name, language) = self
                    .templates
                    .get(kind)
                    .cloned()
                    .unwrap_or_else(|| (kind.to_owned(), self.language.clone()));
                json!({
                    "messaging_product": "whatsapp",
                    "to": to,
                    "type": "template",
                    "template": {
                        "name": name,
                        "language": { "code": language },
                        "components": [{
                            "type": "body",
                            "parameters": [
                                { "type": "text", "text": n.title },
                                { "type": "text", "text": n.message },
                            ],
                        }],
                    },
                })
            }
            WhatsappMode::Text => json!({
                "messaging_product": "whatsapp",
                "to": to,
                "type": "text",
                "text": {
                    "preview_url": false,
                    "body": self
                        .texts
                        .render(Part::Whatsapp, job)
                        .map_err(|e| TransportError::Permanent(format!("template: {e}")))?,
                },
            }),
        })
    }
}

#[async_trait]
impl Transport for WhatsappTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
        let body = self.body(job)?;
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(network_error)?;
        let status = response.status();
        let retry_after = super::outbound::header(&response, reqwest::header::RETRY_AFTER);
        let text = super::outbound::answer_text(response).await;
        classify(status, retry_after.as_deref(), &text)?;
        let id = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["messages"][0]["id"].as_str().map(str::to_owned));
        Ok(id)
    }
}
