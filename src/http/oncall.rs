//! `/api/oncall/schedules/`: on-call schedules (admins make them; a global schedule is seen by
//! everyone signed in, a project's by its members), who is on call now or at a time, their
//! shifts over a window, and overrides.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tickethub_actors::domain::{ProjectId, UserId};
use tickethub_actors::oncall::{self, Handoff, Layer, Override, Rota, Rotation, Source};
use tickethub_actors::ports::{NewOncallSchedule, OncallSchedule};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Json, Query};
use super::timestamp;
use crate::state::AppState;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, delete))
        .routes(routes!(now))
        .routes(routes!(shifts))
        .routes(routes!(overrides, add_override))
        .routes(routes!(delete_override))
}

/// At most this many layers in a schedule, and users in a layer.
const MOST_LAYERS: usize = 10;
const MOST_USERS: usize = 100;

/// One layer of a schedule.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerJson {
    /// Who takes the shifts, in turn (user ids).
    #[schema(min_items = 1, max_items = 100)]
    #[serde(deserialize_with = "crate::wire::integer::list")]
    pub users: Vec<i64>,
    /// `daily`, `weekly`, a number of days (`2d`) or of hours dividing a day (`12h`).
    #[schema(example = "daily", pattern = r"^(daily|weekly|[0-9]+[dh])$")]
    pub rotation: String,
    /// When a shift hands over, `HH:MM` in the schedule's time zone.
    #[schema(example = "09:00", pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub handoff: String,
    /// From when the layer covers (RFC 3339); its first user is on call until the next handoff.
    #[schema(format = DateTime)]
    pub start: String,
}

/// An on-call schedule.
#[derive(Serialize, ToSchema)]
pub struct ScheduleJson {
    /// Its id.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// The project it belongs to, or null (global).
    pub project: Option<i64>,
    /// Its IANA time zone.
    pub time_zone: String,
    /// Its layers; where several cover a moment, the last one wins.
    pub layers: Vec<LayerJson>,
    /// When it was made.
    #[schema(format = DateTime)]
    pub created_at: String,
}

fn schedule_json(s: &OncallSchedule) -> ScheduleJson {
    ScheduleJson {
        id: s.id,
        name: s.name.clone(),
        project: s.project.map(|p| p.0),
        time_zone: s.time_zone.clone(),
        layers: s
            .layers
            .iter()
            .map(|l| LayerJson {
                users: l.users.iter().map(|u| u.0).collect(),
                rotation: l.rotation.name(),
                handoff: l.handoff.name(),
                start: timestamp(l.start),
            })
            .collect(),
        created_at: timestamp(s.created_at),
    }
}

/// A schedule to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleIn {
    /// 1 to 64 lowercase letters, digits, `-` or `_`.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[a-z0-9_-]+$")]
    name: String,
    /// An IANA time zone, such as `Europe/Berlin` or `UTC`.
    #[schema(min_length = 1, max_length = 64, example = "Europe/Berlin")]
    time_zone: String,
    /// The project it belongs to (its members see it); without it, global.
    #[serde(default, deserialize_with = "crate::wire::integer::option")]
    project: Option<i64>,
    /// 1 to 10 layers.
    #[schema(min_items = 1, max_items = 10)]
    layers: Vec<LayerJson>,
}

/// Someone on call instead of the layers, for a while.
#[derive(Serialize, ToSchema)]
pub struct OverrideJson {
    /// Its id.
    pub id: i64,
    /// Who.
    pub user_id: i64,
    /// From when.
    #[schema(format = DateTime)]
    pub from: String,
    /// Until when (not included).
    #[schema(format = DateTime)]
    pub to: String,
}

fn override_json(o: &Override) -> OverrideJson {
    OverrideJson {
        id: o.id,
        user_id: o.user.0,
        from: timestamp(o.from),
        to: timestamp(o.to),
    }
}

/// An override to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverrideIn {
    /// Who is on call instead.
    #[serde(deserialize_with = "crate::wire::integer::one")]
    user_id: i64,
    /// From when (RFC 3339).
    #[schema(format = DateTime)]
    from: String,
    /// Until when (RFC 3339), after `from` and at most 92 days later.
    #[schema(format = DateTime)]
    to: String,
}

/// Who is on call at a moment.
#[derive(Serialize, ToSchema)]
pub struct OnCallJson {
    /// Who, or null when nobody is (before every layer's start).
    pub user_id: Option<i64>,
    /// Their username.
    pub username: Option<String>,
    /// Until when they are (null: beyond 92 days, or nobody on call).
    #[schema(format = DateTime)]
    pub until: Option<String>,
    /// Why: `layer` or `override`.
    pub source: Option<String>,
    /// The layer's number, from 1 (for `layer`), or the override's id (for `override`).
    pub source_id: Option<i64>,
    /// The moment asked about.
    #[schema(format = DateTime)]
    pub at: String,
}

