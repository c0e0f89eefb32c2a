//! A client's inbox commands on the socket (seeds 001 and 003): lists, reads, deletes and
//! admins' sends, answered with their frames.

use super::*;

impl Ctx {
    /// Runs an inbox command: reads straight from the store, changes through the user actor.
    pub(super) async fn command(
        &self,
        frame: ClientFrame,
    ) -> Result<Value, (&'static str, String)> {
        let user = self.user_id;
        let hub = &self.state.hub;
        let unavailable = |e: String| {
            if e == tickethub_actors::hub::USER_ACTOR_BUSY {
                return ("unavailable", e);
            }
            tracing::warn!(user_id = user.0, error = %e, "socket command failed");
            (
                "unavailable",
                "The database is unavailable; try again shortly.".to_owned(),
            )
        };
        let run = |cmd: UserCommand| async move {
            hub.user_command(user, Some(self.conn_id), cmd)
                .await
                .map_err(unavailable)
        };
        Ok(match frame {
            ClientFrame::GetNotifications(q) => {
                let limit = page_limit(q.limit)?;
                let filter = NotificationFilter {
                    is_read: q.is_read,
                    notification_type: q.notification_type,
                    ticket: q.ticket.map(TicketId),
                    before_seq: q.before_seq,
                };
                let store = &self.state.store;
                let (total, list) = store
                    .list_notifications(user, &filter, Page { offset: 0, limit })
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                let (unread, _) = store
                    .unread_counts(user)
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                json!({
                    "type": "notifications_list",
                    "notifications": list.iter().map(|n| self.dialect.list_item(n)).collect::<Vec<_>>(),
                    "total": total,
                    "unread_count": unread,
                })
            }
            ClientFrame::MarkRead { notification_id }
            | ClientFrame::MarkUnread { notification_id } => {
                let read = matches!(frame, ClientFrame::MarkRead { .. });
                let outcome = run(UserCommand::SetRead {
                    id: notification_id,
                    read,
                })
                .await?;
                let success = matches!(
                    outcome,
                    CommandOutcome::SetRead {
                        notification: Some(_),
                        ..
                    }
                );
                json!({
                    "type": if read { "notification_marked_read" } else { "notification_marked_unread" },
                    "notification_id": notification_id,
                    "success": success,
                })
            }
            ClientFrame::MarkAllRead(q) => {
                let filter = NotificationFilter {
                    notification_type: q.notification_type,
                    ticket: q.ticket.map(TicketId),
                    ..NotificationFilter::default()
                };
                let count = match run(UserCommand::MarkAllRead(filter)).await? {
                    CommandOutcome::AllRead(ids) => ids.len(),
                    _ => 0,
                };
                json!({ "type": "all_marked_read", "count": count })
            }
            ClientFrame::DeleteNotification { notification_id } => {
                let success = matches!(
                    run(UserCommand::Delete {
                        id: notification_id
                    })
                    .await?,
                    CommandOutcome::Deleted { success: true, .. }
                );
                json!({ "type": "notification_deleted", "notification_id": notification_id, "success": success })
            }
            ClientFrame::SendNotification(body) => {
                // The role the socket opened with, and the user as they are now: an admin
                // demoted, deactivated or erased where no bus reaches this node (the command
                // line without `--redis-url`) has no admin power past the user cache's
                // lifetime (`--user-cache-ttl`), though the socket stays open.
                let now_admin = self
                    .state
                    .store
                    .user_by_id(user)
                    .await
                    .map_err(|e| unavailable(e.to_string()))?
                    .is_some_and(|u| u.is_active && u.role == Role::Admin);
                if self.role != Role::Admin || !now_admin {
                    return Err(("forbidden", "Only admins can send notifications.".into()));
                }
                if body.is_scheduled() {
                    return Err((
                        "bad_request",
                        "Schedule a send with POST /api/notifications/send/.".into(),
                    ));
                }
                let announcement = body.into_announcement().map_err(|e| ("bad_request", e))?;
                let announcement = hub.page(announcement).await.map_err(|e| match e {
                    tickethub_actors::notifier::Unpaged::Store(e) => unavailable(e.to_string()),
                    e => ("bad_request", format!("oncall: {e}.")),
                })?;
                let ids = hub
                    .announce(announcement)
                    .await
                    .map_err(|e| unavailable(e.to_string()))?
                    .ids;
                self.dialect.notification_sent(&ids)
            }
            ClientFrame::TicketViewing { .. } | ClientFrame::UserTyping { .. } => {
                return Err((
                    "bad_request",
                    "ticket_viewing and user_typing belong on /ws/projects/{id}/presence/.".into(),
                ))
            }
            ClientFrame::Ack { .. }
            | ClientFrame::Ping { .. }
            | ClientFrame::RefreshToken { .. } => {
                return Err(("bad_request", "not a command".into()))
            }
        })
    }
}

/// The page size `get_notifications` asks for: 20 unless given, and 1 to 100.
pub(super) fn page_limit(limit: Option<i64>) -> Result<i64, (&'static str, String)> {
    let limit = limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(("bad_request", "limit must be between 1 and 100".into()));
    }
    Ok(limit)
}
