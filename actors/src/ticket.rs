//! The ticket actor: one per active ticket, serializing its transitions.
//!
//! Started on first use, it loads its ticket, then applies actions one at a time: decide
//! (pure [`transition`]), draft the notifications (routing), commit the change and the
//! notifications in one transaction with a version check, answer, and only then fan out.
//! It passivates itself after a quiet period.

use std::sync::Arc;
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;

use crate::directory::Keyed;
use crate::notification::{ticket_wording, EventDetails, TicketSummary};
use crate::notifier::Content;
use crate::notifier::Deps;
use crate::ports::{Committed, StoreError};
use crate::routing::Parties;
use crate::ticket_domain::{
    transition, Action, Comment, Principal, Ticket, TicketId, TransitionError,
};

/// Why a ticket operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    /// The action was refused (400, 403 or 409).
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// No such ticket.
    #[error("no such ticket")]
    NotFound,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ticket's actor could not be reached in time.
    #[error("the ticket is busy; try again")]
    Unavailable,
}

/// A successful action.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The ticket after the action.
    pub ticket: Ticket,
    /// The comment added, for `comments`.
    pub comment: Option<Comment>,
}

/// A point-in-time view of a ticket actor, for operators.
#[derive(Debug, Clone)]
pub struct TicketSnapshot {
    /// The ticket's key, once the actor has read the ticket.
    pub key: Option<String>,
    /// Its status, once read.
    pub status: Option<crate::ticket_domain::TicketStatus>,
    /// Time since its last action.
    pub idle: Duration,
}

/// The ticket actor.
#[derive(Clone, Debug)]
pub struct TicketActor {
    /// Shared dependencies.
    pub deps: Arc<Deps>,
    /// How long a ticket actor lives without messages.
    pub idle: Duration,
}

/// The state of a ticket actor.
pub struct TicketState {
    id: TicketId,
    /// The ticket as last committed, read with the first action: an actor starts without
    /// reading, so that the directory, which starts actors one after the other, never waits on
    /// the database.
    ticket: Option<Ticket>,
    /// Another hub process committed a newer version: reload before deciding.
    stale: bool,
    last_active: Instant,
    timer: Option<JoinHandle<()>>,
}

/// Messages a ticket actor handles.
#[derive(Debug)]
pub enum TicketMsg {
    /// Apply an action by a user.
    Apply {
        /// Who acts.
        by: Principal,
        /// Their display name, for the notifications' wording.
        by_name: String,
        /// What they do.
        action: Action,
        /// The idempotent request it answers, committed with the change.
        mark: Option<crate::domain::IdempotencyMark>,
        /// The outcome.
        reply: RpcReplyPort<Result<Applied, TicketError>>,
    },
    /// Another hub process committed this version of the ticket.
    Changed(i64),
    /// Stop if nothing happened for the idle period.
    IdleCheck,
    /// Describe the actor.
    Snapshot(RpcReplyPort<TicketSnapshot>),
    /// Panic inside the handler, for fault-injection tests.
    #[cfg(feature = "testing")]
    InjectFault,
}

impl Keyed for TicketActor {
    type Key = TicketId;
    const KIND: &'static str = "ticket";

    fn label(key: TicketId) -> String {
        format!("ticket:{key}")
    }

    fn arguments(&self, key: TicketId) -> TicketId {
        key
    }
}

