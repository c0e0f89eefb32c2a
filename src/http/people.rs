//! Getting people in without the command line: accounts an admin makes, passwords an admin
//! resets, invitation links an admin sends (each makes one account, with a role, in a
//! project), and requests to join a project that signed-up people make and admins decide.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tickethub_actors::domain::{NewUser, ProjectId, Role, UserId};
use tickethub_actors::ports::{Invitation, JoinRequest, NewInvitation, ProfileChanges, StoreError};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::addresses::is_plausible_email;
use super::auth::{check_password, hashed};
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, ClientIp, Json, Query};
use super::openapi::RoleName;
use super::users::{check_display_name, validate_username, UserOut};
use crate::state::AppState;
use crate::wire::timestamp;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(reset_password))
        .routes(routes!(list_invitations, invite))
        .routes(routes!(revoke_invitation))
        .routes(routes!(invitation))
        .routes(routes!(accept_invitation))
        .routes(routes!(list_join_requests, ask_to_join))
        .routes(routes!(approve_join_request))
        .routes(routes!(decline_join_request))
}

fn role_of(raw: &str) -> Result<Role, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request(format!("role: \"{raw}\" is not a valid choice.")))
}

/// A taken username, in the words of a form.
fn taken(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(_) => {
            ApiError::bad_request("username: A user with that username already exists.")
        }
        other => other.into(),
    }
}

/// An account an admin makes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewUserIn)]
pub(crate) struct CreateUserIn {
    /// 1 to 150 letters, digits and `@.+-_`.
    #[schema(min_length = 1, max_length = 150, pattern = r"^[\w.@+-]+$")]
    username: String,
    /// 8 to 128 characters; the person changes it on their settings page.
    #[schema(min_length = 8, max_length = 128, format = Password)]
    password: String,
    /// The role.
    #[schema(value_type = RoleName)]
    role: String,
    /// The name shown to others, at most 150 characters.
    #[serde(default)]
    #[schema(max_length = 150)]
    display_name: Option<String>,
    /// An email address, taken as verified (the admin vouches for it).
    #[serde(default)]
    #[schema(format = Email)]
    email: Option<String>,
}

/// Makes an account (admins).
#[utoipa::path(
    post,
    path = "/api/users/",
    operation_id = "users_create",
    tag = "users",
    request_body = CreateUserIn,
    responses(
        (status = 201, description = "The new account.", body = UserOut),
        (status = 400, description = "A field is invalid (the detail names it), or the username is taken.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 503, description = "Password hashing is busy; try again.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateUserIn>,
) -> Result<(StatusCode, Json<UserOut>), ApiError> {
    caller.admin_only("make accounts")?;
    let username = body.username.trim().to_owned();
    validate_username(&username)?;
    check_password("password", &body.password)?;
    let role = role_of(&body.role)?;
    let display_name = body.display_name.unwrap_or_default().trim().to_owned();
    check_display_name(&display_name)?;
    let email = body.email.filter(|e| !e.trim().is_empty());
    if email.as_deref().is_some_and(|e| !is_plausible_email(e)) {
        return Err(ApiError::bad_request("email: Enter a valid email address."));
    }
    let new = NewUser {
        display_name,
        email,
        ..NewUser::new(username, role, hashed(&state, body.password).await?)
    };
    let user = state.store.create_user(new).await.map_err(taken)?;
    tracing::info!(
        user_id = user.id.0,
        by = caller.0.id.0,
        "account made by an admin"
    );
    Ok((StatusCode::CREATED, Json(UserOut::from(&user))))
}

/// A new password an admin sets.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetPasswordIn {
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128, format = Password)]
    new_password: String,
}

