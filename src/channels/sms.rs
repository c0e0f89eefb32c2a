//! SMS through Twilio's Messages API: `POST {api}/2010-04-01/Accounts/{sid}/Messages.json`,
//! a form with `To`, `From` (or `MessagingServiceSid`) and `Body`, with HTTP basic auth (the
//! account SID and its auth token).
//!
//! A text is sent in GSM-7 when every character has a place in the GSM 03.38 alphabet (those of
//! its extension table take two septets), in UCS-2 otherwise (a character outside the Basic
//! Multilingual Plane, an emoji, takes two code units). One segment holds 160 septets or 70
//! code units; a longer message is split into segments of 153 or 67, each carrying the header
//! that joins them, and a character is never split between two. A body is cut to
//! `--sms-segments` segments, ending with `…` (`...` in a GSM-7 text, which has no `…`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use crate::delivery::templates::{Part, Templates};
use crate::delivery::{http_client, network_error, refusal};
use settings::is_sid;
use crate::setting::ConfigError;

/// The SMS settings (Twilio).
#[derive(clap::Args, Clone, Debug)]
#[group(skip)]
pub struct Settings {
    /// Twilio account SID (`AC…`); SMS is on once it, the auth token and the sender are set.
    #[arg(long, env = "TICKETHUB_TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,

    /// Twilio auth token of the account.
    #[arg(long, env = "TICKETHUB_TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,

    /// The sender of SMS: a Twilio phone number (E.164), an alphanumeric sender id, or a
    /// Messaging Service SID (`MG…`).
    #[arg(long, env = "TICKETHUB_TWILIO_FROM")]
    pub twilio_from: Option<String>,

    /// Twilio REST API base URL.
    #[arg(
        long,
        env = "TICKETHUB_TWILIO_API_URL",
        default_value = "https://api.twilio.com"
    )]
    pub twilio_api_url: String,

    /// How many segments (160 GSM-7 or 70 UCS-2 characters alone; 153 or 67 each when
    /// concatenated) an SMS may take; a longer text is cut to fit, ending with `…`.
    #[arg(long, env = "TICKETHUB_SMS_SEGMENTS", default_value_t = 1)]
    pub sms_segments: u32,
}

/// SMS (Twilio's Messages API), to each user's phone number: on once the account SID, its
/// auth token and the sender are all set.
pub struct Sms;

mod settings;

impl crate::channels::Plugin for Sms {
    const NAME: &'static str = "sms";
    const REACH: tickethub_actors::routing::Reach = tickethub_actors::routing::Reach::Personal;
    type Settings = Settings;

    fn validate(s: &Settings) -> Result<(), ConfigError> {
        settings::validate(s)
    }

    fn transport(
        settings: &crate::channels::Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn tickethub_actors::ports::Transport>>, ConfigError> {
        let s = &settings.sms;
        let (Some(sid), Some(token), Some(from)) =
            (&s.twilio_account_sid, &s.twilio_auth_token, &s.twilio_from)
        else {
            return Ok(None);
        };
        Ok(Some(Arc::new(SmsTransport::new(
            settings,
            sid,
            token,
            from,
            ctx.templates.clone(),
            ctx.timeout,
        )?
        .reports_to(ctx.public_url.as_deref()))))
    }

    fn check_address(address: &str) -> Result<String, String> {
        e164(address)
    }
}

/// An E.164 number: `+` and 8 to 15 digits.
pub fn is_plausible_phone(number: &str) -> bool {
    number
        .strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// An E.164 number (`+` and 8 to 15 digits), or why not.
pub fn e164(number: &str) -> Result<String, String> {
    let number = number.trim();
    if is_plausible_phone(number) {
        Ok(number.to_owned())
    } else {
        Err("Enter a number in international format, e.g. +15551234567.".into())
    }
}


/// How a text travels in SMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 03.38 7-bit alphabet (with its extension table).
    Gsm7,
    /// UTF-16 (UCS-2 on the wire).
    Ucs2,
}

/// The GSM 03.38 default alphabet, one septet each (the escape code left out).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The GSM 03.38 extension table: two septets each (the escape code and the character).
const GSM7_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

impl Encoding {
    /// The encoding a text is sent in.
    pub fn of(text: &str) -> Encoding {
        if text
            .chars()
            .all(|c| GSM7_BASIC.contains(c) || GSM7_EXTENSION.contains(c))
        {
            Encoding::Gsm7
        } else {
            Encoding::Ucs2
        }
    }

