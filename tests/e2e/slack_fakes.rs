//! A Slack Web API stand-in on a random port. `chat.postMessage` is checked the way Slack
//! checks it: a bot token as `Authorization: Bearer` (`not_authed` without one,
//! `invalid_auth` for another), a JSON body, a `channel` that is a member of the workspace
//! (`channel_not_found`), and Block Kit's limits (`invalid_blocks`: at most 50 blocks, a
//! section's text at most 3,000 characters, a button's label 75, its value 2,000, its url
//! 3,000; at most 25 elements in an actions block; `text` at most 40,000). Slack answers
//! HTTP 200 with `{"ok": false, "error"}` for these, and 429 with `Retry-After` when rate
//! limited (scripted here). It also takes the posts to a click's `response_url`
//! (`/hooks/response/<n>`), and signs clicks for the hub as Slack would.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::harness::patience;

/// The app's bot token.
pub const BOT_TOKEN: &str = "xoxb-1111-2222-tickethubtest";
/// The app's signing secret.
pub const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// The workspace's members.
pub const ANN: &str = "U0ANN0001";
pub const BOB: &str = "U0BOB0002";
pub const CAROL: &str = "U0CAR0003";
/// A channel of the workspace the app is in.
pub const CHANNEL: &str = "C0PROJ0001";

/// One `chat.postMessage` the stand-in received.
#[derive(Clone, Debug)]
pub struct Posted {
    /// When it arrived.
    pub at: std::time::Instant,
    pub authorization: Option<String>,
    pub body: Value,
    /// The error it was refused with, if it was.
    pub refused: Option<String>,
}

