//! API keys for servers: `Authorization: Api-Key <key>` (the scheme of
//! djangorestframework-api-key).
//!
//! A key is `<prefix>.<secret>`: the prefix (8 characters) is shown to recognize the key and
//! finds its row; only the SHA-256 of the whole key is stored (a key carries 190 random bits,
//! so a fast hash is as safe as a slow one and costs nothing per request). A key acts as its
//! service user, and only within its scopes: every route a key may call is listed in
//! [`SCOPES`]; any other answers 403. Keys are never accepted on sockets or the event stream.

use axum::http::Method;
use sha2::{Digest, Sha256};

/// Sends notifications: `POST /api/notifications/send/`, as an admin would, and lists, shows
/// and cancels the sends the key scheduled (`/api/notifications/scheduled/`).
pub const NOTIFICATIONS_SEND: &str = "notifications:send";
/// Creates tickets, acts on them and comments, as the key's service user (whose role decides
/// which actions it may take), and reads tickets and projects as that user.
pub const TICKETS_WRITE: &str = "tickets:write";
/// Reads what admins read: the admin endpoints, users, tickets, projects, notifications'
/// timelines and deliveries.
pub const ADMIN_READ: &str = "admin:read";

/// Every scope, with what it grants.
pub const SCOPES: [&str; 3] = [NOTIFICATIONS_SEND, TICKETS_WRITE, ADMIN_READ];

/// The characters of a key.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The length of a key's prefix and of its secret.
const PREFIX_LEN: usize = 8;
const SECRET_LEN: usize = 32;

/// A new key: the whole key (shown once), its prefix and its hash.
pub struct Generated {
    /// `<prefix>.<secret>`, shown once.
    pub key: String,
    /// The public part.
    pub prefix: String,
    /// The SHA-256 of `key`, hex.
    pub hash: String,
}

fn random_text(n: usize) -> String {
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Makes a key.
pub fn generate() -> Generated {
    let prefix = random_text(PREFIX_LEN);
    let key = format!("{prefix}.{}", random_text(SECRET_LEN));
    let hash = hash(&key);
    Generated { key, prefix, hash }
}

/// The stored form of a key.
pub fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The prefix of a key as a client sends it, if it is shaped like one.
pub fn prefix_of(key: &str) -> Option<&str> {
    let (prefix, secret) = key.split_once('.')?;
    (prefix.len() == PREFIX_LEN
        && secret.len() == SECRET_LEN
        && key.bytes().all(|b| b == b'.' || b.is_ascii_alphanumeric()))
    .then_some(prefix)
}

/// Whether `hash` is the stored form of `key`, compared in constant time.
pub fn matches(key: &str, stored: &str) -> bool {
    same_hash(&hash(key), stored)
}

/// Whether two hashes are the same, compared in constant time.
pub fn same_hash(given: &str, stored: &str) -> bool {
    given.len() == stored.len()
        && given
            .bytes()
            .zip(stored.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Checks a list of scopes: known, at least one, no repeats.
pub fn parse_scopes<S: AsRef<str>>(given: &[S]) -> Result<Vec<String>, String> {
    let mut scopes: Vec<String> = Vec::new();
    for s in given {
        let s = s.as_ref().trim();
        if !SCOPES.contains(&s) {
            return Err(format!(
                "`{s}` is not a scope; the scopes are {}",
                SCOPES.join(", ")
            ));
        }
        if !scopes.iter().any(|have| have == s) {
            scopes.push(s.to_owned());
        }
    }
    if scopes.is_empty() {
        return Err(format!("give at least one of {}", SCOPES.join(", ")));
    }
    Ok(scopes)
}

/// What a key's scopes make of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// The route is outside every scope of the key.
    Refused,
    /// Allowed, with an admin's powers (sending, admin reads).
    AsAdmin,
    /// Allowed, with the service user's own role.
    AsUser,
}

/// Whether a scope covers a request to `path` (the path as requested).
fn covers(scope: &str, method: &Method, path: &str) -> bool {
    let get = method == Method::GET || method == Method::HEAD;
    match scope {
        NOTIFICATIONS_SEND => {
            (method == Method::POST && path == "/api/notifications/send/")
                || (path.starts_with("/api/notifications/scheduled/")
                    && (get || method == Method::DELETE))
        }
        TICKETS_WRITE => {
            path.starts_with("/api/tickets/")
                && (get
                    || method == Method::POST
                    || method == Method::PATCH
                    || (method == Method::DELETE
                        && (path.contains("/comments/") || path.contains("/attachments/"))))
                || (get && path.starts_with("/api/projects/"))
        }
        ADMIN_READ => {
            get && (path.starts_with("/api/admin/")
                || path.starts_with("/api/oncall/")
                || path.starts_with("/api/users/")
                || path.starts_with("/api/tickets/")
                || path.starts_with("/api/projects/")
                || (path.starts_with("/api/notifications/")
                    && (path.ends_with("/timeline/") || path.ends_with("/deliveries/"))))
        }
        _ => false,
    }
}

/// What `scopes` allow for a request: admin powers where a sending or admin-read scope covers
/// it, else the service user's own where `tickets:write` does.
pub fn grant(scopes: &[String], method: &Method, path: &str) -> Grant {
    let covering: Vec<&str> = scopes
        .iter()
        .map(String::as_str)
        .filter(|s| covers(s, method, path))
        .collect();
    if covering
        .iter()
        .any(|s| *s == NOTIFICATIONS_SEND || *s == ADMIN_READ)
    {
        Grant::AsAdmin
    } else if covering.is_empty() {
        Grant::Refused
    } else {
        Grant::AsUser
    }
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// A field is invalid (`field: why`).
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] tickethub_actors::ports::StoreError),
}

