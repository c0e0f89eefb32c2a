//! `push`: the user's registered devices, a routing channel queued per device on the device's
//! own carrier (Web Push, FCM, APNs), and the settings the carriers share.

use std::sync::Arc;

use clap::ValueEnum;

use crate::setting::ConfigError;

mod shared;
pub use shared::*;

/// What a push notification carries off the hub.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushContent {
    /// Title, body, link, and the notification's id, seq, type and priority.
    Full,
    /// The title only, with the id and seq the app needs to fetch the rest.
    Minimal,
}

/// The settings every push carrier shares.
#[derive(clap::Args, Clone, Debug)]
#[group(skip)]
pub struct Settings {
    /// What a push carries: `full` (title, body, link) or `minimal` (the title only).
    #[arg(
        long,
        env = "TICKETHUB_PUSH_CONTENT",
        value_enum,
        default_value = "full"
    )]
    pub push_content: PushContent,

    /// How long a push service keeps a push for a device that is offline, in seconds.
    #[arg(long, env = "TICKETHUB_PUSH_TTL", default_value_t = 86_400)]
    pub push_ttl: u64,

    /// The most devices one user may register.
    #[arg(long, env = "TICKETHUB_PUSH_DEVICE_CAP", default_value_t = 20)]
    pub push_device_cap: i64,

    /// Allow Web Push endpoints on private, loopback and link-local addresses, and over
    /// plain http (closed networks and tests).
    #[arg(long, env = "TICKETHUB_PUSH_ALLOW_PRIVATE")]
    pub push_allow_private: bool,
}

/// `push`: queued per registered device on its carrier; no transport of its own.
pub struct Push;

impl crate::channels::Plugin for Push {
    const NAME: &'static str = "push";
    const REACH: tickethub_actors::routing::Reach = tickethub_actors::routing::Reach::Devices;
    type Settings = Settings;

    fn validate(s: &Settings) -> Result<(), ConfigError> {
        if s.push_device_cap < 1 {
            return Err(ConfigError::new(
                "--push-device-cap (TICKETHUB_PUSH_DEVICE_CAP)",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    fn transport(
        _settings: &crate::channels::Settings,
        _ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn tickethub_actors::ports::Transport>>, ConfigError> {
        Ok(None)
    }
}
