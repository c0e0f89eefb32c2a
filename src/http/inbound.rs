//! Replies from outside the hub: Twilio's inbound SMS webhook,
//! `POST /api/inbound/twilio/sms/`, the key pressed in a page's voice call
//! (`POST /api/inbound/twilio/voice/`, see `crate::channels::voice`), and a push's Acknowledge
//! button (`POST /api/inbound/push/ack/`). An SMS reply acts for the person whose verified SMS
//! address sent it, on their own notifications only: `ACK`, `ACK 4F2K` or `1` acknowledges a page (it is
//! read, so its escalation stops on every node), `RESOLVE 4F2K` finishes its ticket where they
//! may, anything else gets the help text (see `tickethub_actors::reply`). Twilio's signature
//! (`X-Twilio-Signature`: HMAC-SHA1 with the auth token over `--public-url`, the path and the
//! form's fields sorted by name) is checked first; anything else is refused with 403. Each
//! message's answer is kept by its `MessageSid`, so a message Twilio sends again is answered
//! the same and acts once.

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{KeyInit, Mac};
use tickethub_actors::domain::UserId;
use tickethub_actors::ports::{Replyable, StoreError};
use tickethub_actors::reply::{self, Command};
use tickethub_actors::routing::Channel;
use tickethub_actors::ticket_domain::Action;

use crate::replies::{acknowledge, on_ticket, Acted};
use crate::state::AppState;

/// The path Twilio is told to call.
pub const TWILIO_SMS: &str = "/api/inbound/twilio/sms/";

pub use crate::channels::push::PUSH_ACK;

/// The path a call's key pressed is posted to.
pub use crate::channels::voice::GATHERED as TWILIO_VOICE;

/// The largest form Twilio sends is a few kilobytes; past this, the request is refused.
const MOST_BYTES: usize = 64 * 1024;

/// How many of a person's latest notifications sent by SMS a code may name.
const REPLYABLE: i64 = 50;

/// The inbound routes (outside the OpenAPI document: providers call them, not clients).
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route(TWILIO_SMS, axum::routing::post(twilio_sms))
        .route(TWILIO_VOICE, axum::routing::post(twilio_voice))
        .route(PUSH_ACK, axum::routing::post(push_ack))
        .route(TWILIO_STATUS, axum::routing::post(twilio_status))
        .route(
            crate::http::slack::INTERACTIONS,
            axum::routing::post(crate::http::slack::interactions),
        )
        .route(
            crate::http::mattermost::ACTIONS,
            axum::routing::post(crate::http::mattermost::actions),
        )
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// TwiML that answers the sender with one message.
fn twiml(text: &str) -> Response {
    twiml_verb("Message", text)
}

/// TwiML that says `text` to a caller.
fn say(text: &str) -> Response {
    twiml_verb("Say", text)
}

/// TwiML of one verb holding `text`.
fn twiml_verb(verb: &str, text: &str) -> Response {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/xml; charset=utf-8")],
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><{verb}>{escaped}</{verb}></Response>"
        ),
    )
        .into_response()
}

/// Twilio's signature of a request to `url` with these form fields: HMAC-SHA1 with the auth
/// token over the URL and each field's name and value, sorted by name, base64.
pub fn twilio_signature(token: &str, url: &str, fields: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = fields.iter().collect();
    sorted.sort();
    let mut mac =
        hmac::Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `given` is the signature, compared in constant time.
fn signed(token: &str, url: &str, fields: &[(String, String)], given: &str) -> bool {
    let expected = twilio_signature(token, url, fields);
    crate::secret::constant_time_eq(expected.as_bytes(), given.as_bytes())
}

/// The form of a request from Twilio, once its signature holds: the fields; or the status
/// and the words that refuse it.
fn twilio_form(
    state: &AppState,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
    what: &'static str,
) -> Result<Vec<(String, String)>, (StatusCode, &'static str)> {
    let (Some(token), Some(public)) = (&state.twilio_auth_token, &state.public_url) else {
        return Err((StatusCode::NOT_FOUND, what));
    };
    if body.len() > MOST_BYTES {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."));
    }
    let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) else {
        return Err((StatusCode::BAD_REQUEST, "The body is not a form."));
    };
    let url = match uri.query() {
        Some(query) => format!("{public}{}?{query}", uri.path()),
        None => format!("{public}{}", uri.path()),
    };
    let given = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !signed(token, &url, &fields, given) {
        metrics::counter!("tickethub_inbound_refused_total", "provider" => "twilio").increment(1);
        return Err((
            StatusCode::FORBIDDEN,
            "The request is not signed by Twilio.",
        ));
    }
    Ok(fields)
}

/// A form field's value.
fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn twilio_sms(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let what = "SMS replies need the SMS channel (Twilio) and --public-url.";
    let fields = match twilio_form(&state, &uri, &headers, &body, what) {
        Ok(fields) => fields,
        Err((status, why)) => return plain(status, why),
    };
    let (Some(sid), Some(from)) = (field(&fields, "MessageSid"), field(&fields, "From")) else {
        return plain(StatusCode::BAD_REQUEST, "MessageSid and From are required.");
    };
    let text = field(&fields, "Body").unwrap_or_default();
    match answer_once(&state, sid, from, text).await {
        Ok(answer) => twiml(&answer),
        Err(e) => {
            // Twilio tries again later; nothing was kept for this message.
            tracing::warn!(error = %e, "cannot act on an SMS reply");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is unavailable; try again shortly.",
            )
        }
    }
}

