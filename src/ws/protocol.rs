//! The JSON frames of `/ws/notifications/`: what the hub sends and what clients may send.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A frame the hub sends.
#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// The first frame on an authenticated socket.
    ConnectionEstablished {
        /// A greeting naming the user.
        message: String,
        /// The user's id.
        user_id: i64,
        /// The highest notification seq the user has.
        last_seq: i64,
    },
    /// The answer to an application `ping`.
    Pong {
        /// The client's timestamp echoed back, or the hub's time in milliseconds.
        timestamp: Value,
    },
    /// The access token runs out in `expires_in` seconds; send `refresh_token`.
    TokenExpiring {
        /// Seconds left.
        expires_in: i64,
    },
    /// The socket now runs on the new token.
    TokenRefreshed {
        /// The new token's expiry, in seconds since the Unix epoch.
        expires_at: i64,
    },
    /// A frame could not be handled; the socket stays open.
    Error {
        /// A stable machine-readable code.
        code: &'a str,
        /// A human explanation.
        message: String,
    },
}

impl ServerFrame<'_> {
    /// The frame as JSON text.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("server frames always serialize")
    }
}

/// A frame a client sends, decoded.
#[derive(Debug)]
pub enum ClientFrame {
    /// Application heartbeat.
    Ping {
        /// Echoed back in the `pong`.
        timestamp: Option<Value>,
    },
    /// A new access token for this socket.
    RefreshToken {
        /// The token.
        token: String,
    },
    /// A page of the user's notifications.
    GetNotifications(GetNotificationsIn),
    /// Mark one notification read.
    MarkRead {
        /// The notification.
        notification_id: i64,
    },
    /// Mark one notification unread.
    MarkUnread {
        /// The notification.
        notification_id: i64,
    },
    /// Mark every (matching) unread notification read.
    MarkAllRead(MarkAllReadIn),
    /// Delete one notification.
    DeleteNotification {
        /// The notification.
        notification_id: i64,
    },
    /// An admin sends a notification.
    SendNotification(Box<crate::wire::SendIn>),
    /// The client has shown everything up to `seq`.
    Ack {
        /// The seq.
        seq: i64,
    },
    /// Presence sockets: the client looks at a ticket, or at none.
    TicketViewing {
        /// The ticket.
        ticket_id: Option<i64>,
    },
    /// Presence sockets: the client types under a ticket's comments, or stopped.
    UserTyping {
        /// The ticket.
        ticket_id: i64,
        /// Typing or stopped.
        is_typing: bool,
    },
}

/// The fields of `get_notifications`.
#[derive(Deserialize, Debug, PartialEq, Eq, Default)]
pub struct GetNotificationsIn {
    /// Only read or unread ones.
    #[serde(default)]
    pub is_read: Option<bool>,
    /// Only this type.
    #[serde(default)]
    pub notification_type: Option<String>,
    /// Only those about this ticket.
    #[serde(default)]
    pub ticket: Option<i64>,
    /// How many (1 to 100, default 20).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Only those with a smaller seq.
    #[serde(default)]
    pub before_seq: Option<i64>,
}

/// The fields of `mark_all_read`.
#[derive(Deserialize, Debug, PartialEq, Eq, Default)]
pub struct MarkAllReadIn {
    /// Only this type.
    #[serde(default)]
    pub notification_type: Option<String>,
    /// Only those about this ticket.
    #[serde(default)]
    pub ticket: Option<i64>,
}

/// Why a client frame could not be decoded. Each maps to an `error` frame's `code`.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not JSON, not an object, or no string `type`.
    Malformed(String),
    /// A `type` the hub does not know.
    UnknownType(String),
    /// A known `type` with missing or mistyped fields.
    BadFields {
        /// The frame's type.
        kind: String,
        /// What was wrong.
        reason: String,
    },
}

