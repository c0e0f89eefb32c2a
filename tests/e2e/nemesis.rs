//! A history checker under a nemesis: three hub processes on one PostgreSQL database (each
//! through a proxy of its own) and a Redis of the test's own (one server, a primary and its
//! replica watched by a Sentinel, or a Cluster of three masters and their replicas), while a
//! nemesis kills and restarts nodes (`kill -9`), freezes them (SIGSTOP/SIGCONT), cuts a node
//! off the database or (on one Redis server) off Redis, cuts the clients off a node (they
//! reach each node through a proxy too),
//! moves a node's wall clock up to a minute ahead or behind, and kills and freezes Redis (on a
//! Sentinel or a Cluster, whichever server is master then, so that a replica takes over),
//! several faults overlapping. The workload sends notifications with idempotency keys through
//! any node (retrying through others when one fails) to a few users, some of them scheduled a
//! few seconds ahead, whose clients read them on sockets to any node, reconnecting elsewhere
//! with their `last_seq` when a socket breaks or stalls. Every frame is recorded; once the
//! faults heal, the history is checked:
//!
//! - every acknowledged send reaches each of its recipients, once, under one seq;
//! - a send that was never acknowledged reaches its recipients at most once;
//! - a scheduled send arrives no earlier than its `send_at`, whatever a node's clock says;
//! - a user receives only what was sent to them;
//! - each user's seqs run 1, 2, 3, … without a gap, and no seq carries two notifications;
//! - on each socket, seqs only go up;
//! - a mark as read or a delete that was acknowledged holds, and nothing is read or gone that
//!   nobody marked or deleted: each user's readers mark and delete notifications they were
//!   sent through any node, and once healed every node lists the same notifications, and the
//!   same unread ones, those the marks and deletes leave;
//! - each ticket's history, worked on by its admin, developer and client at once through any
//!   node, is a walk of the state machine from `NEW`, the same on every node, holding every
//!   action that was answered 200 (and none that was refused), and the ticket's status is its
//!   last step;
//! - the users join and leave a project's presence room on any node throughout; once healed
//!   and everyone left, every node's room is empty, and then hears each user who joins and
//!   leaves on another node.
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

use crate::harness::{eventually_ok, patience, Backend, Proxy};

mod checks;
mod faults;
mod rooms;
mod workload;
use crate::nodes::Cluster;
use checks::*;
use faults::*;
use rooms::*;
use workload::*;

/// How many users receive the workload's sends.
const USERS: usize = 4;

/// The nodes' routing: a page unread after a second tells the admins (once).
const ESCALATION: &str = r#"
[[escalation]]
name = "pages"
events = ["page"]
steps = [{ after = "1s", unless = "read", channels = ["email"], also = ["admins"] }]
"#;