impl Posted {
    /// The buttons' action ids, in order.
    pub fn actions(&self) -> Vec<String> {
        self.blocks()
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
            .map(|e| e["action_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The button of this action.
    pub fn button(&self, action: &str) -> Value {
        self.blocks()
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
            .find(|e| e["action_id"] == action)
            .unwrap_or_else(|| panic!("no {action} button in {}", self.body))
    }

    /// The section's text.
    pub fn text(&self) -> String {
        self.blocks()[0]["text"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The context line.
    pub fn context(&self) -> String {
        self.blocks()
            .iter()
            .find(|b| b["type"] == "context")
            .map(|b| {
                b["elements"][0]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_default()
    }

    fn blocks(&self) -> Vec<Value> {
        self.body["blocks"].as_array().cloned().unwrap_or_default()
    }
}

/// The stand-in.
#[derive(Clone)]
pub struct Slack {
    pub addr: SocketAddr,
    /// Rate limits to answer next, by their `Retry-After`.
    limited: Arc<Mutex<VecDeque<u64>>>,
    posted: Arc<Mutex<Vec<Posted>>>,
    /// The `chat.update`s received.
    updated: Arc<Mutex<Vec<Posted>>>,
    /// The messages deleted in the workspace, by ts.
    deleted: Arc<Mutex<Vec<String>>>,
    answers: Arc<Mutex<Vec<Value>>>,
    arrived: Arc<Notify>,
    clicks: Arc<std::sync::atomic::AtomicU64>,
}

impl Slack {
    pub async fn start() -> Slack {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let slack = Slack {
            addr: listener.local_addr().unwrap(),
            limited: Arc::default(),
            posted: Arc::default(),
            updated: Arc::default(),
            deleted: Arc::default(),
            answers: Arc::default(),
            arrived: Arc::default(),
            clicks: Arc::default(),
        };
        let app = Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .route("/api/chat.update", post(update_message))
            .route(
                "/api/users.lookupByEmail",
                axum::routing::get(lookup_by_email),
            )
            .route("/hooks/response/{n}", post(response))
            .fallback(|| async { Json(json!({"ok": false, "error": "unknown_method"})) })
            .with_state(slack.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        slack
    }

    /// Points a hub's Slack channel at this stand-in, with buttons.
    pub fn configure(&self, c: &mut tickethub::ServeConfig) {
        c.channels.slack.slack_api_url = format!("http://{}/api", self.addr);
        c.channels.slack.slack_bot_token = Some(BOT_TOKEN.into());
        c.channels.slack.slack_signing_secret = Some(SIGNING_SECRET.into());
    }

    /// Answers the next posts that pass the checks 429 with these `Retry-After`s.
    pub fn rate_limit(&self, retry_after: impl IntoIterator<Item = u64>) {
        self.limited.lock().unwrap().extend(retry_after);
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.posted.lock().unwrap().clone()
    }

    /// Waits until at least `n` posts arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Posted> {
        self.until(|s| s.posted.lock().unwrap().len() >= n).await;
        self.posted()
    }

    /// Waits until at least `n` answers to clicks arrived; answers their texts.
    pub async fn answers(&self, n: usize) -> Vec<String> {
        self.until(|s| s.answers.lock().unwrap().len() >= n).await;
        let answers = self.answers.lock().unwrap().clone();
        for a in &answers {
            assert_eq!(a["response_type"], "ephemeral", "{a}");
        }
        answers
            .iter()
            .map(|a| a["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Someone deletes the message of this `ts` in Slack.
    pub fn delete(&self, ts: &str) {
        self.deleted.lock().unwrap().push(ts.to_owned());
    }

    /// The `chat.update`s received.
    pub fn updated(&self) -> Vec<Posted> {
        self.updated.lock().unwrap().clone()
    }

    /// Waits until `done` holds.
    pub async fn until(&self, done: impl Fn(&Slack) -> bool) {
        tokio::time::timeout(patience(), async {
            loop {
                let notified = self.arrived.notified();
                if done(self) {
                    return;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "Slack did not get it: {:?}; answers {:?}",
                self.posted(),
                self.answers.lock().unwrap()
            )
        })
    }

    /// The form Slack posts when `member` clicks `action` (value `value`) on a message, with a
    /// fresh `trigger_id` and a `response_url` on this stand-in.
    pub fn click(&self, member: &str, action: &str, value: &str) -> String {
        let n = self
            .clicks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let payload = json!({
            "type": "block_actions",
            "user": { "id": member, "username": member.to_lowercase(), "team_id": "T0TEST" },
            "api_app_id": "A0TICKETHUB",
            "team": { "id": "T0TEST", "domain": "test" },
            "trigger_id": format!("{n}.1234.abcdef{n}"),
            "response_url": format!("http://{}/hooks/response/{n}", self.addr),
            "actions": [{
                "action_id": action, "block_id": "tickethub", "value": value,
                "type": "button", "action_ts": "1700000000.000100",
            }],
        });
        serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
    }
}

/// Posts `form` to the hub's interactions endpoint, signed with `secret` at `timestamp`
/// (`None`: unsigned); answers the status.
pub async fn deliver(
    hub: &crate::harness::TestHub,
    form: &str,
    signed: Option<(&str, i64)>,
) -> u16 {
    let mut request = reqwest::Client::new()
        .post(hub.url(tickethub::http::slack::INTERACTIONS))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    if let Some((secret, at)) = signed {
        let at = at.to_string();
        request = request.header("x-slack-request-timestamp", &at).header(
            "x-slack-signature",
            tickethub::channels::slack::signature(secret, &at, form.as_bytes()),
        );
    }
    request.send().await.unwrap().status().as_u16()
}

/// Why Block Kit refuses these blocks, if it does.
fn invalid_blocks(blocks: &Value) -> Option<String> {
    let blocks = blocks.as_array()?;
    if blocks.len() > 50 {
        return Some("more than 50 blocks".into());
    }
    let long = |v: &Value, max: usize| v.as_str().is_some_and(|s| s.chars().count() > max);
    for block in blocks {
        match block["type"].as_str() {
            Some("section") if long(&block["text"]["text"], 3000) => {
                return Some("a section's text is over 3000 characters".into())
            }
            Some("section" | "context") => {}
            Some("actions") => {
                let elements = block["elements"].as_array().cloned().unwrap_or_default();
                if elements.len() > 25 {
                    return Some("more than 25 elements".into());
                }
                for e in elements {
                    if e["type"] != "button"
                        || long(&e["text"]["text"], 75)
                        || long(&e["value"], 2000)
                        || long(&e["url"], 3000)
                        || long(&e["action_id"], 255)
                    {
                        return Some(format!("a bad button: {e}"));
                    }
                }
            }
            other => return Some(format!("a block of type {other:?}")),
        }
    }
    None
}

async fn post_message(State(slack): State<Slack>, headers: HeaderMap, body: String) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json_body = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let refused = match authorization.as_deref() {
        None => Some("not_authed".to_owned()),
        Some(a) if a != format!("Bearer {BOT_TOKEN}") => Some("invalid_auth".to_owned()),
        _ if !json_body || !parsed.is_object() => Some("invalid_arguments".to_owned()),
        _ if ![ANN, BOB, CAROL, CHANNEL]
            .contains(&parsed["channel"].as_str().unwrap_or_default()) =>
        {
            Some("channel_not_found".to_owned())
        }
        _ if parsed["text"]
            .as_str()
            .is_some_and(|t| t.chars().count() > 40_000) =>
        {
            Some("msg_too_long".to_owned())
        }
        _ => invalid_blocks(&parsed["blocks"]).map(|why| format!("invalid_blocks: {why}")),
    };
    let limited = match refused {
        None => slack.limited.lock().unwrap().pop_front(),
        Some(_) => None,
    };
    let n = {
        let mut posted = slack.posted.lock().unwrap();
        posted.push(Posted {
            at: std::time::Instant::now(),
            authorization,
            body: parsed.clone(),
            refused: refused
                .clone()
                .or(limited.map(|_| "ratelimited".to_owned())),
        });
        posted.len()
    };
    slack.arrived.notify_waiters();
    if let Some(retry_after) = limited {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", retry_after.to_string())],
            Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response();
    }
    match refused {
        Some(error) => {
            let code = error.split(':').next().unwrap_or_default().to_owned();
            Json(json!({"ok": false, "error": code})).into_response()
        }
        None => {
            let channel = match parsed["channel"].as_str().unwrap_or_default() {
                CHANNEL => CHANNEL.to_owned(),
                member => format!("D{}", &member[1..]),
            };
            Json(json!({
                "ok": true,
                "channel": channel,
                "ts": format!("1700000000.{n:06}"),
                "message": { "text": parsed["text"], "blocks": parsed["blocks"] },
            }))
            .into_response()
        }
    }
}

async fn response(
    State(slack): State<Slack>,
    Path(_n): Path<u64>,
    Json(body): Json<Value>,
) -> Response {
    slack.answers.lock().unwrap().push(body);
    slack.arrived.notify_waiters();
    Json(json!({"ok": true})).into_response()
}

/// `chat.update`: the same checks as a post, and a `ts` of a message posted in the channel
/// (`message_not_found` otherwise).
async fn update_message(State(slack): State<Slack>, headers: HeaderMap, body: String) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let posted = |p: &Posted| {
        p.refused.is_none()
            && p.body["channel"] == parsed["channel"]
            && p.body.get("thread_ts").is_none()
    };
    let n = slack
        .posted
        .lock()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, p)| posted(p))
        .map(|(i, _)| format!("1700000000.{:06}", i + 1))
        .any(|ts| parsed["ts"] == ts && !slack.deleted.lock().unwrap().contains(&ts));
    let refused = match authorization.as_deref() {
        None => Some("not_authed".to_owned()),
        Some(a) if a != format!("Bearer {BOT_TOKEN}") => Some("invalid_auth".to_owned()),
        _ if !parsed.is_object() => Some("invalid_arguments".to_owned()),
        _ if !n => Some("message_not_found".to_owned()),
        _ => invalid_blocks(&parsed["blocks"]).map(|why| format!("invalid_blocks: {why}")),
    };
    slack.updated.lock().unwrap().push(Posted {
        at: std::time::Instant::now(),
        authorization,
        body: parsed.clone(),
        refused: refused.clone(),
    });
    slack.arrived.notify_waiters();
    match refused {
        Some(error) => {
            let code = error.split(':').next().unwrap_or_default().to_owned();
            Json(json!({"ok": false, "error": code})).into_response()
        }
        None => Json(json!({"ok": true, "channel": parsed["channel"], "ts": parsed["ts"]}))
            .into_response(),
    }
}

/// `users.lookupByEmail`: the workspace's people by email (`ann@example.test` is Ann; `robo@`
/// a bot, `gone@` a deactivated member), `users_not_found` for anyone else.
async fn lookup_by_email(
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {BOT_TOKEN}"))
    {
        return Json(json!({"ok": false, "error": "not_authed"})).into_response();
    }
    let user = match q.get("email").map(String::as_str) {
        Some("ann@example.test") => json!({"id": ANN, "deleted": false, "is_bot": false}),
        Some("robo@example.test") => json!({"id": "U0ROBO004", "deleted": false, "is_bot": true}),
        Some("gone@example.test") => json!({"id": "U0GONE005", "deleted": true, "is_bot": false}),
        Some(_) => return Json(json!({"ok": false, "error": "users_not_found"})).into_response(),
        None => return Json(json!({"ok": false, "error": "invalid_arguments"})).into_response(),
    };
    Json(json!({"ok": true, "user": user})).into_response()
}
