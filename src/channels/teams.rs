//! Microsoft Teams, through a Workflows webhook ("When a Teams webhook request is received",
//! or an older incoming webhook): each notification is an Adaptive Card posted to a URL that
//! Teams made for a chat or a channel. A user's `teams` address is such a URL (a workflow
//! that posts to a chat with them); a project chat's channel is one that posts to a channel.
//!
//! A webhook carries no buttons that call back: the card's text is the `*.teams.txt`
//! template, its facts the ticket, its priority and status, and its one action opens the
//! ticket on the hub (`--public-url`). A card cannot be changed once posted, so a project
//! chat on Teams gets a card per event rather than one message kept current.
//!
//! The URL is a secret the hub posts to: it must be on a host `--teams-webhook-hosts` allows
//! (Microsoft's, by default), so that no address a user sets points the hub at another
//! server. Teams answers 200 or 202; 404 and 410 (the workflow is gone), 401 and 403 mark the
//! address unreachable; 429 (`Retry-After`), 408 and 5xx are tried again.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use crate::channels::chat::{Card, Room};
use crate::delivery::http_client;
use crate::delivery::templates::{Part, Templates};
use crate::setting::ConfigError;

/// The hosts of Microsoft's webhook URLs (Power Automate workflows, Office connectors).
pub const MICROSOFT_HOSTS: &str = "logic.azure.com,api.powerplatform.com,webhook.office.com";

/// The most characters of text a card carries (Teams takes messages of about 28 KB).
const CARD_TEXT: usize = 12_000;

/// The Microsoft Teams settings.
#[derive(clap::Args, Clone, Debug)]
#[group(skip)]
pub struct Settings {
    /// Turns Microsoft Teams on: users' `teams` addresses and project chats post Adaptive
    /// Cards to Teams' webhook URLs.
    #[arg(long, env = "TICKETHUB_TEAMS")]
    pub teams: bool,
    /// The hosts a Teams webhook URL may be on (each with its subdomains), comma-separated.
    #[arg(long, env = "TICKETHUB_TEAMS_WEBHOOK_HOSTS", default_value = MICROSOFT_HOSTS, value_delimiter = ',')]
    pub teams_webhook_hosts: Vec<String>,
}

/// Microsoft Teams cards, to each user's `teams` webhook URL.
pub struct Teams;

impl crate::channels::Plugin for Teams {
    const NAME: &'static str = "teams";
    const REACH: tickethub_actors::routing::Reach = tickethub_actors::routing::Reach::Personal;
    type Settings = Settings;

    fn validate(s: &Settings) -> Result<(), ConfigError> {
        if s.teams && s.teams_webhook_hosts.iter().all(|h| h.trim().is_empty()) {
            return Err(ConfigError::new(
                "--teams-webhook-hosts (TICKETHUB_TEAMS_WEBHOOK_HOSTS)",
                "names no host",
            ));
        }
        Ok(())
    }

