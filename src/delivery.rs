//! What the channels' transports share (see `crate::channels`): how a provider's answer is
//! classified, the HTTP client, the outbound address filter, and the message templates. The
//! channel actors in `tickethub-actors` drive the transports.

use std::time::Duration;

use tickethub_actors::ports::TransportError;

use crate::setting::ConfigError;

pub mod outbound;
pub mod templates;

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
            format!("network error: {}", with_causes(&e))
        },
        retry_after: None,
    }
}

/// An error with its causes, as `error: cause: its cause` (each said once): "error sending
/// request" alone does not tell an operator that the receiver's certificate was refused.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
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
