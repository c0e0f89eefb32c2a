//! Notifications in SQL: rows, per-recipient seq allocation, and the inbox half of the ports.

use chrono::{DateTime, Utc};
use tickethub_actors::domain::UserId;
use tickethub_actors::notification::{Notification, TicketSummary};
use tickethub_actors::ports::StoreError;
use tickethub_actors::ticket_domain::TicketId;

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

/// What a delivery row records of the recipients it speaks for: a webhook delivery of a draft
/// that stands for several recipients lists them all as JSON; anything else, nothing.
pub(crate) fn recipients_json(
    draft: &tickethub_actors::notification::Draft,
    channel: tickethub_actors::routing::Channel,
) -> Option<String> {
    (channel == tickethub_actors::routing::Channel::Webhook && !draft.webhook_recipients.is_empty())
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

/// Whether two drafts store the same notification content (they differ at most in recipient
/// and deliveries): one event's notifications, inserted with the content bound once.
pub(crate) fn same_content(
    a: &tickethub_actors::notification::Draft,
    b: &tickethub_actors::notification::Draft,
) -> bool {
    a.notification_type == b.notification_type
        && a.title == b.title
        && a.message == b.message
        && a.ticket.as_ref().map(|t| t.id) == b.ticket.as_ref().map(|t| t.id)
        && a.data == b.data
        && a.action_url == b.action_url
        && a.cause == b.cause
}

/// Several calls' drafts as one insert: all of them in recipient order (stable, so that a
/// user's notifications keep the calls' order), each with the index of the call it came from.
pub(crate) fn merge_calls<'a>(
    calls: impl IntoIterator<Item = &'a [tickethub_actors::notification::Draft]>,
) -> (Vec<usize>, Vec<tickethub_actors::notification::Draft>) {
    let mut tagged: Vec<(usize, tickethub_actors::notification::Draft)> = calls
        .into_iter()
        .enumerate()
        .flat_map(|(call, drafts)| drafts.iter().map(move |d| (call, d.clone())))
        .collect();
    tagged.sort_by_key(|(_, d)| d.recipient);
    tagged.into_iter().unzip()
}

/// The answers of a merged insert split back by call: `calls[i]` is the call of `out[i]`, and
/// `sizes` is how many drafts each call brought.
pub(crate) fn split_by_call<T>(
    calls: Vec<usize>,
    out: Vec<T>,
    sizes: impl IntoIterator<Item = usize>,
) -> Vec<Vec<T>> {
    let mut outs: Vec<Vec<T>> = sizes.into_iter().map(Vec::with_capacity).collect();
    for (call, n) in calls.into_iter().zip(out) {
        outs[call].push(n);
    }
    outs
}

