//! The REST side: the user's inbox commands (with the provider's tokens), and sends with an
//! API key and an `Idempotency-Key`.

use serde::Serialize;
use serde_json::Value;

use crate::{Client, Error, TokenReason};

/// Turns an answer into its JSON, or the hub's `detail` as an [`Error::Http`].
async fn answer(res: reqwest::Response) -> Result<Value, Error> {
    let status = res.status().as_u16();
    let text = res.text().await?;
    let body: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if !(200..300).contains(&status) {
        let detail = body["detail"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string());
        return Err(Error::Http { status, detail });
    }
    Ok(body)
}

impl Client {
    /// Any REST call with the provider's token; a 401 asks for a new token (`Refused`) and
    /// tries once more, unless the provider gives the same one again.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let call = |token: String| {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(token);
            if let Some(body) = body {
                req = req.json(body);
            }
            req.send()
        };
        let first = self.token(TokenReason::Connect).await?;
        let res = call(first.clone()).await?;
        if res.status() != reqwest::StatusCode::UNAUTHORIZED {
            return answer(res).await;
        }
        let again = self.token(TokenReason::Refused).await?;
        if again == first {
            return Err(Error::TokenRefused);
        }
        answer(call(again).await?).await
    }

    /// Marks a notification read (every connection of the user hears it).
    pub async fn mark_read(&self, id: i64) -> Result<Value, Error> {
        let path = format!("/api/notifications/{id}/mark_as_read/");
        self.request(
            reqwest::Method::POST,
            &path,
            Some(&Value::Object(Default::default())),
        )
        .await
    }

    /// Marks a notification unread.
    pub async fn mark_unread(&self, id: i64) -> Result<Value, Error> {
        let path = format!("/api/notifications/{id}/mark_as_unread/");
        self.request(
            reqwest::Method::POST,
            &path,
            Some(&Value::Object(Default::default())),
        )
        .await
    }

    /// Marks every notification read.
    pub async fn mark_all_read(&self) -> Result<Value, Error> {
        self.request(
            reqwest::Method::POST,
            "/api/notifications/mark_all_as_read/",
            Some(&Value::Object(Default::default())),
        )
        .await
    }

    /// Deletes a notification.
    pub async fn delete(&self, id: i64) -> Result<(), Error> {
        let path = format!("/api/notifications/{id}/");
        self.request(reqwest::Method::DELETE, &path, None).await?;
        Ok(())
    }

    /// A page of the inbox (`GET /api/notifications/?…`): `{count, next, previous, results}`.
    pub async fn list(&self, query: &str) -> Result<Value, Error> {
        let path = if query.is_empty() {
            "/api/notifications/".to_owned()
        } else {
            format!("/api/notifications/?{}", query.trim_start_matches('?'))
        };
        self.request(reqwest::Method::GET, &path, None).await
    }
}

/// A notification to send (`POST /api/notifications/send/`): to `user_ids` (or, with
/// [`NewNotification::extra`], to whom the hub's API takes: `project`, `role`, `oncall` …).
#[derive(Clone, Debug, Default, Serialize)]
pub struct NewNotification {
    /// The recipients' ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<i64>,
    /// The type (`system`, `page`, …).
    pub notification_type: String,
    /// The title.
    pub title: String,
    /// The message.
    pub message: String,
    /// Other fields of the hub's send (`channels`, `data`, `send_at`, …).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// Sends notifications with an API key (scope `notifications:send`).
#[derive(Clone, Debug)]
pub struct Sender {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Sender {
    /// A sender to the hub at `base` with an API key.
    pub fn new(base: &str, api_key: &str) -> Sender {
        Sender {
            base: base.trim_end_matches('/').to_owned(),
            key: api_key.to_owned(),
            http: crate::http_client(),
        }
    }

    /// Sends one notification; the hub's answer (201: what was sent; 202: scheduled). A
    /// retry with the same `idempotency_key` (after a timeout, say) gets the first answer and
    /// notifies nobody again; the key with another request is an error (422).
    pub async fn send(
        &self,
        notification: &NewNotification,
        idempotency_key: &str,
    ) -> Result<Value, Error> {
        let res = self
            .http
            .post(format!("{}/api/notifications/send/", self.base))
            .header("authorization", format!("Api-Key {}", self.key))
            .header("idempotency-key", idempotency_key)
            .json(notification)
            .send()
            .await?;
        answer(res).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that keeps its connections alive, answers `{}` to every request and counts the
    /// connections it accepts.
    async fn keep_alive_server() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = tcp.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = request_end(&buf) {
                            buf.drain(..end);
                            let answer = "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                            if tcp.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (base, accepted)
    }

    /// Where the first whole request in `buf` ends (its head and a `content-length` body).
    fn request_end(buf: &[u8]) -> Option<usize> {
        let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
        let length = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |n| n.trim().parse::<usize>().unwrap_or(0));
        (buf.len() >= head + length).then_some(head + length)
    }

    /// A connection idle for longer than the client keeps one is not used again: the hub
    /// closes its idle connections after 10 s (by default), and a call sent on one as it is
    /// closed would fail with no answer.
    #[tokio::test]
    async fn a_connection_idle_past_the_pools_limit_is_not_used_again() {
        let (base, accepted) = keep_alive_server().await;
        let sender = super::Sender::new(&base, "key");
        let note = super::NewNotification {
            user_ids: vec![1],
            notification_type: "system".into(),
            title: "t".into(),
            message: "m".into(),
            ..Default::default()
        };
        sender.send(&note, "k1").await.unwrap();
        sender.send(&note, "k2").await.unwrap();
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "a busy connection is kept"
        );
        // The pool's limit is the idle time under test: nothing else can be awaited here.
        tokio::time::sleep(Duration::from_millis(5_500)).await;
        sender.send(&note, "k3").await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "an idle one is not");
    }
}
