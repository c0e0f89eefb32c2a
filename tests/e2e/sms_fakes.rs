//! A Twilio Messages API stand-in on a random port: it checks a send the way Twilio does
//! (basic auth with the account SID and auth token, the account in the path, a form with a
//! `To` in E.164, the account's `From` and a `Body` of 1 to 1600 characters), answers 201 with
//! a message SID, or Twilio's JSON error, and records every request. Calls likewise
//! (`Calls.json`: the account's voice number as `From`, a `Twiml` script of at most 4,000
//! characters, a `<Response>` document).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::harness::patience;

/// The account the stand-in knows.
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// Its auth token.
pub const AUTH_TOKEN: &str = "twilio-test-auth-token";
/// Its one SMS-capable number.
pub const FROM: &str = "+15005550006";
/// Its one voice-capable number.
pub const VOICE_FROM: &str = "+15005550007";

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct Sent {
    /// When it arrived.
    pub at: std::time::Instant,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The form's fields, decoded, in order.
    pub fields: Vec<(String, String)>,
    /// The error code it was refused with, if it was.
    pub refused: Option<u64>,
    /// The sid of the message it made, once answered.
    pub sid: Option<String>,
}

impl Sent {
    /// A form field, if given once.
    pub fn field(&self, name: &str) -> Option<&str> {
        let mut found = self.fields.iter().filter(|(k, _)| k == name);
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(
            found.next().is_none(),
            "{name} given twice in {:?}",
            self.fields
        );
        first
    }

    pub fn to(&self) -> &str {
        self.field("To").unwrap_or_default()
    }

    pub fn body(&self) -> &str {
        self.field("Body").unwrap_or_default()
    }
}

/// A scripted refusal, in Twilio's shape.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub status: u16,
    pub code: u64,
    pub message: String,
    pub retry_after: Option<&'static str>,
}

impl Refusal {
    /// 21211: the `To` number is not a valid phone number.
    pub fn invalid_number(to: &str) -> Refusal {
        Refusal {
            status: 400,
            code: 21211,
            message: format!("The 'To' number {to} is not a valid phone number."),
            retry_after: None,
        }
    }

    /// 20429: too many requests, with `Retry-After`.
    pub fn throttled(retry_after: &'static str) -> Refusal {
        Refusal {
            status: 429,
            code: 20429,
            message: "Too Many Requests".into(),
            retry_after: Some(retry_after),
        }
    }

    /// 20500: an internal error (503).
    pub fn unavailable() -> Refusal {
        Refusal {
            status: 503,
            code: 20500,
            message: "Service Unavailable".into(),
            retry_after: None,
        }
    }

    fn into_response(self) -> Response {
        let mut res = error(self.status, self.code, &self.message);
        if let Some(after) = self.retry_after {
            res.headers_mut()
                .insert("retry-after", after.parse().unwrap());
        }
        res
    }
}

/// Twilio's error answer.
fn error(status: u16, code: u64, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        })),
    )
        .into_response()
}

/// The stand-in.
#[derive(Clone)]
pub struct Twilio {
    pub addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Refusal>>>,
    sent: Arc<Mutex<Vec<Sent>>>,
    arrived: Arc<Notify>,
}

impl Twilio {
    /// Starts the server; a send that passes its checks gets 201 unless a refusal is scripted.
    pub async fn start() -> Twilio {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let twilio = Twilio {
            addr: listener.local_addr().unwrap(),
            script: Arc::default(),
            sent: Arc::default(),
            arrived: Arc::default(),
        };
        let app = Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(send))
            .route("/2010-04-01/Accounts/{sid}/Calls.json", post(call))
            .fallback(|| async { error(404, 20404, "The requested resource was not found") })
            .with_state(twilio.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        twilio
    }

    /// `http://addr`, for `--twilio-api-url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Points a hub's SMS at this stand-in, with the right credentials.
    pub fn configure(&self, c: &mut tickethub::ServeConfig) {
        c.channels.sms.twilio_api_url = self.url();
        c.channels.sms.twilio_account_sid = Some(ACCOUNT_SID.into());
        c.channels.sms.twilio_auth_token = Some(AUTH_TOKEN.into());
        c.channels.sms.twilio_from = Some(FROM.into());
    }

    /// Queues refusals for the next sends that pass the checks.
    pub fn script(&self, refusals: impl IntoIterator<Item = Refusal>) {
        self.script.lock().unwrap().extend(refusals);
    }

