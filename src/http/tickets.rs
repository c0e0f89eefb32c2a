//! Tickets: list, create, read, and the lifecycle actions, all through the ticket actors.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use tickethub_actors::domain::{ProjectId, Role, UserId};
use tickethub_actors::ports::{NewTicket, TicketFilter};
use tickethub_actors::ticket_domain::{
    Action, Category, Edits, Priority, Ticket, TicketId, TicketStatus,
};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ConflictBody, ErrorBody};
use super::extract::{Caller, Json, Query, RawBody};
use super::idempotency::{self, IdempotencyKey};
use super::openapi::{CategoryName, PageQuery, PriorityName, TicketOrderingName, TicketStatusName};
use super::{paginated, parse_bool, parse_id, Page, PageParams};
use crate::state::AppState;
use crate::wire;

mod attachments;
mod comments;
mod history;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(detail, update))
        .merge(history::router())
        .merge(comments::router())
        .merge(attachments::router())
        .routes(routes!(open_ticket))
        .routes(routes!(assign))
        .routes(routes!(start_work))
        .routes(routes!(finish_work))
        .routes(routes!(approve))
        .routes(routes!(reject))
}

#[derive(Deserialize, Default)]
struct ListParams {
    status: Option<String>,
    project: Option<String>,
    assigned_to_me: Option<String>,
    priority: Option<String>,
    search: Option<String>,
    ordering: Option<String>,
    #[serde(flatten)]
    page: PageParams,
}

