//! Authentication and the caller's profile: login, refresh, register, `me`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use tickethub_actors::domain::{NewUser, Role, User};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Caller, Json};
use super::openapi::{ErrorBody, RoleName};
use super::AppState;
use crate::auth::{self, TokenType};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login/", post(login))
        .route("/api/auth/refresh/", post(refresh))
        .route("/api/auth/register/", post(register))
        .route("/api/users/me/", get(me).patch(update_me))
        .route("/api/users/", get(list_users))
}

/// A user as the API shows it.
#[derive(Serialize, Debug, ToSchema)]
#[schema(as = User)]
pub struct UserOut {
    /// The user's id.
    id: i64,
    /// The login name.
    username: String,
    /// The name shown to others (the username when none is set).
    display_name: String,
    /// The email address.
    #[schema(required = true)]
    email: Option<String>,
    /// The WhatsApp number, in international format.
    #[schema(required = true)]
    whatsapp_number: Option<String>,
    /// The role.
    #[schema(value_type = RoleName)]
    role: &'static str,
    /// Whether the user is a super admin.
    is_superuser: bool,
    /// Whether the account is active.
    is_active: bool,
    /// When the account was created.
    #[schema(format = DateTime)]
    date_joined: String,
}

impl From<&User> for UserOut {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.0,
            username: u.username.clone(),
            display_name: u.name().to_owned(),
            email: u.email.clone(),
            whatsapp_number: u.whatsapp_number.clone(),
            role: u.role.as_str(),
            is_superuser: u.is_superuser,
            is_active: u.is_active,
            date_joined: super::timestamp(u.created_at),
        }
    }
}

/// Credentials.
#[derive(Deserialize, ToSchema)]
#[schema(as = Login)]
struct LoginIn {
    /// The login name.
    username: String,
    /// The password.
    #[schema(format = Password)]
    password: String,
}

/// A token pair.
#[derive(Serialize, ToSchema)]
#[schema(as = TokenPair)]
struct TokensOut {
    /// An access token, for `Authorization: Bearer`.
    access: String,
    /// A refresh token, for `POST /api/auth/refresh/`.
    refresh: String,
}

/// Logs in with a username and password.
#[utoipa::path(
    post,
    path = "/api/auth/login/",
    operation_id = "auth_login",
    tag = "auth",
    request_body = LoginIn,
    responses(
        (status = 200, description = "An access and a refresh token.", body = TokensOut),
        (status = 400, description = "The body is not valid JSON of this shape.", body = ErrorBody),
        (status = 401, description = "No active account has these credentials.", body = ErrorBody),
        (status = 503, description = "This hub verifies tokens from an identity provider and issues none.", body = ErrorBody),
    )
)]
async fn login(
    State(state): State<AppState>,
    Json(body): Json<LoginIn>,
) -> Result<Json<TokensOut>, ApiError> {
    let found = state.store.user_with_hash(&body.username).await?;
    // Verify against a dummy hash for unknown users, so that timing does not reveal them.
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, state.dummy_hash.to_string()),
    };
    let ok = auth::verify_password(body.password, hash).await;
    match user {
        Some(user) if ok && user.is_active => {
            let pair = state.auth.issue_pair(user.id).ok_or_else(cannot_issue)?;
            Ok(Json(TokensOut {
                access: pair.access,
                refresh: pair.refresh,
            }))
        }
        _ => Err(ApiError::unauthorized(
            "No active account found with the given credentials",
        )),
    }
}

/// A refresh token.
#[derive(Deserialize, ToSchema)]
#[schema(as = Refresh)]
struct RefreshIn {
    /// The refresh token from `POST /api/auth/login/`.
    refresh: String,
}

/// A new access token.
#[derive(Serialize, ToSchema)]
#[schema(as = AccessToken)]
struct AccessOut {
    /// An access token, for `Authorization: Bearer`.
    access: String,
}

