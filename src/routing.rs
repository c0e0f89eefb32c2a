//! Loading a deployment's routing overrides from a TOML file.
//!
//! ```toml
//! [ticket_opened]
//! recipients = ["creator", "admins"]
//! channels = ["websocket", "email"]
//! ```
//!
//! A route or a step with `push` among its channels may hold the push back until it is known
//! to be unseen: `push = { unless_seen_within = "30s" }` waits that long and sends only if no
//! client of the recipient acknowledged or read the notification meanwhile.
//!
//! `batch = "5m"` gives a type its own batch window (`--batch-window` for the others; `"0s"`
//! sends each at once): updates about one ticket to one person within it go out on email,
//! SMS and chats as one message.
//!
//! Each table replaces one event type's route; types not named keep the default (seed 001's
//! table). `[[escalation]]` tables add escalation policies, tried in order:
//!
//! ```toml
//! [[escalation]]
//! events = ["ticket_assigned", "ticket_created"]
//! when = { priority = ["HIGH", "CRITICAL"] }
//! steps = [
//!   { after = "5m",  unless = "read", channels = ["whatsapp"] },
//!   { after = "15m", unless = "read", channels = ["email"], also = ["admins"] },
//! ]
//! ```

use std::path::Path;

use tickethub_actors::escalation::{Policy, Step, Unless};
use tickethub_actors::routing::{Audience, Channel, EventType, Route, RoutingTable};

use crate::config::ConfigError;

const SETTING: &str = "--routing (TICKETHUB_ROUTING)";

/// The default table with the file's overrides applied, if a file is given.
pub fn load(path: Option<&Path>) -> Result<RoutingTable, ConfigError> {
    let mut table = RoutingTable::default();
    let Some(path) = path else {
        return Ok(table);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(SETTING, format!("cannot read {}: {e}", path.display())))?;
    apply(&mut table, &text)
        .map_err(|e| ConfigError::new(SETTING, format!("{}: {e}", path.display())))?;
    Ok(table)
}

/// What `--demo` routes by when no `--routing` file is given: the default table and one example
/// escalation policy, so that the operator page's escalation panel has something to show.
pub const DEMO_ROUTING: &str = r#"
[[escalation]]
name = "unread-critical-assignments"
events = ["ticket_assigned"]
when = { priority = ["HIGH", "CRITICAL"] }
steps = [ { after = "2m", unless = "read", channels = ["email", "push"] } ]
"#;

/// The routing `--demo` uses without a `--routing` file ([`DEMO_ROUTING`]).
pub fn demo() -> RoutingTable {
    let mut table = RoutingTable::default();
    apply(&mut table, DEMO_ROUTING).expect("the demo routing is valid");
    table
}

