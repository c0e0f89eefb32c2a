use super::*;

// ---------------------------------------------------------------------------------------
// APNs
// ---------------------------------------------------------------------------------------

/// What the APNs stand-in answers next, once a request has passed its checks: this status
/// with this `reason`.
#[derive(Clone, Debug)]
pub struct ApnsReply {
    pub status: u16,
    pub reason: &'static str,
}

impl ApnsReply {
    /// 410 `Unregistered`: the app is no longer on the device.
    pub fn unregistered() -> ApnsReply {
        ApnsReply {
            status: 410,
            reason: "Unregistered",
        }
    }

    /// 400 `BadDeviceToken`.
    pub fn bad_device_token() -> ApnsReply {
        ApnsReply {
            status: 400,
            reason: "BadDeviceToken",
        }
    }

    /// 403 `ExpiredProviderToken`: the request's token is refused from now on.
    pub fn expired_provider_token() -> ApnsReply {
        ApnsReply {
            status: 403,
            reason: "ExpiredProviderToken",
        }
    }

    /// 429 `TooManyRequests`.
    pub fn too_many_requests() -> ApnsReply {
        ApnsReply {
            status: 429,
            reason: "TooManyRequests",
        }
    }
}

/// One request the APNs stand-in received over HTTP/2.
#[derive(Clone, Debug)]
pub struct ApnsRequest {
    pub at: Instant,
    /// When it arrived, in Unix seconds.
    pub at_unix: i64,
    pub version: hyper::Version,
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: String,
    /// The provider token it carried.
    pub jwt: String,
    /// The token's `iat`, once verified.
    pub iat: Option<i64>,
    /// The status it was answered.
    pub status: u16,
    /// The `apns-id` it was answered, on success.
    pub apns_id: Option<String>,
}

