//! Delivery transports: email (lettre), WhatsApp Cloud API, SMS (Twilio) and webhooks
//! (reqwest), with the message templates they render. The channel actors in `tickethub-actors` drive them.

use std::sync::Arc;
use std::time::Duration;

use tickethub_actors::delivery::RetryPolicy;
use tickethub_actors::ports::{Transport, TransportError};
use tickethub_actors::routing::Channel;
use tickethub_actors::DeliveryConfig;

use crate::config::{ConfigError, ServeConfig};

pub mod apns;
pub mod email;
pub mod fcm;
pub mod outbound;
pub mod push;
pub mod sms;
pub mod templates;
pub mod webhook;
pub mod webpush;
pub mod whatsapp;

/// Builds the transports the configuration turns on: email always (SMTP, or `.eml` files in
/// the outbox folder), WhatsApp with a token and phone-number id, SMS with a Twilio account
/// SID, auth token and sender, webhooks with URLs, Web Push
/// with a VAPID key, FCM with a service account, APNs with a token key.
pub fn build(
    config: &ServeConfig,
    vapid: Option<Arc<push::VapidKey>>,
) -> Result<DeliveryConfig, ConfigError> {
    // reqwest and lettre share rustls with the ring provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let templates = Arc::new(templates::Templates::load(config.templates_dir.as_deref())?);
    let timeout = Duration::from_secs(config.delivery_timeout.max(1));
    let mut transports: Vec<(Channel, Arc<dyn Transport>)> = vec![(
        Channel::Email,
        Arc::new(email::EmailTransport::new(
            config,
            templates.clone(),
            timeout,
        )?),
    )];
    if let (Some(token), Some(phone)) = (&config.whatsapp_token, &config.whatsapp_phone_number_id) {
        transports.push((
            Channel::Whatsapp,
            Arc::new(whatsapp::WhatsappTransport::new(
                config,
                token,
                phone,
                templates.clone(),
                timeout,
            )?),
        ));
    }
    if let (Some(sid), Some(token), Some(from)) = (
        &config.twilio_account_sid,
        &config.twilio_auth_token,
        &config.twilio_from,
    ) {
        transports.push((
            Channel::Sms,
            Arc::new(sms::SmsTransport::new(
                config,
                sid,
                token,
                from,
                templates.clone(),
                timeout,
            )?),
        ));
    }
    if let Some(vapid) = vapid {
        transports.push((
            Channel::Webpush,
            Arc::new(webpush::WebPushTransport::new(config, vapid, timeout)?),
        ));
    }
    if config.fcm_service_account.is_some() {
        transports.push((
            Channel::Fcm,
            Arc::new(fcm::FcmTransport::new(config, timeout)?),
        ));
    }
    if config.apns_key.is_some() {
        transports.push((
            Channel::Apns,
            Arc::new(apns::ApnsTransport::new(config, timeout)?),
        ));
    }
    if !config.webhook_urls.is_empty() {
        transports.push((
            Channel::Webhook,
            Arc::new(webhook::WebhookTransport::new(config, timeout)?),
        ));
    }
    Ok(DeliveryConfig {
        transports,
        webhook_urls: config.webhook_urls.clone(),
        policy: RetryPolicy {
            max_attempts: config.delivery_max_attempts,
            base_backoff: Duration::from_millis(config.delivery_backoff_ms.max(1)),
            max_backoff: Duration::from_millis(config.delivery_backoff_max_ms.max(1)),
            concurrency: config.delivery_concurrency,
            lease: match config.delivery_lease {
                0 => (timeout * 4).max(Duration::from_secs(30)),
                secs => Duration::from_secs(secs),
            },
            circuit_threshold: config.circuit_threshold,
            circuit_cooldown: Duration::from_millis(config.circuit_cooldown_ms),
            poll_interval: Duration::from_millis(config.delivery_poll_ms.max(10)),
        },
    })
}

/// Classifies an HTTP answer: 2xx is success, 408/425/429 and 5xx are worth retrying (after
/// `Retry-After` if given), any other 4xx is permanent.
pub fn classify(
    status: reqwest::StatusCode,
    retry_after: Option<&str>,
    body: &str,
) -> Result<(), TransportError> {
    if status.is_success() {
        return Ok(());
    }
    let message = format!(
        "HTTP {}: {}",
        status.as_u16(),
        tickethub_actors::notification::excerpt(body.trim(), 300)
    );
    let retryable = status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429);
    Err(refusal(retryable, message, retry_after))
}

/// A provider's refusal: worth retrying (after its `Retry-After`, if it gave one), or not.
pub fn refusal(retryable: bool, message: String, retry_after: Option<&str>) -> TransportError {
    if retryable {
        TransportError::Retryable {
            message,
            retry_after: retry_after.and_then(parse_retry_after),
        }
    } else {
        TransportError::Permanent(message)
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date in the
/// past is no wait, anything else unreadable is ignored.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A network failure (connect, timeout, reset) is always worth retrying. The URL is left out
/// of the message: a webhook's carries its receiver's secret.
pub fn network_error(e: reqwest::Error) -> TransportError {
    let e = e.without_url();
    TransportError::Retryable {
        message: if e.is_timeout() {
            "timed out".to_owned()
        } else {
            format!("network error: {e}")
        },
        retry_after: None,
    }
}

/// An HTTP client with timeouts and without redirects, for providers the operator configured.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    outbound::client(timeout, false).map_err(|e| {
        ConfigError::new(
            "--delivery-timeout (TICKETHUB_DELIVERY_TIMEOUT)",
            e.to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers_are_classified() {
        use reqwest::StatusCode as S;
        assert!(classify(S::OK, None, "").is_ok());
        assert!(
            matches!(classify(S::BAD_REQUEST, None, "bad number"), Err(TransportError::Permanent(m)) if m.contains("bad number"))
        );
        assert!(matches!(
            classify(S::INTERNAL_SERVER_ERROR, None, ""),
            Err(TransportError::Retryable {
                retry_after: None,
                ..
            })
        ));
        assert_eq!(
            classify(S::TOO_MANY_REQUESTS, Some("7"), ""),
            Err(TransportError::Retryable {
                message: "HTTP 429: ".into(),
                retry_after: Some(Duration::from_secs(7))
            })
        );
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let cases: [(&str, Option<u64>); 6] = [
            ("7", Some(7)),
            (" 120 ", Some(120)),
            ("Wed, 21 Oct 2015 07:28:00 GMT", Some(0)),
            ("-3", None),
            ("soon", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(
                parse_retry_after(value),
                want.map(Duration::from_secs),
                "{value:?}"
            );
        }
        let later = std::time::SystemTime::now() + Duration::from_secs(90);
        let waited = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            (Duration::from_secs(88)..=Duration::from_secs(90)).contains(&waited),
            "{waited:?}"
        );
        // 3xx, 4xx: permanent (redirects are not followed); 408, 425, 429, 5xx: retried.
        use reqwest::StatusCode as S;
        for (status, retried) in [
            (S::FOUND, false),
            (S::TEMPORARY_REDIRECT, false),
            (S::UNAUTHORIZED, false),
            (S::NOT_FOUND, false),
            (S::REQUEST_TIMEOUT, true),
            (S::TOO_EARLY, true),
            (S::TOO_MANY_REQUESTS, true),
            (S::BAD_GATEWAY, true),
            (S::SERVICE_UNAVAILABLE, true),
        ] {
            let got = classify(status, None, "");
            assert_eq!(
                matches!(got, Err(TransportError::Retryable { .. })),
                retried,
                "{status}: {got:?}"
            );
        }
    }
}
