//! Receipts in SQL: providers' reports on messages they took.

use chrono::{DateTime, Utc};
use tickethub_actors::domain::UserId;
use tickethub_actors::ports::{Receipt, ReceiptStore, StoreError};
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
    DateTime<Utc>,
);

const RECEIPT: &str = "SELECT r.delivery_id, d.notification_id, n.user_id, d.channel, d.address, \
     r.status, r.error_code, r.at FROM delivery_receipts r \
     JOIN deliveries d ON d.id = r.delivery_id JOIN notifications n ON n.id = d.notification_id";

fn receipt(row: ReceiptRow) -> Result<Receipt, StoreError> {
    let (delivery_id, notification, user, channel, address, status, error_code, at) = row;
    Ok(Receipt {
        delivery_id,
        notification,
        user: UserId(user),
        channel: Channel::stored(&channel)
            .ok_or_else(|| StoreError::Backend(format!("unknown channel {channel}").into()))?,
        address,
        status,
        error_code,
        at,
    })
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
        let (id,): (i64,) = db::query_as(
            "INSERT INTO delivery_receipts (delivery_id, status, error_code, at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(delivery)
        .bind(status)
        .bind(error_code)
        .bind(at)
        .fetch_one(&mut tx)
        .await
        .map_err(backend_error)?;
        if failed {
            let why = match error_code {
                Some(code) => format!("{status} (error {code})"),
                None => status.to_owned(),
            };
            db::query(
                "UPDATE deliveries SET status = 'FAILED', last_error = $1, updated_at = $2 \
                 WHERE id = $3 AND status = 'SENT'",
            )
            .bind(why)
            .bind(at)
            .bind(delivery)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        }
        let row: ReceiptRow = db::query_as(&format!("{RECEIPT} WHERE r.id = $1"))
            .bind(id)
            .fetch_one(&mut tx)
            .await
            .map_err(backend_error)?;
        tx.commit().await.map_err(backend_error)?;
        receipt(row).map(Some)
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
}
