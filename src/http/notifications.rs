//! The caller's own notifications: the inbox, read state, deletion, deliveries, preferences,
//! and admins' sends. Another user's notification id is always 404.
//!
//! Reads go straight to the store; changes go through the caller's user actor (when they are
//! connected) so that their other sockets hear `notification_updated`.

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use std::collections::BTreeMap;

use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tickethub_actors::domain::UserId;
use tickethub_actors::ports::NotificationFilter;
use tickethub_actors::routing::{Channel, EventType};
use tickethub_actors::ticket_domain::TicketId;
use tickethub_actors::user::{CommandOutcome, UserCommand};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Json, Query, RawBody};
use super::idempotency::IdempotencyKey;
use super::openapi::{DeliveryChannelName, NotificationFilters, PageQuery};
use super::{paginated, parse_bool, parse_id, timestamp, Page, PageParams};
use crate::state::AppState;
use crate::wire::{self, SendIn};

/// How many notifications are unread.
#[derive(Serialize, ToSchema)]
pub struct UnreadCount {
    /// Unread notifications.
    pub count: i64,
    /// Unread notifications per type.
    pub by_type: BTreeMap<String, i64>,
}

/// One notification's new read state.
#[derive(Serialize, ToSchema)]
pub struct ReadStateChanged {
    /// What happened, in words.
    pub message: &'static str,
    /// The notification now.
    pub notification: wire::NotificationJson,
}

/// What a bulk change did.
#[derive(Serialize, ToSchema)]
pub struct BulkResult {
    /// What happened, in words.
    pub message: String,
    /// How many notifications changed.
    pub count: i64,
}

/// One channel's delivery of a notification. The first is always the in-app record
/// (`websocket`, `STORED`), which has no id, address or provider fields.
#[derive(Serialize, ToSchema)]
pub struct Delivery {
    /// The delivery's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// The channel; a push's carrier.
    #[schema(value_type = DeliveryChannelName)]
    pub channel: &'static str,
    /// The address it goes to: an email address, a phone number, (for admins) a webhook URL,
    /// or a push device's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `STORED` (in-app), `QUEUED`, `SENDING`, `SENT`, `FAILED`, or `SUPPRESSED` (a push held
    /// back until the notification proved unseen, and it was seen).
    #[schema(examples("SENT"))]
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// The last error (a webhook's only for admins).
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// The provider's id of the sent message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// When the next attempt is due, while `QUEUED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    /// When it was sent.
    #[schema(required = true, format = DateTime)]
    pub sent_at: Option<String>,
}

/// A notification's deliveries.
#[derive(Serialize, ToSchema)]
pub struct Deliveries {
    /// The notification's id.
    pub notification: i64,
    /// One per channel and address.
    pub deliveries: Vec<Delivery>,
}

/// Which outbound channels a user gets notifications on.
#[derive(Serialize, ToSchema)]
pub struct Preferences {
    /// Per channel (`email`, `whatsapp`, `sms`, `push`), for every type.
    pub channels: BTreeMap<String, bool>,
    /// Per type, per channel; these win over `channels`.
    pub types: BTreeMap<String, BTreeMap<String, bool>>,
    /// The built-in notification types.
    pub notification_types: Vec<&'static str>,
}

/// What a send did.
#[derive(Serialize, ToSchema)]
pub struct SendResult {
    /// Always `true`.
    pub success: bool,
    /// How many users were notified.
    pub count: i64,
}

/// The routes of this module. Seed 004's hyphenated paths are aliases of seed 001's.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(unread))
        .routes(routes!(unread_count))
        .routes(routes!(mark_all_as_read))
        .routes(routes!(delete_all))
        .routes(routes!(get_preferences, put_preferences))
        .routes(routes!(send))
        .routes(routes!(one, delete_one))
        .routes(routes!(mark_as_read))
        .routes(routes!(mark_as_unread))
        .routes(routes!(deliveries))
        .routes(routes!(timeline))
        // Seed 004's spellings: the same handlers, documented as deprecated aliases by
        // `openapi::Aliases`.
        .route("/api/notifications/unread-count/", get(unread_count))
        .route(
            "/api/notifications/mark-all-as-read/",
            post(mark_all_as_read),
        )
        .route("/api/notifications/mark_as_read/{id}/", post(mark_as_read))
        .route("/api/notifications/{id}/mark-as-read/", post(mark_as_read))
        .route(
            "/api/notifications/{id}/mark-as-unread/",
            post(mark_as_unread),
        )
}

