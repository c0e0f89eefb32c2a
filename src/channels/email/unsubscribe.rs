//! The one-click unsubscribe link of a notification's email (RFC 8058): a token that names one
//! person and one notification type, signed by this hub (HMAC-SHA256 under a key derived from
//! the token secret), so that it switches off that type's email for that person and nothing
//! else: it is no login, and cannot be made for anyone else by guessing.
//! `<base64url of "user:type">.<32 hex digits>`.

use base64::Engine;
use hmac::{KeyInit, Mac};

/// The path of the link, on the hub's public address.
pub const PATH: &str = "/unsubscribe/";

/// Signs and checks unsubscribe tokens.
pub struct UnsubscribeKey {
    key: [u8; 32],
}

impl std::fmt::Debug for UnsubscribeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsubscribeKey").finish_non_exhaustive()
    }
}

impl UnsubscribeKey {
    /// A key derived from the hub's secret material (never used as is).
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(b"tickethub unsubscribe links v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, claims: &str) -> String {
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(claims.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// The token that switches `kind`'s email off for `user`.
    pub fn token(&self, user: i64, kind: &str) -> String {
        let claims = format!("{user}:{kind}");
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&claims);
        format!("{encoded}.{}", self.mac(&claims))
    }

    /// The person and type a token names, if this hub signed it.
    pub fn check(&self, token: &str) -> Result<(i64, String), &'static str> {
        let (encoded, given) = token.trim().split_once('.').ok_or("not a token")?;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or("not a token")?;
        let given = hex::decode(given).map_err(|_| "not signed by this hub")?;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(claims.as_bytes());
        // Compared in constant time.
        if given.len() != 16 || mac.verify_truncated_left(&given).is_err() {
            return Err("not signed by this hub");
        }
        let (user, kind) = claims.split_once(':').ok_or("not a token")?;
        let user = user.parse().map_err(|_| "not a token")?;
        if kind.is_empty() {
            return Err("not a token");
        }
        Ok((user, kind.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_one_person_and_type_and_are_checked() {
        let key = UnsubscribeKey::derive(b"secret material");
        let token = key.token(42, "ticket_assigned");
        assert_eq!(key.check(&token), Ok((42, "ticket_assigned".to_owned())));
        let other = UnsubscribeKey::derive(b"other material");
        assert_eq!(other.check(&token), Err("not signed by this hub"));
        // Another person's or type's claims under the same signature.
        let (_, mac) = token.split_once('.').unwrap();
        let forged = format!(
            "{}.{mac}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("43:ticket_assigned")
        );
        assert_eq!(key.check(&forged), Err("not signed by this hub"));
        for junk in ["", ".", "abc", "!!!.00", "YQ.00"] {
            assert!(key.check(junk).is_err(), "{junk}");
        }
    }
}
