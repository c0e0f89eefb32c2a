//! Email through lettre: SMTP from a URL, or `.eml` files in a folder when no server is set.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use super::templates::{Part, Templates};
use crate::config::{redact_url, ConfigError, ServeConfig};

enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Folder(AsyncFileTransport<Tokio1Executor>),
}

/// Sends notifications as emails with a plain-text and an HTML part.
pub struct EmailTransport {
    mailer: Mailer,
    from: Mailbox,
    templates: Arc<Templates>,
}

impl EmailTransport {
    /// SMTP if `--smtp-url` is set, else the outbox folder (created if missing).
    pub fn new(
        config: &ServeConfig,
        templates: Arc<Templates>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let from: Mailbox = config.smtp_from.parse().map_err(|e| {
            ConfigError::new(
                "--smtp-from (TICKETHUB_SMTP_FROM)",
                format!("not an address: {e}"),
            )
        })?;
        let mailer = match &config.smtp_url {
            Some(url) => Mailer::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| {
                        ConfigError::new(
                            "--smtp-url (TICKETHUB_SMTP_URL)",
                            format!("`{}`: {e}", redact_url(url)),
                        )
                    })?
                    .timeout(Some(timeout))
                    .build(),
            ),
            None => {
                std::fs::create_dir_all(&config.mail_outbox_dir).map_err(|e| {
                    ConfigError::new(
                        "--mail-outbox-dir (TICKETHUB_MAIL_OUTBOX_DIR)",
                        format!("cannot create {}: {e}", config.mail_outbox_dir.display()),
                    )
                })?;
                Mailer::Folder(AsyncFileTransport::<Tokio1Executor>::new(
                    &config.mail_outbox_dir,
                ))
            }
        };
        Ok(Self {
            mailer,
            from,
            templates,
        })
    }
}

#[async_trait]
impl Transport for EmailTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
        let to: Mailbox = job.address.parse().map_err(|e| {
            TransportError::Permanent(format!("bad address `{}`: {e}", job.address))
        })?;
        let render = |part| {
            self.templates
                .render(part, job)
                .map_err(|e| TransportError::Permanent(format!("template: {e}")))
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(render(Part::Subject)?)
            .multipart(MultiPart::alternative_plain_html(
                render(Part::Text)?,
                render(Part::Html)?,
            ))
            .map_err(|e| TransportError::Permanent(format!("cannot build the email: {e}")))?;
        match &self.mailer {
            Mailer::Smtp(smtp) => match smtp.send(message).await {
                Ok(response) => Ok(response.message().next().map(str::to_owned)),
                Err(e) if e.is_permanent() => Err(TransportError::Permanent(e.to_string())),
                Err(e) => Err(TransportError::Retryable {
                    message: e.to_string(),
                    retry_after: None,
                }),
            },
            Mailer::Folder(folder) => {
                folder
                    .send(message)
                    .await
                    .map(Some)
                    .map_err(|e| TransportError::Retryable {
                        message: e.to_string(),
                        retry_after: None,
                    })
            }
        }
    }
}
