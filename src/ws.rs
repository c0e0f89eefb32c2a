//! The WebSocket endpoints: the handshake (origin check, token extraction) and the upgrade.
//!
//! A handshake whose `Origin` is not allowed is refused with 403 before the upgrade. Every
//! other well-formed handshake is upgraded; a missing, invalid or expired token then closes
//! the socket with 4001 before any actor is involved.

use axum::extract::{Path, Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::auth::{Auth, AuthError, Claimed, Subject, TokenError, TokenType, Verified};
use crate::http::error::ApiError;
use crate::state::AppState;

pub mod batch;
pub mod close;
pub mod protocol;
pub mod session;

pub use crate::sockets::{SocketSlot, TicketProjects, WsSettings};
pub use crate::wire::dialect;

use dialect::Dialect;
use tickethub_actors::domain::{ProjectId, Role, User};
use tickethub_actors::room::RoomSocket;
use tickethub_actors::user::CursorHint;

/// The subprotocol a browser offers, together with `bearer.<JWT>`, to carry its token.
pub const SUBPROTOCOL: &str = "tickethub.v1";

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ws/notifications/", get(notifications))
        .route("/ws/projects/{project}/tickets/", get(board))
        .route("/ws/projects/{project}/presence/", get(presence))
        .merge(echo_route())
}

/// `/ws/echo/` for the Autobahn TestSuite: built only with `--features conformance`.
#[cfg(feature = "conformance")]
fn echo_route() -> Router<AppState> {
    async fn echo(State(state): State<AppState>, req: Request) -> Response {
        handshake_with(state, req, None, true).await
    }
    Router::new().route("/ws/echo/", get(echo))
}

#[cfg(not(feature = "conformance"))]
fn echo_route() -> Router<AppState> {
    Router::new()
}

/// `/ws/projects/{id}/tickets/`: the project's live ticket board.
async fn board(
    State(state): State<AppState>,
    Path(project): Path<String>,
    req: Request,
) -> Response {
    handshake(state, req, Some((project, RoomSocket::Board))).await
}

/// `/ws/projects/{id}/presence/`: who is here, what they look at, who types.
async fn presence(
    State(state): State<AppState>,
    Path(project): Path<String>,
    req: Request,
) -> Response {
    handshake(state, req, Some((project, RoomSocket::Presence))).await
}

async fn notifications(State(state): State<AppState>, req: Request) -> Response {
    handshake(state, req, None).await
}

#[derive(Deserialize, Default)]
struct WsQuery {
    token: Option<String>,
    last_seq: Option<String>,
    dialect: Option<String>,
    presence: Option<String>,
}

/// The handshake every socket shares: origin, token, upgrade. A project socket is admitted
/// only for the project's members and admins; anyone else, including a caller who names a
/// project that does not exist, is closed with 4003 after the upgrade, the same way in both
/// cases, and no actor starts.
async fn handshake(state: AppState, req: Request, room: Option<(String, RoomSocket)>) -> Response {
    handshake_with(state, req, room, false).await
}

