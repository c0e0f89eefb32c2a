//! Receipts in SQL: providers' reports on messages they took, and the suppression list.

use chrono::{DateTime, Utc};
use tickethub_actors::domain::UserId;
use tickethub_actors::ports::{
    NewAuditEvent, NewSuppression, Receipt, ReceiptStore, Report, StoreError, Suppression,
};
use tickethub_actors::routing::Channel;

use crate::store::{backend_error, db, SqlStore};

type ReceiptRow = (
    i64,
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
);

const RECEIPT: &str = "SELECT r.delivery_id, d.notification_id, n.user_id, d.channel, d.address, \
     r.status, r.error_code, r.detail, r.at FROM delivery_receipts r \
     JOIN deliveries d ON d.id = r.delivery_id JOIN notifications n ON n.id = d.notification_id";

fn stored_channel(channel: &str) -> Result<Channel, StoreError> {
    Channel::stored(channel)
        .ok_or_else(|| StoreError::Backend(format!("unknown channel {channel}").into()))
}

fn receipt(row: ReceiptRow) -> Result<Receipt, StoreError> {
    let (delivery_id, notification, user, channel, address, status, error_code, detail, at) = row;
    Ok(Receipt {
        delivery_id,
        notification,
        user: UserId(user),
        channel: stored_channel(&channel)?,
        address,
        status,
        error_code,
        detail,
        at,
    })
}

type SuppressionRow = (
    i64,
    String,
    String,
    String,
    String,
    Option<i64>,
    DateTime<Utc>,
);

const SUPPRESSION: &str =
    "SELECT id, channel, address, source, reason, delivery_id, created_at FROM suppressions";

fn suppression(row: SuppressionRow) -> Result<Suppression, StoreError> {
    let (id, channel, address, source, reason, delivery_id, created_at) = row;
    Ok(Suppression {
        id,
        channel: stored_channel(&channel)?,
        address,
        source,
        reason,
        delivery_id,
        created_at,
    })
}

/// An address as the list keeps it: in lower case (`Ann@X.com` and `ann@x.com` are one inbox).
fn listed(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}

