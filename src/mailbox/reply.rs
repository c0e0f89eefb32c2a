//! Acting on an email reply to a page. The reply's address names the page and its recipient
//! (signed, see [`crate::channels::email::reply_address`]); the message must come `From` that recipient's
//! email address. What they wrote (without the quoted page and their signature) is read as
//! an SMS reply is: `ACK` acknowledges the page, `RESOLVE` finishes its ticket where they may;
//! any other text becomes a comment on the page's ticket, as they would post it (so does what
//! follows a command's line). A reply acts once however often it comes: it is an idempotent
//! request of its sender, keyed by its `Message-ID`, and a comment commits with that key.

use sha2::Digest;
use tickethub_actors::domain::{IdempotencyMark, UserId};
use tickethub_actors::ports::{IdempotencyClaim, Replyable, StoreError};
use tickethub_actors::reply::{self, Command};
use tickethub_actors::routing::Channel;
use tickethub_actors::ticket_domain::Action;

use super::Received;
use crate::replies::{acknowledge, on_ticket, Acted};
use crate::state::AppState;

/// The longest comment a reply may make, as the REST API takes it.
const LONGEST_COMMENT: usize = 10_000;

/// Why a reply did not act.
#[derive(Debug)]
enum Refused {
    /// For good: the sending server tells its sender (`5xx`).
    Permanent(String),
    /// For now: the sending server tries again later (`4xx`).
    Temporary(String),
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "cannot act on an email reply");
        Refused::Temporary("4.3.0 The database is unavailable; try again shortly.".into())
    }
}

/// Acts on a message and answers the SMTP line that ends it.
pub async fn answer(state: &AppState, received: Received) -> Vec<u8> {
    let mut answers = Vec::new();
    for (notification, user) in &received.pages {
        match act(state, *notification, UserId(*user), &received.data).await {
            Ok(said) => answers.push(said),
            Err(Refused::Temporary(why)) => return format!("451 {why}\r\n").into_bytes(),
            Err(Refused::Permanent(why)) => {
                metrics::counter!("tickethub_inbound_refused_total", "provider" => "email")
                    .increment(1);
                return format!("550 {why}\r\n").into_bytes();
            }
        }
    }
    metrics::counter!("tickethub_inbound_replies_total", "channel" => "email").increment(1);
    let said = answers.join(" ").replace(['\r', '\n'], " ");
    format!("250 2.0.0 tickethub: {said}\r\n").into_bytes()
}

/// The sender's address, in lower case: the `From` header's first address.
fn sender(message: &mail_parser::Message<'_>) -> Option<String> {
    message
        .from()
        .and_then(|from| from.first())
        .and_then(|addr| addr.address())
        .map(|a| a.trim().to_lowercase())
}

async fn act(
    state: &AppState,
    notification: i64,
    user: UserId,
    data: &[u8],
) -> Result<String, Refused> {
    let Some(message) = mail_parser::MessageParser::default().parse(data) else {
        return Err(Refused::Permanent(
            "5.6.0 The message cannot be read.".into(),
        ));
    };
    let person = state
        .store
        .user_by_id(user)
        .await?
        .filter(|p| p.is_active)
        .ok_or_else(|| Refused::Permanent("5.1.1 The page's recipient is gone.".into()))?;
    let theirs = person
        .address(Channel::Email)
        .map(|a| a.address.trim().to_lowercase());
    if theirs.is_none() || sender(&message) != theirs {
        return Err(Refused::Permanent(
            "5.7.1 Replies to this address must come from the address the page was sent to.".into(),
        ));
    }
    let Some(n) = state.store.notification(user, notification).await? else {
        return Err(Refused::Permanent("5.1.1 The page is gone.".into()));
    };
    let page = Replyable::from(n);
    let written = reply::written_part(&message.body_text(0).unwrap_or_default());
    // The message's own id keys it (its bytes, when it has none): a server that sends it
    // again finds the answer, or the comment it committed.
    let id = match message.message_id() {
        Some(id) => id.as_bytes().to_vec(),
        None => data.to_vec(),
    };
    let digest: String = sha2::Sha256::digest(&id)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mark = IdempotencyMark {
        caller: format!("user:{}", user.0),
        key: format!("email:{notification}:{digest}"),
    };
    let now = state.store.now();
    match state
        .store
        .claim_idempotency(&mark, "email reply", now, now + state.idempotency_lease)
        .await?
    {
        IdempotencyClaim::Claimed => {}
        IdempotencyClaim::Answered { body, .. } => return Ok(body),
        IdempotencyClaim::Committed { .. } => return Ok("done already.".into()),
        IdempotencyClaim::InProgress => {
            return Err(Refused::Temporary(
                "4.3.0 This reply is being handled; try again shortly.".into(),
            ))
        }
        IdempotencyClaim::Mismatch => {
            return Err(Refused::Permanent(
                "5.7.1 A reply of this id was different.".into(),
            ))
        }
    }
    match acted(state, &person, &page, &written, mark.clone()).await {
        Ok(said) => {
            state.store.answer_idempotency(&mark, 250, &said).await?;
            Ok(said)
        }
        Err(e) => {
            // Nothing committed under the key (or a retry finds what did).
            let _ = state.store.release_idempotency(&mark).await;
            Err(e)
        }
    }
}

/// Runs what the reply says; answers what was done.
async fn acted(
    state: &AppState,
    person: &tickethub_actors::domain::User,
    page: &Replyable,
    written: &str,
    mark: IdempotencyMark,
) -> Result<String, Refused> {
    let first = written.lines().next().unwrap_or_default();
    let (mut said, rest) = match reply::parse(first) {
        Command::Ack(_) => {
            let new = acknowledge(state, person.id, page, "email").await?;
            let said = match new {
                true => format!("acknowledged \"{}\".", page.title),
                false => format!("\"{}\" was acknowledged already.", page.title),
            };
            (said, after_first_line(written))
        }
        Command::Resolve(_) => {
            let said = match on_ticket(state, person, page, Action::FinishWork, None).await? {
                Acted::Done(done) | Acted::Refused(done) => done,
            };
            acknowledge(state, person.id, page, "email").await?;
            (said, after_first_line(written))
        }
        Command::Help => (String::new(), written.trim()),
    };
    if rest.is_empty() {
        if said.is_empty() {
            return Err(Refused::Permanent(format!(
                "5.6.0 The reply is empty. {}",
                reply::HELP.trim_start_matches("tickethub: ")
            )));
        }
        return Ok(said);
    }
    if rest.chars().count() > LONGEST_COMMENT {
        return Err(Refused::Permanent(format!(
            "5.3.4 A comment holds at most {LONGEST_COMMENT} characters."
        )));
    }
    let comment = Action::Comment {
        body: rest.to_owned(),
    };
    let done = match on_ticket(state, person, page, comment, Some(mark)).await? {
        Acted::Done(done) => done,
        Acted::Refused(why) => format!("not commented: {why}"),
    };
    if !said.is_empty() {
        said.push(' ');
    }
    said.push_str(&done);
    Ok(said)
}

fn after_first_line(written: &str) -> &str {
    written.split_once('\n').map_or("", |(_, rest)| rest.trim())
}
