//! The reply address of a page's email: `ack+<token>@<domain>`, where the token names one
//! notification of one recipient until it expires, signed by this hub (HMAC-SHA256 under a
//! key derived from the token secret), so that a reply cannot be forged for another person or
//! another page by guessing: `<notification>-<user>-<expiry, unix seconds>-<16 hex digits>`.
//! Mail systems may change a local part's case; the token is read in lower case.
//!
//! Notification emails go out with a return path of the same kind when the listener runs:
//! `bounce+<delivery>-<user>-<expiry>-<mac>@<domain>` (signed for that purpose alone), so that a
//! bounce names the one delivery it is about, and no one can make the hub suppress an address
//! they never received the hub's mail at.

use hmac::{KeyInit, Mac};

/// The local part's prefix before the token.
pub const PREFIX: &str = "ack+";

/// The return path's prefix before its token.
pub const BOUNCE_PREFIX: &str = "bounce+";

/// How long a return path takes bounces: a server may try for days before it gives up.
pub const BOUNCES_FOR: chrono::TimeDelta = chrono::TimeDelta::days(14);

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

    /// The signature of `claims` for addresses with `prefix`: a reply address's over its
    /// claims alone, any other's over its prefix too (a token of one kind is no token of
    /// another).
    fn mac(&self, prefix: &str, claims: &str) -> String {
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        if prefix != PREFIX {
            mac.update(prefix.as_bytes());
        }
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
        self.signed(PREFIX, notification, user, expires)
    }

    /// The return path of a notification's email: bounces of delivery `delivery` to `user`
    /// come back to it.
    pub fn bounce_address(&self, delivery: i64, user: i64, expires: chrono::DateTime<chrono::Utc>) -> String {
        self.signed(BOUNCE_PREFIX, delivery, user, expires)
    }

    fn signed(&self, prefix: &str, id: i64, user: i64, expires: chrono::DateTime<chrono::Utc>) -> String {
        let claims = crate::channels::signed::claims(id, user, expires, '-');
        format!("{prefix}{claims}-{}@{}", self.mac(prefix, &claims), self.domain)
    }

    /// The notification and user a reply address names, if it is one of this hub's, at its
    /// domain, and has not expired at `now`.
    pub fn check(
        &self,
        address: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(i64, i64), &'static str> {
        self.check_as(PREFIX, address, now)
    }

    /// The delivery and user a return path names, as [`ReplyKey::check`] does for replies.
    pub fn check_bounce(
        &self,
        address: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(i64, i64), &'static str> {
        self.check_as(BOUNCE_PREFIX, address, now)
    }

    fn check_as(
        &self,
        prefix: &str,
        address: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(i64, i64), &'static str> {
        let address = address.trim().trim_matches(['<', '>']).to_ascii_lowercase();
        let (local, domain) = address.rsplit_once('@').ok_or("not an address")?;
        if domain != self.domain {
            return Err("not at this hub's reply domain");
        }
        let token = local.strip_prefix(prefix).ok_or("not a reply address")?;
        let (claims, mac) = token.rsplit_once('-').ok_or("not a reply address")?;
        crate::channels::signed::check(claims, mac, &self.mac(prefix, claims), '-', now)
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

    #[test]
    fn a_return_path_is_no_reply_address_and_a_reply_address_no_return_path() {
        let key = ReplyKey::derive(b"a secret of the hub", "replies.example.com");
        let now = chrono::Utc::now();
        let expires = now + BOUNCES_FOR;
        let bounce = key.bounce_address(77, 42, expires);
        assert!(bounce.starts_with("bounce+77-42-"), "{bounce}");
        assert_eq!(key.check_bounce(&bounce.to_uppercase(), now), Ok((77, 42)));
        // The same claims under the other prefix do not pass: each kind is signed apart.
        let as_reply = bounce.replacen(BOUNCE_PREFIX, PREFIX, 1);
        assert_eq!(key.check(&as_reply, now), Err("not signed by this hub"));
        let reply = key.address(77, 42, expires);
        let as_bounce = reply.replacen(PREFIX, BOUNCE_PREFIX, 1);
        assert_eq!(key.check_bounce(&as_bounce, now), Err("not signed by this hub"));
        assert_eq!(key.check_bounce(&reply, now), Err("not a reply address"));
    }
}
