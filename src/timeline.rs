//! "What happened to this notification?" and "why wasn't this user told?": the timeline of a
//! notification and the trace of a ticket's routing decisions, as JSON for the API and as text
//! for the command line.

use std::collections::HashMap;
use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User, UserId};
use tickethub_actors::ports::{EscalationRow, Store, StoreError, TimelineRecord};
use tickethub_actors::routing::{why, Channel, LeftOut, Parties, RoutingTable};
use tickethub_actors::ticket_domain::Ticket;

/// A timeline time: RFC 3339 in UTC, to the millisecond (events a few ms apart stay ordered).
pub fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn usernames(
    store: &dyn Store,
    ids: impl IntoIterator<Item = UserId>,
) -> Result<HashMap<UserId, String>, StoreError> {
    let mut ids: Vec<UserId> = ids.into_iter().collect();
    ids.sort();
    ids.dedup();
    Ok(store
        .users_by_ids(&ids)
        .await?
        .into_iter()
        .map(|u| (u.id, u.username))
        .collect())
}

fn who(id: Option<UserId>, names: &HashMap<UserId, String>) -> Value {
    match id {
        Some(id) => json!({"id": id.0, "username": names.get(&id)}),
        None => Value::Null,
    }
}

/// An escalation step as operators and timelines show it.
pub fn escalation_json(e: &EscalationRow) -> Value {
    json!({
        "id": e.id,
        "notification_id": e.notification_id,
        "user_id": e.user_id.0,
        "ticket_id": e.ticket.map(|t| t.0),
        "policy": e.step.policy,
        "step": e.step.step,
        "unless": e.step.unless.as_str(),
        "channels": e.step.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "also": also_names(&e.step),
        "due_at": at(e.due_at),
        "status": e.status,
        "detail": e.detail,
        "claimed_by": e.claimed_by,
        "created_at": at(e.created_at),
        "updated_at": at(e.updated_at),
    })
}

/// A step's `also`: its audiences, then its on-call targets (`oncall:primary:next`).
fn also_names(step: &tickethub_actors::policy::PlannedStep) -> Vec<String> {
    step.also
        .iter()
        .map(|a| a.as_str().to_owned())
        .chain(step.oncall.iter().map(|t| t.name()))
        .collect()
}

/// Who reads a timeline, which decides what it shows of the hub's outbound side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// An admin: every delivery, with its destination and the receiver's error.
    Operator,
    /// An API key with `admin:read`: as an admin, but a webhook's URL shows its scheme and
    /// host only (a URL often carries its receiver's secret, and a key is a machine's, kept in
    /// more places than a person's session).
    Key,
    /// The notification's recipient: how each delivery went, with their own addresses and
    /// their providers' answers (a bounce names their address), but nothing of a webhook's
    /// destination or its receiver's answers: operator data, and a webhook URL often carries
    /// its receiver's secret, as Slack's do.
    Recipient,
}

impl Viewer {
    /// A delivery's destination as this viewer sees it. A deployment channel's (a webhook's
    /// URL) is operator data.
    pub fn address(self, channel: Channel, address: &str) -> Option<std::borrow::Cow<'_, str>> {
        let deployment = channel.reach() == tickethub_actors::routing::Reach::Deployment;
        match (self, deployment) {
            (Viewer::Recipient, true) => None,
            (Viewer::Key, true) => Some(std::borrow::Cow::Owned(masked_url(address))),
            _ => Some(std::borrow::Cow::Borrowed(address)),
        }
    }

    /// A delivery's error as this viewer sees it: a deployment channel's is operator data.
    pub fn error(self, channel: Channel, error: Option<&str>) -> Option<&str> {
        let deployment = channel.reach() == tickethub_actors::routing::Reach::Deployment;
        match (self, deployment) {
            (Viewer::Recipient, true) => None,
            _ => error,
        }
    }
}

/// A URL shown without what may be its secret: `https://hooks.example.com/…`.
pub fn masked_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}/…", u.scheme()),
            (Some(host), None) => format!("{}://{host}/…", u.scheme()),
            _ => "…".into(),
        },
        Err(_) => "…".into(),
    }
}

/// Everything recorded about one notification.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Timeline {
    /// The notification: id, user_id, username, seq, notification_type, title, is_read, ticket.
    #[schema(value_type = Object)]
    pub notification: Value,
    /// Its events, oldest first. Each has `event` (`committed`, `oncall_resolved`,
    /// `scheduled_send_due`, `pushed`, `acked`, `read`, `acknowledged` (with `via` and `by`),
    /// `deleted`, `delivery_attempt`,
    /// `delivery_pending`, `escalation_scheduled`, `escalation_fired`, `escalation_cancelled`,
    /// `escalation_failed`) and `at`, with the fields of its kind.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
}

