//! WhatsApp Cloud API: `POST {api}/{phone_number_id}/messages` with a bearer token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use crate::delivery::templates::{Part, Templates};
use crate::delivery::{classify, http_client};
use crate::setting::ConfigError;

/// How WhatsApp messages are sent.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhatsappMode {
    /// An approved template with the title and message as its two body parameters.
    Template,
    /// A free-form text message (only inside a customer-service window).
    Text,
}

/// The WhatsApp settings: the Cloud API's token, phone-number id and templates.
#[derive(clap::Args, Clone, Debug)]
#[group(skip)]
pub struct Settings {
    /// WhatsApp Cloud API base URL.
    #[arg(
        long,
        env = "TICKETHUB_WHATSAPP_API_URL",
        default_value = "https://graph.facebook.com/v21.0"
    )]
    pub whatsapp_api_url: String,

    /// WhatsApp Cloud API access token; WhatsApp is off without it.
    #[arg(long, env = "TICKETHUB_WHATSAPP_TOKEN", hide_env_values = true)]
    pub whatsapp_token: Option<String>,

    /// WhatsApp Cloud API phone-number id that sends the messages.
    #[arg(long, env = "TICKETHUB_WHATSAPP_PHONE_NUMBER_ID")]
    pub whatsapp_phone_number_id: Option<String>,

    /// `template` (business-initiated messages need approved templates) or `text`.
    #[arg(
        long,
        env = "TICKETHUB_WHATSAPP_MODE",
        value_enum,
        default_value = "template"
    )]
    pub whatsapp_mode: WhatsappMode,

    /// Template language code used when a template names none.
    #[arg(long, env = "TICKETHUB_WHATSAPP_LANGUAGE", default_value = "en_US")]
    pub whatsapp_language: String,

    /// Template per notification type, comma-separated `type=name[:language]`; a type not
    /// listed uses a template named like the type.
    #[arg(long, env = "TICKETHUB_WHATSAPP_TEMPLATES", value_delimiter = ',')]
    pub whatsapp_templates: Vec<String>,
}

/// WhatsApp (Cloud API), to each user's number: on with a token and a phone-number id.
pub struct Whatsapp;

impl crate::channels::Plugin for Whatsapp {
    const NAME: &'static str = "whatsapp";
    const REACH: tickethub_actors::routing::Reach = tickethub_actors::routing::Reach::Personal;
    type Settings = Settings;

    fn validate(s: &Settings) -> Result<(), ConfigError> {
        if s.whatsapp_token.is_some() != s.whatsapp_phone_number_id.is_some() {
            return Err(ConfigError::new(
                "--whatsapp-phone-number-id (TICKETHUB_WHATSAPP_PHONE_NUMBER_ID)",
                "WhatsApp needs both a token and a phone-number id",
            ));
        }
        for t in &s.whatsapp_templates {
            if t.split_once('=')
                .is_none_or(|(k, v)| k.is_empty() || v.is_empty())
            {
                return Err(ConfigError::new(
                    "--whatsapp-templates (TICKETHUB_WHATSAPP_TEMPLATES)",
                    format!("`{t}` is not type=name[:language]"),
                ));
            }
        }
        Ok(())
    }

    fn transport(
        settings: &crate::channels::Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn tickethub_actors::ports::Transport>>, ConfigError> {
        let s = &settings.whatsapp;
        let (Some(token), Some(phone)) = (&s.whatsapp_token, &s.whatsapp_phone_number_id) else {
            return Ok(None);
        };
        Ok(Some(Arc::new(WhatsappTransport::new(
            settings,
            token,
            phone,
            ctx.templates.clone(),
            ctx.timeout,
        )?)))
    }

    fn check_address(address: &str) -> Result<String, String> {
        crate::channels::sms::e164(address)
    }
}


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
        settings: &crate::channels::Settings,
        token: &str,
        phone_number_id: &str,
        texts: Arc<Templates>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let templates = settings
            .whatsapp
            .whatsapp_templates
            .iter()
            .filter_map(|t| t.split_once('='))
            .map(|(kind, spec)| {
                let (name, lang) = spec
                    .split_once(':')
                    .unwrap_or((spec, settings.whatsapp.whatsapp_language.as_str()));
                (kind.to_owned(), (name.to_owned(), lang.to_owned()))
            })
            .collect();
        Ok(Self {
            client: http_client(timeout)?,
            url: format!(
                "{}/{}/messages",
                settings.whatsapp.whatsapp_api_url.trim_end_matches('/'),
                phone_number_id
            ),
            token: token.to_owned(),
            mode: settings.whatsapp.whatsapp_mode,
            language: settings.whatsapp.whatsapp_language.clone(),
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
        let (status, retry_after, text) =
            crate::delivery::outbound::post_json_bearer(&self.client, &self.url, &self.token, &body)
                .await?;
        classify(status, retry_after.as_deref(), &text)?;
        let id = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["messages"][0]["id"].as_str().map(str::to_owned));
        Ok(id)
    }
}
