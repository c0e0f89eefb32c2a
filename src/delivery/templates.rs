//! Message templates (minijinja): a subject, a text body, an HTML body, a WhatsApp text, an
//! SMS text, a voice call's words, a Slack message, a Mattermost post and a Teams card's text per notification type, with defaults
//! that read like the seeds' messages. A folder of files overrides any of them:
//! `<type>.subject.txt`, `<type>.txt`, `<type>.html`, `<type>.whatsapp.txt`, `<type>.sms.txt`,
//! `<type>.voice.txt`, `<type>.slack.txt`, `<type>.mattermost.txt`, `<type>.teams.txt`, or `default.*` for every
//! type.
//!
//! Each is looked up in the recipient's language first (`locale`, a BCP 47 tag):
//! `<type>.<locale>.<part>`, then `<type>.<language>.<part>`, then `<type>.<part>`, and the same
//! for `default`: `ticket_assigned.de-CH.txt`, `ticket_assigned.de.txt`, `ticket_assigned.txt`,
//! `default.de-CH.txt`, `default.de.txt`, `default.txt`. The hub's own templates are in English
//! and German (`de`). Times (`created_at`) are written in the recipient's time zone, the way
//! their language writes them.
//!
//! A batch (several updates about one ticket in one message) is rendered as the type `batch`:
//! its `title` says how many (`3 updates on WEB-42`), its `message` joins theirs, and
//! `updates` lists each (`title`, `message`, `said`, `notification_type`, `created_at`),
//! oldest first; `updates` is empty otherwise.
//!
//! A digest is rendered as the type `digest`: `count` notifications, `groups` of them by
//! ticket (`key`, `title`, `status_display`, `url`, `updates`), in order.

use std::path::Path;

use minijinja::{context, Environment, Value};
use tickethub_actors::ports::DeliveryJob;

use crate::setting::ConfigError;

const DEFAULTS: [(&str, &str); 43] = [
    // A digest: a person's unread notifications by ticket.
    (
        "digest.subject.txt",
        include_str!("../../templates/digest.subject.txt"),
    ),
    ("digest.txt", include_str!("../../templates/digest.txt")),
    ("digest.html", include_str!("../../templates/digest.html")),
    (
        "digest.de.subject.txt",
        include_str!("../../templates/digest.de.subject.txt"),
    ),
    (
        "digest.de.txt",
        include_str!("../../templates/digest.de.txt"),
    ),
    (
        "digest.de.html",
        include_str!("../../templates/digest.de.html"),
    ),
    // German: the same parts, with the hub's words for each ticket event.
    ("de.words", include_str!("../../templates/de.words")),
    (
        "default.de.subject.txt",
        include_str!("../../templates/default.de.subject.txt"),
    ),
    (
        "default.de.txt",
        include_str!("../../templates/default.de.txt"),
    ),
    (
        "default.de.html",
        include_str!("../../templates/default.de.html"),
    ),
    (
        "default.de.whatsapp.txt",
        include_str!("../../templates/default.de.whatsapp.txt"),
    ),
    (
        "default.de.sms.txt",
        include_str!("../../templates/default.de.sms.txt"),
    ),
    (
        "default.de.slack.txt",
        include_str!("../../templates/default.de.slack.txt"),
    ),
    (
        "default.de.mattermost.txt",
        include_str!("../../templates/default.de.mattermost.txt"),
    ),
    (
        "default.de.teams.txt",
        include_str!("../../templates/default.de.teams.txt"),
    ),
    (
        "default.de.voice.txt",
        include_str!("../../templates/default.de.voice.txt"),
    ),
    (
        "address_verification.de.subject.txt",
        include_str!("../../templates/address_verification.de.subject.txt"),
    ),
    (
        "address_verification.de.txt",
        include_str!("../../templates/address_verification.de.txt"),
    ),
    (
        "address_verification.de.html",
        include_str!("../../templates/address_verification.de.html"),
    ),
    (
        "address_verification.de.sms.txt",
        include_str!("../../templates/address_verification.de.sms.txt"),
    ),
    (
        "address_verification.de.whatsapp.txt",
        include_str!("../../templates/address_verification.de.sms.txt"),
    ),
    (
        "address_verification.de.slack.txt",
        include_str!("../../templates/address_verification.de.sms.txt"),
    ),
    (
        "address_verification.de.mattermost.txt",
        include_str!("../../templates/address_verification.de.sms.txt"),
    ),
    (
        "address_verification.de.teams.txt",
        include_str!("../../templates/address_verification.de.sms.txt"),
    ),
    (
        "address_verification.de.voice.txt",
        include_str!("../../templates/address_verification.de.voice.txt"),
    ),
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
    /// The hub's public address, without a trailing `/` (a digest links each ticket on it).
    pub hub_url: Option<&'a str>,
}

