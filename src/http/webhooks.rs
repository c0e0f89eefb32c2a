//! `/api/admin/webhooks/`: event webhooks, managed by admins at run time: subscriptions to the
//! hub's events (`ticket.status_changed`, `notification.read`, `notification.delivered`,
//! `delivery.failed`), each with its delivery log and a test event (see `src/webhooks.rs`).

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickethub_actors::ports::{NewWebhook, Webhook, WebhookDelivery, WEBHOOK_EVENTS};
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
        .routes(routes!(detail, update, remove))
        .routes(routes!(deliveries))
        .routes(routes!(test))
}

/// A subscription, without its secret.
#[derive(Serialize, ToSchema)]
pub struct WebhookJson {
    /// Its id.
    pub id: i64,
    /// Where events are posted.
    pub url: String,
    /// The events it hears.
    pub events: Vec<String>,
    /// What it is for.
    pub description: String,
    /// Whether events are queued for it.
    pub enabled: bool,
    /// Why the hub turned it off, if it did.
    pub disabled_reason: Option<String>,
    /// Since when every post to it has failed, if it fails.
    #[schema(format = DateTime)]
    pub failing_since: Option<String>,
    /// When it was made.
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl WebhookJson {
    /// A subscription as `caller` sees it: an API key (`admin:read`) sees only the URL's
    /// scheme and host, as for the deployment's webhooks.
    fn shown(w: &Webhook, caller: &Caller) -> Self {
        let mut json = Self::from(w);
        if caller.1.is_some() {
            json.url = crate::timeline::masked_url(&w.url);
        }
        json
    }
}

impl From<&Webhook> for WebhookJson {
    fn from(w: &Webhook) -> Self {
        Self {
            id: w.id,
            url: w.url.clone(),
            events: w.events.clone(),
            description: w.description.clone(),
            enabled: w.enabled,
            disabled_reason: w.disabled_reason.clone(),
            failing_since: w.failing_since.map(timestamp),
            created_at: timestamp(w.created_at),
        }
    }
}

/// A new subscription, with its secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    /// `whsec_` + base64: the key of its signatures (Standard Webhooks).
    pub secret: String,
    /// The subscription.
    #[serde(flatten)]
    pub webhook: WebhookJson,
}

/// One event for a subscription.
#[derive(Serialize, ToSchema)]
pub struct WebhookDeliveryJson {
    /// Its id; the message's `webhook-id` is `msg_<id>`.
    pub id: i64,
    /// The event's type.
    pub event_type: String,
    /// What the event is of: a ticket event's, a notification's or a delivery's id.
    pub subject_id: i64,
    /// `PENDING`, `SENDING`, `DELIVERED` or `FAILED`.
    pub status: String,
    /// Posts tried.
    pub attempts: i64,
    /// When it is tried next, while pending.
    #[schema(format = DateTime)]
    pub next_attempt_at: String,
    /// The receiver's last HTTP status, if it answered.
    pub response_status: Option<i64>,
    /// Why the last post failed.
    pub last_error: Option<String>,
    /// When the event happened.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When the receiver took it.
    #[schema(format = DateTime)]
    pub delivered_at: Option<String>,
}

impl From<&WebhookDelivery> for WebhookDeliveryJson {
    fn from(d: &WebhookDelivery) -> Self {
        Self {
            id: d.id,
            event_type: d.event_type.clone(),
            subject_id: d.subject,
            status: d.status.clone(),
            attempts: d.attempts,
            next_attempt_at: timestamp(d.next_attempt_at),
            response_status: d.response_status,
            last_error: d.last_error.clone(),
            created_at: timestamp(d.created_at),
            delivered_at: d.delivered_at.map(timestamp),
        }
    }
}

/// An event a subscription may hear.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
enum EventName {
    #[serde(rename = "ticket.status_changed")]
    TicketStatusChanged,
    #[serde(rename = "notification.read")]
    NotificationRead,
    #[serde(rename = "notification.delivered")]
    NotificationDelivered,
    #[serde(rename = "delivery.failed")]
    DeliveryFailed,
}

/// A subscription to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateWebhookIn {
    /// An `http(s)` URL, at most 2,000 characters.
    #[schema(
        max_length = 2000,
        example = "https://example.com/hooks/tickethub",
        pattern = r"^https?://([A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?\.)*[A-Za-z]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?(:[1-9][0-9]{0,3})?(/[!-~]*)?$"
    )]
    url: String,
    /// The events it hears, at least one.
    #[schema(min_items = 1, inline, value_type = Vec<EventName>)]
    events: Vec<String>,
    /// Its signing secret, `whsec_` + base64 of at least 16 bytes; made for it if left out.
    #[serde(default)]
    #[schema(
        pattern = r"^whsec_([A-Za-z0-9+/]{4}){5,}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"
    )]
    secret: Option<String>,
    /// What it is for.
    #[serde(default)]
    #[schema(max_length = 200)]
    description: Option<String>,
}

/// A change to a subscription.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateWebhookIn {
    /// On (clearing why it was off) or off.
    enabled: bool,
}

fn id_of(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| ApiError::not_found())
}

