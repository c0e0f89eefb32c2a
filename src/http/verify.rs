//! Verifying the addresses people type for themselves (see `crate::verification`):
//! `POST /api/users/me/verify/` with the code sent, `POST /api/users/me/verify/send/` for a new
//! one, and the email's link, `/verify/?token=`, a page whose button confirms.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tickethub_actors::ports::{Checked, Started};
use tickethub_actors::routing::Channel;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, ClientIp, Json};
use super::users::UserOut;
use crate::state::AppState;
use crate::verification::channel_named;

/// The routes of this module; the page routes are [`pages`].
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify))
        .routes(routes!(send_code))
        .routes(routes!(slack_lookup))
}

/// The link's page: `GET /verify/` shows a button, `POST /verify/` confirms.
pub fn pages() -> axum::Router<AppState> {
    axum::Router::new().route("/verify/", axum::routing::get(page).post(confirm_page))
}

/// The channel whose address a request is about.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelIn {
    /// A personal channel: `email`, `whatsapp`, `sms`, `voice`, …
    #[schema(value_type = String, example = "sms")]
    channel: String,
}

/// A code to check.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeIn {
    /// A personal channel: `email`, `whatsapp`, `sms`, `voice`, …
    #[schema(value_type = String, example = "sms")]
    channel: String,
    /// The six digits the message carried.
    #[schema(example = "042917")]
    code: String,
}

/// A code was sent.
#[derive(Serialize, ToSchema)]
pub(crate) struct SentOut {
    /// What happened, for people.
    detail: String,
}

fn channel(name: &str) -> Result<Channel, ApiError> {
    channel_named(name).ok_or_else(|| {
        let names: Vec<String> = crate::verification::channels()
            .iter()
            .map(|c| format!("`{}`", c.as_str()))
            .collect();
        ApiError::bad_request(format!("channel: One of {}.", names.join(", ")))
    })
}

/// Checks the code sent to one of the caller's addresses: right, the address is verified and
/// messages go to it from now on.
#[utoipa::path(
    post,
    path = "/api/users/me/verify/",
    operation_id = "users_me_verify",
    tag = "users",
    request_body = CodeIn,
    responses(
        (status = 200, description = "Verified: the caller, as they are now.", body = UserOut),
        (status = 400, description = "Not the code (the detail says how many tries are left), no code is pending (it expired, was tried too often, or the address changed since), or an unknown channel.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 429, description = "Too many writes.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CodeIn>,
) -> Result<Json<UserOut>, ApiError> {
    state.limits.write(caller.0.id)?;
    let channel = channel(&body.channel)?;
    if !crate::verification::is_code(&body.code) {
        return Err(ApiError::bad_request(
            "code: The six digits the message carried.",
        ));
    }
    checked(
        state
            .verifier
            .check(caller.0.id, channel, &body.code)
            .await?,
        channel,
    )
    .map(|user| Json(UserOut::from(&user)))
}

/// What a check came to, for the API.
fn checked(outcome: Checked, channel: Channel) -> Result<tickethub_actors::domain::User, ApiError> {
    match outcome {
        Checked::Verified(user) => Ok(*user),
        Checked::Wrong { left } => Err(ApiError::bad_request(format!(
            "code: Not the code sent to your {} address; {left} tries left.",
            channel.as_str()
        ))),
        Checked::NoCode => Err(ApiError::bad_request(format!(
            "code: No code is pending for your {} address (it expired, was tried too often, or the address changed): ask for a new one with POST /api/users/me/verify/send/.",
            channel.as_str()
        ))),
    }
}

/// Sends a new code to one of the caller's unverified addresses (one a minute, five a day; an
/// address receives five a day whoever asks).
#[utoipa::path(
    post,
    path = "/api/users/me/verify/send/",
    operation_id = "users_me_verify_send",
    tag = "users",
    request_body = ChannelIn,
    responses(
        (status = 202, description = "A code is on its way.", body = SentOut),
        (status = 400, description = "An unknown channel, no such address, or the hub does not send on that channel.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 409, description = "The address is verified already.", body = ErrorBody),
        (status = 429, description = "Not yet: `Retry-After` says when.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn send_code(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ChannelIn>,
) -> Result<(StatusCode, Json<SentOut>), ApiError> {
    state.limits.write(caller.0.id)?;
    let channel = channel(&body.channel)?;
    if !state.verifier.can_send(channel) {
        return Err(ApiError::bad_request(format!(
            "channel: This hub does not send on {}.",
            channel.as_str()
        )));
    }
    match state.verifier.start(&caller.0, channel).await? {
        Started::Send => Ok((
            StatusCode::ACCEPTED,
            Json(SentOut {
                detail: format!("A code is on its way to your {} address.", channel.as_str()),
            }),
        )),
        Started::Later { at } => {
            let wait = (at - chrono::Utc::now()).num_seconds().max(1) as u64;
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("A code was sent lately; ask again in {wait} seconds."),
            )
            .retry_after(wait))
        }
        Started::NoAddress => Err(ApiError::bad_request(format!(
            "channel: You have no {} address.",
            channel.as_str()
        ))),
        Started::Verified => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Your {} address is verified already.", channel.as_str()),
        )),
        // Why is not said: the address may be someone else's.
        Started::Suppressed { .. } => Err(ApiError::bad_request(format!(
            "channel: Your {} address cannot take messages (it bounced, or was reported); an admin can take it off the suppression list.",
            channel.as_str()
        ))),
    }
}

