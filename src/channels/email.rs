//! Email through lettre: SMTP from a URL, or `.eml` files in a folder when no server is set.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use crate::delivery::templates::{Part, Templates};
use crate::setting::{redact_url, ConfigError};

pub mod reply_address;
pub mod unsubscribe;
pub use reply_address::ReplyKey;
pub use unsubscribe::UnsubscribeKey;

/// The email settings: SMTP, or a folder of `.eml` files.
#[derive(clap::Args, Clone, Debug)]
#[group(skip)]
pub struct Settings {
    /// SMTP server for email, e.g. `smtp://user:pass@host:587?tls=required`. Without it, each
    /// email is written as an `.eml` file into `--mail-outbox-dir`.
    #[arg(long, env = "TICKETHUB_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// PEM file of a certificate authority to trust for the SMTP server's certificate (a
    /// relay with a private CA), besides the public roots. Needs TLS in `--smtp-url`
    /// (`smtps://` or `?tls=required|opportunistic`).
    #[arg(long, env = "TICKETHUB_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<PathBuf>,

    /// The sender of emails.
    #[arg(
        long,
        env = "TICKETHUB_SMTP_FROM",
        default_value = "tickethub <noreply@tickethub.local>"
    )]
    pub smtp_from: String,

    /// Folder that receives emails as `.eml` files when no SMTP server is configured.
    #[arg(long, env = "TICKETHUB_MAIL_OUTBOX_DIR", default_value = "mail-outbox")]
    pub mail_outbox_dir: PathBuf,

    /// Where the hub's own SMTP listener for replies to pages listens, e.g. `0.0.0.0:2525`
    /// (plain SMTP, behind the reply domain's MX). Needs `--inbound-email-domain`.
    #[arg(long, env = "TICKETHUB_INBOUND_SMTP_BIND", requires = "inbound_email_domain")]
    pub inbound_smtp_bind: Option<std::net::SocketAddr>,

    /// The domain replies to pages go to: a page's email carries
    /// `Reply-To: ack+<token>@<domain>`, whose mail reaches `--inbound-smtp-bind`.
    #[arg(long, env = "TICKETHUB_INBOUND_EMAIL_DOMAIN", requires = "inbound_smtp_bind")]
    pub inbound_email_domain: Option<String>,

    /// The largest reply the SMTP listener takes, in bytes; larger ones are refused (552).
    #[arg(long, env = "TICKETHUB_INBOUND_SMTP_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub inbound_smtp_max_bytes: usize,
}

