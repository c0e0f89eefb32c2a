//! Address verification: a person who types an email address, WhatsApp number or phone number
//! for themselves (signing up, `PATCH /api/users/me/`) proves it is theirs before the hub sends
//! it anything else, so that the hub cannot be made to write to strangers.
//!
//! The hub sends a six-digit code to the address (by email with a link when `--public-url` is
//! set, by WhatsApp or SMS as text), through the channel's own transport and its
//! `address_verification` templates (the hub's words and the code: nothing the person typed),
//! never in the app: the code must come from the address. The person answers it with
//! `POST /api/users/me/verify/` (logged in), or opens the email's link, which carries a random
//! token of its own rather than the code, since anyone holding the link may open it. A code lives for a
//! day by email and half an hour by text, and takes five wrong tries; messages are limited per
//! person and channel (one a minute, five a day) and per address (five a day, whoever asks).
//! Addresses an admin sets count as verified.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tickethub_actors::domain::{User, UserId};
use tickethub_actors::notification::{Notification, Recipient};
use tickethub_actors::ports::{
    Checked, DeliveryJob, NewVerification, Started, Store, StoreError, Transport,
    VerificationLimits,
};
use tickethub_actors::routing::{Channel, EventType};

/// The notification type verification messages are rendered as (`address_verification.*`
/// templates override the defaults).
pub const MESSAGE_TYPE: &str = "address_verification";

/// The channels whose addresses a person types for themselves: the personal ones.
pub fn channels() -> Vec<Channel> {
    Channel::registered()
        .into_iter()
        .filter(|(_, reach)| *reach == tickethub_actors::routing::Reach::Personal)
        .map(|(c, _)| c)
        .collect()
}

/// Sends codes and checks them.
pub struct Verifier {
    store: Arc<dyn Store>,
    transports: HashMap<Channel, Arc<dyn Transport>>,
    public_url: Option<String>,
    limits: VerificationLimits,
    sends: tokio_util::task::TaskTracker,
}

/// The address `user` has on `channel`, and whether it is verified. A number the SMS provider
/// refused for good (invalid, or its owner replied STOP) is no address to send a code to.
pub fn address_of(user: &User, channel: Channel) -> Option<(&str, bool)> {
    user.address(channel)
        .filter(|a| a.invalid_at.is_none())
        .map(|a| (a.address.as_str(), a.verified_at.is_some()))
}

/// The channel a request names: a personal channel (`email`, `whatsapp`, `sms`, `voice`, …).
pub fn channel_named(name: &str) -> Option<Channel> {
    channels().into_iter().find(|c| c.as_str() == name)
}

/// The stored form of a code: SHA-256 over the user, the channel and the code.
fn code_hash(user: UserId, channel: Channel, code: &str) -> String {
    crate::auth::api_keys::hash(&format!("{}:{}:{}", user.0, channel.as_str(), code.trim()))
}

