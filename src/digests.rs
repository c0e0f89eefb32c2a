//! Digests: the email a person asked for (`PATCH /api/users/me/` `digest`), hourly or daily
//! at a local time, summing up their unread notifications that reached them on no other
//! channel, grouped by ticket.
//!
//! Every node runs a poster. Each person who wants digests has one row, the next digest
//! (`src/store/digests.rs`): the poster claims due rows for a lease, sends each, and moves
//! the row on (what it covers, when it is next due) in one write. A node that dies holding a
//! claim loses nothing: once the lease runs out another node (or the same one, restarted)
//! sends it. A node that dies between the SMTP server's answer and that write leaves a digest
//! that is sent again, under the same `Message-ID` (mail clients show it once); nothing
//! else is ever sent twice, since the claim and the move are guarded by the node's name.

use std::sync::Arc;
use std::time::Duration;

use tickethub_actors::domain::User;
use tickethub_actors::notification::Notification;
use tickethub_actors::ports::{DeliveryJob, DueDigest, Store, StoreError, Transport};
use tickethub_actors::routing::{Channel, EventType};

use crate::delivery::templates::DIGEST;

/// How often the database is looked at for due digests.
const POLL: Duration = Duration::from_millis(500);

/// The most notifications one digest lists.
pub const MOST: i64 = 200;

/// What the poster needs.
#[derive(Clone)]
pub struct Digests {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The email transport.
    pub email: Arc<dyn Transport>,
    /// This node's name, on its claims.
    pub node: String,
    /// How long a claim holds: past a send's timeout.
    pub lease: Duration,
}

/// What a node's poster sends digests with: the email transport, and how long a claim holds
/// (the delivery lease).
pub struct Email(Arc<dyn Transport>, Duration);

/// The email transport of a hub's delivery settings, if email is on.
pub fn email(delivery: &tickethub_actors::DeliveryConfig) -> Option<Email> {
    delivery
        .transports
        .iter()
        .find(|(c, _)| *c == Channel::Email)
        .map(|(_, t)| Email(t.clone(), delivery.policy.lease))
}

impl Email {
    /// The poster of the node `state` is.
    pub fn on(self, state: &crate::state::AppState) -> Digests {
        Digests {
            store: state.store.clone(),
            email: self.0,
            node: state.hub.node().to_owned(),
            lease: self.1,
        }
    }
}

/// A digest as it would go out now: to whom, and what.
pub struct Drafted {
    /// The email to send, if there is anything to say and somewhere to say it.
    pub job: Option<DeliveryJob>,
    /// How many notifications it lists.
    pub count: usize,
    /// Why nothing goes, when nothing does.
    pub why_not: Option<String>,
}

/// Sends the digests due, on this node, until `stop`.
pub fn spawn(
    digests: Digests,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let digests = Arc::new(digests);
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let pass = tokio::spawn({
                let digests = digests.clone();
                async move { pass(&digests).await }
            });
            let busy = match pass.await {
                Ok(Ok(sent)) => sent > 0,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the digests due");
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "the digest poster failed");
                    false
                }
            };
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
    })
}

/// Claims the digests due and sends each; answers how many it claimed.
async fn pass(digests: &Digests) -> Result<usize, StoreError> {
    let store = &digests.store;
    let now = store.now();
    let lease = chrono::Duration::from_std(digests.lease).unwrap_or_default();
    let due = store
        .claim_digests(&digests.node, now, now + lease, 20)
        .await?;
    let claimed = due.len();
    for digest in due {
        send(digests, digest).await?;
    }
    Ok(claimed)
}

/// Sends one digest and moves its row on. A send the SMTP server refuses for now leaves the
/// row claimed: it is tried again once the lease runs out.
async fn send(digests: &Digests, digest: DueDigest) -> Result<(), StoreError> {
    let store = digests.store.as_ref();
    let drafted = draft(store, &digest).await?;
    tracing::debug!(
        user = digest.user.0,
        listed = drafted.count,
        why_not = drafted.why_not.as_deref().unwrap_or(""),
        "a digest is due"
    );
    let quiet = store.quiet(digest.user).await?;
    let Some(schedule) = quiet.digest else {
        // Switched off since it was claimed: the row is gone with it.
        return Ok(());
    };
    let mut sent = 0;
    if let Some(job) = &drafted.job {
        match digests.email.send(job).await {
            Ok(_) => sent = drafted.count as i64,
            // Refused for good (the address, say): this one is not sent, the next is due.
            Err(e @ tickethub_actors::ports::TransportError::Permanent(_)) => {
                tracing::warn!(user = digest.user.0, error = %e, "a digest was refused; it is skipped");
                metrics::counter!("tickethub_digests_total", "outcome" => "refused").increment(1);
            }
            Err(e) => {
                tracing::warn!(user = digest.user.0, error = %e, "a digest was not sent; it is tried again");
                metrics::counter!("tickethub_digests_total", "outcome" => "retry").increment(1);
                return Ok(());
            }
        }
    }
    let next = schedule.next_due(digest.due_at.max(store.now()), quiet.time_zone.as_deref());
    if !store
        .digest_done(digest.user, &digests.node, digest.due_at, next, sent)
        .await?
    {
        tracing::warn!(user = digest.user.0, "a digest's claim was lost");
    }
    let outcome = if sent > 0 { "sent" } else { "empty" };
    metrics::counter!("tickethub_digests_total", "outcome" => outcome).increment(1);
    Ok(())
}