/// A cheap shape check; delivery finds out the rest.
pub fn is_plausible_email(email: &str) -> bool {
    let mut parts = email.splitn(2, '@');
    match (parts.next(), parts.next()) {
        (Some(local), Some(domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
        }
        _ => false,
    }
}

/// Email, to each user's address: always on (SMTP, or `.eml` files in the outbox folder).
pub struct Email;

impl crate::channels::Plugin for Email {
    const NAME: &'static str = "email";
    const REACH: tickethub_actors::routing::Reach = tickethub_actors::routing::Reach::Personal;
    type Settings = Settings;

    fn transport(
        settings: &crate::channels::Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn tickethub_actors::ports::Transport>>, ConfigError> {
        Ok(Some(Arc::new(
            EmailTransport::new(settings, ctx.templates.clone(), ctx.timeout)?
                .replies_to(ctx.replies.clone())
                .unsubscribes(ctx.unsubscribe.clone(), ctx.public_url.as_deref()),
        )))
    }

    fn validate(settings: &Settings) -> Result<(), ConfigError> {
        if let Some(domain) = &settings.inbound_email_domain {
            if !is_plausible_email(&format!("ack@{domain}")) {
                return Err(ConfigError::new(
                    "--inbound-email-domain (TICKETHUB_INBOUND_EMAIL_DOMAIN)",
                    format!("`{domain}` is not a domain"),
                ));
            }
        }
        Ok(())
    }

    fn check_address(address: &str) -> Result<String, String> {
        let address = address.trim();
        if is_plausible_email(address) {
            Ok(address.to_owned())
        } else {
            Err("Enter a valid email address.".into())
        }
    }
}


enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Folder(AsyncFileTransport<Tokio1Executor>),
}

/// Sends notifications as emails with a plain-text and an HTML part.
pub struct EmailTransport {
    mailer: Mailer,
    from: Mailbox,
    templates: Arc<Templates>,
    /// Signs the reply address of pages, when the hub takes replies.
    replies: Option<Arc<ReplyKey>>,
    /// Signs the one-click unsubscribe links, and the hub's address they are on.
    unsubscribe: Option<(Arc<UnsubscribeKey>, String)>,
}

/// How long a page's reply address acts.
pub const REPLY_FOR: chrono::TimeDelta = chrono::TimeDelta::days(7);

impl EmailTransport {
    /// SMTP if `--smtp-url` is set, else the outbox folder (created if missing).
    pub fn new(
        settings: &crate::channels::Settings,
        templates: Arc<Templates>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let from: Mailbox = settings.email.smtp_from.parse().map_err(|e| {
            ConfigError::new(
                "--smtp-from (TICKETHUB_SMTP_FROM)",
                format!("not an address: {e}"),
            )
        })?;
        let mailer = match &settings.email.smtp_url {
            Some(url) => {
                let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| {
                        ConfigError::new(
                            "--smtp-url (TICKETHUB_SMTP_URL)",
                            format!("`{}`: {e}", redact_url(url)),
                        )
                    })?
                    .timeout(Some(timeout));
                let builder = match &settings.email.smtp_ca_file {
                    Some(file) => builder.tls(tls_with_ca(url, file)?),
                    None => builder,
                };
                Mailer::Smtp(builder.build())
            }
            None => {
                std::fs::create_dir_all(&settings.email.mail_outbox_dir).map_err(|e| {
                    ConfigError::new(
                        "--mail-outbox-dir (TICKETHUB_MAIL_OUTBOX_DIR)",
                        format!("cannot create {}: {e}", settings.email.mail_outbox_dir.display()),
                    )
                })?;
                Mailer::Folder(AsyncFileTransport::<Tokio1Executor>::new(
                    &settings.email.mail_outbox_dir,
                ))
            }
        };
        Ok(Self {
            mailer,
            from,
            templates,
            replies: None,
            unsubscribe: None,
        })
    }

    /// Pages go out with a reply address signed by `key` (none without one).
    pub fn replies_to(mut self, key: Option<Arc<ReplyKey>>) -> Self {
        self.replies = key;
        self
    }

    /// Notification emails carry a one-click unsubscribe link (RFC 8058) signed by `key`, on
    /// the hub at `public` (none without both).
    pub fn unsubscribes(mut self, key: Option<Arc<UnsubscribeKey>>, public: Option<&str>) -> Self {
        self.unsubscribe = key.zip(public.map(|p| p.trim_end_matches('/').to_owned()));
        self
    }

    /// The unsubscribe link of a notification's email, and the hub's address: none for a
    /// page (whoever is on call does not switch pages off from an email) or a verification
    /// code.
    fn unsubscribe_link(&self, n: &tickethub_actors::notification::Notification) -> Option<(String, String)> {
        let (key, public) = self.unsubscribe.as_ref()?;
        let kind = n.notification_type.as_str();
        if tickethub_actors::reply::is_page(n) || kind == "address_verification" || n.user_id.0 <= 0 {
            return None;
        }
        let token = key.token(n.user_id.0, kind);
        Some((
            format!("{public}{}?token={token}", unsubscribe::PATH),
            format!("{public}/"),
        ))
    }
}

