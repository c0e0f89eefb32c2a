//! Test peers on random ports: a real SMTP server (nodemailer's `smtp-server`, in a Node
//! process), and in this process a WhatsApp Cloud API stand-in and a webhook receiver.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::harness::patience;

mod https;
pub use https::*;

/// One email the SMTP server accepted.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
    /// The user the client authenticated as (`AUTH`), if any.
    pub user: Option<String>,
    /// Whether the message came over TLS (`STARTTLS`).
    pub secure: bool,
}

impl Mail {
    /// The decoded text of the message (quoted-printable soft breaks joined).
    pub fn text(&self) -> String {
        self.data
            .replace("=\r\n", "")
            .replace("=3D", "=")
            .replace("=E2=80=A6", "…")
    }

    /// The `Subject:` header.
    pub fn subject(&self) -> String {
        self.data
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned()
    }
}

/// A real SMTP server, nodemailer's `smtp-server` (npm), in a Node process this test owns
/// (`tests/peers/smtp.mjs`): it records what it accepts, refuses recipients at
/// `@invalid.test` with 550, and can be switched off (421 to every connection).
#[derive(Clone)]
pub struct Smtp {
    pub addr: SocketAddr,
    inner: Arc<SmtpInner>,
}

struct SmtpInner {
    mails: Mutex<Vec<Mail>>,
    arrived: Notify,
    acks: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
    stdin: tokio::sync::Mutex<tokio::process::ChildStdin>,
    _child: tokio::process::Child,
    tls: Option<SmtpTls>,
}

/// The certificates of a server started with [`Smtp::start_secure`].
pub struct SmtpTls {
    _dir: tempfile::TempDir,
    /// The PEM file of the certificate authority that signed the server's certificate.
    pub ca_file: std::path::PathBuf,
    pub user: String,
    pub pass: String,
}

impl Smtp {
    /// Starts a server without TLS or AUTH.
    pub async fn start() -> Smtp {
        Self::spawn(None).await
    }

    /// Starts a server that offers STARTTLS with a certificate for `localhost` signed by a
    /// fresh test CA, and requires `AUTH` (over TLS only) as `user`/`pass`.
    pub async fn start_secure(user: &str, pass: &str) -> Smtp {
        let dir = tempfile::tempdir().unwrap();
        // An authority of its own: only the hub told of it (`--smtp-ca-file`) trusts it.
        let ca = crate::harness::TestCa::new();
        let (cert, key) = ca.issue();
        let ca_file = dir.path().join("ca.pem");
        std::fs::copy(&ca.ca_file, &ca_file).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        Self::spawn(Some(SmtpTls {
            _dir: dir,
            ca_file,
            user: user.to_owned(),
            pass: pass.to_owned(),
        }))
        .await
    }

    async fn spawn(tls: Option<SmtpTls>) -> Smtp {
        crate::harness::require_node();
        crate::harness::npm_packages();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut command = tokio::process::Command::new("node");
        command.arg(root.join("tests/peers/smtp.mjs"));
        if let Some(tls) = &tls {
            let dir = tls.ca_file.parent().unwrap();
            command
                .arg("--tls-key")
                .arg(dir.join("key.pem"))
                .arg("--tls-cert")
                .arg(dir.join("cert.pem"))
                .args(["--user", &tls.user, "--pass", &tls.pass]);
        }
        let mut child = command
            .current_dir(root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts the SMTP peer");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(patience(), lines.next_line())
            .await
            .expect("the SMTP peer starts")
            .unwrap()
            .expect("the SMTP peer prints its port");
        let port: u16 = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP peer said {first:?}"));
        let (ack_tx, ack_rx) = tokio::sync::mpsc::unbounded_channel();
        let inner = Arc::new(SmtpInner {
            mails: Mutex::default(),
            arrived: Notify::new(),
            acks: Mutex::new(Some(ack_rx)),
            stdin: tokio::sync::Mutex::new(stdin),
            _child: child,
            tls,
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let Some(inner) = weak.upgrade() else { return };
                if let Some(ack) = line.strip_prefix("ok ") {
                    let _ = ack_tx.send(ack.to_owned());
                    continue;
                }
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("the SMTP peer printed {line:?}: {e}"));
                inner.mails.lock().unwrap().push(Mail {
                    from: v["from"].as_str().unwrap_or_default().to_owned(),
                    to: v["to"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| t.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    data: v["data"].as_str().unwrap_or_default().to_owned(),
                    user: v["user"].as_str().map(str::to_owned),
                    secure: v["secure"] == true,
                });
                inner.arrived.notify_waiters();
            }
        });
        Smtp {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            inner,
        }
    }

    /// The URL to give the hub: plain SMTP, or for a secure server
    /// `smtp://user:pass@localhost:PORT?tls=required` (give the hub [`Smtp::ca_file`] too).
    pub fn url(&self) -> String {
        match &self.inner.tls {
            None => format!("smtp://{}", self.addr),
            Some(tls) => format!(
                "smtp://{}:{}@localhost:{}?tls=required",
                tls.user,
                tls.pass,
                self.addr.port()
            ),
        }
    }

