//! The HTTP API: one router per resource, merged here, plus the state they share.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use tickethub_actors::ports::Store;
use tickethub_actors::Hub;
use tower_http::trace::TraceLayer;

use crate::auth::Auth;
use crate::ws::WsSettings;

pub mod error;
pub mod extract;
pub mod ops;
pub mod users;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Token issue and verification.
    pub auth: Arc<Auth>,
    /// The actor system.
    pub hub: Hub,
    /// WebSocket settings and the registry of live sessions.
    pub ws: Arc<WsSettings>,
    /// A valid argon2 hash of nothing, verified for unknown usernames to keep timing flat.
    pub dummy_hash: Arc<str>,
}

/// The whole HTTP surface: REST, WebSockets and operations.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .merge(users::router())
        .merge(ops::router())
        .merge(crate::ws::router())
        .fallback(|| async { error::ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(
            // The span names the route, never the query string: it may carry a token.
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "unmatched".to_owned());
                tracing::info_span!("http", method = %req.method(), route = %route)
            }),
        )
        .with_state(state)
}

/// Formats a time the way the seeds do: RFC 3339 in UTC with a `Z`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
