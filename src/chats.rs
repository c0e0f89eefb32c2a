//! Project chats: a project's ticket events told to a chat channel (Slack, Mattermost,
//! Microsoft Teams), each ticket one message kept current, its thread the ticket's history.
//!
//! An event a chat hears is queued in the event's own transaction (`chat_updates`), so none
//! is lost to a crash. Every node's poster claims due events with a lease, each only when its
//! chat and ticket have no earlier event still to tell, so a ticket's thread is in order
//! whichever node tells it. The first event posts the ticket's message; later ones change it
//! in place (a message deleted in the chat is posted anew) and add their line to its thread.
//! An event is told at least once: a node that dies between the chat's answer and the
//! database's can make another node tell it again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tickethub_actors::ports::{ChatUpdate, Store, StoreError, TransportError};

use crate::channels::chat::{event_line, Card, Room};

/// The chats' rooms this hub can post to, by channel name.
pub type Rooms = Arc<HashMap<&'static str, Arc<dyn Room>>>;

/// How often the database is looked at for events to tell.
const POLL: Duration = Duration::from_millis(250);

/// How long a claim holds before another node may take the event over.
const LEASE: Duration = Duration::from_secs(60);

/// The tries an event gets before it is kept as failed.
const MOST_ATTEMPTS: i64 = 12;

/// Tells the project chats' events, on this node, until `stop` (after the pass under way).
pub fn spawn(
    store: Arc<dyn Store>,
    rooms: Rooms,
    node: String,
    public_url: Option<String>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let poster = Arc::new(Poster {
        store,
        rooms,
        node,
        public_url,
    });
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            // A panic in one pass (a bug) is logged and the next pass runs.
            let pass = tokio::spawn({
                let poster = poster.clone();
                async move { poster.pass().await }
            });
            let busy = match pass.await {
                Ok(Ok(told)) => told > 0,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the project chats' events");
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "the project chats' poster failed");
                    false
                }
            };
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
    })
}

struct Poster {
    store: Arc<dyn Store>,
    rooms: Rooms,
    node: String,
    public_url: Option<String>,
}

impl Poster {
    /// Claims the events due and tells each; answers how many it claimed.
    async fn pass(&self) -> Result<usize, StoreError> {
        let now = self.store.now();
        let lease = chrono::Duration::from_std(LEASE).unwrap_or_default();
        let updates = self
            .store
            .claim_chat_updates(&self.node, now, now + lease, 20)
            .await?;
        let claimed = updates.len();
        let told = updates.into_iter().map(|u| self.settle(u));
        for done in futures::future::join_all(told).await {
            done?;
        }
        Ok(claimed)
    }

    /// Tells one event, and records what came of it.
    async fn settle(&self, update: ChatUpdate) -> Result<(), StoreError> {
        let provider = update.chat.provider.clone();
        let outcome = match self.rooms.get(provider.as_str()) {
            Some(room) => self.tell(room.as_ref(), &update).await,
            None => Err(TransportError::Retryable {
                message: format!("{provider} is off on this hub"),
                retry_after: Some(Duration::from_secs(60)),
            }),
        };
        let (label, due) = match outcome {
            Ok(()) => {
                self.store.chat_update_told(update.id).await?;
                metrics::counter!("tickethub_chat_updates_total", "provider" => provider, "outcome" => "told").increment(1);
                return Ok(());
            }
            Err(TransportError::Retryable {
                message,
                retry_after,
            }) if update.attempts + 1 < MOST_ATTEMPTS => {
                let backoff = Duration::from_secs(2u64 << update.attempts.clamp(0, 8));
                let wait = retry_after.unwrap_or(backoff).min(Duration::from_secs(600));
                let due = self.store.now() + chrono::Duration::from_std(wait).unwrap_or_default();
                (("retried", message), Some(due))
            }
            Err(e) => (("failed", e.to_string()), None),
        };
        let (outcome, why) = label;
        tracing::info!(chat = update.chat.id, ticket = %update.ticket, %why, outcome, "a project chat's event was not told");
        metrics::counter!("tickethub_chat_updates_total", "provider" => provider, "outcome" => outcome).increment(1);
        self.store.chat_update_failed(update.id, &why, due).await
    }

    /// Posts or changes the ticket's message, and adds the event to its thread.
    async fn tell(&self, room: &dyn Room, u: &ChatUpdate) -> Result<(), TransportError> {
        let store_error = |e: StoreError| TransportError::Retryable {
            message: format!("the database: {e}"),
            retry_after: None,
        };
        let Some(ticket) = self.store.ticket(u.ticket).await.map_err(store_error)? else {
            // The ticket is gone (erased): nothing to tell.
            return Ok(());
        };
        let assignees = self
            .store
            .users_by_ids(&ticket.assignees)
            .await
            .map_err(store_error)?;
        let line = event_line(
            &u.event,
            u.actor_name.as_deref().map(|n| room.text(n)).as_deref(),
            &u.assigned_names
                .iter()
                .map(|n| room.text(n))
                .collect::<Vec<_>>(),
            &room.text(&u.detail),
            |name| room.bold(name),
        );
        let card = Card {
            ticket: ticket.id.0,
            key: ticket.key(),
            title: ticket.title.clone(),
            status: ticket.status,
            priority: ticket.priority,
            assignees: assignees.iter().map(|a| a.name().to_owned()).collect(),
            url: self
                .public_url
                .as_ref()
                .map(|p| format!("{p}/tickets/{}/", ticket.id)),
            latest: line.clone(),
        };
        let channel = &u.chat.channel;
        let message = match &u.message {
            Some(message) => match room.update(channel, message, &card).await {
                Ok(()) => message.clone(),
                // Deleted in the chat: the ticket gets a new message.
                Err(TransportError::Unreachable(_)) => match room.post(channel, &card).await? {
                    Some(posted) => posted,
                    None => return Ok(()),
                },
                Err(e) => return Err(e),
            },
            None => match room.post(channel, &card).await? {
                Some(posted) => posted,
                // A chat that cannot change a message: the card was the event.
                None => return Ok(()),
            },
        };
        if u.message.as_deref() != Some(message.as_str()) {
            self.store
                .set_chat_thread(u.chat.id, u.ticket, &message)
                .await
                .map_err(store_error)?;
        }
        room.reply(channel, &message, &line).await
    }
}
