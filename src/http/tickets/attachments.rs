//! A ticket's files: uploaded (multipart), listed, downloaded and deleted.
//!
//! Who may see the ticket may download its files; who may comment may attach one; its
//! uploader and admins may delete one. A download answers with the stored type, never sniffed,
//! in a sandbox: pictures (checked to be what they claim at upload) show in place, every other
//! file is a download. A page cannot send a bearer token with an `<img>` or a link, so each
//! file's `url` carries a signed `access` value for the caller, good for
//! [`crate::attachments::LINK_TTL`]; the hub checks at each download that the person it names
//! still may see the ticket.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ticket_id, visible};
use crate::attachments::{self, Attachments};
use crate::http::error::{ApiError, ConflictBody, ErrorBody};
use crate::http::extract::{Caller, Json, Query};
use crate::state::AppState;
use crate::wire::timestamp;
use tickethub_actors::ports::{Attachment, NewAttachment};
use tickethub_actors::ticket::TicketError;
use tickethub_actors::ticket_domain::{may_attach, may_remove_attachment, Ticket, TicketId};

/// The routes of this module.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // The upload counts its own bytes against `--attachment-max-bytes`.
        .routes(routes!(list, upload))
        .layer(DefaultBodyLimit::disable())
        .routes(routes!(download, delete))
}

/// A file attached to a ticket.
#[derive(Serialize, ToSchema)]
#[schema(as = Attachment)]
pub struct AttachmentJson {
    /// Its id.
    pub id: i64,
    /// The ticket's id.
    pub ticket: i64,
    /// The file's name as uploaded (its last path part, without control characters): text,
    /// never markup.
    pub file_name: String,
    /// Its media type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: i64,
    /// Whether a page may show it in place (a PNG, JPEG, GIF or WebP picture); every other
    /// file downloads.
    pub inline: bool,
    /// Who attached it.
    pub uploaded_by: i64,
    /// Their name.
    pub uploaded_by_name: String,
    /// When.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Deleted: it stays listed as a tombstone, without its file.
    pub deleted: bool,
    /// Where the caller downloads it (with a signed `access` value, so that a page's link or
    /// `<img>` works without a header), for 12 hours; null once deleted.
    pub url: Option<String>,
}

/// An attachment as the caller sees it.
pub(crate) fn json(
    files: &Attachments,
    a: &Attachment,
    caller: &Caller,
    now: chrono::DateTime<chrono::Utc>,
) -> AttachmentJson {
    let url = a.deleted_at.is_none().then(|| {
        format!(
            "/api/tickets/{}/attachments/{}/?access={}",
            a.ticket,
            a.id,
            files.link_token(a.id, caller.0.id, now + attachments::LINK_TTL)
        )
    });
    AttachmentJson {
        id: a.id,
        ticket: a.ticket.0,
        file_name: a.file_name.clone(),
        content_type: a.content_type.clone(),
        size: a.size,
        inline: attachments::inline_image(&a.content_type),
        uploaded_by: a.uploader.0,
        uploaded_by_name: a.uploader_name.clone(),
        created_at: timestamp(a.created_at),
        deleted: a.deleted_at.is_some(),
        url,
    }
}

/// The attachment store, or 503 where the hub keeps none.
fn store_of(state: &AppState) -> Result<&Attachments, ApiError> {
    state.attachments.as_deref().ok_or_else(|| {
        ApiError::unavailable(
            "This hub takes no attachments: it has neither --attachments-dir nor --attachments-s3-url.",
        )
    })
}

