//! The write half of a socket, which can hold frames back to write them together.
//!
//! fastwebsockets writes each frame with its own system call. A replay, or a burst of
//! notifications queued for one socket, is many frames: while the session holds the [`Cork`],
//! the frames collect in a buffer and go out in one write at [`flush`](AsyncWrite::poll_flush).
//! Uncorked, writes go straight through, as before. The buffer is allocated for a batch and
//! released after it, so an idle socket holds none.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

/// Holds a [`Batched`] writer's frames back while it is on.
#[derive(Clone, Debug, Default)]
pub struct Cork(Arc<AtomicBool>);

impl Cork {
    /// Starts holding frames back; the next flush writes them.
    pub fn hold(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Stops holding frames back: writes go straight through again. What is held is written
    /// by the next flush.
    pub fn release(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    fn held(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A writer whose writes collect while its [`Cork`] is held.
#[derive(Debug)]
pub struct Batched<W> {
    inner: W,
    cork: Cork,
    buf: Vec<u8>,
    /// How much of `buf` is written already.
    written: usize,
}

impl<W> Batched<W> {
    /// Wraps `inner`; `cork` controls it.
    pub fn new(inner: W, cork: Cork) -> Self {
        Batched {
            inner,
            cork,
            buf: Vec::new(),
            written: 0,
        }
    }
}

impl<W: AsyncWrite + Unpin> Batched<W> {
    /// Writes what is held, then releases the buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.buf.is_empty() {
            // The common case on the write path: nothing held.
            return Poll::Ready(Ok(()));
        }
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Batched<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.cork.held() {
            this.buf.extend_from_slice(data);
            return Poll::Ready(Ok(data.len()));
        }
        // Nothing may overtake what is held.
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.cork.held() {
            let mut n = 0;
            for b in bufs {
                this.buf.extend_from_slice(b);
                n += b.len();
            }
            return Poll::Ready(Ok(n));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Held writes reach the peer only at the flush, in one piece and in order; unheld writes
    /// go straight through.
    #[tokio::test]
    async fn held_writes_go_out_together_at_the_flush() {
        let (near, mut far) = tokio::io::duplex(1 << 16);
        let cork = Cork::default();
        let mut w = Batched::new(near, cork.clone());
        w.write_all(b"a").await.unwrap();
        let mut got = [0u8; 16];
        assert_eq!(far.read(&mut got).await.unwrap(), 1, "unheld: at once");

        cork.hold();
        w.write_all(b"bc").await.unwrap();
        let n = w
            .write_vectored(&[IoSlice::new(b"de"), IoSlice::new(b"f")])
            .await
            .unwrap();
        assert_eq!(n, 3, "held: every slice is taken");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), far.read(&mut got))
                .await
                .is_err(),
            "held: nothing is written before the flush"
        );
        cork.release();
        w.flush().await.unwrap();
        let n = far.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"bcdef");
        assert_eq!(w.buf.capacity(), 0, "the buffer is released");

        // Held bytes are not overtaken by a later unheld write.
        cork.hold();
        w.write_all(b"g").await.unwrap();
        cork.release();
        w.write_all(b"h").await.unwrap();
        w.flush().await.unwrap();
        let mut all = Vec::new();
        while all.len() < 2 {
            let n = far.read(&mut got).await.unwrap();
            all.extend_from_slice(&got[..n]);
        }
        assert_eq!(all, b"gh");
    }

    /// A peer that reads slowly gets every held byte: the flush waits for room.
    #[tokio::test]
    async fn a_batch_larger_than_the_pipe_is_written_whole() {
        let (near, mut far) = tokio::io::duplex(64);
        let cork = Cork::default();
        let mut w = Batched::new(near, cork.clone());
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        cork.hold();
        w.write_all(&data).await.unwrap();
        cork.release();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap();
            got
        });
        w.flush().await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), data);
    }
}
