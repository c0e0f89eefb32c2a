//! A history checker under a nemesis: three hub processes on one PostgreSQL database (each
//! through a proxy of its own) and a Redis of the test's own, while a nemesis kills and
//! restarts nodes (`kill -9`), freezes them (SIGSTOP/SIGCONT), cuts a node off the database,
//! cuts the clients off a node (they reach each node through a proxy too), and kills,
//! restarts and freezes Redis, several faults overlapping. The
//! workload sends notifications with idempotency keys through any node (retrying through
//! others when one fails) to a few users, whose clients read them on sockets to any node,
//! reconnecting elsewhere with their `last_seq` when a socket breaks or stalls. Every frame is
//! recorded; once the faults heal, the history is checked:
//!
//! - every acknowledged send reaches each of its recipients, once, under one seq;
//! - a send that was never acknowledged reaches its recipients at most once;
//! - a user receives only what was sent to them;
//! - each user's seqs run 1, 2, 3, … without a gap, and no seq carries two notifications;
//! - on each socket, seqs only go up;
//! - a mark as read that was acknowledged holds, and nothing is read that nobody marked: each
//!   user's readers mark notifications they were sent read through any node, and once healed
//!   every node lists the same unread notifications, those the marks leave;
//! - each ticket's history, worked on by its admin, developer and client at once through any
//!   node, is a walk of the state machine from `NEW`, the same on every node, holding every
//!   action that was answered 200 (and none that was refused), and the ticket's status is its
//!   last step.
//!
//! `TICKETHUB_NEMESIS_FAULTS` sets the number of faults (100 by default), and
//! `TICKETHUB_NEMESIS_SEED` the seed of their choice (printed by each run).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{patience, Backend, Proxy};

mod checks;
use crate::nodes::Cluster;
use checks::*;

/// How many users receive the workload's sends.
const USERS: usize = 4;

/// One frame a client read: the notification's seq, its title, and the socket it came on.
#[derive(Clone, Debug)]
struct Seen {
    id: i64,
    seq: i64,
    title: String,
    socket: usize,
}

/// How a send ended for the sender.
#[derive(Clone, Debug)]
enum Outcome {
    /// Answered 201, by some node.
    Acked,
    /// Never answered 201 (every try failed or timed out): it may or may not have committed.
    Unknown,
}