    /// What one segment alone holds.
    fn single(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }

    /// What each segment of a concatenated message holds.
    fn part(self) -> usize {
        match self {
            Encoding::Gsm7 => 153,
            Encoding::Ucs2 => 67,
        }
    }

    /// The septets or code units a character takes.
    fn units(self, c: char) -> usize {
        match self {
            Encoding::Gsm7 if GSM7_EXTENSION.contains(c) => 2,
            Encoding::Gsm7 => 1,
            Encoding::Ucs2 => c.len_utf16(),
        }
    }

    /// The mark that ends a cut text.
    fn ellipsis(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "...",
            Encoding::Ucs2 => "…",
        }
    }
}

/// The encoding of a text and the segments it takes (none for an empty text).
pub fn segments(text: &str) -> (Encoding, usize) {
    let encoding = Encoding::of(text);
    let units: usize = text.chars().map(|c| encoding.units(c)).sum();
    if units == 0 {
        return (encoding, 0);
    }
    if units <= encoding.single() {
        return (encoding, 1);
    }
    // Concatenated: a character that does not fit in what is left of a segment opens the next.
    let (mut count, mut used) = (1, 0);
    for c in text.chars() {
        let n = encoding.units(c);
        if used + n > encoding.part() {
            count += 1;
            used = 0;
        }
        used += n;
    }
    (encoding, count)
}

/// `text` as it fits in `max` segments (at least one): whole if it does, else its longest
/// beginning that fits with the ellipsis after it (trailing spaces dropped).
pub fn fit(text: &str, max: u32) -> String {
    let max = max.max(1) as usize;
    if segments(text).1 <= max {
        return text.to_owned();
    }
    let ends: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let cut = |chars: usize| {
        let head = text[..ends[chars]].trim_end();
        format!("{head}{}", Encoding::of(head).ellipsis())
    };
    // The longest beginning that fits: a longer one never takes fewer segments.
    let (mut lo, mut hi) = (0, ends.len() - 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if segments(&cut(mid)).1 <= max {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    cut(lo)
}

/// Sends notifications as SMS through one Twilio account.
pub struct SmsTransport {
    client: reqwest::Client,
    url: String,
    account_sid: String,
    auth_token: String,
    /// `From` or `MessagingServiceSid`, and its value.
    sender: (&'static str, String),
    segments: u32,
    texts: Arc<Templates>,
    /// Where Twilio reports each message's status (with `--public-url`).
    status_callback: Option<String>,
}

impl SmsTransport {
    /// A transport sending from `from` with the account's credentials.
    pub fn new(
        settings: &crate::channels::Settings,
        account_sid: &str,
        auth_token: &str,
        from: &str,
        texts: Arc<Templates>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let field = if is_sid(from, "MG") {
            "MessagingServiceSid"
        } else {
            "From"
        };
        Ok(Self {
            client: http_client(timeout)?,
            url: format!(
                "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
                settings.sms.twilio_api_url.trim_end_matches('/')
            ),
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            sender: (field, from.to_owned()),
            segments: settings.sms.sms_segments,
            texts,
            status_callback: None,
        })
    }

    /// Twilio reports each message's status to the hub at `public` (`--public-url`).
    pub fn reports_to(mut self, public: Option<&str>) -> Self {
        self.status_callback =
            public.map(|p| format!("{}{STATUS_CALLBACK}", p.trim_end_matches('/')));
        self
    }

    /// The text of a delivery, cut to the segments allowed.
    fn body(&self, job: &DeliveryJob) -> Result<String, TransportError> {
        let text = self
            .texts
            .render(Part::Sms, job)
            .map_err(|e| TransportError::Permanent(format!("template: {e}")))?;
        let text = text.trim();
        if text.is_empty() {
            return Err(TransportError::Permanent(
                "template: the SMS text is empty".into(),
            ));
        }
        Ok(fit(text, self.segments))
    }
}

#[async_trait]
impl Transport for SmsTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
        let body = self.body(job)?;
        let mut fields = vec![
            ("To", job.address.as_str()),
            (self.sender.0, self.sender.1.as_str()),
            ("Body", body.as_str()),
        ];
        if let Some(url) = &self.status_callback {
            fields.push(("StatusCallback", url.as_str()));
        }
        let form = fields
            .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
        let account = (self.account_sid.as_str(), self.auth_token.as_str());
        post_form(&self.client, &self.url, account, form).await
    }
}

/// Posts a form to Twilio's API as the account (basic auth with its SID and auth token), and
/// reads the answer ([`answer`]).
pub(crate) async fn post_form(
    client: &reqwest::Client,
    url: &str,
    (account_sid, auth_token): (&str, &str),
    form: String,
) -> Result<Option<String>, TransportError> {
    let response = client
        .post(url)
        .basic_auth(account_sid, Some(auth_token))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form)
        .send()
        .await
        .map_err(network_error)?;
    let status = response.status();
    let retry_after = crate::delivery::outbound::header(&response, reqwest::header::RETRY_AFTER);
    let text = crate::delivery::outbound::answer_text(response).await;
    answer(status, retry_after.as_deref(), &text)
}

