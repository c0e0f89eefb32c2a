//! Operators' view: the live supervision tree.
//!
//! The tree is collected without stopping anything: each directory answers a page of its
//! children from its own state (key, uptime, failures), then the listed actors are asked for a
//! snapshot concurrently with a short timeout; an actor too busy to answer in time is shown as
//! `busy`. Directories are paged and filtered, so the answer stays small with 50,000 actors.

use std::time::Duration;

use axum::extract::State;
use futures::future::join_all;
use serde::Deserialize;
use serde_json::{json, Value};
use tickethub_actors::connection::now_ms;
use tickethub_actors::directory::ListFilter;
use tickethub_actors::domain::UserId;
use tickethub_actors::room::RoomMsg;
use tickethub_actors::ticket::TicketMsg;
use tickethub_actors::ticket_domain::TicketId;
use tickethub_actors::user::UserMsg;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Json, Query};
use crate::state::AppState;

/// How long one actor may take to describe itself.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_millis(250);

/// The most users an actor listing's text filter matches by username.
const MATCHING_USERS: i64 = 10_000;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(actors))
        .routes(routes!(trace))
        .routes(routes!(escalations))
        .merge(super::analytics::router())
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TraceQuery {
    /// The ticket's id or key (`WEB-5`).
    #[param(value_type = String, required = true, pattern = r"^([+-]?[0-9]{1,18}|\s*\S+-\+?0*[1-9][0-9]{0,17}\s*)$")]
    ticket: Option<String>,
    /// The user's id or username.
    #[param(value_type = String, required = true, min_length = 1)]
    user: Option<String>,
}

/// "Why wasn't this user notified?": replays the routing decision of every event of a ticket
/// for one user. For each event: was the user a recipient and, if not, which rule left them
/// out (not a member, the actor themselves, not routed, deactivated); if so, which outbound
/// channels reached them (or why not: no address, switched off, no transport) and the
/// notification's timeline. Admins only.
#[utoipa::path(
    get,
    path = "/api/admin/trace",
    operation_id = "admin_trace",
    tag = "admin",
    params(TraceQuery),
    responses(
        (status = 200, description = "The ticket's events, each with the decision.", body = crate::timeline::Trace),
        (status = 400, description = "`ticket` or `user` is missing or malformed.", body = crate::http::error::ErrorBody),
        (status = 401, description = "No valid access token.", body = crate::http::error::ErrorBody),
        (status = 403, description = "Not an admin.", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such ticket or user.", body = crate::http::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn trace(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TraceQuery>,
) -> Result<Json<crate::timeline::Trace>, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::forbidden("Only admins can trace notifications."));
    }
    let ticket = q
        .ticket
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("ticket: This query parameter is required."))?;
    let user = q
        .user
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::bad_request("user: This query parameter is required."))?;
    let ticket = match ticket_ref(ticket)? {
        TicketRef::Id(id) => {
            state
                .store
                .ticket(tickethub_actors::ticket_domain::TicketId(id))
                .await?
        }
        TicketRef::Key(project, number) => state.store.ticket_by_key(&project, number).await?,
    }
    .ok_or_else(ApiError::not_found)?;
    let user = match user.parse::<i64>() {
        Ok(id) => state.store.user_by_id(UserId(id)).await?,
        Err(_) => state.store.user_with_hash(user).await?.map(|(u, _)| u),
    }
    .ok_or_else(ApiError::not_found)?;
    Ok(Json(
        crate::timeline::trace(
            state.store.as_ref(),
            state.hub.routing(),
            &state.hub.channels(),
            &ticket,
            &user,
        )
        .await?,
    ))
}

/// How a request names a ticket: its id, or its key.
#[derive(Debug, PartialEq, Eq)]
enum TicketRef {
    Id(i64),
    /// The project's key (upper case, as projects are keyed) and the number.
    Key(String, i64),
}

