//! One-click unsubscribe (RFC 8058): the link in a notification email's `List-Unsubscribe`,
//! `/unsubscribe/?token=`. A mail client POSTs `List-Unsubscribe=One-Click` to it, and the
//! type's email is off for that person at once, with no login: the token (see
//! `crate::channels::email::UnsubscribeKey`) names that person and type and can do nothing
//! else. Opening the link (a `GET`, as mail scanners do) changes nothing: its page's button
//! confirms.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tickethub_actors::domain::UserId;
use tickethub_actors::ports::StoreError;
use tickethub_actors::routing::Channel;

use super::extract::ClientIp;
use super::verify::{escape, html};
use crate::state::AppState;

pub use crate::channels::email::unsubscribe::PATH;

/// The page routes.
pub fn pages() -> axum::Router<AppState> {
    axum::Router::new().route(PATH, axum::routing::get(page).post(unsubscribe))
}

/// The link's token.
#[derive(Deserialize)]
struct Link {
    #[serde(default)]
    token: String,
}

fn gone() -> Response {
    html(
        StatusCode::BAD_REQUEST,
        "<h1>This link does not work</h1><p>It is not one tickethub made. Switch emails off in tickethub's notification settings instead.</p>".into(),
    )
}

/// `GET /unsubscribe/?token=`: says what the button will do.
async fn page(State(state): State<AppState>, Query(link): Query<Link>) -> Response {
    let Some(key) = &state.unsubscribe else {
        return gone();
    };
    let Ok((_, kind)) = key.check(&link.token) else {
        return gone();
    };
    html(
        StatusCode::OK,
        format!(
            "<h1>Stop these emails?</h1><p>tickethub will stop emailing you <strong>{}</strong> notifications. You will still see them in the app, and can switch them back on in your notification settings.</p>\
             <form method=\"post\" action=\"{PATH}?token={}\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form>",
            escape(&kind),
            escape(&link.token),
        ),
    )
}

/// `POST /unsubscribe/?token=`: the mail client's one click, or the page's button.
async fn unsubscribe(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Query(link): Query<Link>,
) -> Response {
    if state.limits.refresh(ip).is_err() {
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            "<h1>Not now</h1><p>Try again in a minute.</p>".into(),
        );
    }
    let Some(key) = &state.unsubscribe else {
        return gone();
    };
    let Ok((user, kind)) = key.check(&link.token) else {
        metrics::counter!("tickethub_unsubscribes_total", "outcome" => "refused").increment(1);
        return gone();
    };
    let switch = [(kind.clone(), Channel::Email, false)];
    // A digest's link stops the digest.
    let done = match kind.as_str() {
        crate::delivery::templates::DIGEST => stop_digest(&state, UserId(user)).await,
        _ => state.store.set_preferences(UserId(user), &switch).await,
    };
    match done {
        Ok(()) => {
            tracing::info!(user, kind = %kind, "unsubscribed from a type's email");
            metrics::counter!("tickethub_unsubscribes_total", "outcome" => "done").increment(1);
            html(
                StatusCode::OK,
                format!(
                    "<h1>Unsubscribed</h1><p>tickethub will not email you <strong>{}</strong> notifications any more. You will still see them in the app.</p>",
                    escape(&kind)
                ),
            )
        }
        // The person was erased since.
        Err(StoreError::NotFound(_)) => gone(),
        Err(e) => {
            tracing::error!(error = %e, "cannot unsubscribe");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                "<h1>Not now</h1><p>tickethub cannot do this at the moment; try again soon.</p>"
                    .into(),
            )
        }
    }
}

/// Stops a person's digest.
async fn stop_digest(state: &AppState, user: UserId) -> Result<(), StoreError> {
    let mut quiet = state.store.quiet(user).await?;
    quiet.digest = None;
    state.store.set_quiet(user, quiet).await
}
