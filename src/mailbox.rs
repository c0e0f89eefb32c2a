//! The hub's own SMTP listener for replies to pages and for bounces (`--inbound-smtp-bind`): a
//! page's email goes out with `Reply-To: ack+<token>@<--inbound-email-domain>`, and every
//! notification email with the return path `bounce+<token>@<--inbound-email-domain>` (see
//! [`crate::channels::email::reply_address`]); a reply to the one is read here ([`reply`]), a
//! bounce or complaint to the other too ([`bounce`]). It accepts mail
//! for those addresses only (no relay: any other recipient is refused at `RCPT`), at most
//! `--inbound-smtp-max-bytes` a message, and acts on it ([`reply`]) before it answers the end
//! of the message: `250` once done, `451` when the database is away (the sending server tries
//! again; a reply acts once however often it comes), `5xx` for a reply that can never act.
//!
//! SMTP itself (commands, states, answers) is `mailin`'s state machine; this module is its
//! I/O: bounded lines, an idle timeout, and a cap on the connections at once. The listener
//! speaks plain SMTP: it is meant to sit behind the domain's MX (or to be it, on a private
//! network), as a mail server's delivery port does.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mailin::{Action, Handler, Response, SessionBuilder};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::channels::email::ReplyKey;
use crate::state::AppState;

pub mod bounce;
pub mod reply;

/// How long a connection may stay silent.
const IDLE: Duration = Duration::from_secs(60);

/// The longest line taken: a command's is at most 512 octets and a message's 1000 (RFC 5321
/// 4.5.3.1); longer lines are taken within a message, as some senders write them.
const LONGEST_LINE: usize = 64 * 1024;

/// How many connections are served at once; more wait to be accepted.
const CONNECTIONS: usize = 64;

/// What the listener needs.
#[derive(Clone)]
pub struct Mailbox {
    /// The hub.
    pub state: AppState,
    /// Signs and checks reply addresses.
    pub key: Arc<ReplyKey>,
    /// The largest message taken.
    pub max_bytes: usize,
}

/// Serves SMTP on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, mailbox: Mailbox) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept an SMTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mailbox = mailbox.clone();
        tokio::spawn(async move {
            if let Err(e) = session(stream, peer, mailbox).await {
                tracing::debug!(error = %e, %peer, "an SMTP session ended early");
            }
            drop(slot);
        });
    }
}

/// One message as it is received: who sent it, the pages its recipients name, its bytes.
#[derive(Default)]
struct Collector {
    key: Option<Arc<ReplyKey>>,
    max_bytes: usize,
    pages: Vec<(i64, i64)>,
    bounces: Vec<(i64, i64)>,
    data: Vec<u8>,
    too_big: bool,
    /// Set at the end of a message, for the session to answer.
    ended: Arc<std::sync::Mutex<Option<Ended>>>,
}

/// A message received whole.
pub struct Received {
    /// The pages its recipients name: (notification, user).
    pub pages: Vec<(i64, i64)>,
    /// The deliveries its return-path recipients name: (delivery, user).
    pub bounces: Vec<(i64, i64)>,
    /// Its bytes.
    pub data: Vec<u8>,
}

impl Handler for Collector {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        self.pages.clear();
        self.bounces.clear();
        self.data.clear();
        self.too_big = false;
        mailin::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let Some(key) = &self.key else {
            return mailin::response::NO_MAILBOX;
        };
        let now = chrono::Utc::now();
        if let Ok(delivery) = key.check_bounce(to, now) {
            if !self.bounces.contains(&delivery) {
                self.bounces.push(delivery);
            }
            return mailin::response::OK;
        }
        match key.check(to, now) {
            Ok(page) => {
                if !self.pages.contains(&page) {
                    self.pages.push(page);
                }
                mailin::response::OK
            }
            Err("expired") => Response::custom(
                550,
                "5.1.1 This reply address has expired; acknowledge in the app.".into(),
            ),
            Err(_) => {
                metrics::counter!("tickethub_inbound_refused_total", "provider" => "email")
                    .increment(1);
                Response::custom(
                    550,
                    "5.1.1 No such mailbox here (replies to pages and bounces only).".into(),
                )
            }
        }
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.too_big || self.data.len() + buf.len() > self.max_bytes {
            self.too_big = true;
            self.data.clear();
        } else {
            self.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        // The session answers the end of a message itself (below): a refusal from here would
        // leave the state machine in the message, taking the next commands for its text.
        let ended = if self.too_big {
            self.data.clear();
            Ended::TooBig
        } else {
            Ended::Received(Received {
                pages: std::mem::take(&mut self.pages),
                bounces: std::mem::take(&mut self.bounces),
                data: std::mem::take(&mut self.data),
            })
        };
        *self.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(ended);
        mailin::response::OK
    }
}

