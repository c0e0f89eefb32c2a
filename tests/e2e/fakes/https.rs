//! An HTTPS receiver (HTTP/2 or HTTP/1.1 over TLS, under the run's certificate authority):
//! the hub's outbound HTTPS, verified as it is against a provider.

use super::*;

use std::convert::Infallible;

use http_body_util::BodyExt;

/// A receiver on `https://localhost:<port>`, answering 200 to every request and recording it.
#[derive(Clone)]
pub struct Https {
    pub port: u16,
    recorder: Recorder,
}

impl Https {
    /// Under the run's authority, which the hubs trust.
    pub async fn start() -> Https {
        Self::start_under(crate::harness::test_ca()).await
    }

    /// Under an authority nobody trusts.
    pub async fn start_untrusted() -> Https {
        Self::start_under(&crate::harness::TestCa::new()).await
    }

    async fn start_under(ca: &crate::harness::TestCa) -> Https {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&["h2", "http/1.1"]));
        let https = Https {
            port: listener.local_addr().unwrap().port(),
            recorder: Recorder::default(),
        };
        let server = https.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, server) = (acceptor.clone(), server.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let service = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.record(req).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(tls);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(io, service)
                        .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    }
                });
            }
        });
        https
    }

    async fn record(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
        let (parts, body) = req.into_parts();
        let raw = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        self.recorder.record(Request {
            at: std::time::Instant::now(),
            method: parts.method,
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body: serde_json::from_str(&raw).unwrap_or(Value::Null),
            raw,
        });
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
    }

    /// `https://localhost:<port>`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.recorder.requests()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Request> {
        self.recorder.wait_for(n).await
    }
}