/// The key a person pressed during a page's call (Twilio's `<Gather>` action, signed; the
/// page and its recipient in the query, as the call's script gave them): 1 acknowledges the
/// page, if the call went to that person's voice number.
async fn twilio_voice(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let what = "Voice calls need the voice channel (Twilio) and --public-url.";
    let fields = match twilio_form(&state, &uri, &headers, &body, what) {
        Ok(fields) => fields,
        Err((status, why)) => return plain(status, why),
    };
    #[derive(serde::Deserialize)]
    struct Page {
        notification: i64,
        user: i64,
    }
    let Ok(page) = serde_urlencoded::from_str::<Page>(uri.query().unwrap_or_default()) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "The query names no notification and user.",
        );
    };
    if field(&fields, "Digits") != Some("1") {
        return say("Not acknowledged. Goodbye.");
    }
    let called = field(&fields, "To").unwrap_or_default();
    match acknowledge_call(&state, UserId(page.user), page.notification, called).await {
        Ok(said) => say(said),
        Err(e) => {
            tracing::warn!(error = %e, "cannot act on a key pressed in a call");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is unavailable; try again shortly.",
            )
        }
    }
}

/// Acknowledges the page of a call to `called`, if that is its recipient's voice number.
async fn acknowledge_call(
    state: &AppState,
    user: UserId,
    id: i64,
    called: &str,
) -> Result<&'static str, StoreError> {
    let Some(person) = state.store.user_by_id(user).await? else {
        return Ok("This page is gone. Goodbye.");
    };
    let voice = Channel::stored("voice").expect("the voice channel is registered");
    if person.address(voice).map(|a| a.address.as_str()) != Some(called) {
        return Ok("This call is not to the page's recipient. Goodbye.");
    }
    let Some(n) = state.store.notification(user, id).await? else {
        return Ok("This page is gone. Goodbye.");
    };
    Ok(
        match acknowledge(state, user, &Replyable::from(n), "voice").await? {
            true => "Acknowledged. Goodbye.",
            false => "It was acknowledged already. Goodbye.",
        },
    )
}

/// A push's Acknowledge button: `{"token"}`, signed by this hub for one notification of one
/// user. 200 `{"notification_id", "acknowledged"}` (`false` when it was acknowledged already);
/// 403 for a token that is not this hub's or has expired; 404 when the notification is gone.
async fn push_ack(State(state): State<AppState>, body: Bytes) -> Response {
    let Some(vapid) = &state.vapid else {
        return plain(StatusCode::NOT_FOUND, "Web Push is off on this hub.");
    };
    #[derive(serde::Deserialize)]
    struct Ack {
        token: String,
    }
    let Ok(ack) = serde_json::from_slice::<Ack>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "Give {\"token\": \"…\"}.");
    };
    let (id, user) = match vapid.check_ack_token(&ack.token, chrono::Utc::now()) {
        Ok(named) => named,
        Err(why) => {
            metrics::counter!("tickethub_inbound_refused_total", "provider" => "push").increment(1);
            let detail = serde_json::json!({"detail": format!("The token is {why}.")});
            return (StatusCode::FORBIDDEN, axum::Json(detail)).into_response();
        }
    };
    let user = UserId(user);
    let found = match state.store.notification(user, id).await {
        Ok(found) => found,
        Err(e) => return crate::http::error::ApiError::from(e).into_response(),
    };
    let Some(n) = found else {
        return plain(StatusCode::NOT_FOUND, "The notification is gone.");
    };
    let page = Replyable::from(n);
    match acknowledge(&state, user, &page, "push").await {
        Ok(acknowledged) => {
            let answer = serde_json::json!({"notification_id": id, "acknowledged": acknowledged});
            axum::Json(answer).into_response()
        }
        Err(e) => crate::http::error::ApiError::from(e).into_response(),
    }
}

/// The answer to the message `sid`: the one kept, if it was answered before; else acts on
/// it and keeps the answer.
async fn answer_once(
    state: &AppState,
    sid: &str,
    from: &str,
    text: &str,
) -> Result<String, StoreError> {
    if let Some(kept) = state.store.inbound_answer("twilio", sid).await? {
        return Ok(kept);
    }
    let answer = act(state, from, text).await?;
    metrics::counter!("tickethub_inbound_replies_total", "channel" => "sms").increment(1);
    state
        .store
        .keep_inbound_answer("twilio", sid, &answer, state.store.now())
        .await
}