/// A ticket's files, oldest first, deleted ones as tombstones.
#[utoipa::path(
    get,
    path = "/api/tickets/{id}/attachments/",
    operation_id = "tickets_attachments",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id.")),
    responses(
        (status = 200, description = "The ticket's files.", body = Vec<AttachmentJson>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such ticket, or the caller may not see it.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<AttachmentJson>>, ApiError> {
    let ticket = visible(&state, &caller, ticket_id(&id)?).await?;
    Ok(Json(listed(&state, &caller, ticket.id).await?))
}

/// A ticket's files as `caller` sees them (none where the hub keeps no attachments).
pub(super) async fn listed(
    state: &AppState,
    caller: &Caller,
    ticket: TicketId,
) -> Result<Vec<AttachmentJson>, ApiError> {
    let Some(files) = state.attachments.as_deref() else {
        return Ok(Vec::new());
    };
    let now = chrono::Utc::now();
    Ok(state
        .store
        .attachments(ticket)
        .await?
        .iter()
        .map(|a| json(files, a, caller, now))
        .collect())
}

/// A file to attach.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct UploadIn {
    /// The file (one per request), with its name; its part's `Content-Type` is its type (else
    /// its name's extension decides).
    #[schema(value_type = String, format = Binary, min_length = 1)]
    file: Vec<u8>,
}

/// Attaches a file to a ticket (its creator, its assignees and admins; not once `APPROVED`).
/// The file is at most `--attachment-max-bytes` (10 MiB by default) and of a type
/// `--attachment-types` takes; a picture must be what it claims.
#[utoipa::path(
    post,
    path = "/api/tickets/{id}/attachments/",
    operation_id = "tickets_attach",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id.")),
    request_body(content = UploadIn, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "The file, attached.", body = AttachmentJson),
        (status = 400, description = "No `file` part, two of them, another part, an empty file, a picture that is not what it claims, or not a multipart body.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller may see the ticket but not attach to it.", body = ErrorBody),
        (status = 404, description = "No such ticket, or the caller may not see it.", body = ErrorBody),
        (status = 409, description = "The ticket is `APPROVED`.", body = ConflictBody),
        (status = 413, description = "The file is larger than `--attachment-max-bytes`.", body = ErrorBody),
        (status = 415, description = "Files of this type are not taken (`--attachment-types`).", body = ErrorBody),
        (status = 429, description = "Too many changes from this user in a minute.", body = ErrorBody),
        (status = 503, description = "The hub keeps no attachments, or their store failed.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let ticket = visible(&state, &caller, ticket_id(&id)?).await?;
    let files = store_of(&state)?;
    may_attach(&ticket, caller.principal()).map_err(TicketError::from)?;
    let mut multipart = multipart.map_err(|e| {
        ApiError::bad_request(format!(
            "Send the file as multipart/form-data in a part named `file`: {}",
            e.body_text()
        ))
    })?;
    state.limits.write(caller.0.id)?;
    let mut file: Option<(String, Option<String>, bytes::Bytes)> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(bad_part)? {
        if field.name() != Some("file") {
            return Err(ApiError::bad_request(
                "file: Send one part, named `file`, and nothing else.",
            ));
        }
        if file.is_some() {
            return Err(ApiError::bad_request("file: Attach one file per request."));
        }
        let name = attachments::clean_name(field.file_name().unwrap_or_default());
        let declared = field.content_type().map(str::to_owned);
        let mut bytes = bytes::BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(bad_part)? {
            if (bytes.len() + chunk.len()) as u64 > files.max_bytes {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("file: At most {} bytes.", files.max_bytes),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        file = Some((name, declared, bytes.freeze()));
    }
    let (name, declared, bytes) =
        file.ok_or_else(|| ApiError::bad_request("file: No file was submitted."))?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("file: The submitted file is empty."));
    }
    let content_type = attachments::decide(declared.as_deref(), &name);
    if !files.kinds.allows(&content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("file: Files of type {content_type} are not taken here."),
        )
        .with("allowed", files.kinds.list().to_vec()));
    }
    if !attachments::looks_like(&content_type, &bytes) {
        return Err(ApiError::bad_request(format!(
            "file: The file is not the {content_type} it claims to be."
        )));
    }
    let key = Attachments::new_key(ticket.id.0);
    let size = bytes.len() as i64;
    files.put(&key, bytes).await.map_err(|e| {
        tracing::error!(error = %e, "storing an attachment failed");
        ApiError::unavailable("The file could not be stored; try again.")
    })?;
    let new = NewAttachment {
        ticket: ticket.id,
        uploader: caller.0.id,
        file_name: name,
        content_type,
        size,
        key,
    };
    let stored = state.store.add_attachment(new, chrono::Utc::now()).await?;
    tracing::info!(
        ticket = ticket.id.0,
        attachment = stored.id,
        size,
        "file attached"
    );
    state.hub.attachments_changed(ticket.clone());
    let body = json(files, &stored, &caller, chrono::Utc::now());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn bad_part(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::new(e.status(), format!("file: {}", e.body_text()))
}

#[derive(Deserialize)]
struct DownloadParams {
    access: Option<String>,
}

/// The ticket and file a download names, for the caller or the person its link was signed for.
async fn file_of(
    state: &AppState,
    caller: &Caller,
    id: &str,
    aid: &str,
) -> Result<(Ticket, Attachment), ApiError> {
    let ticket = visible(state, caller, ticket_id(id)?).await?;
    let file = state
        .store
        .attachment(ticket.id, ticket_id(aid)?)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok((ticket, file))
}

