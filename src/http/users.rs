//! Users and the caller's profile: `me`, the user list, and the admins' user endpoints.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickethub_actors::domain::{Role, User};
use tickethub_actors::routing::Channel;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Json};
use super::openapi::RoleName;
use crate::state::AppState;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me))
        .routes(routes!(list_users))
        .routes(routes!(user_detail, update_user, erase_user))
}

/// Another user as a non-admin sees them: no addresses, no account flags.
#[derive(Serialize, Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PublicUser)]
pub struct PublicUserOut {
    /// The user's id.
    id: i64,
    /// The login name.
    username: String,
    /// The name shown to others (the username when none is set).
    display_name: String,
    /// The role.
    #[schema(value_type = RoleName)]
    role: &'static str,
}

impl From<&User> for PublicUserOut {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.0,
            username: u.username.clone(),
            display_name: u.name().to_owned(),
            role: u.role.as_str(),
        }
    }
}

/// A user as a caller may see them: every field ([`UserOut`]) for admins and the user
/// themselves, the public ones ([`PublicUserOut`]) for anyone else.
#[derive(Serialize, Debug, ToSchema)]
#[serde(untagged)]
pub enum ShownUser {
    /// Every field.
    Full(Box<UserOut>),
    /// The public fields.
    Public(PublicUserOut),
}

/// A user as `viewer` may see them.
fn shown_to(viewer: &Caller, u: &User) -> ShownUser {
    if viewer.is_admin() || viewer.0.id == u.id {
        ShownUser::Full(Box::new(UserOut::from(u)))
    } else {
        ShownUser::Public(PublicUserOut::from(u))
    }
}

/// A user as the API shows it.
#[derive(Serialize, Debug, ToSchema)]
#[schema(as = User)]
pub struct UserOut {
    /// The user's id.
    id: i64,
    /// The login name.
    username: String,
    /// The name shown to others (the username when none is set).
    display_name: String,
    /// The email address.
    #[schema(required = true)]
    email: Option<String>,
    /// The WhatsApp number, in international format.
    #[schema(required = true)]
    whatsapp_number: Option<String>,
    /// The phone number SMS go to, in international format.
    #[schema(required = true)]
    phone_number: Option<String>,
    /// When the SMS provider refused `phone_number` for good (not a valid mobile number, or
    /// unsubscribed with STOP): no SMS goes to it until a number is set again.
    #[schema(required = true, format = DateTime)]
    phone_number_invalid_at: Option<String>,
    /// When `email` was verified; null while it waits for its owner's code (nothing but the
    /// code goes to it meanwhile).
    #[schema(required = true, format = DateTime)]
    email_verified_at: Option<String>,
    /// When `whatsapp_number` was verified; null while it waits for its owner's code.
    #[schema(required = true, format = DateTime)]
    whatsapp_verified_at: Option<String>,
    /// When `phone_number` was verified; null while it waits for its owner's code.
    #[schema(required = true, format = DateTime)]
    phone_verified_at: Option<String>,
    /// Every address of the user's, by channel (email, whatsapp, sms, and any other channel
    /// with an address of each user's own): the address, when it was verified, and when its
    /// provider refused it.
    addresses: std::collections::BTreeMap<String, super::addresses::AddressOut>,
    /// The role.
    #[schema(value_type = RoleName)]
    role: &'static str,
    /// Whether the user is a super admin.
    is_superuser: bool,
    /// Whether the account is active.
    is_active: bool,
    /// When the account was created.
    #[schema(format = DateTime)]
    date_joined: String,
}

