//! Mattermost, through its REST API v4 with a bot account (`--mattermost-url`,
//! `--mattermost-bot-token`, sent as `Authorization: Bearer`): a user's `mattermost` address
//! is their user id (26 lowercase letters and digits); each notification is a post in the
//! direct channel between the bot and them (`POST /api/v4/channels/direct`, then
//! `POST /api/v4/posts`), its text the `*.mattermost.txt` template (Markdown), with a message
//! attachment holding the context line and, with `--mattermost-action-token` and
//! `--public-url`, interactive buttons (the step the notification asks for, as on Slack). Each
//! button's integration posts to `<public-url>/api/inbound/mattermost/actions/` with a context
//! naming the action and the notification, and the action token, which Mattermost keeps on the
//! server (clients never see it): the hub takes a click only with it (see
//! `crate::http::mattermost`).
//!
//! Mattermost's answers: 201 gives the post's id; 400 and 404 for the user mark the address
//! unreachable; 401 and 403 fail the message; 429 (`Retry-After` or `X-Ratelimit-Reset`)
//! and 5xx are tried again.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use crate::channels::chat::{Card, Room};
use crate::delivery::http_client;
use crate::delivery::templates::{Part, Templates};
use crate::setting::ConfigError;

/// The path Mattermost posts button clicks to.
pub const ACTIONS: &str = "/api/inbound/mattermost/actions/";

/// The Mattermost settings.
#[derive(clap::Args, Clone, Debug)]
#[group(skip)]
pub struct Settings {
    /// The Mattermost server (`https://chat.example.com`); Mattermost is on once it and the
    /// bot token are set.
    #[arg(long, env = "TICKETHUB_MATTERMOST_URL")]
    pub mattermost_url: Option<String>,
    /// A bot account's access token.
    #[arg(long, env = "TICKETHUB_MATTERMOST_BOT_TOKEN")]
    pub mattermost_bot_token: Option<String>,
    /// A secret the hub puts in its buttons' integration context and checks on each click:
    /// with it (and `--public-url`), posts carry buttons.
    #[arg(long, env = "TICKETHUB_MATTERMOST_ACTION_TOKEN")]
    pub mattermost_action_token: Option<String>,
}

/// Mattermost direct messages, to each user's `mattermost` user id.
pub struct Mattermost;

impl crate::channels::Plugin for Mattermost {
    const NAME: &'static str = "mattermost";
    const REACH: tickethub_actors::routing::Reach = tickethub_actors::routing::Reach::Personal;
    type Settings = Settings;

    fn validate(s: &Settings) -> Result<(), ConfigError> {
        const URL: &str = "--mattermost-url (TICKETHUB_MATTERMOST_URL)";
        match (&s.mattermost_url, &s.mattermost_bot_token) {
            (Some(url), Some(_)) => match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return Err(ConfigError::new(URL, "must be an http(s) URL")),
            },
            (None, None) => {}
            _ => {
                return Err(ConfigError::new(
                    URL,
                    "Mattermost needs both the server's URL and --mattermost-bot-token",
                ))
            }
        }
        match &s.mattermost_action_token {
            Some(t) if t.len() < 16 => Err(ConfigError::new(
                "--mattermost-action-token (TICKETHUB_MATTERMOST_ACTION_TOKEN)",
                "must be at least 16 characters",
            )),
            _ => Ok(()),
        }
    }

    fn transport(
        settings: &crate::channels::Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn Transport>>, ConfigError> {
        Ok(MattermostTransport::new(&settings.mattermost, ctx)?
            .map(|t| Arc::new(t) as Arc<dyn Transport>))
    }

    fn room(
        settings: &Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn Room>>, ConfigError> {
        Ok(MattermostTransport::new(settings, ctx)?.map(|t| Arc::new(t) as Arc<dyn Room>))
    }

    fn check_address(address: &str) -> Result<String, String> {
        user_id(address)
    }
}

/// A Mattermost user id (26 lowercase letters and digits), or why it is not one.
pub fn user_id(address: &str) -> Result<String, String> {
    let id = address.trim();
    match id.len() == 26
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        true => Ok(id.to_owned()),
        false => Err(
            "a Mattermost user id: 26 lowercase letters and digits (in Mattermost: Profile, Copy user ID)"
                .into(),
        ),
    }
}

/// Where buttons' clicks go, and the token they carry.
struct Buttons {
    url: String,
    token: String,
}

/// Posts messages.
struct MattermostTransport {
    client: reqwest::Client,
    /// `<server>/api/v4`.
    api: String,
    token: String,
    buttons: Option<Buttons>,
    /// `--public-url`, for links.
    public: Option<String>,
    texts: Arc<Templates>,
    /// The bot's own user id, read once.
    bot: tokio::sync::OnceCell<String>,
    /// The direct channel with each user, once made.
    channels: std::sync::Mutex<HashMap<String, String>>,
}

