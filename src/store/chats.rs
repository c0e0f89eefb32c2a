//! Project chats in SQL: the chats, the message standing for each ticket in them, and the
//! queue of ticket events still to be told, claimed like escalation steps.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use tickethub_actors::domain::{ProjectId, UserId};
use tickethub_actors::event::EventType;
use tickethub_actors::ports::{ChatStore, ChatUpdate, NewProjectChat, ProjectChat, StoreError};
use tickethub_actors::ticket_domain::{Priority, TicketId};

use crate::store::{backend_error, db, SqlStore};

/// A list as stored: `,a,b,` (so that `LIKE '%,a,%'` finds an item), or `''` for none.
fn listed<T>(items: &[T], name: impl Fn(&T) -> &str) -> String {
    match items {
        [] => String::new(),
        _ => format!(",{},", items.iter().map(name).collect::<Vec<_>>().join(",")),
    }
}

fn unlisted<T: std::str::FromStr>(text: &str) -> Result<Vec<T>, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|e: T::Err| StoreError::Backend(e.to_string().into()))
        })
        .collect()
}

type ChatRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<i64>,
    DateTime<Utc>,
    i64,
    i64,
);

const CHAT: &str = "SELECT c.id, c.project_id, c.provider, c.channel, c.events, c.priorities, \
     c.created_by, c.created_at, \
     (SELECT COUNT(*) FROM chat_updates f WHERE f.chat_id = c.id AND f.status = 'FAILED'), \
     (SELECT COUNT(*) FROM chat_updates p WHERE p.chat_id = c.id AND p.status <> 'FAILED') \
     FROM project_chats c";

fn chat(row: ChatRow) -> Result<ProjectChat, StoreError> {
    let (id, project, provider, channel, events, priorities, by, at, failed, pending) = row;
    Ok(ProjectChat {
        id,
        project: ProjectId(project),
        provider,
        channel,
        events: unlisted::<EventType>(&events)?,
        priorities: unlisted::<Priority>(&priorities)?,
        created_by: by.map(UserId),
        created_at: at,
        failed,
        pending,
    })
}