/// Lists the tickets of the caller's projects (admins: all), newest first.
#[utoipa::path(
    get,
    path = "/api/tickets/",
    operation_id = "tickets_list",
    tag = "tickets",
    params(
        ("status" = Option<TicketStatusName>, Query, description = "Only tickets of this status."),
        ("project" = Option<i64>, Query, description = "Only tickets of this project id."),
        ("assigned_to_me" = Option<bool>, Query, description = "Only tickets assigned to the caller."),
        ("priority" = Option<PriorityName>, Query, description = "Only tickets of this priority."),
        ("search" = Option<String>, Query, description = "Only tickets whose title contains this text (case-insensitively; on SQLite, for ASCII letters), or whose key it is (`WEB-5`). At most 200 characters.", max_length = 200),
        ("ordering" = Option<TicketOrderingName>, Query, description = "The order: `-created_at` (newest first, the default), `created_at`, `-updated_at`, `updated_at`, `-priority` (most urgent first) or `priority`."),
        PageQuery,
    ),
    responses(
        (status = 200, description = "A page of tickets.", body = Page<wire::TicketJson>),
        (status = 400, description = "A filter is invalid.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "Invalid page.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
    parts: Parts,
) -> Result<Json<Page<wire::TicketJson>>, ApiError> {
    let mut filter = TicketFilter {
        visible_to: (!caller.is_admin()).then_some(caller.0.id),
        ..TicketFilter::default()
    };
    if let Some(s) = params.status.as_deref() {
        filter.status = Some(
            s.parse::<TicketStatus>()
                .map_err(|e| ApiError::bad_request(format!("status: {e}")))?,
        );
    }
    if let Some(p) = params.project.as_deref() {
        filter.project = Some(ProjectId(parse_id("project", p)?));
    }
    if let Some(mine) = params.assigned_to_me.as_deref() {
        if parse_bool("assigned_to_me", mine)? {
            filter.assigned_to = Some(caller.0.id);
        }
    }
    if let Some(p) = params.priority.as_deref() {
        filter.priority = Some(
            p.parse::<Priority>()
                .map_err(|e| ApiError::bad_request(format!("priority: {e}")))?,
        );
    }
    if let Some(text) = params.search.as_deref().map(str::trim) {
        if text.chars().count() > 200 {
            return Err(ApiError::bad_request(
                "search: Ensure this field has no more than 200 characters.",
            ));
        }
        if !text.is_empty() {
            filter.search = Some(text.to_owned());
        }
    }
    if let Some(o) = params.ordering.as_deref() {
        filter.ordering = tickethub_actors::ports::TicketOrdering::NAMES
            .iter()
            .find(|(name, _)| *name == o)
            .map(|(_, ordering)| *ordering)
            .ok_or_else(|| {
                let names: Vec<&str> = tickethub_actors::ports::TicketOrdering::NAMES
                    .iter()
                    .map(|(name, _)| *name)
                    .collect();
                ApiError::bad_request(format!(
                    "ordering: \"{o}\" is not a valid choice; one of: {}.",
                    names.join(", ")
                ))
            })?;
    }
    let (page, slice) = params.page.page()?;
    let (count, tickets) = state.store.list_tickets(&filter, slice).await?;
    let results = tickets.iter().map(wire::ticket).collect();
    Ok(Json(paginated(&parts, page, slice.limit, count, results)?))
}

/// A new ticket.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TicketCreate)]
pub(crate) struct CreateIn {
    /// The project's id; the caller must be a member.
    #[serde(deserialize_with = "crate::wire::integer::one")]
    project: i64,
    /// 1 to 200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub(crate) title: String,
    /// At most 20000 characters.
    #[serde(default)]
    #[schema(max_length = 20000)]
    pub(crate) description: String,
    /// The priority (default `MEDIUM`).
    #[serde(default)]
    #[schema(value_type = Option<PriorityName>)]
    pub(crate) priority: Option<String>,
    /// The category (default `OTHER`).
    #[serde(default)]
    #[schema(value_type = Option<CategoryName>)]
    pub(crate) category: Option<String>,
}

/// Creates a ticket (clients, in their projects); it starts as `NEW`.
#[utoipa::path(
    post,
    path = "/api/tickets/",
    operation_id = "tickets_create",
    tag = "tickets",
    request_body = CreateIn,
    responses(
        (status = 201, description = "The new ticket.", body = wire::TicketJson),
        (status = 400, description = "A field is invalid, or the project does not exist or the caller is not a member of it (the same answer).", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not a client.", body = ErrorBody),
        (status = 429, description = "Too many tickets and comments from this user in a minute.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    headers: axum::http::HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<axum::response::Response, ApiError> {
    if caller.0.role != Role::Client {
        return Err(ApiError::forbidden("Only clients can create tickets."));
    }
    let body: CreateIn = Json::parse(&headers, &bytes)?;
    let title = body.title.trim().to_owned();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "title: Give a title of 1 to 200 characters.",
        ));
    }
    if body.description.chars().count() > 20_000 {
        return Err(ApiError::bad_request(
            "description: At most 20000 characters.",
        ));
    }
    let priority = match body.priority.as_deref() {
        None => Priority::Medium,
        Some(p) => p
            .parse()
            .map_err(|e| ApiError::bad_request(format!("priority: {e}")))?,
    };
    let category = match body.category.as_deref() {
        None => Category::Other,
        Some(c) => c
            .parse()
            .map_err(|e| ApiError::bad_request(format!("category: {e}")))?,
    };
    // A project the caller is not a member of answers as one that does not exist (as a DRF
    // field whose queryset holds the caller's projects only), so that ids reveal nothing.
    let project = ProjectId(body.project);
    if state.store.membership(project, caller.0.id).await? != Some(true) {
        return Err(ApiError::bad_request(format!(
            "project: Invalid pk \"{}\" - object does not exist.",
            body.project
        )));
    }
    let store = &state.store;
    idempotency::once(
        &state,
        &caller,
        key,
        ("POST", "/api/tickets/", &bytes),
        |mark| async {
            state.limits.write(caller.0.id)?;
            let ticket = state
                .hub
                .create_ticket(
                    &caller.0,
                    NewTicket {
                        project,
                        title,
                        description: body.description,
                        priority,
                        category,
                        created_by: caller.0.id,
                        idempotency: mark,
                    },
                )
                .await?;
            Ok((StatusCode::CREATED, json!(wire::ticket(&ticket))))
        },
        |id| async move {
            let ticket = match id {
                Some(id) => store.ticket(TicketId(id)).await?,
                None => None,
            };
            let ticket = ticket.ok_or_else(ApiError::not_found)?;
            Ok((StatusCode::CREATED, json!(wire::ticket(&ticket))))
        },
    )
    .await
}