/// Sets a person's password (admins): every token they hold ends and their sockets close
/// with 4001; they log in with the new one (and change it on their settings page).
#[utoipa::path(
    post,
    path = "/api/users/{id}/password/",
    operation_id = "users_reset_password",
    tag = "users",
    params(("id" = i64, Path, description = "The user's id.")),
    request_body = ResetPasswordIn,
    responses(
        (status = 204, description = "Set; their sessions ended."),
        (status = 400, description = "The password is too short or too long, or it is the caller's own (changed at `/api/users/me/password/`).", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
        (status = 503, description = "Password hashing is busy; try again.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<ResetPasswordIn>,
) -> Result<StatusCode, ApiError> {
    caller.admin_only("set other people's passwords")?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    if id == caller.0.id.0 {
        return Err(ApiError::bad_request(
            "Change your own password with POST /api/users/me/password/, which asks for the current one.",
        ));
    }
    check_password("new_password", &body.new_password)?;
    let target = state
        .store
        .user_by_id(UserId(id))
        .await?
        .ok_or_else(ApiError::not_found)?;
    let changes = ProfileChanges {
        password_hash: Some(hashed(&state, body.new_password).await?),
        by: Some(caller.label()),
        ..Default::default()
    };
    state
        .store
        .update_profile(target.id, changes)
        .await?
        .ok_or_else(ApiError::not_found)?;
    tracing::info!(user_id = id, by = caller.0.id.0, "password set by an admin");
    state.hub.sessions_ended(target.id);
    Ok(StatusCode::NO_CONTENT)
}

/// An invitation as admins see it.
#[derive(Serialize, ToSchema)]
#[schema(as = Invitation)]
pub struct InvitationOut {
    /// Its id.
    id: i64,
    /// Whom it was sent to.
    email: String,
    /// The account's role.
    #[schema(value_type = RoleName)]
    role: &'static str,
    /// The project the account joins.
    project: Option<i64>,
    /// Its name.
    project_name: Option<String>,
    /// The admin who sent it.
    created_by: i64,
    /// When.
    #[schema(format = DateTime)]
    created_at: String,
    /// Until when it may be used.
    #[schema(format = DateTime)]
    expires_at: String,
    /// `pending`, `accepted`, `revoked` or `expired`.
    status: &'static str,
    /// The account it made.
    accepted_user: Option<i64>,
    /// The link that accepts it, shown once (in the answer that makes it); null afterwards.
    url: Option<String>,
}

fn invitation_out(i: &Invitation, url: Option<String>) -> InvitationOut {
    InvitationOut {
        id: i.id,
        email: i.email.clone(),
        role: i.role.as_str(),
        project: i.project.map(|p| p.0),
        project_name: i.project_name.clone(),
        created_by: i.created_by.0,
        created_at: timestamp(i.created_at),
        expires_at: timestamp(i.expires_at),
        status: i.status(chrono::Utc::now()),
        accepted_user: i.accepted_user.map(|u| u.0),
        url,
    }
}

/// An invitation to send.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InviteIn {
    /// Whom to invite.
    #[schema(format = Email)]
    email: String,
    /// The account's role (default `client`).
    #[serde(default)]
    #[schema(value_type = Option<RoleName>)]
    role: Option<String>,
    /// The project the account joins.
    #[serde(default)]
    project: Option<i64>,
    /// Days the link works, 1 to 30 (default 7).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 30)]
    expires_in_days: Option<i64>,
}

/// The SHA-256 of a link's token: what the database keeps.
fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Invites someone (admins): the answer carries the link, once. Whoever opens it makes one
/// account with the role, in the project, even where sign-up is closed.
#[utoipa::path(
    post,
    path = "/api/admin/invitations/",
    operation_id = "admin_invitations_create",
    tag = "admin",
    request_body = InviteIn,
    responses(
        (status = 201, description = "The invitation, with its link.", body = InvitationOut),
        (status = 400, description = "A field is invalid (the detail names it), or the project does not exist.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<InviteIn>,
) -> Result<(StatusCode, Json<InvitationOut>), ApiError> {
    caller.admin_only("invite people")?;
    let email = body.email.trim().to_owned();
    if !is_plausible_email(&email) {
        return Err(ApiError::bad_request("email: Enter a valid email address."));
    }
    let role = role_of(body.role.as_deref().unwrap_or("client"))?;
    let days = body.expires_in_days.unwrap_or(7);
    if !(1..=30).contains(&days) {
        return Err(ApiError::bad_request("expires_in_days: Give 1 to 30 days."));
    }
    let project = match body.project {
        Some(id) => Some(
            state
                .store
                .project_by_id(ProjectId(id))
                .await?
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "project: Invalid pk \"{id}\" - object does not exist."
                    ))
                })?
                .id,
        ),
        None => None,
    };
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let now = chrono::Utc::now();
    let new = NewInvitation {
        token_hash: token_hash(&token),
        email,
        role,
        project,
        created_by: caller.0.id,
        expires_at: now + chrono::TimeDelta::days(days),
    };
    let stored = state.store.add_invitation(new, now).await?;
    let url = format!(
        "{}/#/invite/{token}",
        state.public_url.as_deref().unwrap_or_default()
    );
    tracing::info!(
        invitation = stored.id,
        by = caller.0.id.0,
        "invitation made"
    );
    Ok((
        StatusCode::CREATED,
        Json(invitation_out(&stored, Some(url))),
    ))
}

