//! The parts of the document that depend on how this hub is set up: which channels take an
//! address and a verification code, which push devices it registers, which notification types
//! it routes. The handlers' types describe every hub; these values narrow them to this one, so
//! that a request the document calls valid is one this hub accepts. And the rules that JSON
//! Schema says more simply than the derive macros: `erase` must be `true`, and a send gives
//! `send_at` or `delay`, not both.

use serde_json::{json, Value};
use tickethub_actors::routing::{Channel, Reach};

use crate::state::AppState;

/// What this hub runs, as the document's enums name it.
pub struct ThisHub {
    /// The channels with an address of each user's own (`email`, `whatsapp`, `sms`, …).
    pub address_channels: Vec<String>,
    /// Those of them whose addresses this hub can send a verification code to.
    pub verified_channels: Vec<String>,
    /// The kinds of push device it registers (`webpush`, `fcm`, `apns`).
    pub device_kinds: Vec<String>,
    /// The notification types with a route: the types any user may set preferences for.
    pub routed_types: Vec<String>,
    /// The channels a user may switch off.
    pub switchable_channels: Vec<String>,
}

impl ThisHub {
    /// Reads them from the running hub's state.
    pub fn of(state: &AppState) -> ThisHub {
        let address_channels: Vec<Channel> = Channel::registered()
            .into_iter()
            .filter(|(_, reach)| *reach == Reach::Personal)
            .map(|(c, _)| c)
            .collect();
        let verified_channels = address_channels
            .iter()
            .filter(|c| state.verifier.can_send(**c))
            .map(|c| c.as_str().to_owned())
            .collect();
        let mut device_kinds = Vec::new();
        if state.push.vapid_public_key.is_some() {
            device_kinds.push("webpush".to_owned());
        }
        if state.push.fcm {
            device_kinds.push("fcm".to_owned());
        }
        if state.push.apns {
            device_kinds.push("apns".to_owned());
        }
        let mut routed_types: Vec<String> = state
            .hub
            .routing()
            .routed()
            .map(|e| e.as_str().to_owned())
            .collect();
        routed_types.sort();
        ThisHub {
            address_channels: address_channels
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            verified_channels,
            device_kinds,
            routed_types,
            switchable_channels: crate::http::notifications::switchable_channels()
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
        }
    }

    /// `document` with its enums narrowed to this hub and the rules above added.
    pub fn narrow(&self, mut document: Value) -> Value {
        let schemas = &mut document["components"]["schemas"];
        for verifying in ["ChannelIn", "CodeIn"] {
            if let Some(channel) = schemas.pointer_mut(&format!("/{verifying}/properties/channel"))
            {
                set_enum(channel, &self.verified_channels);
            }
        }
        if let Some(kind) = schemas.pointer_mut("/DeviceIn/properties/kind") {
            set_enum(kind, &self.device_kinds);
        }
        if let Some(addresses) = schemas.pointer_mut("/ProfileChanges/properties/addresses") {
            addresses["propertyNames"] = json!({ "enum": self.address_channels });
        }
        if let Some(types) = schemas.pointer_mut("/PreferencesUpdate/properties/types") {
            types["propertyNames"] = json!({ "enum": self.routed_types });
            types["additionalProperties"]["propertyNames"] =
                json!({ "enum": self.switchable_channels });
        }
        if let Some(channels) = schemas.pointer_mut("/PreferencesUpdate/properties/channels") {
            channels["propertyNames"] = json!({ "enum": self.switchable_channels });
        }
        if let Some(send) = schemas.get_mut("SendRequest") {
            // Exactly one kind of recipient; a `null` one counts as not given.
            send["oneOf"] = json!([
                {"required": ["user_ids"], "properties": {
                    "user_ids": {"type": "array", "minItems": 1, "maxItems": 10000},
                    "user_id": {"type": "null"}, "role": {"type": "null"}}},
                {"required": ["user_id"], "properties": {
                    "user_id": {"type": "integer"},
                    "user_ids": {"type": "null"}, "role": {"type": "null"}}},
                {"required": ["role"], "properties": {
                    "role": {"type": "string"},
                    "user_ids": {"type": "null"}, "user_id": {"type": "null"}}},
            ]);
            send["not"] = json!({
                "description": "`send_at` and `delay` together",
                "required": ["send_at", "delay"],
                "properties": {"send_at": {"type": "string"}, "delay": {"type": "string"}},
            });
        }
        if let Some(Value::Array(params)) =
            document.pointer_mut("/paths/~1api~1users~1{id}~1/delete/parameters")
        {
            for param in params.iter_mut().filter(|p| p["name"] == "erase") {
                param["schema"] = json!({"type": "boolean", "enum": [true]});
            }
        }
        document
    }
}

