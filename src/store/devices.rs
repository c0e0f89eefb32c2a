//! Push devices in SQL, and the pushes a commit queues for them.

use crate::store::{backend_error, db, SqlStore};

/// A device row.
#[derive(sqlx::FromRow)]
pub(crate) struct DeviceRow {
    id: i64,
    user_id: i64,
    kind: String,
    token: String,
    p256dh: Option<String>,
    auth: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    last_used_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl DeviceRow {
    pub(crate) fn into_device(
        self,
    ) -> Result<tickethub_actors::ports::Device, tickethub_actors::ports::StoreError> {
        Ok(tickethub_actors::ports::Device {
            id: self.id,
            user: tickethub_actors::domain::UserId(self.user_id),
            device: tickethub_actors::ports::NewDevice {
                kind: tickethub_actors::routing::Channel::stored(&self.kind).ok_or_else(|| {
                    tickethub_actors::ports::StoreError::Backend(
                        format!("unknown device kind `{}`", self.kind).into(),
                    )
                })?,
                token: self.token,
                p256dh: self.p256dh,
                auth: self.auth,
            },
            created_at: self.created_at,
            last_used_at: self.last_used_at,
        })
    }
}

/// The columns of [`DeviceRow`].
pub(crate) const DEVICE_COLUMNS: &str =
    "id, user_id, kind, token, p256dh, auth, created_at, last_used_at";

impl SqlStore {
    /// Devices by id (those that are still there).
    pub(crate) async fn devices_by_id(
        &self,
        ids: &[i64],
    ) -> Result<
        std::collections::HashMap<i64, tickethub_actors::ports::Device>,
        tickethub_actors::ports::StoreError,
    > {
        if ids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let mut q = db::Builder::new(format!(
            "SELECT {} FROM devices WHERE id",
            crate::store::devices::DEVICE_COLUMNS
        ));
        q.push_in(ids.to_vec());
        q.build_query_as::<crate::store::devices::DeviceRow>()
            .fetch_all(self.writer())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(|r| r.into_device().map(|d| (d.id, d)))
            .collect()
    }