/// A person's digest as it stands: what it lists, up to `digest.due_at`, and the email.
pub async fn draft(store: &dyn Store, digest: &DueDigest) -> Result<Drafted, StoreError> {
    let nothing = |why: &str| Drafted {
        job: None,
        count: 0,
        why_not: Some(why.to_owned()),
    };
    let Some(user) = store.user_by_id(digest.user).await? else {
        return Ok(nothing("the person is gone"));
    };
    if !user.is_active {
        return Ok(nothing("the person is deactivated"));
    }
    let listed = store
        .digest_contents(user.id, digest.since, digest.due_at, MOST)
        .await?;
    if listed.is_empty() {
        return Ok(nothing(
            "no unread notification reached them only in the app",
        ));
    }
    // Asked for in its own right: the switches of the notifications' own emails (often off
    // for those who take a digest instead) do not stop it; an address not verified, or
    // refused for good, does.
    let prefs = tickethub_actors::routing::Preferences::default();
    let kind: EventType = DIGEST.parse().expect("infallible");
    let address = match tickethub_actors::routing::reach(Channel::Email, &kind, &user, &prefs) {
        Ok(address) => address,
        Err(why) => return Ok(nothing(&why.explain(Channel::Email))),
    };
    let quiet = store.quiet(user.id).await?;
    let count = listed.len();
    Ok(Drafted {
        job: Some(job(&user, address, digest, listed, quiet)),
        count,
        why_not: None,
    })
}

/// The email of a digest: a notification of type `digest` of its own (never stored), carrying
/// the notifications it lists.
fn job(
    user: &User,
    address: String,
    digest: &DueDigest,
    listed: Vec<Notification>,
    quiet: tickethub_actors::ports::Quiet,
) -> DeliveryJob {
    let name = match user.display_name.trim() {
        "" => user.username.clone(),
        name => name.to_owned(),
    };
    DeliveryJob {
        // No delivery row: no bounce address of its own.
        id: 0,
        channel: Channel::Email,
        address,
        attempts: 0,
        notification: Notification {
            // Its Message-ID: the same each time this digest is sent.
            id: digest.due_at.timestamp(),
            user_id: user.id,
            seq: 0,
            notification_type: DIGEST.parse().expect("infallible"),
            title: "Digest".into(),
            message: String::new(),
            ticket: None,
            data: "{}".into(),
            action_url: None,
            is_read: false,
            read_at: None,
            created_at: digest.due_at,
        },
        recipient_name: name,
        recipients: Vec::new(),
        device: None,
        seen: false,
        suppressed: None,
        locale: quiet.locale,
        time_zone: quiet.time_zone,
        batch: listed,
    }
}

/// What a person's digest would say if it were sent now: its address, subject and text, or
/// why none would go (`tickethub digest preview`).
pub async fn preview(
    store: &dyn Store,
    templates: &crate::delivery::templates::Templates,
    username: &str,
    public_url: Option<&str>,
) -> Result<String, String> {
    use crate::delivery::templates::{Links, Part};
    let (user, _) = store
        .user_with_hash(username)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user `{username}`"))?;
    let quiet = store.quiet(user.id).await.map_err(|e| e.to_string())?;
    let Some(schedule) = quiet.digest else {
        return Err(format!(
            "`{username}` has no digest (PATCH /api/users/me/ with {{\"digest\": {{\"every\": \"daily\", \"at\": \"08:00\"}}}})"
        ));
    };
    let next = store
        .next_digest(user.id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("`{username}` has no digest pending"))?;
    let now = store.now();
    let digest = DueDigest {
        due_at: now,
        ..next.clone()
    };
    let drafted = draft(store, &digest).await.map_err(|e| e.to_string())?;
    let mut out = format!(
        "Digest of {username}: {} at {} ({}), next due {}\n",
        schedule.every.as_str(),
        schedule.at.name(),
        quiet.time_zone.as_deref().unwrap_or("UTC"),
        crate::wire::timestamp(next.due_at),
    );
    let Some(job) = drafted.job else {
        out.push_str(&format!(
            "Nothing would be sent now: {}.\n",
            drafted.why_not.unwrap_or_default()
        ));
        return Ok(out);
    };
    let hub = public_url.map(|u| u.trim_end_matches('/').to_owned());
    let links = Links {
        hub_url: hub.as_deref(),
        ..Links::default()
    };
    let subject = templates.render_with(Part::Subject, &job, &links)?;
    let text = templates.render_with(Part::Text, &job, &links)?;
    out.push_str(&format!(
        "To: {}\nSubject: {subject}\n\n{text}\n",
        job.address
    ));
    Ok(out)
}
