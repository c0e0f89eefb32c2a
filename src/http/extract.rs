//! Extractors: JSON bodies and query strings with `{"detail"}` rejections, and the caller.

use axum::extract::rejection::{JsonRejection, MissingJsonContentType};
use axum::extract::{FromRef, FromRequest, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use tickethub_actors::domain::{Role, User};

use super::error::ApiError;
use crate::auth::{TokenError, TokenType};
use crate::state::AppState;

/// A JSON object body whose rejection is a `{"detail"}` error: sent as
/// `Content-Type: application/json` (else 415), well-formed, an object (serde would read a
/// struct from an array too), and of the endpoint's shape (else 400).
pub struct Json<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(JsonRejection::from)?;
        Self::read(&bytes).map(Json)
    }
}

impl<T: serde::de::DeserializeOwned> Json<T> {
    /// Reads a body already taken as bytes (to be fingerprinted, say), as the extractor would
    /// have: the same `Content-Type` check and the same refusals.
    pub fn parse(headers: &axum::http::HeaderMap, body: &[u8]) -> Result<T, ApiError> {
        require_json(headers)?;
        Self::read(body)
    }

    /// A JSON object of the endpoint's shape, from the body's bytes.
    fn read(body: &[u8]) -> Result<T, ApiError> {
        let axum::Json(raw) = axum::Json::<Box<serde_json::value::RawValue>>::from_bytes(body)?;
        if !raw.get().trim_start().starts_with('{') {
            return Err(ApiError::bad_request("Expected a JSON object."));
        }
        serde_json::from_str(raw.get())
            .map_err(|e| ApiError::bad_request(format!("JSON parse error - {e}")))
    }
}

/// That the request says its body is JSON (`application/json`, or `application/…+json`),
/// as axum's own `Json` extractor decides; else its 415.
fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<mime::Mime>().ok())
        .is_some_and(|mime| {
            mime.type_() == "application"
                && (mime.subtype() == "json" || mime.suffix().is_some_and(|name| name == "json"))
        });
    if json {
        Ok(())
    } else {
        Err(JsonRejection::from(MissingJsonContentType::default()).into())
    }
}

/// A raw body whose rejection (over the size limit) is a `{"detail"}` error.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(RawBody(axum::body::Bytes::from_request(req, state).await?))
    }
}

/// A query string whose rejection is a `{"detail"}` error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// The authenticated, active user making the request: a person with an access token, or the
/// service user of an API key (then `.1` names the key, and `.0.role` is what the key's scopes
/// grant for this request: an admin's where a sending or admin-read scope covers it).
#[derive(Debug, Clone)]
pub struct Caller(pub User, pub Option<KeyCaller>);

/// The API key a request was made with.
#[derive(Debug, Clone)]
pub struct KeyCaller {
    /// The key's id.
    pub id: i64,
    /// The key's name.
    pub name: String,
}

impl Caller {
    /// Who acts, as the ticket rules see them.
    pub fn principal(&self) -> tickethub_actors::ticket_domain::Principal {
        tickethub_actors::ticket_domain::Principal {
            id: self.0.id,
            role: self.0.role,
        }
    }

    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.0.role == Role::Admin
    }

    /// Refuses (403) a caller who is not an admin: "Only admins can `what`."
    pub fn admin_only(&self, what: &str) -> Result<(), super::error::ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(super::error::ApiError::forbidden(format!(
                "Only admins can {what}."
            )))
        }
    }

    /// Who the caller is for idempotency records: `user:<id>`, or `key:<id>` (a key's retries
    /// are its own, whoever else acts as its service user).
    pub fn label(&self) -> String {
        match &self.1 {
            Some(key) => format!("key:{}", key.id),
            None => format!("user:{}", self.0.id),
        }
    }
}

