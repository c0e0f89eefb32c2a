//! The HTTP API: one router per resource, merged here, plus the state they share.

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::Router;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

pub use crate::state::{AppState, MetricsAccess};

pub mod addresses;
pub mod admin;
pub mod analytics;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod devices;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod inbound;
pub mod maintenance;
pub mod mattermost;
pub mod notifications;
pub mod oncall;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod people;
pub mod project_chats;
pub mod projects;
pub mod scheduled;
pub mod slack;
pub mod suppressions;
pub mod tickets;
pub mod unsubscribe;
pub mod users;
pub mod verify;
pub mod webhooks;

/// The hub's address as people reach it (`--public-url`, e.g. `https://tickets.example.com`):
/// the links the API builds start with it. Without it they are relative (`/api/…?page=2`):
/// a request's `Host` or `X-Forwarded-Host` is whatever the client wrote, and a link built
/// from it would send the next reader wherever the client chose.
#[derive(Clone, Debug)]
pub struct PublicOrigin(pub String);

/// Whether a request came straight from one of the trusted reverse proxies.
pub fn via_trusted_proxy(trusted: &[ipnet::IpNet], extensions: &axum::http::Extensions) -> bool {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|peer| trusted.iter().any(|net| net.contains(&peer.0.ip())))
}

/// The REST API and the operations endpoints, each route registered with its document.
pub fn api(metrics_on_main: bool) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(tickets::router())
        .merge(projects::router())
        .merge(maintenance::router())
        .merge(project_chats::router())
        .merge(scheduled::router())
        .merge(notifications::router())
        .merge(admin::router())
        .merge(api_keys::router())
        .merge(oncall::router())
        .merge(devices::router())
        .merge(verify::router())
        .merge(audit::router())
        .merge(suppressions::router())
        .merge(webhooks::router())
        .merge(people::router())
        .merge(ops::router(metrics_on_main))
}

/// The whole HTTP surface: REST and operations, with `streams` (the WebSocket and event-stream
/// routes, the documented ones registered like the API's) beside them, all behind the same
/// layers, and the OpenAPI document of every documented route.
pub fn router(
    state: AppState,
    streams: OpenApiRouter<AppState>,
    max_body_bytes: usize,
    request_timeout: std::time::Duration,
) -> Router {
    let (routes, document) = api(state.metrics.on_main).merge(streams).split_for_parts();
    Router::new()
        .merge(routes)
        .merge(openapi::router(
            openapi::document(document),
            &openapi::ThisHub::of(&state),
        ))
        .merge(pages::router())
        .merge(verify::pages())
        .merge(unsubscribe::pages())
        .merge(inbound::router())
        .fallback(|| async { error::ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(move |req, next| {
            within(request_timeout, req, next)
        }))
        .layer(axum::Extension(state.public_url.clone().map(PublicOrigin)))
        .layer(axum::middleware::from_fn(record_request))
        .layer(
            // The span names the route, never the query string: it may carry a token. It is
            // tower-http's: at its level and under its target, so `RUST_LOG=tower_http=debug`
            // turns on the span with the request's events, and the default filter turns off
            // both (at info a span per request was a twentieth of the runtime's CPU at 6,000
            // calls/s). A failed request is logged with its route by [`record_request`].
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", MatchedPath::as_str);
                tracing::debug_span!(
                    target: "tower_http::trace::make_span",
                    "http",
                    method = %req.method(),
                    route = %route
                )
            }),
        )
        .with_state(state)
}

/// Answers 503 for a request that takes longer than `limit`, body reading included, so that a
/// client trickling its body cannot hold a handler for ever. A WebSocket upgrade answers at
/// once, and its socket lives on outside this bound.
async fn within(
    limit: std::time::Duration,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => error::ApiError::unavailable("The request took too long.").into_response(),
    }
}

/// Counts every request by method, route (never the raw path or query) and status.
async fn record_request(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status().as_u16();
    // A failure names its route here, the request's span being off by default; a refusal
    // that tells the client when to retry (shedding load, say) is expected and only counted.
    if status >= 500
        && !response
            .headers()
            .contains_key(axum::http::header::RETRY_AFTER)
    {
        tracing::warn!(method = %method, route = %route, status, "request failed");
    }
    let (requests, duration) = RequestMetrics::of(method, route, status);
    requests.increment(1);
    duration.record(started.elapsed().as_secs_f64());
    response
}

/// Each route's request metrics, looked up in the registry once rather than per request (the
/// routes are the router's, so the map stays small).
#[derive(Default)]
struct RequestMetrics {
    routes: std::sync::RwLock<std::collections::HashMap<String, RouteMetrics>>,
}

