//! The checker of the nemesis's history: what was acknowledged against what every node shows.

use super::*;

/// The status an action leads to from `from`, as the state machine decides; `None` where it
/// refuses.
pub(super) fn step(from: &str, action: &str) -> Option<&'static str> {
    Some(match (action, from) {
        ("open_ticket", "NEW") => "OPEN",
        ("assign", "OPEN" | "ASSIGNED" | "REJECTED") => "ASSIGNED",
        ("assign", "IN_PROGRESS") => "IN_PROGRESS",
        ("start_work", "ASSIGNED" | "REJECTED") => "IN_PROGRESS",
        ("finish_work", "IN_PROGRESS") => "FINISHED",
        ("reject", "FINISHED") => "REJECTED",
        ("approve", "FINISHED") => "APPROVED",
        _ => return None,
    })
}

/// What [`check_lists`] says of a list, of an acknowledged operation that did not hold, and of
/// a notification off the list that nobody took off.
struct Words {
    listed: &'static str,
    lost: fn(i64) -> String,
    stray: &'static str,
}

/// The anomalies of what each node lists of a user's notifications (`lists[user][node]`,
/// all of them or only the unread ones): every node lists the same, and each notification a
/// user was sent (but those `skip` passes over) is listed or not as the outcome of the one
/// operation that takes it off the list says (`ops`: a mark as read, a delete). An
/// acknowledged operation holds; nothing is off the list that nobody took off; one never
/// acknowledged may have held or not.
fn check_lists(
    history: &History,
    lists: &[Vec<BTreeSet<i64>>],
    ops: &BTreeMap<(usize, i64), Outcome>,
    skip: impl Fn(usize, i64) -> bool,
    words: Words,
) -> Vec<String> {
    let mut anomalies = Vec::new();
    for (user, lists) in lists.iter().enumerate() {
        for (node, list) in lists.iter().enumerate().skip(1) {
            if list != &lists[0] {
                let apart: Vec<_> = list.symmetric_difference(&lists[0]).collect();
                anomalies.push(format!(
                    "user {user}: node {node} and node 0 list other {}: {apart:?}",
                    words.listed
                ));
            }
        }
        let seen: BTreeSet<i64> = history.seen[user]
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        for id in seen.into_iter().filter(|id| !skip(user, *id)) {
            let off = !lists[0].contains(&id);
            match ops.get(&(user, id)) {
                Some(Outcome::Acked) if !off => {
                    anomalies.push(format!("user {user}: {}", (words.lost)(id)))
                }
                None if off => {
                    anomalies.push(format!("user {user}: notification {id} {}", words.stray))
                }
                _ => {}
            }
        }
    }
    anomalies
}

/// The anomalies of the read state: `unread[user][node]` is what each node lists.
pub(super) fn check_reads(history: &History, unread: &[Vec<BTreeSet<i64>>]) -> Vec<String> {
    let reads = history.reads.lock().unwrap();
    // A notification that may be gone is listed neither as read nor as unread.
    let deletes = history.deletes.lock().unwrap();
    let words = Words {
        listed: "unread notifications",
        lost: |id| format!("the acknowledged read of notification {id} was lost"),
        stray: "is read, but nobody marked it",
    };
    let skip = |user, id| deletes.contains_key(&(user, id));
    check_lists(history, unread, &reads, skip, words)
}

/// The anomalies of the deletes: `listed[user][node]` is what each node lists.
pub(super) fn check_deletes(history: &History, listed: &[Vec<BTreeSet<i64>>]) -> Vec<String> {
    let deletes = history.deletes.lock().unwrap();
    let words = Words {
        listed: "notifications",
        lost: |id| format!("the acknowledged delete of notification {id} did not hold"),
        stray: "is gone, but nobody deleted it",
    };
    check_lists(history, listed, &deletes, |_, _| false, words)
}

/// The anomalies of the tickets: `shown[ticket][node]` is what each node shows.
pub(super) fn check_tickets(
    history: &History,
    shown: &BTreeMap<i64, Vec<TicketView>>,
) -> Vec<String> {
    let actions = history.actions.lock().unwrap();
    let mut anomalies = Vec::new();
    for (id, views) in shown {
        for (node, view) in views.iter().enumerate().skip(1) {
            if view != &views[0] {
                anomalies.push(format!(
                    "ticket {id}: node {node} shows another history than node 0"
                ));
            }
        }
        let (steps, status) = &views[0];
        let mut at = "NEW".to_owned();
        for (i, (action, after)) in steps.iter().enumerate() {
            let expected = if i == 0 {
                (action == "create").then_some("NEW")
            } else {
                step(&at, action)
            };
            if expected != Some(after.as_str()) {
                anomalies.push(format!(
                    "ticket {id}: step {i}, {action} from {at} led to {after}, not {expected:?}"
                ));
            }
            at = after.clone();
        }
        if status != &at {
            anomalies.push(format!(
                "ticket {id}: its status is {status}, its history ends at {at}"
            ));
        }
        for ((ticket, action), (ok, unknown)) in actions.iter() {
            if ticket != id {
                continue;
            }
            let taken = steps.iter().filter(|(a, _)| a == action).count();
            if taken < *ok || taken > ok + unknown {
                anomalies.push(format!(
                    "ticket {id}: {action} answered 200 {ok} times and unanswered {unknown}, but taken {taken} times"
                ));
            }
        }
    }
    anomalies
}