impl Actor for TicketActor {
    type Msg = TicketMsg;
    type State = TicketState;
    type Arguments = TicketId;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        id: TicketId,
    ) -> Result<Self::State, ActorProcessingErr> {
        let timer = myself.send_interval(self.idle.max(Duration::from_millis(100)) / 2, || {
            TicketMsg::IdleCheck
        });
        Ok(TicketState {
            id,
            ticket: None,
            stale: false,
            last_active: Instant::now(),
            timer: Some(timer),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.timer.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TicketMsg::Apply {
                by,
                by_name,
                action,
                mark,
                reply,
            } => {
                state.last_active = Instant::now();
                let result = self
                    .apply(state, by, &by_name, &action, mark.as_ref())
                    .await;
                match result {
                    Ok((committed, _))
                        if state
                            .ticket
                            .as_ref()
                            .is_some_and(|t| t.version == committed.ticket.version) =>
                    {
                        // Nothing changed (an edit to the values the ticket has).
                        let _ = reply.send(Ok(Applied {
                            ticket: committed.ticket,
                            comment: None,
                        }));
                    }
                    Ok((committed, before)) => {
                        state.ticket = Some(committed.ticket.clone());
                        self.deps.publish(crate::ports::BusEvent::Ticket(
                            committed.ticket.id,
                            committed.ticket.version,
                        ));
                        let _ = reply.send(Ok(Applied {
                            ticket: committed.ticket,
                            comment: committed.comment.clone(),
                        }));
                        // Stored before sent: fan-out starts only after the commit.
                        self.deps.deliver(committed.notifications);
                        if let Some(after) = &state.ticket {
                            self.board(before, &action, after, committed.comment);
                        }
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            TicketMsg::Snapshot(reply) => {
                let _ = reply.send(TicketSnapshot {
                    key: state.ticket.as_ref().map(Ticket::key),
                    status: state.ticket.as_ref().map(|t| t.status),
                    idle: state.last_active.elapsed(),
                });
            }
            TicketMsg::Changed(version) => {
                if state.ticket.as_ref().is_some_and(|t| version > t.version) {
                    state.stale = true;
                }
            }
            TicketMsg::IdleCheck => {
                if state.last_active.elapsed() >= self.idle {
                    myself.stop(Some("idle".into()));
                }
            }
            #[cfg(feature = "testing")]
            TicketMsg::InjectFault => {
                panic!("injected fault in the actor of ticket {}", state.id)
            }
        }
        Ok(())
    }
}

impl TicketActor {
    /// Tells the project's board what the committed action did.
    fn board(
        &self,
        before: crate::ticket_domain::TicketStatus,
        action: &Action,
        after: &Ticket,
        comment: Option<Comment>,
    ) {
        use crate::room::{BoardAction, RoomEvent};
        let ticket = Arc::new(after.clone());
        let changed = after.status != before || !matches!(action, Action::Comment { .. });
        if changed {
            let action = if after.status != before {
                BoardAction::StatusChanged
            } else {
                BoardAction::Updated
            };
            self.deps.board(RoomEvent::TicketUpdate {
                action,
                ticket: ticket.clone(),
            });
        }
        if let Some(comment) = comment {
            self.deps.board(RoomEvent::CommentAdded {
                ticket,
                comment: Arc::new(comment),
            });
        }
    }

    /// The `ticket_mentioned` drafts of an action's text: a comment's mentions, or those an
    /// edit of the description adds. They go to the people named who may see the ticket (its
    /// project's members, its creator and assignees, admins), are active, and are not told of
    /// the change already; never to the actor.
    #[allow(clippy::too_many_arguments)]
    async fn mention_drafts(
        &self,
        before: &Ticket,
        after: &Ticket,
        by: Principal,
        by_name: &str,
        action: &Action,
        change: &crate::ticket_domain::Change,
        told: &[crate::notification::Draft],
    ) -> Result<Vec<crate::notification::Draft>, StoreError> {
        use crate::mention::mentions;
        let (text, names) = match action {
            Action::Comment { .. } => {
                let text = change.comment.clone().unwrap_or_default();
                let names = mentions(&text);
                (text, names)
            }
            Action::Edit(_)
                if change
                    .edits
                    .iter()
                    .any(|e| e.field == crate::ticket_domain::Field::Description) =>
            {
                let had = mentions(&before.description);
                let names = mentions(&after.description)
                    .into_iter()
                    .filter(|n| !had.iter().any(|h| h.eq_ignore_ascii_case(n)))
                    .collect();
                (after.description.clone(), names)
            }
            _ => return Ok(Vec::new()),
        };
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let store = &self.deps.store;
        let members = store
            .project_by_id(after.project_id)
            .await?
            .map(|p| p.member_ids)
            .unwrap_or_default();
        let mut mentioned = Vec::new();
        for name in &names {
            let Some((user, _)) = store.user_with_hash(name).await? else {
                continue;
            };
            let sees = user.role == crate::domain::Role::Admin
                || members.contains(&user.id)
                || after.created_by == user.id
                || after.assignees.contains(&user.id);
            if user.is_active
                && sees
                && user.id != by.id
                && !told.iter().any(|d| d.recipient == user.id)
                && !mentioned.contains(&user.id)
            {
                mentioned.push(user.id);
            }
        }
        if mentioned.is_empty() {
            return Ok(Vec::new());
        }
        let event = crate::event::EventType::TicketMentioned;
        let (title, message) = ticket_wording(
            &event,
            after,
            &EventDetails {
                actor_name: by_name,
                comment: Some(&text),
                ..EventDetails::default()
            },
        );
        let audience = self.deps.audience(&event, &mentioned).await?;
        Ok(audience.drafts(
            Parties {
                actor: Some(by.id),
                creator: Some(after.created_by),
                assignees: &after.assignees,
                mentioned: &mentioned,
                ..Parties::default()
            },
            &Content {
                event,
                title,
                message,
                ticket: Some(TicketSummary::from(after)),
                data: "{}".into(),
                action_url: Some(format!("/tickets/{}/", after.id)),
                cause: crate::notification::Cause {
                    action: change.action,
                    actor: Some(by.id),
                },
            },
        ))
    }

    /// Decides, drafts and commits one action on the latest committed state of the ticket.
    ///
    /// Another hub process may have moved the ticket since this actor loaded it. Three things
    /// keep a decision from resting on a stale copy: a bus notice marks the copy stale (reload
    /// before deciding); a refusal is re-checked against the database before it is answered
    /// (one read, and only on refusals); and the commit's version check turns a race lost to
    /// another process into a reload and a new decision.
    async fn apply(
        &self,
        state: &mut TicketState,
        by: Principal,
        by_name: &str,
        action: &Action,
        mark: Option<&crate::domain::IdempotencyMark>,
    ) -> Result<(Committed, crate::ticket_domain::TicketStatus), TicketError> {
        let store = &self.deps.store;
        let mut ticket = match state.ticket.take() {
            Some(t) if !state.stale => t,
            _ => store.ticket(state.id).await?.ok_or(TicketError::NotFound)?,
        };
        state.stale = false;
        let outcome = self.decide(&mut ticket, by, by_name, action, mark).await;
        state.ticket = Some(ticket);
        outcome
    }

    /// [`TicketActor::apply`] on the actor's copy of the ticket, which it keeps current.
    async fn decide(
        &self,
        current: &mut Ticket,
        by: Principal,
        by_name: &str,
        action: &Action,
        mark: Option<&crate::domain::IdempotencyMark>,
    ) -> Result<(Committed, crate::ticket_domain::TicketStatus), TicketError> {
        let store = &self.deps.store;
        for _attempt in 0..3 {
            let ticket = &*current;
            let change = match transition(ticket, by, action) {
                Ok(change) => change,
                Err(refused) => {
                    let latest = store
                        .ticket(ticket.id)
                        .await?
                        .ok_or(TicketError::NotFound)?;
                    if latest.version == ticket.version {
                        return Err(refused.into());
                    }
                    *current = latest;
                    continue;
                }
            };
            if let Action::Assign { developer_ids } = action {
                let found = store.users_by_ids(developer_ids).await?;
                let all_developers = developer_ids.iter().all(|id| {
                    found.iter().any(|u| {
                        u.id == *id && u.is_active && u.role == crate::domain::Role::Developer
                    })
                });
                if !all_developers {
                    return Err(TransitionError::Invalid(
                        "developer_ids: Every id must be an active developer.".into(),
                    )
                    .into());
                }
            }
            if matches!(action, Action::Edit(_)) && change.edits.is_empty() {
                // An edit that changes nothing: nothing to commit, tell or record. As for a
                // refusal, the copy is checked against the database first (one read, on
                // no-ops only): another node may have changed the fields since.
                let latest = store
                    .ticket(ticket.id)
                    .await?
                    .ok_or(TicketError::NotFound)?;
                if latest.version != ticket.version {
                    *current = latest;
                    continue;
                }
                let unchanged = Committed {
                    ticket: ticket.clone(),
                    notifications: Vec::new(),
                    comment: None,
                };
                return Ok((unchanged, ticket.status));
            }
            let after = change.applied_to(ticket);
            let (title, message) = ticket_wording(
                &change.event,
                &after,
                &EventDetails {
                    actor_name: by_name,
                    reason: change.reason.as_deref(),
                    comment: change.comment.as_deref(),
                    changes: &change.edits,
                },
            );
            let mut candidates = vec![after.created_by];
            candidates.extend(&after.assignees);
            let audience = self.deps.audience(&change.event, &candidates).await?;
            let mut drafts = audience.drafts(
                Parties {
                    actor: Some(by.id),
                    creator: Some(after.created_by),
                    assignees: &after.assignees,
                    newly_assigned: &change.newly_assigned,
                    ..Parties::default()
                },
                &Content {
                    event: change.event.clone(),
                    title,
                    message,
                    ticket: Some(TicketSummary::from(&after)),
                    data: "{}".into(),
                    action_url: Some(format!("/tickets/{}/", after.id)),
                    cause: crate::notification::Cause {
                        action: change.action,
                        actor: Some(by.id),
                    },
                },
            );
            let mentioned = self
                .mention_drafts(ticket, &after, by, by_name, action, &change, &drafts)
                .await?;
            drafts.extend(mentioned);
            match store
                .commit_change(ticket.id, ticket.version, &change, by.id, drafts, mark)
                .await
            {
                Ok(committed) => return Ok((committed, ticket.status)),
                Err(StoreError::Stale(_)) => {
                    *current = store
                        .ticket(ticket.id)
                        .await?
                        .ok_or(TicketError::NotFound)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(TicketError::Unavailable)
    }
}