/// Trades a refresh token for a new access token.
#[utoipa::path(
    post,
    path = "/api/auth/refresh/",
    operation_id = "auth_refresh",
    tag = "auth",
    request_body = RefreshIn,
    responses(
        (status = 200, description = "A new access token.", body = AccessOut),
        (status = 400, description = "The body is not valid JSON of this shape.", body = ErrorBody),
        (status = 401, description = "The token is invalid, expired or not a refresh token, or its user is inactive.", body = ErrorBody),
        (status = 503, description = "This hub verifies tokens from an identity provider and issues none.", body = ErrorBody),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshIn>,
) -> Result<Json<AccessOut>, ApiError> {
    let verified = state
        .auth
        .verify(&body.refresh, TokenType::Refresh)
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    match state.store.user_by_id(verified.user_id).await? {
        Some(user) if user.is_active => Ok(Json(AccessOut {
            access: state.auth.issue_access(user.id).ok_or_else(cannot_issue)?,
        })),
        _ => Err(ApiError::unauthorized("User not found or inactive.")),
    }
}

fn cannot_issue() -> ApiError {
    ApiError::unavailable("This hub verifies tokens from an identity provider and issues none.")
}

/// A new client account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Registration)]
struct RegisterIn {
    /// 1 to 150 letters, digits and `@.+-_`.
    #[schema(max_length = 150)]
    username: String,
    /// At least 8 characters.
    #[schema(min_length = 8, format = Password)]
    password: String,
    /// An email address.
    #[serde(default)]
    email: Option<String>,
    /// The name shown to others.
    #[serde(default)]
    display_name: Option<String>,
    /// A WhatsApp number in international format, e.g. `+15551234567`.
    #[serde(default)]
    whatsapp_number: Option<String>,
}

/// Registers a client account and tells the super admins (`user_registered`).
#[utoipa::path(
    post,
    path = "/api/auth/register/",
    operation_id = "auth_register",
    tag = "auth",
    request_body = RegisterIn,
    responses(
        (status = 201, description = "The new client.", body = UserOut),
        (status = 400, description = "A field is invalid, or the username is taken.", body = ErrorBody),
    )
)]
async fn register(
    State(state): State<AppState>,
    Json(body): Json<RegisterIn>,
) -> Result<(StatusCode, Json<UserOut>), ApiError> {
    let username = body.username.trim().to_owned();
    validate_username(&username)?;
    if body.password.chars().count() < 8 {
        return Err(ApiError::bad_request(
            "password: This password is too short. It must contain at least 8 characters.",
        ));
    }
    let email = body.email.filter(|e| !e.trim().is_empty());
    if let Some(email) = &email {
        if !is_plausible_email(email) {
            return Err(ApiError::bad_request("email: Enter a valid email address."));
        }
    }
    let whatsapp_number = body.whatsapp_number.filter(|n| !n.trim().is_empty());
    if let Some(n) = &whatsapp_number {
        if !is_plausible_phone(n) {
            return Err(ApiError::bad_request(
                "whatsapp_number: Enter a number in international format, e.g. +15551234567.",
            ));
        }
    }
    let new = NewUser {
        display_name: body.display_name.unwrap_or_default().trim().to_owned(),
        username,
        email,
        whatsapp_number,
        role: Role::Client,
        is_superuser: false,
        password_hash: auth::hash_password(body.password).await,
    };
    let user = state.store.create_user(new).await.map_err(|e| match e {
        tickethub_actors::ports::StoreError::Conflict(_) => {
            ApiError::bad_request("username: A user with that username already exists.")
        }
        other => other.into(),
    })?;
    tracing::info!(user_id = user.id.0, "client registered");
    let data = serde_json::json!({
        "user_id": user.id.0,
        "username": user.username,
        "user_email": user.email,
        "user_full_name": user.name(),
        "user_role": user.role.as_str(),
    });
    // The account exists either way; a failed notice is logged, not reported to the client.
    if let Err(e) = state.hub.user_registered(&user, data.to_string()).await {
        tracing::error!(error = %e, "cannot notify super admins of a registration");
    }
    Ok((StatusCode::CREATED, Json(UserOut::from(&user))))
}

#[derive(Deserialize)]
struct UsersQuery {
    #[serde(default)]
    role: Option<String>,
}

