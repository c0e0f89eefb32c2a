//! A project's maintenance windows: `GET`/`POST /api/projects/{id}/maintenance/` and
//! `DELETE /api/projects/{id}/maintenance/{window}/`. While a window lasts, every outbound
//! message about the project's tickets (email, SMS, WhatsApp, push, webhooks …) waits until it
//! ends; in-app delivery goes on. Deleting a window lets what it held go at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickethub_actors::domain::ProjectId;
use tickethub_actors::ports::MaintenanceWindow;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Json};
use super::timestamp;
use crate::state::AppState;

/// The longest window, in days.
const LONGEST_DAYS: i64 = 31;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(remove))
}

/// A maintenance window.
#[derive(Serialize, ToSchema)]
pub struct MaintenanceJson {
    /// Its id.
    id: i64,
    /// The project.
    project: i64,
    /// From when.
    #[schema(format = DateTime)]
    from: String,
    /// Until when (not included).
    #[schema(format = DateTime)]
    to: String,
    /// The admin who made it.
    created_by: i64,
    /// When it was made.
    #[schema(format = DateTime)]
    created_at: String,
}

fn json(w: &MaintenanceWindow) -> MaintenanceJson {
    MaintenanceJson {
        id: w.id,
        project: w.project.0,
        from: timestamp(w.from),
        to: timestamp(w.to),
        created_by: w.created_by.0,
        created_at: timestamp(w.created_at),
    }
}

/// A window to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MaintenanceIn {
    /// From when (RFC 3339).
    #[schema(format = DateTime)]
    from: String,
    /// Until when (RFC 3339): after `from`, at most 31 days later, and not past.
    #[schema(format = DateTime)]
    to: String,
}

/// The project, if the caller may see it: admins and its members (404 otherwise, as for none).
pub(crate) async fn project(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<ProjectId, ApiError> {
    let id = ProjectId(id.parse().map_err(|_| ApiError::not_found())?);
    match state.store.membership(id, caller.0.id).await? {
        Some(member) if member || caller.is_admin() => Ok(id),
        _ => Err(ApiError::not_found()),
    }
}

/// The project's maintenance windows that have not ended, by start.
#[utoipa::path(
    get,
    path = "/api/projects/{id}/maintenance/",
    operation_id = "projects_maintenance_list",
    tag = "projects",
    params(("id" = i64, Path, description = "The project's id.")),
    responses(
        (status = 200, description = "The windows.", body = Vec<MaintenanceJson>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such project, or the caller is not a member.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<MaintenanceJson>>, ApiError> {
    let project = project(&state, &caller, &id).await?;
    let windows = state
        .store
        .maintenance_windows(project, state.store.now())
        .await?;
    Ok(Json(windows.iter().map(json).collect()))
}

/// Holds every outbound message about the project's tickets from `from` to `to` (admins).
#[utoipa::path(
    post,
    path = "/api/projects/{id}/maintenance/",
    operation_id = "projects_maintenance_create",
    tag = "projects",
    params(("id" = i64, Path, description = "The project's id.")),
    request_body = MaintenanceIn,
    responses(
        (status = 201, description = "The window.", body = MaintenanceJson),
        (status = 400, description = "`from`/`to` invalid: not RFC 3339, `to` not after `from`, past, or more than 31 days after `from`.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such project.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<MaintenanceIn>,
) -> Result<(StatusCode, Json<MaintenanceJson>), ApiError> {
    caller.admin_only("change maintenance windows")?;
    let project = project(&state, &caller, &id).await?;
    let instant = |field: &str, text: &str| {
        crate::timespan::parse_instant(text)
            .map_err(|e| ApiError::bad_request(format!("{field}: {e}.")))
    };
    let (from, to) = (instant("from", &body.from)?, instant("to", &body.to)?);
    if to <= from || to - from > chrono::Duration::days(LONGEST_DAYS) || to <= state.store.now() {
        return Err(ApiError::bad_request(format!(
            "to: after from, not past, and at most {LONGEST_DAYS} days after from."
        )));
    }
    let made = state
        .store
        .add_maintenance(project, from, to, caller.0.id)
        .await?;
    tracing::info!(
        project = project.0,
        by = caller.0.id.0,
        "maintenance window added"
    );
    Ok((StatusCode::CREATED, Json(json(&made))))
}

/// Deletes a window (admins): what it held goes at once.
#[utoipa::path(
    delete,
    path = "/api/projects/{id}/maintenance/{window}/",
    operation_id = "projects_maintenance_delete",
    tag = "projects",
    params(
        ("id" = i64, Path, description = "The project's id."),
        ("window" = i64, Path, description = "The window's id."),
    ),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such project or window.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, window)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.admin_only("change maintenance windows")?;
    let project = project(&state, &caller, &id).await?;
    let window: i64 = window.parse().map_err(|_| ApiError::not_found())?;
    if state.store.delete_maintenance(project, window).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
