//! The HTTP error type: every failure becomes `{"detail": "…"}` with a status code.
//!
//! Internal errors are logged here and answered with a generic message, never a stack trace.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tickethub_actors::ports::StoreError;
use utoipa::ToSchema;

/// An error.
#[derive(ToSchema)]
#[schema(examples(json!({"detail": "Not found."})))]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub detail: String,
}

/// A conflict: the ticket action does not apply to the ticket's current status, or the ticket
/// changed meanwhile.
#[derive(ToSchema)]
#[schema(examples(json!({"detail": "Cannot approve a ticket whose status is OPEN.", "status": "OPEN"})))]
pub struct ConflictBody {
    /// What went wrong, in words.
    pub detail: String,
    /// The ticket's status now; absent when the ticket changed meanwhile.
    #[serde(default)]
    pub status: super::openapi::TicketStatusName,
}

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    extra: Option<(&'static str, serde_json::Value)>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status and detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            extra: None,
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header, in seconds.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds one more field to the body, beside `detail`.
    pub fn with(mut self, key: &'static str, value: impl Into<serde_json::Value>) -> Self {
        self.extra = Some((key, value.into()));
        self
    }

    /// 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 401 Unauthorized.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// 403 Forbidden.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    /// 404 Not Found, in Django REST Framework's words.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found.")
    }

    /// 503 Service Unavailable.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<crate::limits::Refused> for ApiError {
    fn from(refused: crate::limits::Refused) -> Self {
        use crate::limits::Refused;
        let detail = refused.to_string();
        match refused {
            Refused::Throttled { retry_after } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, detail).retry_after(retry_after)
            }
            Refused::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, detail).retry_after(1),
            Refused::NoSuchAccount => ApiError::unauthorized(detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "detail": self.detail });
        if let Some((key, value)) = self.extra {
            body[key] = value;
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => ApiError::bad_request("That value is already taken."),
            StoreError::NotFound(_) => ApiError::not_found(),
            StoreError::Stale(_) => ApiError::new(
                StatusCode::CONFLICT,
                "The resource changed meanwhile; reload and try again.",
            ),
            StoreError::Backend(err) => {
                tracing::error!(error = %err, "database error");
                ApiError::unavailable("The database is unavailable; try again shortly.")
            }
        }
    }
}

/// An on-call send whose target names nobody: the request's fault (400), unless the database
/// did not answer.
impl From<tickethub_actors::notifier::Unpaged> for ApiError {
    fn from(e: tickethub_actors::notifier::Unpaged) -> Self {
        match e {
            tickethub_actors::notifier::Unpaged::Store(e) => e.into(),
            e => ApiError::bad_request(format!("oncall: {e}.")),
        }
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        match e {
            crate::auth::AuthError::Token(e) => ApiError::unauthorized(e.to_string()),
            crate::auth::AuthError::Store(e) => e.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        let detail = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "Request body is too large.".to_owned(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "Unsupported media type; send Content-Type: application/json.".to_owned()
            }
            _ => format!("JSON parse error - {}", rejection.body_text()),
        };
        ApiError::new(status, detail)
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::BytesRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large.")
            }
            _ => ApiError::bad_request(format!("Cannot read the body - {}", rejection.body_text())),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(format!("Invalid query - {}", rejection.body_text()))
    }
}

impl From<tickethub_actors::ticket::TicketError> for ApiError {
    fn from(e: tickethub_actors::ticket::TicketError) -> Self {
        use tickethub_actors::ticket::TicketError;
        use tickethub_actors::ticket_domain::TransitionError;
        match e {
            TicketError::Transition(TransitionError::Conflict { current, .. }) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string()).with("status", current.as_str())
            }
            TicketError::Transition(TransitionError::Forbidden(msg)) => ApiError::forbidden(msg),
            TicketError::Transition(TransitionError::Invalid(msg)) => ApiError::bad_request(msg),
            TicketError::NotFound => ApiError::not_found(),
            TicketError::Store(store) => store.into(),
            TicketError::Unavailable => ApiError::unavailable("The ticket is busy; try again."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Refused;

    /// The status, `Retry-After` and `detail` an error is answered with.
    async fn answer(err: ApiError) -> (u16, Option<String>, String) {
        use http_body_util::BodyExt;
        let response = err.into_response();
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (status, retry, body["detail"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn a_throttle_s_refusal_is_answered_with_its_status_and_wait() {
        for (refused, status, retry, detail) in [
            (
                Refused::Throttled { retry_after: 20 },
                429,
                Some("20"),
                "Request was throttled. Expected available in 20 seconds.",
            ),
            (
                Refused::Busy,
                503,
                Some("1"),
                "Too many sign-ins at once; try again in a second.",
            ),
            (
                Refused::NoSuchAccount,
                401,
                None,
                "No active account found with the given credentials",
            ),
        ] {
            let (s, r, d) = answer(ApiError::from(refused)).await;
            assert_eq!((s, r.as_deref(), d.as_str()), (status, retry, detail));
        }
    }
}