/// The anomalies of a history (none: an empty list).
pub(super) fn check(history: &History) -> Vec<String> {
    let sends = history.sends.lock().unwrap();
    let not_before = history.not_before.lock().unwrap();
    let mut anomalies = Vec::new();
    for (user, seen) in history.seen.iter().enumerate() {
        let seen = seen.lock().unwrap();
        // A scheduled send arrives no earlier than its `send_at`.
        for s in seen.iter() {
            let op: Option<usize> = s.title.strip_prefix("op-").and_then(|n| n.parse().ok());
            if let Some(due) = op.and_then(|op| not_before.get(&op)) {
                if s.at < *due {
                    anomalies.push(format!(
                        "user {user}: {} arrived {} ms before its send_at",
                        s.title,
                        (*due - s.at).num_milliseconds()
                    ));
                }
            }
        }
        // One notification per seq, and the seqs of each socket only go up.
        let mut by_seq: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
        let mut last_on_socket: BTreeMap<usize, i64> = BTreeMap::new();
        for s in seen.iter() {
            by_seq.entry(s.seq).or_default().insert(&s.title);
            let last = last_on_socket.entry(s.socket).or_insert(0);
            if s.seq <= *last {
                anomalies.push(format!(
                    "user {user}: seq {} after {} on socket {}",
                    s.seq, last, s.socket
                ));
            }
            *last = s.seq;
        }
        for (seq, titles) in &by_seq {
            if titles.len() > 1 {
                anomalies.push(format!("user {user}: seq {seq} carried {titles:?}"));
            }
        }
        // No gap: 1..=max.
        if let Some(max) = by_seq.keys().next_back() {
            let missing: Vec<i64> = (1..=*max).filter(|s| !by_seq.contains_key(s)).collect();
            if !missing.is_empty() {
                anomalies.push(format!("user {user}: seqs {missing:?} never arrived"));
            }
        }
        // Each send once (by its title, under one seq), and only to its recipients.
        let mut seqs_of: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
        for (seq, titles) in &by_seq {
            for t in titles {
                seqs_of.entry(t).or_default().insert(*seq);
            }
        }
        for (title, seqs) in &seqs_of {
            let op: Option<usize> = title.strip_prefix("op-").and_then(|n| n.parse().ok());
            match op.and_then(|op| sends.get(&op)) {
                Some((to, _)) if !to.contains(&user) => {
                    anomalies.push(format!("user {user} received {title}, not sent to them"))
                }
                None => anomalies.push(format!("user {user} received {title}, never sent")),
                _ => {}
            }
            if seqs.len() > 1 {
                anomalies.push(format!("user {user}: {title} under seqs {seqs:?}"));
            }
        }
        for (op, (to, outcome)) in sends.iter() {
            if to.contains(&user)
                && matches!(outcome, Outcome::Acked)
                && !seqs_of.contains_key(format!("op-{op}").as_str())
            {
                anomalies.push(format!(
                    "user {user}: the acknowledged op-{op} never arrived"
                ));
            }
        }
    }
    anomalies
}

/// How late the latest scheduled send arrived after it was due (zero if none was scheduled),
/// and where that time went: how late a node claimed it, committed it, and it reached the
/// client. A send is due at its `send_at`, or when the sender stopped trying it if that was
/// later (a send accepted late fires at once).
pub(super) fn latest_scheduled(history: &History) -> (Duration, String) {
    let not_before = history.not_before.lock().unwrap();
    let scheduled_at = history.scheduled_at.lock().unwrap();
    let mut latest = (chrono::Duration::zero(), String::new());
    for seen in &history.seen {
        for s in seen.lock().unwrap().iter() {
            let op: Option<usize> = s.title.strip_prefix("op-").and_then(|n| n.parse().ok());
            let Some((op, send_at)) = op.and_then(|op| Some((op, *not_before.get(&op)?))) else {
                continue;
            };
            let due = scheduled_at.get(&op).map_or(send_at, |at| send_at.max(*at));
            if s.at - due > latest.0 {
                let ms = |t: chrono::DateTime<chrono::Utc>| (t - due).num_milliseconds();
                let how = match s.fired {
                    Some((claimed, committed)) => format!(
                        "{}: claimed +{} ms, committed +{} ms, arrived +{} ms",
                        s.title,
                        ms(claimed),
                        ms(committed),
                        ms(s.at)
                    ),
                    None => format!("{}: arrived +{} ms", s.title, ms(s.at)),
                };
                latest = (s.at - due, how);
            }
        }
    }
    (latest.0.to_std().unwrap_or_default(), latest.1)
}

