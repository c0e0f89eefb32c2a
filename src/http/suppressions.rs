//! `/api/admin/suppressions/`: the addresses nothing more goes to (admins): email addresses
//! that bounced for good or whose owner complained, numbers the SMS provider says cannot
//! take messages. Taking one off lets sends to it resume.

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickethub_actors::ports::Suppression;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Query};
use super::openapi::PageQuery;
use super::{paginated, timestamp, Page, PageParams};
use crate::state::AppState;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(remove))
}

/// An address on the list.
#[derive(Serialize, ToSchema)]
pub struct SuppressionJson {
    /// Its id.
    pub id: i64,
    /// The channel: `email`, `sms`, …
    pub channel: String,
    /// The address, in lower case.
    pub address: String,
    /// What put it there: `bounce` (a hard bounce), `complaint` (its owner called the mail
    /// spam) or `provider` (the SMS provider refused the number for good).
    pub source: String,
    /// Why, as the report said: `bounced: 5.1.1 (smtp; 550 5.1.1 User unknown)`.
    pub reason: String,
    /// The delivery that told, if known.
    pub delivery_id: Option<i64>,
    /// Since when.
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&Suppression> for SuppressionJson {
    fn from(s: &Suppression) -> Self {
        Self {
            id: s.id,
            channel: s.channel.as_str().to_owned(),
            address: s.address.clone(),
            source: s.source.clone(),
            reason: s.reason.clone(),
            delivery_id: s.delivery_id,
            created_at: timestamp(s.created_at),
        }
    }
}

/// The list's filters.
#[derive(Deserialize)]
struct SuppressionQuery {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(flatten)]
    page: PageParams,
}

/// The suppression list, newest first (admins).
#[utoipa::path(
    get,
    path = "/api/admin/suppressions/",
    operation_id = "admin_suppressions_list",
    tag = "admin",
    params(
        ("channel" = Option<String>, Query, description = "Only of this channel, e.g. `email`."),
        ("address" = Option<String>, Query, description = "Only this address (any case)."),
        PageQuery,
    ),
    responses(
        (status = 200, description = "A page of the list.", body = Page<SuppressionJson>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "Invalid page.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<SuppressionQuery>,
    parts: Parts,
) -> Result<axum::Json<Page<SuppressionJson>>, ApiError> {
    caller.admin_only("manage the suppression list")?;
    // A channel this hub does not know has nothing on the list.
    let named = q.channel.as_deref().filter(|c| !c.is_empty());
    let channel = named.and_then(|name| {
        tickethub_actors::routing::Channel::registered()
            .into_iter()
            .map(|(c, _)| c)
            .find(|c| c.as_str() == name)
    });
    let (page, slice) = q.page.page()?;
    let address = q.address.filter(|a| !a.trim().is_empty());
    let (count, entries) = match (named, channel) {
        (Some(_), None) => (0, Vec::new()),
        _ => {
            state
                .store
                .suppressions(channel, address.as_deref(), slice.offset, slice.limit)
                .await?
        }
    };
    let results = entries.iter().map(SuppressionJson::from).collect();
    Ok(axum::Json(paginated(
        &parts,
        page,
        slice.limit,
        count,
        results,
    )?))
}

/// Takes an address off the list (admins): sends to it resume, and its owners may be reached
/// there again. Recorded in the audit trail.
#[utoipa::path(
    delete,
    path = "/api/admin/suppressions/{id}/",
    operation_id = "admin_suppressions_delete",
    tag = "admin",
    params(("id" = i64, Path, description = "The entry's id.")),
    responses(
        (status = 204, description = "Taken off."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such entry.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.admin_only("manage the suppression list")?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    match state.store.unsuppress(id, &caller.label()).await? {
        Some(entry) => {
            tracing::info!(
                id,
                channel = entry.channel.as_str(),
                by = caller.0.id.0,
                "an address is taken off the suppression list"
            );
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::not_found()),
    }
}