/// The newest invitations (admins), at most 200.
#[utoipa::path(
    get,
    path = "/api/admin/invitations/",
    operation_id = "admin_invitations_list",
    tag = "admin",
    responses(
        (status = 200, description = "The invitations, newest first.", body = Vec<InvitationOut>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_invitations(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<InvitationOut>>, ApiError> {
    caller.admin_only("see invitations")?;
    let list = state.store.invitations(200).await?;
    Ok(Json(list.iter().map(|i| invitation_out(i, None)).collect()))
}

/// Takes back a pending invitation (admins): its link stops working.
#[utoipa::path(
    delete,
    path = "/api/admin/invitations/{id}/",
    operation_id = "admin_invitations_revoke",
    tag = "admin",
    params(("id" = i64, Path, description = "The invitation's id.")),
    responses(
        (status = 204, description = "Taken back."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 404, description = "No pending invitation with this id.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn revoke_invitation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.admin_only("take back invitations")?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    if state
        .store
        .revoke_invitation(id, chrono::Utc::now())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// What an invitation's link offers, as its page shows it before sign-up.
#[derive(Serialize, ToSchema)]
pub struct InvitationOffer {
    /// Whom it was sent to.
    email: String,
    /// The account's role.
    #[schema(value_type = RoleName)]
    role: &'static str,
    /// The project the account joins: its key.
    project_key: Option<String>,
    /// Its name.
    project_name: Option<String>,
    /// Until when the link works.
    #[schema(format = DateTime)]
    expires_at: String,
}

const USED: &str =
    "This invitation was used, taken back or has run out; ask an admin for a new one.";

/// What an invitation offers (no login: the link is the proof).
#[utoipa::path(
    get,
    path = "/api/invitations/{token}/",
    operation_id = "invitations_detail",
    tag = "auth",
    params(("token" = String, Path, description = "The token of the invitation's link.")),
    responses(
        (status = 200, description = "What the invitation offers.", body = InvitationOffer),
        (status = 404, description = "No such invitation, or it was used, taken back or has run out.", body = ErrorBody),
    )
)]
async fn invitation(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<InvitationOffer>, ApiError> {
    let found = state
        .store
        .invitation_by_token(&token_hash(&token))
        .await?
        .filter(|i| i.status(chrono::Utc::now()) == "pending")
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, USED))?;
    let project_key = match found.project {
        Some(p) => state.store.project_by_id(p).await?.map(|p| p.key),
        None => None,
    };
    Ok(Json(InvitationOffer {
        email: found.email,
        role: found.role.as_str(),
        project_key,
        project_name: found.project_name,
        expires_at: timestamp(found.expires_at),
    }))
}

/// The account an invitation makes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcceptIn {
    /// 1 to 150 letters, digits and `@.+-_`.
    #[schema(min_length = 1, max_length = 150, pattern = r"^[\w.@+-]+$")]
    username: String,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128, format = Password)]
    password: String,
    /// The name shown to others, at most 150 characters.
    #[serde(default)]
    #[schema(max_length = 150)]
    display_name: Option<String>,
}

