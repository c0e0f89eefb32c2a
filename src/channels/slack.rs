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

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use hmac::{KeyInit, Mac};
use serde_json::{json, Value};
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use crate::channels::chat::{Card, Room};
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
        Ok(SlackTransport::new(&settings.slack, ctx)?.map(|t| Arc::new(t) as Arc<dyn Transport>))
    }

    fn room(
        settings: &Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn Room>>, ConfigError> {
        Ok(SlackTransport::new(settings, ctx)?.map(|t| Arc::new(t) as Arc<dyn Room>))
    }

    fn check_address(address: &str) -> Result<String, String> {
        member_id(address)
    }
}

/// A Slack member id (`U…` or `W…`, then letters and digits), or why it is not one.
pub fn member_id(address: &str) -> Result<String, String> {
    slack_id(address, ['U', 'W']).ok_or_else(|| {
        "a Slack member id, e.g. U0123ABCD (in Slack: the profile's ⋮ menu, Copy member ID)"
            .into()
    })
}

/// A Slack id (3 to 24 uppercase letters and digits) starting with one of `kinds`, trimmed.
fn slack_id(text: &str, kinds: [char; 2]) -> Option<String> {
    let id = text.trim();
    let ok = (3..=24).contains(&id.len())
        && id.starts_with(kinds)
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    ok.then(|| id.to_owned())
}

/// Until when Slack asked an app to wait (its last 429's `Retry-After`), by Web API and bot
/// token (a workspace's app): its direct messages and its project chats wait alike.
type Pause = std::sync::Mutex<Option<std::time::Instant>>;

fn pause_of(api: &str, token: &str) -> Arc<Pause> {
    static PAUSES: std::sync::OnceLock<std::sync::Mutex<HashMap<String, Arc<Pause>>>> =
        std::sync::OnceLock::new();
    let mut pauses = PAUSES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    pauses
        .entry(format!("{api} {token}"))
        .or_default()
        .clone()
}

/// Posts messages.
struct SlackTransport {
    client: reqwest::Client,
    /// The Web API's base URL.
    api: String,
    token: String,
    /// Whether messages carry buttons (the hub takes their clicks).
    buttons: bool,
    public_url: Option<String>,
    texts: Arc<Templates>,
    /// No message is posted before Slack's last `Retry-After` for the app has passed (on
    /// this node).
    paused_until: Arc<Pause>,
}

impl SlackTransport {
    fn new(
        s: &Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<SlackTransport>, ConfigError> {
        let Some(token) = &s.slack_bot_token else {
            return Ok(None);
        };
        let api = s.slack_api_url.trim_end_matches('/').to_owned();
        Ok(Some(SlackTransport {
            client: http_client(ctx.timeout)?,
            paused_until: pause_of(&api, token),
            api,
            token: token.clone(),
            buttons: s.slack_signing_secret.is_some(),
            public_url: ctx.public_url.clone(),
            texts: ctx.templates.clone(),
        }))
    }

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

    /// Calls a Web API method (unless Slack asked the app to wait); answers Slack's answer.
    async fn call(&self, method: &str, body: &Value) -> Result<Value, TransportError> {
        // Slack's rate limits are the app's, per workspace: while one holds, nothing is posted.
        if let Some(wait) = self.paused_for() {
            return Err(TransportError::Retryable {
                message: "Slack asked the app to wait (rate limited)".into(),
                retry_after: Some(wait),
            });
        }
        let url = format!("{}/{method}", self.api);
        let (status, retry_after, answer) =
            crate::delivery::outbound::post_json_bearer(&self.client, &url, &self.token, body)
                .await?;
        let answered = answer_of(status, retry_after.as_deref(), &answer);
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

/// A button: its action, its label, what it acts on (a notification's id, `ticket:<id>`).
fn button(action: &str, label: &str, value: String, style: &str) -> Value {
    let mut b = json!({
        "type": "button",
        "action_id": action,
        "text": { "type": "plain_text", "text": label },
        "value": value,
    });
    if style == "primary" {
        b["style"] = json!(style);
    }
    b
}

/// The actions block: `actions`, then Open to `url`; none when both are missing.
fn actions_block(mut actions: Vec<Value>, url: Option<&str>) -> Option<Value> {
    if let Some(url) = url {
        actions.push(json!({
            "type": "button",
            "action_id": "open",
            "text": { "type": "plain_text", "text": "Open" },
            "url": url,
        }));
    }
    (!actions.is_empty())
        .then(|| json!({ "type": "actions", "block_id": "tickethub", "elements": actions }))
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
            actions.push(button(action, label, n.id.to_string(), style));
        }
    }
    let url = crate::channels::chat::link(n, public_url);
    blocks.extend(actions_block(actions, url.as_deref()));
    Value::Array(blocks)
}

#[async_trait]
impl Transport for SlackTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
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
        Ok(sent_ref(&self.call("chat.postMessage", &body).await?))
    }
}