/// How often a key's `last_used_at` is written at most.
const KEY_USE_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Authenticates `Authorization: Api-Key <key>` for this request's method and path.
async fn by_api_key(state: &AppState, key: &str, parts: &Parts) -> Result<Caller, ApiError> {
    use crate::auth::api_keys;
    let invalid = || ApiError::unauthorized("Invalid API key.");
    let prefix = api_keys::prefix_of(key).ok_or_else(invalid)?;
    let (found, hash) = state
        .store
        .api_key_by_prefix(prefix)
        .await?
        .ok_or_else(invalid)?;
    if !api_keys::matches(key, &hash) {
        return Err(invalid());
    }
    if found.revoked_at.is_some() {
        return Err(ApiError::unauthorized("This API key was revoked."));
    }
    state.limits.api_key(found.id)?;
    let mut user = state
        .store
        .user_by_id(found.user)
        .await?
        .filter(|u| u.is_active)
        .ok_or_else(|| ApiError::unauthorized("This API key's user is inactive."))?;
    let path = parts.uri.path();
    match api_keys::grant(&found.scopes, &parts.method, path) {
        api_keys::Grant::Refused => {
            return Err(ApiError::forbidden(format!(
                "This API key's scopes ({}) do not allow {} {path}.",
                found.scopes.join(", "),
                parts.method
            )))
        }
        api_keys::Grant::AsAdmin => user.role = Role::Admin,
        api_keys::Grant::AsUser => {}
    }
    let now = chrono::Utc::now();
    if found
        .last_used_at
        .is_none_or(|at| now - at >= KEY_USE_RESOLUTION)
    {
        let store = state.store.clone();
        let id = found.id;
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(id, now).await {
                tracing::warn!(error = %e, key = id, "could not record an API key's use");
            }
        });
    }
    tracing::debug!(api_key = %found.name, method = %parts.method, path, "API key request");
    Ok(Caller(
        user,
        Some(KeyCaller {
            id: found.id,
            name: found.name,
        }),
    ))
}

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if let Some(key) = header.strip_prefix("Api-Key ") {
            return by_api_key(&state, key.trim(), parts).await;
        }
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthorized(TokenError::Missing.to_string()))?;
        let (user, _) = state
            .auth
            .authenticate(&*state.store, token.trim(), TokenType::Access)
            .await?;
        Ok(Caller(user, None))
    }
}

/// A caller when the request names one (an `Authorization` header), else none: for routes
/// that also take another proof (a signed link).
impl<S> axum::extract::OptionalFromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if parts.headers.get(AUTHORIZATION).is_none() {
            return Ok(None);
        }
        <Caller as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest
/// address of its `X-Forwarded-For` that is not a trusted proxy too. The leftmost addresses
/// are whatever the client chose to write, so they are never believed.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        if !super::via_trusted_proxy(&state.trusted_proxies, &parts.extensions) {
            return Ok(ClientIp(peer));
        }
        let hops = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty());
        Ok(ClientIp(forwarded_client(
            hops.collect::<Vec<_>>().into_iter().rev(),
            &state.trusted_proxies,
            peer,
        )))
    }
}

/// Walks `X-Forwarded-For` from the nearest hop: trusted proxies are passed, and the first
/// other address is the client. A hop that is not an address ends the walk at the last proxy
/// (it cannot be keyed on); hops that are all trusted proxies leave the farthest of them.
pub fn forwarded_client<'a>(
    nearest_first: impl Iterator<Item = &'a str>,
    trusted: &[ipnet::IpNet],
    peer: std::net::IpAddr,
) -> std::net::IpAddr {
    let mut client = peer;
    for hop in nearest_first {
        let Ok(ip) = hop.parse::<std::net::IpAddr>() else {
            return client;
        };
        client = ip;
        if !trusted.iter().any(|net| net.contains(&ip)) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_nearest_untrusted_hop() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = "10.0.0.1".parse().unwrap();
        let client = |xff: &str| {
            let hops: Vec<&str> = xff.split(',').map(str::trim).collect();
            forwarded_client(hops.into_iter().rev(), &trusted, peer).to_string()
        };
        // The client wrote its own first hop; the proxy appended the real one.
        assert_eq!(client("1.2.3.4, 203.0.113.9"), "203.0.113.9");
        assert_eq!(client("203.0.113.9, 10.0.0.7"), "203.0.113.9");
        assert_eq!(client("10.0.0.9, 10.0.0.7"), "10.0.0.9");
        assert_eq!(client("garbage, 203.0.113.9"), "203.0.113.9");
        assert_eq!(client("203.0.113.9, garbage"), "10.0.0.1");
    }
}
