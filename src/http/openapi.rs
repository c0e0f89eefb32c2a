//! The OpenAPI 3.1 document of the REST API, generated from the handlers' annotations, and a
//! page that renders it.
//!
//! `GET /api/openapi.json` answers the document; `GET /api/docs/` answers a small HTML page that
//! renders it with Redoc, whose bundle the hub serves itself (`web/vendor/redoc/`), so that the
//! page works without the internet. The handlers' request and response types derive their
//! schemas; this module adds the document's frame and the rows every operation shares.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::Deprecated;
use utoipa::{IntoParams, Modify, OpenApi};

use crate::state::AppState;

/// The name of the bearer-token security scheme the operations refer to.
pub const BEARER: &str = "bearer";

/// The document's introduction.
const DESCRIPTION: &str = "\
The REST API of tickethub, a real-time hub for ticket and incident workflows.

Errors are `{\"detail\": \"…\"}` (a 409 from a ticket action also carries the ticket's current \
`status`). Lists are `{count, next, previous, results}`, paged with `page` and `page_size` \
(default 20, at most 100); a page past the end is 404 \"Invalid page.\". Bodies larger than the \
hub's limit answer 413, and a JSON body without `Content-Type: application/json` answers 415. \
Any endpoint that needs the database answers 503 while it is unreachable.

Authenticate with `Authorization: Bearer <access token>` from `POST /api/auth/login/`.

Notifications are also pushed live over the WebSocket `/ws/notifications/`, which is not part of \
this document: the access token travels as the subprotocol `bearer.<JWT>` beside \
`tickethub.v1`, as an `Authorization: Bearer` header, or as `?token=<JWT>`. The first frame is \
`connection_established`, then the backlog is replayed and closed by `replay_complete`, then \
each new `notification` follows as it happens. The REST notification endpoints here are the \
same inbox.";

/// The OpenAPI document of the REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "tickethub", description = DESCRIPTION),
    tags(
        (name = "auth", description = "Tokens and registration."),
        (name = "users", description = "The caller's profile and the people they work with."),
        (name = "projects", description = "Projects and their members."),
        (name = "tickets", description = "Tickets, their comments and their lifecycle actions."),
        (name = "notifications", description = "The caller's inbox, deliveries, preferences and admins' sends."),
        (name = "devices", description = "The caller's push devices, and the Web Push key."),
        (name = "oncall", description = "On-call schedules: who is on call now, their shifts, overrides."),
        (name = "ops", description = "Liveness, readiness and metrics."),
        (name = "admin", description = "Operators: why a user was or was not notified, and pending escalations."),
    )
)]
pub struct ApiDoc;

mod this_hub;
pub use this_hub::ThisHub;

/// The routes of this module: `document` (the API's, gathered from the routes that serve it,
/// see `crate::http::router`, narrowed to `hub`) and the page that renders it.
pub fn router(document: utoipa::openapi::OpenApi, hub: &ThisHub) -> Router<AppState> {
    let value = serde_json::to_value(&document).expect("the OpenAPI document serializes");
    let json: std::sync::Arc<str> = hub.narrow(value).to_string().into();
    Router::new()
        .route(
            "/api/openapi.json",
            get(move || {
                let json = json.clone();
                async move { ([(CONTENT_TYPE, "application/json")], json.to_string()) }
            }),
        )
        .route("/api/docs/", get(docs))
        .route("/api/docs/redoc.standalone.js", get(redoc))
        .route("/api/docs/LICENSE.txt", get(redoc_licence))
}

/// The document's frame (its introduction, tags, security scheme and shared rows) around the
/// operations of `routes`, as a client generator reads it.
pub fn document(mut paths: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.paths = std::mem::take(&mut paths.paths);
    if let Some(components) = paths.components.take() {
        let own = doc.components.get_or_insert_with(Default::default);
        own.schemas.extend(components.schemas);
    }
    for modifier in [
        &BearerScheme as &dyn Modify,
        &SharedRows,
        &JsonBodies,
        &IdempotentWrites,
        &Aliases,
    ] {
        modifier.modify(&mut doc);
    }
    doc
}

