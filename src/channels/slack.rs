//! Slack, through the Web API: `chat.postMessage` to a user's direct message with the hub's
//! app (`--slack-bot-token`, sent as `Authorization: Bearer`), the user's `slack` address
//! being their member id (`U…`). The message is the `*.slack.txt` template (mrkdwn, with
//! Slack's `&`, `<` and `>` escaped, so that no text a person typed becomes a mention or a
//! link) in Block Kit: a section, a context line (the ticket, its priority and status, a page's
//! code), and, when the hub takes Slack's interactions (`--slack-signing-secret`), buttons
//! for what the notification asks: Acknowledge a page, Start work, Resolve, Approve; Open
//! links to the hub (`--public-url`). Clicks come back to
//! `POST /api/inbound/slack/interactions/` (see `crate::http::slack`).
//!
//! Slack answers HTTP 200 with `{"ok": false, "error"}` for most refusals: a member the app
//! cannot reach (`user_not_found`, `channel_not_found`, `cannot_dm_bot`, `account_inactive`,
//! `is_archived`) marks the address unreachable; bad credentials fail the delivery; 429 (with
//! `Retry-After`) and 5xx are tried again by the outbox's rules. Slack's rate limits are per
//! app and workspace: after a 429 no message is posted (on this node) until its `Retry-After`
//! has passed.

use std::sync::Arc;

use async_trait::async_trait;
use hmac::{KeyInit, Mac};
use serde_json::{json, Value};
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use crate::delivery::http_client;
use crate::delivery::templates::{Part, Templates};
use crate::setting::ConfigError;

/// Slack's Web API.
pub const SLACK_API: &str = "https://slack.com/api";

/// The path Slack posts interactions (button clicks) to.
pub const INTERACTIONS: &str = "/api/inbound/slack/interactions/";

/// The most characters Slack takes in a section's text.
const SECTION_TEXT: usize = 3000;

/// The Slack settings.
#[derive(clap::Args, Clone, Debug)]
#[group(skip)]
pub struct Settings {
    /// The Slack app's bot token (`xoxb-…`, scopes `chat:write`, and `users:read.email` for
    /// looking members up); Slack is on once it is set.
    #[arg(long, env = "TICKETHUB_SLACK_BOT_TOKEN")]
    pub slack_bot_token: Option<String>,
    /// The app's signing secret: with it, messages carry buttons and the hub takes their
    /// clicks at `/api/inbound/slack/interactions/`.
    #[arg(long, env = "TICKETHUB_SLACK_SIGNING_SECRET")]
    pub slack_signing_secret: Option<String>,
    /// Slack's Web API.
    #[arg(long, env = "TICKETHUB_SLACK_API_URL", default_value = SLACK_API)]
    pub slack_api_url: String,
}

/// Slack direct messages, to each user's `slack` member id.
pub struct Slack;

impl crate::channels::Plugin for Slack {
    const NAME: &'static str = "slack";
    const REACH: tickethub_actors::routing::Reach = tickethub_actors::routing::Reach::Personal;
    type Settings = Settings;

    fn validate(s: &Settings) -> Result<(), ConfigError> {
        if s.slack_bot_token
            .as_deref()
            .is_some_and(|t| !t.starts_with("xoxb-"))
        {
            return Err(ConfigError::new(
                "--slack-bot-token (TICKETHUB_SLACK_BOT_TOKEN)",
                "must be a bot token (xoxb-…)",
            ));
        }
        if s.slack_signing_secret.is_some() && s.slack_bot_token.is_none() {
            return Err(ConfigError::new(
                "--slack-signing-secret (TICKETHUB_SLACK_SIGNING_SECRET)",
                "needs --slack-bot-token: the hub takes clicks on the messages it sent",
            ));
        }
        match reqwest::Url::parse(&s.slack_api_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(()),
            _ => Err(ConfigError::new(
                "--slack-api-url (TICKETHUB_SLACK_API_URL)",
                "must be an http(s) URL",
            )),
        }
    }