/// Acts on a reply from `from`, and says what was done.
async fn act(state: &AppState, from: &str, text: &str) -> Result<String, StoreError> {
    let user = match state
        .store
        .users_with_address(Channel::Sms, from)
        .await?
        .as_slice()
    {
        [] => return Ok("tickethub: this number is not a verified number of anyone here.".into()),
        [one] => *one,
        _ => {
            return Ok(
                "tickethub: this number belongs to several people here; acknowledge in the app."
                    .into(),
            )
        }
    };
    let (code, resolve) = match reply::parse(text) {
        Command::Ack(code) => (code, false),
        Command::Resolve(code) => (code, true),
        Command::Help => return Ok(reply::HELP.into()),
    };
    let pages = state.store.replyable(user, Channel::Sms, REPLYABLE).await?;
    let page = match &code {
        None => pages.first(),
        Some(code) => pages.iter().find(|p| reply::code(p.seq) == *code),
    };
    let Some(page) = page else {
        return Ok(match code {
            Some(code) => format!("tickethub: none of your pages has the code {code}."),
            None => "tickethub: you have no page to acknowledge.".into(),
        });
    };
    if resolve {
        return resolve_ticket(state, user, page).await;
    }
    Ok(if acknowledge(state, user, page, "sms").await? {
        format!("tickethub: acknowledged \"{}\".", page.title)
    } else {
        format!("tickethub: \"{}\" was acknowledged already.", page.title)
    })
}

/// Finishes the page's ticket as the user, by the rules of `finish_work`, and acknowledges the
/// page.
async fn resolve_ticket(
    state: &AppState,
    user: UserId,
    page: &Replyable,
) -> Result<String, StoreError> {
    let Some(person) = state.store.user_by_id(user).await? else {
        return Ok("tickethub: this number is not a verified number of anyone here.".into());
    };
    let answer = match on_ticket(state, &person, page, Action::FinishWork, None).await? {
        Acted::Done(done) => format!("tickethub: {done}"),
        Acted::Refused(why) => format!("tickethub: {why}"),
    };
    acknowledge(state, user, page, "sms").await?;
    Ok(answer)
}

pub use crate::channels::sms::STATUS_CALLBACK as TWILIO_STATUS;

/// The statuses that end a message's journey; the ones before (`queued`, `sent`, …) are not
/// kept.
const FINAL: [&str; 5] = ["delivered", "undelivered", "failed", "read", "canceled"];

/// Twilio's error codes that say the number cannot take SMS, for good: not a valid number
/// (21211), unsubscribed with STOP (21610), not a mobile number (21614), blocked by its owner
/// (30004), an unknown destination (30005), a landline or unreachable carrier (30006).
const HARD: [&str; 6] = ["21211", "21610", "21614", "30004", "30005", "30006"];

/// An SMS's status callback (signed): its receipt is kept for the notification's timeline;
/// `undelivered` or `failed` fails the delivery with Twilio's error code, and a code that
/// says the number cannot take SMS marks it invalid and puts it on the suppression list
/// (nothing goes to it until an admin takes it off). A callback for a message whose send the hub has not recorded yet is waited for
/// briefly, then dropped.
async fn twilio_status(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let what = "SMS receipts need the SMS channel (Twilio) and --public-url.";
    let fields = match twilio_form(&state, &uri, &headers, &body, what) {
        Ok(fields) => fields,
        Err((status, why)) => return plain(status, why),
    };
    let (Some(sid), Some(status)) = (
        field(&fields, "MessageSid"),
        field(&fields, "MessageStatus"),
    ) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "MessageSid and MessageStatus are required.",
        );
    };
    if !FINAL.contains(&status) {
        return StatusCode::NO_CONTENT.into_response();
    }
    let failed = matches!(status, "undelivered" | "failed");
    let code = field(&fields, "ErrorCode").filter(|c| !c.is_empty() && *c != "0");
    let mut tries = 0;
    let receipt = loop {
        let now = state.store.now();
        match state
            .store
            .record_receipt(Channel::Sms, sid, status, failed, code, now)
            .await
        {
            Ok(Some(receipt)) => break receipt,
            // The send's answer may not be recorded yet.
            Ok(None) if tries < 10 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Ok(None) => return StatusCode::NO_CONTENT.into_response(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot keep an SMS receipt");
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The database is unavailable; try again shortly.",
                );
            }
        }
    };
    metrics::counter!("tickethub_delivery_receipts_total", "channel" => "sms", "status" => receipt.status.clone()).increment(1);
    if let Some(code) = code.filter(|c| failed && HARD.contains(c)) {
        let why = format!("Twilio: {status} (error {code})");
        if let Err(e) = state
            .store
            .phone_number_invalid(receipt.user, &receipt.address, &why, receipt.at)
            .await
        {
            tracing::warn!(error = %e, "cannot mark a number invalid");
        }
        let entry = tickethub_actors::ports::NewSuppression {
            channel: Channel::Sms,
            address: &receipt.address,
            source: "provider",
            reason: &why,
            delivery_id: Some(receipt.delivery_id),
            at: receipt.at,
        };
        if let Err(e) = state.store.suppress(entry).await {
            tracing::warn!(error = %e, "cannot put a number on the suppression list");
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twilio's own documented example: this URL, these fields and this token sign as
    /// `0/KCTR6DLpKmkAf8muzZqo1nDgQ=`.
    #[test]
    fn signatures_match_twilio_s_documented_example() {
        let fields: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &fields
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }
}
