//! The purge's batches on SQLite, on the writer thread's connection.
//!
//! A batch written through the pool's writer connection made the writer thread's connection
//! drop its page cache (SQLite's pager starts again after any other connection's commit), and
//! found its own cold: every index leaf a batch deletes from was read from the files again,
//! and the next group commit read its pages again too. On the writer thread both find the
//! pages they touch in the one cache, and a batch is one job between two group commits.
//!
//! The statements are the pool's ([`crate::store::retention`]); what a batch of notifications,
//! outbox rows or escalation steps deletes is folded into the rollups in the batch's
//! transaction, as on the pool ([`crate::store::analytics`]).

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSqlError, Value, ValueRef};
use rusqlite::{Connection, Row, ToSql, TransactionBehavior};
use tickethub_actors::analytics::Tallies;
use tickethub_actors::ports::StoreError;

use crate::store::analytics::{self as sql, Fold};

/// One batch of the purge, as the store planned it.
pub(crate) struct Batch {
    /// The table the batch deletes from, and its key.
    pub(crate) table: &'static str,
    pub(crate) key: &'static str,
    /// A batch that is folded into the rollups: `select` names the key of each row to fold
    /// and delete. Any other: `select` is the `DELETE` itself.
    pub(crate) fold: Option<Fold>,
    pub(crate) select: String,
    /// The statement's parameters, by name (`$1` the cutoff, …).
    pub(crate) params: Vec<(&'static str, Value)>,
}

/// A time as the pool writes it, so that the statements compare it as they compare the rows'.
pub(crate) fn time(at: DateTime<Utc>) -> Value {
    Value::Text(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false))
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// Deletes one batch in one transaction; the rows deleted.
pub(crate) fn run(conn: &mut Connection, batch: &Batch) -> Result<u64, StoreError> {
    let named: Vec<(&str, &dyn ToSql)> = batch
        .params
        .iter()
        .map(|(name, value)| (*name, value as &dyn ToSql))
        .collect();
    let Some(fold) = batch.fold else {
        let mut delete = conn.prepare_cached(&batch.select).map_err(backend)?;
        return delete
            .execute(named.as_slice())
            .map(|n| n as u64)
            .map_err(backend);
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    let ids: Vec<i64> = {
        let mut select = tx.prepare_cached(&batch.select).map_err(backend)?;
        let ids = select
            .query_map(named.as_slice(), |row| row.get(0))
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        ids
    };
    if ids.is_empty() {
        return Ok(0);
    }
    let ids = json_ids(&ids);
    let tallies = tally(&tx, fold, &ids).map_err(backend)?;
    store_rollups(&tx, tallies).map_err(backend)?;
    let deleted = tx
        .prepare_cached(&format!(
            "DELETE FROM {} WHERE {}{IDS}",
            batch.table, batch.key
        ))
        .and_then(|mut delete| delete.execute([&ids]))
        .map_err(backend)?;
    tx.commit().map_err(backend)?;
    Ok(deleted as u64)
}

/// `?, ?, …`: `n` parameters.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// A batch's keys, as the one parameter `?1` of [`IDS`]: every statement of a batch has one
/// text whatever the batch's length, so that each is prepared once per connection, not once
/// per batch (a 200-row batch took 13–14 % less time so, in the benchmark log of 2026-11-29).
const IDS: &str = " IN (SELECT value FROM json_each(?1))";

/// `[1,2,…]`: the keys of a batch as one JSON text.
fn json_ids(ids: &[i64]) -> String {
    let mut json = String::with_capacity(ids.len() * 8 + 2);
    json.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&id.to_string());
    }
    json.push(']');
    json
}

/// A time column's value.
fn at(row: &Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    optional_at(row, i)?.ok_or(rusqlite::Error::InvalidColumnType(
        i,
        "time".into(),
        rusqlite::types::Type::Null,
    ))
}

fn optional_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get_ref(i)? {
        ValueRef::Null => Ok(None),
        value => {
            let text = value.as_str().map_err(|e| from_sql(i, e))?;
            DateTime::parse_from_rfc3339(text)
                .map(|at| Some(at.to_utc()))
                .map_err(|e| from_sql(i, FromSqlError::Other(Box::new(e))))
        }
    }
}

fn from_sql(i: usize, e: FromSqlError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

/// The rows `ids` name, tallied as the pool's fold tallies them: for notifications, with
/// their outbox rows and steps, which their deletion takes along.
fn tally(conn: &Connection, fold: Fold, ids: &str) -> rusqlite::Result<Tallies> {
    let mut tallies = Tallies::default();
    let within = |column: &str| format!(" WHERE {column}{IDS}");
    if fold == Fold::Notifications {
        let mut q =
            conn.prepare_cached(&format!("{}{}", sql::NOTIFICATION_FACTS, within("n.id")))?;
        let mut rows = q.query([ids])?;
        while let Some(row) = rows.next()? {
            tallies.notification(&sql::notification_facts((
                row.get(0)?,
                at(row, 1)?,
                optional_at(row, 2)?,
                row.get(3)?,
                row.get(4)?,
            )));
        }
    }
    if fold != Fold::Escalations {
        let column = match fold {
            Fold::Notifications => "d.notification_id",
            _ => "d.id",
        };
        let mut q = conn.prepare_cached(&format!("{}{}", sql::DELIVERY_FACTS, within(column)))?;
        let mut rows = q.query([ids])?;
        while let Some(row) = rows.next()? {
            tallies.delivery(&sql::delivery_facts((
                row.get(0)?,
                at(row, 1)?,
                optional_at(row, 2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
            )));
        }
    }
    if fold != Fold::Deliveries {
        let column = match fold {
            Fold::Notifications => "e.notification_id",
            _ => "e.id",
        };
        let mut q = conn.prepare_cached(&format!("{}{}", sql::ESCALATION_FACTS, within(column)))?;
        let mut rows = q.query([ids])?;
        while let Some(row) = rows.next()? {
            if let Some(fired) = sql::escalation_facts((row.get(0)?, at(row, 1)?, row.get(2)?)) {
                tallies.escalation(&fired);
            }
        }
    }
    Ok(tallies)
}

/// Adds `tallies` to the rollups, one row (and one read delay's bin) at a time.
fn store_rollups(conn: &Connection, tallies: Tallies) -> rusqlite::Result<()> {
    if tallies.is_empty() {
        return Ok(());
    }
    let mut rollup = conn.prepare_cached(&format!(
        "INSERT INTO analytics_rollups ({}) VALUES ({}){}",
        sql::ROLLUP_COLUMNS,
        marks(14),
        sql::ROLLUP_UPSERT
    ))?;
    let mut delay = conn.prepare_cached(&format!(
        "INSERT INTO analytics_read_delays ({}) VALUES ({}){}",
        sql::READ_DELAY_COLUMNS,
        marks(5),
        sql::READ_DELAYS_UPSERT
    ))?;
    for ((hour, kind, channel), t) in &tallies.0 {
        let hour = time(*hour);
        let key: [&dyn ToSql; 3] = [&hour, kind, channel];
        let counts = sql::rollup_counts(t);
        let row = key
            .into_iter()
            .chain(counts.iter().map(|c| c as &dyn ToSql));
        rollup.execute(rusqlite::params_from_iter(row))?;
        for (bound, n) in t.binned() {
            delay.execute(rusqlite::params![hour, kind, channel, bound, n])?;
        }
    }
    Ok(())
}
