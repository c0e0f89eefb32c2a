//! Tokens and passwords: JWT issue and verification with a pinned algorithm, argon2 hashes.
//!
//! Shared by the HTTP API and the WebSocket handshake. Tokens never reach a log line.

use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tickethub_actors::domain::UserId;

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
    /// A string or a list of strings (jsonwebtoken checks it against the audience).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
}

/// A verified token.
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
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: i64,
    refresh_ttl: i64,
    audience: Option<String>,
    issuer: Option<String>,
}

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
                    DecodingKey::from_secret(secret.as_bytes()),
                )
            }
            alg @ (JwtAlgorithm::Rs256 | JwtAlgorithm::Es256) => {
                const PUB: &str = "--jwt-public-key (TICKETHUB_JWT_PUBLIC_KEY)";
                const PRIV: &str = "--jwt-private-key (TICKETHUB_JWT_PRIVATE_KEY)";
                let public = read_pem(config.jwt_public_key.as_deref(), PUB)?
                    .ok_or_else(|| ConfigError::new(PUB, "is required with RS256 and ES256"))?;
                let private = read_pem(config.jwt_private_key.as_deref(), PRIV)?;
                let rsa = alg == JwtAlgorithm::Rs256;
                let decoding = if rsa {
                    DecodingKey::from_rsa_pem(&public)
                } else {
                    DecodingKey::from_ec_pem(&public)
                }
                .map_err(|e| ConfigError::new(PUB, format!("not a usable PEM key: {e}")))?;
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
        Ok(Self {
            algorithm,
            encoding,
            decoding,
            validation,
            access_ttl: config.access_token_ttl as i64,
            refresh_ttl: config.refresh_token_ttl as i64,
            audience: config.jwt_audience.clone(),
            issuer: config.jwt_issuer.clone(),
        })
    }

    /// Whether this hub can sign tokens (it cannot when it only verifies an identity
    /// provider's tokens).
    pub fn can_issue(&self) -> bool {
        self.encoding.is_some()
    }

    /// Issues an access and a refresh token for a user.
    pub fn issue_pair(&self, user: UserId) -> Option<TokenPair> {
        Some(TokenPair {
            access: self.issue(user, TokenType::Access, self.access_ttl)?,
            refresh: self.issue(user, TokenType::Refresh, self.refresh_ttl)?,
        })
    }

    /// Issues an access token for a user.
    pub fn issue_access(&self, user: UserId) -> Option<String> {
        self.issue(user, TokenType::Access, self.access_ttl)
    }

    /// Issues one token valid for `ttl` seconds (which may be negative, for tests).
    pub fn issue(&self, user: UserId, kind: TokenType, ttl: i64) -> Option<String> {
        let key = self.encoding.as_ref()?;
        let now = Utc::now().timestamp();
        let claims = Claims {
            user_id: Some(user.0),
            sub: None,
            exp: now + ttl,
            iat: Some(now),
            token_type: Some(kind.as_str().to_owned()),
            jti: Some(uuid::Uuid::new_v4().simple().to_string()),
            aud: self.audience.clone().map(serde_json::Value::String),
            iss: self.issuer.clone(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key).ok()
    }

    /// Verifies a token of the expected kind. A token without `token_type` (as issued by an
    /// external identity provider) counts as an access token.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Verified, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let claims = data.claims;
        let kind = claims.token_type.as_deref().unwrap_or("access");
        if kind != expected.as_str() {
            return Err(TokenError::WrongType);
        }
        let user_id = match (claims.user_id, claims.sub.as_deref()) {
            (Some(id), _) => id,
            (None, Some(sub)) => sub.parse().map_err(|_| TokenError::Invalid)?,
            (None, None) => return Err(TokenError::Invalid),
        };
        Ok(Verified {
            user_id: UserId(user_id),
            exp: claims.exp,
        })
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

/// A random secret of 64 hex characters.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::from_config(&ServeConfig::defaults(), Some(&"k".repeat(32))).unwrap()
    }

    #[test]
    fn access_tokens_round_trip() {
        let a = auth();
        let pair = a.issue_pair(UserId(7)).unwrap();
        assert_eq!(
            a.verify(&pair.access, TokenType::Access).unwrap().user_id,
            UserId(7)
        );
        assert_eq!(
            a.verify(&pair.refresh, TokenType::Access),
            Err(TokenError::WrongType)
        );
        assert_eq!(
            a.verify(&pair.access, TokenType::Refresh),
            Err(TokenError::WrongType)
        );
    }

    #[test]
    fn expired_tokens_are_refused_without_leeway() {
        let a = auth();
        let t = a.issue(UserId(1), TokenType::Access, -1).unwrap();
        assert_eq!(a.verify(&t, TokenType::Access), Err(TokenError::Expired));
    }

    #[test]
    fn unsigned_and_foreign_tokens_are_refused() {
        let a = auth();
        // {"alg":"none","typ":"JWT"} . {"user_id":1,"exp":9999999999} . (no signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ1c2VyX2lkIjoxLCJleHAiOjk5OTk5OTk5OTl9.";
        assert_eq!(a.verify(none, TokenType::Access), Err(TokenError::Invalid));
        let other = Auth::from_config(&ServeConfig::defaults(), Some(&"x".repeat(32))).unwrap();
        let t = other.issue_access(UserId(1)).unwrap();
        assert_eq!(a.verify(&t, TokenType::Access), Err(TokenError::Invalid));
        assert_eq!(
            a.verify("garbage", TokenType::Access),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let h = hash_password_blocking("correct horse");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(verify_password("correct horse".into(), h.clone())));
        assert!(!rt.block_on(verify_password("wrong".into(), h)));
        assert!(!rt.block_on(verify_password("x".into(), "not a hash".into())));
    }
}