/// Makes the account an invitation offers (no login: the link is the proof), once; then log
/// in with it. Works where sign-up is closed.
#[utoipa::path(
    post,
    path = "/api/invitations/{token}/accept/",
    operation_id = "invitations_accept",
    tag = "auth",
    params(("token" = String, Path, description = "The token of the invitation's link.")),
    request_body = AcceptIn,
    responses(
        (status = 201, description = "The new account.", body = UserOut),
        (status = 400, description = "A field is invalid (the detail names it), or the username is taken.", body = ErrorBody),
        (status = 404, description = "No such invitation, or it was used, taken back or has run out.", body = ErrorBody),
        (status = 429, description = "Too many sign-ups from this address.", body = ErrorBody),
        (status = 503, description = "Password hashing is busy; try again.", body = ErrorBody),
    )
)]
async fn accept_invitation(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(token): Path<String>,
    Json(body): Json<AcceptIn>,
) -> Result<(StatusCode, Json<UserOut>), ApiError> {
    state.limits.register(ip)?;
    let username = body.username.trim().to_owned();
    validate_username(&username)?;
    check_password("password", &body.password)?;
    let display_name = body.display_name.unwrap_or_default().trim().to_owned();
    check_display_name(&display_name)?;
    let hash = token_hash(&token);
    let pending = state
        .store
        .invitation_by_token(&hash)
        .await?
        .filter(|i| i.status(chrono::Utc::now()) == "pending")
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, USED))?;
    let password_hash = hashed(&state, body.password).await?;
    // One of two racing acceptances wins; the other is told the link is used.
    let claimed = state
        .store
        .claim_invitation(&hash, chrono::Utc::now())
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, USED))?;
    let new = NewUser {
        display_name,
        email: Some(pending.email.clone()).filter(|e| !e.is_empty()),
        ..NewUser::new(username, claimed.role, password_hash)
    };
    let user = match state.store.register_user(new).await {
        Ok(user) => user,
        Err(e) => {
            // The link stays good for another try.
            state.store.release_invitation(claimed.id).await?;
            return Err(taken(e));
        }
    };
    state.store.invitation_accepted(claimed.id, user.id).await?;
    tracing::info!(
        user_id = user.id.0,
        invitation = claimed.id,
        "invitation accepted"
    );
    // The address is theirs to prove, as at sign-up.
    state.verifier.start_all(&user).await;
    Ok((StatusCode::CREATED, Json(UserOut::from(&user))))
}

/// A request to join a project.
#[derive(Serialize, ToSchema)]
#[schema(as = JoinRequest)]
pub struct JoinRequestOut {
    /// Its id.
    id: i64,
    /// The project.
    project: i64,
    /// Its key.
    project_key: String,
    /// Its name.
    project_name: String,
    /// Who asks.
    user: i64,
    /// Their username.
    username: String,
    /// Their name.
    user_name: String,
    /// What they wrote.
    message: String,
    /// When.
    #[schema(format = DateTime)]
    created_at: String,
    /// `waiting`, `approved` or `declined`.
    status: &'static str,
    /// When an admin decided.
    #[schema(format = DateTime)]
    decided_at: Option<String>,
}

fn join_out(j: &JoinRequest) -> JoinRequestOut {
    JoinRequestOut {
        id: j.id,
        project: j.project.0,
        project_key: j.project_key.clone(),
        project_name: j.project_name.clone(),
        user: j.user.0,
        username: j.username.clone(),
        user_name: j.user_name.clone(),
        message: j.message.clone(),
        created_at: timestamp(j.created_at),
        status: match j.approved {
            None => "waiting",
            Some(true) => "approved",
            Some(false) => "declined",
        },
        decided_at: j.decided_at.map(timestamp),
    }
}

/// A request to join.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AskIn {
    /// The project's key (`WEB`), as a colleague would tell it.
    project: String,
    /// A few words for the admins, at most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct JoinListParams {
    status: Option<String>,
}

/// Which join requests to list.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub(crate) enum JoinRequestFilter {
    /// Those an admin has not decided.
    Waiting,
    /// Every one.
    All,
}

