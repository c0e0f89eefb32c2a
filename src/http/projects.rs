//! Projects: members see theirs, admins see and create all.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use tickethub_actors::domain::{is_valid_project_key, Project, UserId};
use tickethub_actors::ports::StoreError;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Caller, Json, Query};
use super::openapi::{self, ErrorBody, PageQuery, ProjectPage};
use super::{paginated, timestamp, AppState, PageParams};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/projects/", get(list).post(create))
}

fn project_json(p: &Project) -> Value {
    json!({
        "id": p.id.0,
        "key": p.key,
        "name": p.name,
        "member_ids": p.member_ids.iter().map(|m| m.0).collect::<Vec<_>>(),
        "created_at": timestamp(p.created_at),
    })
}

/// Lists projects: the caller's, or every project for admins.
#[utoipa::path(
    get,
    path = "/api/projects/",
    operation_id = "projects_list",
    tag = "projects",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of projects, oldest first.", body = ProjectPage),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "Invalid page.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<PageParams>,
    parts: Parts,
) -> Result<Json<Value>, ApiError> {
    let member = (!caller.is_admin()).then_some(caller.0.id);
    let projects = state.store.list_projects(member).await?;
    let (page, slice) = params.page()?;
    let results = projects
        .iter()
        .skip(slice.offset as usize)
        .take(slice.limit as usize)
        .map(project_json)
        .collect();
    Ok(Json(paginated(
        &parts,
        page,
        slice.limit,
        projects.len() as i64,
        results,
    )?))
}

/// A new project.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProjectCreate)]
struct CreateIn {
    /// 2 to 10 uppercase letters or digits, starting with a letter; unique.
    #[schema(examples("WEB"))]
    key: String,
    /// 1 to 200 characters.
    #[schema(max_length = 200)]
    name: String,
    /// The ids of its members.
    #[serde(default)]
    member_ids: Vec<i64>,
}

/// Creates a project (admins).
#[utoipa::path(
    post,
    path = "/api/projects/",
    operation_id = "projects_create",
    tag = "projects",
    request_body = CreateIn,
    responses(
        (status = 201, description = "The new project.", body = openapi::Project),
        (status = 400, description = "A field is invalid, a member does not exist, or the key is taken.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateIn>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::forbidden("Only admins can create projects."));
    }
    if !is_valid_project_key(&body.key) {
        return Err(ApiError::bad_request(
            "key: 2 to 10 uppercase letters or digits, starting with a letter.",
        ));
    }
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "name: Give a name of 1 to 200 characters.",
        ));
    }
    let ids: Vec<UserId> = body.member_ids.iter().map(|id| UserId(*id)).collect();
    let found = state.store.users_by_ids(&ids).await?;
    if let Some(missing) = ids.iter().find(|id| !found.iter().any(|u| u.id == **id)) {
        return Err(ApiError::bad_request(format!(
            "member_ids: Invalid pk \"{missing}\" - object does not exist."
        )));
    }
    let project = state
        .store
        .create_project(&body.key, name, &ids)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::bad_request("key: A project with this key already exists.")
            }
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(project_json(&project))))
}