/// Applies the overrides in `text` to `table`.
pub fn apply(table: &mut RoutingTable, text: &str) -> Result<(), String> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    for (event, spec) in doc {
        if event == "escalation" {
            let policies = spec
                .as_array()
                .ok_or("`escalation` must be an array of tables: write [[escalation]]")?;
            for (i, policy) in policies.iter().enumerate() {
                let name = format!("escalation-{}", i + 1);
                table.add_escalation(escalation(policy, name)?);
            }
            continue;
        }
        let event: EventType = event.parse().expect("infallible");
        if matches!(event, EventType::Custom(_)) {
            return Err(format!("`{event}` is not a routed notification type"));
        }
        let spec = spec
            .as_table()
            .ok_or_else(|| format!("[{event}] must be a table"))?;
        let list = |key: &str| -> Result<Vec<String>, String> {
            spec.get(key)
                .ok_or_else(|| format!("[{event}] needs `{key}`"))?
                .as_array()
                .ok_or_else(|| format!("[{event}] `{key}` must be a list"))?
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("[{event}] `{key}` must list strings"))
                })
                .collect()
        };
        let audiences = list("recipients")?
            .iter()
            .map(|a| a.parse::<Audience>().map_err(|e| format!("[{event}] {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let channels = list("channels")?
            .iter()
            .map(|c| c.parse::<Channel>().map_err(|e| format!("[{event}] {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(unknown) = spec
            .keys()
            .find(|k| !["recipients", "channels", "push", "batch"].contains(&k.as_str()))
        {
            return Err(format!("[{event}] unknown key `{unknown}`"));
        }
        let push_unless_seen = push_options(spec.get("push"), &channels, &format!("[{event}]"))?;
        if let Some(batch) = spec.get("batch") {
            let text = batch.as_str().ok_or_else(|| {
                format!("[{event}] `batch` must be a duration such as \"5m\" (\"0s\": never)")
            })?;
            let window = crate::timespan::parse(text)
                .map_err(|e| format!("[{event}] `batch = \"{text}\"`: {e}"))?;
            if window > std::time::Duration::from_secs(86_400) {
                return Err(format!("[{event}] `batch` must be at most a day"));
            }
            table.set_batch(event.clone(), window);
        }
        table.set(
            event,
            Route {
                audiences,
                channels,
                push_unless_seen,
            },
        );
    }
    Ok(())
}

/// The `push = { unless_seen_within = "30s" }` of a route or step: how long a push waits for
/// the notification to be seen. Only with `push` among the channels.
fn push_options(
    value: Option<&toml::Value>,
    channels: &[Channel],
    what: &str,
) -> Result<Option<std::time::Duration>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    if !channels.contains(&Channel::Push) {
        return Err(format!(
            "{what}: `push` is set but `channels` does not name push"
        ));
    }
    let table = value.as_table().ok_or_else(|| {
        format!("{what}: `push` must be a table such as {{ unless_seen_within = \"30s\" }}")
    })?;
    if let Some(unknown) = table.keys().find(|k| *k != "unless_seen_within") {
        return Err(format!(
            "{what}: `push` has an unknown key `{unknown}` (expected unless_seen_within)"
        ));
    }
    let Some(within) = table.get("unless_seen_within") else {
        return Ok(None);
    };
    let text = within.as_str().ok_or_else(|| {
        format!("{what}: `push.unless_seen_within` must be a duration such as \"30s\"")
    })?;
    let wait = crate::timespan::parse(text)
        .map_err(|e| format!("{what}: `push.unless_seen_within = \"{text}\"`: {e}"))?;
    if wait < std::time::Duration::from_secs(1) || wait > std::time::Duration::from_secs(7 * 86_400)
    {
        return Err(format!(
            "{what}: `push.unless_seen_within` must be between 1s and 7 days"
        ));
    }
    Ok(Some(wait))
}

/// Strings of a list value.
fn strings(value: &toml::Value, what: &str) -> Result<Vec<String>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("{what} must be a list"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{what} must list strings"))
        })
        .collect()
}

/// Parses each string of a list.
fn parsed<T>(value: &toml::Value, what: &str) -> Result<Vec<T>, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    strings(value, what)?
        .iter()
        .map(|s| s.parse::<T>().map_err(|e| format!("{what}: {e}")))
        .collect()
}

