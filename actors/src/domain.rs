//! Domain types: identifiers, roles, users and projects.
//!
//! These types carry no serialization; the adapters convert them to and from their wire shapes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// The longest username, in characters (Django's).
pub const MAX_USERNAME: usize = 150;

/// How the service user of an API key is named: `key:<key name>`. No registration, `users add`
/// or identity provider can name a person so (a username is letters, digits and `@.+-_`), so a
/// key's name cannot be taken before the key is made.
pub const SERVICE_USER_PREFIX: &str = "key:";

/// Whether `username` names an API key's service user, whom nobody logs in as.
pub fn is_service_username(username: &str) -> bool {
    username.starts_with(SERVICE_USER_PREFIX)
}

/// The id of a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub i64);

/// The id of a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a user may do in the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Triages tickets; a super admin is an admin with `is_superuser`.
    Admin,
    /// Works on the tickets assigned to them.
    Developer,
    /// Opens tickets and approves or rejects the work.
    Client,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Developer, Role::Client];

    /// The lowercase name used in storage, tokens and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of `admin`, `developer`, `client`.
#[derive(Debug, thiserror::Error)]
#[error("unknown role `{0}` (expected admin, developer or client)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "developer" => Ok(Role::Developer),
            "client" => Ok(Role::Client),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// A user of the hub, without their password hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// The unique login name.
    pub username: String,
    /// The name shown to other people; falls back to the username when empty.
    pub display_name: String,
    /// Where the user's personal channels reach them (email, WhatsApp, SMS, and any other
    /// channel with an address of each user's own), one per channel.
    pub addresses: Vec<Address>,
    /// What the user may do.
    pub role: Role,
    /// A super admin receives `user_registered`.
    pub is_superuser: bool,
    /// An inactive user can neither log in nor connect.
    pub is_active: bool,
    /// Bumped whenever the user's tokens must end (a password, role or activation change):
    /// the hub's tokens carry it, and older ones are refused.
    pub token_version: i64,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
}

/// One of a user's addresses: where a personal channel reaches them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// The channel.
    pub channel: crate::event::Channel,
    /// The address: an email address, a number, a chat id.
    pub address: String,
    /// When it was verified (by its owner's code, or set by an admin); nothing but a
    /// verification message goes to an unverified address.
    pub verified_at: Option<DateTime<Utc>>,
    /// When the provider refused it for good (a number that is not a mobile one, or whose
    /// owner unsubscribed): nothing goes to it until it is set again.
    pub invalid_at: Option<DateTime<Utc>>,
}

impl Address {
    /// A verified address on `channel`, as an admin sets it.
    pub fn verified(channel: crate::event::Channel, address: impl Into<String>) -> Self {
        Self {
            channel,
            address: address.into(),
            verified_at: Some(Utc::now()),
            invalid_at: None,
        }
    }
}

impl User {
    /// The user's address on `channel`, if they have one.
    pub fn address(&self, channel: crate::event::Channel) -> Option<&Address> {
        self.addresses
            .iter()
            .find(|a| a.channel == channel && !a.address.is_empty())
    }

    /// The user's address on `channel` as text, if they have one.
    pub fn address_of(&self, channel: crate::event::Channel) -> Option<&str> {
        self.address(channel).map(|a| a.address.as_str())
    }

    /// The name to show for this user.
    pub fn name(&self) -> &str {
        if self.display_name.is_empty() {
            &self.username
        } else {
            &self.display_name
        }
    }
}

/// The fields needed to create a user; the password arrives already hashed.
#[derive(Clone, Debug)]
pub struct NewUser {
    /// The unique login name.
    pub username: String,
    /// The name shown to other people.
    pub display_name: String,
    /// Email address, if any.
    pub email: Option<String>,
    /// WhatsApp number, if any.
    pub whatsapp_number: Option<String>,
    /// Phone number for SMS, if any.
    pub phone_number: Option<String>,
    /// The user's role.
    pub role: Role,
    /// Whether the user is a super admin.
    pub is_superuser: bool,
    /// The argon2 PHC string of the password.
    pub password_hash: String,
}

impl NewUser {
    /// A user with only a name, a role and a password hash: no display name, no addresses, not
    /// a super admin.
    pub fn new(username: impl Into<String>, role: Role, password_hash: impl Into<String>) -> Self {
        NewUser {
            username: username.into(),
            display_name: String::new(),
            email: None,
            whatsapp_number: None,
            phone_number: None,
            role,
            is_superuser: false,
            password_hash: password_hash.into(),
        }
    }
}

/// A project: the unit of membership for tickets and project streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    /// The project's id.
    pub id: ProjectId,
    /// The short key that prefixes ticket keys, e.g. `PROJ`.
    pub key: String,
    /// The human name.
    pub name: String,
    /// The ids of its members.
    pub member_ids: Vec<UserId>,
    /// When the project was created.
    pub created_at: DateTime<Utc>,
}

/// Whether `key` is a valid project key: 2 to 10 ASCII uppercase letters or digits,
/// starting with a letter.
pub fn is_valid_project_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    (2..=10).contains(&bytes.len())
        && bytes[0].is_ascii_uppercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn project_keys_are_short_uppercase_words() {
        assert!(is_valid_project_key("PROJ"));
        assert!(is_valid_project_key("WEB2"));
        assert!(!is_valid_project_key("P"));
        assert!(!is_valid_project_key("proj"));
        assert!(!is_valid_project_key("2WEB"));
        assert!(!is_valid_project_key("PROJECTKEY1"));
    }
}

/// Who made an idempotent request, and the key they gave: what a commit marks as done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyMark {
    /// `user:<id>` or `key:<id>`.
    pub caller: String,
    /// The `Idempotency-Key` header.
    pub key: String,
}
