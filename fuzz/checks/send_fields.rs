//! The fields of a send: the REST API's `send` body and the `send_notification` frame (seed
//! 001's and seed 003's), one list for both targets' checks.

/// Every field a send may carry.
pub const SEND_FIELDS: &[&str] = &[
    "user_ids",
    "user_id",
    "role",
    "title",
    "message",
    "notification_type",
    "data",
    "link",
    "channels",
];