async fn handshake_with(
    state: AppState,
    mut req: Request,
    room: Option<(String, RoomSocket)>,
    echo: bool,
) -> Response {
    let headers = req.headers();
    if let Some(origin) = headers.get(ORIGIN) {
        if !origin_allowed(&state.ws.allowed_origins, origin, headers) {
            return ApiError::forbidden("Origin not allowed.").into_response();
        }
    }
    let query: WsQuery = match req.uri().query().map(parse_query) {
        None => WsQuery::default(),
        Some(Ok(q)) => q,
        Some(Err(e)) => {
            return ApiError::bad_request(format!("Invalid query - {e}")).into_response()
        }
    };
    let last_seq = match query.last_seq.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(s)) if s >= 0 => Some(s),
        Some(_) => {
            return ApiError::bad_request("last_seq must be a non-negative integer.")
                .into_response()
        }
    };
    // `?presence=diff`: joins and leaves as one `presence_diff` frame per batch.
    let diff = match query.presence.as_deref() {
        None | Some("events") => false,
        Some("diff") => true,
        Some(_) => {
            return ApiError::bad_request("presence must be events or diff.").into_response()
        }
    };
    let offered = offered_subprotocols(headers);
    // The dialect: a `tickethub.<dialect>` subprotocol, then `?dialect=`, then the hub's own.
    let asked = offered.iter().find_map(|p| Dialect::from_subprotocol(p));
    let dialect = match (asked, query.dialect.as_deref()) {
        (Some(d), _) => d,
        (None, None) => state.ws.dialect,
        (None, Some(name)) => match Dialect::from_name(name) {
            Some(d) => d,
            None => {
                return ApiError::bad_request(format!(
                    "dialect must be one of {}.",
                    Dialect::ALL.map(Dialect::name).join(", ")
                ))
                .into_response()
            }
        },
    };
    let token = token_from(&offered, headers, query.token);
    let selected = match asked {
        Some(d) => Some(d.subprotocol()),
        None => offered
            .iter()
            .any(|p| p == SUBPROTOCOL)
            .then(|| SUBPROTOCOL.to_owned()),
    };

    let (mut response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => {
            return ApiError::bad_request(format!("Not a WebSocket handshake: {e}")).into_response()
        }
    };
    if let Some(protocol) = selected {
        response.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(&protocol).expect("subprotocol names are ASCII"),
        );
    }

    let auth = match token {
        None => Err(TokenError::Missing),
        Some(t) => state.auth.verify(&t, TokenType::Access).await,
    };
    // Admission control: a connect storm queues here, not in the database pool ahead of
    // every request.
    let _admitted = state
        .ws
        .handshakes
        .acquire()
        .await
        .expect("the handshake semaphore is never closed");
    // Taken before the user is read: an ending of the user's sessions committed after this
    // instant may not be in what the read sees, so the session checks for one once attached.
    let authenticated_at = std::time::Instant::now();
    let mut hint = None;
    let user = match auth {
        Ok(claimed) => match resolve_with_hint(&state, claimed).await {
            Ok((user, verified, read)) => {
                hint = read;
                Ok((user, verified))
            }
            Err(AuthError::Token(e)) => Err(e),
            Err(AuthError::Store(e)) => {
                tracing::error!(error = %e, "user lookup failed during handshake");
                return ApiError::unavailable("The database is unavailable.").into_response();
            }
        },
        Err(e) => Err(e),
    };
    let room = match (room, &user) {
        (None, _) => None,
        (Some(_), Err(_)) => Some(Err(())),
        (Some((project, kind)), Ok((u, _))) => {
            let admitted = match project.parse::<i64>() {
                Ok(id) => match state.store.membership(ProjectId(id), u.id).await {
                    Ok(Some(member)) if member || u.role == Role::Admin => Some(ProjectId(id)),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::error!(error = %e, "project lookup failed during handshake");
                        return ApiError::unavailable("The database is unavailable.")
                            .into_response();
                    }
                },
                Err(_) => None,
            };
            Some(admitted.map(|p| (p, kind)).ok_or(()))
        }
    };
    let session = session::Session {
        authenticated_at,
        connection: req
            .extensions()
            .get::<crate::serve::ConnectionSlot>()
            .cloned(),
        state: state.clone(),
        upgrade,
        user,
        hint,
        last_seq,
        dialect,
        room,
        diff,
        echo,
    };
    // A room's sockets run beside their room actor, at the rooms' lower priority.
    match (&session.room, &state.ws.rooms_runtime) {
        (Some(_), Some(rooms)) => state.ws.sessions.spawn_on(Box::new(session).run(), rooms),
        _ => state.ws.sessions.spawn(Box::new(session).run()),
    };
    response.into_response()
}

