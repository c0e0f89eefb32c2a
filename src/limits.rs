//! Throttling: login, refresh and registration rates per client address (IPv6 by /64) and
//! per username, tickets and comments per user, a bound on concurrent password hashing, and
//! the per-socket command rate.
//!
//! The buckets are `governor`'s (GCRA). A throttled HTTP call gets 429 with `Retry-After` and
//! `{"detail"}`; `/metrics` counts every refusal as `tickethub_throttled_total{limit}`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::ServeConfig;
use crate::http::error::ApiError;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// A direct (unkeyed) limiter: one socket's commands.
pub type CommandLimiter = governor::DefaultDirectRateLimiter;

/// The hub's throttles.
pub struct Limits {
    login_ip: Keyed<IpAddr>,
    login_user: Keyed<String>,
    refresh_ip: Keyed<IpAddr>,
    register_ip: Keyed<IpAddr>,
    writes_user: Keyed<tickethub_actors::domain::UserId>,
    hashing: tokio::sync::Semaphore,
    hashing_wait: Duration,
    commands: Option<Quota>,
    flood_after: u32,
    /// One clock for every socket's command limiter: a new clock (`quanta`) reads the CPU's
    /// features and calibrates itself, which once cost about a tenth of a connect's CPU.
    clock: DefaultClock,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

/// `n` per minute with a burst of `n`; `None` when 0 (no limit).
fn per_minute(n: u32) -> Option<Quota> {
    NonZeroU32::new(n).map(Quota::per_minute)
}

/// A keyed limiter; without a quota, one nobody reaches.
fn keyed<K: Clone + std::hash::Hash + Eq>(q: Option<Quota>) -> Keyed<K> {
    RateLimiter::keyed(q.unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX)))
}

impl Limits {
    /// The limits the configuration asks for.
    pub fn from_config(c: &ServeConfig) -> Self {
        let register = NonZeroU32::new(c.register_per_hour).map(Quota::per_hour);
        let commands = NonZeroU32::new(c.ws_commands_per_second).map(|rate| {
            Quota::per_second(rate).allow_burst(NonZeroU32::new(c.ws_command_burst).unwrap_or(rate))
        });
        Self {
            login_ip: keyed(per_minute(c.login_per_minute)),
            login_user: keyed(per_minute(c.login_per_minute)),
            refresh_ip: keyed(per_minute(c.login_per_minute.saturating_mul(6))),
            register_ip: keyed(register),
            writes_user: keyed(per_minute(c.writes_per_minute)),
            hashing: tokio::sync::Semaphore::new(match c.password_hashing_concurrency {
                0 => std::thread::available_parallelism().map_or(2, usize::from),
                n => n as usize,
            }),
            hashing_wait: Duration::from_millis(c.password_hashing_wait_ms),
            commands,
            flood_after: c.ws_command_burst.max(1),
            clock: DefaultClock::default(),
        }
    }

    /// Frames refused in a row after which a socket counts as flooding and is closed (4008).
    pub fn flood_after(&self) -> u32 {
        self.flood_after
    }

    /// A login from `ip` for `username`. A username longer than any account's is refused
    /// before it becomes a key; look-alike spellings of one name share its bucket.
    pub fn login(&self, ip: IpAddr, username: &str) -> Result<(), ApiError> {
        check(&self.login_ip, &client_key(ip), "login_ip")?;
        if username.chars().count() > crate::http::users::MAX_USERNAME {
            return Err(ApiError::unauthorized(
                "No active account found with the given credentials",
            ));
        }
        check(
            &self.login_user,
            &crate::store::username_key(username),
            "login_username",
        )
    }

    /// A token refresh (or logout) from `ip`.
    pub fn refresh(&self, ip: IpAddr) -> Result<(), ApiError> {
        check(&self.refresh_ip, &client_key(ip), "refresh_ip")
    }

    /// A registration from `ip`.
    pub fn register(&self, ip: IpAddr) -> Result<(), ApiError> {
        check(&self.register_ip, &client_key(ip), "register_ip")
    }

    /// A ticket or comment by `user`: each may send email to several people.
    pub fn write(&self, user: tickethub_actors::domain::UserId) -> Result<(), ApiError> {
        check(&self.writes_user, &user, "user_writes")
    }

    /// A turn at password hashing (about one per core at once): waits briefly for one, else
    /// 503, so that a flood of logins never holds more than a few argon2 buffers.
    pub async fn hashing(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        match tokio::time::timeout(self.hashing_wait, self.hashing.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                metrics::counter!("tickethub_throttled_total", "limit" => "password_hashing")
                    .increment(1);
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many sign-ins at once; try again in a second.",
                )
                .retry_after(1))
            }
        }
    }

    /// A fresh command limiter for one socket, if commands are limited.
    pub fn command_limiter(&self) -> Option<CommandLimiter> {
        self.commands
            .map(|q| RateLimiter::direct_with_clock(q, self.clock.clone()))
    }

    /// Forgets the buckets that are full again, so memory follows the active clients.
    pub fn retain_recent(&self) {
        self.login_ip.retain_recent();
        self.login_user.retain_recent();
        self.refresh_ip.retain_recent();
        self.register_ip.retain_recent();
        self.writes_user.retain_recent();
    }

    /// Runs `retain_recent` every minute for as long as the limits live.
    pub fn spawn_cleanup(self: &Arc<Self>) {
        let limits = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            every.tick().await;
            loop {
                every.tick().await;
                match limits.upgrade() {
                    Some(l) => l.retain_recent(),
                    None => return,
                }
            }
        });
    }
}

/// The key a client address is limited by: an IPv6 client by its /64, the block one host is
/// usually given (it can take any address inside it), and an IPv4-mapped address as IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

fn check<K: Clone + std::hash::Hash + Eq>(
    limiter: &Keyed<K>,
    key: &K,
    name: &'static str,
) -> Result<(), ApiError> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(limiter.clock().now()).as_secs() + 1;
        metrics::counter!("tickethub_throttled_total", "limit" => name).increment(1);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Request was throttled. Expected available in {wait} seconds."),
        )
        .retry_after(wait)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_keyed_by_address_and_ipv6_by_its_64() {
        let k = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(k("203.0.113.7"), "203.0.113.7");
        assert_eq!(k("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:198.51.100.4"), "198.51.100.4");
    }

    #[test]
    fn an_overlong_username_is_refused_before_it_is_a_key() {
        let limits = Limits::from_config(&ServeConfig::defaults());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let err = limits.login(ip, &"a".repeat(151)).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(limits.login_user.len(), 0, "no bucket was made for it");
        limits.login(ip, "alice").unwrap();
        assert_eq!(limits.login_user.len(), 1);
    }

    #[test]
    fn look_alike_usernames_share_a_bucket() {
        let mut c = ServeConfig::defaults();
        c.login_per_minute = 2;
        let limits = Limits::from_config(&c);
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        limits.login(ip(1), "admin").unwrap();
        limits.login(ip(2), "ADMIN").unwrap();
        // Cyrillic `а`: the third try on one name, from a third address.
        assert!(limits.login(ip(3), "\u{430}dmin").is_err());
    }
}
