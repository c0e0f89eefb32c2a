//! Resolving an on-call target against the stored schedule at a moment: whom it pages, and
//! why.

use chrono::{DateTime, Utc};

use crate::oncall::{Paged, Rota, Shift, Target, LONGEST_WINDOW_DAYS};
use crate::ports::{Store, StoreError};

/// Why a target chose nobody.
#[derive(Debug, thiserror::Error)]
pub enum Unpaged {
    /// No schedule has the name.
    #[error("no on-call schedule is named `{0}`")]
    NoSchedule(String),
    /// The schedule names nobody at that moment (before its layers start, or beyond its
    /// last), or its person was deactivated.
    #[error("{0}")]
    Nobody(String),
    /// The database did not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whom `target` pages at `at`: the schedule as stored, its overrides, and the chosen person,
/// who must be an active user.
pub async fn resolve(
    store: &dyn Store,
    target: &Target,
    at: DateTime<Utc>,
) -> Result<Paged, Unpaged> {
    let schedule = store
        .oncall_schedule(&target.schedule)
        .await?
        .ok_or_else(|| Unpaged::NoSchedule(target.schedule.clone()))?;
    let horizon = at + chrono::Duration::days(LONGEST_WINDOW_DAYS);
    let overrides = store.oncall_overrides(schedule.id, at, horizon).await?;
    let rota = Rota::new(&schedule.time_zone, schedule.layers, overrides)
        .map_err(|e| Unpaged::Nobody(format!("schedule `{}`: {e}", target.schedule)))?;
    let shift = if target.next {
        rota.next_shift(at).ok_or_else(|| {
            Unpaged::Nobody(format!(
                "nobody follows the person on call for `{}` within {LONGEST_WINDOW_DAYS} days",
                target.schedule
            ))
        })?
    } else {
        let (user, source) = rota.on_call(at).ok_or_else(|| {
            Unpaged::Nobody(format!("nobody is on call for `{}`", target.schedule))
        })?;
        Shift {
            user,
            from: at,
            to: rota.until(at).unwrap_or(horizon),
            source,
        }
    };
    let user = store
        .users_by_ids(&[shift.user])
        .await?
        .into_iter()
        .next()
        .filter(|u| u.is_active)
        .ok_or_else(|| {
            Unpaged::Nobody(format!(
                "user {} is on call for `{}` but is no active user",
                shift.user, target.schedule
            ))
        })?;
    Ok(Paged {
        target: target.clone(),
        user: user.id,
        username: user.username,
        source: shift.source,
        from: shift.from,
        until: (shift.to < horizon).then_some(shift.to),
        at,
    })
}