/// Redoc, served by the hub, rendering `/api/openapi.json`.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tickethub API</title>
<link rel="icon" href="/assets/icon.svg" type="image/svg+xml">
<style>body { margin: 0; }</style>
</head>
<body>
<redoc spec-url="/api/openapi.json"></redoc>
<noscript>This page needs JavaScript; the document itself is at <a href="/api/openapi.json">/api/openapi.json</a>.</noscript>
<script src="/api/docs/redoc.standalone.js"></script>
</body>
</html>
"#;

/// What the docs page may load: only the hub's own files. Redoc inserts its styles inline and
/// runs its search in a worker made from a `blob:` URL.
const DOCS_POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                           img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; \
                           connect-src 'self'; object-src 'none'; base-uri 'none'; \
                           frame-ancestors 'none'";

async fn docs() -> impl IntoResponse {
    (
        [
            (CONTENT_SECURITY_POLICY, DOCS_POLICY),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(DOCS_PAGE),
    )
}

/// Redoc's standalone bundle (MIT), as in the npm package (`web/vendor/redoc/`) but for one
/// address: its sidebar's "API docs by Redocly" shows a logo from Redocly's CDN, which an
/// air-gapped install cannot reach and this page's policy refuses; it becomes an empty image.
static REDOC: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("../../web/vendor/redoc/redoc.standalone.js").replace(
        "https://cdn.redoc.ly/redoc/logo-mini.svg",
        "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E",
    )
});

async fn redoc() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=86400"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        REDOC.as_str(),
    )
}

/// Redoc's licence and those of the code bundled into it.
async fn redoc_licence() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        concat!(
            include_str!("../../web/vendor/redoc/LICENSE"),
            "\n\n",
            include_str!("../../web/vendor/redoc/redoc.standalone.js.LICENSE.txt")
        ),
    )
}

/// Adds the bearer-JWT security scheme the operations name.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from `POST /api/auth/login/` or `POST /api/auth/refresh/`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "Authorization",
                    "`Api-Key <key>`: a key from `tickethub keys create` or \
                     `POST /api/admin/api-keys/`, within its scopes.",
                ),
            )),
        );
    }
}

/// The error rows every operation shares, derived from what it takes rather than written on
/// each: 400 wherever a parameter or a body is read (an invalid value, a parameter given twice,
/// a body of the wrong shape), 401 wherever a token is asked for, 413 wherever a body is read,
/// and 503 everywhere (the database unreachable, or the request over its time).
struct SharedRows;

impl SharedRows {
    fn row(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
        utoipa::openapi::ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
            .into()
    }
}

impl Modify for SharedRows {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let secured_by_default = openapi.security.as_ref().is_some_and(|s| !s.is_empty());
        for item in openapi.paths.paths.values_mut() {
            let shared_params = !item.parameters.as_deref().unwrap_or_default().is_empty();
            let operations: [&mut Option<Operation>; 5] = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in operations.into_iter().flatten() {
                let reads_input = shared_params
                    || op.request_body.is_some()
                    || !op.parameters.as_deref().unwrap_or_default().is_empty();
                let secured = op
                    .security
                    .as_ref()
                    .map_or(secured_by_default, |s| !s.is_empty());
                let rows = &mut op.responses.responses;
                if reads_input {
                    rows.entry("400".to_owned()).or_insert_with(|| {
                        Self::row(
                            "A parameter or the body is not valid, or a parameter is given twice.",
                        )
                    });
                }
                if secured {
                    rows.entry("401".to_owned())
                        .or_insert_with(|| Self::row("No valid access token."));
                }
                if op.request_body.is_some() {
                    rows.entry("413".to_owned())
                        .or_insert_with(|| Self::row("The body is larger than the hub accepts."));
                }
                rows.entry("503".to_owned()).or_insert_with(|| {
                    Self::row("The database is unreachable, or the request took too long.")
                });
            }
        }
    }
}

/// The writes that take `Idempotency-Key` (`crate::http::idempotency`): the header, and the
/// 409 and 422 it can answer.
struct IdempotentWrites;

/// The operations that take `Idempotency-Key`.
const IDEMPOTENT: [&str; 9] = [
    "notifications_send",
    "tickets_create",
    "tickets_open_ticket",
    "tickets_assign",
    "tickets_start_work",
    "tickets_finish_work",
    "tickets_approve",
    "tickets_reject",
    "tickets_comment",
];

