//! Scheduled sends: `POST /api/notifications/send/` with `send_at` or `delay` stores the send
//! (answered 202 with it); `GET /api/notifications/scheduled/` lists the pending ones,
//! `GET /api/notifications/scheduled/{id}/` shows one with its timeline and
//! `DELETE /api/notifications/scheduled/{id}/` cancels one. The scheduler actor fires them.
//!
//! A send belongs to whoever made it: the API key, if one did, else the person. A key lists,
//! shows and cancels its own (with its `notifications:send` scope), a person their own, an admin
//! with their own token everyone's.

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::Serialize;
use tickethub_actors::notification::{Announcement, Recipients};
use tickethub_actors::ports::{
    AuditFilter, Cancelled, NewScheduledSend, Scheduled, ScheduledSend, Sender,
};
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
        .routes(routes!(detail, cancel))
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
    /// The on-call schedule whose person on call it goes to as it fires (`primary`, or
    /// `primary:next` for the next one), if it names one.
    #[schema(required = true)]
    pub oncall: Option<String>,
    /// Its type.
    pub notification_type: String,
    /// Its title.
    pub title: String,
    /// Its message.
    pub message: String,
    /// Its outbound channels.
    #[schema(value_type = Vec<ChannelName>)]
    pub channels: Vec<&'static str>,
    /// Who scheduled it: the person, or the user an API key acts as.
    pub created_by: Option<i64>,
    /// The name of the API key that scheduled it, or null: the send is then the key's.
    #[schema(required = true)]
    pub api_key: Option<String>,
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

impl ScheduledJson {
    /// `s`, its key named from `keys` (the API keys by id).
    fn of(s: &ScheduledSend, keys: &std::collections::HashMap<i64, String>) -> Self {
        let a = &s.announcement;
        let (user_ids, role, oncall) = match &a.to {
            Recipients::Users(ids) => (Some(ids.iter().map(|u| u.0).collect()), None, None),
            Recipients::Role(role) => (None, Some(role.as_str()), None),
            Recipients::OnCall(target) => (None, None, Some(crate::wire::oncall_name(target))),
        };
        Self {
            id: s.id,
            send_at: timestamp(s.send_at),
            status: s.status.clone(),
            user_ids,
            role,
            oncall,
            notification_type: a.notification_type.clone(),
            title: a.title.clone(),
            message: a.message.clone(),
            channels: a.channels.iter().map(|c| c.as_str()).collect(),
            created_by: s.owner().map(|u| u.0),
            api_key: s.api_key.and_then(|id| keys.get(&id).cloned()),
            created_at: timestamp(s.created_at),
            fired_at: s.fired_at.map(timestamp),
            notified: s.notified,
            detail: s.detail.clone(),
        }
    }
}

/// The API keys' names by id, for the sends that name a key.
async fn key_names(
    state: &AppState,
    sends: &[&ScheduledSend],
) -> Result<std::collections::HashMap<i64, String>, ApiError> {
    if sends.iter().all(|s| s.api_key.is_none()) {
        return Ok(Default::default());
    }
    Ok(state
        .store
        .api_keys()
        .await?
        .into_iter()
        .map(|k| (k.id, k.name))
        .collect())
}

async fn answer(state: &AppState, send: &ScheduledSend) -> Result<Answer, ApiError> {
    let keys = key_names(state, &[send]).await?;
    Ok((
        StatusCode::ACCEPTED,
        serde_json::to_value(ScheduledJson::of(send, &keys)).expect("a scheduled send is JSON"),
    ))
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
                        api_key: caller.1.as_ref().map(|k| k.id),
                    },
                    state.schedule.max_pending,
                    mark.as_ref(),
                )
                .await?;
            match stored {
                Scheduled::Stored(send) => {
                    state.hub.scheduler_tick();
                    answer(state, &send).await
                }
                Scheduled::Full { cap } => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "{cap} sends are pending already, the most allowed: cancel one or wait."
                    ),
                )),
                Scheduled::Refused(why) => Err(ApiError::forbidden(format!(
                    "You may no longer send: {why}."
                ))),
            }
        },
        |id| async move {
            let id = id.ok_or_else(|| ApiError::unavailable("The scheduled send is not known."))?;
            match state.store.scheduled_send(id).await? {
                Some(send) => answer(state, &send).await,
                None => Err(ApiError::not_found()),
            }
        },
    )
    .await
}

