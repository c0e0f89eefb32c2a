//! The nemesis's workload: senders, readers, ticket workers and clients, each reaching the
//! nodes through any of their proxies, and what the nodes show once healed.

use super::*;

/// A client whose calls give up after 3 s (a frozen node answers nothing).
pub(super) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

/// Posts `body` to `path` through the nodes in turn, from the one after the `k`th (`k` moves
/// on with each try), until one answers with a status in `answers` or 30 tries fail; answers
/// that status. A refusal that asks to retry (`Retry-After`: the idempotency key's first try
/// is still running) is tried again.
#[allow(clippy::too_many_arguments)]
pub(super) async fn post_through_any(
    http: &reqwest::Client,
    addrs: &Addrs,
    k: &mut usize,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: &Value,
    answers: &[u16],
) -> Option<u16> {
    let post = reqwest::Method::POST;
    call_through_any(http, addrs, k, post, path, token, key, Some(body), answers).await
}

/// [`post_through_any`] with any method, and a body or none.
#[allow(clippy::too_many_arguments)]
pub(super) async fn call_through_any(
    http: &reqwest::Client,
    addrs: &Addrs,
    k: &mut usize,
    method: reqwest::Method,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: Option<&Value>,
    answers: &[u16],
) -> Option<u16> {
    for _ in 0..30 {
        *k = k.wrapping_add(1);
        let mut request = http
            .request(method.clone(), format!("http://{}{path}", pick(addrs, *k)))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        // A 409 with `Retry-After` is no answer: the key's first try still runs.
        let answer = request.send().await.map(|a| {
            let again = a.headers().contains_key(reqwest::header::RETRY_AFTER);
            (a.status().as_u16(), again)
        });
        match answer {
            Ok((code, false)) if answers.contains(&code) => return Some(code),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    None
}

pub(super) fn pick(addrs: &Addrs, k: usize) -> String {
    let addrs = addrs.lock().unwrap();
    addrs[k % addrs.len()].clone()
}

/// A user's client: a socket to some node, read until it breaks or stalls, then another to
/// another node with the highest seq read so far, until `stop`.
pub(super) async fn client(
    user: usize,
    token: String,
    addrs: Addrs,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) {
    let mut last_seq = 0i64;
    let mut attempt = user;
    while !stop.load(Ordering::SeqCst) {
        attempt += 1;
        let url = format!(
            "ws://{}/ws/notifications/?token={token}&last_seq={last_seq}",
            pick(&addrs, attempt)
        );
        let connected = tokio::time::timeout(
            Duration::from_secs(2),
            tokio_tungstenite::connect_async(url),
        )
        .await;
        let Ok(Ok((mut ws, _))) = connected else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let socket = history.sockets.fetch_add(1, Ordering::SeqCst);
        // A frozen node answers nothing: a socket silent this long is left for another.
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(2), ws.next()).await
        {
            let Message::Text(text) = message else {
                continue;
            };
            let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let tab = |change: &dyn Fn(&mut Tab)| {
                if let Some(tab) = history.tabs.lock().unwrap().get_mut(&socket) {
                    change(tab);
                }
            };
            if frame["type"] == "connection_established" {
                let (opened, heard) = (chrono::Utc::now(), BTreeSet::new());
                let tab = Tab {
                    user,
                    opened,
                    closed: None,
                    heard,
                };
                history.tabs.lock().unwrap().insert(socket, tab);
            }
            if frame["type"] == "notification_updated" {
                let id = frame["id"].as_i64().unwrap_or(-1);
                if frame["deleted"] == true {
                    tab(&|t| _ = t.heard.insert((id, true)));
                } else if frame["is_read"] == true {
                    tab(&|t| _ = t.heard.insert((id, false)));
                }
            }
            if frame["type"] == "notification" {
                let seq = frame["seq"].as_i64().unwrap_or(-1);
                history.seen[user].lock().unwrap().push(Seen {
                    id: frame["id"].as_i64().unwrap_or(-1),
                    seq,
                    title: frame["title"].as_str().unwrap_or_default().to_owned(),
                    socket,
                    at: chrono::Utc::now(),
                    fired: fired(&frame),
                });
                last_seq = last_seq.max(seq);
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
        }
        if let Some(tab) = history.tabs.lock().unwrap().get_mut(&socket) {
            tab.closed = Some(chrono::Utc::now());
        }
    }
}

/// When a scheduled send's notification says it was claimed and committed.
fn fired(frame: &Value) -> Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
    let time = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str()?)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    Some((
        time(&frame["data"]["scheduled_send"]["fired_at"])?,
        time(&frame["timestamp"])?,
    ))
}

