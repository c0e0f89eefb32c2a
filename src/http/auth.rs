//! The authentication endpoints: login, refresh, logout, and registration of client accounts.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickethub_actors::domain::{NewUser, Role};
use tickethub_actors::routing::Channel;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::addresses::{is_plausible_email, is_plausible_phone};
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, ClientIp, Json};
use super::users::{check_display_name, validate_username, UserOut};
use crate::auth::{self, TokenType};
use crate::state::AppState;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(register))
        .routes(routes!(registration))
        .routes(routes!(logout_everywhere))
        .routes(routes!(change_password))
}

/// What a logout answers: an empty object, as simplejwt's blacklist view does.
#[derive(Serialize, Debug, ToSchema)]
pub struct LoggedOut {}

/// The longest password, in characters.
const MAX_PASSWORD: usize = 128;

/// Credentials.
#[derive(Deserialize, ToSchema)]
#[schema(as = Login)]
pub(crate) struct LoginIn {
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
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginIn>,
) -> Result<Json<TokensOut>, ApiError> {
    state.limits.login(ip, &body.username)?;
    let _turn = state.limits.hashing().await?;
    let found = state.store.user_with_hash(&body.username).await?;
    // Verify against a dummy hash for unknown users, so that timing does not reveal them.
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, state.dummy_hash.to_string()),
    };
    let ok = auth::verify_password(body.password, hash).await;
    match user {
        Some(user) if ok && user.is_active => {
            let (pair, record) = state
                .auth
                .issue_pair(&user, None)
                .ok_or_else(cannot_issue)?;
            state.store.record_refresh(record).await?;
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
pub(crate) struct RefreshIn {
    /// The refresh token from `POST /api/auth/login/`.
    refresh: String,
}

/// Trades a refresh token for a new access token and its successor. Refresh tokens rotate:
/// the one sent is used up, and sending it again (a replay by whoever copied it) ends every
/// token descended from the same login.
#[utoipa::path(
    post,
    path = "/api/auth/refresh/",
    operation_id = "auth_refresh",
    tag = "auth",
    request_body = RefreshIn,
    responses(
        (status = 200, description = "A new access token and the next refresh token (the one sent no longer works).", body = TokensOut),
        (status = 400, description = "The body is not valid JSON of this shape.", body = ErrorBody),
        (status = 401, description = "The token is invalid, expired, revoked, used already or not a refresh token, or its user is inactive.", body = ErrorBody),
        (status = 429, description = "Too many refreshes from this address.", body = ErrorBody),
        (status = 503, description = "This hub verifies tokens from an identity provider and issues none.", body = ErrorBody),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<RefreshIn>,
) -> Result<Json<TokensOut>, ApiError> {
    state.limits.refresh(ip)?;
    if !state.auth.can_issue() {
        return Err(cannot_issue());
    }
    let claimed = state
        .auth
        .verify(&body.refresh, TokenType::Refresh)
        .await
        .map_err(crate::auth::AuthError::from)?;
    let jti = claimed
        .jti
        .clone()
        .ok_or(crate::auth::TokenError::Revoked)
        .map_err(crate::auth::AuthError::from)?;
    let (user, _) = crate::auth::Auth::resolve(&*state.store, claimed).await?;
    let (pair, next) = state
        .auth
        .issue_pair(&user, None)
        .ok_or_else(cannot_issue)?;
    use tickethub_actors::ports::Rotation;
    match state
        .store
        .rotate_refresh(&jti, next, chrono::Utc::now())
        .await?
    {
        Rotation::Rotated => Ok(Json(TokensOut {
            access: pair.access,
            refresh: pair.refresh,
        })),
        Rotation::Reused => {
            tracing::warn!(
                user_id = user.id.0,
                "a used refresh token was sent again; its login is ended"
            );
            Err(crate::auth::AuthError::from(crate::auth::TokenError::Revoked).into())
        }
        Rotation::Revoked | Rotation::Unknown => {
            Err(crate::auth::AuthError::from(crate::auth::TokenError::Revoked).into())
        }
    }
}

/// Ends a login: its refresh token and every one rotated from the same login stop working.
/// Access tokens already issued live until their `exp` (`--access-token-ttl`).
#[utoipa::path(
    post,
    path = "/api/auth/logout/",
    operation_id = "auth_logout",
    tag = "auth",
    request_body = RefreshIn,
    responses(
        (status = 200, description = "Logged out (an empty object, as simplejwt's blacklist view answers).", body = LoggedOut),
        (status = 400, description = "The body is not valid JSON of this shape.", body = ErrorBody),
        (status = 401, description = "The token is invalid, expired or not a refresh token.", body = ErrorBody),
        (status = 429, description = "Too many calls from this address.", body = ErrorBody),
    )
)]
async fn logout(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<RefreshIn>,
) -> Result<Json<LoggedOut>, ApiError> {
    state.limits.refresh(ip)?;
    let claimed = state
        .auth
        .verify(&body.refresh, TokenType::Refresh)
        .await
        .map_err(crate::auth::AuthError::from)?;
    if let Some(jti) = claimed.jti {
        state
            .store
            .revoke_refresh_family(&jti, chrono::Utc::now())
            .await?;
    }
    Ok(Json(LoggedOut {}))
}

