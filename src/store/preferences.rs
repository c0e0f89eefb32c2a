//! Preferences in SQL: the switches users set, and the types they received.

use crate::store::{backend_error, db, SqlStore};

#[async_trait::async_trait]
impl tickethub_actors::ports::PreferenceStore for SqlStore {
    async fn preferences(
        &self,
        users: &[tickethub_actors::domain::UserId],
    ) -> Result<
        std::collections::HashMap<
            tickethub_actors::domain::UserId,
            tickethub_actors::routing::Preferences,
        >,
        tickethub_actors::ports::StoreError,
    > {
        let (mut held, users) = self.users().preferences(users);
        if users.is_empty() {
            return Ok(held);
        }
        let generation = self.users().generation();
        let mut out: std::collections::HashMap<_, tickethub_actors::routing::Preferences> =
            std::collections::HashMap::new();
        let mut q = db::Builder::new(
            "SELECT user_id, notification_type, channel, enabled FROM preferences WHERE user_id",
        );
        q.push_in(users.iter().map(|u| u.0).collect());
        let rows: Vec<(i64, String, String, bool)> = q
            .build_query_as()
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?;
        for (user, kind, channel, enabled) in rows {
            if let Ok(channel) = channel.parse() {
                out.entry(tickethub_actors::domain::UserId(user))
                    .or_default()
                    .set(&kind, channel, enabled);
            }
        }
        self.users().fill_preferences(generation, &users, &out);
        // Those who set nothing are left out, as they always were.
        held.retain(|_, prefs| *prefs != tickethub_actors::routing::Preferences::default());
        held.extend(out);
        Ok(held)
    }

    async fn set_preferences(
        &self,
        user: tickethub_actors::domain::UserId,
        switches: &[(String, tickethub_actors::routing::Channel, bool)],
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        for (kind, channel, enabled) in switches {
            db::query(
                "INSERT INTO preferences (user_id, notification_type, channel, enabled) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, notification_type, channel) \
                 DO UPDATE SET enabled = excluded.enabled",
            )
            .bind(user.0)
            .bind(kind)
            .bind(channel.as_str())
            .bind(*enabled)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        }
        tx.commit().await.map_err(backend_error)?;
        self.users().changed(user).await;
        Ok(())
    }

    async fn types_received(
        &self,
        user: tickethub_actors::domain::UserId,
        types: &[String],
    ) -> Result<Vec<String>, tickethub_actors::ports::StoreError> {
        if types.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = db::Builder::new(
            "SELECT DISTINCT notification_type FROM notifications WHERE user_id = ",
        );
        q.push_bind(user.0).push(" AND notification_type IN (");
        let mut sep = q.separated(", ");
        for t in types {
            sep.push_bind(t.clone());
        }
        q.push(")");
        let rows: Vec<(String,)> = q
            .build_query_as()
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?;
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }
}