impl Modify for IdempotentWrites {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        let header = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(utoipa::openapi::Required::False)
            .description(Some(
                "Retries with the same key and request answer as the first try (with \
                 `Idempotent-Replayed: true`) and notify nobody again; keys are the caller's \
                 own and kept 24 hours.",
            ))
            .schema(Some(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some("^[!-~]+$")),
            ))
            .build();
        for item in openapi.paths.paths.values_mut() {
            let Some(op) = item.post.as_mut() else {
                continue;
            };
            if !op
                .operation_id
                .as_deref()
                .is_some_and(|id| IDEMPOTENT.contains(&id))
            {
                continue;
            }
            let params = op.parameters.get_or_insert_with(Vec::new);
            if !params.iter().any(|p| p.name == "Idempotency-Key") {
                params.push(header.clone());
            }
            let rows = &mut op.responses.responses;
            rows.entry("409".to_owned()).or_insert_with(|| {
                SharedRows::row("A request with this `Idempotency-Key` is in progress.")
            });
            rows.entry("422".to_owned()).or_insert_with(|| {
                SharedRows::row("This `Idempotency-Key` was used with another request.")
            });
        }
    }
}

/// Every operation that takes a JSON body answers 415 to a body sent as anything else.
struct JsonBodies;

impl Modify for JsonBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let refused = utoipa::openapi::ResponseBuilder::new()
            .description("The body was not sent as `Content-Type: application/json`.")
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations: [&mut Option<Operation>; 5] = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in operations.into_iter().flatten() {
                if op.request_body.is_some() {
                    op.responses
                        .responses
                        .entry("415".to_owned())
                        .or_insert_with(|| refused.clone().into());
                }
            }
        }
    }
}

/// Seed 004's hyphenated paths, each an alias of a documented path: `(alias, original,
/// operation id suffix)`.
const ALIASES: [(&str, &str, &str); 5] = [
    (
        "/api/notifications/unread-count/",
        "/api/notifications/unread_count/",
        "hyphenated",
    ),
    (
        "/api/notifications/mark-all-as-read/",
        "/api/notifications/mark_all_as_read/",
        "hyphenated",
    ),
    (
        "/api/notifications/{id}/mark-as-read/",
        "/api/notifications/{id}/mark_as_read/",
        "hyphenated",
    ),
    (
        "/api/notifications/mark_as_read/{id}/",
        "/api/notifications/{id}/mark_as_read/",
        "id_last",
    ),
    (
        "/api/notifications/{id}/mark-as-unread/",
        "/api/notifications/{id}/mark_as_unread/",
        "hyphenated",
    ),
];

/// Documents each alias as a deprecated copy of the operations of its original path.
struct Aliases;

impl Modify for Aliases {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (alias, original, suffix) in ALIASES {
            let Some(mut item) = openapi.paths.paths.get(original).cloned() else {
                continue;
            };
            let operations: [&mut Option<Operation>; 4] = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for op in operations.into_iter().flatten() {
                op.deprecated = Some(Deprecated::True);
                op.operation_id = op.operation_id.take().map(|id| format!("{id}_{suffix}"));
                op.description = Some(format!(
                    "An alias of `{original}`, kept for older clients.{}",
                    op.description
                        .take()
                        .map(|d| format!("\n\n{d}"))
                        .unwrap_or_default()
                ));
            }
            openapi.paths.paths.insert(alias.to_owned(), item);
        }
    }
}

pub use crate::wire::{
    CategoryName, ChannelName, DeliveryChannelName, PriorityName, RoleName, TicketOrderingName,
    TicketStatusName,
};

/// `page` and `page_size`, Django REST Framework style.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The 1-based page number (default 1); a page past the end is 404.
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// Rows per page (default 20, at most 100).
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<i64>,
}

/// The filters of the notification lists.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationFilters {
    /// Only read (`true`) or unread (`false`) notifications.
    pub is_read: Option<bool>,
    /// Only this notification type, e.g. `ticket_created`.
    pub notification_type: Option<String>,
    /// The same filter under its older name.
    #[param(rename = "type")]
    #[deprecated = "Use `notification_type`."]
    pub kind: Option<String>,
    /// Only notifications about this ticket id.
    pub ticket: Option<i64>,
}
