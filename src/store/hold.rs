//! Holds in SQL: people's time zones and quiet hours, projects' maintenance windows, and
//! deliveries put back until a hold ends.

use chrono::{DateTime, Utc};
use tickethub_actors::domain::{ProjectId, UserId};
use tickethub_actors::oncall::Handoff;
use tickethub_actors::ports::{MaintenanceWindow, Quiet, StoreError};
use tickethub_actors::quiet::{Digest, DigestEvery, QuietHours};
use tickethub_actors::ticket_domain::TicketId;

use crate::store::{backend_error, db, SqlStore};

type WindowRow = (i64, i64, DateTime<Utc>, DateTime<Utc>, i64, DateTime<Utc>);

fn window((id, project, from, to, by, at): WindowRow) -> MaintenanceWindow {
    MaintenanceWindow {
        id,
        project: ProjectId(project),
        from,
        to,
        created_by: UserId(by),
        created_at: at,
    }
}

const WINDOW: &str =
    "SELECT id, project_id, starts_at, ends_at, created_by, created_at FROM maintenance_windows";

impl SqlStore {
    /// Lets the deliveries `held` for `reason` that match `which` (a condition on
    /// `notification_id`, with `$3` its argument) go at once.
    async fn release_held(&self, reason: &str, which: &str, arg: i64) -> Result<(), StoreError> {
        db::query(&format!(
            "UPDATE deliveries SET next_attempt_at = $1, held = NULL, updated_at = $1 \
             WHERE status = 'QUEUED' AND held = $2 AND notification_id IN ({which})"
        ))
        .bind(Utc::now())
        .bind(reason)
        .bind(arg)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::HoldStore for SqlStore {
    async fn quiet(&self, user: UserId) -> Result<Quiet, StoreError> {
        #[allow(clippy::type_complexity)]
        let row: Option<(
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        )> = db::query_as(
            "SELECT time_zone, quiet_start, quiet_end, locale, digest_every, digest_at \
             FROM user_quiet WHERE user_id = $1",
        )
        .bind(user.0)
        .fetch_optional(self.reader())
        .await
        .map_err(backend_error)?;
        let Some((time_zone, start, end, locale, every, at)) = row else {
            return Ok(Quiet::default());
        };
        let hours = match (start, end) {
            (Some(start), Some(end)) => Some(QuietHours {
                time_zone: time_zone.clone().unwrap_or_else(|| "UTC".into()),
                start: Handoff::parse(&start).map_err(|e| StoreError::Backend(e.into()))?,
                end: Handoff::parse(&end).map_err(|e| StoreError::Backend(e.into()))?,
            }),
            _ => None,
        };
        let digest = match (every.as_deref().and_then(DigestEvery::parse), at) {
            (Some(every), Some(at)) => Some(Digest {
                every,
                at: Handoff::parse(&at).map_err(|e| StoreError::Backend(e.into()))?,
            }),
            _ => None,
        };
        Ok(Quiet {
            time_zone,
            locale,
            hours,
            digest,
        })
    }

    async fn set_quiet(&self, user: UserId, quiet: Quiet) -> Result<(), StoreError> {
        let (start, end) = match &quiet.hours {
            Some(h) => (Some(h.start.name()), Some(h.end.name())),
            None => (None, None),
        };
        let now = Utc::now();
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        db::query(
            "INSERT INTO user_quiet (user_id, time_zone, quiet_start, quiet_end, locale, \
             digest_every, digest_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id) DO UPDATE SET \
             time_zone = excluded.time_zone, quiet_start = excluded.quiet_start, \
             quiet_end = excluded.quiet_end, locale = excluded.locale, \
             digest_every = excluded.digest_every, digest_at = excluded.digest_at",
        )
        .bind(user.0)
        .bind(quiet.time_zone.as_deref())
        .bind(start)
        .bind(end)
        .bind(quiet.locale)
        .bind(quiet.digest.map(|d| d.every.as_str()))
        .bind(quiet.digest.map(|d| d.at.name()))
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        // The next digest's row: due at its next local time; what it covers starts when
        // digests were switched on, and runs on from the last one sent.
        match quiet.digest {
            Some(digest) => {
                let due = digest.next_due(now, quiet.time_zone.as_deref());
                db::query(
                    "INSERT INTO digests (user_id, due_at, since) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id) DO UPDATE SET due_at = excluded.due_at",
                )
                .bind(user.0)
                .bind(due)
                .bind(now)
                .execute(&mut tx)
                .await
                .map_err(backend_error)?;
            }
            None => {
                db::query("DELETE FROM digests WHERE user_id = $1")
                    .bind(user.0)
                    .execute(&mut tx)
                    .await
                    .map_err(backend_error)?;
            }
        }
        tx.commit().await.map_err(backend_error)?;
        self.release_held(
            "quiet_hours",
            "SELECT id FROM notifications WHERE user_id = $3",
            user.0,
        )
        .await
    }

    async fn add_maintenance(
        &self,
        project: ProjectId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        by: UserId,
    ) -> Result<MaintenanceWindow, StoreError> {
        let now = Utc::now();
        let (id,): (i64,) = db::query_as(
            "INSERT INTO maintenance_windows (project_id, starts_at, ends_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(project.0)
        .bind(from)
        .bind(to)
        .bind(by.0)
        .bind(now)
        .fetch_one(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(window((id, project.0, from, to, by.0, now)))
    }

    async fn maintenance_windows(
        &self,
        project: ProjectId,
        after: DateTime<Utc>,
    ) -> Result<Vec<MaintenanceWindow>, StoreError> {
        let rows: Vec<WindowRow> = db::query_as(&format!(
            "{WINDOW} WHERE project_id = $1 AND ends_at > $2 ORDER BY starts_at, id"
        ))
        .bind(project.0)
        .bind(after)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        Ok(rows.into_iter().map(window).collect())
    }

    async fn delete_maintenance(&self, project: ProjectId, id: i64) -> Result<bool, StoreError> {
        let done = db::query("DELETE FROM maintenance_windows WHERE id = $1 AND project_id = $2")
            .bind(id)
            .bind(project.0)
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        if done.rows_affected() == 1 {
            self.release_held(
                "maintenance",
                "SELECT n.id FROM notifications n JOIN tickets t ON t.id = n.ticket_id \
                 WHERE t.project_id = $3",
                project.0,
            )
            .await?;
        }
        Ok(done.rows_affected() == 1)
    }

    async fn maintenance_until(
        &self,
        ticket: TicketId,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row: Option<(DateTime<Utc>,)> = db::query_as(
            "SELECT w.ends_at FROM maintenance_windows w JOIN tickets t ON t.project_id = w.project_id \
             WHERE t.id = $1 AND w.starts_at <= $2 AND w.ends_at > $2 ORDER BY w.ends_at DESC LIMIT 1",
        )
        .bind(ticket.0)
        .bind(at)
        .fetch_optional(self.reader())
        .await
        .map_err(backend_error)?;
        Ok(row.map(|(t,)| t))
    }

    async fn held_deliveries(&self) -> Result<Vec<(String, i64)>, StoreError> {
        db::query_as(
            "SELECT held, COUNT(*) FROM deliveries WHERE held IS NOT NULL AND status = 'QUEUED' \
             GROUP BY held ORDER BY held",
        )
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)
    }

    async fn hold_delivery(
        &self,
        id: i64,
        node: &str,
        until: DateTime<Utc>,
        why: &str,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let reason = if why.starts_with("maintenance") {
            "maintenance"
        } else if why == "batch" {
            "batch"
        } else {
            "quiet_hours"
        };
        let until_text = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let detail = match reason {
            "batch" => format!("waits for updates to batch with until {until_text}"),
            _ => format!("held by {} until {until_text}", why.replace('_', " ")),
        };
        let done = db::query(
            "UPDATE deliveries SET status = 'QUEUED', next_attempt_at = $2, held = $3, \
             last_error = $4, claimed_until = NULL, claimed_by = NULL, updated_at = $5 \
             WHERE id = $1 AND status = 'SENDING' AND claimed_by = $6",
        )
        .bind(id)
        .bind(until)
        .bind(reason)
        .bind(&detail)
        .bind(now)
        .bind(node)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(done.rows_affected() == 1)
    }
}
