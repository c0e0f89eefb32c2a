//! Operations endpoints: liveness, readiness and metrics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The routes of this module. `/metrics` is among them unless it has a listener of its own
/// (`--metrics-bind`), where [`metrics_router`] serves it.
pub fn router(metrics_on_main: bool) -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz));
    if metrics_on_main {
        router.routes(routes!(prometheus))
    } else {
        router
    }
}

/// `/metrics` alone, for `--metrics-bind`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(prometheus))
        .fallback(|| async { super::error::ApiError::not_found() })
        .with_state(state)
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "ops",
    responses((status = 200, description = "Alive.", body = Health))
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Liveness.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(examples("ok"))]
    pub status: &'static str,
}

/// Readiness: whether the database answers, and whether the bus to other nodes is up.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ok`; `degraded` (still ready) while the bus is down; `unavailable` without a database or
    /// while the supervision tree is restarting a child.
    #[schema(examples("ok"))]
    pub status: &'static str,
    /// The backend (`sqlite`, `postgres`), or `unreachable`.
    pub database: &'static str,
    /// The link to other hub processes: `none`, `connected` or `disconnected`.
    pub bus: &'static str,
    /// The supervision tree: `ok`, or `restarting` while a child of the root waits for its
    /// restart (not ready).
    pub actors: &'static str,
}

/// Readiness: the database answers and the supervision tree is whole (no child of the root
/// waits for a restart). A node whose bus to the other nodes is down stays ready
/// and says `degraded`: it still serves its own users (what crosses nodes meanwhile is caught
/// up from the database once the bus is back), and a Redis blip must not take every node out
/// of a load balancer at once.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready (`status` is `ok`, or `degraded` while the bus is down).", body = Readiness),
        (status = 503, description = "The database does not answer.", body = Readiness),
    )
)]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let bus = match state.hub.bus_connected() {
        None => "none",
        Some(true) => "connected",
        Some(false) => "disconnected",
    };
    // A load balancer's probe gives up quickly: answer within a second whatever the database does.
    let ping = tokio::time::timeout(std::time::Duration::from_millis(900), state.store.ping())
        .await
        .unwrap_or_else(|_| {
            Err(tickethub_actors::ports::StoreError::Backend(
                "the database did not answer within 900 ms".into(),
            ))
        });
    // The supervision tree: the root answers and none of its children waits for a restart.
    let actors = if state.hub.tree_healthy().await {
        "ok"
    } else {
        "restarting"
    };
    match ping {
        Ok(()) if actors != "ok" => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "unavailable",
                database: state.store.backend(),
                bus,
                actors,
            }),
        ),
        Ok(()) => (
            StatusCode::OK,
            Json(Readiness {
                status: if bus == "disconnected" {
                    "degraded"
                } else {
                    "ok"
                },
                database: state.store.backend(),
                bus,
                actors,
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Readiness {
                    status: "unavailable",
                    database: "unreachable",
                    bus,
                    actors,
                }),
            )
        }
    }
}

/// Prometheus text format. Gauges that live in the database (outbox depth) are sampled here.
/// Prometheus metrics of this process.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "ops",
    responses(
        (status = 200, description = "The metrics, in the Prometheus text format.", body = String, content_type = "text/plain; version=0.0.4"),
    )
)]
async fn prometheus(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl axum::response::IntoResponse, super::error::ApiError> {
    if let Some(expected) = &state.metrics.token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        if !crate::secret::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Err(super::error::ApiError::unauthorized(
                "The metrics token is missing or wrong.",
            ));
        }
    }
    crate::telemetry::sample_memory();
    for channel in state.hub.channels() {
        if let Ok(depth) = state.store.outbox_depth(channel).await {
            metrics::gauge!("tickethub_outbox_depth", "channel" => channel.as_str())
                .set(depth as f64);
        }
    }
    if let Ok(held) = state.store.held_deliveries().await {
        for reason in ["quiet_hours", "maintenance", "batch"] {
            let n = held
                .iter()
                .find(|(r, _)| r == reason)
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("tickethub_outbox_held", "reason" => reason).set(n as f64);
        }
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::metrics().render(),
    ))
}
