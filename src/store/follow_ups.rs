//! What followed a ticket's notifications, for its history: escalation steps that fired and
//! acknowledgements from outside the hub.

use chrono::{DateTime, Utc};
use tickethub_actors::domain::UserId;
use tickethub_actors::ports::{FollowUp, StoreError};
use tickethub_actors::ticket_domain::TicketId;

use crate::store::{backend_error, db, SqlStore};

impl SqlStore {
    /// See [`tickethub_actors::ports::HistoryStore::ticket_follow_ups`].
    pub(crate) async fn follow_ups(&self, ticket: TicketId) -> Result<Vec<FollowUp>, StoreError> {
        let fired: Vec<(i64, i64, String, i64, String, DateTime<Utc>)> = db::query_as(
            "SELECT id, user_id, policy, step, channels, updated_at FROM escalations \
             WHERE ticket_id = $1 AND status = 'FIRED' ORDER BY updated_at, id",
        )
        .bind(ticket.0)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        let acked: Vec<(i64, i64, String, DateTime<Utc>)> = db::query_as(
            "SELECT a.notification_id, a.user_id, a.via, a.created_at FROM acknowledgements a \
             JOIN notifications n ON n.id = a.notification_id \
             WHERE n.ticket_id = $1 ORDER BY a.created_at",
        )
        .bind(ticket.0)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        let mut out: Vec<FollowUp> =
            fired
                .into_iter()
                .map(
                    |(id, user, policy, step, channels, at)| FollowUp::Escalated {
                        id,
                        recipient: UserId(user),
                        policy,
                        step,
                        channels: channels
                            .split(',')
                            .filter(|c| !c.is_empty())
                            .map(str::to_owned)
                            .collect(),
                        at,
                    },
                )
                .chain(acked.into_iter().map(|(notification, user, via, at)| {
                    FollowUp::Acknowledged {
                        notification,
                        by: UserId(user),
                        via,
                        at,
                    }
                }))
                .collect();
        out.sort_by_key(FollowUp::at);
        Ok(out)
    }
}