/// Join requests: an admin sees everyone's, others their own; `?status=waiting` (the default
/// for admins) or `all`.
#[utoipa::path(
    get,
    path = "/api/join-requests/",
    operation_id = "join_requests_list",
    tag = "projects",
    params(("status" = Option<JoinRequestFilter>, Query, description = "`waiting` or `all`.")),
    responses(
        (status = 200, description = "The requests, newest first (at most 200).", body = Vec<JoinRequestOut>),
        (status = 400, description = "An unknown status.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_join_requests(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<JoinListParams>,
) -> Result<Json<Vec<JoinRequestOut>>, ApiError> {
    let admin = caller.is_admin();
    let waiting = match params.status.as_deref() {
        None => admin,
        Some("waiting") => true,
        Some("all") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status: \"{other}\" is not a valid choice (waiting, all)."
            )))
        }
    };
    let whose = (!admin).then_some(caller.0.id);
    let list = state.store.join_requests(whose, waiting, 200).await?;
    Ok(Json(list.iter().map(join_out).collect()))
}

/// Asks to join a project, by its key; the admins decide.
#[utoipa::path(
    post,
    path = "/api/join-requests/",
    operation_id = "join_requests_create",
    tag = "projects",
    request_body = AskIn,
    responses(
        (status = 201, description = "The request, waiting.", body = JoinRequestOut),
        (status = 400, description = "The message is too long.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "An API key asks (a person asks for themselves).", body = ErrorBody),
        (status = 404, description = "No project has this key.", body = ErrorBody),
        (status = 409, description = "The caller is a member already, or asked already and waits.", body = ErrorBody),
        (status = 429, description = "Too many changes from this user in a minute.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn ask_to_join(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<AskIn>,
) -> Result<(StatusCode, Json<JoinRequestOut>), ApiError> {
    if caller.1.is_some() {
        return Err(ApiError::forbidden(
            "An API key cannot ask to join a project.",
        ));
    }
    let message = body.message.unwrap_or_default().trim().to_owned();
    if message.chars().count() > 500 {
        return Err(ApiError::bad_request("message: At most 500 characters."));
    }
    let key = body.project.trim().to_ascii_uppercase();
    let project = state.store.project_by_key(&key).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No project has the key {key}."),
        )
    })?;
    if project.member_ids.contains(&caller.0.id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("You are a member of {key} already."),
        ));
    }
    state.limits.write(caller.0.id)?;
    let asked = state
        .store
        .add_join_request(project.id, caller.0.id, &message, chrono::Utc::now())
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                format!("You asked to join {key} already; an admin will answer."),
            ),
            other => other.into(),
        })?;
    tracing::info!(
        request = asked.id,
        user_id = caller.0.id.0,
        "asked to join a project"
    );
    Ok((StatusCode::CREATED, Json(join_out(&asked))))
}

async fn decide(
    state: &AppState,
    caller: &Caller,
    id: &str,
    approve: bool,
) -> Result<Json<JoinRequestOut>, ApiError> {
    caller.admin_only("decide join requests")?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    match state
        .store
        .decide_join_request(id, approve, caller.0.id, chrono::Utc::now())
        .await
    {
        Ok(Some(decided)) => Ok(Json(join_out(&decided))),
        Ok(None) => Err(ApiError::not_found()),
        Err(StoreError::Conflict(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "This request was decided already.",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Approves a waiting request (admins): the person joins the project.
#[utoipa::path(
    post,
    path = "/api/join-requests/{id}/approve/",
    operation_id = "join_requests_approve",
    tag = "projects",
    params(("id" = i64, Path, description = "The request's id.")),
    responses(
        (status = 200, description = "Approved.", body = JoinRequestOut),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 404, description = "No such request.", body = ErrorBody),
        (status = 409, description = "It was decided already.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn approve_join_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JoinRequestOut>, ApiError> {
    decide(&state, &caller, &id, true).await
}

/// Declines a waiting request (admins).
#[utoipa::path(
    post,
    path = "/api/join-requests/{id}/decline/",
    operation_id = "join_requests_decline",
    tag = "projects",
    params(("id" = i64, Path, description = "The request's id.")),
    responses(
        (status = 200, description = "Declined.", body = JoinRequestOut),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 404, description = "No such request.", body = ErrorBody),
        (status = 409, description = "It was decided already.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn decline_join_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JoinRequestOut>, ApiError> {
    decide(&state, &caller, &id, false).await
}