    /// Queues the `push` deliveries of committed notifications: one row per device of
    /// each notification's recipient on a carrier the delivery's address names, on
    /// that carrier, due after the address's wait and then sent only if still unseen
    /// (see `routing::push_address`). `pushes` are notification ids with their
    /// addresses.
    pub(crate) async fn insert_pushes(
        tx: &mut db::Tx,
        pushes: &[(i64, &str)],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        use tickethub_actors::routing::{push_carriers, push_wait};
        let mut groups: std::collections::BTreeMap<
            (std::time::Duration, Vec<tickethub_actors::routing::Channel>),
            Vec<i64>,
        > = std::collections::BTreeMap::new();
        for (id, address) in pushes {
            let carriers = push_carriers(address);
            if !carriers.is_empty() {
                groups
                    .entry((push_wait(address), carriers))
                    .or_default()
                    .push(*id);
            }
        }
        for ((wait, carriers), ids) in groups {
            let due = now + chrono::Duration::from_std(wait).unwrap_or_default();
            let mut q = db::Builder::new(
                "INSERT INTO deliveries (notification_id, channel, address, status, attempts, \
                 next_attempt_at, created_at, updated_at, unless_seen) \
                 SELECT n.id, d.kind, CAST(d.id AS TEXT), 'QUEUED', 0, ",
            );
            q.push_bind(due);
            q.push(", ");
            q.push_bind(now);
            q.push(", ");
            q.push_bind(now);
            q.push(", ");
            q.push_bind(!wait.is_zero());
            q.push(
                " FROM notifications n JOIN devices d ON d.user_id = n.user_id WHERE d.kind IN (",
            );
            let mut kinds = q.separated(", ");
            for carrier in &carriers {
                kinds.push_bind(carrier.as_str());
            }
            q.push(") AND n.id");
            q.push_in(ids);
            q.push(" ORDER BY n.id, d.id");
            q.build().execute(&mut *tx).await.map_err(backend_error)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::DeviceStore for SqlStore {
    async fn register_device(
        &self,
        user: tickethub_actors::domain::UserId,
        device: tickethub_actors::ports::NewDevice,
        cap: i64,
    ) -> Result<tickethub_actors::ports::Registered, tickethub_actors::ports::StoreError> {
        use tickethub_actors::ports::Registered;
        let columns = crate::store::devices::DEVICE_COLUMNS;
        let now = chrono::Utc::now();
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        // The same endpoint or token again: the owner's keys refreshed. Another
        // user's is not taken over on their word: a browser proves it holds the
        // subscription by its secret `auth`, which only it and the hub know; then the
        // other user's device goes (with the pushes queued for them) and this one is
        // made, within the cap. An app's token proves nothing: it stays where it is,
        // unless its owner was deactivated.
        let existing: Option<(i64, i64, Option<String>, bool)> = db::query_as(
            "SELECT d.id, d.user_id, d.auth, u.is_active FROM devices d \
             JOIN users u ON u.id = d.user_id WHERE d.kind = $1 AND d.token = $2",
        )
        .bind(device.kind.as_str())
        .bind(&device.token)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let mut moved_from = None;
        if let Some((id, owner, auth, owner_active)) = existing {
            if owner == user.0 {
                let row: crate::store::devices::DeviceRow = db::query_as(&format!(
                    "UPDATE devices SET p256dh = $1, auth = $2 WHERE id = $3 RETURNING {columns}"
                ))
                .bind(&device.p256dh)
                .bind(&device.auth)
                .bind(id)
                .fetch_one(&mut tx)
                .await
                .map_err(backend_error)?;
                tx.commit().await.map_err(backend_error)?;
                return Ok(Registered::Existing(row.into_device()?));
            }
            // A deactivated user's device is nobody's to keep: the phone or browser
            // has passed on.
            let proven = !owner_active
                || match (&auth, &device.auth) {
                    (Some(stored), Some(given)) => crate::auth::api_keys::same_hash(
                        &crate::auth::api_keys::hash(given),
                        &crate::auth::api_keys::hash(stored),
                    ),
                    _ => false,
                };
            if !proven {
                return Ok(Registered::Taken);
            }
            moved_from = Some((id, owner));
        }
        let (count,): (i64,) = db::query_as("SELECT COUNT(*) FROM devices WHERE user_id = $1")
            .bind(user.0)
            .fetch_one(&mut tx)
            .await
            .map_err(backend_error)?;
        if count >= cap {
            return Ok(Registered::Full { cap });
        }
        if let Some((old, _)) = moved_from {
            db::query("DELETE FROM devices WHERE id = $1")
                .bind(old)
                .execute(&mut tx)
                .await
                .map_err(backend_error)?;
            Self::fail_queued_pushes(&mut tx, old, "the device was registered by another user")
                .await?;
        }
        let row: crate::store::devices::DeviceRow = db::query_as(&format!(
            "INSERT INTO devices (user_id, kind, token, p256dh, auth, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {columns}"
        ))
        .bind(user.0)
        .bind(device.kind.as_str())
        .bind(&device.token)
        .bind(&device.p256dh)
        .bind(&device.auth)
        .bind(now)
        .fetch_one(&mut tx)
        .await
        .map_err(backend_error)?;
        let made = row.into_device()?;
        let Some((old, from)) = moved_from else {
            tx.commit().await.map_err(backend_error)?;
            return Ok(Registered::Created(made));
        };
        let event = tickethub_actors::ports::NewAuditEvent::new(
            format!("user:{}", user.0),
            "device.moved",
            format!("device:{}", made.id),
            serde_json::json!({
                "kind": device.kind.as_str(),
                "from_user": from,
                "to_user": user.0,
                "removed_device": old,
            })
            .to_string(),
        );
        Self::audit(&mut tx, &event, now).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(Registered::Moved(made))
    }

    async fn devices(
        &self,
        user: tickethub_actors::domain::UserId,
    ) -> Result<Vec<tickethub_actors::ports::Device>, tickethub_actors::ports::StoreError> {
        db::query_as::<crate::store::devices::DeviceRow>(&format!(
            "SELECT {} FROM devices WHERE user_id = $1 ORDER BY id",
            crate::store::devices::DEVICE_COLUMNS
        ))
        .bind(user.0)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?
        .into_iter()
        .map(crate::store::devices::DeviceRow::into_device)
        .collect()
    }

    async fn delete_device(
        &self,
        user: tickethub_actors::domain::UserId,
        id: i64,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        Self::remove_device(
            self.writer(),
            Some(user.0),
            id,
            "the user removed the device",
        )
        .await
    }

    async fn device_gone(&self, id: i64) -> Result<bool, tickethub_actors::ports::StoreError> {
        Self::remove_device(self.writer(), None, id, "the device is gone").await
    }

    async fn device_used(
        &self,
        id: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        db::query("UPDATE devices SET last_used_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(())
    }
}

impl SqlStore {
    /// Removes a device (one of `user`'s, if given) and fails its queued pushes with
    /// `why`, in one transaction.
    async fn remove_device(
        pool: &db::Pool,
        user: Option<i64>,
        id: i64,
        why: &str,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        let mut tx = pool.begin().await.map_err(backend_error)?;
        let gone = db::query(
            "DELETE FROM devices WHERE id = $1 AND ($2 IS NULL OR user_id = $2) RETURNING id",
        )
        .bind(id)
        .bind(user)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        if gone.is_none() {
            return Ok(false);
        }
        Self::fail_queued_pushes(&mut tx, id, why).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(true)
    }

    /// Fails the pushes still queued for a device, with `why`.
    async fn fail_queued_pushes(
        tx: &mut db::Tx,
        id: i64,
        why: &str,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        db::query(
            "UPDATE deliveries SET status = 'FAILED', last_error = $1, updated_at = $2 \
             WHERE address = $3 AND status = 'QUEUED' AND channel IN ('webpush', 'fcm', 'apns')",
        )
        .bind(why)
        .bind(chrono::Utc::now())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        Ok(())
    }
}