/// Whether every acknowledged send has reached each of its recipients.
pub(super) fn all_arrived(history: &History) -> bool {
    let sends = history.sends.lock().unwrap();
    history.seen.iter().enumerate().all(|(user, seen)| {
        let titles: BTreeSet<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.title.clone())
            .collect();
        sends.iter().all(|(op, (to, outcome))| {
            !(to.contains(&user) && matches!(outcome, Outcome::Acked))
                || titles.contains(&format!("op-{op}"))
        })
    })
}

/// How long after a change of the inbox was answered a tab open all that while must have
/// heard it: the bus may be away for seconds, and the nodes catch their sockets up once it
/// is back.
pub(super) const HEARD_WITHIN: chrono::TimeDelta = chrono::TimeDelta::seconds(20);

/// Every tab hears each change of its user's inbox (`notification_updated`, read or deleted)
/// made while it was open, from the first try of the change to [`HEARD_WITHIN`] after its
/// answer; a tab still open counts as open until `now`.
pub(super) fn check_tabs(history: &History, now: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let changed = history.changed.lock().unwrap();
    let tabs = history.tabs.lock().unwrap();
    let mut anomalies = Vec::new();
    for (socket, tab) in tabs.iter() {
        let until = tab.closed.unwrap_or(now);
        let mine = (tab.user, i64::MIN, false)..=(tab.user, i64::MAX, true);
        for ((user, id, deleted), (tried, answered)) in changed.range(mine) {
            if *tried < tab.opened || until < *answered + HEARD_WITHIN {
                continue;
            }
            // A notification since deleted is told as deleted alone by a resync, which tells
            // each notification's state now: its deletion covers its read.
            if !tab.heard.contains(&(*id, *deleted)) && !tab.heard.contains(&(*id, true)) {
                let what = if *deleted { "deleted" } else { "read" };
                anomalies.push(format!(
                    "user {user}: socket {socket} (open {} to {}) never heard that notification {id} was {what} (answered at {})",
                    tab.opened.format("%T%.3f"),
                    until.format("%T%.3f"),
                    answered.format("%T%.3f"),
                ));
            }
        }
    }
    anomalies
}

/// How the pages' escalation steps ended: fired, and cancelled.
pub(super) type Escalated = (usize, usize);

/// Every page's escalation step settles once the faults have healed (the wait for it is
/// bounded): fired, telling the admins exactly once, or cancelled, telling nobody; and none
/// fired in a transaction that began after a read or delete of its notification was answered
/// (the database and the test share the machine's clock).
pub(super) async fn check_escalations(url: &str, history: &History) -> (Vec<String>, Escalated) {
    use sqlx::Connection;
    // The server may be at its limit for a moment while the other tests' hubs come and go.
    let mut conn = eventually_ok("a connection to PostgreSQL", || async {
        sqlx::PgConnection::connect(url)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    let deadline = Instant::now() + patience() * 4;
    while Instant::now() < deadline {
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM escalations WHERE status IN ('PENDING', 'FIRING')",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    type Step = (
        i64,
        i64,
        String,
        Option<String>,
        chrono::DateTime<chrono::Utc>,
    );
    let steps: Vec<Step> = sqlx::query_as(
        "SELECT notification_id, step, status, detail, updated_at FROM escalations \
         ORDER BY notification_id, step",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let told: Vec<String> = sqlx::query_scalar(
        "SELECT data FROM notifications WHERE notification_type = 'ticket_escalated'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut tellings: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    for data in told {
        let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
        let key = (
            data["notification_id"].as_i64().unwrap_or(-1),
            data["policy_step"].as_i64().unwrap_or(-1),
        );
        *tellings.entry(key).or_default() += 1;
    }
    // When a read or delete of each notification was first answered.
    let mut seen: BTreeMap<i64, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    for ((_, id, _), (_, answered)) in history.changed.lock().unwrap().iter() {
        let at = seen.entry(*id).or_insert(*answered);
        *at = (*at).min(*answered);
    }
    let mut anomalies = Vec::new();
    let (mut fired, mut cancelled) = (0, 0);
    for (id, step, status, detail, settled) in steps {
        let times = tellings.remove(&(id, step)).unwrap_or(0);
        let detail = detail.unwrap_or_default();
        match status.as_str() {
            "FIRED" => {
                fired += 1;
                if times != 1 {
                    anomalies.push(format!(
                        "notification {id}: step {step} fired and told the admins {times} times"
                    ));
                }
                if let Some(at) = seen.get(&id).filter(|at| settled > **at) {
                    anomalies.push(format!(
                        "notification {id}: step {step} fired at {} ({detail}), after its read or delete was answered at {}",
                        settled.format("%T%.6f"),
                        at.format("%T%.6f")
                    ));
                }
            }
            "CANCELLED" if times == 0 => cancelled += 1,
            "CANCELLED" => anomalies.push(format!(
                "notification {id}: step {step} was cancelled ({detail}) but told the admins {times} times"
            )),
            other => anomalies.push(format!(
                "notification {id}: step {step} ended {other} ({detail})"
            )),
        }
    }
    for ((id, step), times) in tellings {
        anomalies.push(format!(
            "notification {id}: the admins were told {times} times of step {step}, which has no row"
        ));
    }
    (anomalies, (fired, cancelled))
}