/// One frame a client read: the notification's seq, its title, and the socket it came on.
#[derive(Clone, Debug)]
struct Seen {
    id: i64,
    seq: i64,
    title: String,
    socket: usize,
    /// When it arrived, by the machine's clock.
    at: chrono::DateTime<chrono::Utc>,
    /// A scheduled send's firing as its notification says it (`fired_at`, when a node claimed
    /// it; `created_at`, when its notification committed), to tell a late firing from a late
    /// delivery.
    fired: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
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
    /// Per scheduled send: its `send_at`, which it must not arrive before.
    not_before: Mutex<BTreeMap<usize, chrono::DateTime<chrono::Utc>>>,
    /// Per scheduled send: when the sender stopped trying it (answered, or out of tries). A
    /// send accepted after its `send_at` is due at once: how late it came is counted from the
    /// later of the two.
    scheduled_at: Mutex<BTreeMap<usize, chrono::DateTime<chrono::Utc>>>,
    /// Per user: every notification frame read, in order.
    seen: Vec<Mutex<Vec<Seen>>>,
    /// Per user and notification id: how a mark as read ended.
    reads: Mutex<BTreeMap<(usize, i64), Outcome>>,
    /// Per user and notification id: how a delete ended.
    deletes: Mutex<BTreeMap<(usize, i64), Outcome>>,
    /// Per ticket and action: how many were answered 200, and how many never answered.
    actions: Mutex<BTreeMap<(i64, &'static str), Tally>>,
    /// Per user, notification and change (`true`: deleted, `false`: read): when its first try
    /// went out and when it was answered.
    changed: Mutex<BTreeMap<(usize, i64, bool), Span>>,
    /// Per socket of a client (a tab): what it heard of the inbox changes.
    tabs: Mutex<BTreeMap<usize, Tab>>,
    /// Sockets opened, in all.
    sockets: AtomicUsize,
    /// Presence sockets opened, in all.
    joins: AtomicUsize,
}

/// From when to when, by the machine's clock.
type Span = (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>);

/// One socket of a user's client, as a tab would show the inbox: when the hub said it was
/// connected, when the client left it (`None`: still open), and the changes it heard
/// (`notification_updated`: the notification's id, and whether it was deleted or read).
#[derive(Clone, Debug)]
struct Tab {
    user: usize,
    opened: chrono::DateTime<chrono::Utc>,
    closed: Option<chrono::DateTime<chrono::Utc>>,
    heard: BTreeSet<(i64, bool)>,
}

/// How many of a ticket's actions were answered 200, and how many were never answered.
type Tally = (usize, usize);

/// A ticket as a node shows it: its history's steps (action, status after), and its status.
type TicketView = (Vec<(String, String)>, String);

/// The addresses the workload reaches the nodes at (their client proxies).
type Addrs = Arc<Mutex<Vec<String>>>;

/// The proxies the nemesis cuts: each node's to PostgreSQL and (on one Redis server) to Redis,
/// and the clients' to each node.
struct Proxies {
    db: Vec<Proxy>,
    redis: Vec<Proxy>,
    clients: Vec<Proxy>,
}

async fn acknowledged_sends_arrive_once_in_order_under_a_nemesis() {
    under_a_nemesis(Topology::Single).await
}

async fn acknowledged_sends_arrive_once_in_order_under_a_nemesis_on_a_redis_sentinel() {
    under_a_nemesis(Topology::Sentinel).await
}

async fn acknowledged_sends_arrive_once_in_order_under_a_nemesis_on_a_redis_cluster() {
    under_a_nemesis(Topology::Cluster).await
}

async fn under_a_nemesis(topology: Topology) {
    let faults: usize = std::env::var("TICKETHUB_NEMESIS_FAULTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let seed: u64 = std::env::var("TICKETHUB_NEMESIS_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!(
        "nemesis on {topology:?}: {faults} faults, seed {seed} (TICKETHUB_NEMESIS_SEED={seed} runs them again)"
    );
    // Pages (one sender's lane) escalate to the admins while unread.
    let routing = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(routing.path(), ESCALATION).unwrap();
    let routing = routing.path().display().to_string();
    let mut c = topology
        .start(
            3,
            // Leases short enough that what a killed node held is taken over within the
            // wait for the last arrivals.
            &[
                "--presence-lease",
                "3",
                "--presence-grace-ms",
                "300",
                "--escalation-lease",
                "5",
                "--escalation-poll-ms",
                "200",
                // Inbox changes lost without a sign of a gap are told within seconds, well
                // inside the tabs' check.
                "--bus-reconcile-interval",
                "5",
                "--routing",
                &routing,
            ],
        )
        .await;
    // Each node reaches PostgreSQL through a proxy of its own, which the nemesis cuts.
    // On one Redis server, each node reaches it through a proxy of its own too (a Sentinel
    // and a Cluster hand out their servers' own addresses).
    let (mut db, mut redis) = (Vec::new(), Vec::new());
    let redis_port = c.redis.port;
    for node in &mut c.nodes {
        let mut url = reqwest::Url::parse(&c.db.url).unwrap();
        let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let proxy = Proxy::start(upstream).await;
        url.set_port(Some(proxy.port)).unwrap();
        node.set_arg("--database-url", url.as_str());
        db.push(proxy);
        if topology == Topology::Single {
            let proxy = Proxy::start(format!("127.0.0.1:{redis_port}")).await;
            node.set_arg("--redis-url", &format!("redis://127.0.0.1:{}", proxy.port));
            redis.push(proxy);
        }
        node.skewable();
        node.kill().await;
        node.restart().await;
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
    // A room the users join and leave on any node (no tickets: its members hear only the sends).
    let mut members: Vec<_> = users.iter().map(|u| u.id).collect();
    members.push(carol.id);
    let room = c
        .store
        .create_project("ROOM", "Room", &members)
        .await
        .unwrap()
        .id
        .0;
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
    let auth = tickethub::auth::Auth::from_config(&config, Some(&c.secret)).unwrap();
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
        redis,
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
    let roomers: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(u, user)| {
            tokio::spawn(roomer(
                u,
                token(user),
                room,
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
    // Two lanes send at once, the third schedules its sends.
    let senders: Vec<_> = (0..3)
        .map(|lane| {
            tokio::spawn(sender(
                lane,
                3,
                lane == 2,
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
    redis_healed(&c).await;
    stop_sends.store(true, Ordering::SeqCst);
    for s in senders
        .into_iter()
        .chain(readers)
        .chain(workers)
        .chain(roomers)
    {
        s.await.unwrap();
    }
    // Healed: every acknowledged send reaches its recipients, live or by replay.
    // Lateness is not loss: the wait is long (a scheduled send whose claim a dying node held
    // fires once the claim runs out), and how late the scheduled sends came is printed.
    let deadline = Instant::now() + patience() * 4;
    while !all_arrived(&history) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every open tab hears the last changes of its inbox too (or the wait runs out).
    let forever = chrono::Utc::now() + chrono::TimeDelta::days(1);
    let deadline = Instant::now() + HEARD_WITHIN.to_std().unwrap();
    while !check_tabs(&history, forever).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tabs_checked = chrono::Utc::now();
    stop_clients.store(true, Ordering::SeqCst);
    for client in clients {
        client.abort();
    }
    let mut anomalies = check(&history);
    let tab_misses = check_tabs(&history, tabs_checked);
    anomalies.extend(tab_misses.iter().cloned());
    // Inbox changes a node's sockets missed live and were told from the database, by why they
    // were read: after a resync, when the node began to hear the user (both expected), or at a
    // periodic pass: messages lost without a sign of a gap (counted since each node's last
    // start). A user actor counts a periodic pass's heals once a resync has had the time to
    // tell them (or when it stops): so the counts are read once every socket is gone.
    eventually_ok("the nodes have no socket left", || async {
        let mut open = 0.0;
        for node in 0..c.nodes.len() {
            open += c.counter(node, "tickethub_connections_open").await;
        }
        if open > 0.0 {
            return Err(format!("{open} sockets open"));
        }
        Ok(())
    })
    .await;
    let mut late = Vec::new();
    for after in ["resync", "heard", "periodic"] {
        let mut count = 0.0;
        for node in 0..c.nodes.len() {
            let label = format!("after=\"{after}\"");
            count += c
                .counter_with(node, "tickethub_inbox_changes_healed_total", &[&label])
                .await;
        }
        late.push(format!("{count} after a {after}"));
    }
    let healed = late.join(", ");
    // Every node lists each user's notifications, and the unread ones, as the marks and the
    // deletes leave them.
    let http = reqwest::Client::new();
    let (mut unread, mut listed) = (Vec::new(), Vec::new());
    for user in &users {
        let (mut unread_lists, mut lists) = (Vec::new(), Vec::new());
        for node in 0..c.nodes.len() {
            let (addr, token) = (pick(&addrs, node), token(user));
            // A node just healed may still refuse for a moment (503 while its pool refills).
            for (unread, into) in [(true, &mut unread_lists), (false, &mut lists)] {
                let listed = eventually_ok("a node lists the notifications", || {
                    listed_on(&http, &addr, &token, unread)
                });
                into.push(listed.await);
            }
        }
        unread.push(unread_lists);
        listed.push(lists);
    }
    anomalies.extend(check_reads(&history, &unread));
    anomalies.extend(check_deletes(&history, &listed));
    let mut shown = BTreeMap::new();
    for id in &tickets {
        let mut views = Vec::new();
        for node in 0..c.nodes.len() {
            let (addr, token) = (pick(&addrs, node), token(&admin));
            let view = eventually_ok("a node shows the ticket", || {
                ticket_on(&http, &addr, &token, *id)
            });
            views.push(view.await);
        }
        shown.insert(*id, views);
    }
    anomalies.extend(check_tickets(&history, &shown));
    let (found, (fired, cancelled)) = check_escalations(&c.db.url, &history).await;
    anomalies.extend(found);
    let joiners: Vec<_> = users[..2].iter().map(|u| (token(u), u.id.0)).collect();
    anomalies.extend(
        check_rooms(
            &addrs,
            c.nodes.len(),
            room,
            (&token(&carol), carol.id.0),
            &joiners,
        )
        .await,
    );
    let steps: usize = shown.values().map(|v| v[0].0.len()).sum();
    let deletes = history.deletes.lock().unwrap().len();
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
    let (latest, latest_how) = latest_scheduled(&history);
    eprintln!(
        "nemesis on {topology:?}: {faults} faults {done:?} in {:.0?}; {} sends ({acked} acknowledged), {} marks as read ({reads_acked} acknowledged), {deletes} deletes, {steps} ticket steps, {fired} escalation steps fired and {cancelled} cancelled, {frames} frames on {} sockets, {} room joins; scheduled sends at most {latest:.1?} late ({latest_how}); {} tab misses, inbox changes missed live and told late: {healed}; {} anomalies",
        started.elapsed(),
        sends.len(),
        reads.len(),
        history.sockets.load(Ordering::SeqCst),
        history.joins.load(Ordering::SeqCst),
        tab_misses.len(),
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

/// A history of one user who read the notifications `ids`, as `op-0`, `op-1`, … under seqs 1,
/// 2, ….
fn one_user_saw(ids: &[i64]) -> History {
    History {
        seen: vec![Mutex::new(
            ids.iter()
                .enumerate()
                .map(|(i, id)| Seen {
                    id: *id,
                    seq: i as i64 + 1,
                    title: format!("op-{i}"),
                    socket: 0,
                    at: chrono::Utc::now(),
                    fired: None,
                })
                .collect(),
        )],
        ..History::default()
    }
}

/// The read checker finds an acknowledged read that did not hold, a read nobody made, and
/// nodes that disagree; an unacknowledged read may have held or not.
fn the_read_checker_finds_lost_and_stray_reads() {
    let history = one_user_saw(&[3, 4, 6, 9]);
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

/// The checker finds a scheduled send that arrived before its `send_at`, and not one that
/// arrived after it.
fn the_checker_finds_a_scheduled_send_that_came_early() {
    let due = chrono::Utc::now();
    let seen = |op: usize, seq: i64, early: i64| Seen {
        id: seq,
        seq,
        title: format!("op-{op}"),
        socket: 0,
        at: due - chrono::Duration::milliseconds(early),
        fired: None,
    };
    let history = History {
        seen: vec![Mutex::new(vec![
            seen(0, 1, 0),
            seen(1, 2, 250),
            seen(2, 3, -5),
        ])],
        ..History::default()
    };
    for op in 0..3 {
        history
            .sends
            .lock()
            .unwrap()
            .insert(op, (vec![0], Outcome::Acked));
        history.not_before.lock().unwrap().insert(op, due);
    }
    assert_eq!(
        check(&history),
        ["user 0: op-1 arrived 250 ms before its send_at"]
    );
}

/// The tab checker finds a tab that stayed open long past a change of its inbox and never
/// heard of it; a tab that closed soon after the change, or opened after it began, is left
/// alone.
fn the_tab_checker_finds_a_tab_that_missed_a_change() {
    let t0 = chrono::Utc::now();
    let s = chrono::TimeDelta::seconds;
    let tab = |opened, closed, heard: &[(i64, bool)]| Tab {
        user: 0,
        opened,
        closed,
        heard: heard.iter().copied().collect(),
    };
    let history = History::default();
    {
        let mut tabs = history.tabs.lock().unwrap();
        // Open all along: heard the read, not the delete.
        tabs.insert(0, tab(t0, None, &[(1, false)]));
        // Closed a second after the changes were answered.
        tabs.insert(1, tab(t0, Some(t0 + s(12)), &[]));
        // Opened after the changes were first tried.
        tabs.insert(2, tab(t0 + s(11), None, &[]));
        // Heard both.
        tabs.insert(3, tab(t0, Some(t0 + s(60)), &[(1, false), (2, true)]));
        // Another user's.
        tabs.insert(
            4,
            Tab {
                user: 1,
                ..tab(t0, None, &[])
            },
        );
    }
    for change in [(0, 1, false), (0, 2, true)] {
        let span = (t0 + s(10), t0 + s(11));
        history.changed.lock().unwrap().insert(change, span);
    }
    let anomalies = check_tabs(&history, t0 + s(60));
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert!(
        anomalies[0].starts_with("user 0: socket 0 ")
            && anomalies[0].contains("never heard that notification 2 was deleted"),
        "{anomalies:?}"
    );
    // Still open, but the change too recent to count yet.
    assert!(check_tabs(&history, t0 + s(30)).is_empty());
    // A notification read, then deleted: a tab told only of the deletion (as a resync tells
    // it) heard enough; one told of neither did not.
    let history = History::default();
    history
        .tabs
        .lock()
        .unwrap()
        .extend([(0, tab(t0, None, &[(1, true)])), (1, tab(t0, None, &[]))]);
    for change in [(0, 1, false), (0, 1, true)] {
        let span = (t0 + s(10), t0 + s(11));
        history.changed.lock().unwrap().insert(change, span);
    }
    let anomalies = check_tabs(&history, t0 + s(60));
    assert_eq!(anomalies.len(), 2, "{anomalies:?}");
    assert!(
        anomalies.iter().all(|a| a.starts_with("user 0: socket 1 ")),
        "{anomalies:?}"
    );
}

/// The delete checker finds an acknowledged delete that did not hold, a notification gone that
/// nobody deleted, and nodes that disagree; an unacknowledged delete may have held or not,
/// and the read checker leaves a notification that may be gone alone.
fn the_delete_checker_finds_lost_and_stray_deletes() {
    let history = one_user_saw(&[1, 2, 6, 11]);
    history
        .deletes
        .lock()
        .unwrap()
        .extend([((0, 1), Outcome::Acked), ((0, 11), Outcome::Unknown)]);
    history.reads.lock().unwrap().insert((0, 6), Outcome::Acked);
    let holds = BTreeSet::from([2, 6]);
    assert_eq!(
        check_deletes(&history, &[vec![holds.clone(), holds.clone()]]),
        Vec::<String>::new()
    );
    assert_eq!(
        check_reads(&history, &[vec![BTreeSet::from([2]), BTreeSet::from([2])]]),
        Vec::<String>::new()
    );
    let anomalies = check_deletes(
        &history,
        &[vec![BTreeSet::from([1, 11]), BTreeSet::from([1, 2, 11])]],
    );
    assert_eq!(
        anomalies,
        [
            "user 0: node 1 and node 0 list other notifications: [2]",
            "user 0: the acknowledged delete of notification 1 did not hold",
            "user 0: notification 2 is gone, but nobody deleted it",
            "user 0: notification 6 is gone, but nobody deleted it",
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

/// The room checker finds nodes that do not hear each other: two nodes on two Redis servers
/// (as if the channel of a room were subscribed where nobody publishes).
async fn the_room_checker_finds_nodes_that_do_not_hear_each_other() {
    let mut c = Cluster::start(
        &Backend::postgres(),
        2,
        &["--presence-lease", "3", "--presence-grace-ms", "300"],
    )
    .await;
    let apart = crate::nodes::RedisServer::start().await;
    c.nodes[1].set_arg("--redis-url", &apart.url());
    c.nodes[1].kill().await;
    c.nodes[1].restart().await;
    let watcher = c.user("carol", Role::Client).await;
    let joiner = c.user("u0", Role::Developer).await;
    let room = c
        .store
        .create_project("ROOM", "Room", &[watcher.id, joiner.id])
        .await
        .unwrap()
        .id
        .0;
    let addrs: Addrs = Arc::new(Mutex::new(c.nodes.iter().map(|n| n.addr.clone()).collect()));
    let anomalies = check_rooms(
        &addrs,
        2,
        room,
        (&c.token(&watcher), watcher.id.0),
        &[(c.token(&joiner), joiner.id.0)],
    )
    .await;
    // The joiner joins on node 1: node 0 hears neither the join nor the leave.
    let id = joiner.id.0;
    assert_eq!(
        anomalies,
        [
            format!("room: the watcher on node 0 did not hear user {id} join on node 1"),
            format!("room: the watcher on node 0 did not hear user {id} leave node 1"),
        ]
    );
}

crate::trials! {
    both: [],
    tests: [
        acknowledged_sends_arrive_once_in_order_under_a_nemesis,
        acknowledged_sends_arrive_once_in_order_under_a_nemesis_on_a_redis_sentinel,
        acknowledged_sends_arrive_once_in_order_under_a_nemesis_on_a_redis_cluster,
        the_room_checker_finds_nodes_that_do_not_hear_each_other,
    ],
    sync: [
        the_read_checker_finds_lost_and_stray_reads,
        the_checker_finds_a_scheduled_send_that_came_early,
        the_tab_checker_finds_a_tab_that_missed_a_change,
        the_delete_checker_finds_lost_and_stray_deletes,
        the_ticket_checker_finds_bad_walks_and_lost_actions,
    ],
}
