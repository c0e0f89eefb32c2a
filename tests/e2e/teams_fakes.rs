//! A Microsoft Teams Workflows webhook stand-in on a random port: `POST /workflows/<name>`
//! takes what a "When a Teams webhook request is received" trigger takes, and checks it as
//! Teams does: a JSON body of at most 28 KB, a `message` whose attachments are Adaptive Cards
//! (`application/vnd.microsoft.card.adaptive`, `type: AdaptiveCard`, a version, a body);
//! 400 otherwise, 404 for a workflow that does not exist, 202 when taken. It records the
//! cards by workflow.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::harness::patience;

/// The most bytes Teams takes in a message.
const MOST_BYTES: usize = 28 * 1024;

/// The workflows that exist.
pub const WORKFLOWS: [&str; 2] = ["ann-chat", "ops-channel"];

/// The stand-in.
#[derive(Clone)]
pub struct Teams {
    pub addr: SocketAddr,
    cards: Arc<Mutex<Vec<(String, Value)>>>,
    arrived: Arc<Notify>,
}

impl Teams {
    pub async fn start() -> Teams {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let teams = Teams {
            addr: listener.local_addr().unwrap(),
            cards: Arc::default(),
            arrived: Arc::default(),
        };
        let app = Router::new()
            .route("/workflows/{name}", post(take))
            .with_state(teams.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        teams
    }

    /// A workflow's URL.
    pub fn url(&self, workflow: &str) -> String {
        format!(
            "http://{}/workflows/{workflow}?api-version=2016-06-01&sig=s3cr3t",
            self.addr
        )
    }

    /// Turns Teams on in a hub, posting to this stand-in's host.
    pub fn configure(&self, c: &mut tickethub::ServeConfig) {
        c.channels.teams.teams = true;
        c.channels.teams.teams_webhook_hosts = vec!["127.0.0.1".into()];
    }

    /// Waits until `workflow` has at least `n` cards; answers them (the Adaptive Cards).
    pub async fn wait_for(&self, workflow: &str, n: usize) -> Vec<Value> {
        let cards = || -> Vec<Value> {
            self.cards
                .lock()
                .unwrap()
                .iter()
                .filter(|(w, _)| w == workflow)
                .map(|(_, c)| c.clone())
                .collect()
        };
        tokio::time::timeout(patience(), async {
            loop {
                let notified = self.arrived.notified();
                let got = cards();
                if got.len() >= n {
                    return got;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} cards did not reach {workflow}: {:?}", cards()))
    }
}

/// Why Teams refuses this message, if it does.
fn refused(message: &Value) -> Option<&'static str> {
    if message["type"] != "message" {
        return Some("not a message");
    }
    let attachments = message["attachments"].as_array()?;
    if attachments.is_empty() {
        return Some("no attachment");
    }
    for a in attachments {
        let card = &a["content"];
        if a["contentType"] != "application/vnd.microsoft.card.adaptive"
            || card["type"] != "AdaptiveCard"
            || !card["version"].is_string()
            || !card["body"].is_array()
        {
            return Some("not an Adaptive Card");
        }
    }
    None
}

async fn take(
    State(teams): State<Teams>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !WORKFLOWS.contains(&name.as_str()) {
        return (StatusCode::NOT_FOUND, "The workflow does not exist.").into_response();
    }
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !json || body.len() > MOST_BYTES {
        return (StatusCode::BAD_REQUEST, "Not JSON, or too large.").into_response();
    }
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(why) = refused(&message).or(message.is_null().then_some("not JSON")) {
        return (StatusCode::BAD_REQUEST, why).into_response();
    }
    let card = message["attachments"][0]["content"].clone();
    teams.cards.lock().unwrap().push((name, card));
    teams.arrived.notify_waiters();
    StatusCode::ACCEPTED.into_response()
}
