//! A ticket's history: its changes as recorded with them, and what followed its
//! notifications (escalation steps that fired, acknowledgements from outside the hub), in one
//! list, oldest first.

use std::collections::HashMap;

use axum::extract::{Path, State};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ticket_id, visible};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Caller, Json};
use crate::http::openapi::TicketStatusName;
use crate::state::AppState;
use crate::wire;
use tickethub_actors::domain::UserId;
use tickethub_actors::ports::FollowUp;

/// The routes of this module.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(history))
}

/// A ticket's history: every change, oldest first, as recorded with it, with the escalation
/// steps that fired for its notifications and their acknowledgements in their places (until
/// retention removes them).
#[utoipa::path(
    get,
    path = "/api/tickets/{id}/history/",
    operation_id = "tickets_history",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id.")),
    responses(
        (status = 200, description = "The ticket's history, oldest first.", body = Vec<HistoryEntry>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such ticket, or the caller may not see it.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let ticket = visible(&state, &caller, ticket_id(&id)?).await?;
    let events = state.store.ticket_events(ticket.id).await?;
    let follow_ups = state.store.ticket_follow_ups(ticket.id).await?;
    let mut names: HashMap<UserId, Option<String>> = HashMap::new();
    let people = events
        .iter()
        .filter_map(|e| e.actor)
        .chain(follow_ups.iter().map(|f| match f {
            FollowUp::Escalated { recipient, .. } => *recipient,
            FollowUp::Acknowledged { by, .. } => *by,
        }));
    for person in people.collect::<Vec<_>>() {
        if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(person) {
            let name = state
                .store
                .user_by_id(person)
                .await?
                .map(|u| u.name().to_owned());
            slot.insert(name);
        }
    }
    let name = |u: UserId| names.get(&u).cloned().flatten();
    let entries: Vec<HistoryEntry> = events
        .iter()
        .map(|e| HistoryEntry {
            id: e.id,
            kind: "change",
            event: e.event.as_str().to_owned(),
            action: e.action.clone(),
            actor: e.actor.map(|u| u.0),
            actor_name: e.actor.and_then(name),
            status: e.status.as_str().to_owned(),
            assignees: e.assignees.iter().map(|u| u.0).collect(),
            newly_assigned: e.newly_assigned.iter().map(|u| u.0).collect(),
            at: wire::timestamp(e.at),
            reason: e.reason.clone(),
            changes: e
                .changes
                .iter()
                .map(|c| FieldChangeJson {
                    field: c.field.as_str().to_owned(),
                    before: c.before.clone(),
                    after: c.after.clone(),
                })
                .collect(),
            recipient: None,
            recipient_name: None,
            channels: Vec::new(),
            policy: None,
            step: None,
            via: None,
            sort_at: e.at,
        })
        .collect();
    // The changes stay in the order they were committed (their ids: nodes' clocks may
    // disagree); each follow-up goes before the first change recorded after it, with the
    // ticket's status and assignees as the changes before it left them.
    let changes = entries;
    let mut entries = Vec::with_capacity(changes.len() + follow_ups.len());
    let mut pending = follow_ups.iter().peekable();
    let follow_up = |f: &FollowUp, before: Option<&HistoryEntry>| {
        let at = f.at();
        let (status, assignees) = match before {
            Some(e) => (e.status.clone(), e.assignees.clone()),
            None => (ticket.status.as_str().to_owned(), Vec::new()),
        };
        let blank = |id, kind, event: &str, action: &str| HistoryEntry {
            id,
            kind,
            event: event.to_owned(),
            action: action.to_owned(),
            actor: None,
            actor_name: None,
            status: status.clone(),
            assignees: assignees.clone(),
            newly_assigned: Vec::new(),
            at: wire::timestamp(at),
            reason: None,
            changes: Vec::new(),
            recipient: None,
            recipient_name: None,
            channels: Vec::new(),
            policy: None,
            step: None,
            via: None,
            sort_at: at,
        };
        match f {
            FollowUp::Escalated {
                id,
                recipient,
                policy,
                step,
                channels,
                ..
            } => HistoryEntry {
                recipient: Some(recipient.0),
                recipient_name: name(*recipient),
                channels: channels.clone(),
                policy: Some(policy.clone()),
                step: Some(*step),
                ..blank(*id, "escalation", "escalation_fired", "escalate")
            },
            FollowUp::Acknowledged {
                notification,
                by,
                via,
                ..
            } => HistoryEntry {
                actor: Some(by.0),
                actor_name: name(*by),
                via: Some(via.clone()),
                ..blank(
                    *notification,
                    "acknowledgement",
                    "acknowledged",
                    "acknowledge",
                )
            },
        }
    };
    let mut last_change: Option<usize> = None;
    for change in changes {
        while let Some(f) = pending.next_if(|f| f.at() < change.sort_at) {
            let entry = follow_up(f, last_change.map(|i| &entries[i]));
            entries.push(entry);
        }
        entries.push(change);
        last_change = Some(entries.len() - 1);
    }
    for f in pending {
        let entry = follow_up(f, last_change.map(|i| &entries[i]));
        entries.push(entry);
    }
    Ok(Json(entries))
}

/// One entry of a ticket's history.
#[derive(serde::Serialize, ToSchema)]
pub struct HistoryEntry {
    /// The change's id; an escalation step's id; an acknowledged notification's id.
    pub id: i64,
    /// `change` (the ticket changed), `escalation` (a step fired: someone was paged on more
    /// channels) or `acknowledgement` (a notification about it was acknowledged from outside
    /// the hub: an SMS reply, a push or chat button).
    pub kind: &'static str,
    /// What happened: a change as a notification type (`ticket_created`, `ticket_assigned`,
    /// …); `escalation_fired`; `acknowledged`.
    pub event: String,
    /// The action that did it: `create`, `open_ticket`, `assign`, `start_work`, `finish_work`,
    /// `approve`, `reject`, `comments`, `edit`; `escalate`; `acknowledge`.
    pub action: String,
    /// Who did it (who acknowledged); none for an escalation.
    pub actor: Option<i64>,
    /// Their name as shown to people (display name, else username).
    pub actor_name: Option<String>,
    /// The ticket's status after it (at that moment, for an escalation or acknowledgement).
    #[schema(value_type = TicketStatusName)]
    pub status: String,
    /// The assignees after it.
    pub assignees: Vec<i64>,
    /// The assignees it added.
    pub newly_assigned: Vec<i64>,
    /// When.
    #[schema(format = DateTime)]
    pub at: String,
    /// A rejection's reason, as the client gave it.
    pub reason: Option<String>,
    /// The fields an edit (`ticket_updated`) changed, before and after; empty for the rest.
    pub changes: Vec<FieldChangeJson>,
    /// Whom an escalation paged.
    pub recipient: Option<i64>,
    /// Their name.
    pub recipient_name: Option<String>,
    /// The channels an escalation sent on.
    pub channels: Vec<String>,
    /// An escalation's policy.
    pub policy: Option<String>,
    /// An escalation's step in its policy, from 1.
    pub step: Option<i64>,
    /// How a notification was acknowledged: `sms`, `push`, `slack`, `mattermost`, `teams`,
    /// `email`, `voice`, `whatsapp`.
    pub via: Option<String>,
    #[serde(skip)]
    sort_at: chrono::DateTime<chrono::Utc>,
}

/// One field an edit changed.
#[derive(serde::Serialize, ToSchema)]
#[schema(as = FieldChange)]
pub struct FieldChangeJson {
    /// `title`, `description`, `priority` or `category`.
    pub field: String,
    /// Its value before (priorities and categories by their names: `HIGH`).
    pub before: String,
    /// Its value after.
    pub after: String,
}
