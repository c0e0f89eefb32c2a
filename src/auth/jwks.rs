//! An identity provider's signing keys, from its JWKS URL: fetched with reqwest, cached, and
//! fetched again when a token names a key the cache does not hold (a key rotation), at most
//! once per floor interval so that tokens with made-up `kid`s cannot flood the provider.
//!
//! A set that has grown old (`max_age`) is fetched again in the background while its keys go
//! on verifying: no request waits on the provider for a key the hub holds. Only a token naming
//! a key the hub does not hold waits, and all such tokens wait on one fetch.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// A key of the set, ready to verify with.
#[derive(Clone)]
pub struct Key {
    /// The one algorithm the key verifies.
    pub algorithm: Algorithm,
    /// The key.
    pub decoding: DecodingKey,
}

type Keys = Arc<HashMap<String, Key>>;

/// The largest key set read from a provider.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The cached key set of one JWKS URL.
pub struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<(Keys, Option<Instant>)>,
    /// Serializes fetches (one at a time, shared by every waiter); holds when the last one
    /// started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    /// Whether a background refresh of an old set is under way.
    refreshing: std::sync::atomic::AtomicBool,
    floor: Duration,
    max_age: Duration,
}

impl Jwks {
    /// A key set fetched from `url` when first needed. `floor` is the least time between two
    /// fetches; keys older than `max_age` are fetched again before use.
    pub fn new(url: String, floor: Duration, max_age: Duration) -> Self {
        // reqwest shares rustls with the ring provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // A few redirects, never from https to anything else: a key set fetched over https
        // must not be served by a plain-text hop.
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            let off_https = attempt.previous().first().map(|u| u.scheme()) == Some("https")
                && attempt.url().scheme() != "https";
            if off_https {
                attempt.error("a redirect away from https")
            } else if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(5))
            .redirect(redirects)
            .user_agent(concat!("tickethub/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with timeouts builds");
        Self {
            url,
            client,
            keys: RwLock::new((Arc::default(), None)),
            fetching: tokio::sync::Mutex::new(None),
            refreshing: std::sync::atomic::AtomicBool::new(false),
            floor,
            max_age,
        }
    }

    /// The key with this id: from the cache (a set grown old is refreshed in the background
    /// meanwhile), or from a fetch when the cache does not hold it (unless the last fetch was
    /// less than the floor ago).
    pub async fn key(self: &Arc<Self>, kid: &str) -> Option<Key> {
        let (cached, fresh) = self.cached(kid);
        if let Some(key) = cached {
            if !fresh {
                self.refresh_in_background();
            }
            return Some(key);
        }
        self.fetch_if_allowed(kid, false).await
    }

    /// One fetch at a time; a caller that waited finds what the fetch before it brought.
    async fn fetch_if_allowed(&self, kid: &str, refresh: bool) -> Option<Key> {
        let mut last = self.fetching.lock().await;
        // Another caller may have fetched while this one waited.
        let (cached, fresh) = self.cached(kid);
        if cached.is_some() && (fresh || !refresh) {
            return cached;
        }
        if !refresh && last.is_some_and(|at| at.elapsed() < self.floor) {
            return cached;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                let found = keys.get(kid).cloned();
                *self.keys.write().expect("jwks lock poisoned") = (keys, Some(Instant::now()));
                metrics::counter!("tickethub_jwks_fetches_total", "outcome" => "ok").increment(1);
                found
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "cannot fetch the JWKS; keeping the keys held");
                metrics::counter!("tickethub_jwks_fetches_total", "outcome" => "error")
                    .increment(1);
                // Keys held stay trusted while the provider is down; try again after the floor.
                if let Some(at) = self.keys.write().expect("jwks lock poisoned").1.as_mut() {
                    *at = Instant::now()
                        .checked_sub(self.max_age.saturating_sub(self.floor))
                        .unwrap_or_else(Instant::now);
                }
                cached
            }
        }
    }

    /// Starts a refresh of an old set unless one is under way.
    fn refresh_in_background(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.fetch_if_allowed("", true).await;
            this.refreshing.store(false, Ordering::Release);
        });
    }

    /// Fetches the key set once, ahead of the first token; a failure is only logged.
    pub async fn prefetch(&self) {
        let _ = self.fetch_if_allowed("", false).await;
    }

    fn cached(&self, kid: &str) -> (Option<Key>, bool) {
        let guard = self.keys.read().expect("jwks lock poisoned");
        let fresh = guard.1.is_some_and(|at| at.elapsed() < self.max_age);
        (guard.0.get(kid).cloned(), fresh)
    }

    async fn fetch(&self) -> Result<Keys, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        // A key set is a few kilobytes; a provider (or whoever answers for it) sending more is
        // refused rather than read into memory.
        let body = crate::delivery::outbound::read_limited(response, MAX_JWKS_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(Arc::new(usable_keys(&set)))
    }
}

/// The signing keys of a set that the hub accepts (RS256, ES256 and EdDSA), by `kid`. Keys
/// without a `kid`, for encryption, or of other algorithms are left out.
pub fn usable_keys(set: &JwkSet) -> HashMap<String, Key> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            if matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            ) {
                return None;
            }
            let algorithm = algorithm_of(jwk)?;
            let decoding = DecodingKey::from_jwk(jwk).ok()?;
            Some((
                kid,
                Key {
                    algorithm,
                    decoding,
                },
            ))
        })
        .collect()
}

/// The algorithm a key verifies: its `alg`, or where a provider leaves that out, the one its
/// key type implies.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(KeyAlgorithm::RS256) if implied == Algorithm::RS256 => Some(implied),
        Some(KeyAlgorithm::ES256) if implied == Algorithm::ES256 => Some(implied),
        Some(KeyAlgorithm::EdDSA) if implied == Algorithm::EdDSA => Some(implied),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signing_keys_of_the_three_algorithms_are_kept() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "-5jv9xQCdGnajrYUch4jb2CTmFMHxMH_QOBTLn8kSuQ"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": "-5jv9xQCdGnajrYUch4jb2CTmFMHxMH_QOBTLn8kSuQ"},
            {"kty": "OKP", "crv": "Ed25519", "x": "-5jv9xQCdGnajrYUch4jb2CTmFMHxMH_QOBTLn8kSuQ"},
            {"kty": "oct", "kid": "hmac", "alg": "HS256", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "rs", "n": "sXch", "e": "AQAB"},
        ]}))
        .unwrap();
        let keys = usable_keys(&set);
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["ed", "rs"]);
        assert_eq!(keys["ed"].algorithm, Algorithm::EdDSA);
        assert_eq!(keys["rs"].algorithm, Algorithm::RS256);
    }
}
