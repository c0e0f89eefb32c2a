//! A gate in front of the Web Push service (web-push-testing), checking what the browsers'
//! push services check of a request's VAPID token (RFC 8292) and web-push-testing does not:
//! it verifies with the `k` key it came with, its `aud` is the origin the request went to (as
//! its `Host` names it: a proxy between the hub and the gate is transparent), its
//! `exp` is ahead but no more than 24 hours ahead (Mozilla's and Google's limit), and its `sub`
//! is a `mailto:` or `https:` URL (Apple's service refuses a token without one). A request that
//! fails is answered 403 with the reason, as those services do; one that passes is forwarded.

use super::*;

use base64::Engine as _;

/// The gate, on a random port, forwarding to the push service on `upstream`.
pub struct VapidGate {
    pub port: u16,
    refusals: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct Gate {
    upstream: String,
    http: reqwest::Client,
    refusals: Arc<Mutex<Vec<String>>>,
}

impl VapidGate {
    pub async fn start(upstream: u16) -> VapidGate {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let refusals: Arc<Mutex<Vec<String>>> = Arc::default();
        let gate = Gate {
            upstream: format!("http://127.0.0.1:{upstream}"),
            http: reqwest::Client::new(),
            refusals: refusals.clone(),
        };
        let app = Router::new().fallback(any(pass)).with_state(gate);
        tokio::spawn(async move { axum::serve(listener, app).await });
        VapidGate { port, refusals }
    }

    /// Why each refused request was refused.
    pub fn refusals(&self) -> Vec<String> {
        self.refusals.lock().unwrap().clone()
    }
}

/// Checks a push's `Authorization: vapid t=…, k=…` as the push services do.
fn check(headers: &HeaderMap) -> Result<(), String> {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Host header")?;
    let origin = format!("http://{host}");
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization header")?;
    let (token, key) = value
        .strip_prefix("vapid t=")
        .and_then(|rest| rest.split_once(", k="))
        .ok_or_else(|| format!("not a VAPID authorization: {value:?}"))?;
    let point = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key)
        .map_err(|_| "k is not base64url")?;
    if point.len() != 65 || point[0] != 4 {
        return Err("k is not an uncompressed P-256 point".into());
    }
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let decoding =
        jsonwebtoken::DecodingKey::from_ec_components(&b64(&point[1..33]), &b64(&point[33..]))
            .map_err(|e| format!("k: {e}"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[origin]);
    validation.set_required_spec_claims(&["exp", "aud"]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .map_err(|e| format!("the token: {e}"))?
        .claims;
    let ahead = claims["exp"].as_i64().unwrap_or(0) - chrono::Utc::now().timestamp();
    if ahead > 24 * 3600 {
        return Err(format!("exp is {ahead} s ahead, past 24 hours"));
    }
    match claims["sub"].as_str() {
        Some(sub) if sub.starts_with("mailto:") || sub.starts_with("https://") => Ok(()),
        sub => Err(format!("sub {sub:?} is not a mailto: or https: URL")),
    }
}

async fn pass(
    State(gate): State<Gate>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Only the pushes carry a token; the test's own calls (subscribe, read) go through.
    if uri.path().starts_with("/notify/") {
        if let Err(why) = check(&headers) {
            gate.refusals.lock().unwrap().push(why.clone());
            return (StatusCode::FORBIDDEN, why).into_response();
        }
    }
    let mut forwarded = gate
        .http
        .request(method, format!("{}{uri}", gate.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            forwarded = forwarded.header(name, value);
        }
    }
    match forwarded.send().await {
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = (status, body).into_response();
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
