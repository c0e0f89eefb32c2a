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