/// Lists users, optionally of one role: everyone for admins; for others, the people who share
/// a project with them (so a client can see who works on their tickets).
#[utoipa::path(
    get,
    path = "/api/users/",
    operation_id = "users_list",
    tag = "users",
    params(("role" = Option<RoleName>, Query, description = "Only users of this role.")),
    responses(
        (status = 200, description = "Active users the caller may see.", body = Vec<UserOut>),
        (status = 400, description = "The role is unknown.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    super::extract::Query(q): super::extract::Query<UsersQuery>,
) -> Result<Json<Vec<UserOut>>, ApiError> {
    let role = q
        .role
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse::<Role>()
                .map_err(|e| ApiError::bad_request(format!("role: {e}")))
        })
        .transpose()?;
    let mut users = state.store.list_users().await?;
    if !caller.is_admin() {
        let mut visible: Vec<_> = state
            .store
            .list_projects(Some(caller.0.id))
            .await?
            .into_iter()
            .flat_map(|p| p.member_ids)
            .collect();
        visible.push(caller.0.id);
        users.retain(|u| visible.contains(&u.id));
    }
    Ok(Json(
        users
            .iter()
            .filter(|u| u.is_active && role.is_none_or(|r| u.role == r))
            .map(UserOut::from)
            .collect(),
    ))
}

/// The caller's profile.
#[utoipa::path(
    get,
    path = "/api/users/me/",
    operation_id = "users_me",
    tag = "users",
    responses(
        (status = 200, description = "The caller.", body = UserOut),
        (status = 401, description = "No valid access token.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn me(caller: Caller) -> Json<UserOut> {
    Json(UserOut::from(&caller.0))
}

/// Changes to the caller's profile; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProfileChanges)]
struct ProfileIn {
    /// The name shown to others, at most 150 characters.
    #[serde(default)]
    #[schema(max_length = 150)]
    display_name: Option<String>,
    /// An email address; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    email: Option<Option<String>>,
    /// A WhatsApp number in international format; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    whatsapp_number: Option<Option<String>>,
}

/// Tells a field that is absent (`None`) from one that is `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Changes the caller's profile.
#[utoipa::path(
    patch,
    path = "/api/users/me/",
    operation_id = "users_me_update",
    tag = "users",
    request_body = ProfileIn,
    responses(
        (status = 200, description = "The caller, changed.", body = UserOut),
        (status = 400, description = "A field is invalid or unknown.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn update_me(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ProfileIn>,
) -> Result<Json<UserOut>, ApiError> {
    let email = body.email.map(|e| e.filter(|e| !e.trim().is_empty()));
    if let Some(Some(e)) = &email {
        if !is_plausible_email(e) {
            return Err(ApiError::bad_request("email: Enter a valid email address."));
        }
    }
    let whatsapp_number = body
        .whatsapp_number
        .map(|n| n.filter(|n| !n.trim().is_empty()));
    if let Some(Some(n)) = &whatsapp_number {
        if !is_plausible_phone(n) {
            return Err(ApiError::bad_request(
                "whatsapp_number: Enter a number in international format, e.g. +15551234567.",
            ));
        }
    }
    if body
        .display_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 150)
    {
        return Err(ApiError::bad_request(
            "display_name: At most 150 characters.",
        ));
    }
    let user = state
        .store
        .update_profile(
            caller.0.id,
            tickethub_actors::ports::ProfileChanges {
                display_name: body.display_name.map(|n| n.trim().to_owned()),
                email,
                whatsapp_number,
            },
        )
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(UserOut::from(&user)))
}

/// Checks a username the way Django does: 1 to 150 letters, digits and `@.+-_`.
pub fn validate_username(username: &str) -> Result<(), ApiError> {
    let ok = !username.is_empty()
        && username.chars().count() <= 150
        && username
            .chars()
            .all(|c| c.is_alphanumeric() || "@.+-_".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "username: Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.",
        ))
    }
}

/// A cheap shape check; delivery finds out the rest.
pub fn is_plausible_email(email: &str) -> bool {
    let mut parts = email.splitn(2, '@');
    match (parts.next(), parts.next()) {
        (Some(local), Some(domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
        }
        _ => false,
    }
}

/// An E.164 number: `+` and 8 to 15 digits.
pub fn is_plausible_phone(number: &str) -> bool {
    number
        .strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}
