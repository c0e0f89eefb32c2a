//! The channels that carry notifications off the hub, as plug-ins: email, WhatsApp, SMS,
//! webhooks, push (Web Push, FCM, APNs), voice calls, Slack, Mattermost, Microsoft Teams and a
//! file sink.
//!
//! A channel is one module that implements [`Plugin`]: its name and reach (a personal address,
//! the deployment's destinations, or a device carrier), its settings (flags, environment
//! variables and config-file keys, checked at start), the check of its addresses, and its
//! transport, which renders a delivery from the templates, sends it and classifies the
//! provider's answer. It is registered with one line in [`plugins!`] below. The outbox, its
//! retries and circuit breaker, preferences, routing, escalation, verification and analytics
//! know channels by name only.

use std::sync::Arc;
use std::time::Duration;

use tickethub_actors::ports::Transport;
use tickethub_actors::routing::{Channel, Reach};

use crate::channels::push::VapidKey;
use crate::delivery::templates::Templates;
use crate::setting::ConfigError;

pub mod chat;
pub mod signed;

/// What a channel's transport is built with, besides the settings.
pub struct Context {
    /// The message templates.
    pub templates: Arc<Templates>,
    /// How long a provider may take to answer.
    pub timeout: Duration,
    /// The Web Push key, when Web Push is on.
    pub vapid: Option<Arc<VapidKey>>,
    /// The hub's public address (`--public-url`), when it has one.
    pub public_url: Option<String>,
    /// Signs the reply addresses of pages' emails, when the hub takes replies
    /// (`--inbound-email-domain`).
    pub replies: Option<Arc<crate::channels::email::ReplyKey>>,
    /// Signs the one-click unsubscribe links of notification emails.
    pub unsubscribe: Option<Arc<crate::channels::email::UnsubscribeKey>>,
}

/// A channel.
pub trait Plugin {
    /// Its wire and storage name: 1 to 32 lowercase letters, digits and `_`.
    const NAME: &'static str;
    /// How it reaches people.
    const REACH: Reach;
    /// Its settings, flattened into `tickethub serve`'s.
    type Settings: clap::Args + clap::FromArgMatches + Clone + std::fmt::Debug;

    /// Refuses settings that do not hold together, naming the flag.
    fn validate(_settings: &Self::Settings) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Its transport, when its settings turn it on (`None`: the channel is off and nothing is
    /// queued on it).
    fn transport(
        settings: &crate::channels::Settings,
        ctx: &Context,
    ) -> Result<Option<Arc<dyn Transport>>, ConfigError>;

    /// A chat channel's rooms for project chats (see [`chat::Room`]), when its settings turn
    /// it on.
    fn room(
        _settings: &Self::Settings,
        _ctx: &Context,
    ) -> Result<Option<Arc<dyn chat::Room>>, ConfigError> {
        Ok(None)
    }

    /// A deployment channel's destinations: where every notification is also delivered.
    fn destinations(_settings: &Self::Settings) -> Vec<String> {
        Vec::new()
    }

    /// A personal channel's address, checked and normalized, or why it is not one.
    fn check_address(address: &str) -> Result<String, String> {
        let address = address.trim();
        if address.is_empty()
            || address.chars().count() > 320
            || address.chars().any(char::is_control)
        {
            return Err("1 to 320 characters, none of them control characters".into());
        }
        Ok(address.to_owned())
    }
}

/// Registers the channels: one line each, `module::PlugIn`, which declares the module (a file
/// of this folder) and takes its plug-in into every list below.
macro_rules! plugins {
    ($($field:ident :: $name:ident),* $(,)?) => {
        $( pub mod $field; )*

        /// Every channel's settings.
        #[derive(clap::Args, Clone, Debug)]
        #[group(skip)]
        pub struct Settings {
            $(
                #[allow(missing_docs)]
                #[command(flatten)]
                pub $field: <$field::$name as Plugin>::Settings,
            )*
        }

        /// Registers every channel's name and reach with the routing's registry; answers
        /// them.
        pub fn register() -> Vec<Channel> {
            vec![$(
                Channel::register(<$field::$name as Plugin>::NAME, <$field::$name as Plugin>::REACH)
                    .expect("a channel plug-in's name and reach"),
            )*]
        }

        /// Checks every channel's settings.
        pub fn validate(settings: &Settings) -> Result<(), ConfigError> {
            $( <$field::$name as Plugin>::validate(&settings.$field)?; )*
            Ok(())
        }

        /// The transports the settings turn on.
        pub fn transports(
            settings: &crate::channels::Settings,
            ctx: &Context,
        ) -> Result<Vec<(Channel, Arc<dyn Transport>)>, ConfigError> {
            register();
            let mut out = Vec::new();
            $(
                if let Some(t) = <$field::$name as Plugin>::transport(settings, ctx)? {
                    let channel = Channel::stored(<$field::$name as Plugin>::NAME)
                        .expect("a registered channel");
                    out.push((channel, t));
                }
            )*
            Ok(out)
        }

        /// The chat channels' rooms the settings turn on, by channel name.
        pub fn rooms(
            settings: &Settings,
            ctx: &Context,
        ) -> Result<Vec<(&'static str, Arc<dyn chat::Room>)>, ConfigError> {
            let mut out = Vec::new();
            $(
                if let Some(r) = <$field::$name as Plugin>::room(&settings.$field, ctx)? {
                    out.push((<$field::$name as Plugin>::NAME, r));
                }
            )*
            Ok(out)
        }

        /// The deployment channels' destinations.
        pub fn destinations(settings: &Settings) -> Vec<(Channel, String)> {
            register();
            let mut out = Vec::new();
            $(
                for d in <$field::$name as Plugin>::destinations(&settings.$field) {
                    let channel = Channel::stored(<$field::$name as Plugin>::NAME)
                        .expect("a registered channel");
                    out.push((channel, d));
                }
            )*
            out
        }

        /// A personal channel's address, checked by its plug-in; `None` for a channel no
        /// plug-in has.
        pub fn check_address(channel: Channel, address: &str) -> Option<Result<String, String>> {
            $(
                if channel.as_str() == <$field::$name as Plugin>::NAME {
                    return Some(<$field::$name as Plugin>::check_address(address));
                }
            )*
            None
        }
    };
}

plugins! {
    email::Email,
    whatsapp::Whatsapp,
    sms::Sms,
    webhook::Webhook,
    push::Push,
    webpush::WebPush,
    fcm::Fcm,
    apns::Apns,
    file::FileSink,
    voice::Voice,
    slack::Slack,
    mattermost::Mattermost,
    teams::Teams,
}