    /// The CA that signed a secure server's certificate.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.inner
            .tls
            .as_ref()
            .expect("a secure server")
            .ca_file
            .clone()
    }

    /// While down, the server answers `421` to every new connection. Returns once the server
    /// has taken the switch.
    pub async fn set_down(&self, down: bool) {
        let word = if down { "down" } else { "up" };
        let mut acks = self
            .inner
            .acks
            .lock()
            .unwrap()
            .take()
            .expect("one switch at a time");
        {
            let mut stdin = self.inner.stdin.lock().await;
            stdin
                .write_all(format!("{word}\n").as_bytes())
                .await
                .unwrap();
            stdin.flush().await.unwrap();
        }
        let got = tokio::time::timeout(patience(), acks.recv())
            .await
            .expect("the SMTP peer answers");
        assert_eq!(got.as_deref(), Some(word));
        *self.inner.acks.lock().unwrap() = Some(acks);
    }

    /// Every mail so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.inner.mails.lock().unwrap().clone()
    }

    /// Waits until at least `n` mails arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        tokio::time::timeout(patience(), async {
            loop {
                let notified = self.inner.arrived.notified();
                if self.inner.mails.lock().unwrap().len() >= n {
                    return self.mails();
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} mails did not arrive; got {:?}", self.mails().len()))
    }
}

/// What the WhatsApp stand-in answers next.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This status and body.
    Status(u16, Value),
    /// Answer only after this long (longer than the hub's timeout: a timeout).
    Hang(Duration),
    /// This status, these headers, and an empty body (a redirect, a `Retry-After`).
    Headers(u16, Vec<(&'static str, String)>),
    /// 429 with `Retry-After` as an HTTP date this long after the answer.
    RetryAt(Duration),
    /// Hold the answer (then 200) until the test opens the gate: the request is in flight for
    /// exactly as long as the test needs, and [`Http::wait_for`] says when it arrived.
    Hold(Gate),
}

/// A gate a held request waits at until the test opens it.
#[derive(Clone, Debug, Default)]
pub struct Gate(Arc<GateInner>);

#[derive(Debug, Default)]
struct GateInner {
    open: std::sync::atomic::AtomicBool,
    opened: Notify,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Lets every request held at the gate (and any later one) through.
    pub fn open(&self) {
        self.0.open.store(true, std::sync::atomic::Ordering::SeqCst);
        self.0.opened.notify_waiters();
    }

    /// Waits until the gate is open.
    pub async fn passed(&self) {
        loop {
            let opened = self.0.opened.notified();
            if self.0.open.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            opened.await;
        }
    }
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct Request {
    /// When it arrived.
    pub at: std::time::Instant,
    pub method: axum::http::Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: String,
}

/// The requests a stand-in received, and a way to wait for them.
#[derive(Clone, Default)]
pub struct Recorder {
    requests: Arc<Mutex<Vec<Request>>>,
    arrived: Arc<Notify>,
}

impl Recorder {
    /// Keeps a request and wakes whoever waits.
    pub fn record(&self, request: Request) {
        self.requests.lock().unwrap().push(request);
        self.arrived.notify_waiters();
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Request> {
        tokio::time::timeout(patience(), async {
            loop {
                let notified = self.arrived.notified();
                if self.requests.lock().unwrap().len() >= n {
                    return self.requests();
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} requests did not arrive; got {}", self.requests().len()))
    }
}

/// A stand-in HTTP server: answers from a script (then 200), and records requests of any
/// method.
#[derive(Clone)]
pub struct Http {
    pub addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Reply>>>,
    recorder: Recorder,
}

impl Http {
    /// Starts the server; unscripted requests get 200 with a WhatsApp-like message id.
    pub async fn start() -> Http {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = Http {
            addr: listener.local_addr().unwrap(),
            script: Arc::default(),
            recorder: Recorder::default(),
        };
        let app = Router::new().fallback(any(handle)).with_state(http.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        http
    }

    /// Queues the next replies.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.recorder.requests()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Request> {
        self.recorder.wait_for(n).await
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn handle(
    State(http): State<Http>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let reply = http.script.lock().unwrap().pop_front();
    http.recorder.record(Request {
        at: std::time::Instant::now(),
        method,
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        raw: body,
    });
    match reply {
        None => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"messages": [{"id": "wamid.TEST"}]})),
        )
            .into_response(),
        Some(Reply::Status(code, body)) => {
            let mut res = (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response();
            if code == 429 {
                res.headers_mut()
                    .insert("retry-after", "1".parse().unwrap());
            }
            res
        }
        Some(Reply::Headers(code, headers)) => {
            let mut res = StatusCode::from_u16(code).unwrap().into_response();
            for (k, v) in headers {
                res.headers_mut().insert(k, v.parse().unwrap());
            }
            res
        }
        Some(Reply::RetryAt(after)) => {
            let at = httpdate::fmt_http_date(std::time::SystemTime::now() + after);
            let mut res = StatusCode::TOO_MANY_REQUESTS.into_response();
            res.headers_mut().insert("retry-after", at.parse().unwrap());
            res
        }
        Some(Reply::Hold(gate)) => {
            gate.passed().await;
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({"messages": [{"id": "wamid.HELD"}]})),
            )
                .into_response()
        }
        Some(Reply::Hang(d)) => {
            tokio::time::sleep(d).await;
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({"messages": [{"id": "wamid.LATE"}]})),
            )
                .into_response()
        }
    }
}