/// The sender: `op-<n>` for every `n ≡ lane (mod lanes)` below `stop`'s end, each to a few
/// users, through any node, tried again through others (with its idempotency key) until one
/// answers 201 (202 when `scheduled`: each then due 1 to 4 s later) or the tries run out.
#[allow(clippy::too_many_arguments)]
pub(super) async fn sender(
    lane: usize,
    lanes: usize,
    scheduled: bool,
    token: String,
    user_ids: Vec<i64>,
    addrs: Addrs,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) {
    let http = http();
    let mut op = lane;
    while !stop.load(Ordering::SeqCst) {
        let to: Vec<usize> = (0..USERS)
            .filter(|u| (op >> u) & 1 == 1 || op % USERS == *u)
            .collect();
        let mut body = json!({
            "user_ids": to.iter().map(|u| user_ids[*u]).collect::<Vec<_>>(),
            "title": format!("op-{op}"),
            "message": "m",
        });
        // One lane pages: its sends escalate while unread.
        if lane == 1 {
            body["notification_type"] = json!("page");
        }
        let send_at = scheduled.then(|| {
            chrono::Utc::now() + chrono::Duration::milliseconds(1000 + (op as i64 * 37) % 3000)
        });
        if let Some(at) = send_at {
            body["send_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            history.not_before.lock().unwrap().insert(op, at);
        }
        let key = format!("op-{op}");
        let mut k = op.wrapping_sub(1);
        let answered = post_through_any(
            &http,
            &addrs,
            &mut k,
            "/api/notifications/send/",
            &token,
            Some(&key),
            &body,
            if scheduled { &[202] } else { &[201] },
        )
        .await;
        if scheduled {
            let at = chrono::Utc::now();
            history.scheduled_at.lock().unwrap().insert(op, at);
        }
        let outcome = match answered {
            Some(_) => Outcome::Acked,
            None => Outcome::Unknown,
        };
        history.sends.lock().unwrap().insert(op, (to, outcome));
        op += lanes;
    }
}

/// Whether the readers mark the notification `id` read: every third one, so that the rest
/// must stay unread.
pub(super) fn marked(id: i64) -> bool {
    id % 3 == 0
}

/// Whether the readers delete the notification `id`: every fifth one (some of them marked
/// read first).
pub(super) fn deleted(id: i64) -> bool {
    id % 5 == 1
}

/// A user's reader: marks the notifications they were sent that [`marked`] names read, and
/// deletes those [`deleted`] names, the oldest first, each through any node, tried again
/// through others until one answers or the tries run out. A delete tried again after its
/// first try went through is answered 404: the notification is gone either way.
pub(super) async fn reader(
    user: usize,
    token: String,
    addrs: Addrs,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) {
    let http = http();
    let mut k = user;
    while !stop.load(Ordering::SeqCst) {
        let next = {
            let reads = history.reads.lock().unwrap();
            let deletes = history.deletes.lock().unwrap();
            let seen = history.seen[user].lock().unwrap();
            seen.iter().map(|s| s.id).find_map(|id| {
                if marked(id) && !reads.contains_key(&(user, id)) {
                    Some((id, false))
                } else if deleted(id) && !deletes.contains_key(&(user, id)) {
                    Some((id, true))
                } else {
                    None
                }
            })
        };
        let Some((id, delete)) = next else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (method, path, answers) = match delete {
            false => (
                reqwest::Method::POST,
                format!("/api/notifications/{id}/mark-as-read/"),
                &[200][..],
            ),
            true => (
                reqwest::Method::DELETE,
                format!("/api/notifications/{id}/"),
                &[204, 404][..],
            ),
        };
        let tried = chrono::Utc::now();
        let answered = call_through_any(
            &http, &addrs, &mut k, method, &path, &token, None, None, answers,
        )
        .await;
        let outcome = match answered {
            Some(_) => {
                let span = (tried, chrono::Utc::now());
                history
                    .changed
                    .lock()
                    .unwrap()
                    .insert((user, id, delete), span);
                Outcome::Acked
            }
            None => Outcome::Unknown,
        };
        match delete {
            false => history.reads.lock().unwrap().insert((user, id), outcome),
            true => history.deletes.lock().unwrap().insert((user, id), outcome),
        };
    }
}

/// The ids of the caller's notifications (only the unread ones if `unread`), as the node at
/// `addr` lists them.
pub(super) async fn listed_on(
    http: &reqwest::Client,
    addr: &str,
    token: &str,
    unread: bool,
) -> Result<BTreeSet<i64>, String> {
    let list = if unread { "unread/" } else { "" };
    let mut ids = BTreeSet::new();
    for page in 1.. {
        let answer = http
            .get(format!(
                "http://{addr}/api/notifications/{list}?page_size=100&page={page}"
            ))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !answer.status().is_success() {
            return Err(format!("{addr}: {}", answer.status()));
        }
        let body: Value = answer.json().await.map_err(|e| e.to_string())?;
        for n in body["results"].as_array().into_iter().flatten() {
            ids.insert(n["id"].as_i64().unwrap_or(-1));
        }
        if body["next"].is_null() {
            break;
        }
    }
    Ok(ids)
}

/// One of a ticket's workers: the `role`'s actions on ticket `id`, over and over, each through
/// any node and tried again through others, under one idempotency key, until a node answers it
/// (200, or a refusal) or the tries run out: each action is taken at most once. The client rejects finished work rather than approve it, so that the ticket
/// never reaches its end.
pub(super) async fn worker(
    id: i64,
    role: Role,
    token: String,
    developer: i64,
    addrs: Addrs,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) {
    let http = http();
    let actions: &[&'static str] = match role {
        Role::Admin => &["open_ticket", "assign"],
        Role::Developer => &["start_work", "finish_work"],
        _ => &["reject"],
    };
    let mut k = id as usize;
    let mut round = 0;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        round += 1;
        let action = &actions[k % actions.len()];
        let body = match *action {
            "assign" => json!({"developer_ids": [developer]}),
            "reject" => json!({"reason": "not yet"}),
            _ => json!({}),
        };
        let answered = post_through_any(
            &http,
            &addrs,
            &mut k,
            &format!("/api/tickets/{id}/{action}/"),
            &token,
            Some(&format!("t{id}-{role:?}-{round}")),
            &body,
            &[200, 409],
        )
        .await;
        {
            let mut actions = history.actions.lock().unwrap();
            let tally = actions.entry((id, *action)).or_default();
            match answered {
                Some(200) => tally.0 += 1,
                Some(_) => {}
                None => tally.1 += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A ticket's history and status as the node at `addr` shows them.
pub(super) async fn ticket_on(
    http: &reqwest::Client,
    addr: &str,
    token: &str,
    id: i64,
) -> Result<TicketView, String> {
    let get = |path: String| async move {
        let answer = http
            .get(format!("http://{addr}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !answer.status().is_success() {
            return Err(format!("{addr}{path}: {}", answer.status()));
        }
        answer.json::<Value>().await.map_err(|e| e.to_string())
    };
    let steps = get(format!("/api/tickets/{id}/history/"))
        .await?
        .as_array()
        .into_iter()
        .flatten()
        // The ticket's changes; escalations and acknowledgements change nothing.
        .filter(|e| e["kind"] == "change")
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let ticket = get(format!("/api/tickets/{id}/")).await?;
    Ok((
        steps,
        ticket["status"].as_str().unwrap_or_default().to_owned(),
    ))
}
