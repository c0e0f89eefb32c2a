//! Acting on a reply from outside the hub, whichever way it came (an SMS, an email, a push's
//! button): acknowledging a page (it is read, so its escalation stops on every node, and the
//! acknowledgement is kept with how it came), finishing its ticket, or commenting on it, as
//! the person the reply proves it came from, by the rules of the REST actions.

use tickethub_actors::domain::{IdempotencyMark, User, UserId};
use tickethub_actors::ports::{Replyable, StoreError};
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