/// Sets a string property's `enum` to `values`; with none (this hub runs none of them), the
/// property keeps its plain type and the handler answers 400 naming what is missing.
fn set_enum(property: &mut Value, values: &[String]) {
    if !values.is_empty() {
        property["enum"] = json!(values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> ThisHub {
        ThisHub {
            address_channels: vec!["email".into(), "sms".into()],
            verified_channels: vec!["email".into()],
            device_kinds: vec![],
            routed_types: vec!["ticket_created".into()],
            switchable_channels: vec!["email".into(), "push".into()],
        }
    }

    fn document() -> Value {
        let text = json!({"type": "string"});
        json!({
            "paths": {"/api/users/{id}/": {"delete": {"parameters": [
                {"name": "id", "schema": {"type": "integer"}},
                {"name": "erase", "schema": {"type": "boolean"}},
            ]}}},
            "components": {"schemas": {
                "ChannelIn": {"properties": {"channel": text}},
                "CodeIn": {"properties": {"channel": text, "code": text}},
                "DeviceIn": {"properties": {"kind": text}},
                "ProfileChanges": {"properties": {"addresses": {"type": "object"}}},
                "PreferencesUpdate": {"properties": {
                    "channels": {"type": "object"},
                    "types": {"type": "object", "additionalProperties": {"type": "object"}},
                }},
                "SendRequest": {"properties": {}},
            }},
        })
    }

    #[test]
    fn enums_name_what_this_hub_runs_and_nothing_else() {
        let doc = hub().narrow(document());
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ChannelIn"]["properties"]["channel"]["enum"],
            json!(["email"])
        );
        assert_eq!(
            schemas["CodeIn"]["properties"]["channel"]["enum"],
            json!(["email"])
        );
        assert_eq!(
            schemas["ProfileChanges"]["properties"]["addresses"]["propertyNames"]["enum"],
            json!(["email", "sms"])
        );
        let prefs = &schemas["PreferencesUpdate"]["properties"];
        assert_eq!(
            prefs["types"]["propertyNames"]["enum"],
            json!(["ticket_created"])
        );
        assert_eq!(
            prefs["types"]["additionalProperties"]["propertyNames"]["enum"],
            json!(["email", "push"])
        );
        assert_eq!(
            prefs["channels"]["propertyNames"]["enum"],
            json!(["email", "push"])
        );
        // No push device runs here: the kind keeps its plain type rather than an empty enum.
        assert_eq!(
            schemas["DeviceIn"]["properties"]["kind"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn erase_must_be_true_and_a_send_names_one_kind_of_recipient_and_one_time() {
        let doc = hub().narrow(document());
        let erase = &doc["paths"]["/api/users/{id}/"]["delete"]["parameters"][1];
        assert_eq!(erase["schema"]["enum"], json!([true]));
        let send = &doc["components"]["schemas"]["SendRequest"];
        assert_eq!(send["oneOf"].as_array().unwrap().len(), 3);
        assert_eq!(send["not"]["required"], json!(["send_at", "delay"]));
    }
}