/// One `[[escalation]]` table.
fn escalation(spec: &toml::Value, default_name: String) -> Result<Policy, String> {
    let spec = spec
        .as_table()
        .ok_or_else(|| format!("[[escalation]] {default_name} must be a table"))?;
    let name = match spec.get("name") {
        Some(v) => v
            .as_str()
            .ok_or_else(|| format!("{default_name}: `name` must be a string"))?
            .to_owned(),
        None => default_name,
    };
    let at = |key: &str| format!("[[escalation]] {name}: `{key}`");
    if let Some(unknown) = spec
        .keys()
        .find(|k| !["name", "events", "when", "steps"].contains(&k.as_str()))
    {
        return Err(format!("[[escalation]] {name}: unknown key `{unknown}`"));
    }
    let events: Vec<EventType> = parsed(
        spec.get("events")
            .ok_or_else(|| format!("{} is missing", at("events")))?,
        &at("events"),
    )?;
    if events.is_empty() {
        return Err(format!("{} names no type", at("events")));
    }
    let (mut priorities, mut categories) = (Vec::new(), Vec::new());
    if let Some(when) = spec.get("when") {
        let when = when
            .as_table()
            .ok_or_else(|| format!("{} must be a table", at("when")))?;
        for (key, value) in when {
            match key.as_str() {
                "priority" => priorities = parsed(value, &at("when.priority"))?,
                "category" => categories = parsed(value, &at("when.category"))?,
                other => {
                    return Err(format!(
                        "{}: unknown condition `{other}` (expected priority or category)",
                        at("when")
                    ))
                }
            }
        }
    }
    let steps = spec
        .get("steps")
        .and_then(|s| s.as_array())
        .ok_or_else(|| format!("{} must be a list of steps", at("steps")))?;
    if steps.is_empty() {
        return Err(format!("{} is empty", at("steps")));
    }
    let steps = steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let what = format!("[[escalation]] {name}: step {}", i + 1);
            let step = step
                .as_table()
                .ok_or_else(|| format!("{what} must be a table"))?;
            if let Some(unknown) = step
                .keys()
                .find(|k| !["after", "unless", "channels", "also", "push"].contains(&k.as_str()))
            {
                return Err(format!("{what}: unknown key `{unknown}`"));
            }
            let after = step
                .get("after")
                .and_then(|a| a.as_str())
                .ok_or_else(|| format!("{what} needs `after`, a duration such as \"5m\""))?;
            let after = crate::timespan::parse(after)
                .map_err(|e| format!("{what}: `after = \"{after}\"`: {e}"))?;
            let unless = match step.get("unless") {
                None => Unless::Read,
                Some(v) => v
                    .as_str()
                    .ok_or_else(|| format!("{what}: `unless` must be a string"))?
                    .parse::<Unless>()
                    .map_err(|e| format!("{what}: {e}"))?,
            };
            let channels: Vec<Channel> = match step.get("channels") {
                Some(v) => parsed(v, &format!("{what}: `channels`"))?,
                None => Vec::new(),
            };
            // A step reaches its recipient again: on a channel of their own, or their devices.
            if let Some(c) = channels.iter().find(|c| {
                !matches!(
                    c.reach(),
                    tickethub_actors::routing::Reach::Personal
                        | tickethub_actors::routing::Reach::Devices
                )
            }) {
                let personal: Vec<Channel> = Channel::all()
                    .into_iter()
                    .filter(|c| {
                        matches!(
                            c.reach(),
                            tickethub_actors::routing::Reach::Personal
                                | tickethub_actors::routing::Reach::Devices
                        )
                    })
                    .collect();
                return Err(format!(
                    "{what}: `channels` may name {}, not {}",
                    tickethub_actors::event::listed(&personal, "and"),
                    c.as_str()
                ));
            }
            // Audiences, and on-call targets (`oncall:<schedule>[:next]`).
            let (mut also, mut oncall) = (Vec::<Audience>::new(), Vec::new());
            if let Some(v) = step.get("also") {
                let field = format!("{what}: `also`");
                for name in strings(v, &field)? {
                    if name.starts_with(tickethub_actors::oncall::PREFIX) {
                        oncall.push(
                            tickethub_actors::oncall::Target::parse(&name)
                                .map_err(|e| format!("{field}: {e}"))?,
                        );
                    } else {
                        also.push(name.parse().map_err(|e| format!("{field}: {e}"))?);
                    }
                }
            }
            if channels.is_empty() && also.is_empty() && oncall.is_empty() {
                return Err(format!("{what} has neither `channels` nor `also`"));
            }
            let push_unless_seen = push_options(step.get("push"), &channels, &what)?;
            Ok(Step {
                after,
                unless,
                channels,
                also,
                oncall,
                push_unless_seen,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Policy {
        name,
        events,
        priorities,
        categories,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_one_route_and_keep_the_rest() {
        let mut t = RoutingTable::default();
        apply(
            &mut t,
            "[ticket_opened]\nrecipients = [\"creator\", \"admins\"]\nchannels = [\"websocket\"]\n",
        )
        .unwrap();
        let r = t.route(&EventType::TicketOpened).unwrap();
        assert_eq!(r.audiences, vec![Audience::Creator, Audience::Admins]);
        assert_eq!(r.channels, vec![Channel::Websocket]);
        assert_eq!(
            t.route(&EventType::TicketCreated),
            RoutingTable::default().route(&EventType::TicketCreated)
        );
    }

    #[test]
    fn push_is_routed_and_may_wait_to_be_unseen() {
        let mut t = RoutingTable::default();
        apply(
            &mut t,
            r#"
[ticket_assigned]
recipients = ["newly_assigned"]
channels = ["websocket", "push"]
push = { unless_seen_within = "30s" }

[[escalation]]
events = ["ticket_assigned"]
steps = [
  { after = "5m", channels = ["push"] },
  { after = "10m", channels = ["push", "email"], push = { unless_seen_within = "1m" } },
]
"#,
        )
        .unwrap();
        let r = t.route(&EventType::TicketAssigned).unwrap();
        assert_eq!(r.channels, vec![Channel::Websocket, Channel::Push]);
        assert_eq!(r.push_unless_seen, Some(std::time::Duration::from_secs(30)));
        let steps = &t.escalations()[0].steps;
        assert_eq!(steps[0].push_unless_seen, None);
        assert_eq!(
            steps[1].push_unless_seen,
            Some(std::time::Duration::from_secs(60))
        );
        // Seed 001's table pushes nothing until an operator routes it.
        let seed = RoutingTable::default();
        for event in EventType::BUILT_IN {
            if let Some(route) = seed.route(&event) {
                assert!(!route.channels.contains(&Channel::Push), "{event}");
            }
        }
        for (text, needle) in [
            ("[ticket_assigned]\nrecipients=[]\nchannels=[\"websocket\"]\npush={unless_seen_within=\"30s\"}", "does not name push"),
            ("[ticket_assigned]\nrecipients=[]\nchannels=[\"push\"]\npush={unless_seen_within=\"soon\"}", "soon"),
            ("[ticket_assigned]\nrecipients=[]\nchannels=[\"push\"]\npush={unless_seen_within=\"0s\"}", "between 1s and 7 days"),
            ("[ticket_assigned]\nrecipients=[]\nchannels=[\"push\"]\npush={after=\"1s\"}", "unknown key `after`"),
            ("[ticket_assigned]\nrecipients=[]\nchannels=[\"push\"]\npush=\"30s\"", "must be a table"),
            ("[ticket_assigned]\nrecipients=[]\nchannels=[\"webpush\"]", "webpush"),
        ] {
            let err = apply(&mut RoutingTable::default(), text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn the_demo_routes_by_default_with_one_escalation_policy() {
        let t = demo();
        assert_eq!(t.escalations().len(), 1);
        assert_eq!(t.escalations()[0].name, "unread-critical-assignments");
        assert_eq!(
            t.route(&EventType::TicketAssigned),
            RoutingTable::default().route(&EventType::TicketAssigned)
        );
    }

    #[test]
    fn escalation_policies_are_read_in_order() {
        let mut t = RoutingTable::default();
        apply(
            &mut t,
            r#"
[[escalation]]
name = "critical"
events = ["ticket_assigned", "ticket_created"]
when = { priority = ["HIGH", "CRITICAL"] }
steps = [
  { after = "5m",  unless = "read", channels = ["whatsapp"] },
  { after = "15m", channels = ["email"], also = ["admins"] },
]

[[escalation]]
events = ["comment_added"]
steps = [{ after = "2s", unless = "acked", also = ["creator", "oncall:primary", "oncall:db:next"] }]
"#,
        )
        .unwrap();
        let p = t.escalations();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "critical");
        assert_eq!(p[1].name, "escalation-2");
        assert_eq!(
            p[0].events,
            vec![EventType::TicketAssigned, EventType::TicketCreated]
        );
        assert_eq!(p[0].steps[0].after, std::time::Duration::from_secs(300));
        assert_eq!(p[0].steps[1].unless, Unless::Read);
        assert_eq!(p[0].steps[1].also, vec![Audience::Admins]);
        assert_eq!(p[1].steps[0].unless, Unless::Acked);
        assert_eq!(p[1].steps[0].also, vec![Audience::Creator]);
        let oncall: Vec<String> = p[1].steps[0].oncall.iter().map(|t| t.name()).collect();
        assert_eq!(oncall, ["oncall:primary", "oncall:db:next"]);
        assert!(p[0].steps[1].oncall.is_empty());
    }

    #[test]
    fn escalation_mistakes_are_named() {
        for (text, needle) in [
            ("[escalation]\nevents=[]", "[[escalation]]"),
            ("[[escalation]]\nsteps=[{after=\"1m\", channels=[\"email\"]}]", "`events` is missing"),
            ("[[escalation]]\nevents=[\"ticket_assigned\"]\nsteps=[{after=\"soon\", channels=[\"email\"]}]", "soon"),
            ("[[escalation]]\nevents=[\"ticket_assigned\"]\nsteps=[{after=\"1m\", channels=[\"fax\"]}]", "fax"),
            ("[[escalation]]\nevents=[\"ticket_assigned\"]\nsteps=[{after=\"1m\", channels=[\"websocket\"]}]", "not websocket"),
            ("[[escalation]]\nevents=[\"ticket_assigned\"]\nsteps=[{after=\"1m\", unless=\"seen\", channels=[\"email\"]}]", "seen"),
            ("[[escalation]]\nevents=[\"ticket_assigned\"]\nsteps=[{after=\"1m\"}]", "neither"),
            ("[[escalation]]\nevents=[\"ticket_assigned\"]\nsteps=[{after=\"1m\", also=[\"oncall:Primary\"]}]", "oncall:<schedule>"),
            ("[[escalation]]\nevents=[\"ticket_assigned\"]\nsteps=[{after=\"1m\", also=[\"oncall:a:later\"]}]", "oncall:a:later"),
            ("[[escalation]]\nevents=[\"ticket_assigned\"]\nwhen={owner=[\"x\"]}\nsteps=[{after=\"1m\", channels=[\"email\"]}]", "owner"),
            ("[[escalation]]\nevents=[\"ticket_assigned\"]\nwhen={priority=[\"URGENT\"]}\nsteps=[{after=\"1m\", channels=[\"email\"]}]", "URGENT"),
        ] {
            let err = apply(&mut RoutingTable::default(), text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        let mut t = RoutingTable::default();
        for (text, needle) in [
            ("[nope]\nrecipients=[]\nchannels=[]", "not a routed"),
            (
                "[ticket_opened]\nrecipients=[\"everyone\"]\nchannels=[]",
                "everyone",
            ),
            ("[ticket_opened]\nrecipients=[]\nchannels=[\"fax\"]", "fax"),
            ("[ticket_opened]\nchannels=[]", "needs `recipients`"),
        ] {
            let err = apply(&mut t, text).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }
}
