use super::*;

/// A WebSocket client.
pub struct Ws {
    pub inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `Sec-WebSocket-Protocol` the hub selected.
    pub protocol: Option<String>,
    /// The notifications replayed when the socket connected.
    pub replayed: Vec<Value>,
    /// The `replay_complete` frame.
    pub replay_complete: Value,
}

/// How a socket ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this code.
    Closed(u16),
    /// The TCP connection ended without a close frame.
    Dropped,
}

impl Ws {
    /// Connects to a URL with no extra headers.
    pub async fn connect(url: &str) -> Ws {
        Self::connect_with(url, &[])
            .await
            .expect("websocket handshake")
    }

    /// Connects with extra headers; an HTTP refusal is the error.
    pub async fn connect_with(
        url: &str,
        headers: &[(&'static str, String)],
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(*k, v.parse().unwrap());
        }
        let (inner, resp) = tokio_tungstenite::connect_async(req).await?;
        let protocol = resp
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        Ok(Ws {
            inner,
            protocol,
            replayed: Vec::new(),
            replay_complete: Value::Null,
        })
    }

    /// Reads `connection_established`, then the replay up to `replay_complete` (keeping the
    /// replayed notifications and any `replay_truncated`), and returns the greeting.
    pub async fn established(&mut self) -> Value {
        let hello = self.next_json().await;
        assert_eq!(hello["type"], "connection_established", "{hello}");
        loop {
            let v = self.next_json().await;
            match v["type"].as_str() {
                Some("notification") => {
                    assert_eq!(v["replayed"], true, "{v}");
                    self.replayed.push(v);
                }
                Some("replay_truncated") => self.replayed.push(v),
                Some("replay_complete") => {
                    assert_eq!(
                        v["count"].as_u64().unwrap() as usize,
                        self.replayed
                            .iter()
                            .filter(|n| n["type"] == "notification")
                            .count()
                    );
                    self.replay_complete = v;
                    return hello;
                }
                _ => panic!("unexpected frame during replay: {v}"),
            }
        }
    }

    /// The next text frame as JSON, skipping protocol pings and pongs.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(patience(), self.inner.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("frame ok");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Sends a JSON text frame.
    pub async fn send_json(&mut self, v: Value) {
        self.inner.send(Message::text(v.to_string())).await.unwrap();
    }

    /// Sends a raw message.
    pub async fn send(&mut self, m: Message) {
        self.inner.send(m).await.unwrap();
    }

    /// Reads until the socket ends, and says how.
    pub async fn ended(&mut self) -> Ended {
        loop {
            let msg = tokio::time::timeout(patience(), self.inner.next())
                .await
                .expect("the socket ends in time");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Ended::Closed(u16::from(frame.code))
                }
                Some(Ok(Message::Close(None))) => return Ended::Closed(1005),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ended::Dropped,
            }
        }
    }

    /// Reads until a close frame arrives and returns its code; fails on anything else.
    pub async fn close_code(&mut self) -> u16 {
        match self.ended().await {
            Ended::Closed(code) => code,
            Ended::Dropped => panic!("socket dropped without a close frame"),
        }
    }

    /// The next `n` notification frames, failing on any other frame but pongs and inbox
    /// changes.
    pub async fn notifications(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let v = self.next_json().await;
            match v["type"].as_str() {
                Some("notification") => out.push(v),
                // A node that healed a gap on the bus tells its sockets the inbox changes of
                // the while again (a state they may have heard: hearing it twice is harmless).
                Some("pong" | "notification_updated") => continue,
                _ => panic!("expected a notification, got {v}"),
            }
        }
        out
    }

    /// The next frame of a given type, skipping notifications and pongs.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let v = self.next_json().await;
            if v["type"] == kind {
                return v;
            }
            assert!(
                v["type"] == "notification"
                    || v["type"] == "pong"
                    || v["type"] == "notification_updated",
                "waiting for {kind}, got {v}"
            );
        }
    }

    /// Sends an application ping and waits for its pong.
    pub async fn roundtrip(&mut self) {
        self.send_json(serde_json::json!({"type": "ping", "timestamp": 1}))
            .await;
        loop {
            let v = self.next_json().await;
            if v["type"] == "pong" {
                assert_eq!(v["timestamp"], 1);
                return;
            }
        }
    }
}

/// A scrape of `/metrics` (the Prometheus text format).
pub struct Metrics(pub String);

impl Metrics {
    /// Scrapes `/metrics` at `url` (a hub's, or a hub process's); fails unless it answers 200
    /// in the Prometheus text format.
    pub async fn scrape(http: &reqwest::Client, url: &str) -> Metrics {
        let res = http.get(url).send().await.expect("/metrics answers");
        assert_eq!(res.status(), 200, "{url}");
        let kind = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(kind.starts_with("text/plain"), "{url}: {kind}");
        Metrics(res.text().await.unwrap())
    }

    /// The sum of every sample of `name` whose labels contain each of `labels`
    /// (`"channel=\"email\""`, say); 0 if none.
    pub fn value(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let (series, value) = rest.rsplit_once(' ')?;
                if !(series.is_empty() || series.starts_with('{')) {
                    return None;
                }
                labels
                    .iter()
                    .all(|want| series.contains(want))
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }

    /// The sum of every sample of `name`.
    pub fn total(&self, name: &str) -> f64 {
        self.value(name, &[])
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
