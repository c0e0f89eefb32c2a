//! The request to send a notification, over REST or the WebSocket: its shape, its checks,
//! and the announcement it becomes.

use serde::Deserialize;
use serde_json::Value;
use tickethub_actors::domain::{Role, UserId};
use tickethub_actors::hub::{Announcement, Recipients};
use tickethub_actors::routing::Channel;
use utoipa::ToSchema;

use super::{integer, ChannelName, RoleName};

/// A notification an admin sends, over REST or the WebSocket. Give exactly one of
/// `user_ids`, `user_id`, `role` or `oncall`.
#[derive(Deserialize, Debug, ToSchema)]
#[schema(as = SendRequest)]
pub struct SendIn {
    /// The recipients' ids (1 to 10000).
    #[serde(default, deserialize_with = "integer::option_list")]
    user_ids: Option<Vec<i64>>,
    /// One recipient's id.
    #[serde(default, deserialize_with = "integer::option")]
    user_id: Option<i64>,
    /// Every active user of this role.
    #[serde(default)]
    #[schema(value_type = Option<RoleName>)]
    role: Option<String>,
    /// An on-call schedule's name: the notification goes to whoever is on call when it
    /// commits (for a scheduled send, when it fires); `<schedule>:next` pages the person on
    /// call after them. Its `data.oncall` says who was chosen and why.
    #[serde(default)]
    #[schema(pattern = r"^(oncall:)?[a-z0-9_-]{1,64}(:next)?$", example = "primary")]
    oncall: Option<String>,
    /// The title, 1 to 200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    title: String,
    /// The message, 1 to 5000 characters, not only spaces.
    #[schema(min_length = 1, max_length = 5000, pattern = r"\S")]
    message: String,
    /// 1 to 64 letters, digits, `_`, `-` or `.` (default `general`).
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,64}$")]
    notification_type: Option<String>,
    /// Extra data, a JSON object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
    /// Where a client should take the user: a path, or an `http(s)://` URL.
    #[serde(default)]
    link: Option<String>,
    /// Outbound channels to use besides the in-app record.
    #[serde(default)]
    #[schema(value_type = Vec<ChannelName>)]
    channels: Vec<String>,
    /// Send later, at this time (RFC 3339, with its offset). REST only.
    #[serde(default)]
    #[schema(format = DateTime)]
    send_at: Option<String>,
    /// Send later, after this long (`"90s"`, `"15m"`, `"2h"`). REST only.
    #[serde(default)]
    delay: Option<String>,
}

impl SendIn {
    /// Whether it asks to be sent later.
    pub fn is_scheduled(&self) -> bool {
        self.send_at.is_some() || self.delay.is_some()
    }

