//! The devices push notifications reach: browsers' Web Push subscriptions and apps' FCM and
//! APNs tokens, each registered by its user.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::UserId;
use crate::routing::Channel;

/// A device to register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDevice {
    /// Its carrier: `Webpush`, `Fcm` or `Apns`.
    pub kind: Channel,
    /// The Web Push endpoint URL, or the FCM or APNs token.
    pub token: String,
    /// Web Push: the browser's P-256 public key (base64url, uncompressed).
    pub p256dh: Option<String>,
    /// Web Push: the browser's 16-byte authentication secret (base64url).
    pub auth: Option<String>,
}

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its id.
    pub id: i64,
    /// Whose it is.
    pub user: UserId,
    /// What was registered.
    pub device: NewDevice,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When a push last reached its provider.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What registering a device came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registered {
    /// A new device.
    Created(Device),
    /// The same endpoint or token was registered already by this user: the stored device,
    /// its keys refreshed.
    Existing(Device),
    /// A browser's subscription registered by another user, presented with its own secret
    /// (`auth`, which only that browser holds): the other user's device was removed (its
    /// queued pushes failed) and this one made, within the cap, on the audit trail.
    Moved(Device),
    /// Registered by another user, and nothing proves the caller holds it: nothing changed.
    /// The other user removes it, or the browser or app subscribes anew (a new endpoint or
    /// token is a new device).
    Taken,
    /// The user has `cap` devices already.
    Full {
        /// The cap.
        cap: i64,
    },
}

/// Devices.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Registers a device for `user`, at most `cap` per user.
    async fn register_device(
        &self,
        user: UserId,
        device: NewDevice,
        cap: i64,
    ) -> Result<Registered, StoreError>;
    /// A user's devices, oldest first.
    async fn devices(&self, user: UserId) -> Result<Vec<Device>, StoreError>;
    /// Removes one of a user's devices; answers whether it was there.
    async fn delete_device(&self, user: UserId, id: i64) -> Result<bool, StoreError>;
    /// Removes a device its provider says is gone (unsubscribed, expired, uninstalled), with
    /// its queued pushes; answers whether it was there.
    async fn device_gone(&self, id: i64) -> Result<bool, StoreError>;
    /// Notes that a push reached the device's provider.
    async fn device_used(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
}