/// Every recorded event of a notification, in order: committed (by which action of whom),
/// pushed to sockets (how many, on which node), acked, read, deleted, each delivery attempt
/// with its outcome, and each escalation step scheduled, fired or cancelled (and why). For
/// its recipient and for admins.
#[utoipa::path(
    get,
    path = "/api/notifications/{id}/timeline/",
    operation_id = "notifications_timeline",
    tag = "notifications",
    params(("id" = i64, Path, description = "The notification's id.")),
    responses(
        (status = 200, description = "The notification and its events, oldest first.", body = crate::timeline::Timeline),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such notification, or not the caller's (admins see every one).", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn timeline(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<crate::timeline::Timeline>, ApiError> {
    let id = notification_id(&id)?;
    let record = state
        .store
        .timeline(id)
        .await?
        .filter(|r| {
            caller.is_admin() || (r.notification.user_id == caller.0.id && r.deleted_at.is_none())
        })
        .ok_or_else(ApiError::not_found)?;
    let viewer = viewer(&caller);
    Ok(Json(
        crate::timeline::timeline(state.store.as_ref(), record, viewer).await?,
    ))
}

/// The list filters, as query parameters.
#[derive(Deserialize, Default)]
struct Filters {
    is_read: Option<String>,
    notification_type: Option<String>,
    /// Seed 004 calls the type filter `type`.
    #[serde(rename = "type")]
    kind: Option<String>,
    ticket: Option<String>,
    #[serde(flatten)]
    page: PageParams,
}

impl Filters {
    fn filter(&self) -> Result<NotificationFilter, ApiError> {
        // An empty type is no filter; an empty `is_read` or `ticket` is not a value.
        let nonempty = |o: &Option<String>| o.clone().filter(|s| !s.is_empty());
        Ok(NotificationFilter {
            is_read: self
                .is_read
                .as_deref()
                .map(|v| parse_bool("is_read", v))
                .transpose()?,
            notification_type: nonempty(&self.notification_type).or_else(|| nonempty(&self.kind)),
            ticket: self
                .ticket
                .as_deref()
                .map(|v| parse_id("ticket", v).map(TicketId))
                .transpose()?,
            before_seq: None,
        })
    }
}

async fn page_of(
    state: &AppState,
    caller: &Caller,
    filter: NotificationFilter,
    params: PageParams,
    parts: &Parts,
) -> Result<Json<Page<wire::NotificationJson>>, ApiError> {
    let (page, slice) = params.page()?;
    let (count, list) = state
        .store
        .list_notifications(caller.0.id, &filter, slice)
        .await?;
    let ids: Vec<i64> = list.iter().map(|n| n.id).collect();
    let deliveries = state.store.delivery_summaries(&ids).await?;
    let results = list
        .iter()
        .map(|n| wire::notification_rest(n, &caller.0, deliveries.get(&n.id)))
        .collect();
    Ok(Json(paginated(parts, page, slice.limit, count, results)?))
}