impl ApnsRequest {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The APNs stand-in: `POST /3/device/{token}` over HTTP/2 over TLS, under the run's
/// certificate authority.
#[derive(Clone)]
pub struct Apns {
    pub addr: SocketAddr,
    inner: Arc<ApnsInner>,
}

pub(super) struct ApnsInner {
    key_file: PathBuf,
    key_id: String,
    team_id: String,
    topic: String,
    public_key: jsonwebtoken::DecodingKey,
    script: Mutex<VecDeque<ApnsReply>>,
    /// Tokens refused as expired.
    expired: Mutex<Vec<String>>,
    requests: Mutex<Vec<ApnsRequest>>,
    refusals: Mutex<Vec<String>>,
    http1_refused: AtomicUsize,
    arrived: Notify,
    _dir: tempfile::TempDir,
}

/// The first bytes of every HTTP/2 connection (RFC 9113 §3.4).
pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl Apns {
    /// Starts the stand-in and writes a fresh `.p8` key for the hub to sign with.
    pub async fn start() -> Apns {
        let (private_pem, public_pem) = ec_key();
        let dir = tempfile::tempdir().unwrap();
        let key_id = "ABC123DEFG".to_owned();
        let key_file = dir.path().join(format!("AuthKey_{key_id}.p8"));
        std::fs::write(&key_file, private_pem).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let apns = Apns {
            addr: listener.local_addr().unwrap(),
            inner: Arc::new(ApnsInner {
                key_file,
                key_id,
                team_id: "DEF123GHIJ".to_owned(),
                topic: "com.example.tickethub".to_owned(),
                public_key: jsonwebtoken::DecodingKey::from_ec_pem(public_pem.as_bytes()).unwrap(),
                script: Mutex::default(),
                expired: Mutex::default(),
                requests: Mutex::default(),
                refusals: Mutex::default(),
                http1_refused: AtomicUsize::new(0),
                arrived: Notify::new(),
                _dir: dir,
            }),
        };
        let server = apns.clone();
        // TLS under the run's authority, as Apple's servers speak it, offering HTTP/2 and
        // HTTP/1.1 (a client of the latter is then answered 505).
        let acceptor = tokio_rustls::TlsAcceptor::from(
            crate::harness::test_ca().server_config(&["h2", "http/1.1"]),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (server, acceptor) = (server.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        server.connection(tls).await;
                    }
                });
            }
        });
        apns
    }

    /// Serves one connection: HTTP/2 if it opens with the HTTP/2 preface, otherwise a 505.
    async fn connection<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut stream = BufReader::new(stream);
        let Ok(first) = stream.fill_buf().await else {
            return;
        };
        let n = first.len().min(PREFACE.len());
        if n == 0 || first[..n] != PREFACE[..n] {
            self.inner.http1_refused.fetch_add(1, Ordering::SeqCst);
            let text = "APNs speaks HTTP/2 only\n";
            let _ = stream
                .get_mut()
                .write_all(
                    format!(
                        "HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    )
                    .as_bytes(),
                )
                .await;
            let _ = stream.get_mut().shutdown().await;
            return;
        }
        let service = hyper::service::service_fn(move |req| {
            let apns = self.clone();
            async move { Ok::<_, Infallible>(apns.handle(req).await) }
        });
        let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    }

    /// Points a hub at the stand-in.
    pub fn configure(&self, c: &mut tickethub::ServeConfig) {
        c.channels.apns.apns_key = Some(self.inner.key_file.clone());
        c.channels.apns.apns_key_id = Some(self.inner.key_id.clone());
        c.channels.apns.apns_team_id = Some(self.inner.team_id.clone());
        c.channels.apns.apns_topic = Some(self.inner.topic.clone());
        c.channels.apns.apns_url = self.url();
    }

    /// `https://localhost:<port>`: the hub's `apns_url`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    pub fn team_id(&self) -> &str {
        &self.inner.team_id
    }

    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// Queues the next answers.
    pub fn script(&self, replies: impl IntoIterator<Item = ApnsReply>) {
        self.inner.script.lock().unwrap().extend(replies);
    }

    /// Every HTTP/2 request so far.
    pub fn requests(&self) -> Vec<ApnsRequest> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// The requests a check refused, and why.
    pub fn refusals(&self) -> Vec<String> {
        self.inner.refusals.lock().unwrap().clone()
    }

    /// How many connections were refused for not speaking HTTP/2.
    pub fn http1_refused(&self) -> usize {
        self.inner.http1_refused.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<ApnsRequest> {
        wait_until(
            "APNs requests",
            &self.inner.arrived,
            n,
            || self.inner.requests.lock().unwrap().len(),
            || self.refusals(),
        )
        .await;
        self.requests()
    }

    /// Verifies a provider token as APNs does: ES256 by the key `kid` names, the team as
    /// `iss`, an `iat` at most an hour old (older is `ExpiredProviderToken`).
    fn check_token(&self, jwt: &str) -> Result<i64, (u16, &'static str, String)> {
        let invalid = |why: String| (403, "InvalidProviderToken", why);
        let header =
            jsonwebtoken::decode_header(jwt).map_err(|e| invalid(format!("header: {e}")))?;
        if header.alg != jsonwebtoken::Algorithm::ES256 {
            return Err(invalid(format!("alg {:?}, not ES256", header.alg)));
        }
        if header.kid.as_deref() != Some(self.key_id()) {
            return Err(invalid(format!("kid {:?}", header.kid)));
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_issuer(&[self.team_id()]);
        validation.set_required_spec_claims(&["iss"]);
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Value>(jwt, &self.inner.public_key, &validation)
            .map_err(|e| invalid(format!("token: {e}")))?
            .claims;
        let iat = claims["iat"]
            .as_i64()
            .ok_or_else(|| invalid("no iat".into()))?;
        if self.inner.expired.lock().unwrap().iter().any(|t| t == jwt) || iat < now() - 3600 {
            return Err((403, "ExpiredProviderToken", format!("iat {iat}")));
        }
        if iat > now() + 60 {
            return Err(invalid(format!("iat {iat} is in the future")));
        }
        Ok(iat)
    }

    /// Everything but the token: the path, the `apns-*` headers, the payload.
    fn check_request(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &Value,
        raw: &str,
    ) -> Result<(), (u16, &'static str, String)> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if *method != Method::POST {
            return Err((405, "MethodNotAllowed", method.to_string()));
        }
        let Some(token) = path.strip_prefix("/3/device/") else {
            return Err((404, "BadPath", path.to_owned()));
        };
        if token.len() < 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((400, "BadDeviceToken", token.to_owned()));
        }
        match header("apns-topic") {
            None => return Err((400, "MissingTopic", String::new())),
            Some(t) if t != self.topic() => return Err((400, "BadTopic", t.to_owned())),
            Some(_) => {}
        }
        match header("apns-push-type") {
            Some("alert") => {}
            other => return Err((400, "InvalidPushType", format!("{other:?}"))),
        }
        if !matches!(header("apns-priority"), None | Some("5" | "10")) {
            return Err((400, "BadPriority", format!("{:?}", header("apns-priority"))));
        }
        if let Some(e) = header("apns-expiration") {
            if e.parse::<i64>().is_err() {
                return Err((400, "BadExpirationDate", e.to_owned()));
            }
        }
        if raw.len() > 4096 {
            return Err((413, "PayloadTooLarge", raw.len().to_string()));
        }
        if raw.trim().is_empty() {
            return Err((400, "PayloadEmpty", String::new()));
        }
        if !body["aps"].is_object() || !body["aps"]["alert"].is_object() {
            return Err((400, "BadPayload", "an alert needs aps.alert".into()));
        }
        Ok(())
    }

    async fn handle(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let raw = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
        let jwt = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bearer "))
            .unwrap_or_default()
            .to_owned();
        let path = parts.uri.path().to_owned();
        let mut record = ApnsRequest {
            at: Instant::now(),
            at_unix: now(),
            version: parts.version,
            method: parts.method.clone(),
            path: path.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
            raw: raw.clone(),
            jwt: jwt.clone(),
            iat: None,
            status: 200,
            apns_id: None,
        };
        let checked = if jwt.is_empty() {
            Err((403, "MissingProviderToken", String::new()))
        } else {
            self.check_token(&jwt).and_then(|iat| {
                record.iat = Some(iat);
                self.check_request(&parts.method, &path, &parts.headers, &body, &raw)
            })
        };
        let response = match checked {
            Err((status, reason, why)) => {
                self.inner
                    .refusals
                    .lock()
                    .unwrap()
                    .push(format!("{status} {reason}: {why}"));
                record.status = status;
                apns_error(status, reason)
            }
            Ok(()) => match self.inner.script.lock().unwrap().pop_front() {
                None => {
                    let id = uuid::Uuid::new_v4().to_string().to_uppercase();
                    record.apns_id = Some(id.clone());
                    hyper::Response::builder()
                        .status(200)
                        .header("apns-id", id)
                        .body(Full::new(Bytes::new()))
                        .unwrap()
                }
                Some(reply) => {
                    if reply.reason == "ExpiredProviderToken" {
                        self.inner.expired.lock().unwrap().push(jwt.clone());
                    }
                    record.status = reply.status;
                    apns_error(reply.status, reply.reason)
                }
            },
        };
        self.inner.requests.lock().unwrap().push(record);
        self.inner.arrived.notify_waiters();
        response
    }
}

/// An error answer in Apple's format (`timestamp` with 410 only).
pub(super) fn apns_error(status: u16, reason: &str) -> hyper::Response<Full<Bytes>> {
    let body = if status == 410 {
        json!({"reason": reason, "timestamp": chrono::Utc::now().timestamp_millis()})
    } else {
        json!({ "reason": reason })
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("apns-id", uuid::Uuid::new_v4().to_string().to_uppercase())
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