/// How a message ended.
enum Ended {
    /// Whole, for the session to act on.
    Received(Received),
    /// Past the size cap.
    TooBig,
}

async fn session(stream: TcpStream, peer: SocketAddr, mailbox: Mailbox) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let ended = Arc::new(std::sync::Mutex::new(None));
    let collector = Collector {
        key: Some(mailbox.key.clone()),
        max_bytes: mailbox.max_bytes,
        ended: ended.clone(),
        ..Collector::default()
    };
    let mut smtp = SessionBuilder::new(mailbox.key.domain.clone()).build(peer.ip(), collector);
    write.write_all(&smtp.greeting().buffer()?).await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::time::timeout(IDLE, bounded_line(&mut read, &mut line)).await;
        match read {
            Err(_) => {
                write
                    .write_all(b"421 4.4.2 Idle for too long; closing.\r\n")
                    .await?;
                return Ok(());
            }
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                write.write_all(b"500 5.5.2 Line too long.\r\n").await?;
                return Ok(());
            }
            Ok(Err(e)) => return Err(e),
        }
        // A bare LF ends a line as CRLF does.
        if !line.ends_with(b"\r\n") {
            if line.ends_with(b"\n") {
                line.pop();
            }
            line.extend_from_slice(b"\r\n");
        }
        null_reverse_path(&mut line);
        let response = smtp.process(&line);
        let taken = ended.lock().unwrap_or_else(|e| e.into_inner()).take();
        let answer = match taken {
            Some(Ended::Received(received)) => answer(&mailbox.state, received).await,
            Some(Ended::TooBig) => format!(
                "552 5.3.4 The message is larger than {} bytes.\r\n",
                mailbox.max_bytes
            )
            .into_bytes(),
            None => response.buffer()?,
        };
        match response.action {
            Action::NoReply => {}
            Action::Close => {
                write.write_all(&answer).await?;
                return Ok(());
            }
            Action::Reply | Action::UpgradeTls => write.write_all(&answer).await?,
        }
    }
}

/// Acts on a message: bounces first (they never refuse for what they say), then replies.
async fn answer(state: &AppState, received: Received) -> Vec<u8> {
    if received.pages.is_empty() {
        return bounce::answer(state, &received.bounces, &received.data).await;
    }
    if !received.bounces.is_empty() {
        let said = bounce::answer(state, &received.bounces, &received.data).await;
        if !said.starts_with(b"2") {
            return said;
        }
    }
    reply::answer(state, received).await
}

/// Bounces come from the null reverse path, `MAIL FROM:<>` (RFC 5321 4.5.5), which the SMTP
/// parser does not take: it is read as the mailer daemon's.
fn null_reverse_path(line: &mut Vec<u8>) {
    const NULL: &[u8] = b"MAIL FROM:<>";
    if line.len() >= NULL.len() && line[..NULL.len()].eq_ignore_ascii_case(NULL) {
        line.splice(
            NULL.len() - 1..NULL.len() - 1,
            b"MAILER-DAEMON".iter().copied(),
        );
    }
}

/// Reads one line, through its `\n`, into `line`: at most [`LONGEST_LINE`] bytes, else an
/// `InvalidData` error. Answers the bytes read (0 at the end of the stream).
async fn bounded_line<R: AsyncBufRead + Unpin>(
    read: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    loop {
        let buf = read.fill_buf().await?;
        if buf.is_empty() {
            return Ok(line.len());
        }
        let (taken, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + taken > LONGEST_LINE {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        line.extend_from_slice(&buf[..taken]);
        read.consume(taken);
        if done {
            return Ok(line.len());
        }
    }
}