/// The type of a digest's email.
pub const DIGEST: &str = "digest";

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
        let locale = job.locale.as_deref().and_then(|l| locale_tag(l).ok());
        // A digest is looked up as `digest`, a batch as `batch` (then `default`): their
        // notifications are listed.
        let digest = job.notification.notification_type.as_str() == DIGEST;
        let batched = !job.batch.is_empty() && !digest;
        let kind = match (digest, batched) {
            (true, _) => DIGEST,
            (false, true) => "batch",
            (false, false) => job.notification.notification_type.as_str(),
        };
        let template = names(kind, locale.as_deref(), part)
            .iter()
            .find_map(|name| self.env.get_template(name).ok())
            .ok_or_else(|| format!("no template for {kind}.{}", part.suffix()))?;
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
        let key = n.ticket.as_ref().map(|t| t.key.as_str());
        let ticket_url = |key: &str| links.hub_url.map(|hub| format!("{hub}/#/tickets/{key}"));
        let update = |u: &tickethub_actors::notification::Notification| {
            let key = u.ticket.as_ref().map(|t| t.key.as_str());
            let ticket = u.ticket.as_ref().map(|t| {
                context! {
                    key => t.key.clone(),
                    title => t.title.clone(),
                    priority => t.priority.as_str(),
                    status => t.status.as_str(),
                }
            });
            context! {
                ticket => ticket,
                title => u.title.clone(),
                message => u.message.clone(),
                said => said(&u.message, key),
                notification_type => u.notification_type.as_str(),
                created_at => local_time(u.created_at, locale.as_deref(), job.time_zone.as_deref()),
            }
        };
        let items: Vec<&tickethub_actors::notification::Notification> = match (digest, batched) {
            (true, _) => job.batch.iter().collect(),
            (false, true) => std::iter::once(n).chain(&job.batch).collect(),
            (false, false) => Vec::new(),
        };
        let updates: Vec<Value> = items.iter().map(|u| update(u)).collect();
        // A digest's notifications by ticket, in the order their tickets first come.
        let mut groups: Vec<(
            Option<&tickethub_actors::ticket_domain::TicketSummary>,
            Vec<Value>,
        )> = Vec::new();
        for u in &items {
            let id = u.ticket.as_ref().map(|t| t.id);
            match groups.iter_mut().find(|(t, _)| t.map(|t| t.id) == id) {
                Some((_, list)) => list.push(update(u)),
                None => groups.push((u.ticket.as_ref(), vec![update(u)])),
            }
        }
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|(t, updates)| {
                context! {
                    key => t.map(|t| t.key.clone()),
                    title => t.map(|t| t.title.clone()),
                    status_display => t.map(|t| t.status.display()),
                    url => t.and_then(|t| ticket_url(&t.key)),
                    updates => updates,
                }
            })
            .collect();
        let (title, message) = match batched {
            true => (
                batch_title(updates.len(), key.unwrap_or_default(), locale.as_deref()),
                items
                    .iter()
                    .map(|u| u.message.as_str())
                    .collect::<Vec<_>>()
                    .join(" · "),
            ),
            false => (n.title.clone(), n.message.clone()),
        };
        let out = template
            .render(context! {
                title => title,
                message => message,
                updates => updates,
                groups => groups,
                count => items.len(),
                hub_url => links.hub_url,
                notification_type => n.notification_type.as_str(),
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
                locale => locale.clone(),
                created_at => local_time(n.created_at, locale.as_deref(), job.time_zone.as_deref()),
                // What follows the ticket's key in the message: the title, a rejection's
                // reason, a comment's words.
                said => said(&n.message, n.ticket.as_ref().map(|t| t.key.as_str())),
            })
            .map_err(|e| e.to_string())?;
        Ok(match part {
            Part::Subject => out.lines().next().unwrap_or_default().trim().to_owned(),
            _ => out,
        })
    }
}

