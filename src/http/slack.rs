//! Slack's interactions: a click on a message's button, `POST /api/inbound/slack/interactions/`
//! (the app's Interactivity Request URL). The request is Slack's only if its
//! `X-Slack-Signature` is the HMAC-SHA256 of `v0:<X-Slack-Request-Timestamp>:<body>` with the
//! signing secret, and its timestamp is within 5 minutes of the hub's clock; anything else is
//! 403. The clicker is the hub user whose verified `slack` address is their member id; the
//! button names one of their own notifications, and acts on it by the rules of the REST
//! actions: Acknowledge (read, on the timeline as via `slack`), Start work, Resolve (finish
//! work), Approve. A click acts once, keyed by its `trigger_id`, however often it arrives and
//! on whichever node. What it came to is told to the clicker alone, through the click's
//! `response_url` (only one on Slack's hooks host or on `--slack-api-url`'s).

use crate::replies::Click;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

pub use crate::channels::slack::{SlackInbound, INTERACTIONS};

/// Slack's interactions are a few kilobytes; past this, the request is refused.
const MOST_BYTES: usize = 64 * 1024;

/// How far a request's timestamp may be from the hub's clock.
const FRESH_FOR: i64 = 5 * 60;

/// The parts of an interaction payload the hub reads.
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: SlackUser,
    #[serde(default)]
    actions: Vec<Clicked>,
    #[serde(default)]
    trigger_id: String,
    response_url: Option<String>,
}

#[derive(Deserialize)]
struct SlackUser {
    id: String,
}

#[derive(Deserialize)]
struct Clicked {
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// Whether `given` is Slack's signature of this request, and the request is fresh.
fn verified(secret: &str, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), &'static str> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let timestamp = header("x-slack-request-timestamp");
    let Ok(at) = timestamp.parse::<i64>() else {
        return Err("The request has no timestamp.");
    };
    if (now - at).abs() > FRESH_FOR {
        return Err("The request is stale.");
    }
    let expected = crate::channels::slack::signature(secret, timestamp, body);
    let given = header("x-slack-signature");
    match crate::secret::constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        true => Ok(()),
        false => Err("The request is not signed by Slack."),
    }
}

/// A click on a button of a message the hub sent.
pub async fn interactions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(slack) = state.slack.clone() else {
        return plain(
            StatusCode::NOT_FOUND,
            "Slack interactions need --slack-bot-token and --slack-signing-secret.",
        );
    };
    if body.len() > MOST_BYTES {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
    }
    let now = chrono::Utc::now().timestamp();
    if let Err(why) = verified(&slack.signing_secret, &headers, &body, now) {
        metrics::counter!("tickethub_inbound_refused_total", "provider" => "slack").increment(1);
        return plain(StatusCode::FORBIDDEN, why);
    }
    #[derive(Deserialize)]
    struct Form {
        payload: String,
    }
    let Ok(form) = serde_urlencoded::from_bytes::<Form>(&body) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "The body is not a form with a payload.",
        );
    };
    let Ok(payload) = serde_json::from_str::<Payload>(&form.payload) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "The payload is not an interaction.",
        );
    };
    // Link buttons (Open) are told too; only the hub's own actions do something.
    let Some(click) = payload.actions.first() else {
        return StatusCode::OK.into_response();
    };
    if payload.kind != "block_actions" || click.action_id == "open" {
        return StatusCode::OK.into_response();
    }
    let click = Click {
        via: "slack",
        member: &payload.user.id,
        trigger: &payload.trigger_id,
        action: &click.action_id,
        notification: click.value.as_deref(),
    };
    let answer = match crate::replies::clicked(&state, click).await {
        Ok(answer) => answer,
        Err(e) => {
            // Slack shows the clicker an error; nothing was kept for this click.
            tracing::warn!(error = %e, "cannot act on a Slack click");
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is unavailable; try again shortly.",
            );
        }
    };
    if let Some(url) = payload.response_url.filter(|u| followed(u, &slack)) {
        tokio::spawn(async move {
            let told = serde_json::json!({
                "response_type": "ephemeral",
                "replace_original": false,
                "text": answer,
            });
            if let Err(e) = slack.client.post(&url).json(&told).send().await {
                tracing::warn!(error = %e, "cannot answer a Slack click");
            }
        });
    }
    StatusCode::OK.into_response()
}

/// Whether a click's `response_url` is one to post to: https on Slack's hooks host, or on
/// the host of `--slack-api-url` (a stand-in's).
fn followed(url: &str, slack: &SlackInbound) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    match url.host_str() {
        Some("hooks.slack.com") => url.scheme() == "https",
        Some(host) => slack.api_host.as_deref() == Some(host),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_verified_by_signature_and_time() {
        let body = b"payload=%7B%7D";
        let headers = |ts: &str, sig: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-slack-request-timestamp", ts.parse().unwrap());
            h.insert("x-slack-signature", sig.parse().unwrap());
            h
        };
        let good = crate::channels::slack::signature("s3cret", "1000", body);
        assert_eq!(
            verified("s3cret", &headers("1000", &good), body, 1100),
            Ok(())
        );
        assert_eq!(
            verified(
                "s3cret",
                &headers("1000", &good),
                body,
                1000 + FRESH_FOR + 1
            ),
            Err("The request is stale.")
        );
        assert_eq!(
            verified("other", &headers("1000", &good), body, 1000),
            Err("The request is not signed by Slack.")
        );
        assert_eq!(
            verified("s3cret", &headers("1000", &good), b"payload=%7B%7D ", 1000),
            Err("The request is not signed by Slack.")
        );
        assert_eq!(
            verified("s3cret", &headers("", &good), body, 1000),
            Err("The request has no timestamp.")
        );
    }
}