impl From<&User> for UserOut {
    fn from(u: &User) -> Self {
        let at = |channel: Channel,
                  when: fn(
            &tickethub_actors::domain::Address,
        ) -> Option<chrono::DateTime<chrono::Utc>>| {
            u.address(channel).and_then(when).map(super::timestamp)
        };
        Self {
            id: u.id.0,
            username: u.username.clone(),
            display_name: u.name().to_owned(),
            email: u.address_of(Channel::Email).map(str::to_owned),
            whatsapp_number: u.address_of(Channel::Whatsapp).map(str::to_owned),
            phone_number: u.address_of(Channel::Sms).map(str::to_owned),
            phone_number_invalid_at: at(Channel::Sms, |a| a.invalid_at),
            email_verified_at: at(Channel::Email, |a| a.verified_at),
            whatsapp_verified_at: at(Channel::Whatsapp, |a| a.verified_at),
            phone_verified_at: at(Channel::Sms, |a| a.verified_at),
            addresses: super::addresses::addresses_out(u),
            role: u.role.as_str(),
            is_superuser: u.is_superuser,
            is_active: u.is_active,
            date_joined: super::timestamp(u.created_at),
        }
    }
}

#[derive(Deserialize)]
struct UsersQuery {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    is_active: Option<String>,
    #[serde(default)]
    search: Option<String>,
    #[serde(flatten)]
    page: super::PageParams,
}

/// Which accounts an admin lists.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub(crate) enum ActiveFilter {
    /// Active accounts (the default).
    True,
    /// Deactivated (and erased) ones.
    False,
    /// Both.
    All,
}

/// Lists active users, optionally of one role, a page at a time: everyone for admins; for
/// others, the people who share a project with them (so a client can see who works on their
/// tickets). Admins may list deactivated accounts too (`is_active=false` or `all`); `search`
/// keeps the usernames that contain it.
#[utoipa::path(
    get,
    path = "/api/users/",
    operation_id = "users_list",
    tag = "users",
    params(
        ("role" = Option<RoleName>, Query, description = "Only users of this role."),
        ("is_active" = Option<ActiveFilter>, Query, description = "Admins: `true` (the default), `false` or `all`; others always see active users."),
        ("search" = Option<String>, Query, description = "Only usernames that contain this text."),
        super::openapi::PageQuery,
    ),
    responses(
        (status = 200, description = "A page of the active users the caller may see, by id: admins see every field, others see their co-members' public fields only (`PublicUser`).", body = super::Page<ShownUser>),
        (status = 400, description = "The role or `is_active` is unknown.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "Invalid page.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    super::extract::Query(q): super::extract::Query<UsersQuery>,
    parts: axum::http::request::Parts,
) -> Result<Json<super::Page<ShownUser>>, ApiError> {
    let role = q
        .role
        .as_deref()
        .map(|r| {
            r.parse::<Role>()
                .map_err(|e| ApiError::bad_request(format!("role: {e}")))
        })
        .transpose()?;
    let active = match q.is_active.as_deref() {
        None | Some("true") => Some(true),
        Some("false") => Some(false),
        Some("all") => None,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "is_active: \"{other}\" is not a valid choice (true, false, all)."
            )))
        }
    };
    let (n, page) = q.page.page()?;
    let query = tickethub_actors::ports::UserQuery {
        role,
        // Others see the active people they share a project with, whatever they ask.
        active: if caller.is_admin() {
            active
        } else {
            Some(true)
        },
        visible_to: (!caller.is_admin()).then_some(caller.0.id),
        username_contains: q
            .search
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
    };
    let (count, users) = state.store.find_users(query, page).await?;
    Ok(Json(super::paginated(
        &parts,
        n,
        page.limit,
        count,
        users.iter().map(|u| shown_to(&caller, u)).collect(),
    )?))
}