    fn transport(
        settings: &crate::channels::Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn Transport>>, ConfigError> {
        let s = &settings.slack;
        let Some(token) = &s.slack_bot_token else {
            return Ok(None);
        };
        Ok(Some(Arc::new(SlackTransport {
            client: http_client(ctx.timeout)?,
            url: format!("{}/chat.postMessage", s.slack_api_url.trim_end_matches('/')),
            token: token.clone(),
            buttons: s.slack_signing_secret.is_some(),
            public_url: ctx.public_url.clone(),
            texts: ctx.templates.clone(),
            paused_until: std::sync::Mutex::new(None),
        })))
    }

    fn check_address(address: &str) -> Result<String, String> {
        member_id(address)
    }
}

/// A Slack member id (`U…` or `W…`, then letters and digits), or why it is not one.
pub fn member_id(address: &str) -> Result<String, String> {
    let id = address.trim();
    let ok = (3..=24).contains(&id.len())
        && id.starts_with(['U', 'W'])
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    match ok {
        true => Ok(id.to_owned()),
        false => Err(
            "a Slack member id, e.g. U0123ABCD (in Slack: the profile's ⋮ menu, Copy member ID)"
                .into(),
        ),
    }
}

/// Posts messages.
struct SlackTransport {
    client: reqwest::Client,
    url: String,
    token: String,
    /// Whether messages carry buttons (the hub takes their clicks).
    buttons: bool,
    public_url: Option<String>,
    texts: Arc<Templates>,
    /// Until when Slack asked the workspace's app to wait (its last 429's `Retry-After`):
    /// no message is posted before, on this node.
    paused_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl SlackTransport {
    /// How long the workspace must still wait, if Slack asked it to.
    fn paused_for(&self) -> Option<std::time::Duration> {
        let until = (*self.paused_until.lock().unwrap_or_else(|e| e.into_inner()))?;
        until.checked_duration_since(std::time::Instant::now())
    }

    /// Slack rate-limited the app: every message waits `retry_after`.
    fn pause(&self, retry_after: std::time::Duration) {
        let until = std::time::Instant::now() + retry_after;
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        *paused = Some(paused.map_or(until, |p| p.max(until)));
    }
}

/// Text for Slack's mrkdwn: its three control characters escaped, as Slack asks.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if text.chars().count() > max => format!("{}…", &text[..end]),
        _ => text.to_owned(),
    }
}

/// A button: its action, its label, the notification it acts on.
fn button(action: &str, label: &str, notification: i64, style: &str) -> Value {
    let mut b = json!({
        "type": "button",
        "action_id": action,
        "text": { "type": "plain_text", "text": label },
        "value": notification.to_string(),
    });
    if style == "primary" {
        b["style"] = json!(style);
    }
    b
}

/// The message's blocks: the text, a context line, and the buttons (`buttons`) and link.
pub fn blocks(job: &DeliveryJob, text: &str, buttons: bool, public_url: Option<&str>) -> Value {
    let n = &job.notification;
    let context = crate::channels::chat::context(n, escape);
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": cut(text.trim(), SECTION_TEXT) },
    })];
    if !context.is_empty() {
        blocks.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": context }],
        }));
    }
    let mut actions = Vec::new();
    if buttons {
        for (action, label, style) in crate::channels::chat::next_steps(n) {
            actions.push(button(action, label, n.id, style));
        }
    }
    if let Some(url) = crate::channels::chat::link(n, public_url) {
        actions.push(json!({
            "type": "button",
            "action_id": "open",
            "text": { "type": "plain_text", "text": "Open" },
            "url": url,
        }));
    }
    if !actions.is_empty() {
        blocks.push(json!({ "type": "actions", "block_id": "tickethub", "elements": actions }));
    }
    Value::Array(blocks)
}

#[async_trait]
impl Transport for SlackTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
        // Slack's rate limits are the app's, per workspace: while one holds, nothing is posted.
        if let Some(wait) = self.paused_for() {
            return Err(TransportError::Retryable {
                message: "Slack asked the app to wait (rate limited)".into(),
                retry_after: Some(wait),
            });
        }
        let text = self
            .texts
            .render(Part::Slack, job)
            .map_err(|e| TransportError::Permanent(format!("template: {e}")))?;
        let text = escape(&text);
        if text.trim().is_empty() {
            return Err(TransportError::Permanent(
                "template: the Slack text is empty".into(),
            ));
        }
        let body = json!({
            "channel": job.address,
            // What notifications and screen readers show.
            "text": cut(&escape(&job.notification.title), 300),
            "blocks": blocks(job, &text, self.buttons, self.public_url.as_deref()),
            "unfurl_links": false,
            "unfurl_media": false,
        });
        let (status, retry_after, answer) =
            crate::delivery::outbound::post_json_bearer(&self.client, &self.url, &self.token, &body)
                .await?;
        let answered = classify(status, retry_after.as_deref(), &answer);
        if let Err(TransportError::Retryable {
            retry_after: Some(wait),
            ..
        }) = &answered
        {
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                self.pause(*wait);
            }
        }
        answered
    }
}