/// Every recorded event of a notification, in order, as `viewer` may see it.
pub async fn timeline(
    store: &dyn Store,
    record: TimelineRecord,
    viewer: Viewer,
) -> Result<Timeline, StoreError> {
    let n = &record.notification;
    let actor = record.event.as_ref().and_then(|e| e.actor).or(record.actor);
    let names = usernames(store, actor.into_iter().chain([n.user_id])).await?;
    let mut events: Vec<(DateTime<Utc>, u8, Value)> = Vec::new();
    let action = record
        .event
        .as_ref()
        .map(|e| e.action.clone())
        .or(record.action.clone());
    events.push((
        n.created_at,
        0,
        json!({
            "event": "committed",
            "at": at(n.created_at),
            "action": action,
            "actor": who(actor, &names),
            "ticket_event_id": record.event.as_ref().map(|e| e.id),
        }),
    ));
    let data = serde_json::from_str::<Value>(&n.data).unwrap_or(Value::Null);
    // A send to whoever was on call says who was chosen, and why.
    if let Some(paged) = data.get("oncall").filter(|p| p.is_object()) {
        let resolved = paged["resolved_at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(n.created_at);
        let mut event = paged.clone();
        event["event"] = "oncall_resolved".into();
        event["at"] = at(resolved).into();
        events.push((resolved, 0, event));
    }
    // A scheduled send says when it was due, and how late it fired.
    if let Some(sent) = data.get("scheduled_send").cloned() {
        let due = sent["send_at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(n.created_at);
        events.push((
            due,
            0,
            json!({
                "event": "scheduled_send_due",
                "at": at(due),
                "scheduled_send_id": sent["id"],
                "fired_at": sent["fired_at"],
                "late_seconds": sent["late_seconds"],
            }),
        ));
    }
    for p in &record.pushes {
        // A run's live seqs were each written as soon as they were committed: the
        // notification's own write is its commit time, within the run's span.
        let at = n.created_at.clamp(p.first_at, p.at.max(p.first_at));
        events.push((
            at,
            1,
            json!({"event": "pushed", "at": self::at(at), "sockets": p.sockets, "node": p.node}),
        ));
    }
    if let Some(t) = record.acked_at {
        events.push((t, 2, json!({"event": "acked", "at": at(t)})));
    }
    if let (true, Some(t)) = (n.is_read, n.read_at) {
        events.push((t, 3, json!({"event": "read", "at": at(t)})));
    }
    // Acknowledged from outside the hub: by an SMS reply, say.
    for a in store.acknowledgements(n.id).await? {
        events.push((
            a.at,
            3,
            json!({"event": "acknowledged", "at": at(a.at), "via": a.via, "by": who(Some(a.user), &names)}),
        ));
    }
    if let Some(t) = record.deleted_at {
        events.push((t, 4, json!({"event": "deleted", "at": at(t)})));
    }
    for a in &record.attempts {
        events.push((
            a.at,
            5,
            json!({
                "event": "delivery_attempt",
                "at": at(a.at),
                "delivery_id": a.delivery_id,
                "channel": a.channel.as_str(),
                "address": viewer.address(a.channel, &a.address),
                "attempt": a.attempt,
                "outcome": a.outcome,
                "error": viewer.error(a.channel, a.error.as_deref()),
                "node": a.node,
            }),
        ));
    }
    // What the provider said of a message after taking it (delivered to the handset, or not).
    for r in store.receipts(n.id).await? {
        events.push((
            r.at,
            5,
            json!({
                "event": "delivery_receipt",
                "at": at(r.at),
                "delivery_id": r.delivery_id,
                "channel": r.channel.as_str(),
                "address": viewer.address(r.channel, &r.address),
                "status": r.status,
                "error_code": r.error_code,
                "detail": viewer.error(r.channel, r.detail.as_deref()),
            }),
        ));
    }
    for d in record
        .deliveries
        .iter()
        .filter(|d| d.status == "QUEUED" || d.status == "SENDING")
    {
        events.push((
            d.next_attempt_at,
            6,
            json!({
                "event": "delivery_pending",
                "at": at(d.next_attempt_at),
                "delivery_id": d.id,
                "channel": d.channel.as_str(),
                "address": viewer.address(d.channel, &d.address),
                "status": d.status,
                "attempts": d.attempts,
            }),
        ));
    }
    for e in &record.escalations {
        let step = json!({"policy": e.step.policy, "step": e.step.step});
        events.push((
            e.created_at,
            7,
            json!({
                "event": "escalation_scheduled",
                "at": at(e.created_at),
                "escalation": step,
                "due_at": at(e.due_at),
                "unless": e.step.unless.as_str(),
                "channels": e.step.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                "also": also_names(&e.step),
                "status": e.status,
            }),
        ));
        let settled = match e.status.as_str() {
            "FIRED" => Some(("escalation_fired", "detail")),
            "CANCELLED" => Some(("escalation_cancelled", "reason")),
            "FAILED" => Some(("escalation_failed", "reason")),
            _ => None,
        };
        if let Some((event, key)) = settled {
            events.push((
                e.updated_at,
                8,
                json!({
                    "event": event,
                    "at": at(e.updated_at),
                    "escalation": step,
                    key: e.detail,
                    "node": e.claimed_by,
                }),
            ));
        }
    }
    events.sort_by_key(|(t, order, _)| (*t, *order));
    Ok(Timeline {
        notification: json!({
            "id": n.id,
            "user_id": n.user_id.0,
            "username": names.get(&n.user_id),
            "seq": n.seq,
            "notification_type": n.notification_type.as_str(),
            "title": n.title,
            "is_read": n.is_read,
            "ticket": n.ticket.as_ref().map(|t| json!({"id": t.id.0, "key": t.key})),
        }),
        events: events.into_iter().map(|(_, _, v)| v).collect(),
    })
}

/// The routing decision of every event of a ticket, replayed for one user.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Trace {
    /// The ticket: id, key, title, status, project.
    #[schema(value_type = Object)]
    pub ticket: Value,
    /// The user: id, username, role, is_active, member.
    #[schema(value_type = Object)]
    pub user: Value,
    /// Which facts are as they are now.
    pub note: &'static str,
    /// Per event: `recipient`, and either `reason` (`not_a_member`, `not_routed`, `actor`,
    /// `inactive`, `no_route`) with an `explanation`, or the `audiences` that named the user,
    /// each outbound `channel` (reached, or why not) and the `notification` with its timeline.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
}

/// Replays the routing decision of every event of `ticket` for `user`: whether they were a
/// recipient and, if not, which rule left them out; if so, which channels reached them and
/// the notification's timeline. Membership, roles, addresses and preferences are as they are
/// now; the ticket's parties (creator, assignees) as they were at each event.
pub async fn trace(
    store: &dyn Store,
    routing: &RoutingTable,
    outbound: &[Channel],
    ticket: &Ticket,
    user: &User,
) -> Result<Trace, StoreError> {
    let events = store.ticket_events(ticket.id).await?;
    let admins = store.users_with_role(Role::Admin).await?;
    let mut admin_ids: Vec<UserId> = admins.iter().map(|u| u.id).collect();
    let mut super_ids: Vec<UserId> = admins
        .iter()
        .filter(|u| u.is_superuser)
        .map(|u| u.id)
        .collect();
    // The audiences list active admins only; a deactivated admin traced is still named by
    // them, so that the trace says `inactive`, not that no audience names them.
    if user.role == Role::Admin && !admin_ids.contains(&user.id) {
        admin_ids.push(user.id);
        if user.is_superuser {
            super_ids.push(user.id);
        }
    }
    let member = store
        .membership(ticket.project_id, user.id)
        .await?
        .unwrap_or(false);
    let prefs = store
        .preferences(&[user.id])
        .await?
        .remove(&user.id)
        .unwrap_or_default();
    let notified: HashMap<i64, i64> = store
        .event_notifications(ticket.id, user.id)
        .await?
        .into_iter()
        .collect();
    let names = usernames(store, events.iter().filter_map(|e| e.actor)).await?;
    let mut out = Vec::new();
    for e in &events {
        let route = routing.route(&e.event);
        let parties = Parties {
            actor: e.actor,
            creator: Some(ticket.created_by),
            assignees: &e.assignees,
            newly_assigned: &e.newly_assigned,
            admins: &admin_ids,
            super_admins: &super_ids,
            // Whom a text mentioned is not in the history: a mention is its own notification.
            mentioned: &[],
        };
        let audiences: Vec<&str> = route
            .map(|r| r.audiences.iter().map(|a| a.as_str()).collect())
            .unwrap_or_default();
        let mut item = json!({
            "event_id": e.id,
            "at": at(e.at),
            "notification_type": e.event.as_str(),
            "action": e.action,
            "actor": who(e.actor, &names),
            "status": e.status.as_str(),
            "route": {"audiences": audiences, "channels": route.map(|r| r.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>()).unwrap_or_default()},
        });
        match why(route, &parties, user, member) {
            Err(left) => {
                let explanation = match left {
                    LeftOut::NoRoute => {
                        format!("{} goes to nobody: its route names no audience", e.event)
                    }
                    LeftOut::NotAMember => format!(
                        "{} is not a member of project {}, and {} goes to {}",
                        user.username,
                        ticket.project_key,
                        e.event,
                        audiences.join(", ")
                    ),
                    LeftOut::NotRouted => format!(
                        "{} goes to {}; {} ({}) is none of them for this event",
                        e.event,
                        audiences.join(", "),
                        user.username,
                        user.role.as_str()
                    ),
                    LeftOut::Actor => format!(
                        "{} took this action ({}) themselves, and nobody is told of their own action",
                        user.username, e.action
                    ),
                    LeftOut::Inactive => format!("{} is deactivated", user.username),
                };
                item["recipient"] = false.into();
                item["reason"] = left.as_str().into();
                item["explanation"] = explanation.into();
            }
            Ok(named) => {
                let channels: Vec<Value> = route
                    .map(|r| r.channels.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| {
                        matches!(
                            c.reach(),
                            tickethub_actors::routing::Reach::Personal
                                | tickethub_actors::routing::Reach::Devices
                        )
                    })
                    .map(|c| {
                        if !outbound.contains(&c) {
                            return json!({"channel": c.as_str(), "reached": false, "reason": "no_transport", "explanation": format!("this hub has no {} transport", c.as_str())});
                        }
                        match tickethub_actors::routing::reach(c, &e.event, user, &prefs) {
                            Ok(_) if c == Channel::Push => json!({"channel": c.as_str(), "reached": true, "address": "each registered device"}),
                            Ok(address) => json!({"channel": c.as_str(), "reached": true, "address": address}),
                            Err(u) => json!({"channel": c.as_str(), "reached": false, "reason": u.as_str(), "explanation": u.explain(c)}),
                        }
                    })
                    .collect();
                item["recipient"] = true.into();
                item["audiences"] = named.iter().map(|a| a.as_str()).collect::<Vec<_>>().into();
                item["explanation"] = format!(
                    "{} was a recipient as {}",
                    user.username,
                    named
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
                .into();
                item["channels"] = channels.into();
                item["notification"] = match notified.get(&e.id) {
                    Some(id) => {
                        json!({"id": id, "timeline": format!("/api/notifications/{id}/timeline/")})
                    }
                    None => Value::Null,
                };
            }
        }
        out.push(item);
    }
    Ok(Trace {
        ticket: json!({
            "id": ticket.id.0,
            "key": ticket.key(),
            "title": ticket.title,
            "status": ticket.status.as_str(),
            "project": {"id": ticket.project_id.0, "key": ticket.project_key},
        }),
        user: json!({
            "id": user.id.0,
            "username": user.username,
            "role": user.role.as_str(),
            "is_active": user.is_active,
            "member": member,
        }),
        note: "Membership, roles, addresses and preferences are as they are now; the ticket's creator and assignees as they were at each event.",
        events: out,
    })
}

/// The trace as text, one event per paragraph.
pub fn render_trace(v: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} \"{}\" ({}) for {} ({}, {}member of {})",
        v["ticket"]["key"].as_str().unwrap_or("?"),
        v["ticket"]["title"].as_str().unwrap_or(""),
        v["ticket"]["status"].as_str().unwrap_or("?"),
        v["user"]["username"].as_str().unwrap_or("?"),
        v["user"]["role"].as_str().unwrap_or("?"),
        if v["user"]["member"].as_bool().unwrap_or(false) {
            ""
        } else {
            "not a "
        },
        v["ticket"]["project"]["key"].as_str().unwrap_or("?"),
    );
    for e in v["events"].as_array().into_iter().flatten() {
        let actor = e["actor"]["username"].as_str().unwrap_or("-");
        let _ = writeln!(
            out,
            "\n{}  {} ({} by {})",
            e["at"].as_str().unwrap_or(""),
            e["notification_type"].as_str().unwrap_or("?"),
            e["action"].as_str().unwrap_or("?"),
            actor
        );
        if e["recipient"].as_bool().unwrap_or(false) {
            let _ = writeln!(
                out,
                "  notified: {}",
                e["explanation"].as_str().unwrap_or("")
            );
            for c in e["channels"].as_array().into_iter().flatten() {
                let _ = if c["reached"].as_bool().unwrap_or(false) {
                    writeln!(
                        out,
                        "    {}: to {}",
                        c["channel"].as_str().unwrap_or("?"),
                        c["address"].as_str().unwrap_or("?")
                    )
                } else {
                    writeln!(
                        out,
                        "    {}: not sent, {}",
                        c["channel"].as_str().unwrap_or("?"),
                        c["explanation"].as_str().unwrap_or("?")
                    )
                };
            }
            match e["notification"]["timeline"].as_str() {
                Some(t) => {
                    let _ = writeln!(out, "    timeline: {t}");
                }
                None => {
                    let _ = writeln!(out, "    no notification was stored for this user");
                }
            }
        } else {
            let _ = writeln!(
                out,
                "  not notified ({}): {}",
                e["reason"].as_str().unwrap_or("?"),
                e["explanation"].as_str().unwrap_or("")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests;