/// Loads a ticket the caller may see: admins see every ticket, others those of their projects.
/// Anything else is 404, so that ids reveal nothing.
async fn visible(state: &AppState, caller: &Caller, id: i64) -> Result<Ticket, ApiError> {
    let ticket = state
        .store
        .ticket(TicketId(id))
        .await?
        .ok_or_else(ApiError::not_found)?;
    if caller.is_admin() {
        return Ok(ticket);
    }
    let project = state
        .store
        .project_by_id(ticket.project_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if project.member_ids.contains(&caller.0.id)
        || ticket.created_by == caller.0.id
        || ticket.assignees.contains(&caller.0.id)
    {
        Ok(ticket)
    } else {
        Err(ApiError::not_found())
    }
}

fn ticket_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

/// One ticket, with its comments.
#[utoipa::path(
    get,
    path = "/api/tickets/{id}/",
    operation_id = "tickets_detail",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id.")),
    responses(
        (status = 200, description = "The ticket and its comments.", body = TicketDetail),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such ticket, or the caller may not see it.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TicketDetail>, ApiError> {
    let ticket = visible(&state, &caller, ticket_id(&id)?).await?;
    let (count, comments) = state
        .store
        .latest_comments(ticket.id, comments::DETAIL_COMMENTS)
        .await?;
    Ok(Json(TicketDetail {
        description_html: crate::markdown::to_html(&ticket.description),
        ticket: wire::ticket(&ticket),
        comments: comments.iter().map(wire::comment).collect(),
        comment_count: count,
        attachments: attachments::listed(&state, &caller, ticket.id).await?,
    }))
}

/// New values for some of a ticket's fields; the fields left out stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TicketUpdate)]
pub(crate) struct UpdateIn {
    /// 1 to 200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    title: Option<String>,
    /// At most 20000 characters.
    #[schema(max_length = 20000)]
    description: Option<String>,
    /// The priority.
    #[schema(value_type = Option<PriorityName>)]
    priority: Option<String>,
    /// The category.
    #[schema(value_type = Option<CategoryName>)]
    category: Option<String>,
}

impl UpdateIn {
    /// The edits it asks for, validated as a new ticket's fields are.
    fn edits(self) -> Result<Edits, ApiError> {
        if let Some(title) = &self.title {
            let n = title.trim().chars().count();
            if n == 0 || n > 200 {
                return Err(ApiError::bad_request(
                    "title: Give a title of 1 to 200 characters.",
                ));
            }
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 20_000)
        {
            return Err(ApiError::bad_request(
                "description: At most 20000 characters.",
            ));
        }
        Ok(Edits {
            title: self.title,
            description: self.description,
            priority: self
                .priority
                .map(|p| p.parse())
                .transpose()
                .map_err(|e| ApiError::bad_request(format!("priority: {e}")))?,
            category: self
                .category
                .map(|c| c.parse())
                .transpose()
                .map_err(|e| ApiError::bad_request(format!("category: {e}")))?,
        })
    }
}

/// Changes a ticket's title, description, priority or category: its creator while it is `NEW`
/// or `OPEN`, admins always. The change is in the history with each field before and after, and
/// notified as `ticket_updated`; a change to the values the ticket has records and tells nothing.
#[utoipa::path(
    patch,
    path = "/api/tickets/{id}/",
    operation_id = "tickets_update",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id.")),
    request_body = UpdateIn,
    responses(
        (status = 200, description = "The ticket as it is now.", body = wire::TicketJson),
        (status = 400, description = "A field is invalid or unknown.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is neither the ticket's creator nor an admin.", body = ErrorBody),
        (status = 404, description = "No such ticket, or the caller may not see it.", body = ErrorBody),
        (status = 409, description = "The creator edits only while the ticket is `NEW` or `OPEN`.", body = ConflictBody),
        (status = 429, description = "Too many changes from this user in a minute.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    RawBody(bytes): RawBody,
) -> Result<axum::response::Response, ApiError> {
    let ticket = visible(&state, &caller, ticket_id(&id)?).await?;
    let body: UpdateIn = Json::parse(&headers, &bytes)?;
    let edits = body.edits()?;
    let path = format!("/api/tickets/{}/", ticket.id);
    idempotency::once(
        &state,
        &caller,
        key,
        ("PATCH", &path, &bytes),
        |mark| async {
            state.limits.write(caller.0.id)?;
            let applied = state
                .hub
                .apply_marked(ticket.id, &caller.0, Action::Edit(edits), mark)
                .await?;
            Ok((StatusCode::OK, json!(wire::ticket(&applied.ticket))))
        },
        |_| async {
            let now = state
                .store
                .ticket(ticket.id)
                .await?
                .ok_or_else(ApiError::not_found)?;
            Ok((StatusCode::OK, json!(wire::ticket(&now))))
        },
    )
    .await
}

/// A ticket with its comments.
#[derive(serde::Serialize, ToSchema)]
pub struct TicketDetail {
    /// The ticket.
    #[serde(flatten)]
    pub ticket: wire::TicketJson,
    /// The description as safe HTML (Markdown rendered, raw HTML shown as text).
    pub description_html: String,
    /// Its newest comments (at most 100), oldest first; `…/comments/` pages through all.
    pub comments: Vec<wire::CommentJson>,
    /// How many comments the ticket has in all.
    pub comment_count: i64,
    /// Its files, oldest first, deleted ones as tombstones (empty where the hub keeps none).
    pub attachments: Vec<attachments::AttachmentJson>,
}

/// An action's body: empty (the seed clients post none) or a JSON object.
pub(crate) fn json_body(bytes: &Bytes) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("JSON parse error - {e}")))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(ApiError::bad_request("Expected a JSON object."))
    }
}