/// What the workload did and saw.
#[derive(Default)]
struct History {
    /// Per send (`op-<n>`): its recipients' indexes, and how it ended.
    sends: Mutex<BTreeMap<usize, (Vec<usize>, Outcome)>>,
    /// Per user: every notification frame read, in order.
    seen: Vec<Mutex<Vec<Seen>>>,
    /// Per user and notification id: how a mark as read ended.
    reads: Mutex<BTreeMap<(usize, i64), Outcome>>,
    /// Per ticket and action: how many were answered 200, and how many never answered.
    actions: Mutex<BTreeMap<(i64, &'static str), Tally>>,
    /// Sockets opened, in all.
    sockets: AtomicUsize,
}

/// How many of a ticket's actions were answered 200, and how many were never answered.
type Tally = (usize, usize);

/// A ticket as a node shows it: its history's steps (action, status after), and its status.
type TicketView = (Vec<(String, String)>, String);

/// The addresses the workload reaches the nodes at (their client proxies).
type Addrs = Arc<Mutex<Vec<String>>>;

/// The proxies the nemesis cuts: each node's to PostgreSQL, and the clients' to each node.
struct Proxies {
    db: Vec<Proxy>,
    clients: Vec<Proxy>,
}

/// A client whose calls give up after 3 s (a frozen node answers nothing).
fn http() -> reqwest::Client {
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
async fn post_through_any(
    http: &reqwest::Client,
    addrs: &Addrs,
    k: &mut usize,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: &Value,
    answers: &[u16],
) -> Option<u16> {
    for _ in 0..30 {
        *k = k.wrapping_add(1);
        let mut request = http
            .post(format!("http://{}{path}", pick(addrs, *k)))
            .bearer_auth(token)
            .json(body);
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

fn pick(addrs: &Addrs, k: usize) -> String {
    let addrs = addrs.lock().unwrap();
    addrs[k % addrs.len()].clone()
}

/// A user's client: a socket to some node, read until it breaks or stalls, then another to
/// another node with the highest seq read so far, until `stop`.
async fn client(
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
            if frame["type"] == "notification" {
                let seq = frame["seq"].as_i64().unwrap_or(-1);
                history.seen[user].lock().unwrap().push(Seen {
                    id: frame["id"].as_i64().unwrap_or(-1),
                    seq,
                    title: frame["title"].as_str().unwrap_or_default().to_owned(),
                    socket,
                });
                last_seq = last_seq.max(seq);
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
        }
    }
}

/// The sender: `op-<n>` for every `n ≡ lane (mod lanes)` below `stop`'s end, each to a few
/// users, through any node, tried again through others (with its idempotency key) until one
/// answers 201 or the tries run out.
async fn sender(
    lane: usize,
    lanes: usize,
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
        let body = json!({
            "user_ids": to.iter().map(|u| user_ids[*u]).collect::<Vec<_>>(),
            "title": format!("op-{op}"),
            "message": "m",
        });
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
            &[201],
        )
        .await;
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
fn marked(id: i64) -> bool {
    id % 3 == 0
}

/// A user's reader: marks the notifications they were sent that [`marked`] names read, the
/// oldest first, each through any node, tried again through others until one answers 200 or
/// the tries run out.
async fn reader(
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
            let seen = history.seen[user].lock().unwrap();
            seen.iter()
                .map(|s| s.id)
                .find(|id| marked(*id) && !reads.contains_key(&(user, *id)))
        };
        let Some(id) = next else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let answered = post_through_any(
            &http,
            &addrs,
            &mut k,
            &format!("/api/notifications/{id}/mark-as-read/"),
            &token,
            None,
            &json!({}),
            &[200],
        )
        .await;
        let outcome = match answered {
            Some(_) => Outcome::Acked,
            None => Outcome::Unknown,
        };
        history.reads.lock().unwrap().insert((user, id), outcome);
    }
}

/// The ids of the caller's unread notifications, as the node at `addr` lists them.
async fn unread_on(
    http: &reqwest::Client,
    addr: &str,
    token: &str,
) -> Result<BTreeSet<i64>, String> {
    let mut ids = BTreeSet::new();
    for page in 1.. {
        let answer = http
            .get(format!(
                "http://{addr}/api/notifications/unread/?page_size=100&page={page}"
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
async fn worker(
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
async fn ticket_on(
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

/// What the nemesis did to a target, and undoes later.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    KillNode(usize),
    PauseNode(usize),
    CutDatabase(usize),
    CutClients(usize),
    KillRedis,
    FreezeRedis,
}

/// Runs `faults` overlapping faults, then heals everything.
async fn nemesis(
    c: &mut Cluster,
    proxies: &Proxies,
    faults: usize,
    seed: u64,
) -> BTreeMap<&'static str, usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut active: Vec<(Instant, Fault)> = Vec::new();
    let mut done: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut applied = 0;
    loop {
        // Heal what is due (everything once the faults are all applied).
        let now = Instant::now();
        let (mut due, rest): (Vec<_>, Vec<_>) = active
            .into_iter()
            .partition(|(at, _)| *at <= now || applied >= faults);
        active = rest;
        // Redis first: a node does not start without it.
        due.sort_by_key(|(_, f)| !matches!(f, Fault::KillRedis | Fault::FreezeRedis));
        for (_, fault) in due {
            if !heal(c, proxies, fault).await {
                // Tried again shortly, as a supervisor would.
                active.push((Instant::now() + Duration::from_millis(200), fault));
            }
        }
        if applied >= faults {
            if active.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // A new fault on a target no other fault holds, leaving at least one node whole.
        let held: Vec<Fault> = active.iter().map(|(_, f)| *f).collect();
        let nodes_held = held
            .iter()
            .filter(|f| matches!(f, Fault::KillNode(_) | Fault::PauseNode(_)))
            .count();
        let node = rng.random_range(0..c.nodes.len());
        let node_free =
            !held.contains(&Fault::KillNode(node)) && !held.contains(&Fault::PauseNode(node));
        let redis_free = !held.contains(&Fault::KillRedis) && !held.contains(&Fault::FreezeRedis);
        let fault = match rng.random_range(0..6) {
            0 if node_free && nodes_held + 1 < c.nodes.len() => Fault::KillNode(node),
            1 if node_free && nodes_held + 1 < c.nodes.len() => Fault::PauseNode(node),
            2 if !held.contains(&Fault::CutDatabase(node)) => Fault::CutDatabase(node),
            3 if !held.contains(&Fault::CutClients(node)) => Fault::CutClients(node),
            4 if redis_free => Fault::KillRedis,
            5 if redis_free => Fault::FreezeRedis,
            _ => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match fault {
            Fault::KillNode(k) => c.nodes[k].kill().await,
            Fault::PauseNode(k) => c.nodes[k].pause(),
            Fault::CutDatabase(k) => proxies.db[k].down(),
            Fault::CutClients(k) => proxies.clients[k].down(),
            Fault::KillRedis => c.redis.kill().await,
            Fault::FreezeRedis => c.redis.freeze(),
        }
        *done
            .entry(match fault {
                Fault::KillNode(_) => "kill -9 a node",
                Fault::PauseNode(_) => "pause a node",
                Fault::CutDatabase(_) => "cut a node off PostgreSQL",
                Fault::CutClients(_) => "cut the clients off a node",
                Fault::KillRedis => "kill Redis",
                Fault::FreezeRedis => "freeze Redis",
            })
            .or_default() += 1;
        applied += 1;
        let lasts = Duration::from_millis(rng.random_range(200..1500));
        active.push((Instant::now() + lasts, fault));
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
    }
    done
}

/// Undoes a fault; `false` if a killed node did not start again (it does not while its Redis
/// is unreachable), to be tried again.
async fn heal(c: &mut Cluster, proxies: &Proxies, fault: Fault) -> bool {
    match fault {
        Fault::KillNode(k) => {
            if !c.nodes[k].try_restart().await {
                return false;
            }
            // On another port if its own was taken meanwhile.
            proxies.clients[k].retarget(c.nodes[k].addr.clone());
        }
        Fault::PauseNode(k) => c.nodes[k].resume(),
        Fault::CutDatabase(k) => proxies.db[k].up(),
        Fault::CutClients(k) => proxies.clients[k].up(),
        Fault::KillRedis => c.redis.restart().await,
        Fault::FreezeRedis => c.redis.thaw(),
    }
    true
}

async fn acknowledged_sends_arrive_once_in_order_under_a_nemesis() {
    let faults: usize = std::env::var("TICKETHUB_NEMESIS_FAULTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let seed: u64 = std::env::var("TICKETHUB_NEMESIS_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!(
        "nemesis: {faults} faults, seed {seed} (TICKETHUB_NEMESIS_SEED={seed} runs them again)"
    );
    let mut c = Cluster::start(&Backend::postgres(), 3, &["--presence-lease", "3"]).await;
    // Each node reaches PostgreSQL through a proxy of its own, which the nemesis cuts.
    let mut db = Vec::new();
    for node in &mut c.nodes {
        let mut url = reqwest::Url::parse(&c.db.url).unwrap();
        let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let proxy = Proxy::start(upstream).await;
        url.set_port(Some(proxy.port)).unwrap();
        node.set_arg("--database-url", url.as_str());
        node.kill().await;
        node.restart().await;
        db.push(proxy);
    }
    let admin = c.user("boss", Role::Admin).await;
    let mut users: Vec<User> = Vec::new();
    for u in 0..USERS {
        users.push(c.user(&format!("u{u}"), Role::Developer).await);
    }
    // Tickets, worked on by people no client watches (their notifications are not the sends').
    let (carol, dave) = (
        c.user("carol", Role::Client).await,
        c.user("dave", Role::Developer).await,
    );
    let project = c
        .store
        .create_project("OPS", "Operations", &[carol.id, dave.id])
        .await
        .unwrap();
    let mut tickets = Vec::new();
    for t in 0..3 {
        let made = c
            .post(
                0,
                &carol,
                "/api/tickets/",
                json!({"project": project.id.0, "title": format!("t{t}"), "description": "d",
                       "priority": "HIGH", "category": "BUG"}),
                201,
            )
            .await;
        tickets.push(made["id"].as_i64().unwrap());
    }
    // Tokens that outlast a long run (the nodes verify their signature and expiry).
    let mut config = crate::harness::test_config(c.db_url());
    config.access_token_ttl = 24 * 3600;
    let auth = tickethub::auth::Auth::from_config(&config, Some(crate::harness::SECRET)).unwrap();
    let token = |user: &User| auth.issue_access(user).unwrap();
    let mut clients_to = Vec::new();
    for node in &c.nodes {
        clients_to.push(Proxy::start(node.addr.clone()).await);
    }
    let addrs: Addrs = Arc::new(Mutex::new(
        clients_to
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.port))
            .collect(),
    ));
    let proxies = Proxies {
        db,
        clients: clients_to,
    };
    let history = Arc::new(History {
        seen: (0..USERS).map(|_| Mutex::default()).collect(),
        ..History::default()
    });
    let stop_sends = Arc::new(AtomicBool::new(false));
    let stop_clients = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for (u, user) in users.iter().enumerate() {
        clients.push(tokio::spawn(client(
            u,
            token(user),
            addrs.clone(),
            history.clone(),
            stop_clients.clone(),
        )));
    }
    let readers: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(u, user)| {
            tokio::spawn(reader(
                u,
                token(user),
                addrs.clone(),
                history.clone(),
                stop_sends.clone(),
            ))
        })
        .collect();
    let mut workers = Vec::new();
    for id in &tickets {
        for (who, role) in [
            (&admin, Role::Admin),
            (&dave, Role::Developer),
            (&carol, Role::Client),
        ] {
            workers.push(tokio::spawn(worker(
                *id,
                role,
                token(who),
                dave.id.0,
                addrs.clone(),
                history.clone(),
                stop_sends.clone(),
            )));
        }
    }
    let user_ids: Vec<i64> = users.iter().map(|u| u.id.0).collect();
    let senders: Vec<_> = (0..2)
        .map(|lane| {
            tokio::spawn(sender(
                lane,
                2,
                token(&admin),
                user_ids.clone(),
                addrs.clone(),
                history.clone(),
                stop_sends.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    let done = nemesis(&mut c, &proxies, faults, seed).await;
    stop_sends.store(true, Ordering::SeqCst);
    for s in senders.into_iter().chain(readers).chain(workers) {
        s.await.unwrap();
    }
    // Healed: every acknowledged send reaches its recipients, live or by replay.
    let deadline = Instant::now() + patience() * 2;
    while !all_arrived(&history) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_clients.store(true, Ordering::SeqCst);
    for client in clients {
        client.abort();
    }
    let mut anomalies = check(&history);
    // Every node lists each user's unread notifications as the marks leave them.
    let http = reqwest::Client::new();
    let mut unread = Vec::new();
    for user in &users {
        let mut lists = Vec::new();
        for node in 0..c.nodes.len() {
            lists.push(
                unread_on(&http, &pick(&addrs, node), &token(user))
                    .await
                    .unwrap(),
            );
        }
        unread.push(lists);
    }
    anomalies.extend(check_reads(&history, &unread));
    let mut shown = BTreeMap::new();
    for id in &tickets {
        let mut views = Vec::new();
        for node in 0..c.nodes.len() {
            views.push(
                ticket_on(&http, &pick(&addrs, node), &token(&admin), *id)
                    .await
                    .unwrap(),
            );
        }
        shown.insert(*id, views);
    }
    anomalies.extend(check_tickets(&history, &shown));
    let steps: usize = shown.values().map(|v| v[0].0.len()).sum();
    let reads = history.reads.lock().unwrap().clone();
    let reads_acked = reads
        .values()
        .filter(|o| matches!(o, Outcome::Acked))
        .count();
    let sends = history.sends.lock().unwrap().clone();
    let acked = sends
        .values()
        .filter(|(_, o)| matches!(o, Outcome::Acked))
        .count();
    let frames: usize = history.seen.iter().map(|s| s.lock().unwrap().len()).sum();
    eprintln!(
        "nemesis: {faults} faults {done:?} in {:.0?}; {} sends ({acked} acknowledged), {} marks as read ({reads_acked} acknowledged), {steps} ticket steps, {frames} frames on {} sockets; {} anomalies",
        started.elapsed(),
        sends.len(),
        reads.len(),
        history.sockets.load(Ordering::SeqCst),
        anomalies.len()
    );
    assert!(
        anomalies.is_empty(),
        "seed {seed}: {} anomalies:\n{}",
        anomalies.len(),
        anomalies.join("\n")
    );
    assert!(acked > 0, "no send was acknowledged");
}

/// The read checker finds an acknowledged read that did not hold, a read nobody made, and
/// nodes that disagree; an unacknowledged read may have held or not.
fn the_read_checker_finds_lost_and_stray_reads() {
    let history = History {
        seen: vec![Mutex::new(
            [3, 4, 6, 9]
                .iter()
                .enumerate()
                .map(|(i, id)| Seen {
                    id: *id,
                    seq: i as i64 + 1,
                    title: format!("op-{i}"),
                    socket: 0,
                })
                .collect(),
        )],
        ..History::default()
    };
    history.reads.lock().unwrap().extend([
        ((0, 3), Outcome::Acked),
        ((0, 6), Outcome::Acked),
        ((0, 9), Outcome::Unknown),
    ]);
    let holds = BTreeSet::from([4, 9]);
    assert_eq!(
        check_reads(&history, &[vec![holds.clone(), holds.clone()]]),
        Vec::<String>::new()
    );
    let anomalies = check_reads(
        &history,
        &[vec![BTreeSet::from([6]), BTreeSet::from([4, 6])]],
    );
    assert_eq!(
        anomalies,
        [
            "user 0: node 1 and node 0 list other unread notifications: [4]",
            "user 0: notification 4 is read, but nobody marked it",
            "user 0: the acknowledged read of notification 6 was lost",
        ],
    );
}

/// The ticket checker finds a step the state machine refuses, an action answered 200 that the
/// history lacks, one taken more often than it was tried, a status that is not the history's
/// last, and nodes that disagree.
fn the_ticket_checker_finds_bad_walks_and_lost_actions() {
    let history = History::default();
    history.actions.lock().unwrap().extend([
        ((1, "open_ticket"), (1, 0)),
        ((1, "assign"), (1, 1)),
        ((1, "start_work"), (1, 0)),
        ((2, "open_ticket"), (1, 0)),
        ((2, "start_work"), (0, 0)),
    ]);
    let steps = |s: &[(&str, &str)]| -> Vec<(String, String)> {
        s.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let good = steps(&[
        ("create", "NEW"),
        ("open_ticket", "OPEN"),
        ("assign", "ASSIGNED"),
        ("assign", "ASSIGNED"),
        ("start_work", "IN_PROGRESS"),
    ]);
    let view = |s: &Vec<(String, String)>, status: &str| (s.clone(), status.to_owned());
    let fine = BTreeMap::from([(
        1,
        vec![view(&good, "IN_PROGRESS"), view(&good, "IN_PROGRESS")],
    )]);
    assert_eq!(check_tickets(&history, &fine), Vec::<String>::new());
    let bad = steps(&[
        ("create", "NEW"),
        ("open_ticket", "OPEN"),
        ("start_work", "IN_PROGRESS"),
    ]);
    let shown = BTreeMap::from([
        (
            1,
            vec![
                view(&good, "ASSIGNED"),
                view(&good[..4].to_vec(), "ASSIGNED"),
            ],
        ),
        (2, vec![view(&bad, "IN_PROGRESS")]),
    ]);
    assert_eq!(
        check_tickets(&history, &shown),
        [
            "ticket 1: node 1 shows another history than node 0",
            "ticket 1: its status is ASSIGNED, its history ends at IN_PROGRESS",
            "ticket 2: step 2, start_work from OPEN led to IN_PROGRESS, not None",
            "ticket 2: start_work answered 200 0 times and unanswered 0, but taken 1 times",
        ],
    );
    let lost = BTreeMap::from([(1, vec![view(&good[..3].to_vec(), "ASSIGNED")])]);
    assert_eq!(
        check_tickets(&history, &lost),
        ["ticket 1: start_work answered 200 1 times and unanswered 0, but taken 0 times"],
    );
}

crate::trials! {
    both: [],
    tests: [acknowledged_sends_arrive_once_in_order_under_a_nemesis],
    sync: [
        the_read_checker_finds_lost_and_stray_reads,
        the_ticket_checker_finds_bad_walks_and_lost_actions,
    ],
}