/// Reads `42` as an id and `WEB-5` (or `web-5`) as a key.
fn ticket_ref(text: &str) -> Result<TicketRef, ApiError> {
    if let Ok(id) = text.parse::<i64>() {
        return Ok(TicketRef::Id(id));
    }
    tickethub_actors::ticket_domain::parse_key(text)
        .map(|(project, number)| TicketRef::Key(project, number))
        .ok_or_else(|| {
            ApiError::bad_request("ticket: A ticket id or key (like WEB-5) is required.")
        })
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EscalationQuery {
    /// `PENDING` (the default), `FIRING`, `FIRED`, `CANCELLED`, `FAILED`, or `all`.
    #[param(inline)]
    status: Option<EscalationStatus>,
    /// At most this many (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// An escalation step's status, or `all`.
#[derive(Deserialize, Clone, Copy, utoipa::ToSchema)]
#[allow(clippy::upper_case_acronyms)]
pub(crate) enum EscalationStatus {
    PENDING,
    FIRING,
    FIRED,
    CANCELLED,
    FAILED,
    #[serde(rename = "all")]
    All,
}

impl EscalationStatus {
    fn as_str(self) -> &'static str {
        match self {
            EscalationStatus::PENDING => "PENDING",
            EscalationStatus::FIRING => "FIRING",
            EscalationStatus::FIRED => "FIRED",
            EscalationStatus::CANCELLED => "CANCELLED",
            EscalationStatus::FAILED => "FAILED",
            EscalationStatus::All => "all",
        }
    }
}

/// Escalation steps of every node, soonest due first: by default those still pending.
/// Admins only.
#[utoipa::path(
    get,
    path = "/api/admin/escalations",
    operation_id = "admin_escalations",
    tag = "admin",
    params(EscalationQuery),
    responses(
        (status = 200, description = "The steps.", body = Escalations),
        (status = 400, description = "An unknown status.", body = crate::http::error::ErrorBody),
        (status = 401, description = "No valid access token.", body = crate::http::error::ErrorBody),
        (status = 403, description = "Not an admin.", body = crate::http::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn escalations(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<EscalationQuery>,
) -> Result<Json<Escalations>, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::forbidden("Only admins can see escalations."));
    }
    let status = match q.status.unwrap_or(EscalationStatus::PENDING) {
        EscalationStatus::All => None,
        one => Some(one.as_str().to_owned()),
    };
    let limit = super::query_int("limit", q.limit.as_deref(), 1, 500)?.unwrap_or(100);
    let rows = state
        .store
        .list_escalations(status.as_deref(), limit)
        .await?;
    Ok(Json(Escalations {
        count: rows.len() as i64,
        results: rows.iter().map(crate::timeline::escalation_json).collect(),
    }))
}

/// Escalation steps.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Escalations {
    /// How many match.
    pub count: i64,
    /// The steps, soonest due first: id, notification_id, user_id, ticket_id, policy, step,
    /// unless, channels, also, due_at, status, detail, claimed_by, created_at, updated_at.
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<Value>,
}

/// The most actors of a directory a page may skip.
const MAX_OFFSET: i64 = 1_000_000;

#[derive(Deserialize, Default)]
struct TreeQuery {
    q: Option<String>,
    offset: Option<String>,
    limit: Option<String>,
}