async fn found(state: &AppState, id: &str) -> Result<Webhook, ApiError> {
    state
        .store
        .webhook(id_of(id)?)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// Every subscription, oldest first (admins).
#[utoipa::path(
    get,
    path = "/api/admin/webhooks/",
    operation_id = "admin_webhooks_list",
    tag = "admin",
    responses(
        (status = 200, description = "The subscriptions.", body = Vec<WebhookJson>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<WebhookJson>>, ApiError> {
    caller.admin_only("manage event webhooks")?;
    let all = state.store.webhooks().await?;
    Ok(axum::Json(
        all.iter().map(|w| WebhookJson::shown(w, &caller)).collect(),
    ))
}

/// Subscribes a URL to events (admins): the answer holds its secret, once.
#[utoipa::path(
    post,
    path = "/api/admin/webhooks/",
    operation_id = "admin_webhooks_create",
    tag = "admin",
    request_body = CreateWebhookIn,
    responses(
        (status = 201, description = "The subscription, with its secret.", body = CreatedWebhook),
        (status = 400, description = "A field is invalid.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateWebhookIn>,
) -> Result<(StatusCode, axum::Json<CreatedWebhook>), ApiError> {
    caller.admin_only("manage event webhooks")?;
    let url = body.url.trim();
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .filter(|u| u.username().is_empty() && u.password().is_none());
    if parsed.is_none() || url.len() > 2000 {
        return Err(ApiError::bad_request(
            "url: An http(s) URL with a host and no credentials, at most 2,000 characters.",
        ));
    }
    let mut events: Vec<String> = Vec::new();
    for event in &body.events {
        if !WEBHOOK_EVENTS.contains(&event.as_str()) {
            return Err(ApiError::bad_request(format!(
                "events: `{event}` is not one of {}.",
                WEBHOOK_EVENTS.join(", ")
            )));
        }
        if !events.contains(event) {
            events.push(event.clone());
        }
    }
    if events.is_empty() {
        return Err(ApiError::bad_request("events: Name at least one event."));
    }
    let secret = match body.secret {
        Some(secret) if crate::webhooks::secret_key(&secret).is_some() => secret,
        Some(_) => {
            return Err(ApiError::bad_request(
                "secret: A secret of the form whsec_<base64 of at least 16 bytes>.",
            ))
        }
        None => crate::webhooks::new_secret(),
    };
    let description = body.description.unwrap_or_default();
    if description.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "description: At most 200 characters.",
        ));
    }
    let made = state
        .store
        .add_webhook(NewWebhook {
            url: url.to_owned(),
            events,
            secret: secret.clone(),
            description,
            created_by: caller.0.id,
        })
        .await?;
    tracing::info!(id = made.id, by = caller.0.id.0, "event webhook made");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedWebhook {
            secret,
            webhook: WebhookJson::from(&made),
        }),
    ))
}

/// One subscription (admins).
#[utoipa::path(
    get,
    path = "/api/admin/webhooks/{id}/",
    operation_id = "admin_webhooks_detail",
    tag = "admin",
    params(("id" = i64, Path, description = "The subscription's id.")),
    responses(
        (status = 200, description = "The subscription.", body = WebhookJson),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such subscription.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<WebhookJson>, ApiError> {
    caller.admin_only("manage event webhooks")?;
    Ok(axum::Json(WebhookJson::shown(
        &found(&state, &id).await?,
        &caller,
    )))
}

/// Turns a subscription on or off (admins).
#[utoipa::path(
    patch,
    path = "/api/admin/webhooks/{id}/",
    operation_id = "admin_webhooks_update",
    tag = "admin",
    params(("id" = i64, Path, description = "The subscription's id.")),
    request_body = UpdateWebhookIn,
    responses(
        (status = 200, description = "The subscription, changed.", body = WebhookJson),
        (status = 400, description = "A field is invalid.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such subscription.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<UpdateWebhookIn>,
) -> Result<axum::Json<WebhookJson>, ApiError> {
    caller.admin_only("manage event webhooks")?;
    let changed = state
        .store
        .set_webhook_enabled(id_of(&id)?, body.enabled)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(axum::Json(WebhookJson::from(&changed)))
}

/// Deletes a subscription and its log (admins).
#[utoipa::path(
    delete,
    path = "/api/admin/webhooks/{id}/",
    operation_id = "admin_webhooks_delete",
    tag = "admin",
    params(("id" = i64, Path, description = "The subscription's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such subscription.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.admin_only("manage event webhooks")?;
    if state.store.delete_webhook(id_of(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// A subscription's delivery log, newest first (admins).
#[utoipa::path(
    get,
    path = "/api/admin/webhooks/{id}/deliveries/",
    operation_id = "admin_webhooks_deliveries",
    tag = "admin",
    params(("id" = i64, Path, description = "The subscription's id."), PageQuery),
    responses(
        (status = 200, description = "A page of the log.", body = Page<WebhookDeliveryJson>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such subscription, or an invalid page.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageParams>,
    parts: Parts,
) -> Result<axum::Json<Page<WebhookDeliveryJson>>, ApiError> {
    caller.admin_only("manage event webhooks")?;
    let webhook = found(&state, &id).await?;
    let (page, slice) = q.page()?;
    let (count, rows) = state
        .store
        .webhook_deliveries(webhook.id, slice.offset, slice.limit)
        .await?;
    let results = rows.iter().map(WebhookDeliveryJson::from).collect();
    Ok(axum::Json(paginated(
        &parts,
        page,
        slice.limit,
        count,
        results,
    )?))
}

/// Sends a subscription a test event (`webhook.test`), on or off (admins).
#[utoipa::path(
    post,
    path = "/api/admin/webhooks/{id}/test/",
    operation_id = "admin_webhooks_test",
    tag = "admin",
    params(("id" = i64, Path, description = "The subscription's id.")),
    responses(
        (status = 202, description = "Queued; its delivery.", body = WebhookDeliveryJson),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such subscription.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<WebhookDeliveryJson>), ApiError> {
    caller.admin_only("manage event webhooks")?;
    let queued = state
        .store
        .queue_webhook_test(id_of(&id)?, state.store.now())
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(WebhookDeliveryJson::from(&queued)),
    ))
}