/// One route's duration histogram, and its request counters by method and status.
struct RouteMetrics {
    duration: metrics::Histogram,
    requests: Vec<(&'static str, u16, metrics::Counter)>,
}

impl RequestMetrics {
    fn of(
        method: &'static str,
        route: &str,
        status: u16,
    ) -> (metrics::Counter, metrics::Histogram) {
        static ALL: std::sync::LazyLock<RequestMetrics> =
            std::sync::LazyLock::new(Default::default);
        let found = |r: &RouteMetrics| {
            r.requests
                .iter()
                .find(|(m, s, _)| *m == method && *s == status)
                .map(|(_, _, c)| (c.clone(), r.duration.clone()))
        };
        let read = ALL
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(hit) = read.get(route).and_then(found) {
            return hit;
        }
        drop(read);
        let mut write = ALL
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = write.entry(route.to_owned()).or_insert_with(|| RouteMetrics {
            duration: metrics::histogram!("tickethub_http_request_duration_seconds", "route" => route.to_owned()),
            requests: Vec::new(),
        });
        if let Some(hit) = found(r) {
            return hit;
        }
        let counter = metrics::counter!("tickethub_http_requests_total", "method" => method, "route" => route.to_owned(), "status" => status.to_string());
        r.requests.push((method, status, counter.clone()));
        (counter, r.duration.clone())
    }
}

/// A request method as a metric label: the methods HTTP defines, else `other`. A label taken
/// from the request itself would let anyone add series to `/metrics` without end.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

pub use crate::wire::timestamp;

/// `page` and `page_size` query parameters, Django REST Framework style. They are strings
/// here because query strings are (and `#[serde(flatten)]` loses their typing).
#[derive(serde::Deserialize, Debug, Default, Clone)]
pub struct PageParams {
    /// 1-based page number (default 1).
    pub page: Option<String>,
    /// Rows per page (default 20, at most 100).
    pub page_size: Option<String>,
}

impl PageParams {
    /// The slice these parameters ask for. As in DRF, a page that is not a positive number
    /// is 404 "Invalid page."; a `page_size` that is not a whole number from 1 to 100 is 400.
    /// An empty `page=` is not a number either (DRF reads it as page 1; the document says a
    /// page is an integer, and the hub holds to it).
    pub fn page(&self) -> Result<(i64, tickethub_actors::ports::Page), error::ApiError> {
        let page = match self.page.as_deref() {
            None => 1,
            Some(p) => p
                .parse::<i64>()
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| error::ApiError::new(StatusCode::NOT_FOUND, "Invalid page."))?,
        };
        let size = query_int("page_size", self.page_size.as_deref(), 1, 100)?.unwrap_or(20);
        Ok((
            page,
            tickethub_actors::ports::Page {
                offset: page.saturating_sub(1).saturating_mul(size),
                limit: size,
            },
        ))
    }
}

/// A page of a list, Django REST Framework style.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// Items on all pages.
    pub count: i64,
    /// The next page's URL.
    #[schema(required = true)]
    pub next: Option<String>,
    /// The previous page's URL.
    #[schema(required = true)]
    pub previous: Option<String>,
    /// This page.
    pub results: Vec<T>,
}

/// `{count, next, previous, results}` with absolute `next`/`previous` links that keep the
/// request's other query parameters. A page past the end is 404, as in DRF.
pub fn paginated<T>(
    parts: &axum::http::request::Parts,
    page: i64,
    limit: i64,
    count: i64,
    results: Vec<T>,
) -> Result<Page<T>, error::ApiError> {
    let pages = ((count + limit - 1) / limit).max(1);
    if page > pages {
        return Err(error::ApiError::new(StatusCode::NOT_FOUND, "Invalid page."));
    }
    let origin = parts
        .extensions
        .get::<Option<PublicOrigin>>()
        .and_then(|o| o.as_ref())
        .map(|o| o.0.as_str())
        .unwrap_or_default();
    let link = |n: i64| {
        let mut pairs: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|q| {
                url_pairs(q)
                    .into_iter()
                    .filter(|(k, _)| k != "page")
                    .collect()
            })
            .unwrap_or_default();
        if n > 1 {
            pairs.push(("page".into(), n.to_string()));
        }
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let sep = if query.is_empty() { "" } else { "?" };
        format!("{origin}{}{sep}{}", parts.uri.path(), query.join("&"))
    };
    Ok(Page {
        count,
        next: (page < pages).then(|| link(page + 1)),
        previous: (page > 1).then(|| link(page - 1)),
        results,
    })
}

/// Splits a raw query string into pairs, keeping the raw (still encoded) values.
fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

/// Parses a DRF-style boolean query value.
pub fn parse_bool(name: &str, v: &str) -> Result<bool, error::ApiError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(error::ApiError::bad_request(format!(
            "{name}: `{v}` is not a boolean (use true or false)."
        ))),
    }
}

/// An integer query value from `min` to `max`, if given; anything else given (an empty value
/// included) is 400 naming the parameter.
pub fn query_int(
    name: &str,
    value: Option<&str>,
    min: i64,
    max: i64,
) -> Result<Option<i64>, error::ApiError> {
    value
        .map(|v| {
            v.parse::<i64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    error::ApiError::bad_request(format!(
                        "{name}: A whole number from {min} to {max}."
                    ))
                })
        })
        .transpose()
}

/// Parses an integer query value.
pub fn parse_id(name: &str, v: &str) -> Result<i64, error::ApiError> {
    v.parse()
        .map_err(|_| error::ApiError::bad_request(format!("{name}: `{v}` is not a valid id.")))
}
