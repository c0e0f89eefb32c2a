//! Delivery analytics for operators: per bucket of time, notification type and channel, how
//! many notifications were committed, pushed, delivered, failed and read, and how fast.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tickethub_actors::analytics::{AnalyticsQuery, Bucket};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Json, Query};
use crate::state::AppState;

/// The range an unbounded request covers: the last seven days.
const DEFAULT_RANGE_DAYS: i64 = 7;

/// The longest range one request may cover.
const MAX_RANGE_DAYS: i64 = 400;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(analytics))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AnalyticsParams {
    /// The start, RFC 3339 (default: seven days before `to`); widened to the start of its
    /// bucket.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// The end, RFC 3339 (default: now); widened to the end of its bucket.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// Only this notification type (`ticket_assigned`, `general`, an admin's own type, …).
    #[serde(rename = "type")]
    #[param(value_type = Option<String>)]
    notification_type: Option<String>,
    /// Only this channel: `websocket` (the in-app rows), or an outbox channel (`email`,
    /// `whatsapp`, `sms`, `webhook`, `webpush`, `fcm`, `apns`).
    #[param(value_type = Option<String>)]
    channel: Option<String>,
    /// `hour` or `day` (the default), in UTC.
    #[param(value_type = Option<String>, pattern = "^(hour|day)$")]
    bucket: Option<String>,
}

/// Delivery analytics.
#[derive(Serialize, ToSchema)]
pub struct Analytics {
    /// The start of the range answered (the first bucket's start).
    #[schema(format = DateTime)]
    pub from: String,
    /// Its end (exclusive).
    #[schema(format = DateTime)]
    pub to: String,
    /// `hour` or `day`.
    #[schema(examples("day"))]
    pub bucket: &'static str,
    /// One row per bucket, type and channel that has something to count, by bucket, then
    /// type, the in-app row first.
    pub rows: Vec<AnalyticsRow>,
}

/// The figures of one bucket, notification type and channel. The in-app row (`websocket`)
/// counts notifications; an outbound row counts that channel's outbox rows, with their
/// notifications' read figures. Every figure belongs to the bucket the notification was
/// committed in.
#[derive(Serialize, ToSchema)]
pub struct AnalyticsRow {
    /// The bucket's start.
    #[schema(format = DateTime)]
    pub bucket: String,
    /// The notification type.
    #[serde(rename = "type")]
    pub notification_type: String,
    /// `websocket`, or the outbox channel.
    pub channel: String,
    /// Notifications committed (in-app), or outbox rows queued (outbound).
    pub committed: i64,
    /// Written to at least one socket of the user (in-app), or attempted at least once
    /// (outbound).
    pub pushed: i64,
    /// Acknowledged by a client of the user (in-app), or sent (outbound).
    pub delivered: i64,
    /// Failed for good (outbound; 0 in-app).
    pub failed: i64,
    /// Read.
    pub read: i64,
    /// Read within 5 minutes of the commit.
    pub read_5m: i64,
    /// Read within an hour (those within 5 minutes included).
    pub read_1h: i64,
    /// Read within a day (those within an hour included).
    pub read_1d: i64,
    /// The median time from commit to read, in seconds; `null` without reads.
    #[schema(required = true)]
    pub time_to_read_p50_s: Option<f64>,
    /// The 90th percentile of the time from commit to read, in seconds.
    #[schema(required = true)]
    pub time_to_read_p90_s: Option<f64>,
    /// Whether the percentiles are approximate: some reads of the row were purged, and are
    /// known only by their histogram bucket (the percentile is then that bucket's upper
    /// bound).
    pub time_to_read_approximate: bool,
    /// Escalation steps fired per 100 notifications (on the in-app row; 0 on the others).
    pub escalations_per_100: f64,
    /// Pushes held back because the notification was seen in time (push carriers; 0 on the
    /// others).
    pub push_suppressed: i64,
    /// Outbox rows sent inside another's message: the later updates of a batch about one
    /// ticket (counted in `delivered` too).
    pub batched: i64,
    /// Notifications summed up by the digests sent (on the `digest` type's `email` row, whose
    /// `delivered` counts the digests).
    pub digested: i64,
}

fn instant(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "{name}: An RFC 3339 date and time, like 2024-05-01T00:00:00Z."
                    ))
                })
        })
        .transpose()
}

