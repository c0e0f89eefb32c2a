//! Tokens and passwords: JWT issue and verification with a pinned algorithm, argon2 hashes.
//!
//! Shared by the HTTP API and the WebSocket handshake. Tokens never reach a log line.

pub mod api_keys;
pub mod jwks;

use std::path::Path;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tickethub_actors::domain::{User, UserId};
use tickethub_actors::ports::{
    CredentialStore, NotificationCursor, RefreshRecord, StoreError, UserStore,
};

use crate::config::{ConfigError, JwtAlgorithm, ServeConfig};

/// Which kind of token a JWT is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// Short-lived; authorizes requests and sockets.
    Access,
    /// Longer-lived; only buys new access tokens.
    Refresh,
}

impl TokenType {
    fn as_str(self) -> &'static str {
        match self {
            TokenType::Access => "access",
            TokenType::Refresh => "refresh",
        }
    }
}

/// Why a token was refused. The message is safe to show to the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// No token was presented.
    #[error("Authentication credentials were not provided.")]
    Missing,
    /// The token's `exp` has passed.
    #[error("Token is expired.")]
    Expired,
    /// A refresh token was used as an access token, or the reverse.
    #[error("Token has wrong type.")]
    WrongType,
    /// Anything else: bad signature, other algorithm, `alg: none`, no `exp`, garbage.
    #[error("Given token not valid for any token type.")]
    Invalid,
    /// A valid token whose user is unknown here or deactivated.
    #[error("User not found or inactive.")]
    Inactive,
    /// A token ended before its expiry: by logout, by the reuse of a rotated-out refresh
    /// token, or by a change of the user's password, role or activation.
    #[error("Token has been revoked.")]
    Revoked,
}

/// Why a caller could not be authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token or its user was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The user could not be looked up.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The claims the hub issues and accepts.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    /// The user's token version when it was issued (the hub's own tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ver: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    /// A string or a list of strings (jsonwebtoken checks it against the audience).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    /// Any other claim (the username claim of an identity provider's token).
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// Whom a verified token names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A local user id (`user_id`, or a numeric `sub`).
    Id(UserId),
    /// A local username (the configured username claim).
    Username(String),
}

/// A token whose signature and claims were verified, before its user was looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// Whose token it is.
    pub subject: Subject,
    /// When it expires, in seconds since the Unix epoch.
    pub exp: i64,
    /// The token's id.
    pub jti: Option<String>,
    /// The user's token version the hub issued it under; `None` for an identity provider's
    /// token, which the hub cannot end (its sockets still close when the user changes).
    pub version: Option<i64>,
    /// The identity provider's issuer and subject, for a token verified with its keys.
    pub provider: Option<(String, String)>,
}

/// A verified token of a known, active user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Whose token it is.
    pub user_id: UserId,
    /// When it expires, in seconds since the Unix epoch.
    pub exp: i64,
}

/// A fresh access and refresh token.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// The access token.
    pub access: String,
    /// The refresh token.
    pub refresh: String,
}

/// Issues and verifies tokens.
pub struct Auth {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    /// The hub's own key; absent when only an identity provider's keys verify.
    decoding: Option<DecodingKey>,
    validation: Validation,
    jwks: Option<std::sync::Arc<jwks::Jwks>>,
    /// `validation` pinned to each algorithm a JWKS key may have.
    jwks_validations: Vec<(Algorithm, Validation)>,
    username_claim: Option<String>,
    access_ttl: i64,
    refresh_ttl: i64,
    audience: Option<String>,
    issuer: Option<String>,
    /// Access tokens of the hub's own, checked in full once: see [`Auth::authenticate`].
    verified: std::sync::Mutex<std::collections::HashMap<Box<str>, Claimed>>,
}

