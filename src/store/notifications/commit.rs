//! How a group commit of drafts becomes rows: the calls merged into one insert and split back,
//! the seqs each recipient is given, where each draft landed, and why a commit has no rows.

use chrono::{DateTime, Utc};
use tickethub_actors::notification::Notification;
use tickethub_actors::ports::StoreError;

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

/// Several calls' drafts as one insert, moved (not copied) into one list in recipient order
/// (stable, so that a user's notifications keep the calls' order), each with the index of the
/// call it came from.
pub(crate) fn merge_calls(
    calls: Vec<Vec<tickethub_actors::notification::Draft>>,
) -> (Vec<usize>, Vec<tickethub_actors::notification::Draft>) {
    let mut tagged: Vec<(usize, tickethub_actors::notification::Draft)> = calls
        .into_iter()
        .enumerate()
        .flat_map(|(call, drafts)| drafts.into_iter().map(move |d| (call, d)))
        .collect();
    tagged.sort_by_key(|(_, d)| d.recipient);
    tagged.into_iter().unzip()
}

/// How a commit allocates seqs: each recipient with how many drafts it gets (in id order, the
/// order rows are locked in), and for each draft how many drafts to the same recipient come
/// after it. A draft's seq is its recipient's `last_seq` after the bump, minus that.
pub(crate) fn seq_plan(
    drafts: &[tickethub_actors::notification::Draft],
) -> (Vec<(i64, i64)>, Vec<i64>) {
    let mut counts: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for d in drafts {
        *counts.entry(d.recipient.0).or_default() += 1;
    }
    let mut seen: std::collections::HashMap<i64, i64> =
        std::collections::HashMap::with_capacity(counts.len());
    let back = drafts
        .iter()
        .map(|d| {
            let k = seen.entry(d.recipient.0).or_default();
            *k += 1;
            counts[&d.recipient.0] - *k
        })
        .collect();
    (counts.into_iter().collect(), back)
}

/// Committed drafts as notifications, their content moved out of the drafts: `placed[i]` is
/// the id and seq of `drafts[i]`.
pub(crate) fn into_notifications(
    drafts: Vec<tickethub_actors::notification::Draft>,
    placed: Vec<(i64, i64)>,
    now: DateTime<Utc>,
) -> Vec<Notification> {
    drafts
        .into_iter()
        .zip(placed)
        .map(|(d, (id, seq))| Notification {
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
        })
        .collect()
}

/// Where each draft of a commit landed, `(id, seq)`, from the inserted rows `(id, user_id,
/// seq)` of a commit that read its seqs in SQL: a recipient's highest seq is its `last_seq`,
/// and `back[i]` how far below it draft i's is.
pub(crate) fn placement(
    drafts: &[tickethub_actors::notification::Draft],
    back: &[i64],
    rows: Vec<(i64, i64, i64)>,
) -> Result<Vec<(i64, i64)>, CommitFailure> {
    let mut last: std::collections::HashMap<i64, i64> =
        std::collections::HashMap::with_capacity(drafts.len());
    let mut ids: std::collections::HashMap<(i64, i64), i64> =
        std::collections::HashMap::with_capacity(rows.len());
    for (id, user, seq) in rows {
        let top = last.entry(user).or_insert(seq);
        *top = (*top).max(seq);
        ids.insert((user, seq), id);
    }
    drafts
        .iter()
        .zip(back)
        .map(|(d, back)| {
            let seq = last.get(&d.recipient.0)? - back;
            Some((*ids.get(&(d.recipient.0, seq))?, seq))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            // It committed, but the answer cannot be told apart: nobody may commit it again.
            CommitFailure::Unknown(StoreError::Backend(
                "a commit's rows do not match its notifications".into(),
            ))
        })
}

/// Why a commit of drafts has no rows to answer with.
pub(crate) enum CommitFailure {
    /// It surely did not apply: its calls may be committed again.
    NotApplied(StoreError),
    /// Nobody can tell whether it applied: nothing is retried.
    Unknown(StoreError),
    /// The answer to `COMMIT` was an error after the rows were written (`placed`): whether the
    /// first is there tells whether it applied.
    Unanswered(StoreError, Vec<(i64, i64)>),
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