/// Finds the caller in the Slack workspace by their verified email address
/// (`users.lookupByEmail`) and makes that member id their `slack` address, verified: the
/// workspace vouches for the email, the hub for the caller's.
#[utoipa::path(
    post,
    path = "/api/users/me/slack/lookup/",
    operation_id = "users_me_slack_lookup",
    tag = "users",
    responses(
        (status = 200, description = "Found: the caller as `GET /api/users/me/` shows them, with their `slack` address.", body = super::users::MeOut),
        (status = 400, description = "Slack is off, or the caller has no verified email address.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No active member of the workspace has the caller's email address.", body = ErrorBody),
        (status = 429, description = "Too many writes.", body = ErrorBody),
        (status = 503, description = "Slack did not answer; try again.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn slack_lookup(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<super::users::MeOut>, ApiError> {
    state.limits.write(caller.0.id)?;
    let Some(members) = state.slack_members.clone() else {
        return Err(ApiError::bad_request("This hub does not send to Slack."));
    };
    let email = match caller.0.address(Channel::Email) {
        Some(a) if a.verified_at.is_some() && a.invalid_at.is_none() => a.address.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "You have no verified email address to look you up by; set your Slack member id instead.",
            ))
        }
    };
    let member = match members.by_email(&email).await {
        Ok(Some(member)) => member,
        Ok(None) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "No one in the Slack workspace has your email address; set your Slack member id instead.",
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot look a member up in Slack");
            return Err(ApiError::unavailable("Slack did not answer; try again shortly."));
        }
    };
    let changes = tickethub_actors::ports::ProfileChanges {
        addresses: vec![(
            Channel::stored("slack").expect("a registered channel"),
            Some(member),
        )],
        vouched: true,
        ..Default::default()
    };
    let user = state
        .store
        .update_profile(caller.0.id, changes)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(super::users::MeOut::of(&state, &user).await?))
}

/// The link's field: the token the email carried.
#[derive(Deserialize)]
struct LinkIn {
    token: String,
}

/// Text for an HTML page: `&`, `<`, `>`, `"` and `'` escaped.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// One of the hub's small pages (a link's confirmation): `body` in the page's frame, never
/// cached, framed or sent with a referrer.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>tickethub</title><link rel=\"stylesheet\" href=\"/assets/app.css\"></head><body><main class=\"verify\">{body}</main></body></html>"
    );
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
            (REFERRER_POLICY, "no-referrer"),
            (
                CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
        ],
        page,
    )
        .into_response()
}

/// `GET /verify/?token=`: the email's link. Opening it changes nothing (mail scanners open
/// links); its button confirms.
async fn page(axum::extract::Query(link): axum::extract::Query<LinkIn>) -> Response {
    html(
        StatusCode::OK,
        format!(
            "<h1>Confirm your address</h1><p>Confirm that this email address is yours, so that tickethub may send to it.</p>\
             <form method=\"post\" action=\"/verify/\"><input type=\"hidden\" name=\"token\" value=\"{}\"><button type=\"submit\">Confirm</button></form>",
            escape(&link.token),
        ),
    )
}

/// `POST /verify/`: the link's button. The token is the proof (128 random bits, stored
/// hashed); tries are counted per client address, as logins are.
async fn confirm_page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    axum::Form(link): axum::Form<LinkIn>,
) -> Response {
    if state.limits.refresh(ip).is_err() {
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            "<h1>Not now</h1><p>Try again in a minute.</p>".into(),
        );
    }
    match state.verifier.check_link(&link.token).await {
        Ok(Checked::Verified(_)) => html(
            StatusCode::OK,
            "<h1>Confirmed</h1><p>tickethub will send to this address from now on. You may close this page.</p>".into(),
        ),
        Ok(_) => html(
            StatusCode::BAD_REQUEST,
            "<h1>This link no longer works</h1><p>It expired, or a newer code was sent. Ask tickethub for a new one.</p>".into(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot check a verification link");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                "<h1>Not now</h1><p>tickethub cannot check this link at the moment; try again soon.</p>".into(),
            )
        }
    }
}
