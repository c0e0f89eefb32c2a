//! Users in SQL: accounts, their profiles and cursors, lookups, erasure.

use crate::store::{backend_error, db, SqlStore};

impl SqlStore {
    /// The row `sql` finds for `id` (its only parameter), read on a connection held
    /// outside the pool where the store has one free, else through the reader pool.
    async fn row_by_id(
        &self,
        sql: &str,
        id: i64,
    ) -> Result<Option<db::Row>, tickethub_actors::ports::StoreError> {
        match self.held_row(sql, id).await {
            Some(row) => Ok(row),
            None => db::query(sql)
                .bind(id)
                .fetch_optional(self.reader())
                .await
                .map_err(backend_error),
        }
    }

    /// One user by id, with where their notification stream stands, kept in the cache when
    /// active: the read a socket's connect makes, also for a token's user and a send's one
    /// recipient missing from the cache. On SQLite it runs on the caller's thread when the
    /// inline reader is free, on PostgreSQL on a held connection when one is free (no hand-off
    /// to a pool's worker, no ping of a pooled connection given back), else through the pool.
    async fn read_user(
        &self,
        id: tickethub_actors::domain::UserId,
    ) -> Result<
        Option<(
            tickethub_actors::domain::User,
            tickethub_actors::ports::NotificationCursor,
        )>,
        tickethub_actors::ports::StoreError,
    > {
        let cache = self.users();
        let generation = cache.generation();
        if let Some(read) = self.inline().and_then(|r| r.user_and_cursor(id.0)) {
            cache.fill(generation, read.as_ref().map(|(user, _)| user));
            return Ok(read);
        }
        static SQL: db::PerKind = db::PerKind::new(|kind| {
            format!(
                "SELECT {}, {} AS last_seq, acked_seq, sent_seq FROM users WHERE id = $1",
                crate::store::user_columns(kind),
                kind.last_seq()
            )
        });
        let row = self.row_by_id(SQL.get(self.kind()), id.0).await?;
        let Some(row) = row else { return Ok(None) };
        let (user, cursor) = user_and_cursor_of(&row)?;
        cache.fill(generation, Some(&user));
        Ok(Some((user, cursor)))
    }

    /// Reads these users and keeps the active ones in the cache; one alone (a send to one
    /// person) is read by key, as a connect reads its user.
    async fn read_users(
        &self,
        ids: &[tickethub_actors::domain::UserId],
    ) -> Result<Vec<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError> {
        if let [id] = ids {
            return Ok(self
                .read_user(*id)
                .await?
                .into_iter()
                .map(|(user, _)| user)
                .collect());
        }
        let cache = self.users();
        let generation = cache.generation();
        let mut q = db::Builder::new(format!(
            "SELECT {} FROM users WHERE id",
            crate::store::user_columns(self.kind())
        ));
        q.push_in(ids.iter().map(|id| id.0).collect());
        let read = q
            .build_query_as::<crate::store::UserRow>()
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(crate::store::UserRow::into_user)
            .collect::<Result<Vec<_>, _>>()?;
        cache.fill(generation, &read);
        Ok(read)
    }
}

/// A user's row read with where their notification stream stands (`last_seq`, `acked_seq`,
/// `sent_seq` beside the user's columns).
fn user_and_cursor_of(
    row: &db::Row,
) -> Result<
    (
        tickethub_actors::domain::User,
        tickethub_actors::ports::NotificationCursor,
    ),
    tickethub_actors::ports::StoreError,
> {
    let cursor = tickethub_actors::ports::NotificationCursor {
        last_seq: row.try_get("last_seq").map_err(backend_error)?,
        acked_seq: row.try_get("acked_seq").map_err(backend_error)?,
        sent_seq: row.try_get("sent_seq").map_err(backend_error)?,
    };
    let user = row
        .decode::<crate::store::UserRow>()
        .map_err(backend_error)?
        .into_user()?;
    Ok((user, cursor))
}

