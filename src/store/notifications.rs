//! Notifications in SQL: rows, per-recipient seq allocation, and the inbox half of the ports.

use crate::store::{backend_error, db, SqlStore};

use chrono::{DateTime, Utc};
use tickethub_actors::domain::UserId;
use tickethub_actors::notification::{Notification, TicketSummary};
use tickethub_actors::ports::StoreError;
use tickethub_actors::ticket_domain::TicketId;

mod commit;

pub(crate) use commit::{
    into_notifications, merge_calls, placement, same_content, seq_plan, split_by_call,
    CommitFailure,
};

/// Every insert of notifications, before its rows: the one column list, in this order, that
/// the pool's statements, SQLite's writer thread and PostgreSQL's one-statement commit fill.
pub(crate) const INSERT_NOTIFICATIONS: &str = "INSERT INTO notifications (user_id, seq, \
     notification_type, title, message, ticket_id, data, action_url, is_read, created_at, \
     event_id, action, actor_id) ";

/// Every insert of queued deliveries, before its rows, as [`INSERT_NOTIFICATIONS`].
pub(crate) const INSERT_DELIVERIES: &str = "INSERT INTO deliveries (notification_id, channel, \
     address, recipients, status, attempts, next_attempt_at, created_at, updated_at) ";

/// A notification with what it shows of its ticket (as the ticket is now).
pub(crate) const NOTIFICATION_SELECT: &str = "SELECT n.id, n.user_id, n.seq, n.notification_type, \
     n.title, n.message, n.ticket_id, n.data, n.action_url, n.is_read, n.read_at, n.created_at, \
     t.number AS t_number, t.title AS t_title, t.priority AS t_priority, t.category AS t_category, \
     t.status AS t_status, t.created_at AS t_created_at, p.key AS p_key, p.name AS p_name, \
     COALESCE(NULLIF(u.display_name, ''), u.username) AS c_name \
     FROM notifications n LEFT JOIN tickets t ON t.id = n.ticket_id \
     LEFT JOIN projects p ON p.id = t.project_id LEFT JOIN users u ON u.id = t.created_by";

#[derive(sqlx::FromRow)]
pub(crate) struct NotificationRow {
    id: i64,
    user_id: i64,
    seq: i64,
    notification_type: String,
    title: String,
    message: String,
    ticket_id: Option<i64>,
    data: String,
    action_url: Option<String>,
    is_read: bool,
    read_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    t_number: Option<i64>,
    t_title: Option<String>,
    t_priority: Option<String>,
    t_category: Option<String>,
    t_status: Option<String>,
    t_created_at: Option<DateTime<Utc>>,
    p_key: Option<String>,
    p_name: Option<String>,
    c_name: Option<String>,
}

