//! Sign-up notices to the super admins, coalesced by email.
//!
//! Every registration is a `user_registered` notification in the admins' inboxes and on their
//! sockets at once. Email is coalesced: the first sign-up after a quiet spell is mailed at once
//! and opens a window; the sign-ups during the window are mailed together, in one digest per
//! admin, when it closes, and the digest opens the next window. So an admin gets at most one
//! sign-up email per window, however many clients register.
//!
//! The digest waits in memory: a process that stops inside a window does not mail it (the
//! sign-ups' own notifications are committed and stay in the inboxes).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::User;
use crate::notifier::{Content, Deps};
use crate::ports::StoreError;
use crate::routing::{Channel, EventType, Parties};

/// The coalescing state: when the current window closes, and who registered during it.
pub struct Signups {
    window: Duration,
    state: Mutex<State>,
}

/// A sign-up waiting for the digest.
struct Signup {
    id: crate::domain::UserId,
    name: String,
    username: String,
}

#[derive(Default)]
struct State {
    closes: Option<Instant>,
    pending: Vec<Signup>,
}

impl Signups {
    /// Coalesces sign-up emails over `window`; a zero window mails every sign-up.
    pub fn new(window: Duration) -> Arc<Self> {
        Arc::new(Self {
            window,
            state: Mutex::default(),
        })
    }

    /// Tells the super admins that a client registered; returns how many were told.
    pub async fn registered(
        self: &Arc<Self>,
        deps: &Arc<Deps>,
        user: &User,
        data: String,
    ) -> Result<usize, StoreError> {
        let mail_now = self.window.is_zero() || self.admit(deps, user);
        let event = EventType::UserRegistered;
        let audience = deps.audience(&event, &[]).await?;
        let mut drafts = audience.drafts(
            Parties {
                actor: Some(user.id),
                ..Parties::default()
            },
            &Content {
                event,
                title: "New User Registered".into(),
                message: format!(
                    "A new client has registered: {} ({})",
                    user.name(),
                    user.username
                ),
                ticket: None,
                data,
                action_url: Some(format!("/users/{}/", user.id)),
                cause: crate::notification::Cause {
                    action: "register",
                    actor: Some(user.id),
                },
            },
        );
        if !mail_now {
            for draft in &mut drafts {
                draft.deliveries.retain(|(c, _)| *c != Channel::Email);
            }
        }
        let queued = Deps::queued_channels(&drafts);
        let notifications = deps.store.commit_notifications(drafts, None).await?;
        let count = notifications.len();
        deps.deliver_queued(notifications, &queued);
        Ok(count)
    }

    /// Whether this sign-up is mailed at once (no window is open: one opens now); otherwise
    /// it waits for the digest.
    fn admit(self: &Arc<Self>, deps: &Arc<Deps>, user: &User) -> bool {
        let mut state = self.state.lock().expect("signups poisoned");
        if state.closes.is_some() {
            state.pending.push(Signup {
                id: user.id,
                name: user.name().to_owned(),
                username: user.username.clone(),
            });
            return false;
        }
        state.closes = Some(Instant::now() + self.window);
        tokio::spawn(self.clone().digests(deps.clone()));
        true
    }

    /// Mails a digest at the end of each window that had sign-ups, until a window passes
    /// without any.
    async fn digests(self: Arc<Self>, deps: Arc<Deps>) {
        loop {
            let closes = self.state.lock().expect("signups poisoned").closes;
            let Some(closes) = closes else { return };
            tokio::time::sleep_until(closes).await;
            let pending = {
                let mut state = self.state.lock().expect("signups poisoned");
                if state.pending.is_empty() {
                    state.closes = None;
                    return;
                }
                state.closes = Some(Instant::now() + self.window);
                std::mem::take(&mut state.pending)
            };
            if let Err(e) = digest(&deps, &pending).await {
                tracing::warn!(error = %e, users = pending.len(), "cannot send the sign-up digest");
            }
        }
    }
}

/// One email per super admin naming the clients who registered during a window. It is a
/// `user_registered` notification of its own, sent by email only.
async fn digest(deps: &Deps, users: &[Signup]) -> Result<(), StoreError> {
    let event = EventType::UserRegistered;
    let audience = deps.audience(&event, &[]).await?;
    let names: Vec<String> = users
        .iter()
        .map(|u| format!("{} ({})", u.name, u.username))
        .collect();
    let mut drafts = audience.drafts(
        Parties::default(),
        &Content {
            event,
            title: format!("{} New Users Registered", users.len()),
            message: format!("New clients have registered: {}", names.join(", ")),
            ticket: None,
            data: user_ids_json(users),
            action_url: Some("/users/".into()),
            cause: crate::notification::Cause {
                action: "register",
                actor: None,
            },
        },
    );
    for draft in &mut drafts {
        draft.deliveries.retain(|(c, _)| *c == Channel::Email);
    }
    drafts.retain(|d| !d.deliveries.is_empty());
    let queued = Deps::queued_channels(&drafts);
    let notifications = deps.store.commit_notifications(drafts, None).await?;
    metrics::counter!("tickethub_signup_digests_total").increment(notifications.len() as u64);
    deps.deliver_queued(notifications, &queued);
    Ok(())
}

/// `{"user_ids":[…]}`, the digest's data: numbers only, so no JSON library is needed here
/// (names may hold any letter, and are in the message). Compact, as a JSON library writes it.
fn user_ids_json(users: &[Signup]) -> String {
    let ids: Vec<String> = users.iter().map(|u| u.id.0.to_string()).collect();
    format!("{{\"user_ids\":[{}]}}", ids.join(","))
}