/// What a Mattermost answer comes to: its JSON on success; else the error by its status.
fn classify(
    status: reqwest::StatusCode,
    retry_after: Option<&str>,
    text: &str,
) -> Result<Value, TransportError> {
    if status.is_success() {
        return Ok(serde_json::from_str(text).unwrap_or(Value::Null));
    }
    let answer: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let why = format!(
        "Mattermost answered {status}: {}",
        answer["message"].as_str().unwrap_or("no answer")
    );
    let retry_after = retry_after
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs);
    Err(match status.as_u16() {
        429 | 500..=599 | 408 => TransportError::Retryable {
            message: why,
            retry_after,
        },
        _ => TransportError::Permanent(why),
    })
}

impl MattermostTransport {
    fn new(
        s: &Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<MattermostTransport>, ConfigError> {
        let (Some(url), Some(token)) = (&s.mattermost_url, &s.mattermost_bot_token) else {
            return Ok(None);
        };
        let public = ctx
            .public_url
            .as_deref()
            .map(|p| p.trim_end_matches('/').to_owned());
        let buttons = match (&s.mattermost_action_token, &public) {
            (Some(secret), Some(public)) => Some(Buttons {
                url: format!("{public}{ACTIONS}"),
                token: secret.clone(),
            }),
            _ => None,
        };
        Ok(Some(MattermostTransport {
            client: http_client(ctx.timeout)?,
            api: format!("{}/api/v4", url.trim_end_matches('/')),
            token: token.clone(),
            buttons,
            public,
            texts: ctx.templates.clone(),
            bot: tokio::sync::OnceCell::new(),
            channels: std::sync::Mutex::new(HashMap::new()),
        }))
    }

    /// GETs `path`, or POSTs `body` to it.
    async fn call(&self, path: &str, body: Option<&Value>) -> Result<Value, TransportError> {
        self.request(reqwest::Method::POST, path, body).await
    }

    /// Sends a request to the API (a GET without `body`).
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, TransportError> {
        let url = format!("{}{path}", self.api);
        let request = match body {
            Some(body) => self.client.request(method, &url).json(body),
            None => self.client.get(&url),
        };
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(crate::delivery::network_error)?;
        let status = response.status();
        let retry_after =
            crate::delivery::outbound::header(&response, reqwest::header::RETRY_AFTER).or_else(
                || {
                    crate::delivery::outbound::header(
                        &response,
                        reqwest::header::HeaderName::from_static("x-ratelimit-reset"),
                    )
                },
            );
        let text = crate::delivery::outbound::answer_text(response).await;
        classify(status, retry_after.as_deref(), &text)
    }

    /// The direct channel between the bot and `user`, made once.
    async fn direct_channel(&self, user: &str) -> Result<String, TransportError> {
        if let Some(id) = self.channels.lock().unwrap_or_else(|e| e.into_inner()).get(user) {
            return Ok(id.clone());
        }
        let bot = self
            .bot
            .get_or_try_init(|| async {
                let me = self.call("/users/me", None).await?;
                me["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| TransportError::Permanent("Mattermost: no bot user id".into()))
            })
            .await?;
        let channel = match self
            .call("/channels/direct", Some(&json!([bot, user])))
            .await
        {
            Ok(channel) => channel,
            // The user does not exist on this server (or is deactivated): for good.
            Err(TransportError::Permanent(why)) if why.contains(" 400 ") || why.contains(" 404 ") => {
                return Err(TransportError::Unreachable(why))
            }
            Err(e) => return Err(e),
        };
        let id = channel["id"]
            .as_str()
            .ok_or_else(|| TransportError::Permanent("Mattermost: no channel id".into()))?
            .to_owned();
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.to_owned(), id.clone());
        Ok(id)
    }
}

/// The post's attachment: the context line, the buttons (clicks to `url` with `token`), and
/// the link (made absolute on `public`).
pub fn attachment(job: &DeliveryJob, buttons: Option<(&str, &str)>, public: Option<&str>) -> Value {
    let n = &job.notification;
    let mut actions = Vec::new();
    if let Some((url, token)) = buttons {
        for (action, name, style) in crate::channels::chat::next_steps(n) {
            actions.push(json!({
                // Mattermost takes letters and digits only in an action's id.
                "id": action.replace('_', ""),
                "name": name,
                "type": "button",
                "style": style,
                "integration": {
                    "url": url,
                    "context": { "action": action, "notification": n.id.to_string(), "token": token },
                },
            }));
        }
    }
    let page = tickethub_actors::reply::is_page(n);
    json!({
        "fallback": n.title,
        "color": if page { "#d24b4e" } else { "#1c58d9" },
        "text": crate::channels::chat::context(n, str::to_owned),
        "title": n.title,
        "title_link": crate::channels::chat::link(n, public),
        "actions": actions,
    })
}

#[async_trait]
impl Transport for MattermostTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
        let text = self
            .texts
            .render(Part::Mattermost, job)
            .map_err(|e| TransportError::Permanent(format!("template: {e}")))?;
        if text.trim().is_empty() {
            return Err(TransportError::Permanent(
                "template: the Mattermost text is empty".into(),
            ));
        }
        let channel = self.direct_channel(&job.address).await?;
        let buttons = self
            .buttons
            .as_ref()
            .map(|b| (b.url.as_str(), b.token.as_str()));
        // A post's message takes 16,383 characters.
        let message: String = text.trim().chars().take(16_000).collect();
        let post = json!({
            "channel_id": channel,
            "message": message,
            "props": { "attachments": [attachment(job, buttons, self.public.as_deref())] },
        });
        let posted = self.call("/posts", Some(&post)).await?;
        Ok(posted["id"].as_str().map(str::to_owned))
    }
}