fn corrupt(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl NotificationRow {
    pub(crate) fn into_notification(self) -> Result<Notification, StoreError> {
        let ticket = match (self.ticket_id, self.t_number, self.p_key) {
            (Some(id), Some(number), Some(key)) => Some(TicketSummary {
                id: TicketId(id),
                key: format!("{key}-{number}"),
                title: self.t_title.unwrap_or_default(),
                priority: self
                    .t_priority
                    .unwrap_or_default()
                    .parse()
                    .map_err(corrupt)?,
                category: self
                    .t_category
                    .unwrap_or_default()
                    .parse()
                    .map_err(corrupt)?,
                status: self.t_status.unwrap_or_default().parse().map_err(corrupt)?,
                created_by: self.c_name.unwrap_or_default(),
                project_name: self.p_name.unwrap_or_default(),
                created_at: self.t_created_at.unwrap_or(self.created_at),
            }),
            _ => None,
        };
        Ok(Notification {
            id: self.id,
            user_id: UserId(self.user_id),
            seq: self.seq,
            notification_type: self.notification_type.parse().expect("infallible"),
            title: self.title,
            message: self.message,
            ticket,
            data: self.data,
            action_url: self.action_url,
            is_read: self.is_read,
            read_at: self.read_at,
            created_at: self.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    pub(crate) id: i64,
    pub(crate) notification_id: i64,
    pub(crate) channel: String,
    pub(crate) address: String,
    pub(crate) status: String,
    pub(crate) attempts: i64,
    pub(crate) last_error: Option<String>,
    pub(crate) provider_message_id: Option<String>,
    pub(crate) next_attempt_at: DateTime<Utc>,
    pub(crate) sent_at: Option<DateTime<Utc>>,
}

impl DeliveryRow {
    pub(crate) fn into_delivery(self) -> Result<tickethub_actors::ports::Delivery, StoreError> {
        Ok(tickethub_actors::ports::Delivery {
            id: self.id,
            notification_id: self.notification_id,
            channel: tickethub_actors::routing::Channel::stored(&self.channel).ok_or_else(
                || StoreError::Backend(format!("unknown channel `{}`", self.channel).into()),
            )?,
            address: self.address,
            status: self.status,
            attempts: self.attempts,
            last_error: self.last_error,
            provider_message_id: self.provider_message_id,
            next_attempt_at: self.next_attempt_at,
            sent_at: self.sent_at,
        })
    }
}

/// What a delivery row records of the recipients it speaks for: a delivery on a deployment
/// channel (a webhook's) of a draft that stands for several recipients lists them all as
/// JSON; anything else, nothing.
pub(crate) fn recipients_json(
    draft: &tickethub_actors::notification::Draft,
    channel: tickethub_actors::routing::Channel,
) -> Option<String> {
    (channel.reach() == tickethub_actors::routing::Reach::Deployment
        && !draft.webhook_recipients.is_empty())
    .then(|| {
        serde_json::Value::Array(
            draft
                .webhook_recipients
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "user_id": r.user_id.0,
                        "username": r.username,
                        "display_name": r.display_name,
                    })
                })
                .collect(),
        )
        .to_string()
    })
}

/// Reads back what `recipients_json` wrote.
pub(crate) fn parse_recipients(
    text: &str,
) -> Result<Vec<tickethub_actors::notification::Recipient>, tickethub_actors::ports::StoreError> {
    #[derive(serde::Deserialize)]
    struct Row {
        user_id: i64,
        username: String,
        display_name: String,
    }
    let rows: Vec<Row> = serde_json::from_str(text).map_err(|e| {
        tickethub_actors::ports::StoreError::Backend(format!("bad recipients: {e}").into())
    })?;
    Ok(rows
        .into_iter()
        .map(|r| tickethub_actors::notification::Recipient {
            user_id: tickethub_actors::domain::UserId(r.user_id),
            username: r.username,
            display_name: r.display_name,
        })
        .collect())
}

impl SqlStore {
    /// Starts `workers` group committers on the committer's pool (see
    /// [`crate::store::group_committer`] for which calls each takes). Each inserts the
    /// drafts of the calls it took, and commits them all in one transaction; each caller is
    /// answered once its rows are durable. If the shared transaction fails, each call
    /// is committed on its own, so that one bad call fails alone.
    pub(crate) fn group_committer(
        committer: crate::store::Committer,
        workers: usize,
        faults: std::sync::Arc<tickethub_actors::ports::StoreFaults>,
    ) -> crate::store::CommitQueue {
        crate::store::group_committer(workers, move |group| {
            let committer = committer.clone();
            let faults = faults.clone();
            async move { Self::commit_group(&committer, &faults, group).await }
        })
    }

