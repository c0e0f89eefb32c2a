//! The OpenAPI 3.1 document of the REST API, generated from the handlers' annotations, and a
//! page that renders it.
//!
//! `GET /api/openapi.json` answers the document; `GET /api/docs/` answers a small HTML page that
//! loads Redoc from a public CDN and points it at the document. The handlers answer
//! `serde_json::Value`, so the response shapes are described here by schema-only structs that
//! mirror `crate::wire` and the handlers; the end-to-end tests check real responses against them.

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use tickethub_actors::domain::Role;
use tickethub_actors::routing::Channel;
use tickethub_actors::ticket_domain::{Category, Priority, TicketStatus};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Deprecated, RefOr};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use super::{notifications, ops, projects, tickets, users, AppState};

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
    paths(
        users::login,
        users::refresh,
        users::register,
        users::me,
        users::update_me,
        users::list_users,
        users::user_detail,
        users::update_user,
        projects::list,
        projects::create,
        projects::detail,
        projects::update,
        tickets::list,
        tickets::create,
        tickets::detail,
        tickets::comments,
        tickets::comment,
        tickets::actions::open_ticket,
        tickets::actions::assign,
        tickets::actions::start_work,
        tickets::actions::finish_work,
        tickets::actions::approve,
        tickets::actions::reject,
        notifications::list,
        notifications::unread,
        notifications::unread_count,
        notifications::mark_all_as_read,
        notifications::delete_all,
        notifications::get_preferences,
        notifications::put_preferences,
        notifications::send,
        notifications::one,
        notifications::delete_one,
        notifications::mark_as_read,
        notifications::mark_as_unread,
        notifications::deliveries,
        notifications::timeline,
        super::admin::trace,
        super::admin::escalations,
        ops::healthz,
        ops::readyz,
        ops::prometheus,
    ),
    components(schemas(
        ErrorBody,
        ConflictBody,
        RoleName,
        TicketStatusName,
        PriorityName,
        CategoryName,
        ChannelName,
        Project,
        ProjectPage,
        Ticket,
        TicketDetail,
        TicketPage,
        CommentPage,
        UserPage,
        Comment,
        CommentIn,
        AssignIn,
        RejectIn,
        Notification,
        NotificationPage,
        UnreadCount,
        ReadStateChanged,
        BulkResult,
        Delivery,
        Deliveries,
        Timeline,
        Trace,
        Escalations,
        Preferences,
        SendRequest,
        SendResult,
        Health,
        Readiness,
    )),
    modifiers(&BearerScheme, &JsonBodies, &Aliases),
    tags(
        (name = "auth", description = "Tokens and registration."),
        (name = "users", description = "The caller's profile and the people they work with."),
        (name = "projects", description = "Projects and their members."),
        (name = "tickets", description = "Tickets, their comments and their lifecycle actions."),
        (name = "notifications", description = "The caller's inbox, deliveries, preferences and admins' sends."),
        (name = "ops", description = "Liveness, readiness and metrics."),
        (name = "admin", description = "Operators: why a user was or was not notified, and pending escalations."),
    )
)]
pub struct ApiDoc;

/// The routes of this module: the document and the page that renders it.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/docs/", get(docs))
}

/// The document, serialized once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_json()
        .expect("the OpenAPI document serializes")
});

async fn openapi_json() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

/// Redoc, from a public CDN, rendering `/api/openapi.json`.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tickethub API</title>
<style>body { margin: 0; }</style>
</head>
<body>
<redoc spec-url="/api/openapi.json"></redoc>
<noscript>This page needs JavaScript; the document itself is at <a href="/api/openapi.json">/api/openapi.json</a>.</noscript>
<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"></script>
</body>
</html>
"#;

async fn docs() -> Html<&'static str> {
    Html(DOCS_PAGE)
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

/// A string schema with a fixed set of values.
fn string_enum<'a>(description: &str, values: impl IntoIterator<Item = &'a str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values))
        .into()
}

/// Declares a schema-only type for a set of wire names taken from the domain, so the document
/// cannot drift from the values the hub accepts and answers.
macro_rules! wire_names {
    ($(#[$meta:meta])* $name:ident, $description:literal, $values:expr) => {
        $(#[$meta])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string_enum($description, $values)
            }
        }

        impl ToSchema for $name {}
    };
}

