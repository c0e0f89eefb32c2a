//! The keys the hub signs its own links and addresses with, derived from its token secret.

use std::sync::Arc;

use super::BuildError;
use crate::config::ServeConfig;
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
