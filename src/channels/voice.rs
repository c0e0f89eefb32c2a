//! Voice calls through Twilio's Calls API: `POST {api}/2010-04-01/Accounts/{sid}/Calls.json`,
//! a form with `To`, `From` (`--twilio-voice-from`) and `Twiml`, the call's script, with the
//! SMS channel's account and auth token. The call reads the notification out (`<Say>`, from
//! the `*.voice.txt` templates); a page's call then asks the person to press 1, and Twilio
//! posts the key pressed (`<Gather>`) to `<--public-url>/api/inbound/twilio/voice/`, signed
//! like the SMS webhook, naming the page in its query: 1 acknowledges it.
//!
//! A call counts as delivered once Twilio has queued it; whether it was answered is not
//! known to the outbox (an unanswered page stays unread, and escalates).

use std::sync::Arc;

use async_trait::async_trait;
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};

use crate::delivery::templates::{Part, Templates};
use crate::delivery::http_client;
use crate::setting::ConfigError;

/// The path Twilio posts the key pressed to.
pub const GATHERED: &str = "/api/inbound/twilio/voice/";

/// The longest script Twilio takes in `Twiml`.
const LONGEST_TWIML: usize = 4000;

/// The voice settings: the caller's number; the account is the SMS channel's.
#[derive(clap::Args, Clone, Debug)]
#[group(skip)]
pub struct Settings {
    /// The number calls come from (E.164, a voice-capable number of the Twilio account);
    /// voice is on once it, the SMS channel's account SID and auth token, and `--public-url`
    /// are set.
    #[arg(long, env = "TICKETHUB_TWILIO_VOICE_FROM")]
    pub twilio_voice_from: Option<String>,
}

/// Voice calls (Twilio), to each user's `voice` number.
pub struct Voice;

impl crate::channels::Plugin for Voice {
    const NAME: &'static str = "voice";
    const REACH: tickethub_actors::routing::Reach = tickethub_actors::routing::Reach::Personal;
    type Settings = Settings;

    fn validate(s: &Settings) -> Result<(), ConfigError> {
        match &s.twilio_voice_from {
            Some(from) if crate::channels::sms::e164(from).is_err() => Err(ConfigError::new(
                "--twilio-voice-from (TICKETHUB_TWILIO_VOICE_FROM)",
                "must be a phone number in international format, e.g. +15551234567",
            )),
            _ => Ok(()),
        }
    }

    fn transport(
        settings: &crate::channels::Settings,
        ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn Transport>>, ConfigError> {
        let Some(from) = &settings.voice.twilio_voice_from else {
            return Ok(None);
        };
        const FROM: &str = "--twilio-voice-from (TICKETHUB_TWILIO_VOICE_FROM)";
        let sms = &settings.sms;
        let (Some(sid), Some(token)) = (&sms.twilio_account_sid, &sms.twilio_auth_token) else {
            return Err(ConfigError::new(
                FROM,
                "voice calls need the Twilio account of the SMS channel (--twilio-account-sid, --twilio-auth-token)",
            ));
        };
        let Some(public) = &ctx.public_url else {
            return Err(ConfigError::new(
                FROM,
                "voice calls need --public-url, where Twilio posts the key pressed",
            ));
        };
        Ok(Some(Arc::new(VoiceTransport {
            client: http_client(ctx.timeout)?,
            url: format!(
                "{}/2010-04-01/Accounts/{sid}/Calls.json",
                sms.twilio_api_url.trim_end_matches('/')
            ),
            account_sid: sid.clone(),
            auth_token: token.clone(),
            from: from.clone(),
            gathered: format!("{}{GATHERED}", public.trim_end_matches('/')),
            texts: ctx.templates.clone(),
        })))
    }

    fn check_address(address: &str) -> Result<String, String> {
        crate::channels::sms::e164(address)
    }
}

/// Places calls.
struct VoiceTransport {
    client: reqwest::Client,
    url: String,
    account_sid: String,
    auth_token: String,
    from: String,
    /// Where Twilio posts the key pressed.
    gathered: String,
    texts: Arc<Templates>,
}

/// Text for XML.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The call's script: the text read out; for a page, inside a `<Gather>` of one key that posts
/// to `gathered` (the page and its recipient in the query), then a goodbye if nothing was
/// pressed. The text is cut so that the script fits Twilio's limit.
pub fn twiml(text: &str, gather: Option<&str>) -> String {
    let (open, close) = match gather {
        Some(action) => (
            format!(
                "<Gather numDigits=\"1\" timeout=\"8\" method=\"POST\" action=\"{}\"><Say>",
                xml(action)
            ),
            " Press 1 to acknowledge.</Say></Gather><Say>Nothing was pressed. Goodbye.</Say>"
                .to_owned(),
        ),
        None => ("<Say>".to_owned(), "</Say>".to_owned()),
    };
    let frame = "<Response></Response>".len() + open.len() + close.len();
    let mut said = xml(text.trim());
    if frame + said.len() > LONGEST_TWIML {
        let mut end = LONGEST_TWIML - frame - 3;
        // Not inside a character, nor inside an escape.
        while !said.is_char_boundary(end) {
            end -= 1;
        }
        if let Some(amp) = said[..end].rfind('&') {
            if !said[amp..end].contains(';') {
                end = amp;
            }
        }
        said.truncate(end);
        said.push_str("...");
    }
    format!("<Response>{open}{said}{close}</Response>")
}

#[async_trait]
impl Transport for VoiceTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
        let text = self
            .texts
            .render(Part::Voice, job)
            .map_err(|e| TransportError::Permanent(format!("template: {e}")))?;
        if text.trim().is_empty() {
            return Err(TransportError::Permanent(
                "template: the voice text is empty".into(),
            ));
        }
        let n = &job.notification;
        let action = tickethub_actors::reply::is_page(n).then(|| {
            format!(
                "{}?notification={}&user={}",
                self.gathered, n.id, n.user_id.0
            )
        });
        let script = twiml(&text, action.as_deref());
        let form = serde_urlencoded::to_string([
            ("To", job.address.as_str()),
            ("From", self.from.as_str()),
            ("Twiml", script.as_str()),
        ])
        .map_err(|e| TransportError::Permanent(format!("cannot write the form: {e}")))?;
        let account = (self.account_sid.as_str(), self.auth_token.as_str());
        crate::channels::sms::post_form(&self.client, &self.url, account, form).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_reads_the_text_asks_for_a_key_on_a_page_and_fits_twilio_s_limit() {
        assert_eq!(
            twiml("db down & <out>", None),
            "<Response><Say>db down &amp; &lt;out&gt;</Say></Response>"
        );
        let page = twiml("db down", Some("https://hub.example.com/x/?notification=7&user=2"));
        assert_eq!(
            page,
            "<Response><Gather numDigits=\"1\" timeout=\"8\" method=\"POST\" \
             action=\"https://hub.example.com/x/?notification=7&amp;user=2\"><Say>db down \
             Press 1 to acknowledge.</Say></Gather><Say>Nothing was pressed. Goodbye.</Say></Response>"
        );
        for long in ["é".repeat(3000), "&".repeat(3000)] {
            let script = twiml(&long, Some("https://hub.example.com/x/"));
            assert!(script.len() <= LONGEST_TWIML, "{}", script.len());
            assert!(script.contains("...</Say>") || script.contains("... Press 1"));
            assert!(!script.contains("&am."), "an escape is never cut");
        }
    }
}