/// A project chat's message about a ticket: its key (a link to it) and title, the facts and
/// latest event, and buttons for its next step (with `buttons`) and Open.
pub fn card_blocks(card: &Card, buttons: bool) -> Value {
    let key = match &card.url {
        Some(url) => format!("<{url}|{}>", escape(&card.key)),
        None => escape(&card.key),
    };
    let mut blocks = vec![
        json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": cut(&format!("*{key}* {}", escape(&card.title)), SECTION_TEXT) },
        }),
        json!({
            "type": "context",
            "elements": [
                { "type": "mrkdwn", "text": cut(&escape(&card.facts()), SECTION_TEXT) },
                { "type": "mrkdwn", "text": cut(&card.latest, SECTION_TEXT) },
            ],
        }),
    ];
    let mut actions = Vec::new();
    if let Some((action, label, style)) = crate::channels::chat::ticket_steps(card.status) {
        if buttons {
            actions.push(button(action, label, card.value(), style));
        }
    }
    blocks.extend(actions_block(actions, card.url.as_deref()));
    Value::Array(blocks)
}

#[async_trait]
impl Room for SlackTransport {
    fn text(&self, text: &str) -> String {
        escape(text)
    }

    fn bold(&self, text: &str) -> String {
        format!("*{text}*")
    }

    fn check_channel(&self, channel: &str) -> Result<String, String> {
        slack_id(channel, ['C', 'G']).ok_or_else(|| {
            "a Slack channel id, e.g. C0123ABCD (in Slack: the channel's details, at the bottom); invite the app to it"
                .into()
        })
    }

    async fn post(&self, channel: &str, card: &Card) -> Result<Option<String>, TransportError> {
        let body = json!({
            "channel": channel,
            "text": cut(&format!("{} {}", escape(&card.key), escape(&card.title)), 300),
            "blocks": card_blocks(card, self.buttons),
            "unfurl_links": false,
            "unfurl_media": false,
        });
        let answer = self.call("chat.postMessage", &body).await?;
        match answer["ts"].as_str() {
            Some(ts) => Ok(Some(ts.to_owned())),
            None => Err(TransportError::Permanent("Slack gave no message ts".into())),
        }
    }

    async fn update(&self, channel: &str, ts: &str, card: &Card) -> Result<(), TransportError> {
        let body = json!({
            "channel": channel,
            "ts": ts,
            "text": cut(&format!("{} {}", escape(&card.key), escape(&card.title)), 300),
            "blocks": card_blocks(card, self.buttons),
        });
        match self.call("chat.update", &body).await {
            Err(TransportError::Permanent(why))
                if why.ends_with("message_not_found") || why.ends_with("cant_update_message") =>
            {
                Err(TransportError::Unreachable(why))
            }
            other => other.map(drop),
        }
    }

    async fn reply(&self, channel: &str, ts: &str, line: &str) -> Result<(), TransportError> {
        let body = json!({
            "channel": channel,
            "thread_ts": ts,
            "text": cut(line, SECTION_TEXT),
            "unfurl_links": false,
            "unfurl_media": false,
        });
        self.call("chat.postMessage", &body).await.map(drop)
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
    answer_of(status, retry_after, text).map(|answer| sent_ref(&answer))
}

/// A posted message's `channel:ts`.
fn sent_ref(answer: &Value) -> Option<String> {
    match (answer["channel"].as_str(), answer["ts"].as_str()) {
        (Some(channel), Some(ts)) => Some(format!("{channel}:{ts}")),
        _ => None,
    }
}

/// Slack's answer when it is `ok`; else the error it comes to.
fn answer_of(
    status: reqwest::StatusCode,
    retry_after: Option<&str>,
    text: &str,
) -> Result<Value, TransportError> {
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
        return Ok(answer);
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

/// The workspace's members, looked up by the app (`users.lookupByEmail`, scope
/// `users:read.email`).
#[derive(Debug, Clone)]
pub struct SlackMembers {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl SlackMembers {
    /// The lookup, when Slack is on.
    pub fn new(s: &Settings, timeout: std::time::Duration) -> Result<Option<Self>, ConfigError> {
        let Some(token) = &s.slack_bot_token else {
            return Ok(None);
        };
        Ok(Some(SlackMembers {
            client: http_client(timeout)?,
            url: format!("{}/users.lookupByEmail", s.slack_api_url.trim_end_matches('/')),
            token: token.clone(),
        }))
    }

    /// The member id of the workspace's active person with this email address, if there is
    /// one (bots and deactivated accounts are no one).
    pub async fn by_email(&self, email: &str) -> Result<Option<String>, TransportError> {
        let url = reqwest::Url::parse_with_params(&self.url, [("email", email)])
            .map_err(|e| TransportError::Permanent(format!("Slack's URL: {e}")))?;
        let response = self
            .client
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(crate::delivery::network_error)?;
        let status = response.status();
        let retry_after = crate::delivery::outbound::header(&response, reqwest::header::RETRY_AFTER);
        let text = crate::delivery::outbound::answer_text(response).await;
        match answer_of(status, retry_after.as_deref(), &text) {
            Ok(answer) => {
                let user = &answer["user"];
                let someone = user["deleted"] != true && user["is_bot"] != true;
                Ok(user["id"]
                    .as_str()
                    .filter(|_| someone)
                    .and_then(|id| member_id(id).ok()))
            }
            Err(TransportError::Permanent(why)) if why.ends_with("users_not_found") => Ok(None),
            Err(e) => Err(e),
        }
    }
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