impl SqlStore {
    /// Queues a ticket's event for each of its project's chats that hears it (its type, and
    /// the ticket's priority), in the event's transaction.
    pub(crate) async fn queue_chat_updates(
        tx: &mut db::Tx,
        ticket: i64,
        event: i64,
        event_type: &EventType,
        actor: UserId,
        detail: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        db::query(
            "INSERT INTO chat_updates (chat_id, ticket_id, event_id, event_type, actor_id, detail, \
             status, attempts, due_at, created_at, updated_at) \
             SELECT c.id, t.id, $1, $2, $3, $4, 'PENDING', 0, $5, $5, $5 \
             FROM tickets t JOIN project_chats c ON c.project_id = t.project_id \
             WHERE t.id = $6 \
             AND (c.events = '' OR c.events LIKE '%,' || $2 || ',%') \
             AND (c.priorities = '' OR c.priorities LIKE '%,' || t.priority || ',%')",
        )
        .bind(event)
        .bind(event_type.as_str())
        .bind(actor.0)
        .bind(detail.unwrap_or_default())
        .bind(now)
        .bind(ticket)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    async fn chat_by_id(&self, id: i64) -> Result<Option<ProjectChat>, StoreError> {
        db::query_as::<ChatRow>(&format!("{CHAT} WHERE c.id = $1"))
            .bind(id)
            .fetch_optional(self.writer())
            .await
            .map_err(backend_error)?
            .map(chat)
            .transpose()
    }

    /// The display names of users, in the order given (the missing left out).
    async fn names_of(&self, ids: &[i64]) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::with_capacity(ids.len());
        for id in ids {
            let name: Option<(String,)> = db::query_as(
                "SELECT COALESCE(NULLIF(display_name, ''), username) FROM users WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(self.writer())
            .await
            .map_err(backend_error)?;
            names.extend(name.map(|(n,)| n));
        }
        Ok(names)
    }
}

#[async_trait::async_trait]
impl ChatStore for SqlStore {
    async fn add_project_chat(&self, new: NewProjectChat) -> Result<ProjectChat, StoreError> {
        let (id,): (i64,) = db::query_as(
            "INSERT INTO project_chats (project_id, provider, channel, events, priorities, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(new.project.0)
        .bind(&new.provider)
        .bind(&new.channel)
        .bind(listed(&new.events, EventType::as_str))
        .bind(listed(&new.priorities, |p| p.as_str()))
        .bind(new.created_by.0)
        .bind(Utc::now())
        .fetch_one(self.writer())
        .await
        .map_err(backend_error)?;
        self.chat_by_id(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project chat {id}")))
    }

    async fn project_chats(&self, project: ProjectId) -> Result<Vec<ProjectChat>, StoreError> {
        db::query_as::<ChatRow>(&format!("{CHAT} WHERE c.project_id = $1 ORDER BY c.id"))
            .bind(project.0)
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(chat)
            .collect()
    }

    async fn delete_project_chat(&self, project: ProjectId, id: i64) -> Result<bool, StoreError> {
        let done = db::query("DELETE FROM project_chats WHERE id = $1 AND project_id = $2")
            .bind(id)
            .bind(project.0)
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn claim_chat_updates(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ChatUpdate>, StoreError> {
        let kind = self.kind();
        // A row is taken only when no earlier row of its chat and ticket is still to be told:
        // a ticket's message is made by its first event, and its thread is in order.
        let sql = format!(
            "UPDATE chat_updates SET status = 'FIRING', claimed_by = $1, claimed_until = {until}, \
             updated_at = {now} WHERE id IN (SELECT u.id FROM chat_updates u \
             WHERE ((u.status = 'PENDING' AND u.due_at <= {now}) \
             OR (u.status = 'FIRING' AND u.claimed_until < {now})) \
             AND NOT EXISTS (SELECT 1 FROM chat_updates e WHERE e.chat_id = u.chat_id \
             AND e.ticket_id = u.ticket_id AND e.id < u.id AND e.status <> 'FAILED') \
             ORDER BY u.id LIMIT $4 {lock}) \
             AND (status = 'PENDING' OR claimed_until < {now}) \
             RETURNING id, chat_id, ticket_id, event_id, event_type, actor_id, detail, attempts",
            until = kind.lease_until("$2", "$3"),
            now = kind.now("$3"),
            lock = kind.skip_locked(),
        );
        type Claimed = (i64, i64, i64, Option<i64>, String, Option<i64>, String, i64);
        let mut claimed: Vec<Claimed> = db::query_as(&sql)
            .bind(node)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .fetch_all(self.writer())
            .await
            .map_err(backend_error)?;
        claimed.sort_by_key(|c| c.0);
        let mut updates = Vec::with_capacity(claimed.len());
        for (id, chat_id, ticket, event, event_type, actor, detail, attempts) in claimed {
            let Some(chat) = self.chat_by_id(chat_id).await? else {
                continue;
            };
            let assigned: Vec<i64> = match event {
                Some(event) => {
                    let row: Option<(String,)> =
                        db::query_as("SELECT newly_assigned FROM ticket_events WHERE id = $1")
                            .bind(event)
                            .fetch_optional(self.writer())
                            .await
                            .map_err(backend_error)?;
                    row.and_then(|(ids,)| serde_json::from_str(&ids).ok())
                        .unwrap_or_default()
                }
                None => Vec::new(),
            };
            let message: Option<(String,)> = db::query_as(
                "SELECT message_ref FROM chat_threads WHERE chat_id = $1 AND ticket_id = $2",
            )
            .bind(chat_id)
            .bind(ticket)
            .fetch_optional(self.writer())
            .await
            .map_err(backend_error)?;
            updates.push(ChatUpdate {
                id,
                chat,
                ticket: TicketId(ticket),
                event: EventType::from_str(&event_type).unwrap_or(EventType::Custom(event_type)),
                actor_name: match actor {
                    Some(a) => self.names_of(&[a]).await?.pop(),
                    None => None,
                },
                assigned_names: self.names_of(&assigned).await?,
                detail,
                message: message.map(|(m,)| m),
                attempts,
            });
        }
        Ok(updates)
    }

    async fn set_chat_thread(
        &self,
        chat: i64,
        ticket: TicketId,
        message: &str,
    ) -> Result<(), StoreError> {
        db::query(
            "INSERT INTO chat_threads (chat_id, ticket_id, message_ref) VALUES ($1, $2, $3) \
             ON CONFLICT (chat_id, ticket_id) DO UPDATE SET message_ref = excluded.message_ref",
        )
        .bind(chat)
        .bind(ticket.0)
        .bind(message)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    async fn chat_update_told(&self, id: i64) -> Result<(), StoreError> {
        db::query("DELETE FROM chat_updates WHERE id = $1")
            .bind(id)
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn chat_update_failed(
        &self,
        id: i64,
        error: &str,
        due: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(500).collect();
        db::query(
            "UPDATE chat_updates SET status = $1, attempts = attempts + 1, last_error = $2, \
             due_at = COALESCE($3, due_at), claimed_by = NULL, claimed_until = NULL, \
             updated_at = $4 WHERE id = $5",
        )
        .bind(if due.is_some() { "PENDING" } else { "FAILED" })
        .bind(error)
        .bind(due)
        .bind(Utc::now())
        .bind(id)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(())
    }
}
