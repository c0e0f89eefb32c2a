//! Mattermost's interactive buttons: a click is posted by the Mattermost server to
//! `POST /api/inbound/mattermost/actions/` as JSON (`user_id`, `trigger_id`, and the button's
//! integration `context`: the action, the notification, and the action token the hub put
//! there, which Mattermost keeps on the server). Without that token the request is refused with
//! 403. The clicker is the hub user whose verified `mattermost` address is `user_id`; the click
//! acts as on Slack (see `crate::replies::clicked`), once, and its answer is shown to the
//! clicker alone (`ephemeral_text`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::replies::Click;
use crate::state::AppState;

pub use crate::channels::mattermost::ACTIONS;

/// A click's request is a few hundred bytes; past this, it is refused.
const MOST_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
struct Request {
    user_id: String,
    #[serde(default)]
    trigger_id: String,
    #[serde(default)]
    post_id: String,
    context: Context,
}

#[derive(Deserialize)]
struct Context {
    action: String,
    notification: String,
    token: String,
}

fn refused(status: StatusCode, detail: &str) -> Response {
    (status, Json(serde_json::json!({ "detail": detail }))).into_response()
}

/// A click on a button of a post the hub made.
pub async fn actions(State(state): State<AppState>, body: Bytes) -> Response {
    let Some(expected) = state.mattermost_action_token.clone() else {
        return refused(
            StatusCode::NOT_FOUND,
            "Mattermost buttons need --mattermost-url, --mattermost-bot-token and --mattermost-action-token.",
        );
    };
    if body.len() > MOST_BYTES {
        return refused(StatusCode::PAYLOAD_TOO_LARGE, "The request is too large.");
    }
    let Ok(request) = serde_json::from_slice::<Request>(&body) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "The body is not a Mattermost action.",
        );
    };
    if !crate::secret::constant_time_eq(expected.as_bytes(), request.context.token.as_bytes()) {
        metrics::counter!("tickethub_inbound_refused_total", "provider" => "mattermost")
            .increment(1);
        return refused(StatusCode::FORBIDDEN, "The action token is not this hub's.");
    }
    // Older servers send no trigger id: the post, the clicker and the action stand for it.
    let trigger = match request.trigger_id.is_empty() {
        false => request.trigger_id.clone(),
        true => format!(
            "{}:{}:{}",
            request.post_id, request.user_id, request.context.action
        ),
    };
    let click = Click {
        via: "mattermost",
        member: &request.user_id,
        trigger: &trigger,
        action: &request.context.action,
        notification: Some(&request.context.notification),
    };
    match crate::replies::clicked(&state, click).await {
        Ok(answer) => Json(serde_json::json!({ "ephemeral_text": answer })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot act on a Mattermost click");
            refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is unavailable; try again shortly.",
            )
        }
    }
}
