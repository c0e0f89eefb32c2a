//! A Mattermost server stand-in (REST API v4) on a random port. It checks what Mattermost
//! checks: the bot's token as `Authorization: Bearer` (401 otherwise), a direct channel made
//! of the bot and a user of the server (400 for an unknown user), a post to a channel that
//! exists (403 otherwise), a message of at most 16,383 characters, and buttons whose ids are
//! letters and digits with an integration URL. It records the posts, and makes the request
//! its server would post to a button's integration URL when a user clicks it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::harness::patience;

/// The bot's access token.
pub const BOT_TOKEN: &str = "mm-bot-token-4f2k9x";
/// The token the hub puts in its buttons.
pub const ACTION_TOKEN: &str = "mm-action-token-0123456789";
/// The bot's user id.
pub const BOT: &str = "b0tb0tb0tb0tb0tb0tb0tb0t01";
/// The server's users.
pub const ANN: &str = "annannannannannannannann01";
pub const BOB: &str = "bobbobbobbobbobbobbobbob02";
/// A channel the bot is in.
pub const ROOM: &str = "roomroomroomroomroomroom01";

fn error(status: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        Json(json!({"id": "app_error", "message": message, "status_code": status})),
    )
        .into_response()
}

/// The stand-in.
#[derive(Clone)]
pub struct Mattermost {
    pub addr: SocketAddr,
    posts: Arc<Mutex<Vec<Value>>>,
    arrived: Arc<Notify>,
}

impl Mattermost {
    pub async fn start() -> Mattermost {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mm = Mattermost {
            addr: listener.local_addr().unwrap(),
            posts: Arc::default(),
            arrived: Arc::default(),
        };
        let app = Router::new()
            .route("/api/v4/users/me", get(me))
            .route("/api/v4/channels/direct", post(direct))
            .route("/api/v4/posts", post(create_post))
            .route("/api/v4/posts/{id}/patch", axum::routing::put(patch_post))
            .fallback(|| async { error(404, "Sorry, we could not find the page.") })
            .with_state(mm.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        mm
    }

    /// Points a hub's Mattermost channel at this stand-in, with buttons.
    pub fn configure(&self, c: &mut tickethub::ServeConfig) {
        c.channels.mattermost.mattermost_url = Some(format!("http://{}", self.addr));
        c.channels.mattermost.mattermost_bot_token = Some(BOT_TOKEN.into());
        c.channels.mattermost.mattermost_action_token = Some(ACTION_TOKEN.into());
    }

    /// Waits until at least `n` posts were made.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        tokio::time::timeout(patience(), async {
            loop {
                let notified = self.arrived.notified();
                if self.posts.lock().unwrap().len() >= n {
                    return self.posts.lock().unwrap().clone();
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} posts did not come: {:?}", self.posts.lock().unwrap()))
    }

    /// What the server posts to a button's integration URL when `user` clicks the button
    /// `id` of `post`: its URL and body.
    pub fn click(post: &Value, id: &str, user: &str, trigger: &str) -> (String, Value) {
        let button = post["props"]["attachments"][0]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no button {id} in {post}"))
            .clone();
        let url = button["integration"]["url"].as_str().unwrap().to_owned();
        let body = json!({
            "user_id": user,
            "user_name": "someone",
            "channel_id": post["channel_id"],
            "team_id": "",
            "post_id": post["id"],
            "trigger_id": trigger,
            "type": "",
            "data_source": "",
            "context": button["integration"]["context"],
        });
        (url, body)
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {BOT_TOKEN}"))
}

async fn me(headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return error(401, "Invalid or expired session, please login again.");
    }
    Json(json!({"id": BOT, "username": "tickethub", "is_bot": true})).into_response()
}

async fn direct(headers: HeaderMap, Json(ids): Json<Vec<String>>) -> Response {
    if !authorized(&headers) {
        return error(401, "Invalid or expired session, please login again.");
    }
    let known = |id: &String| [BOT, ANN, BOB].contains(&id.as_str());
    if ids.len() != 2 || !ids.iter().all(known) || !ids.iter().any(|i| i == BOT) {
        return error(400, "Invalid or missing user_id in request body.");
    }
    let other = ids.iter().find(|i| *i != BOT).unwrap_or(&ids[0]);
    (
        StatusCode::CREATED,
        Json(json!({"id": format!("dm{}", &other[..24]), "type": "D"})),
    )
        .into_response()
}

async fn create_post(
    State(mm): State<Mattermost>,
    headers: HeaderMap,
    Json(post): Json<Value>,
) -> Response {
    if !authorized(&headers) {
        return error(401, "Invalid or expired session, please login again.");
    }
    let channel = post["channel_id"].as_str().unwrap_or_default();
    if channel != ROOM
        && ![ANN, BOB]
            .iter()
            .any(|u| channel == format!("dm{}", &u[..24]))
    {
        return error(403, "You do not have the appropriate permissions.");
    }
    if post["message"].as_str().unwrap_or_default().chars().count() > 16_383 {
        return error(400, "Invalid message.");
    }
    if let Some(root) = post["root_id"].as_str() {
        let known = mm.posts.lock().unwrap().iter().any(|p| p["id"] == root);
        if !known {
            return error(400, "Invalid RootId parameter.");
        }
    }
    for attachment in post["props"]["attachments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        for action in attachment["actions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let id = action["id"].as_str().unwrap_or_default();
            if id.is_empty()
                || !id.chars().all(|c| c.is_ascii_alphanumeric())
                || !action["integration"]["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("http"))
            {
                return error(400, "Invalid post action.");
            }
        }
    }
    let mut stored = post.clone();
    let id = {
        let mut posts = mm.posts.lock().unwrap();
        let id = format!("post{:022}", posts.len());
        stored["id"] = json!(id);
        posts.push(stored.clone());
        id
    };
    mm.arrived.notify_waiters();
    let _ = id;
    (StatusCode::CREATED, Json(stored)).into_response()
}

/// `PUT /api/v4/posts/{id}/patch`: a post of the bot's that exists (404 otherwise) takes the
/// patch's message and props; the patch is recorded as a post with `patched` set.
async fn patch_post(
    State(mm): State<Mattermost>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(patch): Json<Value>,
) -> Response {
    if !authorized(&headers) {
        return error(401, "Invalid or expired session, please login again.");
    }
    let mut posts = mm.posts.lock().unwrap();
    let Some(original) = posts.iter().find(|p| p["id"] == id.as_str()).cloned() else {
        return error(404, "Unable to find the existing post.");
    };
    let mut patched = original.clone();
    patched["message"] = patch["message"].clone();
    patched["props"] = patch["props"].clone();
    patched["patched"] = json!(true);
    posts.push(patched.clone());
    drop(posts);
    mm.arrived.notify_waiters();
    Json(patched).into_response()
}
