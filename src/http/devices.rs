//! `/api/devices/`: the devices a user's pushes reach (a browser's Web Push subscription, an
//! app's FCM or APNs token), and `/api/push/vapid/`, the key a browser subscribes with.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickethub_actors::ports::{Device, NewDevice, Registered, StoreError};
use tickethub_actors::routing::Channel;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Json};
use super::timestamp;
use crate::channels::webpush;
use crate::state::AppState;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, register))
        .routes(routes!(remove))
        .routes(routes!(vapid))
}

/// A registered device. Its endpoint or token is not shown back.
#[derive(Serialize, ToSchema)]
pub struct DeviceJson {
    /// Its id.
    pub id: i64,
    /// `webpush`, `fcm` or `apns`.
    pub kind: &'static str,
    /// Web Push: the push service's host (`fcm.googleapis.com`, `updates.push.services.mozilla.com`, …).
    pub push_service: Option<String>,
    /// When it was registered.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When a push last reached its provider, or null.
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
}

impl From<&Device> for DeviceJson {
    fn from(d: &Device) -> Self {
        Self {
            id: d.id,
            kind: d.device.kind.as_str(),
            push_service: (d.device.kind == Channel::Webpush)
                .then(|| {
                    reqwest::Url::parse(&d.device.token)
                        .ok()
                        .and_then(|u| u.host_str().map(str::to_owned))
                })
                .flatten(),
            created_at: timestamp(d.created_at),
            last_used_at: d.last_used_at.map(timestamp),
        }
    }
}

/// A browser's `PushSubscription`, as `subscription.toJSON()` gives it.
#[derive(Deserialize, ToSchema)]
pub(crate) struct SubscriptionIn {
    /// The push service's URL for this browser (https, on a public address).
    endpoint: String,
    /// The browser's keys.
    keys: SubscriptionKeys,
    /// Ignored (browsers send it).
    #[serde(default, rename = "expirationTime")]
    #[allow(dead_code)]
    expiration_time: Option<serde_json::Value>,
}

/// A subscription's keys.
#[derive(Deserialize, ToSchema)]
pub(crate) struct SubscriptionKeys {
    /// The browser's P-256 public key, base64url.
    p256dh: String,
    /// The browser's 16-byte authentication secret, base64url.
    auth: String,
}

/// A device to register.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(
    json!({"kind": "webpush", "subscription": {"endpoint": "https://fcm.googleapis.com/fcm/send/c1…", "keys": {"p256dh": "BNc…", "auth": "tBH…"}}}),
    json!({"kind": "fcm", "token": "dQw4w9WgXcQ:APA91b…"}),
    json!({"kind": "apns", "token": "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad"})
))]
pub(crate) struct DeviceIn {
    /// `webpush`, `fcm` or `apns`.
    kind: String,
    /// With `webpush`: the browser's subscription.
    #[serde(default)]
    subscription: Option<SubscriptionIn>,
    /// With `fcm` or `apns`: the app's registration token.
    #[serde(default)]
    token: Option<String>,
}

/// The Web Push key.
#[derive(Serialize, ToSchema)]
pub struct VapidJson {
    /// The application server key, P-256 uncompressed, base64url: pass it to
    /// `pushManager.subscribe({userVisibleOnly: true, applicationServerKey})`.
    pub public_key: String,
}

const MAX_TOKEN: usize = 4096;

/// The device a request describes, checked.
async fn parse(body: DeviceIn, state: &AppState) -> Result<NewDevice, ApiError> {
    let settings = &state.push;
    match body.kind.as_str() {
        "webpush" => {
            if settings.vapid_public_key.is_none() {
                return Err(ApiError::bad_request(
                    "Web Push is not configured on this hub (--webpush-vapid-key).",
                ));
            }
            if body.token.is_some() {
                return Err(ApiError::bad_request(
                    "`webpush` takes `subscription`, not `token`.",
                ));
            }
            let sub = body.subscription.ok_or_else(|| {
                ApiError::bad_request(
                    "`webpush` needs `subscription`: {endpoint, keys: {p256dh, auth}}.",
                )
            })?;
            if sub.endpoint.len() > MAX_TOKEN {
                return Err(ApiError::bad_request("`endpoint` is too long."));
            }
            let url = webpush::check_endpoint(&sub.endpoint, settings.allow_private)
                .map_err(ApiError::bad_request)?;
            if !settings.allow_private {
                webpush::resolves_publicly(&url, &state.dns)
                    .await
                    .map_err(|e| match e {
                        crate::delivery::outbound::DnsError::Busy => {
                            ApiError::unavailable(e.to_string()).retry_after(1)
                        }
                        crate::delivery::outbound::DnsError::Failed(why) => {
                            ApiError::bad_request(why)
                        }
                    })?;
            }
            webpush::subscription_keys(Some(&sub.keys.p256dh), Some(&sub.keys.auth)).map_err(
                |e| {
                    ApiError::bad_request(format!(
                        "`subscription.keys`: {}",
                        e.to_string().trim_start_matches("permanent: ")
                    ))
                },
            )?;
            Ok(NewDevice {
                kind: Channel::Webpush,
                // As parsed: control characters percent-encoded, the host lowercased.
                token: url.to_string(),
                p256dh: Some(sub.keys.p256dh),
                auth: Some(sub.keys.auth),
            })
        }
        kind @ ("fcm" | "apns") => {
            let (channel, on) = if kind == "fcm" {
                (Channel::Fcm, settings.fcm)
            } else {
                (Channel::Apns, settings.apns)
            };
            if !on {
                return Err(ApiError::bad_request(format!(
                    "{kind} is not configured on this hub."
                )));
            }
            if body.subscription.is_some() {
                return Err(ApiError::bad_request(format!(
                    "`{kind}` takes `token`, not `subscription`."
                )));
            }
            let token = body
                .token
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| ApiError::bad_request(format!("`{kind}` needs `token`.")))?;
            let valid = token.len() <= MAX_TOKEN
                && if channel == Channel::Apns {
                    token.len() >= 32 && token.bytes().all(|b| b.is_ascii_hexdigit())
                } else {
                    token.bytes().all(|b| b.is_ascii_graphic())
                };
            if !valid {
                return Err(ApiError::bad_request(if channel == Channel::Apns {
                    "`token`: an APNs device token is hexadecimal.".to_owned()
                } else {
                    "`token`: printable characters only, at most 4096.".to_owned()
                }));
            }
            Ok(NewDevice {
                kind: channel,
                // An APNs token is hex, in whichever case the app printed it: one device.
                token: if channel == Channel::Apns {
                    token.to_ascii_lowercase()
                } else {
                    token
                },
                p256dh: None,
                auth: None,
            })
        }
        other => Err(ApiError::bad_request(format!(
            "`kind`: `{other}` is not a device kind (webpush, fcm or apns)."
        ))),
    }
}