fn status_name(s: ractor::ActorStatus) -> &'static str {
    use ractor::ActorStatus::*;
    match s {
        Unstarted => "unstarted",
        Starting => "starting",
        Running => "running",
        Upgrading => "upgrading",
        Draining => "draining",
        Stopping => "stopping",
        Stopped => "stopped",
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// The live supervision tree (admins): every directory with a page of its actors (name, kind,
/// status, queue depths, restarts), the delivery supervisor with its channels, the escalation
/// and purge actors. `q` filters actors by label or username.
#[utoipa::path(
    get,
    path = "/api/admin/actors",
    operation_id = "admin_actors",
    tag = "admin",
    params(
        ("q" = Option<String>, Query, description = "Only actors whose label (`user:7`, `ticket:12`, `project:3`) or username contains this."),
        ("offset" = Option<i64>, Query, minimum = 0, maximum = 1_000_000, description = "Actors of each directory to skip (default 0)."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Actors of each directory to list (default 50)."),
    ),
    responses(
        (status = 200, description = "The tree.", body = Object),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn actors(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TreeQuery>,
) -> Result<Json<Value>, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::forbidden(
            "Only admins can see the supervision tree.",
        ));
    }
    let offset =
        super::query_int("offset", q.offset.as_deref(), 0, MAX_OFFSET)?.unwrap_or(0) as usize;
    let limit = super::query_int("limit", q.limit.as_deref(), 1, 500)?.unwrap_or(50) as usize;
    let text = q.q.clone().filter(|t| !t.trim().is_empty());
    let hub = &state.hub;
    let unavailable = || ApiError::unavailable("The actor system did not answer.");

    // Users: the filter matches `user:<id>` labels or usernames. Only a filtered call reads
    // the users table; an unfiltered one reads the names of its page only.
    let mut usernames = std::collections::HashMap::new();
    let mut matching_ids = None;
    if let Some(t) = &text {
        let query = tickethub_actors::ports::UserQuery {
            username_contains: Some(t.clone()),
            ..Default::default()
        };
        let (_, found) = state
            .store
            .find_users(
                query,
                tickethub_actors::ports::Page {
                    offset: 0,
                    limit: MATCHING_USERS,
                },
            )
            .await?;
        matching_ids = Some(found.iter().map(|u| u.id).collect::<Vec<UserId>>());
    }
    let users = hub
        .list_users(ListFilter {
            label: text.clone(),
            keys: matching_ids,
            offset,
            limit,
        })
        .await
        .ok_or_else(unavailable)?;
    let user_ids: Vec<UserId> = users.items.iter().map(|l| l.key).collect();
    for u in state.store.users_by_ids(&user_ids).await? {
        usernames.insert(u.id, u.username);
    }
    let now = now_ms();
    let user_nodes = join_all(users.items.iter().map(|l| {
        let actor = l.actor.clone();
        let username = usernames.get(&l.key).cloned().unwrap_or_default();
        let (key, uptime, failures) = (l.key, l.uptime, l.failures);
        async move {
            let snap = ractor::call_t!(actor, UserMsg::Snapshot, SNAPSHOT_TIMEOUT.as_millis() as u64).ok();
            let mut node = json!({
                "name": format!("user:{key}"),
                "kind": "user",
                "id": key.0,
                "username": username,
                "status": if snap.is_some() { status_name(actor.get_status()) } else { "busy" },
                "uptime_secs": secs(uptime),
                "restarts": failures,
            });
            if let Some(s) = snap {
                node["sockets"] = json!({
                    "count": s.connections.len(),
                    "queued_frames": s.queued_frames,
                    "queued_bytes": s.queued_bytes,
                    "last_seen_secs_ago": secs(Duration::from_millis(now.saturating_sub(s.last_seen_ms))),
                });
                node["delivered_seq"] = s.delivered_seq.into();
            }
            node
        }
    }))
    .await;
    // Every open socket of this hub (notification and project sockets), not just the page's.
    let sockets = state.ws.sessions.len();

    let tickets = hub
        .list_tickets(ListFilter {
            label: text.clone(),
            keys: None,
            offset,
            limit,
        })
        .await
        .ok_or_else(unavailable)?;
    let ticket_nodes = join_all(tickets.items.iter().map(|l| {
        let actor = l.actor.clone();
        let (key, uptime, failures): (TicketId, _, _) = (l.key, l.uptime, l.failures);
        async move {
            let snap = ractor::call_t!(
                actor,
                TicketMsg::Snapshot,
                SNAPSHOT_TIMEOUT.as_millis() as u64
            )
            .ok();
            let mut node = json!({
                "name": format!("ticket:{key}"),
                "kind": "ticket",
                "id": key.0,
                "status": if snap.is_some() { status_name(actor.get_status()) } else { "busy" },
                "uptime_secs": secs(uptime),
                "restarts": failures,
            });
            if let Some(s) = snap {
                node["key"] = s.key.into();
                node["ticket_status"] = s.status.map(|st| st.as_str()).into();
                node["idle_secs"] = secs(s.idle).into();
            }
            node
        }
    }))
    .await;

    let rooms = hub
        .list_rooms(ListFilter {
            label: text.clone(),
            keys: None,
            offset,
            limit,
        })
        .await
        .ok_or_else(unavailable)?;
    let room_nodes = join_all(rooms.items.iter().map(|l| {
        let actor = l.actor.clone();
        let (key, uptime, failures) = (l.key, l.uptime, l.failures);
        async move {
            let snap = ractor::call_t!(actor, RoomMsg::Snapshot, SNAPSHOT_TIMEOUT.as_millis() as u64).ok();
            let mut node = json!({
                "name": format!("room:{key}"),
                "kind": "room",
                "project": key.0,
                "status": if snap.is_some() { status_name(actor.get_status()) } else { "busy" },
                "uptime_secs": secs(uptime),
                "restarts": failures,
            });
            if let Some(s) = snap {
                node["board_sockets"] = s.board_sockets.into();
                node["presence_sockets"] = s.presence_sockets.into();
                node["members"] = s
                    .members
                    .iter()
                    .map(|(id, username, tabs)| json!({"user_id": id.0, "username": username, "sockets": tabs}))
                    .collect::<Vec<_>>()
                    .into();
            }
            node
        }
    }))
    .await;

    let restarts = hub.channel_restarts().await;
    let mut channel_nodes = Vec::new();
    for channel in hub.channels() {
        let status = hub.channel_status(channel).await;
        let depth = state.store.outbox_depth(channel).await.unwrap_or(-1);
        let name = format!("channel:{}", channel.as_str());
        if text.as_deref().is_some_and(|t| !name.contains(t)) {
            continue;
        }
        channel_nodes.push(match status {
            Some(s) => json!({
                "name": name,
                "kind": "channel",
                "channel": channel.as_str(),
                "status": "running",
                "circuit": s.circuit,
                "in_flight": s.in_flight,
                "outbox_depth": depth,
                "sent": s.sent,
                "failed": s.failed,
                "retried": s.retried,
                "suppressed": s.suppressed,
                "wakes": s.wakes,
                "restarts": restarts.get(&channel).copied().unwrap_or(0),
            }),
            None => json!({
                "name": name,
                "kind": "channel",
                "channel": channel.as_str(),
                "status": "busy",
                "outbox_depth": depth,
                "restarts": restarts.get(&channel).copied().unwrap_or(0),
            }),
        });
    }
    let channel_count = channel_nodes.len();
    let escalation = match hub.escalation_snapshot().await {
        Some(s) => json!({
            "name": "escalation",
            "kind": "escalation",
            "status": "running",
            "pending": s.pending,
            "next_due": s.next_due.map(crate::timeline::at),
            "fired": s.fired,
            "cancelled": s.cancelled,
            "failed": s.failed,
            "policies": hub.routing().escalations().len(),
        }),
        None => json!({"name": "escalation", "kind": "escalation", "status": "busy"}),
    };
    let purge = match hub.purge_snapshot().await {
        Some(s) => json!({
            "name": "purge",
            "kind": "purge",
            "status": if s.sweeping { "sweeping" } else { "running" },
            "sweeps": s.sweeps,
            "removed": s.removed,
            "last_started": s.last_started.map(crate::timeline::at),
            "last_finished": s.last_finished.map(crate::timeline::at),
            "last_removed": s.last_removed,
            "vacuumed": s.vacuumed,
            "errors": s.errors,
            "last_error": s.last_error,
        }),
        None => json!({"name": "purge", "kind": "purge", "status": "busy"}),
    };
    let (uptime, root_restarts) = hub.root_info().await;
    Ok(Json(json!({
        "name": "hub",
        "kind": "root",
        "status": "running",
        "node": hub.node(),
        "uptime_secs": secs(uptime),
        "restarts": root_restarts,
        "totals": {
            "users": users.stats.actors,
            "sockets": sockets,
            "tickets": tickets.stats.actors,
            "rooms": rooms.stats.actors,
            "channels": channel_count,
        },
        "children": [
            {
                "name": "users",
                "kind": "directory",
                "status": "running",
                "actors": users.stats.actors,
                "failures": users.stats.failures,
                "last_failure": users.stats.last_failure,
                "page": {"offset": offset, "limit": limit, "total": users.total},
                "children": user_nodes,
            },
            {
                "name": "tickets",
                "kind": "directory",
                "status": "running",
                "actors": tickets.stats.actors,
                "failures": tickets.stats.failures,
                "last_failure": tickets.stats.last_failure,
                "page": {"offset": offset, "limit": limit, "total": tickets.total},
                "children": ticket_nodes,
            },
            {
                "name": "rooms",
                "kind": "directory",
                "status": "running",
                "actors": rooms.stats.actors,
                "failures": rooms.stats.failures,
                "last_failure": rooms.stats.last_failure,
                "page": {"offset": offset, "limit": limit, "total": rooms.total},
                "children": room_nodes,
            },
            {
                "name": "delivery",
                "kind": "supervisor",
                "status": "running",
                "children": channel_nodes,
            },
            escalation,
            purge,
        ],
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_named_by_its_id_or_its_key() {
        assert_eq!(ticket_ref("42").unwrap(), TicketRef::Id(42));
        assert_eq!(
            ticket_ref("WEB-5").unwrap(),
            TicketRef::Key("WEB".into(), 5)
        );
        assert_eq!(
            ticket_ref("web-5").unwrap(),
            TicketRef::Key("WEB".into(), 5)
        );
        for bad in ["WEB", "WEB-", "WEB-0", "WEB-x", "4.2", "W EB-1"] {
            assert!(ticket_ref(bad).is_err(), "{bad}");
        }
    }
}