/// Finds the user of a verified token for a stream (a socket or an event stream), with where
/// their notification stream stands when it was read with the user. The news counters are
/// stamped before the read: the cursor stands in for the actor's own read only if nothing
/// reached the user since (see `tickethub_actors::notices`).
pub(crate) async fn resolve_with_hint(
    state: &AppState,
    claimed: Claimed,
) -> Result<(User, Verified, Option<CursorHint>), AuthError> {
    let stamp = match &claimed.subject {
        Subject::Id(id) => Some(state.hub.notice_stamp(*id)),
        Subject::Username(_) => None,
    };
    let (user, verified, cursor) = Auth::resolve_socket(&*state.store, claimed).await?;
    let hint = match cursor {
        Some(cursor) => stamp.map(|stamp| CursorHint { cursor, stamp }),
        // A user held in the cache: where their stream stood when a start's warm-up read it,
        // once (its stamp is the warm-up's).
        None => state
            .store
            .user_cache()
            .and_then(|cache| cache.take_cursor(user.id))
            .map(|(cursor, stamp)| CursorHint { cursor, stamp }),
    };
    Ok((user, verified, hint))
}

/// Parses the query string (`token`, `last_seq`, `dialect`, `presence`), ignoring anything
/// else.
fn parse_query(q: &str) -> Result<WsQuery, String> {
    let uri = format!("/?{q}")
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| e.to_string())?;
    axum::extract::Query::<WsQuery>::try_from_uri(&uri)
        .map(|axum::extract::Query(q)| q)
        .map_err(|e| e.body_text())
}

fn offered_subprotocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The token, in order of preference: subprotocol, `Authorization` header, query string.
fn token_from(offered: &[String], headers: &HeaderMap, query: Option<String>) -> Option<String> {
    offered
        .iter()
        .find_map(|p| p.strip_prefix("bearer.").map(str::to_owned))
        .or_else(|| {
            headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| t.trim().to_owned())
        })
        .or(query)
        .filter(|t| !t.is_empty())
}

/// Whether a browser's `Origin` may open a socket: an exact match with the allow-list, or,
/// when the list is empty, the hub's own origin (the `Host` the request was sent to).
fn origin_allowed(allowed: &[String], origin: &HeaderValue, headers: &HeaderMap) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if origin == "null" {
        return false;
    }
    if !allowed.is_empty() {
        return allowed.iter().any(|a| a == origin);
    }
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_subprotocol_token_wins_over_header_and_query() {
        let h = headers(&[
            ("sec-websocket-protocol", "tickethub.v1, bearer.SUB"),
            ("authorization", "Bearer HDR"),
        ]);
        let offered = offered_subprotocols(&h);
        assert_eq!(
            token_from(&offered, &h, Some("Q".into())).as_deref(),
            Some("SUB")
        );
        let h = headers(&[("authorization", "Bearer HDR")]);
        assert_eq!(
            token_from(&[], &h, Some("Q".into())).as_deref(),
            Some("HDR")
        );
        assert_eq!(
            token_from(&[], &HeaderMap::new(), Some("Q".into())).as_deref(),
            Some("Q")
        );
        assert_eq!(
            token_from(&[], &HeaderMap::new(), Some(String::new())),
            None
        );
    }

    #[test]
    fn origins_match_exactly_or_the_hub_itself() {
        let h = headers(&[("host", "hub.example:8080")]);
        let o = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(origin_allowed(&[], &o("http://hub.example:8080"), &h));
        assert!(!origin_allowed(&[], &o("http://evil.example"), &h));
        assert!(!origin_allowed(&[], &o("null"), &h));
        let list = vec!["https://app.example".to_owned()];
        assert!(origin_allowed(&list, &o("https://app.example"), &h));
        assert!(!origin_allowed(&list, &o("https://app.example.evil"), &h));
        assert!(!origin_allowed(&list, &o("http://hub.example:8080"), &h));
    }
}
