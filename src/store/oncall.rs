//! On-call schedules in SQL: a schedule's layers are one JSON text, its overrides rows.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tickethub_actors::domain::{ProjectId, UserId};
use tickethub_actors::oncall::{Handoff, Layer, Override, Rotation};
use tickethub_actors::ports::{NewOncallSchedule, OncallSchedule, StoreError};

use crate::store::{backend_error, db, SqlStore};

/// A layer as the `layers` column holds it (and the API shows it).
pub(crate) fn layer_json(layer: &Layer) -> Value {
    json!({
        "users": layer.users.iter().map(|u| u.0).collect::<Vec<_>>(),
        "rotation": layer.rotation.name(),
        "handoff": layer.handoff.name(),
        "start": crate::wire::timestamp(layer.start),
    })
}

/// The layers of a `layers` column.
fn layers_from(text: &str) -> Result<Vec<Layer>, StoreError> {
    let bad = |why: String| StoreError::Backend(format!("a schedule's layers: {why}").into());
    let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let mut layers = Vec::new();
    for l in value.as_array().into_iter().flatten() {
        let text = |key: &str| l[key].as_str().unwrap_or_default().to_owned();
        layers.push(Layer {
            users: l["users"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .map(UserId)
                .collect(),
            rotation: Rotation::parse(&text("rotation")).map_err(bad)?,
            handoff: Handoff::parse(&text("handoff")).map_err(bad)?,
            start: crate::timespan::parse_instant(&text("start")).map_err(bad)?,
        });
    }
    Ok(layers)
}

#[derive(sqlx::FromRow)]
struct ScheduleRow {
    id: i64,
    name: String,
    project_id: Option<i64>,
    time_zone: String,
    layers: String,
    created_at: DateTime<Utc>,
}

impl ScheduleRow {
    fn into_schedule(self) -> Result<OncallSchedule, StoreError> {
        Ok(OncallSchedule {
            id: self.id,
            name: self.name,
            project: self.project_id.map(ProjectId),
            time_zone: self.time_zone,
            layers: layers_from(&self.layers)?,
            created_at: self.created_at,
        })
    }
}

const SCHEDULE: &str =
    "SELECT id, name, project_id, time_zone, layers, created_at FROM oncall_schedules";

#[async_trait::async_trait]
impl tickethub_actors::ports::OncallStore for SqlStore {
    async fn create_oncall_schedule(
        &self,
        schedule: NewOncallSchedule,
    ) -> Result<Option<OncallSchedule>, StoreError> {
        let layers = Value::Array(schedule.layers.iter().map(layer_json).collect()).to_string();
        let now = Utc::now();
        let id: Option<(i64,)> = db::query_as(
            "INSERT INTO oncall_schedules (name, project_id, time_zone, layers, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(&schedule.name)
        .bind(schedule.project.map(|p| p.0))
        .bind(&schedule.time_zone)
        .bind(&layers)
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(id.map(|(id,)| OncallSchedule {
            id,
            name: schedule.name,
            project: schedule.project,
            time_zone: schedule.time_zone,
            layers: schedule.layers,
            created_at: now,
        }))
    }

    async fn oncall_schedules(&self) -> Result<Vec<OncallSchedule>, StoreError> {
        db::query_as::<ScheduleRow>(&format!("{SCHEDULE} ORDER BY name"))
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(ScheduleRow::into_schedule)
            .collect()
    }

    async fn oncall_schedule(&self, name: &str) -> Result<Option<OncallSchedule>, StoreError> {
        db::query_as::<ScheduleRow>(&format!("{SCHEDULE} WHERE name = $1"))
            .bind(name)
            .fetch_optional(self.reader())
            .await
            .map_err(backend_error)?
            .map(ScheduleRow::into_schedule)
            .transpose()
    }

    async fn delete_oncall_schedule(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        db::query(
            "DELETE FROM oncall_overrides WHERE schedule_id IN \
             (SELECT id FROM oncall_schedules WHERE name = $1)",
        )
        .bind(name)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        let done = db::query("DELETE FROM oncall_schedules WHERE name = $1")
            .bind(name)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        tx.commit().await.map_err(backend_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn add_oncall_override(
        &self,
        schedule: i64,
        user: UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Override, StoreError> {
        let (id,): (i64,) = db::query_as(
            "INSERT INTO oncall_overrides (schedule_id, user_id, starts_at, ends_at, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(schedule)
        .bind(user.0)
        .bind(from)
        .bind(to)
        .bind(Utc::now())
        .fetch_one(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(Override { id, user, from, to })
    }

    async fn oncall_overrides(
        &self,
        schedule: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Override>, StoreError> {
        let rows: Vec<(i64, i64, DateTime<Utc>, DateTime<Utc>)> = db::query_as(
            "SELECT id, user_id, starts_at, ends_at FROM oncall_overrides \
             WHERE schedule_id = $1 AND ends_at > $2 AND starts_at < $3 ORDER BY id",
        )
        .bind(schedule)
        .bind(from)
        .bind(to)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        Ok(rows
            .into_iter()
            .map(|(id, user, from, to)| Override {
                id,
                user: UserId(user),
                from,
                to,
            })
            .collect())
    }

    async fn delete_oncall_override(&self, schedule: i64, id: i64) -> Result<bool, StoreError> {
        let done = db::query("DELETE FROM oncall_overrides WHERE schedule_id = $1 AND id = $2")
            .bind(schedule)
            .bind(id)
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(done.rows_affected() == 1)
    }
}
