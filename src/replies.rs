//! Acting on a reply from outside the hub, whichever way it came (an SMS, an email, a push's
//! button, a chat message's button): acknowledging a page (it is read, so its escalation stops on every node, and the
//! acknowledgement is kept with how it came), finishing its ticket, or commenting on it, as
//! the person the reply proves it came from, by the rules of the REST actions.

use tickethub_actors::domain::{IdempotencyMark, User, UserId};
use tickethub_actors::ports::{IdempotencyClaim, Replyable, StoreError};
use tickethub_actors::routing::Channel;
use tickethub_actors::ticket::TicketError;
use tickethub_actors::ticket_domain::Action;
use tickethub_actors::user::UserCommand;

use crate::state::AppState;

/// Marks the page read (its escalation stops, on every node; the user's sockets hear it) and
/// records how; `false` if it was acknowledged that way, and read, already.
pub async fn acknowledge(
    state: &AppState,
    user: UserId,
    page: &Replyable,
    via: &'static str,
) -> Result<bool, StoreError> {
    let read_now = !page.is_read;
    if read_now {
        state
            .hub
            .user_command(
                user,
                None,
                UserCommand::SetRead {
                    id: page.id,
                    read: true,
                },
            )
            .await
            .map_err(|e| StoreError::Backend(e.into()))?;
    }
    let recorded = state
        .store
        .record_acknowledgement(page.id, user, via, state.store.now())
        .await?;
    if recorded {
        metrics::counter!("tickethub_acknowledgements_total", "via" => via).increment(1);
    }
    Ok(read_now || recorded)
}

/// What a reply's action on a ticket came to: done (the ticket's key and status, or the new
/// comment's id), or refused by the ticket's rules (why, in words).
pub enum Acted {
    /// Applied: what to tell the person.
    Done(String),
    /// Refused: why.
    Refused(String),
}

/// Runs `action` on the page's ticket as `person`, by the rules of the REST action (a client
/// cannot finish work; a comment needs the power to comment); with `mark`, once however often
/// the reply comes.
pub async fn on_ticket(
    state: &AppState,
    person: &User,
    page: &Replyable,
    action: Action,
    mark: Option<IdempotencyMark>,
) -> Result<Acted, StoreError> {
    let Some(ticket) = page.ticket else {
        return Ok(Acted::Refused(format!(
            "\"{}\" is about no ticket.",
            page.title
        )));
    };
    on_ticket_id(state, person, ticket, action, mark).await
}

/// Runs `action` on a ticket as `person`, by the rules of the REST action.
async fn on_ticket_id(
    state: &AppState,
    person: &User,
    ticket: tickethub_actors::ticket_domain::TicketId,
    action: Action,
    mark: Option<IdempotencyMark>,
) -> Result<Acted, StoreError> {
    let comment = matches!(action, Action::Comment { .. });
    match state.hub.apply_marked(ticket, person, action, mark).await {
        Ok(applied) if comment => Ok(Acted::Done(format!(
            "commented on {}.",
            applied.ticket.key()
        ))),
        Ok(applied) => Ok(Acted::Done(format!(
            "{} is {}.",
            applied.ticket.key(),
            applied.ticket.status.as_str()
        ))),
        Err(TicketError::Store(e)) => Err(e),
        Err(TicketError::Unavailable) => Err(StoreError::Backend("the ticket is busy".into())),
        Err(e) => Ok(Acted::Refused(e.to_string())),
    }
}

/// A click on a button of a message the hub sent to a chat: who clicked (their id on the
/// chat), the click's own id, the button's action and the notification it names.
pub struct Click<'a> {
    /// The chat channel (`slack`, `mattermost`): the clicker is the user whose verified
    /// address on it is `member`.
    pub via: &'static str,
    /// The clicker's id on the chat.
    pub member: &'a str,
    /// The click's id, the same however often the chat sends it.
    pub trigger: &'a str,
    /// `ack`, `start_work`, `finish_work` or `approve`.
    pub action: &'a str,
    /// The notification's id, as the button carries it.
    pub notification: Option<&'a str>,
}