/// The shortest password, in characters.
const MIN_PASSWORD: usize = 8;

/// A new password's rules, as registration has them: 8 to 128 characters. `field` names it in
/// the error.
pub(crate) fn check_password(field: &str, password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(ApiError::bad_request(format!(
            "{field}: This password is too short. It must contain at least {MIN_PASSWORD} characters."
        )));
    }
    if n > MAX_PASSWORD {
        return Err(ApiError::bad_request(format!(
            "{field}: Ensure this field has no more than {MAX_PASSWORD} characters."
        )));
    }
    Ok(())
}

/// A password's hash, made in its turn among the hashes the hub makes at once.
pub(super) async fn hashed(state: &AppState, password: String) -> Result<String, ApiError> {
    let _turn = state.limits.hashing().await?;
    Ok(auth::hash_password(password).await)
}

/// A person's own login: an API key has none to end or change.
fn own_login(caller: &Caller) -> Result<(), ApiError> {
    match caller.1 {
        Some(_) => Err(ApiError::forbidden(
            "An API key has no login of its own; use a person's access token.",
        )),
        None => Ok(()),
    }
}

/// The caller's account went (erased) while the request ran.
fn gone() -> ApiError {
    ApiError::unauthorized("No active account found with the given credentials")
}

/// Ends every login of the caller's, this one included: every access and refresh token they
/// hold stops working (the user's token version moves on, as with a new password), and their
/// sockets close with 4001 on every node.
#[utoipa::path(
    post,
    path = "/api/auth/logout-everywhere/",
    operation_id = "auth_logout_everywhere",
    tag = "auth",
    responses(
        (status = 204, description = "Every token of the caller's is ended; log in again to go on."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is an API key, which has no login.", body = ErrorBody),
        (status = 429, description = "Too many writes.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn logout_everywhere(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    own_login(&caller)?;
    state.limits.write(caller.0.id)?;
    let changes = tickethub_actors::ports::ProfileChanges {
        end_sessions: true,
        ..Default::default()
    };
    let user = state
        .store
        .update_profile(caller.0.id, changes)
        .await?
        .ok_or_else(gone)?;
    tracing::info!(user_id = user.id.0, "user logged out everywhere");
    state.hub.sessions_ended(user.id);
    Ok(StatusCode::NO_CONTENT)
}

/// A change of one's own password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasswordChange)]
pub(crate) struct PasswordIn {
    /// The password the caller logs in with now.
    #[schema(format = Password)]
    current_password: String,
    /// The new password, 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128, format = Password)]
    new_password: String,
}

/// Changes the caller's password. The current one is checked as a login checks it (and counts
/// toward the same limits); then every other login of theirs ends, as with
/// `POST /api/auth/logout-everywhere/`, and this one goes on with the tokens answered.
#[utoipa::path(
    post,
    path = "/api/users/me/password/",
    operation_id = "users_me_password",
    tag = "users",
    request_body = PasswordIn,
    responses(
        (status = 200, description = "Changed: a new access and refresh token for this login; every token issued before no longer works.", body = TokensOut),
        (status = 400, description = "The current password is wrong, or the new one is too short or too long (the detail names the field).", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is an API key, which has no password.", body = ErrorBody),
        (status = 429, description = "Too many tries for this account or from this address.", body = ErrorBody),
        (status = 503, description = "Every password-hashing slot is busy (`Retry-After`), or this hub verifies an identity provider's tokens and issues none.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn change_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: Caller,
    Json(body): Json<PasswordIn>,
) -> Result<Json<TokensOut>, ApiError> {
    own_login(&caller)?;
    if !state.auth.can_issue() {
        return Err(cannot_issue());
    }
    check_password("new_password", &body.new_password)?;
    state.limits.login(ip, &caller.0.username)?;
    let _turn = state.limits.hashing().await?;
    let hash = match state.store.user_with_hash(&caller.0.username).await? {
        Some((user, hash)) if user.id == caller.0.id => hash,
        _ => return Err(gone()),
    };
    if !auth::verify_password(body.current_password, hash).await {
        return Err(ApiError::bad_request(
            "current_password: This is not your current password.",
        ));
    }
    let changes = tickethub_actors::ports::ProfileChanges {
        password_hash: Some(auth::hash_password(body.new_password).await),
        ..Default::default()
    };
    let user = state
        .store
        .update_profile(caller.0.id, changes)
        .await?
        .ok_or_else(gone)?;
    tracing::info!(user_id = user.id.0, "user changed their password");
    // The new password ended every token the user held: their sockets close everywhere, and
    // this login goes on with a pair of the new version.
    state.hub.sessions_ended(user.id);
    let (pair, record) = state
        .auth
        .issue_pair(&user, None)
        .ok_or_else(cannot_issue)?;
    state.store.record_refresh(record).await?;
    Ok(Json(TokensOut {
        access: pair.access,
        refresh: pair.refresh,
    }))
}

fn cannot_issue() -> ApiError {
    ApiError::unavailable("This hub verifies tokens from an identity provider and issues none.")
}

/// A new client account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Registration)]
pub(crate) struct RegisterIn {
    /// 1 to 150 letters, digits and `@.+-_`.
    #[schema(min_length = 1, max_length = 150, pattern = r"^[\w.@+-]+$")]
    pub(crate) username: String,
    /// At least 8 characters.
    #[schema(min_length = 8, format = Password)]
    pub(crate) password: String,
    /// An email address.
    #[serde(default)]
    pub(crate) email: Option<String>,
    /// The name shown to others.
    #[serde(default)]
    pub(crate) display_name: Option<String>,
    /// A WhatsApp number in international format, e.g. `+15551234567`.
    #[serde(default)]
    pub(crate) whatsapp_number: Option<String>,
    /// A phone number for SMS in international format, e.g. `+15551234567`.
    #[serde(default)]
    pub(crate) phone_number: Option<String>,
}

/// Whether anyone may sign up here, for a login page that offers sign-up only then.
#[derive(Serialize, ToSchema)]
pub(crate) struct RegistrationOut {
    /// `POST /api/auth/register/` creates accounts (`--registration open`).
    open: bool,
}

/// Whether registration is open. Public, like the login.
#[utoipa::path(
    get,
    path = "/api/auth/registration/",
    operation_id = "auth_registration",
    tag = "auth",
    responses(
        (status = 200, description = "Whether `POST /api/auth/register/` takes sign-ups.", body = RegistrationOut),
    )
)]
async fn registration(State(state): State<AppState>) -> axum::Json<RegistrationOut> {
    axum::Json(RegistrationOut {
        open: state.registration == crate::config::Registration::Open,
    })
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
        (status = 400, description = "A field is invalid (the detail names it), or the username is taken.", body = ErrorBody),
        (status = 403, description = "Registration is closed (`--registration closed`).", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address.", body = ErrorBody),
    )
)]
async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<RegisterIn>,
) -> Result<(StatusCode, Json<UserOut>), ApiError> {
    if state.registration == crate::config::Registration::Closed {
        return Err(ApiError::forbidden(
            "Registration is closed; ask an admin for an account.",
        ));
    }
    state.limits.register(ip)?;
    let username = body.username.trim().to_owned();
    validate_username(&username)?;
    check_password("password", &body.password)?;
    if let Some(name) = &body.display_name {
        check_display_name(name.trim())?;
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
    let phone_number = body.phone_number.filter(|n| !n.trim().is_empty());
    if let Some(n) = &phone_number {
        if !is_plausible_phone(n) {
            return Err(ApiError::bad_request(
                "phone_number: Enter a number in international format, e.g. +15551234567.",
            ));
        }
    }
    let new = NewUser {
        display_name: body.display_name.unwrap_or_default().trim().to_owned(),
        username,
        email,
        whatsapp_number,
        phone_number,
        role: Role::Client,
        is_superuser: false,
        password_hash: hashed(&state, body.password).await?,
    };
    // What they typed is theirs to prove: unverified, with a code sent to each address.
    let user = state.store.register_user(new).await.map_err(|e| match e {
        tickethub_actors::ports::StoreError::Conflict(_) => {
            ApiError::bad_request("username: A user with that username already exists.")
        }
        other => other.into(),
    })?;
    tracing::info!(user_id = user.id.0, "client registered");
    state.verifier.start_all(&user).await;
    let data = serde_json::json!({
        "user_id": user.id.0,
        "username": user.username,
        "user_email": user.address_of(Channel::Email),
        "user_full_name": user.name(),
        "user_role": user.role.as_str(),
    });
    // The account exists either way; a failed notice is logged, not reported to the client.
    if let Err(e) = state.hub.user_registered(&user, data.to_string()).await {
        tracing::error!(error = %e, "cannot notify super admins of a registration");
    }
    Ok((StatusCode::CREATED, Json(UserOut::from(&user))))
}