impl SqlStore {
    /// Keeps a receipt for `delivery` in `tx`, failing it when `failed`, and answers it, and
    /// whether it is new: a report the provider sends again is kept once.
    async fn keep_receipt(
        tx: &mut db::Tx,
        delivery: i64,
        report: &Report,
        at: DateTime<Utc>,
    ) -> Result<(Receipt, bool), StoreError> {
        let kept: Option<ReceiptRow> = db::query_as(&format!(
            "{RECEIPT} WHERE r.delivery_id = $1 AND r.status = $2 \
             AND COALESCE(r.error_code, '') = $3 ORDER BY r.id LIMIT 1"
        ))
        .bind(delivery)
        .bind(&report.status)
        .bind(report.error_code.clone().unwrap_or_default())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend_error)?;
        if let Some(row) = kept {
            return Ok((receipt(row)?, false));
        }
        let (id,): (i64,) = db::query_as(
            "INSERT INTO delivery_receipts (delivery_id, status, error_code, detail, at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(delivery)
        .bind(&report.status)
        .bind(&report.error_code)
        .bind(&report.detail)
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend_error)?;
        if report.failed {
            let why = match &report.error_code {
                Some(code) => format!("{} (error {code})", report.status),
                None => report.status.clone(),
            };
            let failed = db::query(
                "UPDATE deliveries SET status = 'FAILED', last_error = $1, updated_at = $2 \
                 WHERE id = $3 AND status = 'SENT'",
            )
            .bind(&why)
            .bind(at)
            .bind(delivery)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
            if failed.rows_affected() == 1 {
                let known = serde_json::json!({ "error": why, "receipt": report.status });
                Self::queue_webhooks(tx, "delivery.failed", &[(delivery, known.to_string())], at)
                    .await?;
            }
        }
        let row: ReceiptRow = db::query_as(&format!("{RECEIPT} WHERE r.id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend_error)?;
        Ok((receipt(row)?, true))
    }

    /// Puts an address on the list in `tx`, unless it is there already.
    async fn list_address(tx: &mut db::Tx, entry: &NewSuppression<'_>) -> Result<(), StoreError> {
        db::query(
            "INSERT INTO suppressions (channel, address, source, reason, delivery_id, created_at) \
             VALUES ($1, LOWER($2), $3, $4, $5, $6) ON CONFLICT (channel, address) DO NOTHING",
        )
        .bind(entry.channel.as_str())
        .bind(listed(entry.address))
        .bind(entry.source)
        .bind(entry.reason)
        .bind(entry.delivery_id)
        .bind(entry.at)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl ReceiptStore for SqlStore {
    async fn record_receipt(
        &self,
        channel: Channel,
        provider_id: &str,
        status: &str,
        failed: bool,
        error_code: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Option<Receipt>, StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let found: Option<(i64,)> = db::query_as(
            "SELECT id FROM deliveries WHERE channel = $1 AND provider_message_id = $2",
        )
        .bind(channel.as_str())
        .bind(provider_id)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let Some((delivery,)) = found else {
            return Ok(None);
        };
        let report = Report {
            status: status.to_owned(),
            failed,
            error_code: error_code.map(str::to_owned),
            detail: None,
            suppress: None,
            about: Vec::new(),
        };
        let (receipt, _) = Self::keep_receipt(&mut tx, delivery, &report, at).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(Some(receipt))
    }

    async fn record_report(
        &self,
        channel: Channel,
        delivery: i64,
        user: UserId,
        report: &Report,
        at: DateTime<Utc>,
    ) -> Result<Option<Receipt>, StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let found: Option<(String,)> = db::query_as(
            "SELECT d.address FROM deliveries d JOIN notifications n ON n.id = d.notification_id \
             WHERE d.id = $1 AND d.channel = $2 AND n.user_id = $3",
        )
        .bind(delivery)
        .bind(channel.as_str())
        .bind(user.0)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let Some((address,)) = found else {
            return Ok(None);
        };
        let (receipt, new) = Self::keep_receipt(&mut tx, delivery, report, at).await?;
        let mut marked = false;
        let named = report.about.is_empty() || report.about.contains(&listed(&address));
        if let Some((source, reason)) = report.suppress.as_ref().filter(|_| new && named) {
            let entry = NewSuppression {
                channel,
                address: &address,
                source,
                reason,
                delivery_id: Some(delivery),
                at,
            };
            Self::list_address(&mut tx, &entry).await?;
            marked = db::query(
                "UPDATE user_addresses SET invalid_at = $1 \
                 WHERE user_id = $2 AND channel = $3 AND LOWER(address) = LOWER($4) \
                 AND invalid_at IS NULL",
            )
            .bind(at)
            .bind(user.0)
            .bind(channel.as_str())
            .bind(listed(&address))
            .execute(&mut tx)
            .await
            .map_err(backend_error)?
            .rows_affected()
                > 0;
            let event = NewAuditEvent::new(
                "hub",
                "address.suppressed",
                format!("user:{}", user.0),
                serde_json::json!({
                    "channel": channel.as_str(),
                    "source": source,
                    "reason": reason,
                    "delivery_id": delivery,
                })
                .to_string(),
            );
            Self::audit(&mut tx, &event, at).await?;
        }
        tx.commit().await.map_err(backend_error)?;
        if marked {
            self.users().changed(user).await;
        }
        Ok(Some(receipt))
    }

    async fn receipts(&self, notification: i64) -> Result<Vec<Receipt>, StoreError> {
        db::query_as::<ReceiptRow>(&format!(
            "{RECEIPT} WHERE d.notification_id = $1 ORDER BY r.at, r.id"
        ))
        .bind(notification)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?
        .into_iter()
        .map(receipt)
        .collect()
    }

    async fn suppress(&self, entry: NewSuppression<'_>) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        Self::list_address(&mut tx, &entry).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn suppressions(
        &self,
        channel: Option<Channel>,
        address: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<Suppression>), StoreError> {
        let filtered = |select: &str| {
            let mut q = db::Builder::new(select);
            q.push(" WHERE 1 = 1");
            if let Some(channel) = channel {
                q.push(" AND channel = ").push_bind(channel.as_str());
            }
            if let Some(address) = address {
                q.push(" AND address = LOWER(")
                    .push_bind(listed(address))
                    .push(")");
            }
            q
        };
        let (count,): (i64,) = filtered("SELECT COUNT(*) FROM suppressions")
            .build_query_as()
            .fetch_one(self.reader())
            .await
            .map_err(backend_error)?;
        let mut q = filtered(SUPPRESSION);
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        q.push(" OFFSET ").push_bind(offset);
        let rows: Vec<SuppressionRow> = q
            .build_query_as()
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?;
        Ok((
            count,
            rows.into_iter()
                .map(suppression)
                .collect::<Result<_, _>>()?,
        ))
    }

    async fn unsuppress(&self, id: i64, actor: &str) -> Result<Option<Suppression>, StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let row: Option<SuppressionRow> = db::query_as(
            "DELETE FROM suppressions WHERE id = $1 RETURNING id, channel, address, source, \
             reason, delivery_id, created_at",
        )
        .bind(id)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let entry = suppression(row)?;
        let now = Utc::now();
        // Its owners may be reached there again.
        let owners: Vec<(i64,)> = db::query_as(
            "UPDATE user_addresses SET invalid_at = NULL \
             WHERE channel = $1 AND LOWER(address) = LOWER($2) AND invalid_at IS NOT NULL \
             RETURNING user_id",
        )
        .bind(entry.channel.as_str())
        .bind(&entry.address)
        .fetch_all(&mut tx)
        .await
        .map_err(backend_error)?;
        let event = NewAuditEvent::new(
            actor,
            "suppression.removed",
            format!("suppression:{}", entry.id),
            serde_json::json!({
                "channel": entry.channel.as_str(),
                "source": entry.source,
                "reason": entry.reason,
            })
            .to_string(),
        );
        Self::audit(&mut tx, &event, now).await?;
        tx.commit().await.map_err(backend_error)?;
        for (user,) in owners {
            self.users().changed(UserId(user)).await;
        }
        Ok(Some(entry))
    }
}