impl SqlStore {
    /// Inserts a user with their addresses, which count as verified when `vouched`.
    async fn insert_user(
        &self,
        u: tickethub_actors::domain::NewUser,
        vouched: bool,
    ) -> Result<tickethub_actors::domain::User, tickethub_actors::ports::StoreError> {
        use tickethub_actors::routing::Channel;
        let now = chrono::Utc::now();
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let (id,): (i64,) = db::query_as(
            "INSERT INTO users (username, display_name, role, is_superuser, is_active, \
             password_hash, created_at, username_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&u.username)
        .bind(&u.display_name)
        .bind(u.role.as_str())
        .bind(u.is_superuser)
        .bind(true)
        .bind(&u.password_hash)
        .bind(now)
        .bind(crate::store::username_key(&u.username))
        .fetch_one(&mut tx)
        .await
        .map_err(backend_error)?;
        for (channel, address) in [
            (Channel::Email, &u.email),
            (Channel::Whatsapp, &u.whatsapp_number),
            (Channel::Sms, &u.phone_number),
        ] {
            let Some(address) = address.as_deref().filter(|a| !a.is_empty()) else {
                continue;
            };
            Self::set_address(&mut tx, id, channel, address, vouched.then_some(now)).await?;
        }
        tx.commit().await.map_err(backend_error)?;
        self.user_row(id)
            .await?
            .ok_or_else(|| tickethub_actors::ports::StoreError::NotFound(format!("user {id}")))
    }

    /// Sets a user's address on `channel` in `tx`: a changed address is verified at
    /// `verified_at` (`None`: it waits for its code), an unchanged one keeps its state,
    /// and either way a mark that the provider refused it is cleared.
    pub(crate) async fn set_address(
        tx: &mut db::Tx,
        user: i64,
        channel: tickethub_actors::routing::Channel,
        address: &str,
        verified_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        db::query(
            "INSERT INTO user_addresses (user_id, channel, address, verified_at, invalid_at) \
             VALUES ($1, $2, $3, $4, NULL) ON CONFLICT (user_id, channel) DO UPDATE SET \
             verified_at = CASE WHEN user_addresses.address = excluded.address \
             THEN user_addresses.verified_at ELSE excluded.verified_at END, \
             address = excluded.address, invalid_at = NULL",
        )
        .bind(user)
        .bind(channel.as_str())
        .bind(address)
        .bind(verified_at)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    /// One user as stored now, read on the writer (past the cache).
    pub(crate) async fn user_row(
        &self,
        id: i64,
    ) -> Result<Option<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError> {
        let sql = format!(
            "SELECT {} FROM users WHERE id = $1",
            crate::store::user_columns(self.kind())
        );
        db::query_as::<crate::store::UserRow>(&sql)
            .bind(id)
            .fetch_optional(self.writer())
            .await
            .map_err(backend_error)?
            .map(crate::store::UserRow::into_user)
            .transpose()
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::UserStore for SqlStore {
    fn user_cache(&self) -> Option<&tickethub_actors::ports::UserCache> {
        Some(self.users())
    }

    async fn create_user(
        &self,
        u: tickethub_actors::domain::NewUser,
    ) -> Result<tickethub_actors::domain::User, tickethub_actors::ports::StoreError> {
        self.insert_user(u, true).await
    }

    async fn register_user(
        &self,
        u: tickethub_actors::domain::NewUser,
    ) -> Result<tickethub_actors::domain::User, tickethub_actors::ports::StoreError> {
        self.insert_user(u, false).await
    }

    async fn user_by_id(
        &self,
        id: tickethub_actors::domain::UserId,
    ) -> Result<Option<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError> {
        if let Some(user) = self.users().get(id) {
            return Ok(Some(user));
        }
        Ok(self.read_user(id).await?.map(|(user, _)| user))
    }

    async fn user_and_cursor(
        &self,
        id: tickethub_actors::domain::UserId,
    ) -> Result<
        Option<(
            tickethub_actors::domain::User,
            Option<tickethub_actors::ports::NotificationCursor>,
        )>,
        tickethub_actors::ports::StoreError,
    > {
        if let Some(user) = self.users().get(id) {
            return Ok(Some((user, None)));
        }
        Ok(self
            .read_user(id)
            .await?
            .map(|(user, cursor)| (user, Some(cursor))))
    }

    async fn warm_users(
        &self,
        limit: usize,
    ) -> Result<
        Vec<(
            tickethub_actors::domain::User,
            tickethub_actors::ports::NotificationCursor,
        )>,
        tickethub_actors::ports::StoreError,
    > {
        // The newest accounts first: one walk of the primary key backwards, no sort.
        let sql = format!(
            "SELECT {}, {} AS last_seq, acked_seq, sent_seq FROM users \
             WHERE is_active ORDER BY id DESC LIMIT $1",
            crate::store::user_columns(self.kind()),
            self.kind().last_seq()
        );
        db::query(&sql)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?
            .iter()
            .map(user_and_cursor_of)
            .collect()
    }

    async fn user_with_hash(
        &self,
        username: &str,
    ) -> Result<Option<(tickethub_actors::domain::User, String)>, tickethub_actors::ports::StoreError>
    {
        let sql = format!(
            "SELECT {}, password_hash FROM users WHERE username = $1",
            crate::store::user_columns(self.kind())
        );
        let row = db::query(&sql)
            .bind(username)
            .fetch_optional(self.reader())
            .await
            .map_err(backend_error)?;
        let Some(row) = row else { return Ok(None) };
        let hash: String = row.try_get("password_hash").map_err(backend_error)?;
        let user = row
            .decode::<crate::store::UserRow>()
            .map_err(backend_error)?
            .into_user()?;
        Ok(Some((user, hash)))
    }

    async fn list_users(
        &self,
    ) -> Result<Vec<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError> {
        let sql = format!(
            "SELECT {} FROM users ORDER BY id",
            crate::store::user_columns(self.kind())
        );
        db::query_as::<crate::store::UserRow>(&sql)
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(crate::store::UserRow::into_user)
            .collect()
    }

    async fn find_users(
        &self,
        query: tickethub_actors::ports::UserQuery,
        page: tickethub_actors::ports::Page,
    ) -> Result<(i64, Vec<tickethub_actors::domain::User>), tickethub_actors::ports::StoreError>
    {
        fn conditions<'a>(q: &mut db::Builder<'a>, query: &'a tickethub_actors::ports::UserQuery) {
            q.push(" WHERE 1 = 1");
            if let Some(role) = query.role {
                q.push(" AND role = ").push_bind(role.as_str());
            }
            if let Some(active) = query.active {
                q.push(" AND is_active = ").push_bind(active);
            }
            if let Some(me) = query.visible_to {
                q.push(" AND (id = ")
                    .push_bind(me.0)
                    .push(
                        " OR id IN (SELECT o.user_id FROM project_members m \
                         JOIN project_members o ON o.project_id = m.project_id \
                         WHERE m.user_id = ",
                    )
                    .push_bind(me.0)
                    .push("))");
            }
            if let Some(text) = &query.username_contains {
                let escaped = text
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                q.push(" AND username LIKE ")
                    .push_bind(format!("%{escaped}%"))
                    .push(" ESCAPE '\\'");
            }
        }
        let mut count = db::Builder::new("SELECT COUNT(*) FROM users");
        conditions(&mut count, &query);
        let (total,): (i64,) = count
            .build_query_as()
            .fetch_one(self.reader())
            .await
            .map_err(backend_error)?;
        let mut q = db::Builder::new(format!(
            "SELECT {} FROM users",
            crate::store::user_columns(self.kind())
        ));
        conditions(&mut q, &query);
        q.push(" ORDER BY id LIMIT ")
            .push_bind(page.limit)
            .push(" OFFSET ")
            .push_bind(page.offset);
        let users = q
            .build_query_as::<crate::store::UserRow>()
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(crate::store::UserRow::into_user)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((total, users))
    }

    async fn users_with_role(
        &self,
        role: tickethub_actors::domain::Role,
    ) -> Result<Vec<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError> {
        let sql = format!(
            "SELECT {} FROM users WHERE role = $1 AND is_active = $2 ORDER BY id",
            crate::store::user_columns(self.kind())
        );
        db::query_as::<crate::store::UserRow>(&sql)
            .bind(role.as_str())
            .bind(true)
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(crate::store::UserRow::into_user)
            .collect()
    }

    async fn users_by_ids(
        &self,
        ids: &[tickethub_actors::domain::UserId],
    ) -> Result<Vec<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError> {
        let cache = self.users();
        let (mut users, missing) = cache.get_many(ids);
        if !missing.is_empty() {
            let read = self.read_users(&missing).await?;
            users.extend(read);
        }
        users.sort_unstable_by_key(|u| u.id);
        users.dedup_by_key(|u| u.id);
        Ok(users)
    }

    async fn active_user_ids(
        &self,
        ids: &[tickethub_actors::domain::UserId],
    ) -> Result<Vec<tickethub_actors::domain::UserId>, tickethub_actors::ports::StoreError> {
        // Held users are active (the cache keeps no others). The rest are read whole,
        // so that the next call finds them held.
        let cache = self.users();
        let (mut active, missing) = cache.held_ids(ids);
        if !missing.is_empty() {
            let read = self.read_users(&missing).await?;
            active.extend(read.iter().filter(|u| u.is_active).map(|u| u.id));
        }
        active.sort_unstable();
        active.dedup();
        Ok(active)
    }

    async fn update_profile(
        &self,
        user: tickethub_actors::domain::UserId,
        changes: tickethub_actors::ports::ProfileChanges,
    ) -> Result<Option<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError> {
        use tickethub_actors::domain::Role;
        let now = chrono::Utc::now();
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let before: Option<(String, bool)> =
            db::query_as("SELECT role, is_active FROM users WHERE id = $1")
                .bind(user.0)
                .fetch_optional(&mut tx)
                .await
                .map_err(backend_error)?;
        let Some((role_before, active_before)) = before else {
            return Ok(None);
        };
        let mut q = db::Builder::new("UPDATE users SET id = id");
        if let Some(name) = &changes.display_name {
            q.push(", display_name = ").push_bind(name.clone());
        }
        if let Some(role) = changes.role {
            q.push(", role = ").push_bind(role.as_str());
        }
        if let Some(active) = changes.is_active {
            q.push(", is_active = ").push_bind(active);
        }
        if let Some(hash) = &changes.password_hash {
            q.push(", password_hash = ").push_bind(hash.clone());
        }
        // A new password, another role, a deactivation or a logout everywhere ends every
        // token the user holds: the hub's tokens carry the version they were issued under.
        q.push(", token_version = token_version + CASE WHEN ");
        match changes.role {
            Some(role) => {
                q.push("role <> ").push_bind(role.as_str());
            }
            None => {
                q.push("1 = 0");
            }
        }
        if changes.is_active == Some(false) {
            q.push(" OR is_active = ").push_bind(true);
        }
        if changes.password_hash.is_some() || changes.end_sessions {
            q.push(" OR 1 = 1");
        }
        q.push(" THEN 1 ELSE 0 END");
        q.push(" WHERE id = ").push_bind(user.0);
        q.build().execute(&mut tx).await.map_err(backend_error)?;
        // An address set anew is verified when someone vouches for it (an admin, the
        // command line), else it waits for its owner's code; set again unchanged, it
        // keeps its state (an admin's form that sends back what the user typed vouches
        // for nothing).
        for (channel, address) in &changes.addresses {
            match address.as_deref().filter(|a| !a.is_empty()) {
                Some(address) => {
                    Self::set_address(
                        &mut tx,
                        user.0,
                        *channel,
                        address,
                        changes.vouched.then_some(now),
                    )
                    .await?;
                }
                None => {
                    db::query("DELETE FROM user_addresses WHERE user_id = $1 AND channel = $2")
                        .bind(user.0)
                        .bind(channel.as_str())
                        .execute(&mut tx)
                        .await
                        .map_err(backend_error)?;
                }
            }
        }
        // Powers taken away take the sends that needed them: a person no longer an
        // admin, their own; a deactivated user, theirs and their keys'.
        let actor = changes
            .by
            .clone()
            .unwrap_or_else(|| format!("user:{}", user.0));
        let was_admin = role_before == Role::Admin.as_str();
        let demoted = was_admin && changes.role.is_some_and(|r| r != Role::Admin);
        let deactivated = active_before && changes.is_active == Some(false);
        let mut cancelled = Vec::new();
        if deactivated {
            cancelled = Self::cancel_owned_sends(
                &mut tx,
                crate::store::schedule::Owned::User(user),
                "the user who scheduled it was deactivated",
                &actor,
                now,
            )
            .await?;
        } else if demoted {
            cancelled = Self::cancel_owned_sends(
                &mut tx,
                crate::store::schedule::Owned::Person(user),
                "the admin who scheduled it is no longer an admin",
                &actor,
                now,
            )
            .await?;
        }
        for (happened, action, detail) in [
            (
                demoted,
                "user.demoted",
                serde_json::json!({
                    "from": role_before,
                    "to": changes.role.map(|r| r.as_str()),
                    "cancelled_sends": if deactivated { Vec::new() } else { cancelled.clone() },
                }),
            ),
            (
                deactivated,
                "user.deactivated",
                serde_json::json!({ "cancelled_sends": cancelled }),
            ),
            (
                !active_before && changes.is_active == Some(true),
                "user.activated",
                serde_json::json!({}),
            ),
            (
                !was_admin && changes.role == Some(Role::Admin),
                "user.promoted",
                serde_json::json!({ "from": role_before, "to": "admin" }),
            ),
        ] {
            if happened {
                let event = tickethub_actors::ports::NewAuditEvent::new(
                    actor.as_str(),
                    action,
                    format!("user:{}", user.0),
                    detail.to_string(),
                );
                Self::audit(&mut tx, &event, now).await?;
            }
        }
        tx.commit().await.map_err(backend_error)?;
        self.users().changed(user).await;
        let sql = format!(
            "SELECT {} FROM users WHERE id = $1",
            crate::store::user_columns(self.kind())
        );
        db::query_as::<crate::store::UserRow>(&sql)
            .bind(user.0)
            .fetch_optional(self.writer())
            .await
            .map_err(backend_error)?
            .map(crate::store::UserRow::into_user)
            .transpose()
    }

    async fn erase_user(
        &self,
        user: tickethub_actors::domain::UserId,
        by: &str,
    ) -> Result<Option<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let found = db::query_as::<crate::store::UserRow>(&format!(
            "SELECT {} FROM users WHERE id = $1",
            crate::store::user_columns(self.kind())
        ))
        .bind(user.0)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let Some(found) = found.map(crate::store::UserRow::into_user).transpose()? else {
            return Ok(None);
        };
        let erased_name = crate::store::ERASED_NAME;
        // Other people's notifications that open with this person's name (the actor of
        // the event: "Alice approved ticket …") are reworded; the sign-up notices about
        // them lose their data.
        for name in [found.name().to_owned(), found.username.clone()] {
            db::query(
                "UPDATE notifications SET \
                 message = $1 || SUBSTR(message, LENGTH($2) + 1) \
                 WHERE user_id <> $3 AND SUBSTR(message, 1, LENGTH($2)) = $2 AND \
                 (actor_id = $3 OR event_id IN (SELECT id FROM ticket_events WHERE actor_id = $3))",
            )
            .bind(erased_name)
            .bind(&name)
            .bind(user.0)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        }
        db::query(
            "UPDATE notifications SET data = '{}', \
             message = 'A new client has registered (since erased).' \
             WHERE actor_id = $1 AND notification_type = 'user_registered'",
        )
        .bind(user.0)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        // Their inbox leaves the delivery analytics' figures as it was: its counts
        // (nothing that names them) are folded into the rollups before it goes.
        let inbox: Vec<(i64,)> = db::query_as("SELECT id FROM notifications WHERE user_id = $1")
            .bind(user.0)
            .fetch_all(&mut tx)
            .await
            .map_err(backend_error)?;
        let inbox: Vec<i64> = inbox.into_iter().map(|(id,)| id).collect();
        for chunk in inbox.chunks(1000) {
            Self::fold_into_rollups(&mut tx, crate::store::analytics::Fold::Notifications, chunk)
                .await?;
        }
        for table in [
            "notifications",
            "preferences",
            "refresh_tokens",
            "identity_links",
            "stream_events",
            "project_members",
            "devices",
            "user_addresses",
            "join_requests",
        ] {
            db::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user.0)
                .execute(&mut tx)
                .await
                .map_err(backend_error)?;
        }
        let key = format!("erased-{}", user.0);
        db::query(
            "UPDATE users SET username = $1, username_key = $1, display_name = $2, \
             password_hash = '!', \
             is_active = $3, is_superuser = $3, token_version = token_version + 1, \
             erased_at = $4 WHERE id = $5",
        )
        .bind(&key)
        .bind(erased_name)
        .bind(false)
        .bind(chrono::Utc::now())
        .bind(user.0)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        let now = chrono::Utc::now();
        let cancelled = Self::cancel_owned_sends(
            &mut tx,
            crate::store::schedule::Owned::User(user),
            "the user who scheduled it was erased",
            by,
            now,
        )
        .await?;
        // The files they uploaded go (their rows stay as tombstones until the sweeper has
        // removed the objects and retention purges them).
        db::query(
            "UPDATE attachments SET deleted_at = $1 WHERE uploader_id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(user.0)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        // The address an invitation of theirs was sent to.
        db::query("UPDATE invitations SET email = '' WHERE accepted_user_id = $1")
            .bind(user.0)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        db::query("DELETE FROM address_verifications WHERE user_id = $1")
            .bind(user.0)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        let event = tickethub_actors::ports::NewAuditEvent::new(
            by,
            "user.erased",
            format!("user:{}", user.0),
            serde_json::json!({ "cancelled_sends": cancelled }).to_string(),
        );
        Self::audit(&mut tx, &event, now).await?;
        tx.commit().await.map_err(backend_error)?;
        self.users().changed(user).await;
        self.user_row(user.0).await
    }

    async fn notification_cursor(
        &self,
        user: tickethub_actors::domain::UserId,
    ) -> Result<tickethub_actors::ports::NotificationCursor, tickethub_actors::ports::StoreError>
    {
        static SQL: db::PerKind = db::PerKind::new(|kind| {
            format!(
                "SELECT {}, acked_seq, sent_seq FROM users WHERE id = $1",
                kind.last_seq()
            )
        });
        let row = self
            .row_by_id(SQL.get(self.kind()), user.0)
            .await?
            .ok_or_else(|| tickethub_actors::ports::StoreError::NotFound(format!("user {user}")))?;
        let (last_seq, acked_seq, sent_seq): (i64, i64, i64) =
            row.decode().map_err(backend_error)?;
        Ok(tickethub_actors::ports::NotificationCursor {
            last_seq,
            acked_seq,
            sent_seq,
        })
    }

    async fn last_seqs(
        &self,
        users: &[tickethub_actors::domain::UserId],
    ) -> Result<Vec<(tickethub_actors::domain::UserId, i64)>, tickethub_actors::ports::StoreError>
    {
        let mut out = Vec::with_capacity(users.len());
        // One query per thousand users, however many are connected; its text is the same
        // for every chunk, so it stays prepared (the ids are one bound array).
        for chunk in users.chunks(1000) {
            static SQL: db::PerKind = db::PerKind::new(|kind| {
                format!("SELECT id, {} FROM users WHERE id", kind.last_seq())
            });
            let mut q = db::Builder::new(SQL.get(self.kind()));
            q.push_in(chunk.iter().map(|id| id.0).collect());
            let rows: Vec<(i64, i64)> = q
                .build_query_as()
                .fetch_all(self.reader())
                .await
                .map_err(backend_error)?;
            out.extend(
                rows.into_iter()
                    .map(|(id, seq)| (tickethub_actors::domain::UserId(id), seq)),
            );
        }
        Ok(out)
    }

    async fn phone_number_invalid(
        &self,
        user: tickethub_actors::domain::UserId,
        number: &str,
        why: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        // Only the number refused: one the user set meanwhile is tried as usual.
        let marked = db::query(
            "UPDATE user_addresses SET invalid_at = $1 \
             WHERE user_id = $2 AND channel = 'sms' AND address = $3 AND invalid_at IS NULL",
        )
        .bind(at)
        .bind(user.0)
        .bind(number)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?
        .rows_affected()
            == 1;
        db::query(
            "UPDATE deliveries SET status = 'FAILED', last_error = $1, updated_at = $2 \
             WHERE channel = 'sms' AND address = $3 AND status = 'QUEUED' \
             AND notification_id IN (SELECT id FROM notifications WHERE user_id = $4)",
        )
        .bind(why)
        .bind(at)
        .bind(number)
        .bind(user.0)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        tx.commit().await.map_err(backend_error)?;
        if marked {
            self.users().changed(user).await;
        }
        Ok(marked)
    }
}
