//! The clients: WebSocket sockets held by worker processes (`client-child`, this same
//! executable), spread over several loopback source addresses.
//!
//! A process may open at most 20,000 files on the reference machine, so the driver starts one
//! worker per `--per-process` sockets (15,000 by default). Each socket is bound to one of
//! 127.0.0.2, 127.0.0.3, … before it connects, so that no single source address runs out of
//! ephemeral ports. The driver talks to a worker with one JSON command per line on its stdin;
//! the worker answers on stdout with progress lines (`p <n>`), notification records
//! (`r <user> <seq> <recv µs> <ticket> <type> <title>`) and one JSON line that ends the answer.
//!
//! Every notification a socket receives is recorded with the wall-clock time it arrived, so
//! the driver (another process, same clock) can compute latencies from when it sent.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::ProgressBar;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Sockets one worker process holds at most.
pub const DEFAULT_PER_PROCESS: usize = 15_000;

/// Microseconds since the Unix epoch: the clock the driver and every worker share.
pub fn wall_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// One notification as a socket received it.
#[derive(Clone, Debug)]
pub struct Rec {
    /// The receiving user.
    pub user: i64,
    /// Its seq.
    pub seq: i64,
    /// When it arrived (µs since the epoch).
    pub recv_us: i64,
    /// Its ticket's id, or 0.
    pub ticket: i64,
    /// Its `notification_type`.
    pub kind: String,
    /// Its title.
    pub title: String,
}

/// The source addresses: 127.0.0.2 and up.
pub fn sources(n: usize) -> Vec<Ipv4Addr> {
    (0..n.clamp(1, 250))
        .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i as u8))
        .collect()
}

/// Opens a TCP connection from `source` to `addr`.
async fn dial(
    addr: SocketAddr,
    source: Ipv4Addr,
    recv_buf: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = recv_buf {
        socket.set_recv_buffer_size(size)?;
    }
    // Closed by a reset, which leaves no port in TIME_WAIT: runs one after another otherwise
    // hold tens of thousands of each source address's ports for a minute, and by the fifth
    // run of 10,000 sockets a port is found so slowly that some connects wait a second.
    socket.set_zero_linger()?;
    socket.bind(SocketAddr::new(source.into(), 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

#[derive(Deserialize)]
struct TicketRef {
    id: i64,
}

#[derive(Deserialize)]
struct InFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    seq: Option<i64>,
    #[serde(default)]
    last_seq: Option<i64>,
    #[serde(default)]
    notification_type: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    ticket: Option<TicketRef>,
}

/// What every socket of a worker shares.
struct Shared {
    addr: SocketAddr,
    hub: bool,
    records: Mutex<Vec<Rec>>,
    ended: AtomicU64,
    reconnects: AtomicU64,
    cancel: CancellationToken,
}

impl Shared {
    /// Records a text frame if it is a notification; returns the frame.
    fn on_text(&self, user: i64, text: &str, high: &mut i64) -> Option<InFrame> {
        let frame: InFrame = serde_json::from_str(text).ok()?;
        if frame.kind == "notification" {
            let seq = frame.seq.unwrap_or(0);
            *high = (*high).max(seq);
            self.records.lock().unwrap().push(Rec {
                user,
                seq,
                recv_us: wall_us(),
                ticket: frame.ticket.as_ref().map_or(0, |t| t.id),
                kind: frame.notification_type.clone().unwrap_or_default(),
                title: frame.title.clone().unwrap_or_default(),
            });
        }
        Some(frame)
    }

    /// Connects one socket and reads its greeting: `connection_established`, and on the hub
    /// the replay up to `replay_complete`. Returns the socket and the greeting's `last_seq`.
    async fn open(
        &self,
        source: Ipv4Addr,
        user: i64,
        path: &str,
        high: &mut i64,
    ) -> Result<(Ws, i64), String> {
        let stream = dial(self.addr, source, None)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let url = format!("ws://{}{path}", self.addr);
        let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let mut last_seq = 0;
        loop {
            let text = match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => t,
                Ok(Some(Ok(_))) => continue,
                Ok(other) => return Err(format!("socket ended during the greeting: {other:?}")),
                Err(_) => return Err("no greeting within 60 s".into()),
            };
            let Some(frame) = self.on_text(user, &text, high) else {
                continue;
            };
            match frame.kind.as_str() {
                "connection_established" => {
                    last_seq = frame.last_seq.unwrap_or(0);
                    if !self.hub {
                        return Ok((ws, last_seq));
                    }
                }
                "replay_complete" => return Ok((ws, last_seq)),
                _ => {}
            }
        }
    }

    /// Reads a socket until the worker is told to close; on the hub, a socket that ends is
    /// reopened with `last_seq` (the hub replays what it missed), as the protocol asks.
    async fn hold(
        self: Arc<Self>,
        source: Ipv4Addr,
        user: i64,
        path: String,
        mut ws: Ws,
        mut high: i64,
    ) {
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
                    return;
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        self.on_text(user, &t, &mut high);
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        self.ended.fetch_add(1, Ordering::Relaxed);
                        if !self.hub || self.cancel.is_cancelled() {
                            return;
                        }
                        let resume = format!("{path}&last_seq={high}");
                        let mut reopened = None;
                        for attempt in 0..20u64 {
                            if let Ok((w, _)) = self.open(source, user, &resume, &mut high).await {
                                reopened = Some(w);
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
                        }
                        match reopened {
                            Some(w) => {
                                self.reconnects.fetch_add(1, Ordering::Relaxed);
                                ws = w;
                            }
                            None => return,
                        }
                    }
                }
            }
        }
    }
}

