//! A user's addresses over the API: the seeds' fields (`email`, `whatsapp_number`,
//! `phone_number`, with `phone_number_invalid_at` and each one's `*_verified_at`), and
//! `addresses`, one entry per personal channel, whichever channels this hub has.

use std::collections::BTreeMap;

use serde::Serialize;
use tickethub_actors::domain::User;
use tickethub_actors::routing::{Channel, Reach};
use utoipa::ToSchema;

use super::error::ApiError;

/// One address of a user's, as its owner and admins see it.
#[derive(Serialize, Debug, Clone, ToSchema)]
pub struct AddressOut {
    /// The address.
    pub address: String,
    /// When it was verified; null while it waits for its owner's code (nothing but the code
    /// goes to it meanwhile).
    #[schema(required = true, format = DateTime)]
    pub verified_at: Option<String>,
    /// When the provider refused it for good; nothing goes to it until it is set again.
    #[schema(required = true, format = DateTime)]
    pub invalid_at: Option<String>,
}

/// A user's addresses by channel.
pub fn addresses_out(u: &User) -> BTreeMap<String, AddressOut> {
    u.addresses
        .iter()
        .map(|a| {
            (
                a.channel.as_str().to_owned(),
                AddressOut {
                    address: a.address.clone(),
                    verified_at: a.verified_at.map(super::timestamp),
                    invalid_at: a.invalid_at.map(super::timestamp),
                },
            )
        })
        .collect()
}

/// The seeds' field naming a channel's address (`email`, `whatsapp_number`, `phone_number`).
pub fn seed_field(channel: Channel) -> Option<&'static str> {
    match channel {
        Channel::Email => Some("email"),
        Channel::Whatsapp => Some("whatsapp_number"),
        Channel::Sms => Some("phone_number"),
        _ => None,
    }
}

pub use crate::channels::email::is_plausible_email;
pub use crate::channels::sms::is_plausible_phone;

/// Checks an address for `channel`, named `field` in errors: by the channel's plug-in (an
/// email address, an E.164 number, …).
pub fn check(channel: Channel, field: &str, address: &str) -> Result<String, ApiError> {
    match crate::channels::check_address(channel, address) {
        Some(Ok(address)) => Ok(address),
        Some(Err(why)) => Err(ApiError::bad_request(format!("{field}: {why}"))),
        None => Err(ApiError::bad_request(format!(
            "{field}: `{}` takes no addresses.",
            channel.as_str()
        ))),
    }
}

/// The address changes a request asks for: the seeds' fields, and `addresses` (a channel's
/// name to an address, or `null` to remove it). An empty address removes it too. Each is
/// checked for its channel; a channel that is not a personal one of this hub is refused.
pub fn changes(
    email: Option<Option<String>>,
    whatsapp_number: Option<Option<String>>,
    phone_number: Option<Option<String>>,
    addresses: Option<BTreeMap<String, Option<String>>>,
) -> Result<Vec<(Channel, Option<String>)>, ApiError> {
    let mut out: Vec<(Channel, Option<String>)> = Vec::new();
    let mut add = |channel: Channel, field: &str, value: Option<String>| {
        let value = value.filter(|v| !v.trim().is_empty());
        let value = value.map(|v| check(channel, field, &v)).transpose()?;
        if out.iter().any(|(c, _)| *c == channel) {
            return Err(ApiError::bad_request(format!(
                "{field}: The {} address is given twice.",
                channel.as_str()
            )));
        }
        out.push((channel, value));
        Ok::<(), ApiError>(())
    };
    for (channel, value) in [
        (Channel::Email, email),
        (Channel::Whatsapp, whatsapp_number),
        (Channel::Sms, phone_number),
    ] {
        if let Some(value) = value {
            add(channel, seed_field(channel).unwrap_or_default(), value)?;
        }
    }
    for (name, value) in addresses.unwrap_or_default() {
        let field = format!("addresses.{name}");
        let channel = Channel::stored(&name)
            .filter(|c| c.reach() == Reach::Personal)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{field}: `{name}` is not a channel with an address of each user's own."
                ))
            })?;
        add(channel, &field, value)?;
    }
    Ok(out)
}