    /// Commits drafts (sorted by recipient) in one transaction and answers where each
    /// landed: `(id, seq)` for each draft, in order, with the drafts back. A commit
    /// that only stores notifications and their deliveries is one unit of work
    /// ([`SqlStore::commit_at_once`]: the writer thread's prepared statements on SQLite,
    /// one statement on PostgreSQL); otherwise, and to name the cause when that fails, one
    /// statement at a time. When the database's answer to `COMMIT` is an error, the
    /// transaction may have applied all the same (the connection broke after the
    /// server committed): whether its first notification is there tells which. When
    /// the outcome is unknown, the drafts may not come back.
    async fn commit_rows(
        committer: &crate::store::Committer,
        faults: &tickethub_actors::ports::StoreFaults,
        drafts: Vec<tickethub_actors::notification::Draft>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (
        Vec<tickethub_actors::notification::Draft>,
        Result<Vec<(i64, i64)>, crate::store::notifications::CommitFailure>,
    ) {
        use crate::store::notifications::CommitFailure;
        let at_once = !drafts.is_empty()
            && drafts.iter().all(|d| {
                d.escalations.is_empty()
                    && d.deliveries
                        .iter()
                        .all(|(c, _)| *c != tickethub_actors::routing::Channel::Push)
            });
        let (drafts, mut applied) = if at_once {
            match Self::commit_at_once(committer, drafts, now).await {
                (drafts, Err(CommitFailure::NotApplied(e))) => {
                    tracing::debug!(error = %e, "a commit in one unit failed; committing it statement by statement");
                    let applied = Self::commit_in_steps(&committer.pool, &drafts, now).await;
                    (drafts, applied)
                }
                other => other,
            }
        } else {
            let applied = Self::commit_in_steps(&committer.pool, &drafts, now).await;
            (drafts, applied)
        };
        if applied.is_ok() && tickethub_actors::ports::StoreFaults::take(&faults.lost_commit_acks) {
            let placed = applied.unwrap_or_default();
            applied = Err(CommitFailure::Unanswered(
                tickethub_actors::ports::StoreError::Backend(
                    "injected: the database's answer to COMMIT was lost".into(),
                ),
                placed,
            ));
        }
        let (e, placed) = match applied {
            Err(CommitFailure::Unanswered(e, placed)) => (e, placed),
            other => return (drafts, other),
        };
        let (Some(first), Some((id, seq))) = (drafts.first(), placed.first()) else {
            return (drafts, Err(CommitFailure::NotApplied(e)));
        };
        // The row as this transaction wrote it: an id a rolled-back SQLite transaction
        // gave back could be taken again, but not with this recipient, seq and words.
        let landed: Result<Option<(i64,)>, _> = db::query_as(
            "SELECT id FROM notifications WHERE id = $1 AND user_id = $2 AND seq = $3 \
             AND notification_type = $4 AND title = $5 AND message = $6",
        )
        .bind(id)
        .bind(first.recipient.0)
        .bind(seq)
        .bind(first.notification_type.as_str())
        .bind(&first.title)
        .bind(&first.message)
        .fetch_optional(&committer.pool)
        .await;
        let outcome = match landed {
            Ok(Some(_)) => {
                metrics::counter!("tickethub_commit_outcomes_recovered_total").increment(1);
                tracing::warn!(error = %e, "a commit's answer was lost, but it applied");
                Ok(placed)
            }
            Ok(None) => Err(CommitFailure::NotApplied(e)),
            Err(check) => {
                tracing::error!(error = %e, check = %check, "a commit's outcome is unknown");
                Err(CommitFailure::Unknown(e))
            }
        };
        (drafts, outcome)
    }

    /// Commits drafts in a transaction, one statement at a time.
    pub(crate) async fn commit_in_steps(
        pool: &db::Pool,
        drafts: &[tickethub_actors::notification::Draft],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(i64, i64)>, crate::store::notifications::CommitFailure> {
        use crate::store::notifications::CommitFailure;
        let mut tx = pool
            .begin()
            .await
            .map_err(|e| CommitFailure::NotApplied(backend_error(e)))?;
        let placed = Self::insert_rows(&mut tx, drafts, now, None)
            .await
            .map_err(CommitFailure::NotApplied)?;
        match tx.commit().await {
            Ok(()) => Ok(placed),
            Err(e) => Err(CommitFailure::Unanswered(backend_error(e), placed)),
        }
    }

    /// Commits an idempotent request's drafts on their own (or a part of them), with
    /// its mark in the same transaction: how far it got, the notifications so far as
    /// its resource, and, with `last`, committed. When the answer to `COMMIT` is lost,
    /// the mark tells whether it applied.
    async fn commit_marked(
        pool: &db::Pool,
        drafts: Vec<tickethub_actors::notification::Draft>,
        mark: &tickethub_actors::ports::IdempotencyMark,
        last: bool,
    ) -> Result<
        Vec<tickethub_actors::notification::Notification>,
        tickethub_actors::ports::StoreError,
    > {
        let count = drafts.len() as i64;
        let reached = drafts.iter().map(|d| d.recipient.0).max().unwrap_or(0);
        let mut tx = pool.begin().await.map_err(backend_error)?;
        let out = Self::insert_drafts(&mut tx, drafts, None).await?;
        Self::mark_progress(&mut tx, mark, reached, count, last).await?;
        match tx.commit().await.map_err(backend_error) {
            Ok(()) => Ok(out),
            Err(e) => {
                let progress: Result<Option<(Option<i64>,)>, _> = db::query_as(
                    "SELECT progress FROM idempotency_keys WHERE caller = $1 AND idem_key = $2",
                )
                .bind(&mark.caller)
                .bind(&mark.key)
                .fetch_optional(pool)
                .await;
                match progress {
                    Ok(Some((Some(p),))) if p >= reached => Ok(out),
                    _ => Err(e),
                }
            }
        }
    }

    async fn commit_group(
        committer: &crate::store::Committer,
        faults: &tickethub_actors::ports::StoreFaults,
        group: Vec<crate::store::CommitJob>,
    ) {
        use crate::store::notifications::CommitFailure;
        metrics::histogram!("tickethub_group_commit_calls").record(group.len() as f64);
        let (calls, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let mut calls: Vec<Vec<tickethub_actors::notification::Draft>> = calls;
        if replies.len() > 1 {
            // All the calls' drafts in one insert, in recipient order (stable, so a
            // user's notifications keep the calls' order): rows are locked in id order
            // as in every other commit, and the answers are split back by call.
            let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
            let (tags, drafts) = crate::store::notifications::merge_calls(calls);
            let now = chrono::Utc::now();
            match Self::commit_rows(committer, faults, drafts, now).await {
                (drafts, Ok(placed)) => {
                    let out = crate::store::notifications::into_notifications(drafts, placed, now);
                    let outs = crate::store::notifications::split_by_call(tags, out, sizes);
                    for (reply, out) in replies.into_iter().zip(outs) {
                        let _ = reply.send(Ok(out));
                    }
                    return;
                }
                // Whether the group applied cannot be told: committing its calls again
                // could notify twice, so each is told its outcome is unknown.
                (_, Err(CommitFailure::Unknown(e) | CommitFailure::Unanswered(e, _))) => {
                    for reply in replies {
                        let _ = reply.send(Err(tickethub_actors::ports::StoreError::Backend(
                            format!("the commit's outcome is unknown: {e}").into(),
                        )));
                    }
                    return;
                }
                (drafts, Err(CommitFailure::NotApplied(e))) => {
                    tracing::debug!(error = %e, calls = replies.len(), "a group commit failed; committing its calls one by one");
                    // Each call's drafts back, still in recipient order.
                    calls = crate::store::notifications::split_by_call(tags, drafts, sizes);
                }
            }
        }
        for (mut drafts, reply) in calls.into_iter().zip(replies) {
            drafts.sort_by_key(|d| d.recipient);
            let now = chrono::Utc::now();
            let answer = match Self::commit_rows(committer, faults, drafts, now).await {
                (drafts, Ok(placed)) => Ok(crate::store::notifications::into_notifications(
                    drafts, placed, now,
                )),
                (
                    _,
                    Err(
                        CommitFailure::NotApplied(e)
                        | CommitFailure::Unknown(e)
                        | CommitFailure::Unanswered(e, _),
                    ),
                ) => Err(e),
            };
            let _ = reply.send(answer);
        }
    }

    /// Pushes the `INSERT` of a chunk of drafts (each with its index): `seqs[i]` is draft
    /// i's seq. Drafts that share their content (one event's) bind it once, and the
    /// recipients with their seqs as whole arrays.
    fn push_insert<'args>(
        q: &mut db::Builder<'args>,
        chunk: &[(usize, &'args tickethub_actors::notification::Draft)],
        seqs: &[i64],
        now: chrono::DateTime<chrono::Utc>,
        event_id: Option<i64>,
    ) {
        q.push(crate::store::notifications::INSERT_NOTIFICATIONS);
        let first = chunk[0].1;
        if chunk
            .iter()
            .all(|(_, d)| crate::store::notifications::same_content(d, first))
        {
            q.push("SELECT r.user_id, r.k, ");
            Self::push_content(&mut q.separated(", "), first, now, event_id);
            q.push(" FROM ");
            let rows = chunk
                .iter()
                .map(|(i, d)| (d.recipient.0, seqs[*i]))
                .collect();
            q.push_pairs(rows, "r", "user_id", "k");
        } else {
            q.push_values(chunk, |mut row, (i, d)| {
                row.push_bind(d.recipient.0);
                row.push_bind(seqs[*i]);
                Self::push_content(&mut row, d, now, event_id);
            });
        }
    }

    /// A notification's content, after its recipient and seq.
    fn push_content<'args>(
        row: &mut db::Separated<'_, 'args>,
        d: &'args tickethub_actors::notification::Draft,
        now: chrono::DateTime<chrono::Utc>,
        event_id: Option<i64>,
    ) {
        row.push_bind(d.notification_type.as_str())
            .push_bind(d.title.as_str())
            .push_bind(d.message.as_str())
            .push_bind(d.ticket.as_ref().map(|t| t.id.0))
            .push_bind(d.data.as_str())
            .push_bind(d.action_url.as_deref())
            .push_bind(false)
            .push_bind(now)
            .push_bind(event_id)
            .push_bind((!d.cause.action.is_empty()).then_some(d.cause.action))
            .push_bind(d.cause.actor.map(|a| a.0));
    }

    /// Stores drafts inside a transaction and answers them as notifications, sorted by
    /// recipient. See `insert_rows`.
    pub(crate) async fn insert_drafts(
        tx: &mut db::Tx,
        mut drafts: Vec<tickethub_actors::notification::Draft>,
        event_id: Option<i64>,
    ) -> Result<
        Vec<tickethub_actors::notification::Notification>,
        tickethub_actors::ports::StoreError,
    > {
        drafts.sort_by_key(|d| d.recipient);
        let now = chrono::Utc::now();
        let placed = Self::insert_rows(tx, &drafts, now, event_id).await?;
        Ok(crate::store::notifications::into_notifications(
            drafts, placed, now,
        ))
    }

    /// Stores drafts inside a transaction and answers where each landed: `(id, seq)`
    /// for each draft, in order. Each recipient's seqs are allocated by bumping
    /// `users.last_seq` by the number of drafts it gets, which also locks that user's
    /// row until commit, so concurrent commits to one recipient get consecutive seqs
    /// with no gaps; a recipient's drafts take its new seqs in the drafts' order. The
    /// rows are locked in id order first (on PostgreSQL, `FOR NO KEY UPDATE`: the lock
    /// the `UPDATE` takes anyway, which does not conflict with the key-share locks that
    /// foreign keys to users take, such as a ticket's new assignees), so that
    /// concurrent transactions cannot deadlock; then one `UPDATE … FROM … RETURNING`
    /// allocates every seq and multi-row `INSERT`s store the notifications and their
    /// deliveries, in chunks that stay under the databases' bind-parameter limits.
    pub(crate) async fn insert_rows(
        tx: &mut db::Tx,
        drafts: &[tickethub_actors::notification::Draft],
        now: chrono::DateTime<chrono::Utc>,
        event_id: Option<i64>,
    ) -> Result<Vec<(i64, i64)>, tickethub_actors::ports::StoreError> {
        use std::collections::HashMap;
        use tickethub_actors::ports::StoreError;
        const CHUNK: usize = 1000;
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let (counts, back) = crate::store::notifications::seq_plan(drafts);
        // One row needs no ordering: the `UPDATE` takes the same lock at the same
        // point, and a call to one user saves a round trip.
        if tx.kind() == db::Kind::Postgres && counts.len() > 1 {
            // The ids bound as one array: one text (and one prepared statement) whatever
            // their number.
            let mut lock = db::Builder::new("SELECT id FROM users WHERE id");
            lock.push_in(counts.iter().map(|(user, _)| *user).collect());
            lock.push(" ORDER BY id FOR NO KEY UPDATE");
            lock.build()
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
        }
        let users = counts.len();
        static BUMP: db::PerKind = db::PerKind::new(|kind| {
            format!(
                "UPDATE users SET last_seq = {} + c.n FROM ",
                kind.last_seq()
            )
        });
        let mut bump = db::Builder::new(BUMP.get(tx.kind()));
        bump.push_pairs(counts, "c", "user_id", "n");
        bump.push(" WHERE users.id = c.user_id RETURNING id, last_seq");
        let last: HashMap<i64, i64> = bump
            .build_query_as::<(i64, i64)>()
            .fetch_all(&mut *tx)
            .await
            .map_err(backend_error)?
            .into_iter()
            .collect();
        if last.len() < users {
            let missing = drafts
                .iter()
                .find(|d| !last.contains_key(&d.recipient.0))
                .map(|d| d.recipient);
            return Err(StoreError::NotFound(format!(
                "user {}",
                missing.map(|u| u.0).unwrap_or_default()
            )));
        }
        let seqs: Vec<i64> = drafts
            .iter()
            .zip(&back)
            .map(|(d, back)| last[&d.recipient.0] - back)
            .collect();
        let indexed: Vec<(usize, &tickethub_actors::notification::Draft)> =
            drafts.iter().enumerate().collect();
        let mut ids: HashMap<(i64, i64), i64> = HashMap::with_capacity(drafts.len());
        for chunk in indexed.chunks(CHUNK) {
            let mut insert = db::Builder::new("");
            Self::push_insert(&mut insert, chunk, &seqs, now, event_id);
            insert.push(" RETURNING id, user_id, seq");
            let rows: Vec<(i64, i64, i64)> = insert
                .build_query_as()
                .fetch_all(&mut *tx)
                .await
                .map_err(backend_error)?;
            ids.extend(rows.into_iter().map(|(id, user, seq)| ((user, seq), id)));
        }
        let placed: Vec<(i64, i64)> = drafts
            .iter()
            .zip(&seqs)
            .map(|(d, seq)| (ids[&(d.recipient.0, *seq)], *seq))
            .collect();
        let deliveries: Vec<(
            i64,
            tickethub_actors::routing::Channel,
            &str,
            Option<String>,
        )> = drafts
            .iter()
            .zip(&placed)
            .flat_map(|(d, (id, _))| {
                d.deliveries
                    .iter()
                    .filter(|(c, _)| *c != tickethub_actors::routing::Channel::Push)
                    .map(move |(c, a)| {
                        (
                            *id,
                            *c,
                            a.as_str(),
                            crate::store::notifications::recipients_json(d, *c),
                        )
                    })
            })
            .collect();
        let pushes: Vec<(i64, &str)> = drafts
            .iter()
            .zip(&placed)
            .flat_map(|(d, (id, _))| {
                d.deliveries
                    .iter()
                    .filter(|(c, _)| *c == tickethub_actors::routing::Channel::Push)
                    .map(move |(_, a)| (*id, a.as_str()))
            })
            .collect();
        if !pushes.is_empty() {
            Self::insert_pushes(tx, &pushes, now).await?;
        }
        for chunk in deliveries.chunks(CHUNK) {
            let mut insert = db::Builder::new(crate::store::notifications::INSERT_DELIVERIES);
            insert.push_values(chunk, |mut row, (id, channel, address, recipients)| {
                row.push_bind(*id)
                    .push_bind(channel.as_str())
                    .push_bind(*address)
                    .push_bind(recipients.as_deref())
                    .push_bind("QUEUED")
                    .push_bind(0i64)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(now);
            });
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
        }
        if drafts.iter().any(|d| !d.escalations.is_empty()) {
            let planned: Vec<_> = drafts
                .iter()
                .zip(&placed)
                .map(|(d, (id, seq))| (*id, d.recipient.0, *seq, d))
                .collect();
            Self::insert_escalations(tx, &planned, now).await?;
        }
        Ok(placed)
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::NotificationStore for SqlStore {
    async fn commit_notifications(
        &self,
        drafts: Vec<tickethub_actors::notification::Draft>,
        mark: Option<&tickethub_actors::ports::IdempotencyMark>,
    ) -> Result<
        Vec<tickethub_actors::notification::Notification>,
        tickethub_actors::ports::StoreError,
    > {
        if let Some(mark) = mark {
            return Self::commit_marked(self.writer(), drafts, mark, true).await;
        }
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || {
            tickethub_actors::ports::StoreError::Backend(
                "the commit failed unexpectedly; see the hub's log".into(),
            )
        };
        self.commits.send((drafts, reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn commit_notifications_part(
        &self,
        drafts: Vec<tickethub_actors::notification::Draft>,
        mark: Option<&tickethub_actors::ports::IdempotencyMark>,
        last: bool,
    ) -> Result<
        Vec<tickethub_actors::notification::Notification>,
        tickethub_actors::ports::StoreError,
    > {
        if tickethub_actors::ports::StoreFaults::reached(&self.faults.failing_part) {
            return Err(tickethub_actors::ports::StoreError::Backend(
                "injected: a part of the announcement failed".into(),
            ));
        }
        match mark {
            Some(mark) => Self::commit_marked(self.writer(), drafts, mark, last).await,
            None => self.commit_notifications(drafts, None).await,
        }
    }

    async fn list_notifications(
        &self,
        user: tickethub_actors::domain::UserId,
        filter: &tickethub_actors::ports::NotificationFilter,
        page: tickethub_actors::ports::Page,
    ) -> Result<
        (i64, Vec<tickethub_actors::notification::Notification>),
        tickethub_actors::ports::StoreError,
    > {
        fn conditions<'a>(
            q: &mut db::Builder<'a>,
            user: i64,
            f: &'a tickethub_actors::ports::NotificationFilter,
        ) {
            q.push(" WHERE n.deleted_at IS NULL AND n.user_id = ")
                .push_bind(user);
            if let Some(r) = f.is_read {
                q.push(" AND n.is_read = ").push_bind(r);
            }
            if let Some(t) = &f.notification_type {
                q.push(" AND n.notification_type = ").push_bind(t.as_str());
            }
            if let Some(t) = f.ticket {
                q.push(" AND n.ticket_id = ").push_bind(t.0);
            }
            if let Some(s) = f.before_seq {
                q.push(" AND n.seq < ").push_bind(s);
            }
        }
        let mut count = db::Builder::new("SELECT COUNT(*) FROM notifications n");
        conditions(&mut count, user.0, filter);
        let (total,): (i64,) = count
            .build_query_as()
            .fetch_one(self.reader())
            .await
            .map_err(backend_error)?;
        let mut q = db::Builder::new(crate::store::notifications::NOTIFICATION_SELECT);
        conditions(&mut q, user.0, filter);
        q.push(" ORDER BY n.seq DESC LIMIT ")
            .push_bind(page.limit)
            .push(" OFFSET ")
            .push_bind(page.offset);
        let rows = q
            .build_query_as::<crate::store::notifications::NotificationRow>()
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?;
        let list = rows
            .into_iter()
            .map(crate::store::notifications::NotificationRow::into_notification)
            .collect::<Result<_, _>>()?;
        Ok((total, list))
    }

    async fn unread_counts(
        &self,
        user: tickethub_actors::domain::UserId,
    ) -> Result<(i64, Vec<(String, i64)>), tickethub_actors::ports::StoreError> {
        let rows: Vec<(String, i64)> = db::query_as(
            "SELECT notification_type, COUNT(*) FROM notifications \
             WHERE user_id = $1 AND is_read = $2 AND deleted_at IS NULL \
             GROUP BY notification_type ORDER BY notification_type",
        )
        .bind(user.0)
        .bind(false)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        Ok((rows.iter().map(|(_, n)| n).sum(), rows))
    }

    async fn notification(
        &self,
        user: tickethub_actors::domain::UserId,
        id: i64,
    ) -> Result<
        Option<tickethub_actors::notification::Notification>,
        tickethub_actors::ports::StoreError,
    > {
        let sql = format!(
            "{} WHERE n.id = $1 AND n.user_id = $2 AND n.deleted_at IS NULL",
            crate::store::notifications::NOTIFICATION_SELECT
        );
        db::query_as::<crate::store::notifications::NotificationRow>(&sql)
            .bind(id)
            .bind(user.0)
            .fetch_optional(self.reader())
            .await
            .map_err(backend_error)?
            .map(crate::store::notifications::NotificationRow::into_notification)
            .transpose()
    }
}

#[cfg(test)]
pub(crate) mod tests;