/// Downloads a file: with the caller's token, or with the `access` value of the `url` the
/// hub gave. Pictures show in place; every other file is served as a download.
#[utoipa::path(
    get,
    path = "/api/tickets/{id}/attachments/{attachment_id}/",
    operation_id = "tickets_attachment_download",
    tag = "tickets",
    params(
        ("id" = i64, Path, description = "The ticket's id."),
        ("attachment_id" = i64, Path, description = "The file's id."),
        ("access" = Option<String>, Query, description = "The signed value of the file's `url`, instead of a token."),
    ),
    responses(
        (status = 200, description = "The file's bytes, with its stored type.", content_type = "*/*", body = Vec<u8>),
        (status = 401, description = "No valid access token or link.", body = ErrorBody),
        (status = 404, description = "No such ticket or file, a deleted file, or the caller may not see it.", body = ErrorBody),
        (status = 503, description = "The hub keeps no attachments, or their store failed.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
async fn download(
    State(state): State<AppState>,
    caller: Option<Caller>,
    Path((id, aid)): Path<(String, String)>,
    Query(params): Query<DownloadParams>,
) -> Result<Response, ApiError> {
    let files = store_of(&state)?;
    let caller = match (caller, params.access) {
        (Some(caller), _) => caller,
        (None, Some(access)) => {
            let file_id = ticket_id(&aid)?;
            let user = files
                .check_link(&access, file_id, chrono::Utc::now())
                .ok_or_else(|| ApiError::unauthorized("This link is not valid or has run out."))?;
            let user = state
                .store
                .user_by_id(user)
                .await?
                .filter(|u| u.is_active)
                .ok_or_else(|| ApiError::unauthorized("This link is not valid or has run out."))?;
            Caller(user, None)
        }
        (None, None) => {
            return Err(ApiError::unauthorized(
                "Authentication credentials were not provided.",
            ))
        }
    };
    let (_, file) = file_of(&state, &caller, &id, &aid).await?;
    if file.deleted_at.is_some() {
        return Err(ApiError::not_found());
    }
    let stream = files.get(&file.key).await.map_err(|e| {
        tracing::error!(error = %e, attachment = file.id, "reading an attachment failed");
        ApiError::unavailable("The file could not be read; try again.")
    })?;
    let inline = attachments::inline_image(&file.content_type);
    let disposition = disposition(
        if inline { "inline" } else { "attachment" },
        &file.file_name,
    );
    let headers = [
        (CONTENT_TYPE, file.content_type.clone()),
        (CONTENT_LENGTH, file.size.to_string()),
        (CONTENT_DISPOSITION, disposition),
        (X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (
            CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox".to_owned(),
        ),
        (CACHE_CONTROL, "private, max-age=3600".to_owned()),
    ];
    let body = Body::from_stream(stream.map_err(std::io::Error::other));
    Ok((headers, body).into_response())
}

/// A `Content-Disposition` with the name in ASCII (others as `_`) and in full as UTF-8.
fn disposition(kind: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Deletes a file (its uploader, or an admin; not once the ticket is `APPROVED`): it stays
/// listed as a tombstone, and its bytes are removed from the store. Deleting it again
/// changes nothing.
#[utoipa::path(
    delete,
    path = "/api/tickets/{id}/attachments/{attachment_id}/",
    operation_id = "tickets_attachment_delete",
    tag = "tickets",
    params(
        ("id" = i64, Path, description = "The ticket's id."),
        ("attachment_id" = i64, Path, description = "The file's id."),
    ),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller neither attached the file nor is an admin.", body = ErrorBody),
        (status = 404, description = "No such ticket or file, or the caller may not see it.", body = ErrorBody),
        (status = 409, description = "The ticket is `APPROVED`.", body = ConflictBody),
        (status = 503, description = "The hub keeps no attachments.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, aid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let files = store_of(&state)?;
    let (ticket, file) = file_of(&state, &caller, &id, &aid).await?;
    may_remove_attachment(&ticket, file.uploader, caller.principal()).map_err(TicketError::from)?;
    state
        .store
        .delete_attachment(file.id, chrono::Utc::now())
        .await?;
    files.sweep_soon();
    state.hub.attachments_changed(ticket);
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dispositions_quote_nothing_a_header_could_break_on() {
        assert_eq!(
            super::disposition("attachment", "a b.pdf"),
            "attachment; filename=\"a b.pdf\"; filename*=UTF-8''a%20b.pdf"
        );
        assert_eq!(
            super::disposition("inline", "\"x\"\\é.png"),
            "inline; filename=\"_x___.png\"; filename*=UTF-8''%22x%22%5C%C3%A9.png"
        );
    }
}