/// A batch's title in the recipient's language: `3 updates on WEB-42`.
fn batch_title(count: usize, key: &str, locale: Option<&str>) -> String {
    match locale.map(|l| l.split('-').next().unwrap_or(l)) {
        Some("de") => format!("{count} Neuigkeiten zu {key}"),
        _ => format!("{count} updates on {key}"),
    }
}

/// The names a part is looked up by, first found first: the type's in the locale, in its
/// language, then without one; then the same of `default`.
fn names(kind: &str, locale: Option<&str>, part: Part) -> Vec<String> {
    let suffix = part.suffix();
    let mut tags: Vec<&str> = Vec::new();
    if let Some(locale) = locale {
        tags.push(locale);
        if let Some((language, _)) = locale.split_once('-') {
            tags.push(language);
        }
    }
    let mut names = Vec::new();
    for base in [kind, "default"] {
        for tag in &tags {
            names.push(format!("{base}.{tag}.{suffix}"));
        }
        names.push(format!("{base}.{suffix}"));
    }
    names
}

/// A BCP 47 language tag as the hub keeps it: a language of two or three letters in lower
/// case, then a script (four letters, `Latn`) and a region (two letters in upper case, or
/// three digits) if given: `de`, `de-CH`, `zh-Hant-TW`, `es-419`. `_` is taken for `-`.
pub fn locale_tag(text: &str) -> Result<String, String> {
    let bad = || format!("`{text}` is not a language tag like `de` or `pt-BR`.");
    let text = text.trim().replace('_', "-");
    if text.is_empty() || text.len() > 35 {
        return Err(bad());
    }
    let mut parts = text.split('-');
    let language = parts.next().unwrap_or_default();
    if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(bad());
    }
    let mut tag = language.to_ascii_lowercase();
    let (mut script, mut region) = (false, false);
    for part in parts {
        let letters = part.bytes().all(|b| b.is_ascii_alphabetic());
        let digits = part.bytes().all(|b| b.is_ascii_digit());
        tag.push('-');
        if part.len() == 4 && letters && !script && !region {
            script = true;
            let mut chars = part.chars();
            let first = chars.next().unwrap_or_default().to_ascii_uppercase();
            tag.push(first);
            tag.push_str(&chars.as_str().to_ascii_lowercase());
        } else if ((part.len() == 2 && letters) || (part.len() == 3 && digits)) && !region {
            region = true;
            tag.push_str(&part.to_ascii_uppercase());
        } else {
            return Err(bad());
        }
    }
    Ok(tag)
}