impl DecodeError {
    /// The `error` frame for this failure.
    pub fn to_frame(&self) -> ServerFrame<'static> {
        match self {
            DecodeError::Malformed(reason) => ServerFrame::Error {
                code: "bad_request",
                message: format!("Malformed frame: {reason}"),
            },
            DecodeError::UnknownType(kind) => ServerFrame::Error {
                code: "unknown_type",
                message: format!("Unknown message type `{kind}`"),
            },
            DecodeError::BadFields { kind, reason } => ServerFrame::Error {
                code: "bad_request",
                message: format!("Invalid `{kind}` frame: {reason}"),
            },
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PingIn {
    #[serde(default)]
    timestamp: Option<Value>,
}

#[derive(Deserialize)]
struct RefreshIn {
    token: String,
}

#[derive(Deserialize)]
struct IdIn {
    notification_id: i64,
}

#[derive(Deserialize)]
struct AckIn {
    seq: i64,
}

#[derive(Deserialize)]
struct ViewingIn {
    ticket_id: Option<i64>,
}

#[derive(Deserialize)]
struct TypingIn {
    ticket_id: i64,
    is_typing: bool,
}

/// An object's members in the order they came, duplicate keys included (a JSON object in a
/// `Value` keeps only the last of them).
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Parses a frame into one object. Seed 003's `send_notification` names the notification's
/// type in a second `"type"` key after the frame's own: the first `type` is the frame's, and a
/// second one becomes `notification_type` (unless that is given too).
fn parse_object(text: &[u8]) -> Result<Value, DecodeError> {
    let Members(members) = serde_json::from_slice(text).map_err(|e| {
        if serde_json::from_slice::<Value>(text).is_ok() {
            DecodeError::Malformed("expected a JSON object".into())
        } else {
            DecodeError::Malformed(e.to_string())
        }
    })?;
    let mut object = serde_json::Map::new();
    let mut second_type = None;
    for (key, value) in members {
        if key == "type" && object.contains_key("type") {
            second_type.get_or_insert(value);
        } else {
            object.insert(key, value);
        }
    }
    if let Some(kind) = second_type {
        object.entry("notification_type").or_insert(kind);
    }
    Ok(Value::Object(object))
}

impl ClientFrame {
    /// Decodes a text frame.
    pub fn decode(text: &[u8]) -> Result<ClientFrame, DecodeError> {
        let value = parse_object(text)?;
        let Envelope { kind } = Envelope::deserialize(&value)
            .map_err(|_| DecodeError::Malformed("missing string field `type`".into()))?;
        let fields = |e: serde_json::Error| DecodeError::BadFields {
            kind: kind.clone(),
            reason: e.to_string(),
        };
        match kind.as_str() {
            "ping" => {
                let p = PingIn::deserialize(&value).map_err(fields)?;
                Ok(ClientFrame::Ping {
                    timestamp: p.timestamp,
                })
            }
            "refresh_token" => {
                let r = RefreshIn::deserialize(&value).map_err(fields)?;
                Ok(ClientFrame::RefreshToken { token: r.token })
            }
            "get_notifications" => Ok(ClientFrame::GetNotifications(
                GetNotificationsIn::deserialize(&value).map_err(fields)?,
            )),
            "mark_read" => Ok(ClientFrame::MarkRead {
                notification_id: IdIn::deserialize(&value).map_err(fields)?.notification_id,
            }),
            "mark_unread" => Ok(ClientFrame::MarkUnread {
                notification_id: IdIn::deserialize(&value).map_err(fields)?.notification_id,
            }),
            "mark_all_read" => Ok(ClientFrame::MarkAllRead(
                MarkAllReadIn::deserialize(&value).map_err(fields)?,
            )),
            "delete_notification" => Ok(ClientFrame::DeleteNotification {
                notification_id: IdIn::deserialize(&value).map_err(fields)?.notification_id,
            }),
            "ticket_viewing" => Ok(ClientFrame::TicketViewing {
                ticket_id: ViewingIn::deserialize(&value).map_err(fields)?.ticket_id,
            }),
            "user_typing" => {
                let t = TypingIn::deserialize(&value).map_err(fields)?;
                Ok(ClientFrame::UserTyping {
                    ticket_id: t.ticket_id,
                    is_typing: t.is_typing,
                })
            }
            "ack" => Ok(ClientFrame::Ack {
                seq: AckIn::deserialize(&value).map_err(fields)?.seq,
            }),
            "send_notification" => Ok(ClientFrame::SendNotification(Box::new(
                crate::wire::SendIn::deserialize(&value).map_err(fields)?,
            ))),
            _ => Err(DecodeError::UnknownType(kind)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_decode_with_and_without_timestamp() {
        assert!(matches!(
            ClientFrame::decode(br#"{"type":"ping","timestamp":1735038600000}"#),
            Ok(ClientFrame::Ping { timestamp: Some(t) }) if t == serde_json::json!(1735038600000u64)
        ));
        assert!(matches!(
            ClientFrame::decode(br#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping { timestamp: None })
        ));
        assert!(matches!(
            ClientFrame::decode(br#"{"type":"mark_read","notification_id":4}"#),
            Ok(ClientFrame::MarkRead { notification_id: 4 })
        ));
        assert!(matches!(
            ClientFrame::decode(br#"{"type":"mark_read","notification_id":"x"}"#),
            Err(DecodeError::BadFields { .. })
        ));
    }

    #[test]
    fn a_second_type_key_is_the_notification_type() {
        let frame = ClientFrame::decode(
            br#"{"type":"send_notification","user_id":123,"title":"T","message":"M","type":"approval","data":{},"link":"/x"}"#,
        );
        let Ok(ClientFrame::SendNotification(body)) = frame else {
            panic!("{frame:?}");
        };
        let a = body.into_announcement().unwrap();
        assert_eq!(a.notification_type, "approval");
        assert_eq!(a.link.as_deref(), Some("/x"));
        // An explicit notification_type wins over a second type key.
        let frame = ClientFrame::decode(
            br#"{"type":"send_notification","user_id":1,"title":"T","message":"M","type":"a","notification_type":"b"}"#,
        );
        let Ok(ClientFrame::SendNotification(body)) = frame else {
            panic!("{frame:?}");
        };
        assert_eq!(body.into_announcement().unwrap().notification_type, "b");
    }

    #[test]
    fn garbage_and_unknown_types_are_told_apart() {
        assert!(matches!(
            ClientFrame::decode(b"{not json"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            ClientFrame::decode(b"[1,2]"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            ClientFrame::decode(br#"{"type":7}"#),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            ClientFrame::decode(br#"{"type":"dance"}"#),
            Err(DecodeError::UnknownType(t)) if t == "dance"
        ));
        assert!(matches!(
            ClientFrame::decode(br#"{"type":"refresh_token"}"#),
            Err(DecodeError::BadFields { .. })
        ));
    }

    #[test]
    fn server_frames_have_the_contract_shape() {
        let v: Value = serde_json::from_slice(
            &ServerFrame::ConnectionEstablished {
                message: "Connected successfully as john_admin".into(),
                user_id: 1,
                last_seq: 41,
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"connection_established","message":"Connected successfully as john_admin","user_id":1,"last_seq":41})
        );
    }
}