/// The caller's devices, oldest first.
#[utoipa::path(
    get,
    path = "/api/devices/",
    operation_id = "devices_list",
    tag = "devices",
    responses(
        (status = 200, description = "The caller's devices.", body = Vec<DeviceJson>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<DeviceJson>>, ApiError> {
    let devices = state.store.devices(caller.0.id).await?;
    Ok(Json(devices.iter().map(DeviceJson::from).collect()))
}

/// Registers a device for the caller's pushes. The same subscription or token again answers
/// 200 with the device it is. One another user registered is not taken over: a browser that
/// presents the subscription's own keys proves it holds it (the other user's device goes and
/// this one is made, 201, on the audit trail); otherwise 409 until the other user removes it,
/// or the browser or app subscribes anew.
#[utoipa::path(
    post,
    path = "/api/devices/",
    operation_id = "devices_register",
    tag = "devices",
    request_body = DeviceIn,
    responses(
        (status = 201, description = "Registered.", body = DeviceJson),
        (status = 200, description = "Registered already.", body = DeviceJson),
        (status = 400, description = "An unknown kind, a carrier this hub has not configured, a bad token or keys, or an endpoint that is not https on a public address.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 409, description = "The caller has as many devices as allowed (`--push-device-cap`), or another user registered this device.", body = ErrorBody),
        (status = 429, description = "Too many writes.", body = ErrorBody),
        (status = 503, description = "The hub is busy resolving other endpoints; `Retry-After` says when to try again.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<DeviceIn>,
) -> Result<(StatusCode, Json<DeviceJson>), ApiError> {
    state.limits.write(caller.0.id)?;
    let device = parse(body, &state).await?;
    let register = || {
        state
            .store
            .register_device(caller.0.id, device.clone(), state.push.device_cap)
    };
    // Two registrations of one device at once: the one that lost the insert finds the other's.
    let registered = match register().await {
        Err(StoreError::Conflict(_)) => register().await?,
        other => other?,
    };
    match registered {
        Registered::Created(d) | Registered::Moved(d) => {
            Ok((StatusCode::CREATED, Json(DeviceJson::from(&d))))
        }
        Registered::Taken => Err(ApiError::new(
            StatusCode::CONFLICT,
            "Another account registered this device. Remove it there, or subscribe anew (a new subscription or token is a new device).",
        )),
        Registered::Existing(d) => Ok((StatusCode::OK, Json(DeviceJson::from(&d)))),
        Registered::Full { cap } => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("You have {cap} devices, the most allowed: remove one first."),
        )),
    }
}

/// Removes one of the caller's devices; pushes queued for it are not sent.
#[utoipa::path(
    delete,
    path = "/api/devices/{id}/",
    operation_id = "devices_delete",
    tag = "devices",
    params(("id" = i64, Path, description = "The device.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "The caller has no such device.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // A path that is not an id names no device, as DRF answers it.
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    if state.store.delete_device(caller.0.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// The Web Push application server key, for `pushManager.subscribe`. No token needed.
#[utoipa::path(
    get,
    path = "/api/push/vapid/",
    operation_id = "push_vapid",
    tag = "devices",
    responses(
        (status = 200, description = "The key.", body = VapidJson),
        (status = 404, description = "Web Push is not configured on this hub.", body = ErrorBody),
    )
)]
async fn vapid(State(state): State<AppState>) -> Result<Json<VapidJson>, ApiError> {
    let key = state.push.vapid_public_key.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "Web Push is not configured on this hub.",
        )
    })?;
    Ok(Json(VapidJson { public_key: key }))
}
