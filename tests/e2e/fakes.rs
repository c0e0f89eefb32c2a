//! Test peers: an SMTP server, a WhatsApp Cloud API stand-in and a webhook receiver, all in
//! this process on random ports.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::harness::PATIENCE;

/// One email the SMTP server accepted.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
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

/// A minimal SMTP server that records what it accepts and can be switched off.
#[derive(Clone)]
pub struct Smtp {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    arrived: Arc<Notify>,
    down: Arc<AtomicBool>,
}

impl Smtp {
    /// Starts the server.
    pub async fn start() -> Smtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let smtp = Smtp {
            addr: listener.local_addr().unwrap(),
            mails: Arc::default(),
            arrived: Arc::default(),
            down: Arc::default(),
        };
        let server = smtp.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let _ = server.session(stream).await;
                });
            }
        });
        smtp
    }

    /// The URL to give the hub.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// While down, the server answers `421` to every connection.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Every mail so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until at least `n` mails arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let notified = self.arrived.notified();
                if self.mails.lock().unwrap().len() >= n {
                    return self.mails();
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} mails did not arrive; got {:?}", self.mails().len()))
    }

    async fn session(&self, stream: tokio::net::TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        if self.down.load(Ordering::SeqCst) {
            write.write_all(b"421 test server is down\r\n").await?;
            return Ok(());
        }
        write.write_all(b"220 test ESMTP\r\n").await?;
        let (mut from, mut to) = (String::new(), Vec::new());
        while let Some(line) = lines.next_line().await? {
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                write.write_all(b"250-test\r\n250 8BITMIME\r\n").await?;
            } else if upper.starts_with("MAIL FROM:") {
                from = line[10..].trim().trim_matches(['<', '>']).to_owned();
                to.clear();
                write.write_all(b"250 OK\r\n").await?;
            } else if upper.starts_with("RCPT TO:") {
                let rcpt = line[8..].trim().trim_matches(['<', '>']).to_owned();
                if rcpt.ends_with("@invalid.test") {
                    write.write_all(b"550 no such user\r\n").await?;
                } else {
                    to.push(rcpt);
                    write.write_all(b"250 OK\r\n").await?;
                }
            } else if upper == "DATA" {
                write.write_all(b"354 go ahead\r\n").await?;
                let mut data = String::new();
                while let Some(l) = lines.next_line().await? {
                    if l == "." {
                        break;
                    }
                    data.push_str(&l);
                    data.push_str("\r\n");
                }
                self.mails.lock().unwrap().push(Mail {
                    from: from.clone(),
                    to: to.clone(),
                    data,
                });
                self.arrived.notify_waiters();
                write.write_all(b"250 OK queued as test\r\n").await?;
            } else if upper == "QUIT" {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else if upper == "RSET" || upper == "NOOP" {
                write.write_all(b"250 OK\r\n").await?;
            } else {
                write.write_all(b"502 not implemented\r\n").await?;
            }
        }
        Ok(())
    }
}

/// What the WhatsApp stand-in answers next.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This status and body.
    Status(u16, Value),
    /// Answer only after this long (longer than the hub's timeout: a timeout).
    Hang(Duration),
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: String,
}

/// A stand-in HTTP server: answers from a script (then 200), and records requests.
#[derive(Clone)]
pub struct Http {
    pub addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Reply>>>,
    requests: Arc<Mutex<Vec<Request>>>,
    arrived: Arc<Notify>,
}

impl Http {
    /// Starts the server; unscripted requests get 200 with a WhatsApp-like message id.
    pub async fn start() -> Http {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = Http {
            addr: listener.local_addr().unwrap(),
            script: Arc::default(),
            requests: Arc::default(),
            arrived: Arc::default(),
        };
        let app = Router::new()
            .fallback(post(handle))
            .with_state(http.clone());
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
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Request> {
        tokio::time::timeout(PATIENCE, async {
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

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn handle(
    State(http): State<Http>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let reply = http.script.lock().unwrap().pop_front();
    http.requests.lock().unwrap().push(Request {
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        raw: body,
    });
    http.arrived.notify_waiters();
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
