//! The reply address of a page's email: `ack+<token>@<domain>`, where the token names one
//! notification of one recipient until it expires, signed by this hub (HMAC-SHA256 under a
//! key derived from the token secret), so that a reply cannot be forged for another person or
//! another page by guessing: `<notification>-<user>-<expiry, unix seconds>-<16 hex digits>`.
//! Mail systems may change a local part's case; the token is read in lower case.

use hmac::{KeyInit, Mac};

/// The local part's prefix before the token.
pub const PREFIX: &str = "ack+";

/// Signs and checks reply tokens.
pub struct ReplyKey {
    key: [u8; 32],
    /// The domain the listener receives replies at.
    pub domain: String,
}

impl std::fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyKey")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl ReplyKey {
    /// A key derived from the hub's secret material (never used as is: the token secret signs
    /// access tokens too), for replies at `domain`.
    pub fn derive(secret: &[u8], domain: &str) -> Self {
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(b"tickethub reply addresses v1");
        Self {
            key: mac.finalize().into_bytes().into(),
            domain: domain.to_ascii_lowercase(),
        }
    }

    fn mac(&self, claims: &str) -> String {
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(claims.as_bytes());
        mac.finalize().into_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The address a reply to this notification's email goes to.
    pub fn address(
        &self,
        notification: i64,
        user: i64,
        expires: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let claims = crate::channels::signed::claims(notification, user, expires, '-');
        format!("{PREFIX}{claims}-{}@{}", self.mac(&claims), self.domain)
    }

    /// The notification and user a reply address names, if it is one of this hub's, at its
    /// domain, and has not expired at `now`.
    pub fn check(
        &self,
        address: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(i64, i64), &'static str> {
        let address = address.trim().trim_matches(['<', '>']).to_ascii_lowercase();
        let (local, domain) = address.rsplit_once('@').ok_or("not an address")?;
        if domain != self.domain {
            return Err("not at this hub's reply domain");
        }
        let token = local.strip_prefix(PREFIX).ok_or("not a reply address")?;
        let (claims, mac) = token.rsplit_once('-').ok_or("not a reply address")?;
        crate::channels::signed::check(claims, mac, &self.mac(claims), '-', now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_names_its_page_until_it_expires_and_nothing_else() {
        let key = ReplyKey::derive(b"a secret of the hub", "Replies.Example.com");
        let now = chrono::Utc::now();
        let expires = now + chrono::TimeDelta::hours(24);
        let address = key.address(4711, 42, expires);
        assert!(address.starts_with("ack+4711-42-"), "{address}");
        assert!(address.ends_with("@replies.example.com"), "{address}");
        let (local, _) = address.split_once('@').unwrap();
        assert!(local.len() <= 64, "an email's local part holds 64 octets");
        assert_eq!(key.check(&address, now), Ok((4711, 42)));
        // As mail systems may pass it on: upper case, in angle brackets.
        assert_eq!(
            key.check(&format!("<{}>", address.to_uppercase()), now),
            Ok((4711, 42))
        );
        assert_eq!(key.check(&address, expires), Err("expired"));
        // Another user's or another page's token, made from this one, is refused.
        for forged in [
            address.replacen("-42-", "-43-", 1),
            address.replacen("4711-", "4712-", 1),
        ] {
            assert_eq!(key.check(&forged, now), Err("not signed by this hub"));
        }
        let other = ReplyKey::derive(b"another hub's secret", "replies.example.com");
        assert_eq!(other.check(&address, now), Err("not signed by this hub"));
        assert_eq!(
            key.check(&address.replace("example.com", "example.org"), now),
            Err("not at this hub's reply domain")
        );
        assert_eq!(
            key.check("alice@replies.example.com", now),
            Err("not a reply address")
        );
    }
}
