//! The nemesis's rooms: each user joins a project's presence room on any node and leaves it,
//! over and over, while the faults go on. Once healed, every node's room must settle on who is
//! there (nobody), and then hear, on every node, who joins and leaves on any other: a room
//! opened again after Redis failed over must still be heard across the nodes.

use super::*;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A user in the room: a presence socket to some node, held for a while (or until it breaks),
/// closed, and another to another node, until `stop`; then none.
pub(super) async fn roomer(
    user: usize,
    token: String,
    project: i64,
    addrs: Addrs,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(user as u64);
    let mut attempt = user;
    while !stop.load(Ordering::SeqCst) {
        attempt += 1;
        let Ok((mut ws, _)) = join(&pick(&addrs, attempt), project, &token).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        history.joins.fetch_add(1, Ordering::SeqCst);
        let until = Instant::now() + Duration::from_millis(rng.random_range(100..2000));
        while !stop.load(Ordering::SeqCst) {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, ws.next()).await {
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..500))).await;
    }
}

/// A presence socket of `project`'s room on the node at `addr`, and the ids of the users its
/// `presence_state` names.
async fn join(addr: &str, project: i64, token: &str) -> Result<(Socket, BTreeSet<i64>), String> {
    let url = format!("ws://{addr}/ws/projects/{project}/presence/?token={token}");
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| format!("{addr}: no handshake in 2 s"))?
    .map_err(|e| format!("{addr}: {e}"))?;
    let frame = next_frame(&mut ws, Duration::from_secs(2))
        .await
        .ok_or_else(|| format!("{addr}: no presence_state"))?;
    if frame["type"] != "presence_state" {
        return Err(format!("{addr}: {frame} before presence_state"));
    }
    let ids = frame["users"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| u["user_id"].as_i64().unwrap_or(-1))
        .collect();
    Ok((ws, ids))
}

/// The next JSON frame within `limit`, if any.
async fn next_frame(ws: &mut Socket, limit: Duration) -> Option<Value> {
    let until = Instant::now() + limit;
    loop {
        let left = until.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                return Some(serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Ok(Some(Ok(_))) => {}
            _ => return None,
        }
    }
}

/// Waits on `ws` for `user_status` `action` of `user` within `limit`.
async fn hears(ws: &mut Socket, action: &str, user: i64, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match next_frame(ws, left).await {
            Some(f) if f["type"] == "user_status" && f["action"] == action => {
                if f["user_id"].as_i64() == Some(user) {
                    return true;
                }
            }
            Some(_) => {}
            None => return false,
        }
    }
    false
}

/// The room's anomalies once healed and everyone left: `watcher` (token, id) looks on each
/// node, and `joiners` join and leave. Each node's room must settle on the watcher alone (the
/// users of a node killed meanwhile are forgotten when its lease lapses), and then every
/// node's watcher must hear each joiner join and leave on another node.
pub(super) async fn check_rooms(
    addrs: &Addrs,
    nodes: usize,
    project: i64,
    watcher: (&str, i64),
    joiners: &[(String, i64)],
) -> Vec<String> {
    let mut anomalies = Vec::new();
    let alone = BTreeSet::from([watcher.1]);
    let mut watchers = Vec::new();
    for node in 0..nodes {
        let addr = pick(addrs, node);
        let deadline = Instant::now() + patience() * 2;
        let mut last = Err("never joined".to_owned());
        while Instant::now() < deadline {
            last = join(&addr, project, watcher.0).await;
            match &last {
                Ok((_, ids)) if *ids == alone => break,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        match last {
            Ok((ws, ids)) if ids == alone => watchers.push((node, ws)),
            Ok((_, ids)) => anomalies.push(format!(
                "room: node {node} still shows {ids:?} present once everyone left"
            )),
            Err(e) => anomalies.push(format!("room: node {node} could not be joined: {e}")),
        }
    }
    for (j, (token, id)) in joiners.iter().enumerate() {
        let at = (j + 1) % nodes;
        let ws = match join(&pick(addrs, at), project, token).await {
            Ok((ws, _)) => ws,
            Err(e) => {
                anomalies.push(format!("room: user {id} could not join: {e}"));
                continue;
            }
        };
        for (node, watching) in &mut watchers {
            if !hears(watching, "joined", *id, patience()).await {
                anomalies.push(format!(
                    "room: the watcher on node {node} did not hear user {id} join on node {at}"
                ));
            }
        }
        drop(ws);
        for (node, watching) in &mut watchers {
            if !hears(watching, "left", *id, patience()).await {
                anomalies.push(format!(
                    "room: the watcher on node {node} did not hear user {id} leave node {at}"
                ));
            }
        }
    }
    anomalies
}