/// A body of an action or comment, as [`json_body`] reads it (an empty body is `{}`, and no
/// `Content-Type` is asked for, as the seed clients send none), in its typed shape.
pub(crate) fn typed_body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_value(json_body(bytes)?)
        .map_err(|e| ApiError::bad_request(format!("JSON parse error - {e}")))
}

/// Whom a ticket is assigned to.
#[derive(Deserialize, ToSchema)]
pub(crate) struct AssignIn {
    /// The developers' ids; they replace the current assignees.
    #[schema(value_type = Vec<i64>, required = true, min_items = 1)]
    #[serde(default, deserialize_with = "crate::wire::integer::option_list")]
    developer_ids: Option<Vec<i64>>,
}

/// Why a client rejects the work.
#[derive(Deserialize, ToSchema)]
pub(crate) struct RejectIn {
    /// The reason, at most 5000 characters.
    #[schema(max_length = 5000)]
    #[serde(default)]
    reason: Option<String>,
}

/// Applies a lifecycle action to a ticket the caller can see, once per `Idempotency-Key`;
/// answers the updated ticket.
async fn apply(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: Action,
    key: IdempotencyKey,
    body: &Bytes,
) -> Result<axum::response::Response, ApiError> {
    let ticket = visible(state, caller, ticket_id(id)?).await?;
    let path = format!("/api/tickets/{}/ {action:?}", ticket.id);
    idempotency::once(
        state,
        caller,
        key,
        ("POST", &path, body),
        |mark| async {
            let applied = state
                .hub
                .apply_marked(ticket.id, &caller.0, action, mark)
                .await?;
            Ok((StatusCode::OK, json!(wire::ticket(&applied.ticket))))
        },
        |_| async {
            let now = state
                .store
                .ticket(ticket.id)
                .await?
                .ok_or_else(ApiError::not_found)?;
            Ok((StatusCode::OK, json!(wire::ticket(&now))))
        },
    )
    .await
}