/// A stretch of time with one person on call.
#[derive(Serialize, ToSchema)]
pub struct ShiftJson {
    /// Who.
    pub user_id: i64,
    /// Their username.
    pub username: Option<String>,
    /// From when.
    #[schema(format = DateTime)]
    pub from: String,
    /// Until when (not included).
    #[schema(format = DateTime)]
    pub to: String,
    /// Why: `layer` or `override`.
    pub source: String,
    /// The layer's number, from 1, or the override's id.
    pub source_id: i64,
}

/// A schedule's shifts over a window.
#[derive(Serialize, ToSchema)]
pub struct ShiftsJson {
    /// The schedule.
    pub schedule: String,
    /// Its time zone.
    pub time_zone: String,
    /// The window's start.
    #[schema(format = DateTime)]
    pub from: String,
    /// The window's end.
    #[schema(format = DateTime)]
    pub to: String,
    /// The shifts, in order; stretches with nobody on call are left out.
    pub shifts: Vec<ShiftJson>,
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AtQuery {
    /// The moment (RFC 3339); now by default.
    at: Option<String>,
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WindowQuery {
    /// The window's start (RFC 3339); now by default.
    from: Option<String>,
    /// The window's end (RFC 3339); 14 days after `from` by default, at most 92.
    to: Option<String>,
}

fn instant(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    crate::timespan::parse_instant(text)
        .map_err(|e| ApiError::bad_request(format!("{field}: {e}.")))
}

/// Whether the caller may see the schedule: admins, everyone for a global one, a project's
/// members for the project's.
async fn may_see(state: &AppState, caller: &Caller, s: &OncallSchedule) -> Result<bool, ApiError> {
    match s.project {
        _ if caller.is_admin() => Ok(true),
        None => Ok(true),
        Some(project) => Ok(state
            .store
            .membership(project, caller.0.id)
            .await?
            .unwrap_or(false)),
    }
}

/// The schedule of this name, if the caller may see it (404 otherwise, as for none).
async fn visible(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<OncallSchedule, ApiError> {
    match state.store.oncall_schedule(name).await? {
        Some(s) if may_see(state, caller, &s).await? => Ok(s),
        _ => Err(ApiError::not_found()),
    }
}

/// The schedule's rotation with its overrides around `from..to`.
async fn rota(
    state: &AppState,
    s: &OncallSchedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Rota, ApiError> {
    let overrides = state.store.oncall_overrides(s.id, from, to).await?;
    Rota::new(&s.time_zone, s.layers.clone(), overrides).map_err(ApiError::bad_request)
}

/// Usernames of these users.
async fn usernames(
    state: &AppState,
    ids: impl IntoIterator<Item = UserId>,
) -> Result<BTreeMap<i64, String>, ApiError> {
    let mut ids: Vec<UserId> = ids.into_iter().collect();
    ids.sort();
    ids.dedup();
    Ok(state
        .store
        .users_by_ids(&ids)
        .await?
        .into_iter()
        .map(|u| (u.id.0, u.username))
        .collect())
}

fn source(s: Source) -> (String, i64) {
    match s {
        Source::Layer(i) => ("layer".into(), i as i64 + 1),
        Source::Override(id) => ("override".into(), id),
    }
}

/// Lists the schedules the caller may see, by name.
#[utoipa::path(
    get,
    path = "/api/oncall/schedules/",
    operation_id = "oncall_schedules_list",
    tag = "oncall",
    responses(
        (status = 200, description = "The schedules.", body = Vec<ScheduleJson>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ScheduleJson>>, ApiError> {
    let mut seen = Vec::new();
    for s in state.store.oncall_schedules().await? {
        if may_see(&state, &caller, &s).await? {
            seen.push(schedule_json(&s));
        }
    }
    Ok(Json(seen))
}

/// Makes a schedule (admins).
#[utoipa::path(
    post,
    path = "/api/oncall/schedules/",
    operation_id = "oncall_schedules_create",
    tag = "oncall",
    request_body = ScheduleIn,
    responses(
        (status = 201, description = "The schedule.", body = ScheduleJson),
        (status = 400, description = "A field is invalid: the name, the time zone, a layer's users, rotation, handoff or start, or no such project.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 409, description = "A schedule of this name exists.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ScheduleIn>,
) -> Result<(StatusCode, Json<ScheduleJson>), ApiError> {
    caller.admin_only("change on-call schedules")?;
    let name_ok = !body.name.is_empty()
        && body.name.len() <= 64
        && body
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(ApiError::bad_request(
            "name: 1 to 64 lowercase letters, digits, - or _.",
        ));
    }
    oncall::time_zone(&body.time_zone).map_err(ApiError::bad_request)?;
    if body.layers.is_empty() || body.layers.len() > MOST_LAYERS {
        return Err(ApiError::bad_request("layers: 1 to 10 layers."));
    }
    let project = match body.project {
        Some(id) => match state.store.project_by_id(ProjectId(id)).await? {
            Some(p) => Some(p.id),
            None => return Err(ApiError::bad_request(format!("project: no project {id}."))),
        },
        None => None,
    };
    let mut layers = Vec::new();
    for (i, l) in body.layers.iter().enumerate() {
        let at = |e: String| ApiError::bad_request(format!("layers[{i}].{e}"));
        if l.users.is_empty() || l.users.len() > MOST_USERS {
            return Err(at("users: 1 to 100 user ids.".into()));
        }
        let users: Vec<UserId> = l.users.iter().copied().map(UserId).collect();
        let known = usernames(&state, users.iter().copied()).await?;
        if let Some(missing) = l.users.iter().find(|u| !known.contains_key(u)) {
            return Err(at(format!("users: no user {missing}.")));
        }
        layers.push(Layer {
            users,
            rotation: Rotation::parse(&l.rotation).map_err(at)?,
            handoff: Handoff::parse(&l.handoff).map_err(at)?,
            start: crate::timespan::parse_instant(&l.start)
                .map_err(|e| at(format!("start: {e}.")))?,
        });
    }
    let made = state
        .store
        .create_oncall_schedule(NewOncallSchedule {
            name: body.name.clone(),
            project,
            time_zone: body.time_zone,
            layers,
        })
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!("A schedule named {} exists.", body.name),
            )
        })?;
    tracing::info!(schedule = %made.name, by = caller.0.id.0, "on-call schedule created");
    Ok((StatusCode::CREATED, Json(schedule_json(&made))))
}

/// One schedule.
#[utoipa::path(
    get,
    path = "/api/oncall/schedules/{name}/",
    operation_id = "oncall_schedules_show",
    tag = "oncall",
    params(("name" = String, Path, description = "The schedule's name.")),
    responses(
        (status = 200, description = "The schedule.", body = ScheduleJson),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such schedule, or the caller may not see it.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ScheduleJson>, ApiError> {
    Ok(Json(schedule_json(&visible(&state, &caller, &name).await?)))
}

/// Deletes a schedule and its overrides (admins).
#[utoipa::path(
    delete,
    path = "/api/oncall/schedules/{name}/",
    operation_id = "oncall_schedules_delete",
    tag = "oncall",
    params(("name" = String, Path, description = "The schedule's name.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such schedule.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.admin_only("change on-call schedules")?;
    if state.store.delete_oncall_schedule(&name).await? {
        tracing::info!(schedule = %name, by = caller.0.id.0, "on-call schedule deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// Who is on call now (or `at` a moment), and until when.
#[utoipa::path(
    get,
    path = "/api/oncall/schedules/{name}/now/",
    operation_id = "oncall_schedules_now",
    tag = "oncall",
    params(("name" = String, Path, description = "The schedule's name."), AtQuery),
    responses(
        (status = 200, description = "Who is on call (`user_id` null when nobody is).", body = OnCallJson),
        (status = 400, description = "`at` is not an RFC 3339 time.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such schedule, or the caller may not see it.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn now(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<AtQuery>,
) -> Result<Json<OnCallJson>, ApiError> {
    let s = visible(&state, &caller, &name).await?;
    let at = match &q.at {
        Some(at) => instant("at", at)?,
        None => state.store.now(),
    };
    let horizon = at + chrono::Duration::days(oncall::LONGEST_WINDOW_DAYS);
    let rota = rota(&state, &s, at, horizon).await?;
    let on = rota.on_call(at);
    let names = usernames(&state, on.map(|(u, _)| u)).await?;
    let (source, source_id) = match on.map(|(_, s)| source(s)) {
        Some((s, id)) => (Some(s), Some(id)),
        None => (None, None),
    };
    Ok(Json(OnCallJson {
        user_id: on.map(|(u, _)| u.0),
        username: on.and_then(|(u, _)| names.get(&u.0).cloned()),
        until: on.and_then(|_| rota.until(at)).map(timestamp),
        source,
        source_id,
        at: timestamp(at),
    }))
}

/// Who is on call over a window, as shifts: for a calendar.
#[utoipa::path(
    get,
    path = "/api/oncall/schedules/{name}/shifts/",
    operation_id = "oncall_schedules_shifts",
    tag = "oncall",
    params(("name" = String, Path, description = "The schedule's name."), WindowQuery),
    responses(
        (status = 200, description = "The shifts.", body = ShiftsJson),
        (status = 400, description = "`from` or `to` is not an RFC 3339 time, or the window is empty or longer than 92 days.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such schedule, or the caller may not see it.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn shifts(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<WindowQuery>,
) -> Result<Json<ShiftsJson>, ApiError> {
    let s = visible(&state, &caller, &name).await?;
    let from = match &q.from {
        Some(t) => instant("from", t)?,
        None => state.store.now(),
    };
    let to = match &q.to {
        Some(t) => instant("to", t)?,
        None => from + chrono::Duration::days(14),
    };
    if to <= from || to - from > chrono::Duration::days(oncall::LONGEST_WINDOW_DAYS) {
        return Err(ApiError::bad_request(
            "to: after from, and at most 92 days later.",
        ));
    }
    let rota = rota(&state, &s, from, to).await?;
    let shifts = rota.shifts(from, to);
    let names = usernames(&state, shifts.iter().map(|s| s.user)).await?;
    Ok(Json(ShiftsJson {
        schedule: s.name.clone(),
        time_zone: s.time_zone.clone(),
        from: timestamp(from),
        to: timestamp(to),
        shifts: shifts
            .iter()
            .map(|shift| {
                let (source, source_id) = source(shift.source);
                ShiftJson {
                    user_id: shift.user.0,
                    username: names.get(&shift.user.0).cloned(),
                    from: timestamp(shift.from),
                    to: timestamp(shift.to),
                    source,
                    source_id,
                }
            })
            .collect(),
    }))
}

/// The schedule's overrides that have not ended.
#[utoipa::path(
    get,
    path = "/api/oncall/schedules/{name}/overrides/",
    operation_id = "oncall_overrides_list",
    tag = "oncall",
    params(("name" = String, Path, description = "The schedule's name.")),
    responses(
        (status = 200, description = "The overrides, oldest made first.", body = Vec<OverrideJson>),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "No such schedule, or the caller may not see it.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn overrides(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<OverrideJson>>, ApiError> {
    let s = visible(&state, &caller, &name).await?;
    let now = state.store.now();
    let far = now + chrono::Duration::days(36_500);
    let found = state.store.oncall_overrides(s.id, now, far).await?;
    Ok(Json(found.iter().map(override_json).collect()))
}

/// Puts someone on call instead of the layers for a while (admins); the latest override wins
/// where two overlap.
#[utoipa::path(
    post,
    path = "/api/oncall/schedules/{name}/overrides/",
    operation_id = "oncall_overrides_create",
    tag = "oncall",
    params(("name" = String, Path, description = "The schedule's name.")),
    request_body = OverrideIn,
    responses(
        (status = 201, description = "The override.", body = OverrideJson),
        (status = 400, description = "No such user, or `from`/`to` invalid (not RFC 3339, `to` not after `from`, longer than 92 days).", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such schedule.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn add_override(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<OverrideIn>,
) -> Result<(StatusCode, Json<OverrideJson>), ApiError> {
    caller.admin_only("change on-call schedules")?;
    // An admin sees every schedule.
    let s = visible(&state, &caller, &name).await?;
    let (from, to) = (instant("from", &body.from)?, instant("to", &body.to)?);
    if to <= from || to - from > chrono::Duration::days(oncall::LONGEST_WINDOW_DAYS) {
        return Err(ApiError::bad_request(
            "to: after from, and at most 92 days later.",
        ));
    }
    let user = UserId(body.user_id);
    if usernames(&state, [user]).await?.is_empty() {
        return Err(ApiError::bad_request(format!(
            "user_id: no user {}.",
            body.user_id
        )));
    }
    let made = state
        .store
        .add_oncall_override(s.id, user, from, to)
        .await?;
    tracing::info!(schedule = %name, user = user.0, by = caller.0.id.0, "on-call override added");
    Ok((StatusCode::CREATED, Json(override_json(&made))))
}

/// Deletes an override (admins).
#[utoipa::path(
    delete,
    path = "/api/oncall/schedules/{name}/overrides/{id}/",
    operation_id = "oncall_overrides_delete",
    tag = "oncall",
    params(
        ("name" = String, Path, description = "The schedule's name."),
        ("id" = i64, Path, description = "The override's id."),
    ),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such schedule or override.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn delete_override(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.admin_only("change on-call schedules")?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    // An admin sees every schedule.
    let s = visible(&state, &caller, &name).await?;
    if state.store.delete_oncall_override(s.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
