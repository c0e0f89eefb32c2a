//! Event webhooks: the hub's events posted to the URLs admins subscribe at run time
//! (`/api/admin/webhooks/`), signed per Standard Webhooks.
//!
//! An event is queued in its own transaction, one row per subscription that hears it (see
//! `src/store/webhooks.rs`), so none is lost to a crash. Every node's poster claims due rows
//! with a lease and posts `{"type", "timestamp", "data"}` with `webhook-id` (`msg_<row>`,
//! the same on every retry), `webhook-timestamp` and `webhook-signature`, keyed with the
//! subscription's own secret. A 2xx is delivered; anything else is tried again after 5 s,
//! 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (capped by `--delivery-backoff-max-ms`), then kept
//! as failed. A subscription whose every post has failed for `--webhook-disable-after-days` is
//! turned off, and the admins are told by email and in the app.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tickethub_actors::notification::{Announcement, Recipients};
use tickethub_actors::ports::{StoreError, Webhook, WebhookFailed, WebhookJob};
use tickethub_actors::routing::Channel;

use crate::delivery::outbound;

/// How often the database is looked at for events to post.
const POLL: Duration = Duration::from_millis(250);

/// The waits between tries (Standard Webhooks' schedule): after the last, the event failed.
const RETRIES: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(300),
    Duration::from_secs(1800),
    Duration::from_secs(7200),
    Duration::from_secs(18_000),
    Duration::from_secs(36_000),
    Duration::from_secs(36_000),
];

/// What the poster needs.
#[derive(Clone)]
pub struct Poster {
    /// The HTTP client (public addresses only, unless `--webhook-allow-private`).
    pub client: reqwest::Client,
    /// The longest wait between tries.
    pub backoff_max: Duration,
    /// How long a subscription may fail before it is turned off.
    pub disable_after: chrono::TimeDelta,
    /// Whether destinations off the public internet are allowed (`--webhook-allow-private`).
    pub allow_private: bool,
    /// How long a claim holds before another node may take the event over: past a post's
    /// timeout, so that no two nodes post one event at once.
    pub lease: Duration,
}

/// A new subscription's secret: `whsec_` + base64 of 24 random bytes.
pub fn new_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The key a `whsec_` secret signs with.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    // Padded base64, whatever the unused bits of its last character.
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let key = LENIENT.decode(secret.strip_prefix("whsec_")?).ok()?;
    (key.len() >= 16).then_some(key)
}

/// Posts the events, on this node, until `stop` (after the pass under way).
pub fn spawn(
    state: crate::state::AppState,
    poster: Poster,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let poster = Arc::new(poster);
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let pass = tokio::spawn({
                let (poster, state) = (poster.clone(), state.clone());
                async move { pass(&state, &poster).await }
            });
            let busy = match pass.await {
                Ok(Ok(posted)) => posted > 0,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the event webhooks' queue");
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "the event webhooks' poster failed");
                    false
                }
            };
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
    })
}

/// Claims the events due and posts each; answers how many it claimed.
async fn pass(state: &crate::state::AppState, poster: &Poster) -> Result<usize, StoreError> {
    let store = &state.store;
    let now = store.now();
    let lease = chrono::Duration::from_std(poster.lease).unwrap_or_default();
    let jobs = store
        .claim_webhook_deliveries(state.hub.node(), now, now + lease, 20)
        .await?;
    let claimed = jobs.len();
    let posted = jobs.into_iter().map(|job| settle(state, poster, job));
    for done in futures::future::join_all(posted).await {
        done?;
    }
    Ok(claimed)
}

/// The body of an event: `{"type", "timestamp", "data"}`.
pub fn body(job: &WebhookJob) -> String {
    serde_json::json!({
        "type": job.delivery.event_type,
        "timestamp": crate::wire::timestamp(job.delivery.created_at),
        "data": job.data,
    })
    .to_string()
}