    fn transport(
        settings: &crate::channels::Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn Transport>>, ConfigError> {
        Ok(TeamsTransport::new(&settings.teams, ctx)?.map(|t| Arc::new(t) as Arc<dyn Transport>))
    }

    fn room(
        settings: &Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn Room>>, ConfigError> {
        Ok(TeamsTransport::new(settings, ctx)?.map(|t| Arc::new(t) as Arc<dyn Room>))
    }

    fn check_address(address: &str) -> Result<String, String> {
        webhook_url(address)
    }
}

/// A webhook URL: absolute http(s), no user or password, at most 2,048 characters.
pub fn webhook_url(address: &str) -> Result<String, String> {
    let why = || "a Teams webhook URL (in Teams: Workflows, \"Send webhook alerts to a chat\", copy the URL)".to_owned();
    let address = address.trim();
    let url = reqwest::Url::parse(address).map_err(|_| why())?;
    let ok = matches!(url.scheme(), "https" | "http")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && address.len() <= 2048;
    match ok {
        true => Ok(address.to_owned()),
        false => Err(why()),
    }
}

/// Posts cards.
struct TeamsTransport {
    client: reqwest::Client,
    hosts: Vec<String>,
    public_url: Option<String>,
    texts: Arc<Templates>,
}

impl TeamsTransport {
    fn new(
        s: &Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<TeamsTransport>, ConfigError> {
        if !s.teams {
            return Ok(None);
        }
        Ok(Some(TeamsTransport {
            client: http_client(ctx.timeout)?,
            hosts: s
                .teams_webhook_hosts
                .iter()
                .map(|h| h.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            public_url: ctx.public_url.clone(),
            texts: ctx.templates.clone(),
        }))
    }

    /// Whether the URL is on a host the hub posts to.
    fn allowed(&self, url: &str) -> bool {
        let Ok(url) = reqwest::Url::parse(url) else {
            return false;
        };
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return false;
        };
        self.hosts
            .iter()
            .any(|h| host == *h || host.ends_with(&format!(".{h}")))
    }

    /// Posts a card to the URL.
    async fn post_card(&self, url: &str, card: Value) -> Result<(), TransportError> {
        if !self.allowed(url) {
            return Err(TransportError::Unreachable(
                "Teams: the URL is not on a host --teams-webhook-hosts allows".into(),
            ));
        }
        let body = message(card);
        let response = self
            .client
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(crate::delivery::network_error)?;
        let status = response.status();
        let retry_after = crate::delivery::outbound::header(&response, reqwest::header::RETRY_AFTER);
        let text = crate::delivery::outbound::answer_text(response).await;
        classify(status, retry_after.as_deref(), &text)
    }
}

/// A Teams message carrying one Adaptive Card.
pub fn message(card: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// An Adaptive Card (1.4): a title, text, facts, and an Open action to `url`.
pub fn adaptive_card(title: &str, text: &str, facts: &[(&str, String)], url: Option<&str>) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": true,
    })];
    if !text.trim().is_empty() {
        let text: String = text.trim().chars().take(CARD_TEXT).collect();
        body.push(json!({ "type": "TextBlock", "text": text, "wrap": true }));
    }
    if !facts.is_empty() {
        let facts: Vec<Value> = facts
            .iter()
            .map(|(title, value)| json!({ "title": title, "value": value }))
            .collect();
        body.push(json!({ "type": "FactSet", "facts": facts }));
    }
    let actions: Vec<Value> = url
        .map(|url| json!({ "type": "Action.OpenUrl", "title": "Open", "url": url }))
        .into_iter()
        .collect();
    json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": actions,
    })
}

/// What Teams' answer comes to.
fn classify(
    status: reqwest::StatusCode,
    retry_after: Option<&str>,
    text: &str,
) -> Result<(), TransportError> {
    if status.is_success() {
        return Ok(());
    }
    let why = format!(
        "Teams answered {status}: {}",
        text.chars().take(200).collect::<String>()
    );
    let retry_after = retry_after
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs);
    Err(match status.as_u16() {
        408 | 429 | 500..=599 => TransportError::Retryable {
            message: why,
            retry_after,
        },
        401 | 403 | 404 | 410 => TransportError::Unreachable(why),
        _ => TransportError::Permanent(why),
    })
}

#[async_trait]
impl Transport for TeamsTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
        let text = self
            .texts
            .render(Part::Teams, job)
            .map_err(|e| TransportError::Permanent(format!("template: {e}")))?;
        if text.trim().is_empty() {
            return Err(TransportError::Permanent(
                "template: the Teams text is empty".into(),
            ));
        }
        let n = &job.notification;
        let mut facts = Vec::new();
        if let Some(t) = &n.ticket {
            facts.push(("Ticket", t.key.clone()));
            facts.push(("Priority", t.priority.display().to_owned()));
            facts.push(("Status", t.status.display().to_owned()));
        }
        if tickethub_actors::reply::is_page(n) {
            facts.push(("Page", tickethub_actors::reply::code(n.seq)));
        }
        let url = crate::channels::chat::link(n, self.public_url.as_deref());
        let card = adaptive_card(&n.title, &text, &facts, url.as_deref());
        self.post_card(&job.address, card).await?;
        Ok(None)
    }
}

