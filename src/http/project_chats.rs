//! A project's chats: `GET`/`POST /api/projects/{id}/chat/` and
//! `DELETE /api/projects/{id}/chat/{chat}/` (admins). A chat channel (Slack, Mattermost,
//! Microsoft Teams) that hears the project's ticket events, those of `events` (all without)
//! about tickets of `when.priority` (all without): each ticket is one message kept current,
//! its thread the ticket's history (see `crate::chats`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickethub_actors::event::EventType;
use tickethub_actors::ports::{NewProjectChat, ProjectChat, StoreError};
use tickethub_actors::ticket_domain::Priority;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Json};
use super::maintenance::project;
use super::timestamp;
use crate::state::AppState;

/// The events a project chat can hear: a ticket's (every built-in type but sign-ups and
/// mentions, which are personal).
fn ticket_events() -> impl Iterator<Item = &'static EventType> {
    EventType::BUILT_IN
        .iter()
        .filter(|e| !matches!(e, EventType::UserRegistered | EventType::TicketMentioned))
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(remove))
}

/// Which tickets a chat hears about.
#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// The tickets' priorities (`LOW`, `MEDIUM`, `HIGH`, `CRITICAL`); empty or left out:
    /// every priority.
    #[serde(default)]
    priority: Vec<String>,
}

/// A project chat.
#[derive(Serialize, ToSchema)]
pub struct ProjectChatJson {
    /// Its id.
    id: i64,
    /// The project.
    project: i64,
    /// The chat: `slack`, `mattermost` or `teams`.
    provider: String,
    /// Where on it: a Slack channel id (`C…`), a Mattermost channel id, a Teams workflow's URL
    /// (its host only: the URL is a secret).
    channel: String,
    /// The events it hears; empty: every ticket event.
    events: Vec<String>,
    /// Which tickets.
    when: When,
    /// Events still to be told.
    pending: i64,
    /// Events the chat refused for good.
    failed: i64,
    /// The admin who added it.
    created_by: Option<i64>,
    /// When it was added.
    #[schema(format = DateTime)]
    created_at: String,
}

fn json(c: &ProjectChat) -> ProjectChatJson {
    ProjectChatJson {
        id: c.id,
        project: c.project.0,
        provider: c.provider.clone(),
        // A Teams URL is a secret: only its host is shown again.
        channel: match c.provider.as_str() {
            "teams" => match reqwest::Url::parse(&c.channel) {
                Ok(url) => format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or("")),
                Err(_) => "…".into(),
            },
            _ => c.channel.clone(),
        },
        events: c.events.iter().map(|e| e.as_str().to_owned()).collect(),
        when: When {
            priority: c.priorities.iter().map(|p| p.as_str().to_owned()).collect(),
        },
        pending: c.pending,
        failed: c.failed,
        created_by: c.created_by.map(|u| u.0),
        created_at: timestamp(c.created_at),
    }
}

/// A chat to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectChatIn {
    /// `slack`, `mattermost` or `teams`: one the hub is set up for.
    provider: String,
    /// Where on it: a Slack channel id (`C…`, the app invited to it), a Mattermost channel id
    /// (the bot added to it), a Teams workflow's webhook URL.
    channel: String,
    /// The events it hears (`ticket_created`, `ticket_opened`, `ticket_assigned`,
    /// `work_started`, `work_finished`, `ticket_approved`, `ticket_rejected`,
    /// `comment_added`); empty or left out: all.
    #[serde(default)]
    events: Vec<String>,
    /// Which tickets (left out: all).
    #[serde(default)]
    when: When,
}

/// The project's chats, oldest first (admins).
#[utoipa::path(
    get,
    path = "/api/projects/{id}/chat/",
    operation_id = "projects_chat_list",
    tag = "projects",
    params(("id" = i64, Path, description = "The project's id.")),
    responses(
        (status = 200, description = "The chats.", body = Vec<ProjectChatJson>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such project.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<ProjectChatJson>>, ApiError> {
    caller.admin_only("manage project chats")?;
    let project = project(&state, &caller, &id).await?;
    let chats = state.store.project_chats(project).await?;
    Ok(Json(chats.iter().map(json).collect()))
}

/// Tells a chat channel the project's ticket events (admins).
#[utoipa::path(
    post,
    path = "/api/projects/{id}/chat/",
    operation_id = "projects_chat_create",
    tag = "projects",
    params(("id" = i64, Path, description = "The project's id.")),
    request_body = ProjectChatIn,
    responses(
        (status = 201, description = "The chat.", body = ProjectChatJson),
        (status = 400, description = "A provider the hub is not set up for, a channel it does not take, an unknown event or priority, or a chat the project has already.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such project.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<ProjectChatIn>,
) -> Result<(StatusCode, Json<ProjectChatJson>), ApiError> {
    caller.admin_only("manage project chats")?;
    let project = project(&state, &caller, &id).await?;
    let Some((provider, room)) = state.rooms.get_key_value(body.provider.as_str()) else {
        let mut on: Vec<&str> = state.rooms.keys().copied().collect();
        on.sort();
        return Err(ApiError::bad_request(match on.as_slice() {
            [] => {
                "provider: This hub is set up for no chat (Slack, Mattermost or Microsoft Teams)."
                    .to_owned()
            }
            on => format!("provider: One of {}.", on.join(", ")),
        }));
    };
    let channel = room
        .check_channel(&body.channel)
        .map_err(|why| ApiError::bad_request(format!("channel: Give {why}.")))?;
    let mut events = Vec::new();
    for name in &body.events {
        match ticket_events().find(|e| e.as_str() == name) {
            Some(e) if !events.contains(e) => events.push(e.clone()),
            Some(_) => {}
            None => {
                return Err(ApiError::bad_request(format!(
                    "events: \"{name}\" is not a ticket event; one of {}.",
                    ticket_events()
                        .map(EventType::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        }
    }
    let mut priorities = Vec::new();
    for name in &body.when.priority {
        match name.parse::<Priority>() {
            Ok(p) if !priorities.contains(&p) => priorities.push(p),
            Ok(_) => {}
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "when.priority: \"{name}\" is not one of LOW, MEDIUM, HIGH, CRITICAL."
                )))
            }
        }
    }
    let made = state
        .store
        .add_project_chat(NewProjectChat {
            project,
            provider: (*provider).to_owned(),
            channel,
            events,
            priorities,
            created_by: caller.0.id,
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::bad_request("channel: The project tells this chat already.")
            }
            e => e.into(),
        })?;
    tracing::info!(project = project.0, chat = made.id, provider = %made.provider, "project chat added");
    Ok((StatusCode::CREATED, Json(json(&made))))
}

/// Stops telling a chat the project's events (admins); what it had still to tell is dropped.
#[utoipa::path(
    delete,
    path = "/api/projects/{id}/chat/{chat}/",
    operation_id = "projects_chat_delete",
    tag = "projects",
    params(
        ("id" = i64, Path, description = "The project's id."),
        ("chat" = i64, Path, description = "The chat's id."),
    ),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such project or chat.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, chat)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.admin_only("manage project chats")?;
    let project = project(&state, &caller, &id).await?;
    let chat: i64 = chat.parse().map_err(|_| ApiError::not_found())?;
    match state.store.delete_project_chat(project, chat).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found()),
    }
}
