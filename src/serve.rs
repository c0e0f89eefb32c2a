//! The HTTP server loop: accepts connections up to a cap, reads each request's head within a
//! deadline, and drains in-flight requests at shutdown.
//!
//! `axum::serve` gives hyper no timer, so no header-read timeout can apply there, and it
//! accepts without bound: a client sending one header byte every few seconds would hold its
//! connection, and enough of them every file descriptor of the process. This loop runs hyper
//! itself, with a timer and a semaphore of connection slots. A WebSocket keeps its slot for as
//! long as it is open: the slot rides in the request's extensions into the session.
//!
//! A user's socket opens with one write: its handshake's `101 Switching Protocols` is held
//! back (in [`Conn`]) until the socket's first frame, its greeting or the close that refuses
//! it, and both go out in one system call and one segment, which wakes the client once.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A connection's place among the open connections, held by the connection and, once it is
/// upgraded, by its socket's session.
#[derive(Clone, Debug)]
pub struct ConnectionSlot {
    _permit: Arc<OwnedSemaphorePermit>,
    head: Arc<HoldHead>,
}

impl ConnectionSlot {
    /// Holds the response written next (a handshake's `101`) until the connection's next
    /// write after it, or its shutdown: only for a socket that always writes a first frame.
    pub fn hold_head(&self) {
        self.head.0.store(true, Ordering::Relaxed);
    }
}

/// Whether the next response's head is to be held (see [`ConnectionSlot::hold_head`]).
#[derive(Debug, Default)]
struct HoldHead(AtomicBool);

impl HoldHead {
    /// Whether it was asked for, which it then no longer is (a load on every write, a swap
    /// only once asked).
    fn take(&self) -> bool {
        self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::Relaxed)
    }
}

/// A connection's stream, which can hold a response's head back and send it with the next
/// write.
struct Conn<T = TcpStream> {
    tcp: T,
    head: Arc<HoldHead>,
    /// The held head's bytes not yet sent.
    held: Vec<u8>,
    sent: usize,
    state: Holding,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holding {
    /// Writes go to the socket.
    No,
    /// The head is being written (into `held`).
    Head,
    /// The head was written and flushed: it goes out with the next write.
    Flushed,
}

impl<T: AsyncWrite + Unpin> Conn<T> {
    fn new(tcp: T, head: Arc<HoldHead>) -> Self {
        Self {
            tcp,
            head,
            held: Vec::new(),
            sent: 0,
            state: Holding::No,
        }
    }

    /// Sends what is held, with as much of `bufs` as goes in the same call; `Ok(n)` counts
    /// the bytes of `bufs` sent.
    fn poll_release(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        while self.sent < self.held.len() {
            let mut slices = Vec::with_capacity(bufs.len() + 1);
            slices.push(IoSlice::new(&self.held[self.sent..]));
            slices.extend(bufs.iter().map(|b| IoSlice::new(b)));
            let n = ready!(Pin::new(&mut self.tcp).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            let rest = self.held.len() - self.sent;
            if n >= rest {
                self.held = Vec::new();
                self.sent = 0;
                self.state = Holding::No;
                if n > rest || bufs.iter().all(|b| b.is_empty()) {
                    return Poll::Ready(Ok(n - rest));
                }
                break;
            }
            self.sent += n;
        }
        self.held = Vec::new();
        self.sent = 0;
        self.state = Holding::No;
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Conn<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Conn<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match this.state {
            Holding::No if !this.head.take() => {
                Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
            }
            Holding::No | Holding::Head => {
                this.state = Holding::Head;
                let mut n = 0;
                for b in bufs {
                    this.held.extend_from_slice(b);
                    n += b.len();
                }
                Poll::Ready(Ok(n))
            }
            Holding::Flushed => this.poll_release(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match this.state {
            Holding::Head => {
                this.state = Holding::Flushed;
                Poll::Ready(Ok(()))
            }
            // Flushed twice with nothing written between: what is held goes now.
            Holding::Flushed => {
                ready!(this.poll_release(cx, &[]))?;
                Pin::new(&mut this.tcp).poll_flush(cx)
            }
            Holding::No => Pin::new(&mut this.tcp).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.state != Holding::No {
            ready!(this.poll_release(cx, &[]))?;
        }
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

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
        let head = Arc::new(HoldHead::default());
        let slot = ConnectionSlot {
            _permit: Arc::new(slot),
            head: head.clone(),
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(slot.clone());
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = builder
            .serve_connection(TokioIo::new(Conn::new(tcp, head)), service)
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

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A stream that records each write call's bytes and takes at most `per_call` bytes a call.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<Vec<u8>>,
        per_call: Option<usize>,
        shut: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let mut call: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            call.truncate(self.per_call.unwrap_or(usize::MAX));
            let n = call.len();
            self.calls.push(call);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
    const FRAME: &[u8] = b"\x81\x05hello";

    fn conn(per_call: Option<usize>, hold: bool) -> Conn<Recorder> {
        let head = Arc::new(HoldHead::default());
        head.0.store(hold, Ordering::Relaxed);
        Conn::new(
            Recorder {
                per_call,
                ..Default::default()
            },
            head,
        )
    }

    /// Written as hyper writes a response (the head, then a flush) and then as a socket writes
    /// its first frame.
    async fn open(conn: &mut Conn<Recorder>) {
        conn.write_all(HEAD).await.unwrap();
        conn.flush().await.unwrap();
        conn.write_all(FRAME).await.unwrap();
        conn.flush().await.unwrap();
    }

    #[tokio::test]
    async fn a_held_head_goes_out_with_the_first_frame_in_one_write() {
        let mut held = conn(None, true);
        open(&mut held).await;
        assert_eq!(held.tcp.calls, [[HEAD, FRAME].concat()]);
        // Held once: the next response and frames are written as they come.
        held.write_all(FRAME).await.unwrap();
        assert_eq!(held.tcp.calls.len(), 2);

        let mut not_held = conn(None, false);
        open(&mut not_held).await;
        assert_eq!(not_held.tcp.calls, [HEAD, FRAME]);
    }

    #[tokio::test]
    async fn a_held_head_sent_a_few_bytes_at_a_time_comes_out_whole_and_in_order() {
        let mut held = conn(Some(7), true);
        open(&mut held).await;
        assert!(held.tcp.calls.iter().all(|c| c.len() <= 7));
        assert_eq!(held.tcp.calls.concat(), [HEAD, FRAME].concat());
    }

    #[tokio::test]
    async fn a_held_head_goes_out_on_a_second_flush_or_the_shutdown() {
        let mut flushed = conn(None, true);
        flushed.write_all(HEAD).await.unwrap();
        flushed.flush().await.unwrap();
        assert!(flushed.tcp.calls.is_empty(), "held after hyper's flush");
        flushed.flush().await.unwrap();
        assert_eq!(flushed.tcp.calls, [HEAD]);

        let mut shut = conn(None, true);
        shut.write_all(HEAD).await.unwrap();
        shut.flush().await.unwrap();
        shut.shutdown().await.unwrap();
        assert_eq!(shut.tcp.calls, [HEAD]);
        assert!(shut.tcp.shut);
    }
}
