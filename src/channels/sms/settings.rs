//! The SMS settings (Twilio): all of the account SID, auth token and sender or none, each
//! well-formed, and a number of segments Twilio takes.

use super::Settings;
use crate::setting::ConfigError;

/// The most segments a message may be given: Twilio advises against more than 10 (and
/// refuses bodies of more than 1600 characters).
pub const MAX_SEGMENTS: u32 = 10;

/// Checks the SMS settings.
pub(super) fn validate(config: &Settings) -> Result<(), ConfigError> {
    const SID: &str = "--twilio-account-sid (TICKETHUB_TWILIO_ACCOUNT_SID)";
    const FROM: &str = "--twilio-from (TICKETHUB_TWILIO_FROM)";
    let given = [
        config.twilio_account_sid.is_some(),
        config.twilio_auth_token.is_some(),
        config.twilio_from.is_some(),
    ];
    if given.contains(&true) && given.contains(&false) {
        return Err(ConfigError::new(
            SID,
            "SMS needs a Twilio account SID, its auth token (--twilio-auth-token) and a sender (--twilio-from), all three",
        ));
    }
    if let Some(sid) = &config.twilio_account_sid {
        if !is_sid(sid, "AC") {
            return Err(ConfigError::new(
                SID,
                "must be the account's SID: AC and 32 hexadecimal digits",
            ));
        }
    }
    if config
        .twilio_auth_token
        .as_deref()
        .is_some_and(str::is_empty)
    {
        return Err(ConfigError::new(
            "--twilio-auth-token (TICKETHUB_TWILIO_AUTH_TOKEN)",
            "must not be empty",
        ));
    }
    if let Some(from) = &config.twilio_from {
        if !is_sender(from) {
            return Err(ConfigError::new(
                FROM,
                "must be a phone number in international format (+15551234567), an alphanumeric sender id (1 to 11 letters, digits and spaces, with a letter) or a Messaging Service SID (MG…)",
            ));
        }
    }
    if !(config.twilio_api_url.starts_with("https://")
        || config.twilio_api_url.starts_with("http://"))
    {
        return Err(ConfigError::new(
            "--twilio-api-url (TICKETHUB_TWILIO_API_URL)",
            "must be an http(s) URL",
        ));
    }
    if !(1..=MAX_SEGMENTS).contains(&config.sms_segments) {
        return Err(ConfigError::new(
            "--sms-segments (TICKETHUB_SMS_SEGMENTS)",
            format!("must be 1 to {MAX_SEGMENTS}"),
        ));
    }
    Ok(())
}

/// A Twilio SID: its two-letter prefix (`AC` for an account, `MG` for a Messaging Service) and
/// 32 hexadecimal digits.
pub fn is_sid(sid: &str, prefix: &str) -> bool {
    sid.strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A sender Twilio takes: a number in E.164, an alphanumeric sender id, or a Messaging
/// Service SID.
fn is_sender(from: &str) -> bool {
    let e164 = from
        .strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()));
    let alphanumeric = (1..=11).contains(&from.len())
        && from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
        && from.bytes().any(|b| b.is_ascii_alphabetic())
        && !from.starts_with(' ')
        && !from.ends_with(' ');
    e164 || alphanumeric || is_sid(from, "MG")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeConfig;

    #[test]
    fn settings_are_checked() {
        let sid = "AC0123456789abcdef0123456789abcdef";
        let mut c = ServeConfig::defaults();
        validate(&c.channels.sms).unwrap();
        c.channels.sms.twilio_account_sid = Some(sid.into());
        let err = validate(&c.channels.sms).unwrap_err().to_string();
        assert!(
            err.starts_with("--twilio-account-sid") && err.contains("all three"),
            "{err}"
        );
        c.channels.sms.twilio_auth_token = Some("token".into());
        c.channels.sms.twilio_from = Some("+15550001234".into());
        validate(&c.channels.sms).unwrap();
        c.validate().unwrap();
        for from in ["Tickethub", "MG0123456789abcdef0123456789abcdef", "Ops 24"] {
            c.channels.sms.twilio_from = Some(from.into());
            validate(&c.channels.sms).unwrap();
        }
        for from in [
            "",
            "15550001234",
            "+1555",
            "TicketHubAlerts",
            "12345",
            " hub",
        ] {
            c.channels.sms.twilio_from = Some(from.into());
            let err = validate(&c.channels.sms).unwrap_err().to_string();
            assert!(err.starts_with("--twilio-from"), "{from:?}: {err}");
        }
        c.channels.sms.twilio_from = Some("+15550001234".into());
        c.channels.sms.twilio_account_sid = Some("SK0123456789abcdef0123456789abcdef".into());
        let err = validate(&c.channels.sms).unwrap_err().to_string();
        assert!(err.starts_with("--twilio-account-sid"), "{err}");
        c.channels.sms.twilio_account_sid = Some(sid.into());
        c.channels.sms.twilio_auth_token = Some(String::new());
        let err = validate(&c.channels.sms).unwrap_err().to_string();
        assert!(err.starts_with("--twilio-auth-token"), "{err}");
        c.channels.sms.twilio_auth_token = Some("token".into());
        for segments in [0, 11] {
            c.channels.sms.sms_segments = segments;
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with("--sms-segments"), "{err}");
        }
        c.channels.sms.sms_segments = 10;
        c.channels.sms.twilio_api_url = "api.twilio.com".into();
        let err = validate(&c.channels.sms).unwrap_err().to_string();
        assert!(err.starts_with("--twilio-api-url"), "{err}");
    }
}
