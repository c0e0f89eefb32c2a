//! `Idempotency-Key` on the writes that notify people (`POST /api/notifications/send/`,
//! `POST /api/tickets/`, the ticket actions and comments), with the semantics of Stripe's API
//! and the IETF draft: a retry with the same key and the same request answers what the first
//! try answered (`Idempotent-Replayed: true`) and notifies nobody again; the same key with
//! another request is refused (422); a retry while the first try runs is refused (409, with
//! `Retry-After`).
//!
//! Keys belong to their caller (a user, or an API key) and are kept for a day. The record
//! lives in the database and is marked committed in the very transaction that commits the
//! request's effects, so it holds across nodes and across a crash between the commit and the
//! answer: a retry then answers from what was committed (the count sent, or the ticket or
//! comment as it is now). A try that fails before committing anything lets the key go.

use std::future::Future;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tickethub_actors::ports::{IdempotencyClaim, IdempotencyMark};

use super::error::ApiError;
use super::extract::Caller;
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// The header on an answer given again.
pub const REPLAYED: &str = "idempotent-replayed";

/// The longest key.
const MAX_KEY: usize = 255;

/// The `Idempotency-Key` header, if given: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(HEADER) else {
            return Ok(IdempotencyKey(None));
        };
        match value.to_str() {
            Ok(key)
                if !key.is_empty()
                    && key.len() <= MAX_KEY
                    && key.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(IdempotencyKey(Some(key.to_owned())))
            }
            _ => Err(ApiError::bad_request(
                "Idempotency-Key: 1 to 255 visible ASCII characters (a UUID, say).",
            )),
        }
    }
}

/// A write's answer: its status and JSON body.
pub type Answer = (StatusCode, serde_json::Value);

fn respond(status: StatusCode, body: String, replayed: bool) -> Response {
    let mut response = (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// Runs a write once per key: `run` does it (handing the mark to its commit), and `redo`
/// answers a try that committed but was never answered, from what it committed.
pub async fn once<S, Run, RunFut, Redo, RedoFut>(
    state: &S,
    caller: &Caller,
    key: IdempotencyKey,
    request: (&str, &str, &[u8]),
    run: Run,
    redo: Redo,
) -> Result<Response, ApiError>
where
    AppState: FromRef<S>,
    Run: FnOnce(Option<IdempotencyMark>) -> RunFut,
    RunFut: Future<Output = Result<Answer, ApiError>>,
    Redo: FnOnce(Option<i64>) -> RedoFut,
    RedoFut: Future<Output = Result<Answer, ApiError>>,
{
    let Some(key) = key.0 else {
        let (status, body) = run(None).await?;
        return Ok(respond(status, body.to_string(), false));
    };
    // Boxed: a keyed write makes round trips of its own, and a write without a key should
    // not carry the size of their future.
    Box::pin(keyed(
        AppState::from_ref(state),
        caller,
        key,
        request,
        run,
        redo,
    ))
    .await
}

/// [`once`] with a key: claims it, runs the write or answers as an earlier try did.
async fn keyed<Run, RunFut, Redo, RedoFut>(
    state: AppState,
    caller: &Caller,
    key: String,
    request: (&str, &str, &[u8]),
    run: Run,
    redo: Redo,
) -> Result<Response, ApiError>
where
    Run: FnOnce(Option<IdempotencyMark>) -> RunFut,
    RunFut: Future<Output = Result<Answer, ApiError>>,
    Redo: FnOnce(Option<i64>) -> RedoFut,
    RedoFut: Future<Output = Result<Answer, ApiError>>,
{
    let (method, path, body) = request;
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    let fingerprint: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mark = IdempotencyMark {
        caller: caller.label(),
        key,
    };
    // By the database's clock: a node whose own clock runs ahead must not take over a
    // lease that has not run out.
    let now = state.store.now();
    let claim = state
        .store
        .claim_idempotency(&mark, &fingerprint, now, now + state.idempotency_lease)
        .await?;
    let claim = match claim {
        IdempotencyClaim::Claimed => match run(Some(mark.clone())).await {
            Ok((status, body)) => {
                let body = body.to_string();
                if let Err(e) = state
                    .store
                    .answer_idempotency(&mark, status.as_u16(), &body)
                    .await
                {
                    // The commit's mark stands: a retry answers from what it committed.
                    tracing::warn!(error = %e, "could not record an idempotent answer");
                }
                return Ok(respond(status, body, false));
            }
            Err(e) => {
                if state.store.release_idempotency(&mark).await? {
                    return Err(e);
                }
                // Another try with this key committed first: answer as it did.
                state
                    .store
                    .claim_idempotency(&mark, &fingerprint, now, now + state.idempotency_lease)
                    .await?
            }
        },
        other => other,
    };
    match claim {
        IdempotencyClaim::Answered { status, body } => Ok(respond(
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            body,
            true,
        )),
        IdempotencyClaim::Committed { resource } => {
            let (status, body) = redo(resource).await?;
            let body = body.to_string();
            if let Err(e) = state
                .store
                .answer_idempotency(&mark, status.as_u16(), &body)
                .await
            {
                tracing::warn!(error = %e, "could not record an idempotent answer");
            }
            Ok(respond(status, body, true))
        }
        IdempotencyClaim::Mismatch => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "This Idempotency-Key was used with another request.",
        )),
        IdempotencyClaim::InProgress | IdempotencyClaim::Claimed => Err(ApiError::new(
            StatusCode::CONFLICT,
            "A request with this Idempotency-Key is in progress; retry shortly.",
        )
        .retry_after(1)),
    }
}