/// Whose sends a caller sees and cancels: an API key's, its own; an admin's (with their own
/// token), everyone's; anyone else's, their own.
fn owner(caller: &Caller) -> Option<Sender> {
    match &caller.1 {
        Some(key) => Some(Sender::Key(key.id)),
        None if caller.is_admin() => None,
        None => Some(Sender::Person(caller.0.id)),
    }
}

/// Whether `send` is one the caller sees.
fn sees(caller: &Caller, send: &ScheduledSend) -> bool {
    owner(caller).is_none_or(|o| send.sender() == Some(o))
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
    let keys = key_names(&state, &sends.iter().collect::<Vec<_>>()).await?;
    let results = sends.iter().map(|s| ScheduledJson::of(s, &keys)).collect();
    Ok(axum::Json(paginated(
        &parts,
        page,
        slice.limit,
        count,
        results,
    )?))
}

/// What happened to a scheduled send, oldest first.
#[derive(Serialize, ToSchema)]
pub struct ScheduledEvent {
    /// `scheduled`, `cancelled`, `fired` or `failed`.
    pub event: &'static str,
    /// When.
    #[schema(format = DateTime)]
    pub at: String,
    /// Who: `user:<id>`, `key:<id>` or `cli`, when known.
    #[schema(required = true)]
    pub by: Option<String>,
    /// Why it was cancelled or failed, or what firing did.
    #[schema(required = true)]
    pub detail: Option<String>,
}

/// A scheduled send with its timeline.
#[derive(Serialize, ToSchema)]
pub struct ScheduledDetail {
    /// The send.
    #[serde(flatten)]
    pub send: ScheduledJson,
    /// What happened to it.
    pub timeline: Vec<ScheduledEvent>,
}

/// One of the caller's scheduled sends (admins: anyone's), whatever its status, with its
/// timeline: scheduled, then cancelled (by whom, and why), fired or failed.
#[utoipa::path(
    get,
    path = "/api/notifications/scheduled/{id}/",
    operation_id = "notifications_scheduled_detail",
    tag = "notifications",
    params(("id" = i64, Path, description = "The scheduled send.")),
    responses(
        (status = 200, description = "The send and its timeline.", body = ScheduledDetail),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such send of the caller's.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<ScheduledDetail>, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    let send = state
        .store
        .scheduled_send(id)
        .await?
        .filter(|s| sees(&caller, s))
        .ok_or_else(ApiError::not_found)?;
    let keys = key_names(&state, &[&send]).await?;
    let by = match (send.api_key, send.owner()) {
        (Some(key), _) => Some(format!("key:{key}")),
        (None, Some(user)) => Some(format!("user:{}", user.0)),
        (None, None) => None,
    };
    let mut timeline = vec![ScheduledEvent {
        event: "scheduled",
        at: timestamp(send.created_at),
        by,
        detail: None,
    }];
    let filter = AuditFilter {
        subject: Some(format!("scheduled_send:{id}")),
        action: Some("scheduled_send.cancelled".into()),
        actor: None,
    };
    let (_, cancellations) = state.store.audit_events(&filter, 0, 10).await?;
    match send.status.as_str() {
        "CANCELLED" => timeline.push(ScheduledEvent {
            event: "cancelled",
            at: timestamp(send.updated_at),
            by: cancellations.first().map(|e| e.actor.clone()),
            detail: send.detail.clone(),
        }),
        "FIRED" => timeline.push(ScheduledEvent {
            event: "fired",
            at: timestamp(send.fired_at.unwrap_or(send.updated_at)),
            by: None,
            detail: send.detail.clone(),
        }),
        "FAILED" => timeline.push(ScheduledEvent {
            event: "failed",
            at: timestamp(send.updated_at),
            by: None,
            detail: send.detail.clone(),
        }),
        _ => {}
    }
    Ok(axum::Json(ScheduledDetail {
        send: ScheduledJson::of(&send, &keys),
        timeline,
    }))
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
    match state
        .store
        .cancel_send(owner(&caller), id, &caller.label())
        .await?
    {
        Cancelled::Cancelled => Ok(StatusCode::NO_CONTENT),
        Cancelled::NotFound => Err(ApiError::not_found()),
        Cancelled::Settled(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("This send is {status}: only a pending send can be cancelled."),
        )),
    }
}
