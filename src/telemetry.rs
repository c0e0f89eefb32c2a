//! Logging: `tracing` to stderr, as text or JSON lines. Nothing logs a token or a password.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. The filter comes from `RUST_LOG` (default `info`, with
/// ractor's per-actor `Actor` spans off: one would live, and be entered on every message, for
/// each connected user, and ractor logs nothing above `debug`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info,ractor=warn"));
    // Colour only on a terminal: a file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The connection metrics every socket and event stream moves as it opens and closes, looked
/// up in the registry once rather than per connection (the recorder is installed before the
/// first connection).
pub(crate) struct Connections {
    /// `tickethub_connections_open`.
    pub open: metrics::Gauge,
    /// `tickethub_connections_total`.
    pub total: metrics::Counter,
    /// `tickethub_event_streams_open`.
    pub streams_open: metrics::Gauge,
}

/// See [`Connections`].
pub(crate) static CONNECTIONS: std::sync::LazyLock<Connections> =
    std::sync::LazyLock::new(|| Connections {
        open: metrics::gauge!("tickethub_connections_open"),
        total: metrics::counter!("tickethub_connections_total"),
        streams_open: metrics::gauge!("tickethub_event_streams_open"),
    });

/// The process's Prometheus recorder, installed once (every hub in the process shares it).
pub fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )
            .expect("bucket list is not empty");
        match builder.install_recorder() {
            Ok(handle) => {
                describe();
                handle
            }
            // Another recorder is installed (an embedding program's): render an empty registry.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// Names, units and help texts of the metrics the hub records.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "tickethub_connections_open",
        "WebSocket connections open now."
    );
    describe_counter!(
        "tickethub_connections_total",
        "WebSocket connections accepted."
    );
    describe_counter!(
        "tickethub_frames_in_total",
        "WebSocket frames received from clients."
    );
    describe_counter!(
        "tickethub_frames_out_total",
        "WebSocket text frames written to clients."
    );
    describe_counter!(
        "tickethub_notifications_committed_total",
        "Notifications committed."
    );
    describe_counter!(
        "tickethub_notifications_delivered_total",
        "Notifications written to sockets."
    );
    describe_histogram!(
        "tickethub_delivery_latency_seconds",
        Unit::Seconds,
        "Time from a notification's commit to its write on a socket."
    );
    describe_counter!("tickethub_replays_total", "Backlog replays on connect.");
    describe_counter!(
        "tickethub_replayed_notifications_total",
        "Notifications sent by replays."
    );
    describe_counter!(
        "tickethub_slow_consumer_closes_total",
        "Sockets closed as slow consumers (4008)."
    );
    describe_counter!(
        "tickethub_actor_failures_total",
        "Actors that failed and were removed or restarted, by kind."
    );
    describe_gauge!(
        "tickethub_outbox_depth",
        "Deliveries not yet final, by channel."
    );
    describe_counter!(
        "tickethub_outbox_attempts_total",
        "Delivery attempts by channel and result (sent, failed, retried, suppressed)."
    );
    describe_counter!(
        "tickethub_notifications_read_total",
        "Notifications marked read (once each, until marked unread)."
    );
    describe_counter!(
        "tickethub_http_requests_total",
        "HTTP requests by method, route and status."
    );
    describe_histogram!(
        "tickethub_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route."
    );
}

/// Samples the allocator's figures into gauges: what the hub's live objects (and SQLite's
/// caches, which allocate through the same allocator) hold, and what the allocator keeps from
/// the system. The first growing with the second flat is a leak; the second growing alone is
/// memory the allocator has not returned yet.
pub fn sample_memory() {
    use tikv_jemalloc_ctl::{epoch, stats};
    if epoch::advance().is_err() {
        return;
    }
    if let (Ok(allocated), Ok(resident)) = (stats::allocated::read(), stats::resident::read()) {
        metrics::gauge!("tickethub_memory_allocated_bytes").set(allocated as f64);
        metrics::gauge!("tickethub_memory_resident_bytes").set(resident as f64);
    }
}