/// The path Twilio posts each message's status to (its `StatusCallback`, on `--public-url`).
pub const STATUS_CALLBACK: &str = "/api/inbound/twilio/status/";

/// Twilio's error codes that say the number itself cannot take SMS, for good: not a valid
/// phone number (21211), not a mobile number (21614), unsubscribed with STOP (21610).
const UNREACHABLE: [u64; 3] = [21211, 21614, 21610];

/// What a Twilio answer comes to: the message's `sid` on success; for an error, its `code`
/// decides. A number that cannot take SMS for good is `Unreachable` (it is marked and not
/// used again); 429 and 5xx (and 408) are retried after `Retry-After`; any other refusal
/// (bad credentials, a region not enabled for the account, a bad sender) fails the message.
pub fn answer(
    status: reqwest::StatusCode,
    retry_after: Option<&str>,
    text: &str,
) -> Result<Option<String>, TransportError> {
    #[derive(Deserialize, Default)]
    struct Answer {
        sid: Option<String>,
        code: Option<u64>,
        message: Option<String>,
    }
    let parsed: Answer = serde_json::from_str(text).unwrap_or_default();
    if status.is_success() {
        return Ok(parsed.sid);
    }
    let message = match (parsed.code, &parsed.message) {
        (Some(code), Some(m)) => format!("HTTP {}: Twilio {code}: {m}", status.as_u16()),
        (Some(code), None) => format!("HTTP {}: Twilio {code}", status.as_u16()),
        _ => format!(
            "HTTP {}: {}",
            status.as_u16(),
            tickethub_actors::notification::excerpt(text.trim(), 300)
        ),
    };
    if parsed.code.is_some_and(|c| UNREACHABLE.contains(&c)) {
        return Err(TransportError::Unreachable(message));
    }
    let retryable = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
    Err(refusal(retryable, message, retry_after))
}