/// A table of `(user_id, seq)` rows named `r`, bound as whole arrays: the recipients of an
/// insert whose content is bound once.
pub(crate) trait RecipientRows: sqlx::Database {
    /// Pushes the table expression for `rows`.
    fn push_rows(q: &mut sqlx::QueryBuilder<'_, Self>, rows: Vec<(i64, i64)>);
}

impl RecipientRows for sqlx::Sqlite {
    fn push_rows(q: &mut sqlx::QueryBuilder<'_, Self>, rows: Vec<(i64, i64)>) {
        // `[[user_id, seq], …]` as one JSON text, read back by SQLite's `json_each`.
        let json = serde_json::to_string(&rows).expect("pairs of integers serialize");
        q.push("(SELECT value ->> 0 AS user_id, value ->> 1 AS seq FROM json_each(");
        q.push_bind(json);
        q.push(")) AS r");
    }
}

impl RecipientRows for sqlx::Postgres {
    fn push_rows(q: &mut sqlx::QueryBuilder<'_, Self>, rows: Vec<(i64, i64)>) {
        let (users, seqs): (Vec<i64>, Vec<i64>) = rows.into_iter().unzip();
        q.push("UNNEST(");
        q.push_bind(users);
        q.push("::bigint[], ");
        q.push_bind(seqs);
        q.push("::bigint[]) AS r(user_id, seq)");
    }
}

/// Implements `NotificationStore` (and the draft insertion both ports share) for a store type.
macro_rules! impl_notification_store {
    ($store:ty, $db:ty, $lock:literal) => {
        impl $store {
            /// Starts `workers` group committers on `pool`. Each takes every call waiting when it
            /// is free (a lone call is committed at once, never waiting for company), inserts
            /// each call's drafts, and commits them all in one transaction; each caller is
            /// answered once its rows are durable. If the shared transaction fails, each call
            /// is committed on its own, so that one bad call fails alone.
            pub(crate) fn group_committer(
                pool: sqlx::Pool<$db>,
                workers: usize,
                faults: std::sync::Arc<tickethub_actors::ports::StoreFaults>,
            ) -> $crate::store::CommitQueue {
                $crate::store::group_committer(workers, move |group| {
                    let pool = pool.clone();
                    let faults = faults.clone();
                    async move { Self::commit_group(&pool, &faults, group).await }
                })
            }

            /// Commits drafts in one transaction. When the database's answer to `COMMIT` is
            /// an error, the transaction may have applied all the same (the connection broke
            /// after the server committed): whether its first notification is there tells
            /// which. `Err(None)`: it surely did not apply (the caller
            /// may commit again); `Err(Some(e))`: nobody can tell, and nothing is retried.
            async fn commit_once(
                pool: &sqlx::Pool<$db>,
                faults: &tickethub_actors::ports::StoreFaults,
                drafts: Vec<tickethub_actors::notification::Draft>,
            ) -> Result<
                Vec<tickethub_actors::notification::Notification>,
                (tickethub_actors::ports::StoreError, bool),
            > {
                let mut tx = pool
                    .begin()
                    .await
                    .map_err(|e| ($crate::store::backend_error(e), false))?;
                let out = Self::insert_drafts(&mut tx, drafts, None)
                    .await
                    .map_err(|e| (e, false))?;
                let committed = tx.commit().await.map_err($crate::store::backend_error);
                let committed = match committed {
                    Ok(())
                        if tickethub_actors::ports::StoreFaults::take(&faults.lost_commit_acks) =>
                    {
                        Err(tickethub_actors::ports::StoreError::Backend(
                            "injected: the database's answer to COMMIT was lost".into(),
                        ))
                    }
                    other => other,
                };
                let Err(e) = committed else {
                    return Ok(out);
                };
                let Some(first) = out.first() else {
                    return Err((e, false));
                };
                // The row as this transaction wrote it: an id a rolled-back SQLite transaction
                // gave back could be taken again, but not with this recipient, seq and words.
                let landed: Result<Option<(i64,)>, _> = sqlx::query_as(
                    "SELECT id FROM notifications WHERE id = $1 AND user_id = $2 AND seq = $3 \
                     AND notification_type = $4 AND title = $5 AND message = $6",
                )
                .bind(first.id)
                .bind(first.user_id.0)
                .bind(first.seq)
                .bind(first.notification_type.as_str())
                .bind(&first.title)
                .bind(&first.message)
                .fetch_optional(pool)
                .await;
                match landed {
                    Ok(Some(_)) => {
                        metrics::counter!("tickethub_commit_outcomes_recovered_total").increment(1);
                        tracing::warn!(error = %e, "a commit's answer was lost, but it applied");
                        Ok(out)
                    }
                    Ok(None) => Err((e, false)),
                    Err(check) => {
                        tracing::error!(error = %e, check = %check, "a commit's outcome is unknown");
                        Err((e, true))
                    }
                }
            }

            /// Commits an idempotent request's drafts on their own, with its mark (the count as
            /// its resource) in the same transaction. When the answer to `COMMIT` is lost, the
            /// mark tells whether it applied.
            async fn commit_marked(
                pool: &sqlx::Pool<$db>,
                drafts: Vec<tickethub_actors::notification::Draft>,
                mark: &tickethub_actors::ports::IdempotencyMark,
            ) -> Result<
                Vec<tickethub_actors::notification::Notification>,
                tickethub_actors::ports::StoreError,
            > {
                let count = drafts.len() as i64;
                let mut tx = pool.begin().await.map_err($crate::store::backend_error)?;
                let out = Self::insert_drafts(&mut tx, drafts, None).await?;
                Self::mark_committed(&mut tx, mark, count).await?;
                match tx.commit().await.map_err($crate::store::backend_error) {
                    Ok(()) => Ok(out),
                    Err(e) => match Self::is_committed(pool, mark).await {
                        Ok(true) => Ok(out),
                        _ => Err(e),
                    },
                }
            }

            async fn commit_group(
                pool: &sqlx::Pool<$db>,
                faults: &tickethub_actors::ports::StoreFaults,
                group: Vec<$crate::store::CommitJob>,
            ) {
                metrics::histogram!("tickethub_group_commit_calls").record(group.len() as f64);
                if group.len() > 1 {
                    // All the calls' drafts in one insert, in recipient order (stable, so a
                    // user's notifications keep the calls' order): rows are locked in id order
                    // as in every other commit, and the answers are split back by call.
                    let (calls, drafts) = $crate::store::notifications::merge_calls(
                        group.iter().map(|(drafts, _)| drafts.as_slice()),
                    );
                    match Self::commit_once(pool, faults, drafts).await {
                        Ok(out) => {
                            let outs = $crate::store::notifications::split_by_call(
                                calls,
                                out,
                                group.iter().map(|(d, _)| d.len()),
                            );
                            for ((_, reply), out) in group.into_iter().zip(outs) {
                                let _ = reply.send(Ok(out));
                            }
                            return;
                        }
                        // Whether the group applied cannot be told: committing its calls again
                        // could notify twice, so each is told its outcome is unknown.
                        Err((e, true)) => {
                            for (_, reply) in group {
                                let _ = reply.send(Err(tickethub_actors::ports::StoreError::Backend(
                                    format!("the commit's outcome is unknown: {e}").into(),
                                )));
                            }
                            return;
                        }
                        Err((e, false)) => {
                            tracing::debug!(error = %e, calls = group.len(), "a group commit failed; committing its calls one by one");
                        }
                    }
                }
                for (drafts, reply) in group {
                    let _ = reply.send(Self::commit_once(pool, faults, drafts).await.map_err(|(e, _)| e));
                }
            }

            /// Stores drafts inside a transaction: each recipient's next seq is allocated by
            /// bumping `users.last_seq`, which also locks that user's row until commit, so
            /// concurrent commits to one recipient get consecutive seqs with no gaps. The rows are
            /// locked in id order first (on PostgreSQL, `FOR NO KEY UPDATE`: the lock the `UPDATE`
            /// takes anyway, which does not conflict with the key-share locks that foreign keys to
            /// users take, such as a ticket's new assignees), so that concurrent transactions
            /// cannot deadlock; then one `UPDATE … RETURNING` allocates every seq and multi-row
            /// `INSERT`s store the notifications and their deliveries, in chunks that stay under
            /// the databases' bind-parameter limits.
            pub(crate) async fn insert_drafts(
                tx: &mut sqlx::Transaction<'_, $db>,
                mut drafts: Vec<tickethub_actors::notification::Draft>,
                event_id: Option<i64>,
            ) -> Result<Vec<tickethub_actors::notification::Notification>, tickethub_actors::ports::StoreError>
            {
                use std::collections::HashMap;
                use tickethub_actors::ports::StoreError;
                const CHUNK: usize = 1000;
                drafts.sort_by_key(|d| d.recipient);
                if drafts.windows(2).any(|w| w[0].recipient == w[1].recipient) {
                    return Self::insert_drafts_one_by_one(tx, drafts, event_id).await;
                }
                let now = chrono::Utc::now();
                let mut seqs: HashMap<i64, i64> = HashMap::with_capacity(drafts.len());
                for chunk in drafts.chunks(CHUNK) {
                    // One row needs no ordering: the `UPDATE` takes the same lock at the same
                    // point, and a call to one user saves a round trip.
                    if !$lock.is_empty() && chunk.len() > 1 {
                        let mut lock = sqlx::QueryBuilder::<$db>::new("SELECT id FROM users WHERE id IN (");
                        let mut sep = lock.separated(", ");
                        for d in chunk {
                            sep.push_bind(d.recipient.0);
                        }
                        lock.push(") ORDER BY id FOR NO KEY UPDATE");
                        lock.build().execute(&mut **tx).await.map_err($crate::store::backend_error)?;
                    }
                    let mut bump = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE users SET last_seq = last_seq + 1 WHERE id IN (",
                    );
                    let mut sep = bump.separated(", ");
                    for d in chunk {
                        sep.push_bind(d.recipient.0);
                    }
                    bump.push(") RETURNING id, last_seq");
                    let rows: Vec<(i64, i64)> = bump
                        .build_query_as()
                        .fetch_all(&mut **tx)
                        .await
                        .map_err($crate::store::backend_error)?;
                    seqs.extend(rows);
                }
                if let Some(missing) = drafts.iter().find(|d| !seqs.contains_key(&d.recipient.0)) {
                    return Err(StoreError::NotFound(format!("user {}", missing.recipient)));
                }
                let mut ids: HashMap<i64, i64> = HashMap::with_capacity(drafts.len());
                // A notification's content, after its recipient and seq.
                fn push_content<'args>(
                    row: &mut sqlx::query_builder::Separated<'_, 'args, $db, &'static str>,
                    d: &tickethub_actors::notification::Draft,
                    now: chrono::DateTime<chrono::Utc>,
                    event_id: Option<i64>,
                ) {
                    row.push_bind(d.notification_type.as_str().to_owned())
                        .push_bind(d.title.clone())
                        .push_bind(d.message.clone())
                        .push_bind(d.ticket.as_ref().map(|t| t.id.0))
                        .push_bind(d.data.clone())
                        .push_bind(d.action_url.clone())
                        .push_bind(false)
                        .push_bind(now)
                        .push_bind(event_id)
                        .push_bind((!d.cause.action.is_empty()).then_some(d.cause.action))
                        .push_bind(d.cause.actor.map(|a| a.0));
                }
                for chunk in drafts.chunks(CHUNK) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO notifications (user_id, seq, notification_type, title, message, \
                         ticket_id, data, action_url, is_read, created_at, event_id, action, actor_id) ",
                    );
                    if chunk.iter().all(|d| $crate::store::notifications::same_content(d, &chunk[0])) {
                        // One event's notifications: the content is bound once, and the
                        // recipients and their seqs as whole arrays.
                        insert.push("SELECT r.user_id, r.seq, ");
                        push_content(&mut insert.separated(", "), &chunk[0], now, event_id);
                        insert.push(" FROM ");
                        <$db as $crate::store::notifications::RecipientRows>::push_rows(
                            &mut insert,
                            chunk.iter().map(|d| (d.recipient.0, seqs[&d.recipient.0])).collect(),
                        );
                    } else {
                        insert.push_values(chunk, |mut row, d| {
                            row.push_bind(d.recipient.0).push_bind(seqs[&d.recipient.0]);
                            push_content(&mut row, d, now, event_id);
                        });
                    }
                    insert.push(" RETURNING id, user_id");
                    let rows: Vec<(i64, i64)> = insert
                        .build_query_as()
                        .fetch_all(&mut **tx)
                        .await
                        .map_err($crate::store::backend_error)?;
                    ids.extend(rows.into_iter().map(|(id, user)| (user, id)));
                }
                let deliveries: Vec<(i64, &tickethub_actors::routing::Channel, &String, Option<String>)> = drafts
                    .iter()
                    .flat_map(|d| {
                        let id = ids[&d.recipient.0];
                        d.deliveries
                            .iter()
                            .filter(|(c, _)| *c != tickethub_actors::routing::Channel::Push)
                            .map(move |(c, a)| (id, c, a, $crate::store::notifications::recipients_json(d, *c)))
                    })
                    .collect();
                let pushes: Vec<(i64, &str)> = drafts
                    .iter()
                    .flat_map(|d| {
                        let id = ids[&d.recipient.0];
                        d.deliveries
                            .iter()
                            .filter(|(c, _)| *c == tickethub_actors::routing::Channel::Push)
                            .map(move |(_, a)| (id, a.as_str()))
                    })
                    .collect();
                if !pushes.is_empty() {
                    Self::insert_pushes(tx, &pushes, now).await?;
                }
                for chunk in deliveries.chunks(CHUNK) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO deliveries (notification_id, channel, address, recipients, status, attempts, \
                         next_attempt_at, created_at, updated_at) ",
                    );
                    insert.push_values(chunk, |mut row, (id, channel, address, recipients)| {
                        row.push_bind(*id)
                            .push_bind(channel.as_str())
                            .push_bind((*address).clone())
                            .push_bind(recipients.clone())
                            .push_bind("QUEUED")
                            .push_bind(0i64)
                            .push_bind(now)
                            .push_bind(now)
                            .push_bind(now);
                    });
                    insert.build().execute(&mut **tx).await.map_err($crate::store::backend_error)?;
                }
                if drafts.iter().any(|d| !d.escalations.is_empty()) {
                    let planned: Vec<_> = drafts
                        .iter()
                        .map(|d| (ids[&d.recipient.0], d.recipient.0, seqs[&d.recipient.0], d))
                        .collect();
                    Self::insert_escalations(tx, &planned, now).await?;
                }
                Ok(drafts
                    .into_iter()
                    .map(|d| tickethub_actors::notification::Notification {
                        id: ids[&d.recipient.0],
                        user_id: d.recipient,
                        seq: seqs[&d.recipient.0],
                        notification_type: d.notification_type,
                        title: d.title,
                        message: d.message,
                        ticket: d.ticket,
                        data: d.data,
                        action_url: d.action_url,
                        is_read: false,
                        read_at: None,
                        created_at: now,
                    })
                    .collect())
            }

            /// Stores drafts one statement at a time: the path for a batch that names one
            /// recipient more than once (each needs its own seq).
            async fn insert_drafts_one_by_one(
                tx: &mut sqlx::Transaction<'_, $db>,
                mut drafts: Vec<tickethub_actors::notification::Draft>,
                event_id: Option<i64>,
            ) -> Result<Vec<tickethub_actors::notification::Notification>, tickethub_actors::ports::StoreError>
            {
                use tickethub_actors::ports::StoreError;
                drafts.sort_by_key(|d| d.recipient);
                let now = chrono::Utc::now();
                let mut out = Vec::with_capacity(drafts.len());
                for d in drafts {
                    let seq: Option<(i64,)> = sqlx::query_as(
                        "UPDATE users SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
                    )
                    .bind(d.recipient.0)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err($crate::store::backend_error)?;
                    let (seq,) = seq.ok_or_else(|| StoreError::NotFound(format!("user {}", d.recipient)))?;
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO notifications (user_id, seq, notification_type, title, message, \
                         ticket_id, data, action_url, is_read, created_at, event_id, action, actor_id) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
                    )
                    .bind(d.recipient.0)
                    .bind(seq)
                    .bind(d.notification_type.as_str())
                    .bind(&d.title)
                    .bind(&d.message)
                    .bind(d.ticket.as_ref().map(|t| t.id.0))
                    .bind(&d.data)
                    .bind(&d.action_url)
                    .bind(false)
                    .bind(now)
                    .bind(event_id)
                    .bind((!d.cause.action.is_empty()).then_some(d.cause.action))
                    .bind(d.cause.actor.map(|a| a.0))
                    .fetch_one(&mut **tx)
                    .await
                    .map_err($crate::store::backend_error)?;
                    for (channel, address) in &d.deliveries {
                        if *channel == tickethub_actors::routing::Channel::Push {
                            Self::insert_pushes(tx, &[(id, address.as_str())], now).await?;
                            continue;
                        }
                        sqlx::query(
                            "INSERT INTO deliveries (notification_id, channel, address, recipients, status, attempts, \
                             next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $5, 'QUEUED', 0, $4, $4, $4)",
                        )
                        .bind(id)
                        .bind(channel.as_str())
                        .bind(address)
                        .bind(now)
                        .bind($crate::store::notifications::recipients_json(&d, *channel))
                        .execute(&mut **tx)
                        .await
                        .map_err($crate::store::backend_error)?;
                    }
                    if !d.escalations.is_empty() {
                        Self::insert_escalations(tx, &[(id, d.recipient.0, seq, &d)], now).await?;
                    }
                    out.push(tickethub_actors::notification::Notification {
                        id,
                        user_id: d.recipient,
                        seq,
                        notification_type: d.notification_type,
                        title: d.title,
                        message: d.message,
                        ticket: d.ticket,
                        data: d.data,
                        action_url: d.action_url,
                        is_read: false,
                        read_at: None,
                        created_at: now,
                    });
                }
                Ok(out)
            }
        }

        #[async_trait::async_trait]
        impl tickethub_actors::ports::NotificationStore for $store {
            async fn commit_notifications(
                &self,
                drafts: Vec<tickethub_actors::notification::Draft>,
                mark: Option<&tickethub_actors::ports::IdempotencyMark>,
            ) -> Result<Vec<tickethub_actors::notification::Notification>, tickethub_actors::ports::StoreError>
            {
                if let Some(mark) = mark {
                    return Self::commit_marked(self.writer(), drafts, mark).await;
                }
                if drafts.is_empty() {
                    return Ok(Vec::new());
                }
                let (reply, answer) = tokio::sync::oneshot::channel();
                let gone = || tickethub_actors::ports::StoreError::Backend("the commit failed unexpectedly; see the hub's log".into());
                self.commits.0.send((drafts, reply)).map_err(|_| gone())?;
                answer.await.map_err(|_| gone())?
            }

            async fn list_notifications(
                &self,
                user: tickethub_actors::domain::UserId,
                filter: &tickethub_actors::ports::NotificationFilter,
                page: tickethub_actors::ports::Page,
            ) -> Result<(i64, Vec<tickethub_actors::notification::Notification>), tickethub_actors::ports::StoreError>
            {
                fn conditions<'a>(
                    q: &mut sqlx::QueryBuilder<'a, $db>,
                    user: i64,
                    f: &'a tickethub_actors::ports::NotificationFilter,
                ) {
                    q.push(" WHERE n.deleted_at IS NULL AND n.user_id = ").push_bind(user);
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
                let mut count = sqlx::QueryBuilder::<$db>::new("SELECT COUNT(*) FROM notifications n");
                conditions(&mut count, user.0, filter);
                let (total,): (i64,) = count
                    .build_query_as()
                    .fetch_one(self.reader())
                    .await
                    .map_err($crate::store::backend_error)?;
                let mut q = sqlx::QueryBuilder::<$db>::new($crate::store::notifications::NOTIFICATION_SELECT);
                conditions(&mut q, user.0, filter);
                q.push(" ORDER BY n.seq DESC LIMIT ")
                    .push_bind(page.limit)
                    .push(" OFFSET ")
                    .push_bind(page.offset);
                let rows = q
                    .build_query_as::<$crate::store::notifications::NotificationRow>()
                    .fetch_all(self.reader())
                    .await
                    .map_err($crate::store::backend_error)?;
                let list = rows
                    .into_iter()
                    .map($crate::store::notifications::NotificationRow::into_notification)
                    .collect::<Result<_, _>>()?;
                Ok((total, list))
            }

            async fn unread_counts(
                &self,
                user: tickethub_actors::domain::UserId,
            ) -> Result<(i64, Vec<(String, i64)>), tickethub_actors::ports::StoreError> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT notification_type, COUNT(*) FROM notifications \
                     WHERE user_id = $1 AND is_read = $2 AND deleted_at IS NULL \
                     GROUP BY notification_type ORDER BY notification_type",
                )
                .bind(user.0)
                .bind(false)
                .fetch_all(self.reader())
                .await
                .map_err($crate::store::backend_error)?;
                Ok((rows.iter().map(|(_, n)| n).sum(), rows))
            }

            async fn notification(
                &self,
                user: tickethub_actors::domain::UserId,
                id: i64,
            ) -> Result<Option<tickethub_actors::notification::Notification>, tickethub_actors::ports::StoreError>
            {
                let sql = format!(
                    "{} WHERE n.id = $1 AND n.user_id = $2 AND n.deleted_at IS NULL",
                    $crate::store::notifications::NOTIFICATION_SELECT
                );
                sqlx::query_as::<_, $crate::store::notifications::NotificationRow>(&sql)
                    .bind(id)
                    .bind(user.0)
                    .fetch_optional(self.reader())
                    .await
                    .map_err($crate::store::backend_error)?
                    .map($crate::store::notifications::NotificationRow::into_notification)
                    .transpose()
            }
        }
    };
}
pub(crate) use impl_notification_store;

#[cfg(test)]
mod tests;