/// A type as sends name them: 1 to 64 letters, digits, `_`, `-` or `.`.
fn valid_name(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Reads the request into the hours to ask the store for, and the bucket.
pub(crate) fn parse(
    q: &AnalyticsParams,
    now: DateTime<Utc>,
) -> Result<(AnalyticsQuery, Bucket), ApiError> {
    // A parameter given empty is refused like any other value that is not one (the document
    // says what each takes); leave it out for its default.
    let bucket = match q.bucket.as_deref() {
        None => Bucket::Day,
        Some(b) => {
            Bucket::parse(b).ok_or_else(|| ApiError::bad_request("bucket: `hour` or `day`."))?
        }
    };
    let to = instant("to", q.to.as_deref())?.unwrap_or(now);
    let from = instant("from", q.from.as_deref())?
        .unwrap_or(to - chrono::Duration::days(DEFAULT_RANGE_DAYS));
    if from >= to {
        return Err(ApiError::bad_request("from: Must be before `to`."));
    }
    if to - from > chrono::Duration::days(MAX_RANGE_DAYS) {
        return Err(ApiError::bad_request(format!(
            "from: At most {MAX_RANGE_DAYS} days before `to`."
        )));
    }
    let notification_type = match q.notification_type.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) if valid_name(t, 64) => Some(t.to_owned()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "type: 1 to 64 letters, digits, `_`, `-` or `.`.",
            ))
        }
    };
    let channel = match q.channel.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(c) if valid_name(c, 32) => Some(c.to_ascii_lowercase()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "channel: A channel's name, like websocket or email.",
            ))
        }
    };
    Ok((
        AnalyticsQuery {
            from: bucket.floor(from),
            to: bucket.ceil(to),
            notification_type,
            channel,
        },
        bucket,
    ))
}

/// Delivery analytics (admins): per bucket of time (`hour` or `day`, UTC), notification type
/// and channel, what became of the notifications committed in it. The in-app row
/// (`websocket`) counts the notifications: committed, pushed to a socket, acknowledged by a
/// client (`delivered`), read, read within 5 minutes, an hour and a day, and the median and
/// 90th percentile of the time to read. Each outbound channel's row counts its outbox rows:
/// queued (`committed`), attempted (`pushed`), sent (`delivered`), failed for good, held back
/// (`push_suppressed`), and their notifications' reads. The figures outlive retention: what
/// the purge deletes is first folded into hourly rollups; percentiles over rolled-up reads are
/// approximate (`time_to_read_approximate`).
#[utoipa::path(
    get,
    path = "/api/admin/analytics",
    operation_id = "admin_analytics",
    tag = "admin",
    params(AnalyticsParams),
    responses(
        (status = 200, description = "The figures.", body = Analytics),
        (status = 400, description = "A malformed `from`, `to`, `type`, `channel` or `bucket`, or a range that is empty or too long.", body = ErrorBody),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn analytics(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AnalyticsParams>,
) -> Result<Json<Analytics>, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::forbidden(
            "Only admins can see delivery analytics.",
        ));
    }
    let (query, bucket) = parse(&q, Utc::now())?;
    let tallies = state.store.analytics(&query).await?;
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(Json(Analytics {
        from: at(query.from),
        to: at(query.to),
        bucket: bucket.as_str(),
        rows: tallies
            .rows(bucket)
            .into_iter()
            .map(|r| AnalyticsRow {
                bucket: at(r.bucket),
                notification_type: r.notification_type,
                channel: r.channel,
                committed: r.committed,
                pushed: r.pushed,
                delivered: r.delivered,
                failed: r.failed,
                read: r.read,
                read_5m: r.read_5m,
                read_1h: r.read_1h,
                read_1d: r.read_1d,
                time_to_read_p50_s: r.time_to_read_p50_s,
                time_to_read_p90_s: r.time_to_read_p90_s,
                time_to_read_approximate: r.approximate,
                escalations_per_100: r.escalations_per_100,
                push_suppressed: r.push_suppressed,
                batched: r.batched,
                digested: r.digested,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> AnalyticsParams {
        let mut p = AnalyticsParams::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "from" => p.from = v,
                "to" => p.to = v,
                "type" => p.notification_type = v,
                "channel" => p.channel = v,
                "bucket" => p.bucket = v,
                _ => unreachable!("{k}"),
            }
        }
        p
    }

    #[test]
    fn a_request_is_widened_to_whole_buckets_and_bad_input_is_refused() {
        let now: DateTime<Utc> = "2024-05-10T12:34:56Z".parse().unwrap();
        let (q, bucket) = parse(&params(&[]), now).unwrap();
        assert_eq!(bucket, Bucket::Day);
        assert_eq!(
            q.from,
            "2024-05-03T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            q.to,
            "2024-05-11T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let (q, bucket) = parse(
            &params(&[
                ("from", "2024-05-10T10:15:00+02:00"),
                ("to", "2024-05-10T12:00:00Z"),
                ("bucket", "hour"),
                ("type", "ticket_assigned"),
                ("channel", "Email"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(bucket, Bucket::Hour);
        assert_eq!(
            q.from,
            "2024-05-10T08:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            q.to,
            "2024-05-10T12:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(q.notification_type.as_deref(), Some("ticket_assigned"));
        assert_eq!(q.channel.as_deref(), Some("email"));
        for bad in [
            &[("bucket", "week")][..],
            &[("from", "yesterday")],
            &[("to", "2024-05-10")],
            &[
                ("from", "2024-05-10T00:00:00Z"),
                ("to", "2024-05-09T00:00:00Z"),
            ],
            &[("from", "2020-01-01T00:00:00Z")],
            &[("type", "no spaces")],
            &[("channel", "e;mail")],
        ] {
            let err = parse(&params(bad), now).err();
            assert!(err.is_some(), "{bad:?}");
        }
    }
}