/// Opens a socket that completes the handshake and never reads, with a small receive buffer.
async fn stalled(addr: SocketAddr, source: Ipv4Addr, path: &str) -> std::io::Result<TcpStream> {
    let mut stream = dial(addr, source, Some(4096)).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other("handshake refused"));
    }
    Ok(stream)
}

/// Whether the server has closed a stalled socket: reads what is buffered, and reports `true`
/// at end of stream or on a reset, `false` if the socket stays silent but open.
async fn cut_off(stream: &mut TcpStream) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
    false
}

/// The worker process: holds sockets and answers the driver's commands until stdin closes.
pub async fn client_child(addr: SocketAddr, sources: Vec<Ipv4Addr>, hub: bool) {
    let shared = Arc::new(Shared {
        addr,
        hub,
        records: Mutex::new(Vec::new()),
        ended: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        cancel: CancellationToken::new(),
    });
    let mut stalled_sockets: Vec<TcpStream> = Vec::new();
    let mut held = tokio_util::task::TaskTracker::new();
    let mut next_source = 0usize;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let out = std::io::stdout();
    while let Ok(Some(line)) = stdin.next_line().await {
        let cmd: Value = serde_json::from_str(&line).expect("a JSON command");
        let answer = match cmd["op"].as_str().unwrap_or("") {
            "connect" => {
                let users: Vec<(i64, String)> =
                    serde_json::from_value(cmd["users"].clone()).unwrap();
                let concurrency = cmd["concurrency"].as_u64().unwrap_or(256) as usize;
                let total = users.len();
                let done = Arc::new(AtomicU64::new(0));
                let reporter = {
                    let done = done.clone();
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            println!("p {}", done.load(Ordering::Relaxed));
                        }
                    })
                };
                let jobs = users.into_iter().map(|(user, path)| {
                    let source = sources[next_source % sources.len()];
                    next_source += 1;
                    let shared = shared.clone();
                    let done = done.clone();
                    async move {
                        let started = Instant::now();
                        let mut high = 0;
                        let result = shared.open(source, user, &path, &mut high).await;
                        done.fetch_add(1, Ordering::Relaxed);
                        (
                            user,
                            source,
                            path,
                            high,
                            started.elapsed().as_micros() as u64,
                            result,
                        )
                    }
                });
                let results: Vec<_> = futures::stream::iter(jobs)
                    .buffer_unordered(concurrency)
                    .collect()
                    .await;
                reporter.abort();
                let mut ok = 0;
                let mut errors: Vec<String> = Vec::new();
                let mut latencies = Vec::with_capacity(total);
                let mut last_seqs = Vec::with_capacity(total);
                for (user, source, path, high, us, result) in results {
                    match result {
                        Ok((ws, last_seq)) => {
                            ok += 1;
                            latencies.push(us);
                            last_seqs.push((user, last_seq));
                            held.spawn(shared.clone().hold(
                                source,
                                user,
                                path,
                                ws,
                                high.max(last_seq),
                            ));
                        }
                        Err(e) => {
                            if errors.len() < 5 {
                                errors.push(e);
                            }
                        }
                    }
                }
                json!({"ev": "connected", "ok": ok, "failed": total - ok, "errors": errors,
                       "latencies_us": latencies, "last_seqs": last_seqs})
            }
            "stall" => {
                let users: Vec<(i64, String)> =
                    serde_json::from_value(cmd["users"].clone()).unwrap();
                let total = users.len();
                let opened: Vec<_> = futures::stream::iter(users.into_iter().map(|(_, path)| {
                    let source = sources[next_source % sources.len()];
                    next_source += 1;
                    async move { stalled(addr, source, &path).await }
                }))
                .buffer_unordered(64)
                .collect()
                .await;
                let mut ok = 0;
                for s in opened.into_iter().flatten() {
                    ok += 1;
                    stalled_sockets.push(s);
                }
                json!({"ev": "stalled", "ok": ok, "failed": total - ok})
            }
            "stalled_check" => {
                let cut = futures::future::join_all(stalled_sockets.iter_mut().map(cut_off)).await;
                json!({"ev": "checked", "cut_off": cut.iter().filter(|c| **c).count(), "total": cut.len()})
            }
            "drain" => {
                let records = std::mem::take(&mut *shared.records.lock().unwrap());
                let mut w = std::io::BufWriter::new(out.lock());
                for r in &records {
                    let _ = writeln!(
                        w,
                        "r {} {} {} {} {} {}",
                        r.user,
                        r.seq,
                        r.recv_us,
                        r.ticket,
                        if r.kind.is_empty() { "-" } else { &r.kind },
                        r.title
                    );
                }
                let _ = w.flush();
                json!({"ev": "drained", "count": records.len(),
                       "ended": shared.ended.load(Ordering::Relaxed),
                       "reconnects": shared.reconnects.load(Ordering::Relaxed)})
            }
            "close" => {
                shared.cancel.cancel();
                held.close();
                let _ = tokio::time::timeout(Duration::from_secs(10), held.wait()).await;
                held = tokio_util::task::TaskTracker::new();
                stalled_sockets.clear();
                json!({"ev": "closed"})
            }
            other => json!({"ev": "error", "message": format!("unknown command {other}")}),
        };
        let mut lock = out.lock();
        let _ = writeln!(lock, "{answer}");
        let _ = lock.flush();
        if cmd["op"] == "close" {
            break;
        }
    }
}