    /// When the send is due, if it is scheduled (`send_at` or `delay`, not both): within
    /// `max_ahead` of `now`, and not in the past (a `send_at` up to a minute past is due at
    /// once, for clocks that differ a little).
    pub fn due(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        max_ahead: std::time::Duration,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
        let ahead = || crate::timespan::later(now, max_ahead);
        let too_far = |field: &str| {
            format!(
                "{field}: A send may be scheduled at most {} ahead.",
                humantime::format_duration(max_ahead)
            )
        };
        let at = match (&self.send_at, &self.delay) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => return Err("Give send_at or delay, not both.".into()),
            (Some(at), None) => {
                let at =
                    crate::timespan::parse_instant(at).map_err(|e| format!("send_at: {e}."))?;
                if at < crate::timespan::earlier(now, std::time::Duration::from_secs(60)) {
                    return Err("send_at: this time has passed.".into());
                }
                if at > ahead() {
                    return Err(too_far("send_at"));
                }
                at.max(now)
            }
            (None, Some(delay)) => {
                let delay = humantime::parse_duration(delay.trim())
                    .map_err(|_| "delay: a duration such as 90s, 15m or 2h.".to_owned())?;
                if delay > max_ahead {
                    return Err(too_far("delay"));
                }
                crate::timespan::later(now, delay)
            }
        };
        Ok(Some(at))
    }

    /// Validates the request into an announcement.
    pub fn into_announcement(self) -> Result<Announcement, String> {
        let to = match (self.user_ids, self.user_id, self.role, self.oncall) {
            (Some(ids), None, None, None) if !ids.is_empty() && ids.len() <= 10_000 => {
                Recipients::Users(ids.into_iter().map(UserId).collect())
            }
            (None, Some(id), None, None) => Recipients::Users(vec![UserId(id)]),
            (None, None, Some(role), None) => {
                Recipients::Role(role.parse::<Role>().map_err(|e| format!("role: {e}"))?)
            }
            (None, None, None, Some(target)) => Recipients::OnCall(oncall_target(&target)?),
            _ => {
                return Err(
                    "Give exactly one of user_ids (1 to 10000 ids), user_id, role or oncall."
                        .into(),
                )
            }
        };
        let title = self.title.trim().to_owned();
        if title.is_empty() || title.chars().count() > 200 {
            return Err("title: Give a title of 1 to 200 characters.".into());
        }
        if self.message.trim().is_empty() || self.message.chars().count() > 5_000 {
            return Err("message: Give a message of 1 to 5000 characters.".into());
        }
        let notification_type = self.notification_type.unwrap_or_else(|| "general".into());
        let valid_type = !notification_type.is_empty()
            && notification_type.len() <= 64
            && notification_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !valid_type {
            return Err("notification_type: 1 to 64 letters, digits, `_`, `-` or `.`.".into());
        }
        let data = match self.data {
            None | Some(Value::Null) => "{}".to_owned(),
            Some(v @ Value::Object(_)) => v.to_string(),
            Some(_) => return Err("data: must be a JSON object.".into()),
        };
        let channels = self
            .channels
            .iter()
            .map(|c| c.parse::<Channel>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("channels: {e}"))?;
        let link = self.link.filter(|l| !l.is_empty());
        if let Some(link) = &link {
            check_link(link)?;
        }
        Ok(Announcement {
            to,
            notification_type,
            title,
            message: self.message,
            data,
            link,
            channels,
            sent_by: None,
            idempotency: None,
        })
    }
}

/// The send API's `oncall`: `<schedule>` or `<schedule>:next` (`oncall:` before it is taken
/// too, as escalation policies write it).
fn oncall_target(text: &str) -> Result<tickethub_actors::oncall::Target, String> {
    let prefix = tickethub_actors::oncall::PREFIX;
    let full = if text.starts_with(prefix) {
        text.to_owned()
    } else {
        format!("{prefix}{text}")
    };
    tickethub_actors::oncall::Target::parse(&full).map_err(|_| {
        format!("oncall: `{text}` is not a schedule's name (1 to 64 lowercase letters, digits, `-` or `_`), optionally followed by `:next`.")
    })
}

/// How the send API names an on-call target: `primary`, or `primary:next`.
pub fn oncall_name(target: &tickethub_actors::oncall::Target) -> String {
    let full = target.name();
    full[tickethub_actors::oncall::PREFIX.len()..].to_owned()
}

/// A notification's link, which frontends navigate to (`action_url`): a path on the
/// frontend's own site (`/tickets/5`), or an `http(s)://` URL. Anything else, `javascript:`
/// and `data:` above all, is refused, as are control characters and protocol-relative `//host`.
pub fn check_link(link: &str) -> Result<(), String> {
    const REFUSED: &str =
        "link: Give a path starting with `/` or an http:// or https:// URL of at most 2000 characters.";
    if link.len() > 2000 || link.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(REFUSED.into());
    }
    let lower = link.to_ascii_lowercase();
    let ok = if let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    {
        rest.split(['/', '?', '#'])
            .next()
            .is_some_and(|host| !host.is_empty())
    } else {
        link.starts_with('/') && !link.starts_with("//") && !link.starts_with("/\\")
    };
    if ok {
        Ok(())
    } else {
        Err(REFUSED.into())
    }
}
