//! A ticket's comments: listed, written, edited and deleted.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ticket_id, typed_body, visible};
use crate::http::error::{ApiError, ConflictBody, ErrorBody};
use crate::http::extract::{Caller, Json, Query, RawBody};
use crate::http::idempotency::{self, IdempotencyKey};
use crate::http::openapi::PageQuery;
use crate::http::{Page, PageParams};
use crate::state::AppState;
use crate::wire;
use tickethub_actors::ticket_domain::{Action, Ticket};

/// The routes of this module.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(comments, comment))
        .routes(routes!(edit_comment, delete_comment))
}

/// A ticket's comments, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/tickets/{id}/comments/",
    operation_id = "tickets_comments",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id."), PageQuery),
    responses(
        (status = 200, description = "A page of the comments, oldest first.", body = Page<wire::CommentJson>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such ticket, the caller may not see it, or an invalid page.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn comments(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
    parts: axum::http::request::Parts,
) -> Result<Json<Page<wire::CommentJson>>, ApiError> {
    let ticket = visible(&state, &caller, ticket_id(&id)?).await?;
    let (n, slice) = page.page()?;
    let (count, comments) = state.store.comments(ticket.id, slice).await?;
    Ok(Json(crate::http::paginated(
        &parts,
        n,
        slice.limit,
        count,
        comments.iter().map(wire::comment).collect(),
    )?))
}

/// The newest comments a ticket's detail carries; the rest are paged at `…/comments/`.
pub(super) const DETAIL_COMMENTS: i64 = 100;

/// Comments on a ticket (its creator, its assignees and admins).
#[utoipa::path(
    post,
    path = "/api/tickets/{id}/comments/",
    operation_id = "tickets_comment",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id.")),
    request_body = CommentIn,
    responses(
        (status = 201, description = "The new comment.", body = wire::CommentJson),
        (status = 400, description = "The body is missing, blank or too long.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller may see the ticket but not comment on it.", body = ErrorBody),
        (status = 404, description = "No such ticket, or the caller may not see it.", body = ErrorBody),
        (status = 409, description = "The ticket is `APPROVED`.", body = ConflictBody),
        (status = 429, description = "Too many tickets and comments from this user in a minute.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn comment(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    RawBody(bytes): RawBody,
) -> Result<axum::response::Response, ApiError> {
    let ticket = visible(&state, &caller, ticket_id(&id)?).await?;
    let CommentIn { body } = typed_body(&bytes)?;
    let text = body.ok_or_else(|| ApiError::bad_request("body: This field is required."))?;
    let text = text.as_str();
    if text.chars().count() > 10_000 {
        return Err(ApiError::bad_request("body: At most 10000 characters."));
    }
    let path = format!("/api/tickets/{}/comments/", ticket.id);
    let store = &state.store;
    idempotency::once(
        &state,
        &caller,
        key,
        ("POST", &path, &bytes),
        |mark| async {
            state.limits.write(caller.0.id)?;
            let applied = state
                .hub
                .apply_marked(
                    ticket.id,
                    &caller.0,
                    Action::Comment {
                        body: text.to_owned(),
                    },
                    mark,
                )
                .await?;
            let comment = applied
                .comment
                .ok_or_else(|| ApiError::unavailable("The comment was not stored."))?;
            Ok((StatusCode::CREATED, json!(wire::comment(&comment))))
        },
        |id| async move {
            let comment = match id {
                Some(id) => store.comment(id).await?,
                None => None,
            };
            let comment = comment.ok_or_else(ApiError::not_found)?;
            Ok((StatusCode::CREATED, json!(wire::comment(&comment))))
        },
    )
    .await
}

/// A comment of a ticket the caller can see, with the ticket; 404 for a comment of another
/// ticket.
async fn comment_of(
    state: &AppState,
    caller: &Caller,
    id: &str,
    cid: &str,
) -> Result<(Ticket, tickethub_actors::ticket_domain::Comment), ApiError> {
    let ticket = visible(state, caller, ticket_id(id)?).await?;
    let comment = state
        .store
        .comment(ticket_id(cid)?)
        .await?
        .filter(|c| c.ticket_id == ticket.id)
        .ok_or_else(ApiError::not_found)?;
    Ok((ticket, comment))
}

/// Changes a comment's text (its author); the comment shows when it was edited.
#[utoipa::path(
    patch,
    path = "/api/tickets/{id}/comments/{comment_id}/",
    operation_id = "tickets_comment_edit",
    tag = "tickets",
    params(
        ("id" = i64, Path, description = "The ticket's id."),
        ("comment_id" = i64, Path, description = "The comment's id."),
    ),
    request_body = CommentIn,
    responses(
        (status = 200, description = "The comment as it is now.", body = wire::CommentJson),
        (status = 400, description = "The body is missing, blank or too long, or the comment was deleted.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller did not write the comment.", body = ErrorBody),
        (status = 404, description = "No such ticket or comment, or the caller may not see it.", body = ErrorBody),
        (status = 409, description = "The ticket is `APPROVED`.", body = ConflictBody),
        (status = 429, description = "Too many changes from this user in a minute.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn edit_comment(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, cid)): Path<(String, String)>,
    RawBody(bytes): RawBody,
) -> Result<Json<wire::CommentJson>, ApiError> {
    let (ticket, comment) = comment_of(&state, &caller, &id, &cid).await?;
    let CommentIn { body } = typed_body(&bytes)?;
    let text = body.ok_or_else(|| ApiError::bad_request("body: This field is required."))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::bad_request("body: This field may not be blank."));
    }
    if text.chars().count() > 10_000 {
        return Err(ApiError::bad_request("body: At most 10000 characters."));
    }
    tickethub_actors::ticket_domain::may_change_comment(
        &ticket,
        &comment,
        caller.principal(),
        false,
    )
    .map_err(tickethub_actors::ticket::TicketError::from)?;
    state.limits.write(caller.0.id)?;
    let changed = state
        .store
        .change_comment(comment.id, Some(text), chrono::Utc::now())
        .await?
        .ok_or_else(ApiError::not_found)?;
    if changed.deleted_at.is_some() {
        // Deleted between the check and the write.
        return Err(ApiError::bad_request(
            "This comment was deleted; write a new one.",
        ));
    }
    Ok(Json(wire::comment(&changed)))
}

/// Deletes a comment (its author, or an admin): it stays in its place as a tombstone, without
/// its text. Deleting it again changes nothing.
#[utoipa::path(
    delete,
    path = "/api/tickets/{id}/comments/{comment_id}/",
    operation_id = "tickets_comment_delete",
    tag = "tickets",
    params(
        ("id" = i64, Path, description = "The ticket's id."),
        ("comment_id" = i64, Path, description = "The comment's id."),
    ),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is neither the comment's author nor an admin.", body = ErrorBody),
        (status = 404, description = "No such ticket or comment, or the caller may not see it.", body = ErrorBody),
        (status = 409, description = "The ticket is `APPROVED`.", body = ConflictBody),
    ),
    security(("bearer" = []))
)]
async fn delete_comment(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, cid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (ticket, comment) = comment_of(&state, &caller, &id, &cid).await?;
    tickethub_actors::ticket_domain::may_change_comment(
        &ticket,
        &comment,
        caller.principal(),
        true,
    )
    .map_err(tickethub_actors::ticket::TicketError::from)?;
    state
        .store
        .change_comment(comment.id, None, chrono::Utc::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new comment.
#[derive(Deserialize, ToSchema)]
pub(crate) struct CommentIn {
    /// The text, at most 10000 characters, not only spaces.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 10000, pattern = r"\S")]
    #[serde(default)]
    body: Option<String>,
}