/// One worker, as the driver sees it.
struct Worker {
    proc: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pid: u32,
}

impl Worker {
    /// Sends a command; collects records and progress until the answer line.
    async fn request(
        &mut self,
        cmd: &Value,
        progress: Option<&ProgressBar>,
        base: u64,
        records: &mut Vec<Rec>,
    ) -> Value {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .expect("write to a client worker");
        loop {
            let line = self
                .lines
                .next_line()
                .await
                .expect("read from a client worker")
                .expect("a client worker exited");
            if let Some(rest) = line.strip_prefix("r ") {
                let mut parts = rest.splitn(6, ' ');
                let mut num = || {
                    parts
                        .next()
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(0)
                };
                let (user, seq, recv_us, ticket) = (num(), num(), num(), num());
                let kind = parts.next().unwrap_or("").to_owned();
                let title = parts.next().unwrap_or("").to_owned();
                records.push(Rec {
                    user,
                    seq,
                    recv_us,
                    ticket,
                    kind,
                    title,
                });
            } else if let Some(n) = line.strip_prefix("p ") {
                if let (Some(pb), Ok(n)) = (progress, n.parse::<u64>()) {
                    pb.set_position(base + n);
                }
            } else if line.starts_with('{') {
                return serde_json::from_str(&line).expect("a JSON answer");
            }
        }
    }
}

/// What connecting a batch of sockets gave.
#[derive(Debug, Default)]
pub struct Connected {
    /// Sockets open.
    pub ok: usize,
    /// Sockets that failed.
    pub failed: usize,
    /// A few of the errors.
    pub errors: Vec<String>,
    /// Connect-to-greeting time of each socket, in µs.
    pub latencies_us: Vec<u64>,
    /// Each user's `last_seq` from the greeting.
    pub last_seq: HashMap<i64, i64>,
}

/// The driver's handle on its worker processes.
pub struct Pool {
    workers: Vec<Worker>,
    /// Sockets that ended unexpectedly, and were reopened, at the last drain.
    pub ended: u64,
    /// Sockets reopened with `last_seq` after they ended.
    pub reconnects: u64,
}

impl Pool {
    /// Starts enough workers for `sockets` sockets against `addr`.
    pub async fn start(
        addr: SocketAddr,
        hub: bool,
        sockets: usize,
        per_process: usize,
        sources: &[Ipv4Addr],
    ) -> Pool {
        let n = sockets.div_ceil(per_process.max(1)).max(1);
        let list: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let mut workers = Vec::new();
        for _ in 0..n {
            let mut proc = tokio::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "client-child",
                    "--addr",
                    &addr.to_string(),
                    "--from",
                    &list.join(","),
                ])
                .args(hub.then_some("--hub"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start a client worker");
            let pid = proc.id().unwrap();
            let stdin = proc.stdin.take().unwrap();
            let lines = BufReader::new(proc.stdout.take().unwrap()).lines();
            workers.push(Worker {
                proc,
                stdin,
                lines,
                pid,
            });
        }
        Pool {
            workers,
            ended: 0,
            reconnects: 0,
        }
    }

