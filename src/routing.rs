//! Loading a deployment's routing overrides from a TOML file.
//!
//! ```toml
//! [ticket_opened]
//! recipients = ["creator", "admins"]
//! channels = ["websocket", "email"]
//! ```
//!
//! Each table replaces one event type's route; types not named keep the default (seed 001's
//! table).

use std::path::Path;

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

/// Applies the overrides in `text` to `table`.
pub fn apply(table: &mut RoutingTable, text: &str) -> Result<(), String> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    for (event, spec) in doc {
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
        if let Some(unknown) = spec.keys().find(|k| *k != "recipients" && *k != "channels") {
            return Err(format!("[{event}] unknown key `{unknown}`"));
        }
        table.set(
            event,
            Route {
                audiences,
                channels,
            },
        );
    }
    Ok(())
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