/// The answer to a click: the one kept, if it was handled before (on any node); else acts
/// on it, as the person the chat says clicked, on their own notification, by the REST
/// actions' rules, and keeps the answer.
pub async fn clicked(state: &AppState, click: Click<'_>) -> Result<String, StoreError> {
    let channel = Channel::stored(click.via).expect("a registered chat channel");
    let chat = match click.via {
        "slack" => "Slack",
        "mattermost" => "Mattermost",
        other => other,
    };
    let user = match state
        .store
        .users_with_address(channel, click.member)
        .await?
        .as_slice()
    {
        [one] => *one,
        [] => {
            return Ok(format!(
                "Your {chat} account is not linked to anyone in tickethub: add your {chat} id to your profile there."
            ))
        }
        _ => {
            return Ok(format!(
                "Your {chat} account is linked to several people in tickethub; act in the app."
            ))
        }
    };
    let mark = IdempotencyMark {
        caller: format!("user:{}", user.0),
        key: format!("{}:{}", click.via, click.trigger),
    };
    // The same click handled elsewhere at this moment: its answer is waited for, within
    // Slack's 3 s.
    let mut waits = 0;
    loop {
        let now = state.store.now();
        match state
            .store
            .claim_idempotency(&mark, "chat click", now, now + state.idempotency_lease)
            .await?
        {
            IdempotencyClaim::Claimed => break,
            IdempotencyClaim::Answered { body, .. } => return Ok(body),
            IdempotencyClaim::Committed { .. } => return Ok("Done already.".into()),
            IdempotencyClaim::InProgress if waits < 20 => {
                waits += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            IdempotencyClaim::InProgress | IdempotencyClaim::Mismatch => {
                return Ok("This click is being handled.".into())
            }
        }
    }
    match act(state, user, &click, mark.clone()).await {
        Ok(said) => {
            state.store.answer_idempotency(&mark, 200, &said).await?;
            metrics::counter!("tickethub_inbound_replies_total", "channel" => click.via)
                .increment(1);
            Ok(said)
        }
        Err(e) => {
            let _ = state.store.release_idempotency(&mark).await;
            Err(e)
        }
    }
}

/// Runs the click's action as `user` on their notification; says what it came to.
async fn act(
    state: &AppState,
    user: UserId,
    click: &Click<'_>,
    mark: IdempotencyMark,
) -> Result<String, StoreError> {
    if let Some(ticket) = click
        .notification
        .and_then(|v| v.strip_prefix("ticket:"))
        .and_then(|v| v.parse::<i64>().ok())
    {
        return on_card(state, user, click, ticket, mark).await;
    }
    let id = click.notification.and_then(|v| v.parse::<i64>().ok());
    let found = match id {
        Some(id) => state.store.notification(user, id).await?,
        None => None,
    };
    let Some(n) = found else {
        return Ok("This notification is not yours, or is gone.".into());
    };
    let is_page = tickethub_actors::reply::is_page(&n);
    let page = Replyable::from(n);
    let action = match click.action {
        "ack" => {
            return Ok(match acknowledge(state, user, &page, click.via).await? {
                true => format!("Acknowledged \"{}\".", page.title),
                false => format!("\"{}\" was acknowledged already.", page.title),
            })
        }
        action => match ticket_action(action) {
            Some(action) => action,
            None => return Ok("tickethub does not know this button.".into()),
        },
    };
    let Some(person) = state.store.user_by_id(user).await? else {
        return Ok("This notification is not yours, or is gone.".into());
    };
    let said = match on_ticket(state, &person, &page, action, Some(mark)).await? {
        Acted::Done(done) => done,
        Acted::Refused(why) => why,
    };
    // Acting on a page's ticket answers the page too.
    if is_page {
        acknowledge(state, user, &page, click.via).await?;
    }
    Ok(said)
}

/// The ticket action a button names.
fn ticket_action(action: &str) -> Option<Action> {
    match action {
        "start_work" => Some(Action::StartWork),
        "finish_work" => Some(Action::FinishWork),
        "approve" => Some(Action::Approve),
        _ => None,
    }
}

/// A click on a project chat's message about a ticket: the clicker acts on the ticket if they
/// may see it (an admin, a member of its project, its creator or an assignee), by the REST
/// action's rules.
async fn on_card(
    state: &AppState,
    user: UserId,
    click: &Click<'_>,
    ticket: i64,
    mark: IdempotencyMark,
) -> Result<String, StoreError> {
    let gone = || Ok("This ticket is not one you can see in tickethub, or is gone.".to_owned());
    let Some(action) = ticket_action(click.action) else {
        return Ok("tickethub does not know this button.".into());
    };
    let Some(person) = state.store.user_by_id(user).await? else {
        return gone();
    };
    let ticket = tickethub_actors::ticket_domain::TicketId(ticket);
    let Some(found) = state.store.ticket(ticket).await? else {
        return gone();
    };
    let sees = person.role == tickethub_actors::domain::Role::Admin
        || found.created_by == user
        || found.assignees.contains(&user)
        || state.store.membership(found.project_id, user).await? == Some(true);
    if !sees {
        return gone();
    }
    Ok(
        match on_ticket_id(state, &person, ticket, action, Some(mark)).await? {
            Acted::Done(done) => done,
            Acted::Refused(why) => why,
        },
    )
}