/// Lists the caller's notifications, newest first.
#[utoipa::path(
    get,
    path = "/api/notifications/",
    operation_id = "notifications_list",
    tag = "notifications",
    params(NotificationFilters, PageQuery),
    responses(
        (status = 200, description = "A page of notifications.", body = Page<wire::NotificationJson>),
        (status = 400, description = "A filter is invalid.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "Invalid page.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<Filters>,
    parts: Parts,
) -> Result<Json<Page<wire::NotificationJson>>, ApiError> {
    page_of(&state, &caller, q.filter()?, q.page, &parts).await
}

/// Lists the caller's unread notifications, newest first.
#[utoipa::path(
    get,
    path = "/api/notifications/unread/",
    operation_id = "notifications_unread",
    tag = "notifications",
    params(NotificationFilters, PageQuery),
    responses(
        (status = 200, description = "A page of unread notifications; `is_read` is ignored.", body = Page<wire::NotificationJson>),
        (status = 400, description = "A filter is invalid.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "Invalid page.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn unread(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<Filters>,
    parts: Parts,
) -> Result<Json<Page<wire::NotificationJson>>, ApiError> {
    let filter = NotificationFilter {
        is_read: Some(false),
        ..q.filter()?
    };
    page_of(&state, &caller, filter, q.page, &parts).await
}

/// Counts the caller's unread notifications.
#[utoipa::path(
    get,
    path = "/api/notifications/unread_count/",
    operation_id = "notifications_unread_count",
    tag = "notifications",
    responses(
        (status = 200, description = "The count, in all and per type.", body = UnreadCount),
        (status = 401, description = "No valid access token.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn unread_count(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<UnreadCount>, ApiError> {
    let (count, by_type) = state.store.unread_counts(caller.0.id).await?;
    Ok(Json(UnreadCount {
        count,
        by_type: by_type.into_iter().collect(),
    }))
}

fn notification_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

/// One of the caller's notifications.
#[utoipa::path(
    get,
    path = "/api/notifications/{id}/",
    operation_id = "notifications_detail",
    tag = "notifications",
    params(("id" = i64, Path, description = "The notification's id.")),
    responses(
        (status = 200, description = "The notification.", body = wire::NotificationJson),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such notification of the caller's.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<wire::NotificationJson>, ApiError> {
    let n = state
        .store
        .notification(caller.0.id, notification_id(&id)?)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(rest_one(&state, &n, &caller).await?))
}

/// One notification as the REST API shows it, with how its deliveries stand.
async fn rest_one(
    state: &AppState,
    n: &tickethub_actors::notification::Notification,
    caller: &Caller,
) -> Result<wire::NotificationJson, ApiError> {
    let deliveries = state.store.delivery_summaries(&[n.id]).await?;
    Ok(wire::notification_rest(n, &caller.0, deliveries.get(&n.id)))
}

async fn command(
    state: &AppState,
    user: UserId,
    cmd: UserCommand,
) -> Result<CommandOutcome, ApiError> {
    state.hub.user_command(user, None, cmd).await.map_err(|e| {
        if e == tickethub_actors::hub::USER_ACTOR_BUSY {
            return ApiError::unavailable(e).retry_after(1);
        }
        tracing::error!(error = %e, "inbox command failed");
        ApiError::unavailable("The database is unavailable; try again shortly.")
    })
}

async fn set_read(
    state: AppState,
    caller: Caller,
    id: String,
    read: bool,
) -> Result<Json<ReadStateChanged>, ApiError> {
    let id = notification_id(&id)?;
    match command(&state, caller.0.id, UserCommand::SetRead { id, read }).await? {
        CommandOutcome::SetRead {
            notification: Some(n),
            ..
        } => Ok(Json(ReadStateChanged {
            message: if read {
                "Notification marked as read"
            } else {
                "Notification marked as unread"
            },
            notification: rest_one(&state, &n, &caller).await?,
        })),
        _ => Err(ApiError::not_found()),
    }
}

/// Marks one of the caller's notifications read.
#[utoipa::path(
    post,
    path = "/api/notifications/{id}/mark_as_read/",
    operation_id = "notifications_mark_as_read",
    tag = "notifications",
    params(("id" = i64, Path, description = "The notification's id.")),
    responses(
        (status = 200, description = "The notification, read.", body = ReadStateChanged),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such notification of the caller's.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn mark_as_read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ReadStateChanged>, ApiError> {
    set_read(state, caller, id, true).await
}

/// Marks one of the caller's notifications unread.
#[utoipa::path(
    post,
    path = "/api/notifications/{id}/mark_as_unread/",
    operation_id = "notifications_mark_as_unread",
    tag = "notifications",
    params(("id" = i64, Path, description = "The notification's id.")),
    responses(
        (status = 200, description = "The notification, unread.", body = ReadStateChanged),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such notification of the caller's.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn mark_as_unread(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ReadStateChanged>, ApiError> {
    set_read(state, caller, id, false).await
}

/// Marks the caller's notifications read, all or those matching the filters.
#[utoipa::path(
    post,
    path = "/api/notifications/mark_all_as_read/",
    operation_id = "notifications_mark_all_as_read",
    tag = "notifications",
    params(NotificationFilters),
    responses(
        (status = 200, description = "How many were marked; `is_read` is ignored.", body = BulkResult),
        (status = 400, description = "A filter is invalid.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn mark_all_as_read(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<Filters>,
) -> Result<Json<BulkResult>, ApiError> {
    let filter = NotificationFilter {
        is_read: None,
        ..q.filter()?
    };
    match command(&state, caller.0.id, UserCommand::MarkAllRead(filter)).await? {
        CommandOutcome::AllRead(ids) => Ok(Json(BulkResult {
            message: format!("{} notification(s) marked as read", ids.len()),
            count: ids.len() as i64,
        })),
        _ => Err(ApiError::unavailable("Unexpected answer.")),
    }
}

/// Deletes one of the caller's notifications.
#[utoipa::path(
    delete,
    path = "/api/notifications/{id}/",
    operation_id = "notifications_delete",
    tag = "notifications",
    params(("id" = i64, Path, description = "The notification's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such notification of the caller's.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn delete_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = notification_id(&id)?;
    match command(&state, caller.0.id, UserCommand::Delete { id }).await? {
        CommandOutcome::Deleted { success: true, .. } => Ok(StatusCode::NO_CONTENT),
        _ => Err(ApiError::not_found()),
    }
}

/// Deletes all of the caller's notifications.
#[utoipa::path(
    delete,
    path = "/api/notifications/delete-all/",
    operation_id = "notifications_delete_all",
    tag = "notifications",
    responses(
        (status = 200, description = "How many were deleted.", body = BulkResult),
        (status = 401, description = "No valid access token.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn delete_all(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<BulkResult>, ApiError> {
    match command(&state, caller.0.id, UserCommand::DeleteAll).await? {
        CommandOutcome::AllDeleted(ids) => Ok(Json(BulkResult {
            message: format!("{} notification(s) deleted", ids.len()),
            count: ids.len() as i64,
        })),
        _ => Err(ApiError::unavailable("Unexpected answer.")),
    }
}

/// The deliveries of one of the caller's notifications: the in-app record, then each email,
/// WhatsApp and webhook delivery with its state.
#[utoipa::path(
    get,
    path = "/api/notifications/{id}/deliveries/",
    operation_id = "notifications_deliveries",
    tag = "notifications",
    params(("id" = i64, Path, description = "The notification's id.")),
    responses(
        (status = 200, description = "The deliveries.", body = Deliveries),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such notification of the caller's.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Deliveries>, ApiError> {
    let id = notification_id(&id)?;
    let list = state
        .store
        .deliveries(caller.0.id, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let mut out = vec![Delivery {
        id: None,
        channel: "websocket",
        address: None,
        status: "STORED".into(),
        attempts: 0,
        last_error: None,
        provider_message_id: None,
        next_attempt_at: None,
        sent_at: None,
    }];
    let viewer = viewer(&caller);
    out.extend(list.iter().map(|d| {
        Delivery {
            id: Some(d.id),
            channel: d.channel.as_str(),
            address: viewer
                .address(d.channel, &d.address)
                .map(|a| a.into_owned()),
            status: d.status.clone(),
            attempts: d.attempts,
            last_error: viewer
                .error(d.channel, d.last_error.as_deref())
                .map(str::to_owned),
            provider_message_id: d.provider_message_id.clone(),
            next_attempt_at: (d.status == "QUEUED").then(|| timestamp(d.next_attempt_at)),
            sent_at: d.sent_at.map(timestamp),
        }
    }));
    Ok(Json(Deliveries {
        notification: id,
        deliveries: out,
    }))
}

/// The most notification types one preferences update may name.
const MAX_PREFERENCE_TYPES: usize = 64;

/// The channels a user can switch: those that reach them personally, and their devices. The
/// in-app record is always stored; a deployment channel (webhooks) is the operator's.
pub(crate) fn switchable_channels() -> Vec<Channel> {
    use tickethub_actors::routing::Reach;
    Channel::registered()
        .into_iter()
        .filter(|(_, reach)| matches!(reach, Reach::Personal | Reach::Devices))
        .map(|(c, _)| c)
        .collect()
}

/// The caller's channel preferences.
#[utoipa::path(
    get,
    path = "/api/notifications/preferences/",
    operation_id = "notifications_preferences",
    tag = "notifications",
    responses(
        (status = 200, description = "The preferences.", body = Preferences),
        (status = 401, description = "No valid access token.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_preferences(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Preferences>, ApiError> {
    Ok(Json(preferences_json(&state, caller.0.id).await?))
}

async fn preferences_json(state: &AppState, user: UserId) -> Result<Preferences, ApiError> {
    let prefs = state
        .store
        .preferences(&[user])
        .await?
        .remove(&user)
        .unwrap_or_default();
    let channels = switchable_channels()
        .iter()
        .map(|c| {
            let on = prefs.allows(&EventType::Custom("*".into()), *c);
            (c.as_str().to_owned(), on)
        })
        .collect();
    let mut types: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for (kind, channel, enabled) in prefs.entries() {
        if kind != "*" {
            types
                .entry(kind)
                .or_default()
                .insert(channel.as_str().to_owned(), enabled);
        }
    }
    Ok(Preferences {
        channels,
        types,
        notification_types: EventType::BUILT_IN.iter().map(|e| e.as_str()).collect(),
    })
}

/// Switches to set; those not named stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PreferencesUpdate, examples(json!({"channels": {"whatsapp": false}, "types": {"ticket_created": {"email": false}}})))]
pub(crate) struct PreferencesIn {
    /// Per channel (`email`, `whatsapp`, `sms`, `push`), for every type.
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, bool>)]
    pub(crate) channels: Map<String, Value>,
    /// Per type, per channel; these win over `channels`.
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>>)]
    pub(crate) types: Map<String, Value>,
    /// Read-only (the types the hub knows): accepted and ignored, so that the body `GET`
    /// answers can be sent back as it is, as in DRF.
    #[serde(default, rename = "notification_types")]
    #[schema(read_only)]
    _notification_types: Option<Vec<String>>,
}

pub(crate) fn switchable(name: &str) -> Result<Channel, ApiError> {
    let channels = switchable_channels();
    channels
        .iter()
        .copied()
        .find(|c| c.as_str() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
            ApiError::bad_request(format!(
                "`{name}` is not a channel you can switch ({}); in-app notifications are always stored.",
                names.join(", ")
            ))
        })
}

pub(crate) fn switch_value(path: &str, v: &Value) -> Result<bool, ApiError> {
    v.as_bool()
        .ok_or_else(|| ApiError::bad_request(format!("{path}: must be true or false.")))
}

/// Changes the caller's channel preferences; the in-app record is always stored.
#[utoipa::path(
    put,
    path = "/api/notifications/preferences/",
    operation_id = "notifications_preferences_update",
    tag = "notifications",
    request_body = PreferencesIn,
    responses(
        (status = 200, description = "The preferences, changed.", body = Preferences),
        (status = 400, description = "A channel cannot be switched, a type is invalid, or a value is not a boolean.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn put_preferences(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<PreferencesIn>,
) -> Result<Json<Preferences>, ApiError> {
    let mut switches = Vec::new();
    for (name, v) in &body.channels {
        switches.push((
            "*".to_owned(),
            switchable(name)?,
            switch_value(&format!("channels.{name}"), v)?,
        ));
    }
    if body.types.len() > MAX_PREFERENCE_TYPES {
        return Err(ApiError::bad_request(format!(
            "types: At most {MAX_PREFERENCE_TYPES} notification types at once."
        )));
    }
    // Only types the hub routes, or that the caller has received: anything else would be a
    // row kept for ever for a type that never comes.
    let unrouted: Vec<String> = body
        .types
        .keys()
        .filter(|k| {
            let Ok(event) = k.parse::<EventType>();
            state.hub.routing().route(&event).is_none()
        })
        .cloned()
        .collect();
    let received = state.store.types_received(caller.0.id, &unrouted).await?;
    if let Some(unknown) = unrouted.iter().find(|k| !received.contains(k)) {
        return Err(ApiError::bad_request(format!(
            "types: `{unknown}` is not a notification type you can receive."
        )));
    }
    for (kind, per_channel) in &body.types {
        if kind.is_empty() || kind.len() > 64 || kind == "*" {
            return Err(ApiError::bad_request(format!(
                "types: `{kind}` is not a notification type."
            )));
        }
        let per_channel = per_channel.as_object().ok_or_else(|| {
            ApiError::bad_request(format!(
                "types.{kind}: must be an object of channel → boolean."
            ))
        })?;
        for (name, v) in per_channel {
            switches.push((
                kind.clone(),
                switchable(name)?,
                switch_value(&format!("types.{kind}.{name}"), v)?,
            ));
        }
    }
    state.store.set_preferences(caller.0.id, &switches).await?;
    Ok(Json(preferences_json(&state, caller.0.id).await?))
}

/// Sends a notification to users (admins).
#[utoipa::path(
    post,
    path = "/api/notifications/send/",
    operation_id = "notifications_send",
    tag = "notifications",
    request_body = SendIn,
    responses(
        (status = 201, description = "Sent.", body = SendResult),
        (status = 202, description = "Scheduled (`send_at` or `delay`): the stored send, fired when due; its recipients are resolved then.", body = super::scheduled::ScheduledJson),
        (status = 400, description = "The recipients or a field are invalid, `oncall` names no schedule or a schedule with nobody on call, or `send_at`/`delay` is in the past or too far ahead.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin (or the API key has no `notifications:send`).", body = ErrorBody),
        (status = 409, description = "A request with this `Idempotency-Key` is in progress, or the caller has as many sends scheduled as allowed.", body = ErrorBody),
        (status = 422, description = "This `Idempotency-Key` was used with another request.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn send(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    headers: axum::http::HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<axum::response::Response, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::forbidden("Only admins can send notifications."));
    }
    let body: SendIn = Json::parse(&headers, &bytes)?;
    let due = body
        .due(state.store.now(), state.schedule.max_ahead)
        .map_err(ApiError::bad_request)?;
    let mut announcement = body.into_announcement().map_err(ApiError::bad_request)?;
    announcement.sent_by = Some(caller.0.id);
    if let Some(send_at) = due {
        // An on-call send is resolved as it fires; its schedule must exist now.
        if let tickethub_actors::notification::Recipients::OnCall(target) = &announcement.to {
            if state
                .store
                .oncall_schedule(&target.schedule)
                .await?
                .is_none()
            {
                return Err(tickethub_actors::notifier::Unpaged::NoSchedule(
                    target.schedule.clone(),
                )
                .into());
            }
        }
        // A rare branch: boxed, so that the handler's future stays small for the common one.
        return Box::pin(super::scheduled::schedule(
            &state,
            &caller,
            key,
            &bytes,
            announcement,
            send_at,
        ))
        .await;
    }
    let answer = |count: i64| {
        serde_json::to_value(SendResult {
            success: true,
            count,
        })
        .expect("a SendResult is JSON")
    };
    let request = ("POST", "/api/notifications/send/", &bytes[..]);
    super::idempotency::once(
        &state,
        &caller,
        key,
        request,
        |mark| async {
            announcement.idempotency = mark;
            // Whoever is on call as it commits.
            let announcement = state.hub.page(announcement).await?;
            let count = state.hub.announce(announcement).await?.count;
            Ok((StatusCode::CREATED, answer(count)))
        },
        |count| async move { Ok((StatusCode::CREATED, answer(count.unwrap_or(0)))) },
    )
    .await
}

/// Who `caller` is as a reader of timelines and deliveries.
fn viewer(caller: &Caller) -> crate::timeline::Viewer {
    use crate::timeline::Viewer;
    match (caller.is_admin(), &caller.1) {
        (true, None) => Viewer::Operator,
        (true, Some(_)) => Viewer::Key,
        (false, _) => Viewer::Recipient,
    }
}