/// The errors that say the member cannot be reached through the app, for good.
const UNREACHABLE: [&str; 6] = [
    "channel_not_found",
    "user_not_found",
    "cannot_dm_bot",
    "account_inactive",
    "is_archived",
    "user_disabled",
];

/// What Slack's answer comes to: the message's `channel:ts` on success.
pub fn classify(
    status: reqwest::StatusCode,
    retry_after: Option<&str>,
    text: &str,
) -> Result<Option<String>, TransportError> {
    let retry_after = retry_after
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs);
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(TransportError::Retryable {
            message: format!("Slack answered {status}"),
            retry_after,
        });
    }
    let answer: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if status.is_success() && answer["ok"] == true {
        let sent = match (answer["channel"].as_str(), answer["ts"].as_str()) {
            (Some(channel), Some(ts)) => Some(format!("{channel}:{ts}")),
            _ => None,
        };
        return Ok(sent);
    }
    let error = answer["error"].as_str().unwrap_or("no answer").to_owned();
    Err(match error.as_str() {
        e if UNREACHABLE.contains(&e) => TransportError::Unreachable(format!("Slack: {e}")),
        "ratelimited" | "internal_error" | "fatal_error" | "service_unavailable"
        | "request_timeout" => TransportError::Retryable {
            message: format!("Slack: {error}"),
            retry_after,
        },
        _ => TransportError::Permanent(format!("Slack answered {status}: {error}")),
    })
}

/// Slack's signature of a request: `v0=` and the hex HMAC-SHA256, with the signing secret,
/// of `v0:<timestamp>:<body>`.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// What the hub needs to take Slack's interactions.
#[derive(Debug, Clone)]
pub struct SlackInbound {
    /// The app's signing secret.
    pub signing_secret: String,
    /// The host of `--slack-api-url`, whose `response_url`s are followed besides Slack's own.
    pub api_host: Option<String>,
    /// Posts the answers.
    pub client: reqwest::Client,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's own documented example (api.slack.com, "Verifying requests from Slack").
    #[test]
    fn signatures_match_slack_s_documented_example() {
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            signature(
                "8f742231b10e8888abcd99yyyzzz85a5",
                "1531420618",
                body.as_bytes()
            ),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn member_ids_are_checked_and_text_is_escaped_and_cut() {
        assert_eq!(member_id(" U0123ABCD ").as_deref(), Ok("U0123ABCD"));
        for bad in ["", "u0123", "C0123ABCD", "U01 23", "U0123abcd", "<@U0123>"] {
            assert!(member_id(bad).is_err(), "{bad}");
        }
        assert_eq!(escape("<!channel> & <@U1>"), "&lt;!channel&gt; &amp; &lt;@U1&gt;");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
        assert_eq!(cut(&"é".repeat(5), 3), "éé…");
    }

    #[test]
    fn slack_s_answers_are_classified() {
        use reqwest::StatusCode as S;
        let ok = r#"{"ok":true,"channel":"D024BE91L","ts":"1401383885.000061"}"#;
        assert_eq!(
            classify(S::OK, None, ok).unwrap().as_deref(),
            Some("D024BE91L:1401383885.000061")
        );
        assert!(matches!(
            classify(S::TOO_MANY_REQUESTS, Some("30"), ""),
            Err(TransportError::Retryable { retry_after: Some(d), .. }) if d.as_secs() == 30
        ));
        assert!(matches!(
            classify(S::OK, None, r#"{"ok":false,"error":"user_not_found"}"#),
            Err(TransportError::Unreachable(_))
        ));
        assert!(matches!(
            classify(S::OK, None, r#"{"ok":false,"error":"invalid_auth"}"#),
            Err(TransportError::Permanent(_))
        ));
        assert!(matches!(
            classify(S::BAD_GATEWAY, None, ""),
            Err(TransportError::Retryable { .. })
        ));
    }
}