/// The caller's profile.
#[utoipa::path(
    get,
    path = "/api/users/me/",
    operation_id = "users_me",
    tag = "users",
    responses(
        (status = 200, description = "The caller.", body = MeOut),
        (status = 401, description = "No valid access token.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<MeOut>, ApiError> {
    Ok(Json(MeOut::of(&state, &caller.0).await?))
}

/// The caller: their profile, time zone, language and quiet hours.
#[derive(Serialize, ToSchema)]
#[schema(as = Me)]
pub struct MeOut {
    #[serde(flatten)]
    user: UserOut,
    /// Their IANA time zone, if they gave one: quiet hours and the times in their messages
    /// are in it.
    #[schema(required = true)]
    time_zone: Option<String>,
    /// Their language for messages (a BCP 47 tag, `de`, `pt-BR`), if they gave one: templates
    /// are looked up in it first.
    #[schema(required = true)]
    locale: Option<String>,
    /// When email, SMS, push, chat and voice wait for them (`HH:MM` in `time_zone`, or UTC
    /// without one), unless the notification is a page; null: never.
    #[schema(required = true)]
    quiet_hours: Option<QuietHoursJson>,
    /// Their digest of what reached them nowhere else; null: none.
    #[schema(required = true)]
    digest: Option<DigestJson>,
}

/// A digest: one email, `hourly` (at `at`'s minute) or `daily` (at `at`), in the person's
/// `time_zone` (UTC without one), summing up their unread notifications that no other channel
/// sent them, by ticket. `off` stops it.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DigestJson {
    /// `hourly`, `daily` or `off`.
    #[schema(example = "daily", pattern = r"^(hourly|daily|off)$")]
    every: String,
    /// When, `HH:MM` (default `08:00`; hourly digests use its minute).
    #[serde(default)]
    #[schema(example = "08:00", pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    at: Option<String>,
}

/// Quiet hours: from `start` to `end` each day (an `end` before `start` runs past midnight).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursJson {
    /// When they begin, `HH:MM`.
    #[schema(example = "22:00", pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    start: String,
    /// When they end, `HH:MM`.
    #[schema(example = "07:00", pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    end: String,
}

impl MeOut {
    pub(crate) async fn of(state: &AppState, user: &User) -> Result<Self, ApiError> {
        let quiet = state.store.quiet(user.id).await?;
        Ok(Self {
            user: UserOut::from(user),
            time_zone: quiet.time_zone,
            locale: quiet.locale,
            quiet_hours: quiet.hours.map(|h| QuietHoursJson {
                start: h.start.name(),
                end: h.end.name(),
            }),
            digest: quiet.digest.map(|d| DigestJson {
                every: d.every.as_str().to_owned(),
                at: Some(d.at.name()),
            }),
        })
    }
}

/// Changes to the caller's profile; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProfileChanges)]
pub(crate) struct ProfileIn {
    /// The name shown to others, at most 150 characters.
    #[serde(default)]
    #[schema(max_length = 150)]
    pub(crate) display_name: Option<String>,
    /// An email address; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub(crate) email: Option<Option<String>>,
    /// A WhatsApp number in international format; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub(crate) whatsapp_number: Option<Option<String>>,
    /// A phone number for SMS in international format; `null` clears it. Setting it (again)
    /// clears `phone_number_invalid_at`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub(crate) phone_number: Option<Option<String>>,
    /// Addresses by channel, for any channel with an address of each user's own (`email`,
    /// `whatsapp`, `sms` and this hub's others); `null` clears one.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::BTreeMap<String, Option<String>>>)]
    pub(crate) addresses: Option<std::collections::BTreeMap<String, Option<String>>>,
    /// An IANA time zone (`Europe/Berlin`) for quiet hours; `null` clears it (UTC).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 64)]
    pub(crate) time_zone: Option<Option<String>>,
    /// Quiet hours, `{"start": "22:00", "end": "07:00"}`; `null` turns them off.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<QuietHoursJson>)]
    pub(crate) quiet_hours: Option<Option<QuietHoursJson>>,
    /// A language for messages, as a BCP 47 tag (`de`, `de-CH`, `pt-BR`); `null` clears it
    /// (the default templates).
    #[serde(default, deserialize_with = "present")]
    #[schema(
        value_type = Option<String>,
        max_length = 35,
        example = "de",
        pattern = r"^[A-Za-z]{2,3}([-_][A-Za-z]{4})?([-_]([A-Za-z]{2}|[0-9]{3}))?$"
    )]
    pub(crate) locale: Option<Option<String>>,
    /// A digest, `{"every": "daily", "at": "08:00"}`; `{"every": "off"}` or `null` stops it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DigestJson>)]
    pub(crate) digest: Option<Option<DigestJson>>,
}