/// How many verified access tokens are kept (a few hundred bytes each); past it, the expired
/// ones go, and if none has, all.
const VERIFIED_CAPACITY: usize = 4_096;

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Builds the verifier from the configuration and the resolved HS256 secret (if any).
    pub fn from_config(config: &ServeConfig, secret: Option<&str>) -> Result<Self, ConfigError> {
        let (algorithm, encoding, decoding) = match config.jwt_algorithm {
            JwtAlgorithm::Hs256 => {
                let secret = secret.ok_or_else(|| {
                    ConfigError::new("--jwt-secret (TICKETHUB_JWT_SECRET)", "is required")
                })?;
                (
                    Algorithm::HS256,
                    Some(EncodingKey::from_secret(secret.as_bytes())),
                    Some(DecodingKey::from_secret(secret.as_bytes())),
                )
            }
            alg @ (JwtAlgorithm::Rs256 | JwtAlgorithm::Es256) => {
                const PUB: &str = "--jwt-public-key (TICKETHUB_JWT_PUBLIC_KEY)";
                const PRIV: &str = "--jwt-private-key (TICKETHUB_JWT_PRIVATE_KEY)";
                let public = read_pem(config.jwt_public_key.as_deref(), PUB)?;
                if public.is_none() && config.jwt_jwks_url.is_none() {
                    return Err(ConfigError::new(PUB, "is required with RS256 and ES256"));
                }
                let private = read_pem(config.jwt_private_key.as_deref(), PRIV)?;
                let rsa = alg == JwtAlgorithm::Rs256;
                let decoding = public
                    .map(|pem| {
                        if rsa {
                            DecodingKey::from_rsa_pem(&pem)
                        } else {
                            DecodingKey::from_ec_pem(&pem)
                        }
                        .map_err(|e| ConfigError::new(PUB, format!("not a usable PEM key: {e}")))
                    })
                    .transpose()?;
                let encoding = private
                    .map(|pem| {
                        if rsa {
                            EncodingKey::from_rsa_pem(&pem)
                        } else {
                            EncodingKey::from_ec_pem(&pem)
                        }
                        .map_err(|e| ConfigError::new(PRIV, format!("not a usable PEM key: {e}")))
                    })
                    .transpose()?;
                let algorithm = if rsa {
                    Algorithm::RS256
                } else {
                    Algorithm::ES256
                };
                (algorithm, encoding, decoding)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.jwt_leeway;
        validation.validate_exp = true;
        // A token that becomes valid only later does not work now.
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(aud) = &config.jwt_audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        if let Some(iss) = &config.jwt_issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let jwks_validations = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
            .into_iter()
            .map(|alg| {
                let mut v = validation.clone();
                v.algorithms = vec![alg];
                (alg, v)
            })
            .collect();
        let jwks = config.jwt_jwks_url.clone().map(|url| {
            std::sync::Arc::new(jwks::Jwks::new(
                url,
                Duration::from_secs(config.jwt_jwks_refetch_floor),
                Duration::from_secs(config.jwt_jwks_max_age.max(1)),
            ))
        });
        Ok(Self {
            algorithm,
            encoding,
            decoding,
            validation,
            jwks,
            jwks_validations,
            username_claim: config.jwt_username_claim.clone(),
            access_ttl: config.access_token_ttl as i64,
            refresh_ttl: config.refresh_token_ttl as i64,
            audience: config.jwt_audience.clone(),
            issuer: config.jwt_issuer.clone(),
            verified: Default::default(),
        })
    }

    /// Whether this hub can sign tokens (it cannot when it only verifies an identity
    /// provider's tokens).
    pub fn can_issue(&self) -> bool {
        self.encoding.is_some()
    }

    /// Issues an access and a refresh token for a user, with the refresh token's record (the
    /// caller stores it: refresh tokens are rotated and can be ended). `family` is the login
    /// the pair descends from; `None` starts a new one.
    pub fn issue_pair(
        &self,
        user: &User,
        family: Option<&str>,
    ) -> Option<(TokenPair, RefreshRecord)> {
        let jti = new_jti();
        let expires_at = Utc::now() + chrono::Duration::seconds(self.refresh_ttl);
        let pair = TokenPair {
            access: self.issue(user, TokenType::Access, self.access_ttl)?,
            refresh: self.issue_with_jti(
                user,
                TokenType::Refresh,
                self.refresh_ttl,
                jti.clone(),
            )?,
        };
        let record = RefreshRecord {
            family: family.map_or_else(|| jti.clone(), str::to_owned),
            jti,
            user: user.id,
            expires_at,
        };
        Some((pair, record))
    }

    /// Issues an access token for a user.
    pub fn issue_access(&self, user: &User) -> Option<String> {
        self.issue(user, TokenType::Access, self.access_ttl)
    }

    /// Issues one token valid for `ttl` seconds (which may be negative, for tests).
    pub fn issue(&self, user: &User, kind: TokenType, ttl: i64) -> Option<String> {
        self.issue_with_jti(user, kind, ttl, new_jti())
    }

    fn issue_with_jti(
        &self,
        user: &User,
        kind: TokenType,
        ttl: i64,
        jti: String,
    ) -> Option<String> {
        self.issue_claims(user.id, user.token_version, kind, ttl, jti, None)
    }

    /// Issues a token from its parts: for tests that need a token valid only later (`nbf`)
    /// or of another version.
    pub fn issue_claims(
        &self,
        user: UserId,
        version: i64,
        kind: TokenType,
        ttl: i64,
        jti: String,
        not_before: Option<i64>,
    ) -> Option<String> {
        let key = self.encoding.as_ref()?;
        let now = Utc::now().timestamp();
        let claims = Claims {
            user_id: Some(user.0),
            sub: None,
            exp: now + ttl,
            iat: Some(now),
            token_type: Some(kind.as_str().to_owned()),
            jti: Some(jti),
            ver: Some(version),
            nbf: not_before,
            aud: self.audience.clone().map(serde_json::Value::String),
            iss: self.issuer.clone(),
            other: serde_json::Map::new(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key).ok()
    }

    /// Fetches the identity provider's keys ahead of the first token, if there is one; a
    /// failure is only logged (the keys are fetched again when a token needs them).
    pub async fn prefetch_keys(&self) {
        if let Some(jwks) = &self.jwks {
            jwks.prefetch().await;
        }
    }

    /// Verifies a token of the expected kind. A token without `token_type` (as issued by an
    /// external identity provider) counts as an access token. A token whose header names a
    /// `kid` is verified with that key of the JWKS, when one is configured.
    pub async fn verify(&self, token: &str, expected: TokenType) -> Result<Claimed, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        // An ID token (or any JWT that is not an access token) is not a key to the API, even
        // when the same provider signed it: RFC 9068 types access tokens `at+jwt`.
        if let Some(typ) = &header.typ {
            if !["jwt", "at+jwt", "application/at+jwt"].contains(&typ.to_ascii_lowercase().as_str())
            {
                return Err(TokenError::WrongType);
            }
        }
        let fetched;
        let from_provider = matches!((&self.jwks, header.kid.as_deref()), (Some(_), Some(_)))
            || self.encoding.is_none();
        let (key, validation) = match (&self.jwks, header.kid.as_deref()) {
            (Some(jwks), Some(kid)) => {
                fetched = jwks.key(kid).await.ok_or(TokenError::Invalid)?;
                let validation = self
                    .jwks_validations
                    .iter()
                    .find(|(alg, _)| *alg == fetched.algorithm && *alg == header.alg)
                    .map(|(_, v)| v)
                    .ok_or(TokenError::Invalid)?;
                (&fetched.decoding, validation)
            }
            _ => (
                self.decoding.as_ref().ok_or(TokenError::Invalid)?,
                &self.validation,
            ),
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let claims = data.claims;
        let kind = claims.token_type.as_deref().unwrap_or("access");
        if kind != expected.as_str() {
            return Err(TokenError::WrongType);
        }
        // Providers mark their other tokens in a claim: Keycloak's `typ` (`Bearer` for access
        // tokens, `ID`, `Refresh`), Cognito's `token_use` (`access`, `id`).
        let claim = |name: &str| claims.other.get(name).and_then(|v| v.as_str());
        if claim("typ").is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
            || claim("token_use").is_some_and(|t| t != "access")
        {
            return Err(TokenError::WrongType);
        }
        let by_name = self
            .username_claim
            .as_deref()
            .and_then(|claim| claims.other.get(claim))
            .and_then(|v| v.as_str());
        let subject = match (by_name, claims.user_id, claims.sub.as_deref()) {
            (Some(name), _, _) => Subject::Username(name.to_owned()),
            (None, Some(id), _) => Subject::Id(UserId(id)),
            (None, None, Some(sub)) => {
                Subject::Id(UserId(sub.parse().map_err(|_| TokenError::Invalid)?))
            }
            (None, None, None) => return Err(TokenError::Invalid),
        };
        let provider = match (from_provider, &claims.iss, &claims.sub) {
            (true, Some(iss), Some(sub)) => Some((iss.clone(), sub.clone())),
            _ => None,
        };
        Ok(Claimed {
            subject,
            exp: claims.exp,
            jti: claims.jti,
            // The hub's own tokens always carry one; one issued before versions existed
            // counts as version 0.
            version: (!from_provider).then_some(claims.ver.unwrap_or(0)),
            provider,
        })
    }

    /// Verifies a token and finds its user, who must be active.
    ///
    /// An access token the hub signed itself is checked in full (its signature, claims and
    /// type) the first time only: its claims are kept until the token's own expiry, without
    /// the leeway, which the full check still grants. Nothing about the user is kept with them,
    /// so a deactivation, a demotion or a revocation (the user's token version) takes effect on
    /// the next request as before. An identity provider's tokens are checked in full every
    /// time, since the provider's keys may change.
    pub async fn authenticate<S: UserStore + CredentialStore + ?Sized>(
        &self,
        users: &S,
        token: &str,
        expected: TokenType,
    ) -> Result<(User, Verified), AuthError> {
        let claimed = match self.recall(token, expected, unix_now()) {
            Some(claimed) => claimed,
            None => {
                let claimed = self.verify(token, expected).await?;
                self.remember(token, expected, &claimed);
                claimed
            }
        };
        Self::resolve(users, claimed).await
    }

    /// The claims of an access token verified before, if it has not expired by `now`.
    fn recall(&self, token: &str, expected: TokenType, now: i64) -> Option<Claimed> {
        if expected != TokenType::Access {
            return None;
        }
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.get(token).filter(|c| now < c.exp).cloned()
    }

    /// Keeps the claims of a hub-signed access token that passed the full check.
    fn remember(&self, token: &str, expected: TokenType, claimed: &Claimed) {
        if expected != TokenType::Access || claimed.provider.is_some() || claimed.version.is_none()
        {
            return;
        }
        let now = unix_now();
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_CAPACITY {
            verified.retain(|_, c| now < c.exp);
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(token.into(), claimed.clone());
    }

    /// Finds the user of a verified token, who must be active. A provider's user named by
    /// username is linked, the first time, to the local user of that name by the provider's
    /// issuer and subject; afterwards the link decides, so that another account at the provider
    /// that takes the same username later is not that local user.
    pub async fn resolve<S: UserStore + CredentialStore + ?Sized>(
        users: &S,
        claimed: Claimed,
    ) -> Result<(User, Verified), AuthError> {
        Self::resolve_with(users, claimed, false)
            .await
            .map(|(user, verified, _)| (user, verified))
    }

    /// [`Auth::resolve`] for a socket's handshake: a user read from the database (not the
    /// cache) by id comes with where their notification stream stands, in the same read.
    pub async fn resolve_socket<S: UserStore + CredentialStore + ?Sized>(
        users: &S,
        claimed: Claimed,
    ) -> Result<(User, Verified, Option<NotificationCursor>), AuthError> {
        Self::resolve_with(users, claimed, true).await
    }

    async fn resolve_with<S: UserStore + CredentialStore + ?Sized>(
        users: &S,
        claimed: Claimed,
        with_cursor: bool,
    ) -> Result<(User, Verified, Option<NotificationCursor>), AuthError> {
        let mut cursor = None;
        let user = match (&claimed.subject, &claimed.provider) {
            (Subject::Id(id), _) if with_cursor => {
                users.user_and_cursor(*id).await?.map(|(user, read)| {
                    cursor = read;
                    user
                })
            }
            (Subject::Id(id), _) => users.user_by_id(*id).await?,
            // An API key's service user is nobody's login, whatever a provider's token names.
            (Subject::Username(name), _) if tickethub_actors::domain::is_service_username(name) => {
                None
            }
            (Subject::Username(name), None) => users.user_with_hash(name).await?.map(|(u, _)| u),
            (Subject::Username(name), Some((issuer, subject))) => {
                match users.linked_user(issuer, subject).await? {
                    Some(id) => users.user_by_id(id).await?,
                    None => match users.user_with_hash(name).await?.map(|(u, _)| u) {
                        Some(user) => match users.link_identity(issuer, subject, user.id).await {
                            Ok(()) => Some(user),
                            // Linked meanwhile by a concurrent first token of this subject (then
                            // it is them), or linked to another subject of this provider (not).
                            Err(StoreError::Conflict(_)) => {
                                match users.linked_user(issuer, subject).await? {
                                    Some(id) if id == user.id => Some(user),
                                    _ => None,
                                }
                            }
                            Err(e) => return Err(e.into()),
                        },
                        None => None,
                    },
                }
            }
        };
        match user {
            Some(user) if claimed.version.is_some_and(|v| v != user.token_version) => {
                Err(TokenError::Revoked.into())
            }
            Some(user) if user.is_active => {
                let verified = Verified {
                    user_id: user.id,
                    exp: claimed.exp,
                };
                Ok((user, verified, cursor))
            }
            _ => Err(TokenError::Inactive.into()),
        }
    }
}

fn read_pem(path: Option<&Path>, setting: &'static str) -> Result<Option<Vec<u8>>, ConfigError> {
    path.map(|p| {
        std::fs::read(p)
            .map_err(|e| ConfigError::new(setting, format!("cannot read {}: {e}", p.display())))
    })
    .transpose()
}

/// Hashes a password with argon2id and a random salt, off the async runtime.
pub async fn hash_password(password: String) -> String {
    tokio::task::spawn_blocking(move || hash_password_blocking(&password))
        .await
        .expect("password hashing panicked")
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password_blocking(password: &str) -> String {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

/// Checks a password against its PHC hash, off the async runtime. A malformed hash never
/// matches.
pub async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Seconds since the Unix epoch, as tokens count them.
fn unix_now() -> i64 {
    Utc::now().timestamp()
}

/// A fresh token id.
fn new_jti() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A random secret of 64 hex characters.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn verify(a: &Auth, token: &str, kind: TokenType) -> Result<Claimed, TokenError> {
        block_on(a.verify(token, kind))
    }

    fn auth() -> Auth {
        Auth::from_config(&ServeConfig::defaults(), Some(&"k".repeat(32))).unwrap()
    }

    fn user(id: i64) -> User {
        User {
            id: UserId(id),
            username: format!("u{id}"),
            display_name: String::new(),
            addresses: Vec::new(),
            role: tickethub_actors::domain::Role::Client,
            is_superuser: false,
            is_active: true,
            token_version: 0,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn access_tokens_round_trip() {
        let a = auth();
        let (pair, record) = a.issue_pair(&user(7), None).unwrap();
        assert_eq!(record.family, record.jti, "a login starts a family");
        assert_eq!(
            verify(&a, &pair.access, TokenType::Access).unwrap().subject,
            Subject::Id(UserId(7))
        );
        assert_eq!(
            verify(&a, &pair.refresh, TokenType::Access),
            Err(TokenError::WrongType)
        );
        assert_eq!(
            verify(&a, &pair.access, TokenType::Refresh),
            Err(TokenError::WrongType)
        );
    }

    #[test]
    fn expired_tokens_are_refused_without_leeway() {
        let a = auth();
        let t = a.issue(&user(1), TokenType::Access, -1).unwrap();
        assert_eq!(verify(&a, &t, TokenType::Access), Err(TokenError::Expired));
    }

    #[test]
    fn unsigned_and_foreign_tokens_are_refused() {
        let a = auth();
        // {"alg":"none","typ":"JWT"} . {"user_id":1,"exp":9999999999} . (no signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ1c2VyX2lkIjoxLCJleHAiOjk5OTk5OTk5OTl9.";
        assert_eq!(
            verify(&a, none, TokenType::Access),
            Err(TokenError::Invalid)
        );
        let other = Auth::from_config(&ServeConfig::defaults(), Some(&"x".repeat(32))).unwrap();
        let t = other.issue_access(&user(1)).unwrap();
        assert_eq!(verify(&a, &t, TokenType::Access), Err(TokenError::Invalid));
        assert_eq!(
            verify(&a, "garbage", TokenType::Access),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_verified_access_token_is_recalled_until_its_expiry_and_only_that_token() {
        let a = auth();
        let t = a.issue(&user(3), TokenType::Access, 60).unwrap();
        let now = unix_now();
        assert_eq!(a.recall(&t, TokenType::Access, now), None);
        let claimed = verify(&a, &t, TokenType::Access).unwrap();
        a.remember(&t, TokenType::Access, &claimed);
        assert_eq!(a.recall(&t, TokenType::Access, now), Some(claimed.clone()));
        assert_eq!(
            a.recall(&t, TokenType::Access, claimed.exp),
            None,
            "from its expiry on, the full check decides (with its leeway)"
        );
        assert_eq!(a.recall(&t, TokenType::Refresh, now), None);
        let mut longer = t.clone();
        longer.push('A');
        assert_eq!(a.recall(&longer, TokenType::Access, now), None);
        assert_eq!(a.recall(&t[..t.len() - 1], TokenType::Access, now), None);
    }

    #[test]
    fn refresh_tokens_and_providers_tokens_are_not_kept() {
        let a = auth();
        let (pair, _) = a.issue_pair(&user(4), None).unwrap();
        let refresh = verify(&a, &pair.refresh, TokenType::Refresh).unwrap();
        a.remember(&pair.refresh, TokenType::Refresh, &refresh);
        assert_eq!(
            a.recall(&pair.refresh, TokenType::Refresh, unix_now()),
            None
        );
        let mut foreign = verify(&a, &pair.access, TokenType::Access).unwrap();
        foreign.provider = Some(("https://idp.example".into(), "4".into()));
        foreign.version = None;
        a.remember(&pair.access, TokenType::Access, &foreign);
        assert_eq!(a.recall(&pair.access, TokenType::Access, unix_now()), None);
    }

    #[test]
    fn the_kept_tokens_are_bounded() {
        let a = auth();
        let t = a.issue(&user(5), TokenType::Access, 60).unwrap();
        let claimed = verify(&a, &t, TokenType::Access).unwrap();
        for i in 0..VERIFIED_CAPACITY + 10 {
            a.remember(&format!("{t}{i}"), TokenType::Access, &claimed);
            assert!(a.verified.lock().unwrap().len() <= VERIFIED_CAPACITY);
        }
        let mut expired = claimed.clone();
        expired.exp = unix_now() - 1;
        a.verified.lock().unwrap().clear();
        for i in 0..VERIFIED_CAPACITY {
            a.remember(&format!("old{i}"), TokenType::Access, &expired);
        }
        a.remember(&t, TokenType::Access, &claimed);
        assert_eq!(
            a.verified.lock().unwrap().len(),
            1,
            "the expired ones went first"
        );
    }

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let h = hash_password_blocking("correct horse");
        assert!(block_on(verify_password("correct horse".into(), h.clone())));
        assert!(!block_on(verify_password("wrong".into(), h)));
        assert!(!block_on(verify_password("x".into(), "not a hash".into())));
    }
}