/// Posts one event and records what came of it.
async fn settle(
    state: &crate::state::AppState,
    poster: &Poster,
    job: WebhookJob,
) -> Result<(), StoreError> {
    let store = &state.store;
    let d = &job.delivery;
    let outcome = post(poster, &job).await;
    let now = store.now();
    let (status, error) = match outcome {
        Ok(status) => {
            metrics::counter!("tickethub_event_webhooks_total", "outcome" => "delivered")
                .increment(1);
            return store
                .webhook_delivered(d.id, state.hub.node(), status, now)
                .await;
        }
        Err(failed) => failed,
    };
    let due = RETRIES.get(d.attempts.max(0) as usize).map(|wait| {
        now + chrono::Duration::from_std((*wait).min(poster.backoff_max)).unwrap_or_default()
    });
    let outcome = if due.is_some() { "retried" } else { "failed" };
    metrics::counter!("tickethub_event_webhooks_total", "outcome" => outcome).increment(1);
    tracing::info!(id = d.id, subscription = d.subscription, %error, outcome, "an event webhook was not taken");
    let failed = store
        .webhook_failed(
            d.id,
            state.hub.node(),
            status,
            &error,
            due,
            now,
            now - poster.disable_after,
        )
        .await?;
    if let WebhookFailed::Disabled(w) = failed {
        tell_admins(state, &w).await;
    }
    Ok(())
}

/// Posts an event; the receiver's status, or why it was not taken (and its status, if it
/// answered).
async fn post(poster: &Poster, job: &WebhookJob) -> Result<i64, (Option<i64>, String)> {
    let key = secret_key(&job.secret).ok_or((None, "the secret is not a whsec_ secret".into()))?;
    let url: reqwest::Url = job
        .url
        .parse()
        .map_err(|e| (None, format!("bad URL: {e}")))?;
    // A name is checked as it resolves; an address given as such, here.
    if !poster.allow_private {
        outbound::check_literal(&url).map_err(|e| (None, e.to_string()))?;
    }
    let body = body(job);
    let id = format!("msg_{}", job.delivery.id);
    let timestamp = chrono::Utc::now().timestamp();
    let signature = crate::channels::webhook::sign(&key, &id, timestamp, &body);
    let response = poster
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| (None, outbound::request_error(e).to_string()))?;
    let status = response.status();
    if status.is_success() {
        Ok(i64::from(status.as_u16()))
    } else {
        let text = outbound::answer_text(response).await;
        let text: String = text.chars().take(200).collect();
        Err((
            Some(i64::from(status.as_u16())),
            format!("HTTP {status}: {text}"),
        ))
    }
}

/// Tells the admins that a subscription was turned off, by email and in the app.
async fn tell_admins(state: &crate::state::AppState, w: &Webhook) {
    tracing::warn!(subscription = w.id, url = %crate::timeline::masked_url(&w.url), "an event webhook is turned off after failing too long");
    let announcement = Announcement {
        to: Recipients::Role(tickethub_actors::domain::Role::Admin),
        notification_type: "webhook_disabled".into(),
        title: "Event webhook turned off".into(),
        message: format!(
            "Every post to webhook {} ({}) has failed since {}, so it is turned off. Turn it on again with PATCH /api/admin/webhooks/{}/ once the receiver is fixed.",
            w.id,
            crate::timeline::masked_url(&w.url),
            w.failing_since.map(crate::wire::timestamp).unwrap_or_default(),
            w.id
        ),
        data: serde_json::json!({ "webhook_id": w.id, "reason": w.disabled_reason }).to_string(),
        link: None,
        channels: vec![Channel::Email],
        sent_by: None,
        idempotency: None,
    };
    if let Err(e) = state.hub.announce(announcement).await {
        tracing::warn!(error = %e, "cannot tell the admins that an event webhook was turned off");
    }
}

impl Poster {
    /// The poster `config` asks for.
    pub fn from_config(config: &crate::ServeConfig) -> Result<Self, crate::setting::ConfigError> {
        let webhook = &config.channels.webhook;
        let timeout = Duration::from_secs(config.delivery_timeout.max(1));
        Ok(Self {
            client: outbound::client(timeout, !webhook.webhook_allow_private).map_err(|e| {
                crate::setting::ConfigError::new(
                    "--delivery-timeout (TICKETHUB_DELIVERY_TIMEOUT)",
                    e.to_string(),
                )
            })?,
            backoff_max: Duration::from_millis(config.delivery_backoff_max_ms.max(1)),
            disable_after: chrono::TimeDelta::days(i64::from(webhook.webhook_disable_after_days)),
            allow_private: webhook.webhook_allow_private,
            lease: (timeout * 2 + Duration::from_secs(10)).max(Duration::from_secs(60)),
        })
    }
}