/// Whether `code` is shaped like the codes this hub sends: six digits.
pub fn is_code(code: &str) -> bool {
    let code = code.trim();
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

/// An address as the message counts know it: an email in lower case (`Victim@X.com` and
/// `victim@x.com` are one inbox), a number as it is.
fn address_key(channel: Channel, address: &str) -> String {
    match channel {
        Channel::Email => address.trim().to_lowercase(),
        _ => address.trim().to_owned(),
    }
}

/// How long a code works.
fn lifetime(channel: Channel) -> Duration {
    match channel {
        Channel::Email => Duration::from_secs(86_400),
        _ => Duration::from_secs(1_800),
    }
}

impl Verifier {
    /// A verifier sending through `transports` (those of email, WhatsApp and SMS that are
    /// configured).
    pub fn new(
        store: Arc<dyn Store>,
        transports: &[(Channel, Arc<dyn Transport>)],
        public_url: Option<String>,
        limits: VerificationLimits,
    ) -> Self {
        Self {
            store,
            transports: transports
                .iter()
                .filter(|(c, _)| c.reach() == tickethub_actors::routing::Reach::Personal)
                .map(|(c, t)| (*c, t.clone()))
                .collect(),
            public_url,
            limits,
            sends: tokio_util::task::TaskTracker::new(),
        }
    }

    /// The limits it keeps.
    pub fn limits(&self) -> VerificationLimits {
        self.limits
    }

    /// Whether the hub can send on `channel` at all.
    pub fn can_send(&self, channel: Channel) -> bool {
        self.transports.contains_key(&channel)
    }

    /// Starts verifying the user's unverified address on `channel`: a new code is stored and
    /// sent (in the background; the answer does not wait for the provider), within the limits.
    pub async fn start(&self, user: &User, channel: Channel) -> Result<Started, StoreError> {
        let Some((address, verified)) = address_of(user, channel) else {
            return Ok(Started::NoAddress);
        };
        if verified {
            return Ok(Started::Verified);
        }
        let Some(transport) = self.transports.get(&channel).cloned() else {
            return Ok(Started::NoAddress);
        };
        let key = address_key(channel, address);
        let (_, listed) = self
            .store
            .suppressions(Some(channel), Some(&key), 0, 1)
            .await?;
        if let Some(entry) = listed.into_iter().next() {
            return Ok(Started::Suppressed {
                reason: entry.reason,
            });
        }
        let code = format!("{:06}", rand::random_range(0..1_000_000u32));
        // The email's link carries a token of its own, 128 random bits.
        let token = (channel == Channel::Email && self.public_url.is_some())
            .then(|| crate::auth::generate_secret()[..32].to_owned());
        let now = Utc::now();
        let started = self
            .store
            .start_verification(NewVerification {
                user: user.id,
                channel,
                address: address.to_owned(),
                code_hash: code_hash(user.id, channel, &code),
                link_hash: token.as_deref().map(crate::auth::api_keys::hash),
                address_key: key,
                expires_at: crate::timespan::later(now, lifetime(channel)),
                now,
                limits: self.limits,
            })
            .await?;
        if started == Started::Send {
            let mut job = self.message(user, channel, address, &code, token.as_deref(), now);
            // In the person's language, if the hub has it.
            let quiet = self.store.quiet(user.id).await.unwrap_or_default();
            (job.locale, job.time_zone) = (quiet.locale, quiet.time_zone);
            let user_id = user.id.0;
            self.sends.spawn(async move {
                if let Err(e) = transport.send(&job).await {
                    tracing::warn!(user_id, channel = job.channel.as_str(), error = %e, "verification message not sent");
                }
            });
        }
        Ok(started)
    }

    /// Starts verifying every unverified address of `user`, as after a sign-up or a profile
    /// change; a channel that may not send now is left for the person to ask again.
    pub async fn start_all(&self, user: &User) {
        for channel in channels() {
            if address_of(user, channel).is_some_and(|(_, verified)| !verified) {
                match self.start(user, channel).await {
                    Ok(Started::Later { at }) => {
                        tracing::info!(user_id = user.id.0, channel = channel.as_str(), %at, "verification message held back by its limits")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(user_id = user.id.0, error = %e, "cannot start a verification")
                    }
                }
            }
        }
    }

    /// Checks a code (six digits, see [`is_code`]) for the user's address on `channel`.
    pub async fn check(
        &self,
        user: UserId,
        channel: Channel,
        code: &str,
    ) -> Result<Checked, StoreError> {
        self.store
            .check_verification(
                user,
                channel,
                &code_hash(user, channel, code),
                Utc::now(),
                self.limits.attempts,
            )
            .await
    }

    /// Checks the token of an email's link.
    pub async fn check_link(&self, token: &str) -> Result<Checked, StoreError> {
        self.store
            .check_verification_link(&crate::auth::api_keys::hash(token.trim()), Utc::now())
            .await
    }

    /// Waits for the messages being sent (at shutdown, and in tests).
    pub async fn flush(&self) {
        self.sends.close();
        self.sends.wait().await;
        self.sends.reopen();
    }

    /// The message carrying `code`, as the channel's transport renders a notification.
    fn message(
        &self,
        user: &User,
        channel: Channel,
        address: &str,
        code: &str,
        token: Option<&str>,
        now: DateTime<Utc>,
    ) -> DeliveryJob {
        let link = self
            .public_url
            .as_deref()
            .zip(token)
            .map(|(base, token)| format!("{base}/verify/?token={token}"));
        let what = match channel.as_str() {
            "email" => "email address",
            "whatsapp" => "WhatsApp number",
            "sms" | "voice" => "phone number",
            "slack" => "Slack account",
            "mattermost" => "Mattermost account",
            "teams" => "Teams chat",
            _ => "address",
        };
        let minutes = lifetime(channel).as_secs() / 60;
        let message = match &link {
            Some(link) => format!(
                "Your tickethub code is {code}. Enter it in tickethub, or open {link} to confirm this {what}. It works for {} hours. If you did not ask for it, ignore this message.",
                minutes / 60
            ),
            None => format!(
                "Your tickethub code is {code}. Enter it in tickethub to confirm this {what}; it works for {minutes} minutes. If you did not ask for it, ignore this message."
            ),
        };
        DeliveryJob {
            id: 0,
            channel,
            address: address.to_owned(),
            attempts: 0,
            notification: Notification {
                id: 0,
                user_id: user.id,
                seq: 0,
                notification_type: EventType::Custom(MESSAGE_TYPE.into()),
                title: format!("Confirm your {what}"),
                message,
                ticket: None,
                data: serde_json::json!({ "code": code, "channel": channel.as_str() }).to_string(),
                action_url: link,
                is_read: false,
                read_at: None,
                created_at: now,
            },
            // Nothing the person typed goes to an address they have not proved.
            recipient_name: String::new(),
            recipients: vec![Recipient {
                user_id: user.id,
                username: user.username.clone(),
                display_name: String::new(),
            }],
            device: None,
            seen: false,
            suppressed: None,
            locale: None,
            time_zone: None,
            batch: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_hashed_per_user_and_channel() {
        let a = code_hash(UserId(1), Channel::Email, "123456");
        assert_eq!(a.len(), 64);
        assert!(!a.contains("123456"));
        assert_eq!(a, code_hash(UserId(1), Channel::Email, " 123456 "));
        assert_ne!(a, code_hash(UserId(2), Channel::Email, "123456"));
        assert_ne!(a, code_hash(UserId(1), Channel::Sms, "123456"));
    }

    #[test]
    fn emails_are_counted_in_lower_case_and_codes_are_six_digits() {
        assert_eq!(
            address_key(Channel::Email, " Victim@Example.COM "),
            "victim@example.com"
        );
        assert_eq!(address_key(Channel::Sms, "+15550001111"), "+15550001111");
        assert!(is_code("042917"));
        assert!(is_code(" 042917 "));
        assert!(!is_code("42917"));
        assert!(!is_code("04291a"));
        assert!(!is_code("0429170"));
    }

    #[test]
    fn only_typed_addresses_are_verified() {
        assert_eq!(channel_named("sms"), Some(Channel::Sms));
        assert_eq!(channel_named("email"), Some(Channel::Email));
        assert_eq!(channel_named("webhook"), None);
        assert_eq!(channel_named("push"), None);
    }
}