/// A project chat's post about a ticket: its attachment holds the key (a link to it) and
/// title, the facts and latest event, and the button for its next step.
fn card_attachment(card: &Card, buttons: Option<&Buttons>) -> Value {
    let mut actions = Vec::new();
    if let (Some(b), Some((action, name, style))) =
        (buttons, crate::channels::chat::ticket_steps(card.status))
    {
        actions.push(json!({
            "id": action.replace('_', ""),
            "name": name,
            "type": "button",
            "style": style,
            "integration": {
                "url": b.url,
                "context": { "action": action, "notification": card.value(), "token": b.token },
            },
        }));
    }
    json!({
        "fallback": format!("{} {}", card.key, card.title),
        "color": "#1c58d9",
        "title": format!("{} {}", card.key, card.title),
        "title_link": card.url,
        "text": format!("{}\n{}", card.facts(), card.latest),
        "actions": actions,
    })
}

#[async_trait]
impl Room for MattermostTransport {
    fn check_channel(&self, channel: &str) -> Result<String, String> {
        user_id(channel).map_err(|_| {
            "a Mattermost channel id: 26 lowercase letters and digits (in Mattermost: the channel's View Info); add the bot to the channel".into()
        })
    }

    async fn post(&self, channel: &str, card: &Card) -> Result<Option<String>, TransportError> {
        let post = json!({
            "channel_id": channel,
            "message": "",
            "props": { "attachments": [card_attachment(card, self.buttons.as_ref())] },
        });
        let posted = self.call("/posts", Some(&post)).await?;
        match posted["id"].as_str() {
            Some(id) => Ok(Some(id.to_owned())),
            None => Err(TransportError::Permanent("Mattermost gave no post id".into())),
        }
    }

    async fn update(&self, _channel: &str, post: &str, card: &Card) -> Result<(), TransportError> {
        if post.is_empty() || !post.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(TransportError::Unreachable(format!(
                "Mattermost: not a post id: {post}"
            )));
        }
        let patch = json!({
            "message": "",
            "props": { "attachments": [card_attachment(card, self.buttons.as_ref())] },
        });
        match self
            .request(reqwest::Method::PUT, &format!("/posts/{post}/patch"), Some(&patch))
            .await
        {
            Err(TransportError::Permanent(why)) if why.contains(" 404 ") => {
                Err(TransportError::Unreachable(why))
            }
            other => other.map(drop),
        }
    }

    async fn reply(&self, channel: &str, post: &str, line: &str) -> Result<(), TransportError> {
        let reply = json!({
            "channel_id": channel,
            "root_id": post,
            "message": line.chars().take(16_000).collect::<String>(),
        });
        self.call("/posts", Some(&reply)).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_checked() {
        let id = "8xq3zm1k4pfdjbo7nq5yrwq6ce";
        assert_eq!(user_id(&format!(" {id} ")).as_deref(), Ok(id));
        for bad in ["", "ann", "8XQ3ZM1K4PFDJBO7NQ5YRWQ6CE", "8xq3zm1k4pfdjbo7nq5yrwq6c"] {
            assert!(user_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mattermost_s_answers_are_classified() {
        use reqwest::StatusCode as S;
        assert_eq!(classify(S::CREATED, None, r#"{"id":"p1"}"#).unwrap()["id"], "p1");
        assert!(matches!(
            classify(S::TOO_MANY_REQUESTS, Some("3"), ""),
            Err(TransportError::Retryable { retry_after: Some(d), .. }) if d.as_secs() == 3
        ));
        assert!(matches!(
            classify(S::UNAUTHORIZED, None, r#"{"message":"Invalid or expired session"}"#),
            Err(TransportError::Permanent(_))
        ));
        assert!(matches!(
            classify(S::BAD_GATEWAY, None, ""),
            Err(TransportError::Retryable { .. })
        ));
    }
}
