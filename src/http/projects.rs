//! Projects: members see theirs, admins see, create and change all. A member removed from a
//! project is dropped from its live board and presence sockets (4003) on every node.

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use tickethub_actors::domain::{is_valid_project_key, Project, ProjectId, Role, UserId};
use tickethub_actors::ports::StoreError;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Json, Query};
use super::openapi::PageQuery;
use super::{paginated, timestamp, Page, PageParams};
use crate::state::AppState;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(detail, update))
}

/// A project.
#[derive(serde::Serialize, ToSchema)]
#[schema(as = Project)]
pub struct ProjectJson {
    /// The project's id.
    pub id: i64,
    /// 2 to 10 uppercase letters or digits, starting with a letter; prefixes its tickets' keys.
    #[schema(examples("WEB"))]
    pub key: String,
    /// The project's name.
    pub name: String,
    /// The ids of its members.
    pub member_ids: Vec<i64>,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
}

fn project_json(p: &Project) -> ProjectJson {
    ProjectJson {
        id: p.id.0,
        key: p.key.clone(),
        name: p.name.clone(),
        member_ids: p.member_ids.iter().map(|m| m.0).collect(),
        created_at: timestamp(p.created_at),
    }
}

/// Lists projects: the caller's, or every project for admins.
#[utoipa::path(
    get,
    path = "/api/projects/",
    operation_id = "projects_list",
    tag = "projects",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of projects, oldest first.", body = Page<ProjectJson>),
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
) -> Result<Json<Page<ProjectJson>>, ApiError> {
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
pub(crate) struct CreateIn {
    /// 2 to 10 uppercase letters or digits, starting with a letter; unique.
    #[schema(examples("WEB"))]
    pub(crate) key: String,
    /// 1 to 200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub(crate) name: String,
    /// The ids of its members.
    #[serde(default, deserialize_with = "crate::wire::integer::list")]
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
        (status = 201, description = "The new project.", body = ProjectJson),
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
) -> Result<(StatusCode, Json<ProjectJson>), ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::forbidden("Only admins can create projects."));
    }
    if !is_valid_project_key(&body.key) {
        return Err(ApiError::bad_request(
            "key: 2 to 10 uppercase letters or digits, starting with a letter.",
        ));
    }
    let name = valid_name(&body.name)?;
    let ids = existing_users(&state, &body.member_ids).await?;
    let project = state
        .store
        .create_project(&body.key, &name, &ids)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::bad_request("key: A project with this key already exists.")
            }
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(project_json(&project))))
}

/// A project name, trimmed: 1 to 200 characters.
pub(crate) fn valid_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "name: Give a name of 1 to 200 characters.",
        ));
    }
    Ok(name.to_owned())
}

/// The users of these ids, or a 400 naming the first that does not exist.
async fn existing_users(state: &AppState, ids: &[i64]) -> Result<Vec<UserId>, ApiError> {
    let ids: Vec<UserId> = ids.iter().map(|id| UserId(*id)).collect();
    let found = state.store.users_by_ids(&ids).await?;
    if let Some(missing) = ids.iter().find(|id| !found.iter().any(|u| u.id == **id)) {
        return Err(ApiError::bad_request(format!(
            "member_ids: Invalid pk \"{missing}\" - object does not exist."
        )));
    }
    Ok(ids)
}

/// The project of `id` if the caller may see it: its members and admins; 404 for anyone else,
/// whether it exists or not.
async fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<Project, ApiError> {
    let not_found = || ApiError::not_found();
    let id: i64 = id.parse().map_err(|_| not_found())?;
    match state.store.project_by_id(ProjectId(id)).await? {
        Some(p) if caller.is_admin() || p.member_ids.contains(&caller.0.id) => Ok(p),
        _ => Err(not_found()),
    }
}

/// One project.
#[utoipa::path(
    get,
    path = "/api/projects/{id}/",
    operation_id = "projects_retrieve",
    tag = "projects",
    params(("id" = i64, Path, description = "The project.")),
    responses(
        (status = 200, description = "The project.", body = ProjectJson),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such project, or the caller is not a member.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ProjectJson>, ApiError> {
    Ok(Json(project_json(&visible(&state, &caller, &id).await?)))
}

/// A change to a project (every field optional).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProjectUpdate)]
pub(crate) struct UpdateIn {
    /// 1 to 200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub(crate) name: Option<String>,
    /// The ids of its members: the whole new list. Members left out are removed, and their
    /// open board and presence sockets of the project close with 4003.
    #[serde(default, deserialize_with = "crate::wire::integer::option_list")]
    member_ids: Option<Vec<i64>>,
    /// Read-only: accepted and ignored, so that a `GET` body can be sent back, as in DRF.
    #[serde(default, rename = "id")]
    #[schema(read_only, value_type = Option<i64>)]
    _id: Option<Value>,
    /// Read-only (a key never changes): ignored.
    #[serde(default, rename = "key")]
    #[schema(read_only, value_type = Option<String>)]
    _key: Option<Value>,
    /// Read-only, ignored.
    #[serde(default, rename = "created_at")]
    #[schema(read_only, value_type = Option<String>)]
    _created_at: Option<Value>,
}

/// Changes a project's name or members (admins).
#[utoipa::path(
    patch,
    path = "/api/projects/{id}/",
    operation_id = "projects_partial_update",
    tag = "projects",
    params(("id" = i64, Path, description = "The project.")),
    request_body = UpdateIn,
    responses(
        (status = 200, description = "The project after the change.", body = ProjectJson),
        (status = 400, description = "A field is invalid, or a member does not exist.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is a member but not an admin.", body = ErrorBody),
        (status = 404, description = "No such project, or the caller is not a member.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<UpdateIn>,
) -> Result<Json<ProjectJson>, ApiError> {
    let project = visible(&state, &caller, &id).await?;
    if !caller.is_admin() {
        return Err(ApiError::forbidden("Only admins can change projects."));
    }
    let name = body.name.as_deref().map(valid_name).transpose()?;
    let mut removed = Vec::new();
    if let Some(member_ids) = &body.member_ids {
        let ids = existing_users(&state, member_ids).await?;
        let added: Vec<UserId> = ids
            .iter()
            .filter(|id| !project.member_ids.contains(id))
            .copied()
            .collect();
        removed = project
            .member_ids
            .iter()
            .filter(|id| !ids.contains(id))
            .copied()
            .collect();
        state.store.add_members(project.id, &added).await?;
        state.store.remove_members(project.id, &removed).await?;
    }
    if let Some(name) = &name {
        state.store.rename_project(project.id, name).await?;
    }
    // Admins may see every project: only the others lose their sockets.
    let removed = state.store.users_by_ids(&removed).await?;
    state.hub.revoke(
        project.id,
        removed
            .iter()
            .filter(|u| u.role != Role::Admin)
            .map(|u| u.id)
            .collect(),
    );
    let after = state
        .store
        .project_by_id(project.id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(project_json(&after)))
}
