//! The keys the hub signs its own links and addresses with, derived from its token secret.

use std::path::PathBuf;
use std::sync::Arc;

use super::BuildError;
use crate::auth;
use crate::config::{write_private, DatabaseKind, ServeConfig};
use crate::setting::ConfigError;

/// What the hub's own signed links and addresses are derived from: the token secret (HS256),
/// else the token private key's file, so that every node of a cluster derives the same; none
/// when tokens are checked only with an identity provider's keys.
fn key_material(config: &ServeConfig, secret: Option<&str>) -> Result<Option<Vec<u8>>, BuildError> {
    Ok(match (secret, &config.jwt_private_key) {
        (Some(secret), _) => Some(secret.as_bytes().to_vec()),
        (None, Some(path)) => Some(std::fs::read(path).map_err(|e| {
            ConfigError::new(
                "--jwt-private-key (TICKETHUB_JWT_PRIVATE_KEY)",
                format!("cannot read {}: {e}", path.display()),
            )
        })?),
        (None, None) => None,
    })
}

/// The key of notification emails' one-click unsubscribe links (none without key material).
pub(super) fn unsubscribe_key(
    config: &ServeConfig,
    secret: Option<&str>,
) -> Result<Option<Arc<crate::channels::email::UnsubscribeKey>>, BuildError> {
    Ok(key_material(config, secret)?
        .map(|m| Arc::new(crate::channels::email::UnsubscribeKey::derive(&m))))
}

/// The key of pages' reply addresses, when the hub takes replies by email
/// (`--inbound-email-domain`), derived from [`key_material`].
pub(super) fn reply_key(
    config: &ServeConfig,
    secret: Option<&str>,
) -> Result<Option<Arc<crate::channels::email::ReplyKey>>, BuildError> {
    let Some(domain) = &config.channels.email.inbound_email_domain else {
        return Ok(None);
    };
    let Some(material) = key_material(config, secret)? else {
        return Err(ConfigError::new(
            "--inbound-email-domain (TICKETHUB_INBOUND_EMAIL_DOMAIN)",
            "reply addresses are signed with the token secret or private key; this hub has neither",
        )
        .into());
    };
    Ok(Some(Arc::new(crate::channels::email::ReplyKey::derive(
        &material, domain,
    ))))
}

/// The attachment store the settings name (see [`crate::attachments::Attachments::open`]),
/// its download links signed with a key derived from [`key_material`].
pub(super) fn attachment_store(
    config: &ServeConfig,
    secret: Option<&str>,
) -> Result<Option<Arc<crate::attachments::Attachments>>, BuildError> {
    let file = sqlite_file(&config.database_url);
    let sqlite =
        crate::config::database_kind(&config.database_url)? == crate::config::DatabaseKind::Sqlite;
    let material = key_material(config, secret)?;
    Ok(crate::attachments::Attachments::open(
        &config.attachments,
        file.as_deref(),
        sqlite && file.is_none(),
        material.as_deref(),
    )?
    .map(Arc::new))
}

/// The HS256 secret of an embedded hub: kept in `<database file>.jwt-secret`, created on
/// first start, so that tokens survive restarts. An in-memory database gets a fresh one.
pub(super) fn embedded_secret(database_url: &str) -> Result<String, BuildError> {
    if crate::config::database_kind(database_url)? != DatabaseKind::Sqlite {
        return Err(ConfigError::new(
            "--jwt-secret (TICKETHUB_JWT_SECRET)",
            "is required with a PostgreSQL database",
        )
        .into());
    }
    let Some(path) = sqlite_file(database_url) else {
        return Ok(auth::generate_secret());
    };
    let mut secret_path = path.into_os_string();
    secret_path.push(".jwt-secret");
    let secret_path = PathBuf::from(secret_path);
    match std::fs::read_to_string(&secret_path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(s.trim().to_owned()),
        Ok(_) => {
            return Err(BuildError::Secret(format!(
                "{} is shorter than 32 characters",
                secret_path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(BuildError::Secret(format!(
                "cannot read {}: {e}",
                secret_path.display()
            )))
        }
    }
    let secret = auth::generate_secret();
    write_private(&secret_path, &secret)
        .map_err(|e| BuildError::Secret(format!("cannot write {}: {e}", secret_path.display())))?;
    tracing::info!(path = %secret_path.display(), "generated a token secret");
    Ok(secret)
}

/// The file an SQLite URL names, or `None` for an in-memory database.
pub(super) fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        None
    } else {
        Some(PathBuf::from(path))
    }
}