/// `application/x-www-form-urlencoded` escaping of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::settings::MAX_SEGMENTS;
    use reqwest::StatusCode as S;

    #[test]
    fn the_alphabet_decides_the_encoding() {
        for gsm in [
            "Hello, world!",
            "Café ÄÖÜ äöü ß £5 @home",
            "braces {} [] ~ | ^ \\ and €",
            "line\nbreak\r",
            "",
        ] {
            assert_eq!(Encoding::of(gsm), Encoding::Gsm7, "{gsm:?}");
        }
        for ucs2 in ["emoji 😀", "Привет", "naïve", "ellipsis…", "“quotes”", "ç"] {
            assert_eq!(Encoding::of(ucs2), Encoding::Ucs2, "{ucs2:?}");
        }
    }

    #[test]
    fn segments_are_counted_in_septets_or_code_units() {
        let a = |n: usize| "a".repeat(n);
        assert_eq!(segments(""), (Encoding::Gsm7, 0));
        assert_eq!(segments(&a(1)), (Encoding::Gsm7, 1));
        assert_eq!(segments(&a(160)), (Encoding::Gsm7, 1));
        assert_eq!(segments(&a(161)), (Encoding::Gsm7, 2));
        assert_eq!(segments(&a(306)), (Encoding::Gsm7, 2));
        assert_eq!(segments(&a(307)), (Encoding::Gsm7, 3));
        assert_eq!(segments(&a(1530)), (Encoding::Gsm7, 10));
        // The extension table's characters take two septets.
        assert_eq!(segments(&"€".repeat(80)), (Encoding::Gsm7, 1));
        assert_eq!(segments(&"€".repeat(81)), (Encoding::Gsm7, 2));
        assert_eq!(segments(&format!("{}€", a(158))), (Encoding::Gsm7, 1));
        assert_eq!(segments(&format!("{}€", a(159))), (Encoding::Gsm7, 2));
        // An escape and its character are never split: 152 septets and a `{` fill the first
        // segment's 153 with one to spare, so the `{` opens the second.
        assert_eq!(
            segments(&format!("{}{{{}", a(152), a(7))),
            (Encoding::Gsm7, 2)
        );
        assert_eq!(
            segments(&format!("{}{{{}", a(152), a(150))),
            (Encoding::Gsm7, 2)
        );
        assert_eq!(
            segments(&format!("{}{{{}", a(152), a(152))),
            (Encoding::Gsm7, 3)
        );
        // UCS-2: 70 code units alone, 67 per segment concatenated.
        assert_eq!(segments(&"й".repeat(70)), (Encoding::Ucs2, 1));
        assert_eq!(segments(&"й".repeat(71)), (Encoding::Ucs2, 2));
        assert_eq!(segments(&"й".repeat(134)), (Encoding::Ucs2, 2));
        assert_eq!(segments(&"й".repeat(135)), (Encoding::Ucs2, 3));
        // One character outside GSM-7 makes the whole text UCS-2.
        assert_eq!(segments(&format!("{}é", a(69))), (Encoding::Gsm7, 1));
        assert_eq!(segments(&format!("{}ç", a(69))), (Encoding::Ucs2, 1));
        assert_eq!(segments(&format!("{}ç", a(70))), (Encoding::Ucs2, 2));
        // An emoji is two code units, and is not split between segments.
        assert_eq!(segments(&"😀".repeat(35)), (Encoding::Ucs2, 1));
        assert_eq!(segments(&"😀".repeat(36)), (Encoding::Ucs2, 2));
        assert_eq!(segments(&"😀".repeat(66)), (Encoding::Ucs2, 2));
        assert_eq!(segments(&"😀".repeat(67)), (Encoding::Ucs2, 3));
    }

    #[test]
    fn long_texts_are_cut_to_fit_with_an_ellipsis() {
        let a = |n: usize| "a".repeat(n);
        // What fits is left alone.
        assert_eq!(fit(&a(160), 1), a(160));
        assert_eq!(fit("", 1), "");
        // GSM-7 has no `…`: three dots keep the text in one 160-septet segment.
        let cut = fit(&a(200), 1);
        assert_eq!(cut, format!("{}...", a(157)));
        assert_eq!(segments(&cut), (Encoding::Gsm7, 1));
        // With an emoji the text is UCS-2: 70 code units, the emoji taking two.
        let cut = fit(&format!("😀{}", a(200)), 1);
        assert_eq!(cut, format!("😀{}…", a(67)));
        assert_eq!(cut.encode_utf16().count(), 70);
        assert_eq!(segments(&cut), (Encoding::Ucs2, 1));
        // An emoji that is cut off leaves a GSM-7 text behind.
        assert_eq!(fit(&format!("{}😀", a(200)), 1), format!("{}...", a(157)));
        // Extension characters count double.
        let cut = fit(&"€".repeat(100), 1);
        assert_eq!(cut, format!("{}...", "€".repeat(78)));
        // Three segments: 3 × 153 septets.
        let cut = fit(&a(1000), 3);
        assert_eq!(cut, format!("{}...", a(456)));
        assert_eq!(segments(&cut), (Encoding::Gsm7, 3));
        assert_eq!(fit(&a(459), 3), a(459));
        let cut = fit(&"й".repeat(300), 3);
        assert_eq!(cut, format!("{}…", "й".repeat(200)));
        // Spaces before the cut are dropped; none is ever added.
        let words = format!("{} {}", a(157), a(100));
        assert_eq!(fit(&words, 1), format!("{}...", a(157)));
        // Zero segments is taken as one.
        assert_eq!(fit(&a(200), 0), format!("{}...", a(157)));
        // Every cut fits, whatever the text.
        for text in [
            "Ticket WEB-1 {urgent} 😀 ".repeat(40),
            "€€€ abc ".repeat(60),
            "Приоритет: высокий. ".repeat(30),
        ] {
            for max in 1..=MAX_SEGMENTS {
                let cut = fit(&text, max);
                assert!(segments(&cut).1 <= max as usize, "{max}: {cut:?}");
                assert!(cut.chars().count() <= 1600);
            }
        }
    }

    #[test]
    fn twilio_answers_are_classified() {
        let created =
            r#"{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued","num_segments":"1"}"#;
        assert_eq!(
            answer(S::CREATED, None, created),
            Ok(Some("SM0123456789abcdef0123456789abcdef".into()))
        );
        assert_eq!(answer(S::CREATED, None, "not json"), Ok(None));
        let error = |code: u64, status: u16| {
            format!(
                r#"{{"code":{code},"message":"Twilio says no.","more_info":"https://www.twilio.com/docs/errors/{code}","status":{status}}}"#
            )
        };
        // A number that cannot take SMS for good: marked, not used again.
        for code in [21211, 21614, 21610] {
            assert_eq!(
                answer(S::BAD_REQUEST, None, &error(code, 400)),
                Err(TransportError::Unreachable(format!(
                    "HTTP 400: Twilio {code}: Twilio says no."
                )))
            );
        }
        // A region not enabled, a bad sender, bad credentials: this message fails, and the
        // number stays.
        for (status, code) in [
            (S::BAD_REQUEST, 21408),
            (S::BAD_REQUEST, 21606),
            (S::BAD_REQUEST, 21612),
            (S::UNAUTHORIZED, 20003),
            (S::FORBIDDEN, 20003),
            (S::NOT_FOUND, 20404),
        ] {
            match answer(status, None, &error(code, status.as_u16())) {
                Err(TransportError::Permanent(m)) => {
                    assert!(m.contains(&format!("Twilio {code}")), "{m}")
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        // Throttled or down: retried, after `Retry-After` if given.
        assert_eq!(
            answer(S::TOO_MANY_REQUESTS, Some("3"), &error(20429, 429)),
            Err(TransportError::Retryable {
                message: "HTTP 429: Twilio 20429: Twilio says no.".into(),
                retry_after: Some(Duration::from_secs(3)),
            })
        );
        for status in [
            S::INTERNAL_SERVER_ERROR,
            S::BAD_GATEWAY,
            S::SERVICE_UNAVAILABLE,
            S::REQUEST_TIMEOUT,
        ] {
            assert!(
                matches!(
                    answer(status, None, "<html>down</html>"),
                    Err(TransportError::Retryable {
                        retry_after: None,
                        ..
                    })
                ),
                "{status}"
            );
        }
        // An answer that is not Twilio's JSON is quoted.
        assert_eq!(
            answer(S::BAD_REQUEST, None, "bad request"),
            Err(TransportError::Permanent("HTTP 400: bad request".into()))
        );
    }

    #[test]
    fn form_values_are_escaped() {
        assert_eq!(form_encode("+15550001234"), "%2B15550001234");
        assert_eq!(form_encode("a b&c=d…"), "a%20b%26c%3Dd%E2%80%A6");
    }
}