/// Tells a field that is absent (`None`) from one that is `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Changes the caller's profile.
#[utoipa::path(
    patch,
    path = "/api/users/me/",
    operation_id = "users_me_update",
    tag = "users",
    request_body = ProfileIn,
    responses(
        (status = 200, description = "The caller, changed.", body = MeOut),
        (status = 400, description = "A field is invalid or unknown.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn update_me(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ProfileIn>,
) -> Result<Json<MeOut>, ApiError> {
    let quiet = quiet_changes(
        &state,
        &caller.0,
        body.time_zone,
        body.quiet_hours,
        body.locale,
        body.digest,
    )
    .await?;
    let changes = profile_changes(
        body.display_name,
        super::addresses::changes(
            body.email,
            body.whatsapp_number,
            body.phone_number,
            body.addresses,
        )?,
    )?;
    let typed = !changes.addresses.is_empty();
    let user = state
        .store
        .update_profile(caller.0.id, changes)
        .await?
        .ok_or_else(ApiError::not_found)?;
    // A new address of their own waits for its code.
    if typed {
        state.verifier.start_all(&user).await;
    }
    if let Some(quiet) = quiet {
        state.store.set_quiet(user.id, quiet).await?;
    }
    Ok(Json(MeOut::of(&state, &user).await?))
}

/// The caller's time zone, quiet hours and language after a change, checked; `None` when the
/// request changes none of them.
async fn quiet_changes(
    state: &AppState,
    user: &User,
    time_zone: Option<Option<String>>,
    hours: Option<Option<QuietHoursJson>>,
    locale: Option<Option<String>>,
    digest: Option<Option<DigestJson>>,
) -> Result<Option<tickethub_actors::ports::Quiet>, ApiError> {
    use tickethub_actors::oncall::Handoff;
    if time_zone.is_none() && hours.is_none() && locale.is_none() && digest.is_none() {
        return Ok(None);
    }
    let mut quiet = state.store.quiet(user.id).await?;
    if let Some(digest) = digest {
        quiet.digest = match digest {
            None => None,
            Some(d) if d.every == "off" => None,
            Some(d) => {
                use tickethub_actors::quiet::{Digest, DigestEvery};
                let every = DigestEvery::parse(&d.every).ok_or_else(|| {
                    ApiError::bad_request("digest.every: `hourly`, `daily` or `off`.")
                })?;
                let at = Handoff::parse(d.at.as_deref().unwrap_or("08:00"))
                    .map_err(|e| ApiError::bad_request(format!("digest.at: {e}.")))?;
                Some(Digest { every, at })
            }
        };
    }
    if let Some(locale) = locale {
        quiet.locale = match locale {
            Some(tag) => Some(
                crate::delivery::templates::locale_tag(&tag)
                    .map_err(|e| ApiError::bad_request(format!("locale: {e}")))?,
            ),
            None => None,
        };
    }
    if let Some(zone) = time_zone {
        if let Some(zone) = &zone {
            tickethub_actors::oncall::time_zone(zone).map_err(ApiError::bad_request)?;
        }
        quiet.time_zone = zone;
    }
    let zone = quiet.time_zone.clone().unwrap_or_else(|| "UTC".into());
    quiet.hours = match hours {
        None => quiet.hours.map(|h| tickethub_actors::quiet::QuietHours {
            time_zone: zone.clone(),
            ..h
        }),
        Some(None) => None,
        Some(Some(h)) => {
            let at = |field: &str, text: &str| {
                Handoff::parse(text)
                    .map_err(|e| ApiError::bad_request(format!("quiet_hours.{field}: {e}.")))
            };
            let (start, end) = (at("start", &h.start)?, at("end", &h.end)?);
            if start == end {
                return Err(ApiError::bad_request(
                    "quiet_hours: start and end are the same time; give null to turn them off.",
                ));
            }
            Some(tickethub_actors::quiet::QuietHours {
                time_zone: zone,
                start,
                end,
            })
        }
    };
    Ok(Some(quiet))
}

/// Validates a name into profile changes, with the addresses checked already
/// ([`super::addresses::changes`]).
pub(crate) fn profile_changes(
    display_name: Option<String>,
    addresses: Vec<(Channel, Option<String>)>,
) -> Result<tickethub_actors::ports::ProfileChanges, ApiError> {
    if let Some(name) = &display_name {
        check_display_name(name)?;
    }
    Ok(tickethub_actors::ports::ProfileChanges {
        display_name: display_name.map(|n| n.trim().to_owned()),
        addresses,
        ..Default::default()
    })
}

pub use tickethub_actors::domain::MAX_USERNAME;

/// The longest display name, in characters.
const MAX_DISPLAY_NAME: usize = 150;

/// One user, for admins.
#[utoipa::path(
    get,
    path = "/api/users/{id}/",
    operation_id = "users_detail",
    tag = "users",
    params(("id" = i64, Path, description = "The user's id.")),
    responses(
        (status = 200, description = "The user.", body = UserOut),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn user_detail(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<UserOut>, ApiError> {
    let user = administered(&state, &caller, &id).await?;
    Ok(Json(UserOut::from(&user)))
}

/// An admin's changes to a user; absent fields stay as they are, and read-only fields
/// (`id`, `username`, `is_superuser`, `date_joined`) are ignored, as in Django REST Framework.
#[derive(Deserialize, ToSchema)]
#[schema(as = UserChanges)]
pub(crate) struct UserChangesIn {
    /// A new role.
    #[serde(default)]
    #[schema(value_type = Option<RoleName>)]
    pub(crate) role: Option<String>,
    /// `false` deactivates the account: its sockets close with 4001 on every node and its
    /// tokens stop working; `true` activates it again.
    #[serde(default)]
    is_active: Option<bool>,
    /// The name shown to others, at most 150 characters.
    #[serde(default)]
    pub(crate) display_name: Option<String>,
    /// An email address; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub(crate) email: Option<Option<String>>,
    /// A WhatsApp number in international format; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub(crate) whatsapp_number: Option<Option<String>>,
    /// A phone number for SMS in international format; `null` clears it. Setting it (again)
    /// clears `phone_number_invalid_at`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub(crate) phone_number: Option<Option<String>>,
    /// Addresses by channel, for any channel with an address of each user's own (`email`,
    /// `whatsapp`, `sms` and this hub's others); `null` clears one.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::BTreeMap<String, Option<String>>>)]
    pub(crate) addresses: Option<std::collections::BTreeMap<String, Option<String>>>,
}

/// Changes a user (admins): role, active flag, name and addresses.
#[utoipa::path(
    patch,
    path = "/api/users/{id}/",
    operation_id = "users_update",
    tag = "users",
    params(("id" = i64, Path, description = "The user's id.")),
    request_body = UserChangesIn,
    responses(
        (status = 200, description = "The user, changed.", body = UserOut),
        (status = 400, description = "A field is invalid, or an admin tried to deactivate or demote themselves.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(body): Json<UserChangesIn>,
) -> Result<Json<UserOut>, ApiError> {
    let target = administered(&state, &caller, &id).await?;
    let role = body
        .role
        .as_deref()
        .map(|r| {
            r.parse::<Role>()
                .map_err(|e| ApiError::bad_request(format!("role: {e}")))
        })
        .transpose()?;
    if target.id == caller.0.id
        && (body.is_active == Some(false) || role.is_some_and(|r| r != Role::Admin))
    {
        return Err(ApiError::bad_request(
            "An admin cannot deactivate or demote themselves.",
        ));
    }
    let mut changes = profile_changes(
        body.display_name,
        super::addresses::changes(
            body.email,
            body.whatsapp_number,
            body.phone_number,
            body.addresses,
        )?,
    )?;
    changes.role = role;
    changes.is_active = body.is_active;
    // An admin vouches for the addresses they set.
    changes.vouched = true;
    changes.by = Some(caller.label());
    let user = state
        .store
        .update_profile(target.id, changes)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if user.token_version != target.token_version {
        // A deactivation or another role: the user's tokens are void, and every socket of
        // theirs closes (4001) on every node, so that no open socket keeps the old powers.
        tracing::info!(
            user_id = user.id.0,
            by = caller.0.id.0,
            active = user.is_active,
            role = user.role.as_str(),
            "user's sessions ended"
        );
        state.hub.sessions_ended(user.id);
    }
    Ok(Json(UserOut::from(&user)))
}

#[derive(Deserialize)]
struct EraseQuery {
    #[serde(default)]
    erase: Option<String>,
}

/// Erases a person (admins): their inbox, preferences, tokens, addresses and memberships go,
/// and every socket of theirs closes (4001) on every node; their tickets and comments stay,
/// signed "Erased user". `?erase=true` is required: a user to keep but stop is deactivated
/// with `PATCH {"is_active": false}`.
#[utoipa::path(
    delete,
    path = "/api/users/{id}/",
    operation_id = "users_erase",
    tag = "users",
    params(
        ("id" = i64, Path, description = "The user's id."),
        ("erase" = bool, Query, description = "Must be `true`: erasure cannot be undone."),
    ),
    responses(
        (status = 204, description = "Erased."),
        (status = 400, description = "`erase=true` is missing, or an admin tried to erase themselves.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn erase_user(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
    super::extract::Query(q): super::extract::Query<EraseQuery>,
) -> Result<StatusCode, ApiError> {
    let target = administered(&state, &caller, &id).await?;
    if !q
        .erase
        .as_deref()
        .map(|v| super::parse_bool("erase", v))
        .transpose()?
        .unwrap_or(false)
    {
        return Err(ApiError::bad_request(
            "erase: Give erase=true to erase this person for good; to stop them but keep them, PATCH {\"is_active\": false}.",
        ));
    }
    if target.id == caller.0.id {
        return Err(ApiError::bad_request("An admin cannot erase themselves."));
    }
    state
        .store
        .erase_user(target.id, &caller.label())
        .await?
        .ok_or_else(ApiError::not_found)?;
    tracing::info!(user_id = target.id.0, by = caller.0.id.0, "user erased");
    state.hub.sessions_ended(target.id);
    // The files they attached are removed now, not at the sweeper's next round.
    if let Some(files) = &state.attachments {
        files.sweep_soon();
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The user an admin names by id: 403 for non-admins, 404 for an unknown id.
async fn administered(state: &AppState, caller: &Caller, id: &str) -> Result<User, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::forbidden(
            "You do not have permission to perform this action.",
        ));
    }
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    state
        .store
        .user_by_id(tickethub_actors::domain::UserId(id))
        .await?
        .ok_or_else(ApiError::not_found)
}

/// Checks a username the way Django does: 1 to 150 letters, digits and `@.+-_`.
pub fn validate_username(username: &str) -> Result<(), ApiError> {
    let ok = !username.is_empty()
        && username.chars().count() <= MAX_USERNAME
        && username
            .chars()
            .all(|c| c.is_alphanumeric() || "@.+-_".contains(c));
    if !ok {
        return Err(ApiError::bad_request(
            "username: Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.",
        ));
    }
    // The keys' namespace, in any look-alike spelling (`keyː…` with a modifier letter).
    if crate::store::username_key(username)
        .starts_with(tickethub_actors::domain::SERVICE_USER_PREFIX)
    {
        return Err(ApiError::bad_request(
            "username: Names that read `key:` are kept for API keys.",
        ));
    }
    Ok(())
}

/// A display name is shown to other people beside their names and titles: at most 150
/// characters, and none that are invisible or reorder the text around them (control
/// characters, bidirectional overrides and isolates, zero-width characters), which could make
/// one person's name read as another's.
pub fn check_display_name(name: &str) -> Result<(), ApiError> {
    if name.chars().count() > MAX_DISPLAY_NAME {
        return Err(ApiError::bad_request(
            "display_name: Ensure this field has no more than 150 characters.",
        ));
    }
    let hidden = |c: char| {
        c.is_control()
            || matches!(c,
                '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{061C}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}')
    };
    if name.chars().any(hidden) {
        return Err(ApiError::bad_request(
            "display_name: Control, zero-width and text-direction characters are not allowed.",
        ));
    }
    Ok(())
}

pub use super::addresses::{is_plausible_email, is_plausible_phone};