/// The TLS mode `url` asks for, trusting the CA in `file` besides the public roots.
fn tls_with_ca(url: &str, file: &std::path::Path) -> Result<Tls, ConfigError> {
    let setting = "--smtp-ca-file (TICKETHUB_SMTP_CA_FILE)";
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        ConfigError::new(
            "--smtp-url (TICKETHUB_SMTP_URL)",
            format!("`{}`: {e}", redact_url(url)),
        )
    })?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let pem = std::fs::read(file)
        .map_err(|e| ConfigError::new(setting, format!("cannot read {}: {e}", file.display())))?;
    let ca = Certificate::from_pem(&pem)
        .map_err(|e| ConfigError::new(setting, format!("{}: {e}", file.display())))?;
    let params = TlsParameters::builder(host)
        .add_root_certificate(ca)
        .build_rustls()
        .map_err(|e| ConfigError::new(setting, e.to_string()))?;
    let mode = parsed
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    match (parsed.scheme(), mode.as_deref()) {
        ("smtps", _) => Ok(Tls::Wrapper(params)),
        ("smtp", Some("required")) => Ok(Tls::Required(params)),
        ("smtp", Some("opportunistic")) => Ok(Tls::Opportunistic(params)),
        _ => Err(ConfigError::new(
            setting,
            "the SMTP URL asks for no TLS: use `smtps://` or `?tls=required`",
        )),
    }
}

#[async_trait]
impl Transport for EmailTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
        let to: Mailbox = job.address.parse().map_err(|e| {
            TransportError::Permanent(format!("bad address `{}`: {e}", job.address))
        })?;
        let n = &job.notification;
        let reply_to = match &self.replies {
            Some(key) if tickethub_actors::reply::is_page(n) => {
                let expires = chrono::Utc::now() + REPLY_FOR;
                Some(key.address(n.id, n.user_id.0, expires))
            }
            _ => None,
        };
        let unsubscribe = self.unsubscribe_link(n);
        let links = crate::delivery::templates::Links {
            reply_to: reply_to.as_deref(),
            unsubscribe_url: unsubscribe.as_ref().map(|(u, _)| u.as_str()),
            settings_url: unsubscribe.as_ref().map(|(_, s)| s.as_str()),
            hub_url: self.unsubscribe.as_ref().map(|(_, p)| p.as_str()),
        };
        let render = |part| {
            self.templates
                .render_with(part, job, &links)
                .map_err(|e| TransportError::Permanent(format!("template: {e}")))
        };
        // Bounces come back to the hub's listener, signed for this delivery.
        let return_path = match &self.replies {
            Some(key) if job.id > 0 => {
                let expires = chrono::Utc::now() + reply_address::BOUNCES_FOR;
                let address = key.bounce_address(job.id, n.user_id.0, expires);
                Some(address.parse::<lettre::Address>().map_err(|e| {
                    TransportError::Permanent(format!("bad return path `{address}`: {e}"))
                })?)
            }
            _ => None,
        };
        let recipient = to.email.clone();
        let mut message = Message::builder().from(self.from.clone()).to(to);
        if let Some(path) = return_path {
            let envelope = lettre::address::Envelope::new(Some(path), vec![recipient])
                .map_err(|e| TransportError::Permanent(format!("cannot build the envelope: {e}")))?;
            message = message.envelope(envelope);
        }
        if let Some((url, _)) = &unsubscribe {
            use lettre::message::header::{HeaderName, HeaderValue};
            message = message
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{url}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
        }
        // A digest sent again (its node died before it was recorded) is the same message.
        if n.notification_type.as_str() == crate::delivery::templates::DIGEST {
            let host = self.from.email.domain().to_owned();
            message = message.message_id(Some(format!("<digest.{}.{}@{host}>", n.user_id.0, n.id)));
        }
        if let Some(address) = &reply_to {
            let mailbox = address.parse().map_err(|e| {
                TransportError::Permanent(format!("bad reply address `{address}`: {e}"))
            })?;
            message = message.reply_to(mailbox);
        }
        let message = message
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
