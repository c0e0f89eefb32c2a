//! Message templates (minijinja): a subject, a text body, an HTML body, a WhatsApp text, an
//! SMS text, a voice call's words, a Slack message, a Mattermost post and a Teams card's text per notification type, with defaults
//! that read like the seeds' messages. A folder of files overrides any of them:
//! `<type>.subject.txt`, `<type>.txt`, `<type>.html`, `<type>.whatsapp.txt`, `<type>.sms.txt`,
//! `<type>.voice.txt`, `<type>.slack.txt`, `<type>.mattermost.txt`, `<type>.teams.txt`, or `default.*` for every
//! type.

use std::path::Path;

use minijinja::{context, Environment, Value};
use tickethub_actors::ports::DeliveryJob;

use crate::setting::ConfigError;

const DEFAULTS: [(&str, &str); 18] = [
    (
        "default.teams.txt",
        include_str!("../../templates/default.teams.txt"),
    ),
    (
        "address_verification.teams.txt",
        include_str!("../../templates/address_verification.teams.txt"),
    ),
    (
        "default.subject.txt",
        include_str!("../../templates/default.subject.txt"),
    ),
    ("default.txt", include_str!("../../templates/default.txt")),
    ("default.html", include_str!("../../templates/default.html")),
    (
        "default.whatsapp.txt",
        include_str!("../../templates/default.whatsapp.txt"),
    ),
    (
        "default.sms.txt",
        include_str!("../../templates/default.sms.txt"),
    ),
    (
        "default.slack.txt",
        include_str!("../../templates/default.slack.txt"),
    ),
    (
        "address_verification.slack.txt",
        include_str!("../../templates/address_verification.slack.txt"),
    ),
    (
        "default.mattermost.txt",
        include_str!("../../templates/default.mattermost.txt"),
    ),
    (
        "address_verification.mattermost.txt",
        include_str!("../../templates/address_verification.mattermost.txt"),
    ),
    (
        "default.voice.txt",
        include_str!("../../templates/default.voice.txt"),
    ),
    (
        "address_verification.voice.txt",
        include_str!("../../templates/address_verification.voice.txt"),
    ),
    // Verification codes go to addresses nobody has proved yet: they carry the hub's own words
    // and the code, never a name or text the person typed.
    (
        "address_verification.subject.txt",
        include_str!("../../templates/address_verification.subject.txt"),
    ),
    (
        "address_verification.txt",
        include_str!("../../templates/address_verification.txt"),
    ),
    (
        "address_verification.html",
        include_str!("../../templates/address_verification.html"),
    ),
    (
        "address_verification.sms.txt",
        include_str!("../../templates/address_verification.sms.txt"),
    ),
    (
        "address_verification.whatsapp.txt",
        include_str!("../../templates/address_verification.whatsapp.txt"),
    ),
];

/// The kinds of text a notification is rendered to.
#[derive(Clone, Copy, Debug)]
pub enum Part {
    /// The email subject.
    Subject,
    /// The plain-text email body.
    Text,
    /// The HTML email body.
    Html,
    /// A WhatsApp text message.
    Whatsapp,
    /// An SMS text.
    Sms,
    /// What a voice call reads out.
    Voice,
    /// A Slack message's text (mrkdwn).
    Slack,
    /// A Mattermost post's text (Markdown).
    Mattermost,
    /// A Microsoft Teams card's text (the Markdown Adaptive Cards take).
    Teams,
}

impl Part {
    fn suffix(self) -> &'static str {
        match self {
            Part::Subject => "subject.txt",
            Part::Text => "txt",
            Part::Html => "html",
            Part::Whatsapp => "whatsapp.txt",
            Part::Sms => "sms.txt",
            Part::Voice => "voice.txt",
            Part::Slack => "slack.txt",
            Part::Mattermost => "mattermost.txt",
            Part::Teams => "teams.txt",
        }
    }
}

/// What an email offers besides its notification: where a reply goes (a page's, when the
/// hub takes replies), the one-click link that switches the type's email off, and the hub.
#[derive(Debug, Default, Clone, Copy)]
pub struct Links<'a> {
    /// A page's reply address.
    pub reply_to: Option<&'a str>,
    /// The type's unsubscribe link.
    pub unsubscribe_url: Option<&'a str>,
    /// Where the person changes their notification settings.
    pub settings_url: Option<&'a str>,
}

/// The loaded templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The defaults, overridden by the files in `dir`.
    pub fn load(dir: Option<&Path>) -> Result<Self, ConfigError> {
        const SETTING: &str = "--templates-dir (TICKETHUB_TEMPLATES_DIR)";
        let mut env = Environment::new();
        for (name, source) in DEFAULTS {
            env.add_template(name, source)
                .map_err(|e| ConfigError::new(SETTING, format!("built-in {name}: {e}")))?;
        }
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|e| {
                ConfigError::new(SETTING, format!("cannot read {}: {e}", dir.display()))
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned)
                else {
                    continue;
                };
                if !(name.ends_with(".txt") || name.ends_with(".html")) {
                    continue;
                }
                let source = std::fs::read_to_string(&path).map_err(|e| {
                    ConfigError::new(SETTING, format!("cannot read {}: {e}", path.display()))
                })?;
                env.add_template_owned(name.clone(), source)
                    .map_err(|e| ConfigError::new(SETTING, format!("{name}: {e}")))?;
            }
        }
        Ok(Self { env })
    }

    /// Renders one part for a delivery: the type's own template, else the default.
    pub fn render(&self, part: Part, job: &DeliveryJob) -> Result<String, String> {
        self.render_with(part, job, &Links::default())
    }

    /// [`Templates::render`] with an email's links: the templates get them as `reply_to`,
    /// `unsubscribe_url` and `settings_url`.
    pub fn render_with(
        &self,
        part: Part,
        job: &DeliveryJob,
        links: &Links<'_>,
    ) -> Result<String, String> {
        let kind = job.notification.notification_type.as_str();
        let own = format!("{kind}.{}", part.suffix());
        let template = self
            .env
            .get_template(&own)
            .or_else(|_| self.env.get_template(&format!("default.{}", part.suffix())))
            .map_err(|e| e.to_string())?;
        let n = &job.notification;
        let ticket = n.ticket.as_ref().map(|t| {
            context! {
                id => t.id.0,
                key => t.key.clone(),
                title => t.title.clone(),
                priority => t.priority.as_str(),
                priority_display => t.priority.display(),
                category => t.category.as_str(),
                status => t.status.as_str(),
                status_display => t.status.display(),
                created_by => t.created_by.clone(),
                project_name => t.project_name.clone(),
            }
        });
        let data: Value = serde_json::from_str::<serde_json::Value>(&n.data)
            .map(|v| Value::from(minijinja::value::Serde(v)))
            .unwrap_or_default();
        let out = template
            .render(context! {
                title => n.title.clone(),
                message => n.message.clone(),
                notification_type => kind,
                recipient_name => job.recipient_name.clone(),
                ticket => ticket,
                action_url => n.action_url.clone(),
                data => data,
                seq => n.seq,
                // A page's code, for replies (`ACK 4F2K`); none for other notifications.
                ack_code => tickethub_actors::reply::is_page(n).then(|| tickethub_actors::reply::code(n.seq)),
                reply_to => links.reply_to,
                unsubscribe_url => links.unsubscribe_url,
                settings_url => links.settings_url,
            })
            .map_err(|e| e.to_string())?;
        Ok(match part {
            Part::Subject => out.lines().next().unwrap_or_default().trim().to_owned(),
            _ => out,
        })
    }
}