wire_names!(
    /// A user's role.
    RoleName,
    "A user's role.",
    Role::ALL.iter().map(|r| r.as_str())
);
wire_names!(
    /// A ticket's status.
    TicketStatusName,
    "A ticket's status.",
    TicketStatus::ALL.iter().map(|s| s.as_str())
);
wire_names!(
    /// A ticket's priority.
    PriorityName,
    "A ticket's priority.",
    Priority::ALL.iter().map(|p| p.as_str())
);
wire_names!(
    /// A ticket's category.
    CategoryName,
    "A ticket's category.",
    Category::ALL.iter().map(|c| c.as_str())
);
wire_names!(
    /// A delivery channel.
    ChannelName,
    "A way to reach a user.",
    Channel::ALL.iter().map(|c| c.as_str())
);

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
    pub status: TicketStatusName,
}

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

/// A project.
#[derive(ToSchema)]
pub struct Project {
    /// The project's id.
    pub id: i64,
    /// 2 to 10 uppercase letters or digits, starting with a letter; prefixes its tickets' keys.
    #[schema(examples("WEB"))]
    pub key: String,
    /// The project's name.
    pub name: String,
    /// The ids of its members.
    pub member_ids: Vec<i64>,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A page of projects.
#[derive(ToSchema)]
pub struct ProjectPage {
    /// Projects on all pages.
    pub count: i64,
    /// The next page's URL.
    #[schema(required = true)]
    pub next: Option<String>,
    /// The previous page's URL.
    #[schema(required = true)]
    pub previous: Option<String>,
    /// This page.
    pub results: Vec<Project>,
}

/// A ticket.
#[derive(ToSchema)]
pub struct Ticket {
    /// The ticket's id.
    pub id: i64,
    /// `PROJECT-n`.
    #[schema(examples("WEB-7"))]
    pub key: String,
    /// The project's id.
    pub project: i64,
    /// The project's key.
    pub project_key: String,
    /// The project's name.
    pub project_name: String,
    /// The title.
    pub title: String,
    /// The description.
    pub description: String,
    /// The priority.
    pub priority: PriorityName,
    /// The priority, for people.
    pub priority_display: String,
    /// The category.
    pub category: CategoryName,
    /// The category, for people.
    pub category_display: String,
    /// The status.
    pub status: TicketStatusName,
    /// The status, for people.
    pub status_display: String,
    /// The creating client's id.
    pub created_by: i64,
    /// The creating client's name.
    pub created_by_name: String,
    /// The assigned developers' ids.
    pub assignees: Vec<i64>,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Bumped by every change.
    pub version: i64,
}

/// A ticket with its comments.
#[derive(ToSchema)]
pub struct TicketDetail {
    /// The ticket.
    #[serde(flatten)]
    pub ticket: Ticket,
    /// Its newest comments (at most 100), oldest first; `…/comments/` pages through all.
    pub comments: Vec<Comment>,
    /// How many comments the ticket has in all.
    pub comment_count: i64,
}

/// A page of users.
#[derive(ToSchema)]
pub struct UserPage {
    /// Users on all pages.
    pub count: i64,
    /// The next page's URL.
    #[schema(required = true)]
    pub next: Option<String>,
    /// The previous page's URL.
    #[schema(required = true)]
    pub previous: Option<String>,
    /// This page, by id: `User` for admins, `PublicUser` for others.
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<serde_json::Value>,
}

/// A page of a ticket's comments.
#[derive(ToSchema)]
pub struct CommentPage {
    /// Comments on all pages.
    pub count: i64,
    /// The next page's URL.
    #[schema(required = true)]
    pub next: Option<String>,
    /// The previous page's URL.
    #[schema(required = true)]
    pub previous: Option<String>,
    /// This page, oldest first.
    pub results: Vec<Comment>,
}

/// A page of tickets.
#[derive(ToSchema)]
pub struct TicketPage {
    /// Tickets on all pages.
    pub count: i64,
    /// The next page's URL.
    #[schema(required = true)]
    pub next: Option<String>,
    /// The previous page's URL.
    #[schema(required = true)]
    pub previous: Option<String>,
    /// This page, newest first.
    pub results: Vec<Ticket>,
}

/// A comment on a ticket.
#[derive(ToSchema)]
pub struct Comment {
    /// The comment's id.
    pub id: i64,
    /// The ticket's id.
    pub ticket: i64,
    /// The author's id.
    pub author: i64,
    /// The author's name.
    pub author_name: String,
    /// The text.
    pub body: String,
    /// When it was written.
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A new comment.
#[derive(ToSchema)]
pub struct CommentIn {
    /// The text, at most 10000 characters.
    #[schema(max_length = 10000)]
    pub body: String,
}

/// Whom a ticket is assigned to.
#[derive(ToSchema)]
pub struct AssignIn {
    /// The developers' ids; they replace the current assignees.
    pub developer_ids: Vec<i64>,
}

/// Why a client rejects the work.
#[derive(ToSchema)]
pub struct RejectIn {
    /// The reason, at most 5000 characters.
    #[schema(max_length = 5000)]
    pub reason: Option<String>,
}

/// A notification in the caller's inbox.
#[derive(ToSchema)]
pub struct Notification {
    /// The notification's id.
    pub id: i64,
    /// Its place in the recipient's sequence.
    pub seq: i64,
    /// The ticket's id, if it is about one.
    #[schema(required = true)]
    pub ticket: Option<i64>,
    /// The ticket's key.
    #[schema(required = true)]
    pub ticket_key: Option<String>,
    /// The ticket's title.
    #[schema(required = true)]
    pub ticket_title: Option<String>,
    /// The recipient's id (the caller).
    pub recipient: i64,
    /// The recipient's name.
    pub recipient_name: String,
    /// What happened, e.g. `ticket_created`; admins' sends may use types of their own.
    pub notification_type: String,
    /// The type, for people.
    pub notification_type_display: String,
    /// The title.
    pub title: String,
    /// The title again, under its older name.
    pub subject: String,
    /// The message.
    pub message: String,
    /// Extra data, a JSON object.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Where a client should take the user.
    #[schema(required = true)]
    pub action_url: Option<String>,
    /// How its outbound deliveries stand (seed 001): `SENT` once any channel delivered it, or
    /// at once with no outbound channel; `FAILED` once every channel failed for good;
    /// `PENDING` before.
    #[schema(examples("SENT"))]
    pub status: String,
    /// `Sent`, `Failed` or `Pending`.
    pub status_display: String,
    /// When it was first delivered.
    #[schema(required = true, format = DateTime)]
    pub sent_at: Option<String>,
    /// Whether the recipient has read it.
    pub is_read: bool,
    /// When it was read.
    #[schema(required = true, format = DateTime)]
    pub read_at: Option<String>,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A page of notifications.
#[derive(ToSchema)]
pub struct NotificationPage {
    /// Notifications on all pages.
    pub count: i64,
    /// The next page's URL.
    #[schema(required = true)]
    pub next: Option<String>,
    /// The previous page's URL.
    #[schema(required = true)]
    pub previous: Option<String>,
    /// This page, newest first.
    pub results: Vec<Notification>,
}

/// How many notifications are unread.
#[derive(ToSchema)]
pub struct UnreadCount {
    /// Unread notifications.
    pub count: i64,
    /// Unread notifications per type.
    pub by_type: std::collections::BTreeMap<String, i64>,
}

/// One notification's new read state.
#[derive(ToSchema)]
pub struct ReadStateChanged {
    /// What happened, in words.
    pub message: String,
    /// The notification now.
    pub notification: Notification,
}

/// What a bulk change did.
#[derive(ToSchema)]
pub struct BulkResult {
    /// What happened, in words.
    pub message: String,
    /// How many notifications changed.
    pub count: i64,
}

/// One channel's delivery of a notification. The first is always the in-app record
/// (`websocket`, `STORED`), which has no id, address or provider fields.
#[derive(ToSchema)]
pub struct Delivery {
    /// The delivery's id.
    #[serde(default)]
    pub id: i64,
    /// The channel.
    pub channel: ChannelName,
    /// The address it goes to: an email address, a phone number or a webhook URL.
    #[serde(default)]
    pub address: String,
    /// `STORED` (in-app), `QUEUED`, `SENDING`, `SENT` or `FAILED`.
    #[schema(examples("SENT"))]
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// The last error.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// The provider's id of the sent message.
    pub provider_message_id: Option<String>,
    /// When the next attempt is due, while `QUEUED`.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    /// When it was sent.
    #[schema(required = true, format = DateTime)]
    pub sent_at: Option<String>,
}

/// Everything recorded about one notification.
#[derive(ToSchema)]
pub struct Timeline {
    /// The notification: id, user_id, username, seq, notification_type, title, is_read, ticket.
    #[schema(value_type = Object)]
    pub notification: serde_json::Value,
    /// Its events, oldest first. Each has `event` (`committed`, `pushed`, `acked`, `read`,
    /// `deleted`, `delivery_attempt`, `delivery_pending`, `escalation_scheduled`,
    /// `escalation_fired`, `escalation_cancelled`, `escalation_failed`) and `at`, with the
    /// fields of its kind.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
}

/// The routing decision of every event of a ticket, replayed for one user.
#[derive(ToSchema)]
pub struct Trace {
    /// The ticket: id, key, title, status, project.
    #[schema(value_type = Object)]
    pub ticket: serde_json::Value,
    /// The user: id, username, role, is_active, member.
    #[schema(value_type = Object)]
    pub user: serde_json::Value,
    /// Which facts are as they are now.
    pub note: String,
    /// Per event: `recipient`, and either `reason` (`not_a_member`, `not_routed`, `actor`,
    /// `inactive`, `no_route`) with an `explanation`, or the `audiences` that named the user,
    /// each outbound `channel` (reached, or why not) and the `notification` with its timeline.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
}

/// Escalation steps.
#[derive(ToSchema)]
pub struct Escalations {
    /// How many match.
    pub count: i64,
    /// The steps, soonest due first: id, notification_id, user_id, ticket_id, policy, step,
    /// unless, channels, also, due_at, status, detail, claimed_by, created_at, updated_at.
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<serde_json::Value>,
}

/// A notification's deliveries.
#[derive(ToSchema)]
pub struct Deliveries {
    /// The notification's id.
    pub notification: i64,
    /// One per channel and address.
    pub deliveries: Vec<Delivery>,
}

/// Which outbound channels a user gets notifications on.
#[derive(ToSchema)]
pub struct Preferences {
    /// Per channel (`email`, `whatsapp`), for every type.
    pub channels: std::collections::BTreeMap<String, bool>,
    /// Per type, per channel; these win over `channels`.
    pub types: std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>>,
    /// The built-in notification types.
    pub notification_types: Vec<String>,
}

/// A notification an admin sends. Give exactly one of `user_ids`, `user_id` or `role`.
#[derive(ToSchema)]
pub struct SendRequest {
    /// The recipients' ids (1 to 10000).
    pub user_ids: Option<Vec<i64>>,
    /// One recipient's id.
    pub user_id: Option<i64>,
    /// Every active user of this role.
    pub role: Option<RoleName>,
    /// The title, 1 to 200 characters.
    #[schema(max_length = 200)]
    pub title: String,
    /// The message, 1 to 5000 characters.
    #[schema(max_length = 5000)]
    pub message: String,
    /// 1 to 64 letters, digits, `_`, `-` or `.` (default `general`).
    pub notification_type: Option<String>,
    /// Extra data, a JSON object.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    /// Where a client should take the user.
    pub link: Option<String>,
    /// Outbound channels to use besides the in-app record.
    #[serde(default)]
    pub channels: Vec<ChannelName>,
}

/// What a send did.
#[derive(ToSchema)]
pub struct SendResult {
    /// Always `true`.
    pub success: bool,
    /// How many users were notified.
    pub count: i64,
}

/// Liveness.
#[derive(ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(examples("ok"))]
    pub status: String,
}

/// Readiness: whether the database answers, and whether the bus to other nodes is up.
#[derive(ToSchema)]
pub struct Readiness {
    /// `ok`; `degraded` (still ready) while the bus is down; `unavailable` without a database or
    /// while the supervision tree is restarting a child.
    #[schema(examples("ok"))]
    pub status: String,
    /// The backend (`sqlite`, `postgres`), or `unreachable`.
    pub database: String,
    /// The link to other hub processes: `none`, `connected` or `disconnected`.
    #[serde(default)]
    pub bus: String,
    /// The supervision tree: `ok`, or `restarting` while a child of the root waits for its
    /// restart (not ready).
    pub actors: String,
}