    /// Every request so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Sent> {
        tokio::time::timeout(patience(), async {
            loop {
                let notified = self.arrived.notified();
                if self.sent.lock().unwrap().len() >= n {
                    return self.sent();
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} SMS requests did not arrive; got {:?}", self.sent()))
    }
}

impl Twilio {
    /// Records a request and answers its refusal, if it has one: the checks' (`refused`), or
    /// else the next scripted one.
    fn record(
        &self,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        fields: &[(String, String)],
        refused: Option<(u16, u64, String)>,
    ) -> Option<Response> {
        let scripted = if refused.is_none() {
            self.script.lock().unwrap().pop_front()
        } else {
            None
        };
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        self.sent.lock().unwrap().push(Sent {
            at: std::time::Instant::now(),
            path: uri.path().to_owned(),
            authorization: header("authorization"),
            content_type: header("content-type"),
            fields: fields.to_vec(),
            refused: refused
                .as_ref()
                .map(|(_, code, _)| *code)
                .or(scripted.as_ref().map(|s| s.code)),
            sid: None,
        });
        self.arrived.notify_waiters();
        if let Some((status, code, message)) = refused {
            return Some(error(status, code, &message));
        }
        scripted.map(Refusal::into_response)
    }
}

/// `application/x-www-form-urlencoded` decoding.
fn form_fields(body: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn e164(number: &str) -> bool {
    number
        .strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Twilio's checks of the account: the basic auth, and the account in the path.
fn check_account(sid: &str, headers: &HeaderMap, resource: &str) -> Option<(u16, u64, String)> {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    );
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    if authorization != Some(expected.as_str()) {
        return Some((401, 20003, "Authenticate".into()));
    }
    if sid != ACCOUNT_SID {
        return Some((
            404,
            20404,
            format!("The requested resource /2010-04-01/Accounts/{sid}/{resource} was not found"),
        ));
    }
    None
}

/// What Twilio says of a send: the refusal's status, code and message, or `None` if it is
/// well-formed.
fn check(
    sid: &str,
    headers: &HeaderMap,
    fields: &[(String, String)],
) -> Option<(u16, u64, String)> {
    if let Some(refused) = check_account(sid, headers, "Messages.json") {
        return Some(refused);
    }
    // Twilio reads the parameters of a form only: any other body names none of them.
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| form && k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(to) = get("To") else {
        return Some((400, 21604, "A 'To' phone number is required.".into()));
    };
    if !e164(to) {
        return Some((
            400,
            21211,
            format!("The 'To' number {to} is not a valid phone number."),
        ));
    }
    match (get("From"), get("MessagingServiceSid")) {
        (None, None) => return Some((400, 21603, "A 'From' phone number is required.".into())),
        (Some(from), _) if from != FROM => {
            return Some((
                400,
                21606,
                format!("The From phone number {from} is not a valid, SMS-capable inbound phone number or short code for your account."),
            ))
        }
        (None, Some(_)) => {
            return Some((
                400,
                21704,
                "The Messaging Service contains no phone numbers".into(),
            ))
        }
        _ => {}
    }
    match get("Body") {
        None | Some("") => Some((400, 21602, "Message body is required.".into())),
        Some(body) if body.chars().count() > 1600 => Some((
            400,
            21617,
            "The concatenated message body exceeds the 1600 character limit.".into(),
        )),
        Some(_) => None,
    }
}

async fn send(
    State(twilio): State<Twilio>,
    Path(sid): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let fields = form_fields(&body);
    let refused = check(&sid, &headers, &fields);
    if let Some(refusal) = twilio.record(&uri, &headers, &fields, refused) {
        return refusal;
    }
    let value = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| Value::from(v.as_str()))
            .unwrap_or(Value::Null)
    };
    let message_sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    if let Some(this) = twilio
        .sent
        .lock()
        .unwrap()
        .iter_mut()
        .rev()
        .find(|s| s.fields == fields && s.sid.is_none())
    {
        this.sid = Some(message_sid.clone());
    }
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "account_sid": ACCOUNT_SID,
            "api_version": "2010-04-01",
            "body": value("Body"),
            "date_created": httpdate::fmt_http_date(std::time::SystemTime::now()),
            "direction": "outbound-api",
            "error_code": null,
            "error_message": null,
            "from": value("From"),
            "messaging_service_sid": value("MessagingServiceSid"),
            "sid": message_sid,
            "status": "queued",
            "to": value("To"),
            "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message_sid}.json"),
        })),
    )
        .into_response()
}

/// What Twilio says of a call: its account, a `To` in E.164, the account's voice number, and
/// a script (`Twiml`) of at most 4,000 characters that is a `<Response>`.
fn check_call(
    sid: &str,
    headers: &HeaderMap,
    fields: &[(String, String)],
) -> Option<(u16, u64, String)> {
    if let Some(refused) = check_account(sid, headers, "Calls.json") {
        return Some(refused);
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match get("To") {
        Some(to) if e164(to) => {}
        Some(to) => return Some((400, 21211, format!("Invalid 'To' Phone Number: {to}"))),
        None => return Some((400, 21201, "No 'To' number is specified".into())),
    }
    match get("From") {
        Some(VOICE_FROM) => {}
        Some(from) => {
            return Some((
                400,
                21210,
                format!(
                "The source phone number provided, {from}, is not yet verified for your account."
            ),
            ))
        }
        None => return Some((400, 21213, "Caller phone number is required".into())),
    }
    match get("Twiml") {
        None => Some((400, 21205, "Url parameter is required.".into())),
        Some(script) if script.chars().count() > 4000 => Some((
            400,
            21208,
            "The Twiml parameter exceeds 4000 characters.".into(),
        )),
        Some(script) if !(script.starts_with("<Response>") && script.ends_with("</Response>")) => {
            Some((400, 21240, "Twiml is not a Response document.".into()))
        }
        Some(_) => None,
    }
}

async fn call(
    State(twilio): State<Twilio>,
    Path(sid): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let fields = form_fields(&body);
    let refused = check_call(&sid, &headers, &fields);
    if let Some(refusal) = twilio.record(&uri, &headers, &fields, refused) {
        return refusal;
    }
    let call_sid = format!("CA{}", uuid::Uuid::new_v4().simple());
    (
        StatusCode::CREATED,
        axum::Json(json!({"sid": call_sid, "status": "queued", "account_sid": ACCOUNT_SID})),
    )
        .into_response()
}
