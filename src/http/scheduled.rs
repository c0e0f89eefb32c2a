//! Scheduled sends: `POST /api/notifications/send/` with `send_at` or `delay` stores the send
//! (answered 202 with it); `GET /api/notifications/scheduled/` lists the pending ones and
//! `DELETE /api/notifications/scheduled/{id}/` cancels one. The scheduler actor fires them.

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::Serialize;
use tickethub_actors::notification::{Announcement, Recipients};
use tickethub_actors::ports::{Cancelled, NewScheduledSend, Scheduled, ScheduledSend};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Query};
use super::idempotency::{Answer, IdempotencyKey};
use super::openapi::{ChannelName, PageQuery, RoleName};
use super::{paginated, timestamp, Page, PageParams};
use crate::state::AppState;

/// The routes of this module (the send itself is `notifications::send`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(cancel))
}

/// A scheduled send.
#[derive(Serialize, ToSchema)]
pub struct ScheduledJson {
    /// Its id.
    pub id: i64,
    /// When it is due.
    #[schema(format = DateTime)]
    pub send_at: String,
    /// `PENDING`, `FIRING`, `FIRED`, `CANCELLED` or `FAILED`.
    pub status: String,
    /// The recipients' ids, if it names users.
    #[schema(required = true)]
    pub user_ids: Option<Vec<i64>>,
    /// The role whose active users it goes to, if it names a role.
    #[schema(required = true, value_type = Option<RoleName>)]
    pub role: Option<&'static str>,
    /// Its type.
    pub notification_type: String,
    /// Its title.
    pub title: String,
    /// Its message.
    pub message: String,
    /// Its outbound channels.
    #[schema(value_type = Vec<ChannelName>)]
    pub channels: Vec<&'static str>,
    /// Who scheduled it.
    pub created_by: Option<i64>,
    /// When it was scheduled.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it fired.
    #[schema(format = DateTime, required = true)]
    pub fired_at: Option<String>,
    /// How many users it notified.
    #[schema(required = true)]
    pub notified: Option<i64>,
    /// What firing did (how late, if it was), or why it failed or was cancelled.
    #[schema(required = true)]
    pub detail: Option<String>,
}

impl From<&ScheduledSend> for ScheduledJson {
    fn from(s: &ScheduledSend) -> Self {
        let a = &s.announcement;
        let (user_ids, role) = match &a.to {
            Recipients::Users(ids) => (Some(ids.iter().map(|u| u.0).collect()), None),
            Recipients::Role(role) => (None, Some(role.as_str())),
        };
        Self {
            id: s.id,
            send_at: timestamp(s.send_at),
            status: s.status.clone(),
            user_ids,
            role,
            notification_type: a.notification_type.clone(),
            title: a.title.clone(),
            message: a.message.clone(),
            channels: a.channels.iter().map(|c| c.as_str()).collect(),
            created_by: s.owner().map(|u| u.0),
            created_at: timestamp(s.created_at),
            fired_at: s.fired_at.map(timestamp),
            notified: s.notified,
            detail: s.detail.clone(),
        }
    }
}

fn answer(send: &ScheduledSend) -> Answer {
    (
        StatusCode::ACCEPTED,
        serde_json::to_value(ScheduledJson::from(send)).expect("a scheduled send is JSON"),
    )
}

/// Stores an admin's send to go at `send_at` (its recipients are resolved then), once per
/// `Idempotency-Key`: 202 with the stored send.
pub(crate) async fn schedule(
    state: &AppState,
    caller: &Caller,
    key: IdempotencyKey,
    bytes: &[u8],
    announcement: Announcement,
    send_at: chrono::DateTime<chrono::Utc>,
) -> Result<axum::response::Response, ApiError> {
    let request = ("POST", "/api/notifications/send/", bytes);
    super::idempotency::once(
        state,
        caller,
        key,
        request,
        |mark| async move {
            let stored = state
                .store
                .schedule_send(
                    NewScheduledSend {
                        announcement,
                        send_at,
                    },
                    state.schedule.max_pending,
                    mark.as_ref(),
                )
                .await?;
            match stored {
                Scheduled::Stored(send) => {
                    state.hub.scheduler_tick();
                    Ok(answer(&send))
                }
                Scheduled::Full { cap } => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "{cap} sends are pending already, the most allowed: cancel one or wait."
                    ),
                )),
            }
        },
        |id| async move {
            let id = id.ok_or_else(|| ApiError::unavailable("The scheduled send is not known."))?;
            match state.store.scheduled_send(id).await? {
                Some(send) => Ok(answer(&send)),
                None => Err(ApiError::not_found()),
            }
        },
    )
    .await
}

/// Whose sends a caller sees and cancels: an admin's, everyone's; another's, their own.
fn owner(caller: &Caller) -> Option<tickethub_actors::domain::UserId> {
    (!caller.is_admin()).then_some(caller.0.id)
}

/// Lists the sends not yet fired, soonest first: the caller's (admins: everyone's).
#[utoipa::path(
    get,
    path = "/api/notifications/scheduled/",
    operation_id = "notifications_scheduled_list",
    tag = "notifications",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of pending sends.", body = Page<ScheduledJson>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "Invalid page.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<PageParams>,
    parts: Parts,
) -> Result<axum::Json<Page<ScheduledJson>>, ApiError> {
    let (page, slice) = params.page()?;
    let (count, sends) = state
        .store
        .pending_sends(owner(&caller), slice.offset, slice.limit)
        .await?;
    let results = sends.iter().map(ScheduledJson::from).collect();
    Ok(axum::Json(paginated(
        &parts,
        page,
        slice.limit,
        count,
        results,
    )?))
}

/// Cancels a pending send; it will not fire.
#[utoipa::path(
    delete,
    path = "/api/notifications/scheduled/{id}/",
    operation_id = "notifications_scheduled_cancel",
    tag = "notifications",
    params(("id" = i64, Path, description = "The scheduled send.")),
    responses(
        (status = 204, description = "Cancelled."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such pending send of the caller's.", body = ErrorBody),
        (status = 409, description = "It fired, is firing, or was cancelled already.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    match state.store.cancel_send(owner(&caller), id).await? {
        Cancelled::Cancelled => Ok(StatusCode::NO_CONTENT),
        Cancelled::NotFound => Err(ApiError::not_found()),
        Cancelled::Settled(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("This send is {status}: only a pending send can be cancelled."),
        )),
    }
}