/// A moment as a person reads it: in their time zone (UTC without one), written the way
/// their language writes dates: `27.11.2026, 20:10 CET` in German, `Nov 27, 2026, 8:10 PM CET`
/// in American English (and English without a region), `27 Nov 2026, 20:10 CET` in other
/// English, `2026-11-27 20:10 CET` otherwise.
pub fn local_time(
    at: chrono::DateTime<chrono::Utc>,
    locale: Option<&str>,
    time_zone: Option<&str>,
) -> String {
    let zone = time_zone
        .and_then(|z| jiff::tz::TimeZone::get(z).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let Ok(instant) = jiff::Timestamp::from_millisecond(at.timestamp_millis()) else {
        return at.to_rfc3339();
    };
    let local = instant.to_zoned_datetime(zone);
    let locale = locale.unwrap_or("en");
    let (language, region) = locale.split_once('-').unwrap_or((locale, ""));
    let format = match (language, region) {
        ("de", _) => "%d.%m.%Y, %H:%M %Z",
        ("en", "" | "US") => "%b %-d, %Y, %-I:%M %p %Z",
        ("en", _) => "%-d %b %Y, %H:%M %Z",
        _ => "%Y-%m-%d %H:%M %Z",
    };
    local.strftime(format).to_string()
}

/// What follows the ticket's key (or the first `: `) in a message, or all of it.
fn said(message: &str, key: Option<&str>) -> String {
    let after_key = key.and_then(|k| message.split_once(&format!("{k}: ")).map(|(_, rest)| rest));
    after_key
        .or_else(|| message.split_once(": ").map(|(_, rest)| rest))
        .unwrap_or(message)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_are_checked_and_written_one_way() {
        for (given, kept) in [
            ("de", "de"),
            ("DE", "de"),
            ("de-ch", "de-CH"),
            ("pt_BR", "pt-BR"),
            ("zh-hant-tw", "zh-Hant-TW"),
            ("es-419", "es-419"),
        ] {
            assert_eq!(locale_tag(given).as_deref(), Ok(kept), "{given}");
        }
        for bad in [
            "", "d", "deutsch", "de-", "de-CH-AT", "../de", "de.txt", "12",
        ] {
            assert!(locale_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parts_are_looked_up_by_locale_then_language_then_default() {
        assert_eq!(
            names("ticket_assigned", Some("de-CH"), Part::Text),
            [
                "ticket_assigned.de-CH.txt",
                "ticket_assigned.de.txt",
                "ticket_assigned.txt",
                "default.de-CH.txt",
                "default.de.txt",
                "default.txt"
            ]
        );
        assert_eq!(
            names("x", None, Part::Subject),
            ["x.subject.txt", "default.subject.txt"]
        );
    }

    #[test]
    fn times_are_written_in_the_zone_and_the_language_s_way() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-27T19:10:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let berlin = Some("Europe/Berlin");
        assert_eq!(local_time(at, Some("de"), berlin), "27.11.2026, 20:10 CET");
        assert_eq!(local_time(at, None, berlin), "Nov 27, 2026, 8:10 PM CET");
        assert_eq!(
            local_time(at, Some("en-GB"), Some("Europe/London")),
            "27 Nov 2026, 19:10 GMT"
        );
        assert_eq!(local_time(at, Some("fr"), None), "2026-11-27 19:10 UTC");
    }

    fn note(
        id: i64,
        kind: &str,
        message: &str,
        ticket: Option<(&str, &str)>,
    ) -> tickethub_actors::notification::Notification {
        use tickethub_actors::ticket_domain::*;
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-27T19:10:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        tickethub_actors::notification::Notification {
            id,
            user_id: tickethub_actors::domain::UserId(7),
            seq: id,
            notification_type: kind.parse().unwrap(),
            title: "Title".into(),
            message: message.into(),
            ticket: ticket.map(|(key, title)| TicketSummary {
                id: TicketId(key.len() as i64),
                key: key.into(),
                title: title.into(),
                priority: Priority::High,
                category: Category::Bug,
                status: TicketStatus::Assigned,
                created_by: "carol".into(),
                project_name: "Web".into(),
                created_at: at,
            }),
            data: "{}".into(),
            action_url: None,
            is_read: false,
            read_at: None,
            created_at: at,
        }
    }

    fn job(
        notification: tickethub_actors::notification::Notification,
        batch: Vec<tickethub_actors::notification::Notification>,
        locale: Option<&str>,
    ) -> DeliveryJob {
        DeliveryJob {
            id: 1,
            channel: tickethub_actors::routing::Channel::Email,
            address: "ann@example.test".into(),
            attempts: 0,
            notification,
            recipient_name: "Ann".into(),
            recipients: Vec::new(),
            device: None,
            seen: false,
            suppressed: None,
            locale: locale.map(str::to_owned),
            time_zone: Some("Europe/Berlin".into()),
            batch,
        }
    }

    #[test]
    fn a_batch_lists_its_updates_in_each_language() {
        let t = Templates::load(None).unwrap();
        let ticket = Some(("WEB-4", "Login"));
        let first = note(
            1,
            "ticket_opened",
            "Your ticket WEB-4 has been opened: Login",
            ticket,
        );
        let later = note(
            2,
            "work_finished",
            "Ann finished work on ticket WEB-4: Login",
            ticket,
        );
        let en = job(first.clone(), vec![later.clone()], None);
        assert_eq!(
            t.render(Part::Subject, &en).unwrap(),
            "2 updates on WEB-4: WEB-4 Login"
        );
        let text = t.render(Part::Text, &en).unwrap();
        assert!(text.contains("2 updates on WEB-4:\n\n- Nov 27, 2026, 8:10 PM CET: Your ticket WEB-4 has been opened: Login\n- Nov 27, 2026, 8:10 PM CET: Ann finished"), "{text}");
        assert_eq!(
            t.render(Part::Sms, &en).unwrap(),
            "2 updates on WEB-4: Your ticket WEB-4 has been opened: Login · Ann finished work on ticket WEB-4: Login"
        );
        let de = job(first, vec![later], Some("de"));
        assert_eq!(
            t.render(Part::Subject, &de).unwrap(),
            "2 Neuigkeiten zu WEB-4: WEB-4 Login"
        );
        let text = t.render(Part::Text, &de).unwrap();
        assert!(
            text.contains("- 27.11.2026, 20:10 CET: Ihr Ticket WEB-4 wurde geöffnet: Login"),
            "{text}"
        );
        assert!(
            text.contains(
                "- 27.11.2026, 20:10 CET: Die Arbeit an Ticket WEB-4 ist erledigt: Login"
            ),
            "{text}"
        );
        let sms = t.render(Part::Sms, &de).unwrap();
        assert!(
            sms.starts_with("2 Neuigkeiten zu WEB-4: Ihr Ticket WEB-4 wurde geöffnet"),
            "{sms}"
        );
    }

    #[test]
    fn a_digest_groups_by_ticket_with_links_and_escapes_html() {
        let t = Templates::load(None).unwrap();
        let digest = note(0, DIGEST, "", None);
        let listed = vec![
            note(
                1,
                "ticket_assigned",
                "You have been assigned to ticket WEB-4: <b>Login</b>",
                Some(("WEB-4", "<b>Login</b>")),
            ),
            note(2, "general", "Deploy at five", None),
            note(
                3,
                "comment_added",
                "Carol commented on WEB-4: still",
                Some(("WEB-4", "<b>Login</b>")),
            ),
        ];
        let d = job(digest, listed, None);
        let links = Links {
            hub_url: Some("https://hub.example.com"),
            ..Links::default()
        };
        assert_eq!(
            t.render_with(Part::Subject, &d, &links).unwrap(),
            "Your tickethub digest: 3 unread notifications"
        );
        let text = t.render_with(Part::Text, &d, &links).unwrap();
        let web4 = text
            .find("WEB-4 <b>Login</b> (Assigned)\nhttps://hub.example.com/#/tickets/WEB-4\n- ")
            .unwrap();
        let other = text.find("Other\n- ").unwrap();
        assert!(web4 < other, "{text}");
        assert!(
            text.contains("still\n\nOther"),
            "tickets first, grouped: {text}"
        );
        let html = t.render_with(Part::Html, &d, &links).unwrap();
        assert!(
            html.contains("&lt;b&gt;Login&lt;&#x2f;b&gt;")
                || html.contains("&lt;b&gt;Login&lt;/b&gt;"),
            "{html}"
        );
        assert!(!html.contains("<b>Login</b>"), "{html}");
        let de = job(
            note(0, DIGEST, "", None),
            vec![note(1, "ticket_assigned", "x", Some(("WEB-4", "Login")))],
            Some("de"),
        );
        let text = t.render_with(Part::Text, &de, &links).unwrap();
        assert!(
            text.contains("Sie wurden dem Ticket WEB-4 zugewiesen: Login"),
            "{text}"
        );
    }

    #[test]
    fn what_follows_the_key_is_said() {
        assert_eq!(
            said("Ann rejected ticket WEB-4: not a bug", Some("WEB-4")),
            "not a bug"
        );
        assert_eq!(said("Ann commented on WEB-4: a: b", Some("WEB-4")), "a: b");
        assert_eq!(
            said("New High priority ticket created: Login", Some("WEB-4")),
            "Login"
        );
        assert_eq!(said("Deploy at five", None), "Deploy at five");
    }
}