/// `NEW` → `OPEN` (admins).
#[utoipa::path(
    post,
    path = "/api/tickets/{id}/open_ticket/",
    operation_id = "tickets_open_ticket",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id.")),
    responses(
        (status = 200, description = "The ticket, now `OPEN`.", body = wire::TicketJson),
        (status = 400, description = "The body is not a JSON object.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 404, description = "No such ticket, or the caller may not see it.", body = ErrorBody),
        (status = 409, description = "The ticket is not `NEW`.", body = ConflictBody),
    ),
    security(("bearer" = []))
)]
async fn open_ticket(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<axum::response::Response, ApiError> {
    json_body(&body)?;
    apply(&state, &caller, &id, Action::Open, key, &body).await
}

/// Assigns developers (admins): `OPEN`, `ASSIGNED` or `REJECTED` → `ASSIGNED`, while
/// `IN_PROGRESS` stays; the ids become the assignees.
#[utoipa::path(
    post,
    path = "/api/tickets/{id}/assign/",
    operation_id = "tickets_assign",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id.")),
    request_body = AssignIn,
    responses(
        (status = 200, description = "The ticket with its new assignees.", body = wire::TicketJson),
        (status = 400, description = "`developer_ids` is missing or empty, or an id is not an active developer.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 404, description = "No such ticket, or the caller may not see it.", body = ErrorBody),
        (status = 409, description = "The ticket is not `OPEN`, `ASSIGNED`, `IN_PROGRESS` or `REJECTED`.", body = ConflictBody),
    ),
    security(("bearer" = []))
)]
async fn assign(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<axum::response::Response, ApiError> {
    let AssignIn { developer_ids } = typed_body(&body)?;
    let developer_ids = developer_ids
        .ok_or_else(|| ApiError::bad_request("developer_ids: A list of user ids is required."))?
        .into_iter()
        .map(UserId)
        .collect();
    apply(
        &state,
        &caller,
        &id,
        Action::Assign { developer_ids },
        key,
        &body,
    )
    .await
}

/// `ASSIGNED` or `REJECTED` → `IN_PROGRESS` (an assigned developer).
#[utoipa::path(
    post,
    path = "/api/tickets/{id}/start_work/",
    operation_id = "tickets_start_work",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id.")),
    responses(
        (status = 200, description = "The ticket, now `IN_PROGRESS`.", body = wire::TicketJson),
        (status = 400, description = "The body is not a JSON object.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an assigned developer.", body = ErrorBody),
        (status = 404, description = "No such ticket, or the caller may not see it.", body = ErrorBody),
        (status = 409, description = "The ticket is not `ASSIGNED` or `REJECTED`.", body = ConflictBody),
    ),
    security(("bearer" = []))
)]
async fn start_work(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<axum::response::Response, ApiError> {
    json_body(&body)?;
    apply(&state, &caller, &id, Action::StartWork, key, &body).await
}

/// `IN_PROGRESS` → `FINISHED` (an assigned developer).
#[utoipa::path(
    post,
    path = "/api/tickets/{id}/finish_work/",
    operation_id = "tickets_finish_work",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id.")),
    responses(
        (status = 200, description = "The ticket, now `FINISHED`.", body = wire::TicketJson),
        (status = 400, description = "The body is not a JSON object.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an assigned developer.", body = ErrorBody),
        (status = 404, description = "No such ticket, or the caller may not see it.", body = ErrorBody),
        (status = 409, description = "The ticket is not `IN_PROGRESS`.", body = ConflictBody),
    ),
    security(("bearer" = []))
)]
async fn finish_work(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<axum::response::Response, ApiError> {
    json_body(&body)?;
    apply(&state, &caller, &id, Action::FinishWork, key, &body).await
}

/// `FINISHED` → `APPROVED` (the creating client).
#[utoipa::path(
    post,
    path = "/api/tickets/{id}/approve/",
    operation_id = "tickets_approve",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id.")),
    responses(
        (status = 200, description = "The ticket, now `APPROVED`.", body = wire::TicketJson),
        (status = 400, description = "The body is not a JSON object.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not the ticket's creator.", body = ErrorBody),
        (status = 404, description = "No such ticket, or the caller may not see it.", body = ErrorBody),
        (status = 409, description = "The ticket is not `FINISHED`.", body = ConflictBody),
    ),
    security(("bearer" = []))
)]
async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<axum::response::Response, ApiError> {
    json_body(&body)?;
    apply(&state, &caller, &id, Action::Approve, key, &body).await
}

/// `FINISHED` → `REJECTED` (the creating client), with an optional reason.
#[utoipa::path(
    post,
    path = "/api/tickets/{id}/reject/",
    operation_id = "tickets_reject",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id.")),
    request_body(
        content = RejectIn,
        description = "Optional: an empty body rejects without a reason."
    ),
    responses(
        (status = 200, description = "The ticket, now `REJECTED`.", body = wire::TicketJson),
        (status = 400, description = "The reason is not a string of at most 5000 characters.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not the ticket's creator.", body = ErrorBody),
        (status = 404, description = "No such ticket, or the caller may not see it.", body = ErrorBody),
        (status = 409, description = "The ticket is not `FINISHED`.", body = ConflictBody),
    ),
    security(("bearer" = []))
)]
async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<axum::response::Response, ApiError> {
    let RejectIn { reason } = typed_body(&body)?;
    let reason = reason.unwrap_or_default();
    if reason.chars().count() > 5_000 {
        return Err(ApiError::bad_request(
            "reason: A string of at most 5000 characters.",
        ));
    }
    apply(&state, &caller, &id, Action::Reject { reason }, key, &body).await
}