    /// The workers' pids.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.pid).collect()
    }

    /// How many worker processes there are.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Opens one socket per `(user, request path)`, spread evenly over the workers.
    pub async fn connect(
        &mut self,
        users: &[(i64, String)],
        concurrency: usize,
        progress: &ProgressBar,
    ) -> Connected {
        let n = self.workers.len();
        let per_worker_concurrency = concurrency.div_ceil(n).max(1);
        // Each worker reports its own count; the bar shows their sum.
        let bars: Vec<ProgressBar> = (0..n).map(|_| ProgressBar::hidden()).collect();
        let answers = {
            let futures = self.workers.iter_mut().enumerate().map(|(w, worker)| {
                let chunk: Vec<&(i64, String)> = users.iter().skip(w).step_by(n).collect();
                let cmd =
                    json!({"op": "connect", "users": chunk, "concurrency": per_worker_concurrency});
                let bar = bars[w].clone();
                async move {
                    let mut records = Vec::new();
                    worker.request(&cmd, Some(&bar), 0, &mut records).await
                }
            });
            let ticker = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let sum: u64 = bars.iter().map(|b| b.position()).sum();
                    progress.set_position(sum);
                }
            };
            tokio::select! {
                a = futures::future::join_all(futures) => a,
                _ = ticker => unreachable!(),
            }
        };
        let mut out = Connected::default();
        for a in answers {
            out.ok += a["ok"].as_u64().unwrap_or(0) as usize;
            out.failed += a["failed"].as_u64().unwrap_or(0) as usize;
            if let Some(errors) = a["errors"].as_array() {
                out.errors
                    .extend(errors.iter().filter_map(|e| e.as_str().map(str::to_owned)));
            }
            if let Some(l) = a["latencies_us"].as_array() {
                out.latencies_us.extend(l.iter().filter_map(Value::as_u64));
            }
            if let Some(l) = a["last_seqs"].as_array() {
                for pair in l {
                    out.last_seq
                        .insert(pair[0].as_i64().unwrap(), pair[1].as_i64().unwrap());
                }
            }
        }
        progress.set_position(out.ok as u64 + out.failed as u64);
        out
    }

    /// Opens stalled sockets (handshake, then never read) for `(user, request path)`.
    pub async fn stall(&mut self, users: &[(i64, String)]) -> usize {
        let cmd = json!({"op": "stall", "users": users});
        let mut records = Vec::new();
        let a = self.workers[0].request(&cmd, None, 0, &mut records).await;
        a["ok"].as_u64().unwrap_or(0) as usize
    }

    /// How many stalled sockets the server has closed.
    pub async fn stalled_cut_off(&mut self) -> usize {
        let mut records = Vec::new();
        let a = self.workers[0]
            .request(&json!({"op": "stalled_check"}), None, 0, &mut records)
            .await;
        a["cut_off"].as_u64().unwrap_or(0) as usize
    }

    /// Every notification received since the last drain.
    pub async fn drain(&mut self) -> Vec<Rec> {
        let cmd = json!({"op": "drain"});
        let answers = futures::future::join_all(self.workers.iter_mut().map(|w| {
            let cmd = cmd.clone();
            async move {
                let mut records = Vec::new();
                let a = w.request(&cmd, None, 0, &mut records).await;
                (a, records)
            }
        }))
        .await;
        let mut all = Vec::new();
        let (mut ended, mut reconnects) = (0, 0);
        for (a, records) in answers {
            ended += a["ended"].as_u64().unwrap_or(0);
            reconnects += a["reconnects"].as_u64().unwrap_or(0);
            all.extend(records);
        }
        self.ended = ended;
        self.reconnects = reconnects;
        all
    }

    /// Closes every socket and stops the workers.
    pub async fn close(mut self) {
        let cmd = json!({"op": "close"});
        futures::future::join_all(self.workers.iter_mut().map(|w| {
            let cmd = cmd.clone();
            async move {
                let mut records = Vec::new();
                let _ = tokio::time::timeout(
                    Duration::from_secs(20),
                    w.request(&cmd, None, 0, &mut records),
                )
                .await;
            }
        }))
        .await;
        for mut w in self.workers {
            drop(w.stdin);
            if tokio::time::timeout(Duration::from_secs(5), w.proc.wait())
                .await
                .is_err()
            {
                let _ = w.proc.kill().await;
            }
        }
    }
}
