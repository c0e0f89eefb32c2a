//! `/api/admin/api-keys/`: API keys for servers, made, listed and revoked by admins (as
//! `tickethub keys create|list|revoke` does). The whole key is shown once, when made.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickethub_actors::ports::ApiKey;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Json};
use super::timestamp;
use crate::auth::api_keys::{self, CreateError};
use crate::state::AppState;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

/// An API key, without its secret.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyJson {
    /// Its unique name, shown in timelines and traces.
    pub name: String,
    /// The key's public first part, to recognize it.
    pub prefix: String,
    /// What it may do: `notifications:send`, `tickets:write`, `admin:read`.
    pub scopes: Vec<String>,
    /// The service user it acts as.
    pub user: i64,
    /// That user's name.
    pub username: String,
    /// When it was made.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When a request last used it (to the minute), or null.
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    /// When it was revoked, or null.
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
}

impl From<&ApiKey> for ApiKeyJson {
    fn from(k: &ApiKey) -> Self {
        Self {
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: k.scopes.clone(),
            user: k.user.0,
            username: k.username.clone(),
            created_at: timestamp(k.created_at),
            last_used_at: k.last_used_at.map(timestamp),
            revoked_at: k.revoked_at.map(timestamp),
        }
    }
}

/// A new key, with the whole key, shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// `<prefix>.<secret>`: send it as `Authorization: Api-Key <key>`. It is not stored and
    /// cannot be shown again.
    pub key: String,
    /// The stored key.
    #[serde(flatten)]
    pub api_key: ApiKeyJson,
}

/// A key's scope, as the document names them (the list a key is made with is checked against
/// `crate::auth::api_keys::SCOPES`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
enum KeyScope {
    #[serde(rename = "notifications:send")]
    NotificationsSend,
    #[serde(rename = "tickets:write")]
    TicketsWrite,
    #[serde(rename = "admin:read")]
    AdminRead,
}

/// A key to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKeyIn {
    /// 1 to 64 letters, digits, `-`, `_` or `.`.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]+$")]
    name: String,
    /// At least one of `notifications:send`, `tickets:write`, `admin:read`.
    #[schema(min_items = 1, inline, value_type = Vec<KeyScope>)]
    scopes: Vec<String>,
    /// The username of the user the key acts as; without it, a service user of the key's own
    /// is made, `key:<name>` (a name no registration can take).
    #[serde(default)]
    user: Option<String>,
}

/// Lists the API keys, revoked ones too (admins).
#[utoipa::path(
    get,
    path = "/api/admin/api-keys/",
    operation_id = "admin_api_keys_list",
    tag = "admin",
    responses(
        (status = 200, description = "Every key, oldest first.", body = Vec<ApiKeyJson>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ApiKeyJson>>, ApiError> {
    caller.admin_only("manage API keys")?;
    let keys = state.store.api_keys().await?;
    Ok(Json(keys.iter().map(ApiKeyJson::from).collect()))
}

/// Makes an API key (admins, with their own token): the answer holds the whole key, once.
#[utoipa::path(
    post,
    path = "/api/admin/api-keys/",
    operation_id = "admin_api_keys_create",
    tag = "admin",
    request_body = CreateKeyIn,
    responses(
        (status = 201, description = "The key, shown this once.", body = CreatedKey),
        (status = 400, description = "The name is invalid or taken, a scope is unknown, or no such user.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateKeyIn>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    caller.admin_only("manage API keys")?;
    let (stored, key) = api_keys::create(
        state.store.as_ref(),
        &body.name,
        &body.scopes,
        body.user.as_deref(),
        &caller.label(),
    )
    .await
    .map_err(|e| match e {
        CreateError::Invalid(why) => ApiError::bad_request(why),
        CreateError::Store(e) => e.into(),
    })?;
    tracing::info!(key = %stored.name, by = caller.0.id.0, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key,
            api_key: ApiKeyJson::from(&stored),
        }),
    ))
}

/// Revokes an API key (admins): it is refused from now on, on every node.
#[utoipa::path(
    delete,
    path = "/api/admin/api-keys/{name}/",
    operation_id = "admin_api_keys_revoke",
    tag = "admin",
    params(("name" = String, Path, description = "The key's name.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such key, or it was revoked already.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.admin_only("manage API keys")?;
    if state
        .store
        .revoke_api_key(&name, chrono::Utc::now(), &caller.label())
        .await?
    {
        tracing::info!(key = %name, by = caller.0.id.0, "API key revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