/// The longest key name.
pub const MAX_NAME: usize = 64;

/// Makes a key named `name` with `scopes`, acting as the user `user`, or, without one, as a
/// service user of its own, `key:<name>` (a client nobody can log in as, in a namespace no
/// registration reaches). Answers the
/// stored key and the whole key, which is shown this once.
pub async fn create(
    store: &dyn tickethub_actors::ports::Store,
    name: &str,
    scopes: &[String],
    user: Option<&str>,
    actor: &str,
) -> Result<(tickethub_actors::ports::ApiKey, String), CreateError> {
    use tickethub_actors::domain::{NewUser, Role};
    use tickethub_actors::ports::{NewApiKey, StoreError};
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(CreateError::Invalid(format!(
            "name: 1 to {MAX_NAME} letters, digits, `-`, `_` or `.`"
        )));
    }
    let scopes = parse_scopes(scopes).map_err(|e| CreateError::Invalid(format!("scopes: {e}")))?;
    if store.api_keys().await?.iter().any(|k| k.name == name) {
        return Err(CreateError::Invalid(format!(
            "name: a key named `{name}` exists"
        )));
    }
    let user = match user {
        Some(username) => {
            let (found, _) = store
                .user_with_hash(username)
                .await?
                .filter(|(u, _)| u.is_active)
                .ok_or_else(|| {
                    CreateError::Invalid(format!("user: no active user named `{username}`"))
                })?;
            found.id
        }
        None => {
            let username = format!("{}{name}", tickethub_actors::domain::SERVICE_USER_PREFIX);
            let created = store
                .create_user(NewUser {
                    username,
                    display_name: name.to_owned(),
                    email: None,
                    whatsapp_number: None,
                    phone_number: None,
                    role: Role::Client,
                    is_superuser: false,
                    // A password nobody is told.
                    password_hash: crate::auth::hash_password(crate::auth::generate_secret()).await,
                })
                .await;
            match created {
                Ok(u) => u.id,
                // The service user of a key of this name, made before: the name is taken.
                Err(StoreError::Conflict(_)) => {
                    return Err(CreateError::Invalid(format!(
                        "name: `{name}` is taken (its user `key:{name}` exists)"
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let generated = generate();
    let key = store
        .create_api_key(
            NewApiKey {
                name: name.to_owned(),
                prefix: generated.prefix,
                hash: generated.hash,
                scopes,
                user,
            },
            actor,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                CreateError::Invalid(format!("name: a key named `{name}` exists"))
            }
            other => other.into(),
        })?;
    Ok((key, generated.key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_recognized_by_its_prefix_and_matched_by_its_hash_only() {
        let g = generate();
        assert_eq!(prefix_of(&g.key), Some(g.prefix.as_str()));
        assert!(matches(&g.key, &g.hash));
        assert!(!g.hash.contains(&g.key[PREFIX_LEN + 1..]));
        let mut other = g.key.clone();
        other.pop();
        other.push(if g.key.ends_with('A') { 'B' } else { 'A' });
        assert!(!matches(&other, &g.hash));
        assert_eq!(prefix_of("short.key"), None);
        assert_eq!(prefix_of(&format!("{}x", g.key)), None);
        assert_eq!(prefix_of(&g.key.replace('.', "_")), None);
    }

    #[test]
    fn scopes_are_checked_and_deduplicated() {
        assert_eq!(
            parse_scopes(&["notifications:send", "admin:read", "notifications:send"]).unwrap(),
            vec!["notifications:send", "admin:read"]
        );
        assert!(parse_scopes(&["admin:write"])
            .unwrap_err()
            .contains("admin:write"));
        assert!(parse_scopes::<&str>(&[]).is_err());
    }

    #[test]
    fn each_scope_reaches_its_routes_only() {
        let s = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let send = s(&[NOTIFICATIONS_SEND]);
        assert_eq!(
            grant(&send, &Method::POST, "/api/notifications/send/"),
            Grant::AsAdmin
        );
        assert_eq!(
            grant(&send, &Method::GET, "/api/admin/actors/"),
            Grant::Refused
        );
        for (method, path) in [
            (Method::GET, "/api/notifications/scheduled/"),
            (Method::GET, "/api/notifications/scheduled/7/"),
            (Method::DELETE, "/api/notifications/scheduled/7/"),
        ] {
            assert_eq!(
                grant(&send, &method, path),
                Grant::AsAdmin,
                "{method} {path}"
            );
        }
        assert_eq!(
            grant(&send, &Method::POST, "/api/notifications/scheduled/7/"),
            Grant::Refused
        );
        assert_eq!(
            grant(&send, &Method::GET, "/api/notifications/"),
            Grant::Refused
        );
        assert_eq!(grant(&send, &Method::POST, "/api/tickets/"), Grant::Refused);
        assert_eq!(
            grant(&send, &Method::POST, "/api/auth/logout/"),
            Grant::Refused
        );
        let write = s(&[TICKETS_WRITE]);
        assert_eq!(grant(&write, &Method::POST, "/api/tickets/"), Grant::AsUser);
        assert_eq!(
            grant(&write, &Method::POST, "/api/tickets/4/assign/"),
            Grant::AsUser
        );
        assert_eq!(grant(&write, &Method::GET, "/api/projects/"), Grant::AsUser);
        assert_eq!(
            grant(&write, &Method::DELETE, "/api/tickets/4/"),
            Grant::Refused
        );
        assert_eq!(
            grant(&write, &Method::PATCH, "/api/tickets/4/"),
            Grant::AsUser
        );
        assert_eq!(
            grant(&write, &Method::DELETE, "/api/tickets/4/comments/9/"),
            Grant::AsUser
        );
        assert_eq!(
            grant(&write, &Method::DELETE, "/api/tickets/4/attachments/9/"),
            Grant::AsUser
        );
        assert_eq!(
            grant(&write, &Method::POST, "/api/notifications/send/"),
            Grant::Refused
        );
        assert_eq!(
            grant(&write, &Method::PATCH, "/api/users/1/"),
            Grant::Refused
        );
        let read = s(&[ADMIN_READ]);
        assert_eq!(
            grant(&read, &Method::GET, "/api/admin/api-keys/"),
            Grant::AsAdmin
        );
        assert_eq!(
            grant(&read, &Method::GET, "/api/notifications/3/timeline/"),
            Grant::AsAdmin
        );
        assert_eq!(
            grant(&read, &Method::GET, "/api/notifications/"),
            Grant::Refused
        );
        assert_eq!(
            grant(&read, &Method::POST, "/api/admin/api-keys/"),
            Grant::Refused
        );
        assert_eq!(grant(&read, &Method::POST, "/api/tickets/"), Grant::Refused);
        // Where both reach, reads are an admin's; writes stay the service user's.
        let both = s(&[TICKETS_WRITE, ADMIN_READ]);
        assert_eq!(grant(&both, &Method::GET, "/api/tickets/"), Grant::AsAdmin);
        assert_eq!(
            grant(&both, &Method::POST, "/api/tickets/1/close/"),
            Grant::AsUser
        );
    }
}
