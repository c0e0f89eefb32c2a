//! `GET /api/admin/audit/`: the audit trail (admins, and `admin:read` keys): keys made and
//! revoked, powers taken away, the scheduled sends that went with them, devices that changed
//! hands, addresses verified.

use axum::extract::State;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use tickethub_actors::ports::{AuditEvent, AuditFilter};
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
    OpenApiRouter::new().routes(routes!(list))
}

/// One event of the trail.
#[derive(Serialize, ToSchema)]
pub struct AuditJson {
    /// Its id, in the order events were recorded.
    pub id: i64,
    /// When.
    #[schema(format = DateTime)]
    pub at: String,
    /// Who: `user:<id>`, `key:<id>`, `cli` (a management command) or `hub`.
    pub actor: String,
    /// What: `api_key.created`, `api_key.revoked`, `user.demoted`, `user.promoted`,
    /// `user.deactivated`, `user.activated`, `user.erased`, `scheduled_send.cancelled`,
    /// `device.moved`, `address.verified`, `address.suppressed`, `suppression.removed`.
    pub action: String,
    /// Of what: `api_key:<id>`, `user:<id>`, `scheduled_send:<id>`, `device:<id>`, `suppression:<id>`.
    pub subject: String,
    /// The rest: ids and reasons.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<&AuditEvent> for AuditJson {
    fn from(e: &AuditEvent) -> Self {
        Self {
            id: e.id,
            at: timestamp(e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            subject: e.subject.clone(),
            detail: serde_json::from_str(&e.detail).unwrap_or_else(|_| serde_json::json!({})),
        }
    }
}

/// The list's filters.
#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(flatten)]
    page: PageParams,
}

/// The audit trail, newest first (admins).
#[utoipa::path(
    get,
    path = "/api/admin/audit/",
    operation_id = "admin_audit_list",
    tag = "admin",
    params(
        ("subject" = Option<String>, Query, description = "Only of this subject, e.g. `user:4`."),
        ("action" = Option<String>, Query, description = "Only this action, e.g. `device.moved`."),
        ("actor" = Option<String>, Query, description = "Only by this actor, e.g. `key:2`."),
        PageQuery,
    ),
    responses(
        (status = 200, description = "A page of events.", body = Page<AuditJson>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "Invalid page.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
    parts: Parts,
) -> Result<axum::Json<Page<AuditJson>>, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::forbidden("Only admins can read the audit trail."));
    }
    let (page, slice) = q.page.page()?;
    let filter = AuditFilter {
        subject: q.subject.filter(|s| !s.is_empty()),
        action: q.action.filter(|s| !s.is_empty()),
        actor: q.actor.filter(|s| !s.is_empty()),
    };
    let (count, events) = state
        .store
        .audit_events(&filter, slice.offset, slice.limit)
        .await?;
    let results = events.iter().map(AuditJson::from).collect();
    Ok(axum::Json(paginated(
        &parts,
        page,
        slice.limit,
        count,
        results,
    )?))
}
