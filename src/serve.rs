//! The HTTP server loop: accepts connections up to a cap, reads each request's head within a
//! deadline, and drains in-flight requests at shutdown.
//!
//! `axum::serve` gives hyper no timer, so no header-read timeout can apply there, and it
//! accepts without bound: a client sending one header byte every few seconds would hold its
//! connection, and enough of them every file descriptor of the process. This loop runs hyper
//! itself, with a timer and a semaphore of connection slots. A WebSocket keeps its slot for as
//! long as it is open: the slot rides in the request's extensions into the session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A connection's place among the open connections, held by the connection and, once it is
/// upgraded, by its socket's session.
#[derive(Clone, Debug)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// How the server treats connections.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Connections open at once (HTTP and WebSocket); the next waits in the accept backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's head, from the connection's start or the end of
    /// its previous request (so it is also the keep-alive idle time).
    pub header_timeout: Duration,
}

/// Serves `router` on `listener` until `stop` is cancelled, then waits up to `drain` for the
/// requests in flight to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    stop: CancellationToken,
    drain: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = tokio_util::task::TaskTracker::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    loop {
        // A slot first: at the cap, connections wait in the kernel's backlog, not in memory.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
            () = stop.cancelled() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was taken: wait a
                    // little rather than spin.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        // Frames are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        let slot = ConnectionSlot(Arc::new(slot));
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(slot.clone());
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = builder
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let stop = stop.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                () = stop.cancelled() => {
                    // Finish the request in flight, if any, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("some requests did not finish in time");
    }
}

/// The most connections a process can hold: its open-file limit, less a reserve for the
/// database, Redis, logs and outbound deliveries.
pub fn default_max_connections() -> usize {
    const RESERVE: u64 = 512;
    #[cfg(target_os = "linux")]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if let Some(current) = limit.current {
            return current.saturating_sub(RESERVE).max(64) as usize;
        }
    }
    65_536
}

/// The address a listener binds: with a deep accept backlog, so that a reconnect storm
/// queues instead of being dropped and retried a second later.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
