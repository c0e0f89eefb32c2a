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

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tickethub_actors::domain::{IdempotencyMark, UserId};
use tickethub_actors::ports::{IdempotencyClaim, Replyable, StoreError};
use tickethub_actors::routing::Channel;
use tickethub_actors::ticket_domain::Action;

use crate::replies::{acknowledge, on_ticket, Acted};
use crate::state::AppState;

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
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    match a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 {
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
    let answer = match once(&state, &payload, click).await {
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

/// The answer to this click: the one kept, if it was handled before (on any node); else acts
/// on it and keeps the answer.
async fn once(state: &AppState, payload: &Payload, click: &Clicked) -> Result<String, StoreError> {
    let slack = Channel::stored("slack").expect("the slack channel is registered");
    let user = match state
        .store
        .users_with_address(slack, &payload.user.id)
        .await?
        .as_slice()
    {
        [one] => *one,
        [] => {
            return Ok(
                "Your Slack account is not linked to anyone in tickethub: add your member id to your profile there."
                    .into(),
            )
        }
        _ => {
            return Ok(
                "Your Slack account is linked to several people in tickethub; act in the app."
                    .into(),
            )
        }
    };
    let mark = IdempotencyMark {
        caller: format!("user:{}", user.0),
        key: format!("slack:{}", payload.trigger_id),
    };
    // The same click handled elsewhere at this moment: its answer is waited for, within
    // Slack's 3 s.
    let mut waits = 0;
    loop {
        let now = state.store.now();
        match state
            .store
            .claim_idempotency(&mark, "slack click", now, now + state.idempotency_lease)
            .await?
        {
            IdempotencyClaim::Claimed => break,
            IdempotencyClaim::Answered { body, .. } => return Ok(body),
            IdempotencyClaim::Committed { .. } => return Ok("Done already.".into()),
            IdempotencyClaim::InProgress if waits < 20 => {
                waits += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            IdempotencyClaim::InProgress | IdempotencyClaim::Mismatch => {
                return Ok("This click is being handled.".into())
            }
        }
    }
    match act(state, user, click, mark.clone()).await {
        Ok(said) => {
            state.store.answer_idempotency(&mark, 200, &said).await?;
            metrics::counter!("tickethub_inbound_replies_total", "channel" => "slack").increment(1);
            Ok(said)
        }
        Err(e) => {
            let _ = state.store.release_idempotency(&mark).await;
            Err(e)
        }
    }
}

/// Runs the click's action as `user` on their notification; says what it came to.
async fn act(
    state: &AppState,
    user: UserId,
    click: &Clicked,
    mark: IdempotencyMark,
) -> Result<String, StoreError> {
    let id = click.value.as_deref().and_then(|v| v.parse::<i64>().ok());
    let found = match id {
        Some(id) => state.store.notification(user, id).await?,
        None => None,
    };
    let Some(n) = found else {
        return Ok("This notification is not yours, or is gone.".into());
    };
    let is_page = tickethub_actors::reply::is_page(&n);
    let page = Replyable::from(n);
    let action = match click.action_id.as_str() {
        "ack" => {
            return Ok(match acknowledge(state, user, &page, "slack").await? {
                true => format!("Acknowledged \"{}\".", page.title),
                false => format!("\"{}\" was acknowledged already.", page.title),
            })
        }
        "start_work" => Action::StartWork,
        "finish_work" => Action::FinishWork,
        "approve" => Action::Approve,
        _ => return Ok("tickethub does not know this button.".into()),
    };
    let Some(person) = state.store.user_by_id(user).await? else {
        return Ok("This notification is not yours, or is gone.".into());
    };
    let said = match on_ticket(state, &person, &page, action, Some(mark)).await? {
        Acted::Done(done) => done,
        Acted::Refused(why) => why,
    };
    // Acting on a page's ticket answers the page too.
    if is_page {
        acknowledge(state, user, &page, "slack").await?;
    }
    Ok(said)
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