#[async_trait]
impl Room for TeamsTransport {
    fn check_channel(&self, channel: &str) -> Result<String, String> {
        let url = webhook_url(channel)?;
        match self.allowed(&url) {
            true => Ok(url),
            false => Err(format!(
                "a Teams webhook URL on one of the hosts the hub posts to ({})",
                self.hosts.join(", ")
            )),
        }
    }

    async fn post(&self, channel: &str, card: &Card) -> Result<Option<String>, TransportError> {
        let facts = [
            ("Priority", card.priority.display().to_owned()),
            ("Status", card.status.display().to_owned()),
            ("Assignees", card.assignees.join(", ")),
        ];
        let facts: Vec<_> = facts.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let title = format!("{} {}", card.key, card.title);
        let adaptive = adaptive_card(&title, &card.latest, &facts, card.url.as_deref());
        self.post_card(channel, adaptive).await?;
        // A webhook's card cannot be changed: every event posts its own.
        Ok(None)
    }

    async fn update(&self, _: &str, _: &str, _: &Card) -> Result<(), TransportError> {
        Err(TransportError::Permanent(
            "a Teams webhook cannot change a card".into(),
        ))
    }

    async fn reply(&self, _: &str, _: &str, _: &str) -> Result<(), TransportError> {
        Err(TransportError::Permanent(
            "a Teams webhook cannot reply in a thread".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_answers_classified() {
        let url = "https://prod-01.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=x";
        assert_eq!(webhook_url(&format!(" {url} ")).as_deref(), Ok(url));
        for bad in ["", "teams", "ftp://x.example/", "https://u:p@x.example/", "/relative"] {
            assert!(webhook_url(bad).is_err(), "{bad}");
        }
        use reqwest::StatusCode as S;
        assert!(classify(S::ACCEPTED, None, "").is_ok());
        assert!(matches!(
            classify(S::TOO_MANY_REQUESTS, Some("7"), ""),
            Err(TransportError::Retryable { retry_after: Some(d), .. }) if d.as_secs() == 7
        ));
        assert!(matches!(
            classify(S::NOT_FOUND, None, ""),
            Err(TransportError::Unreachable(_))
        ));
        assert!(matches!(
            classify(S::BAD_REQUEST, None, "bad card"),
            Err(TransportError::Permanent(_))
        ));
    }

    #[tokio::test]
    async fn only_urls_on_the_allowed_hosts_are_posted_to() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let teams = TeamsTransport {
            client: reqwest::Client::new(),
            hosts: vec!["logic.azure.com".into(), "webhook.office.com".into()],
            public_url: None,
            texts: Arc::new(Templates::load(None).unwrap()),
        };
        for ok in [
            "https://prod-01.westus.logic.azure.com:443/workflows/a",
            "https://logic.azure.com/workflows/a",
            "https://contoso.webhook.office.com/webhookb2/x",
        ] {
            assert!(teams.allowed(ok), "{ok}");
        }
        for refused in [
            "https://evil.example.com/workflows/a",
            "https://logic.azure.com.evil.example/a",
            "https://evillogic.azure.com/a",
            "http://127.0.0.1:8080/hook",
            "not a url",
        ] {
            assert!(!teams.allowed(refused), "{refused}");
        }
        // Refused before any request is made.
        assert!(matches!(
            teams
                .post_card("http://127.0.0.1:9/hook", json!({}))
                .await,
            Err(TransportError::Unreachable(_))
        ));
    }

    #[test]
    fn cards_are_adaptive_cards_in_a_message() {
        let card = adaptive_card(
            "WEB-1 Login fails",
            "Ann started work.",
            &[("Status", "In Progress".into())],
            Some("https://hub.example/tickets/1/"),
        );
        let m = message(card);
        assert_eq!(
            m["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let content = &m["attachments"][0]["content"];
        assert_eq!(content["type"], "AdaptiveCard");
        assert_eq!(content["body"][2]["facts"][0]["value"], "In Progress");
        assert_eq!(content["actions"][0]["type"], "Action.OpenUrl");
    }
}
