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

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::ServeConfig;

/// Why a throttle refused a call. The HTTP layer answers it (`crate::http::error`): 429 with
/// `Retry-After` for [`Refused::Throttled`], 503 with `Retry-After: 1` for [`Refused::Busy`],
/// 401 for [`Refused::NoSuchAccount`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Past a rate: try again in this many seconds.
    #[error("Request was throttled. Expected available in {retry_after} seconds.")]
    Throttled {
        /// Seconds until the bucket has room again.
        retry_after: u64,
    },
    /// Every password-hashing turn is taken.
    #[error("Too many sign-ins at once; try again in a second.")]
    Busy,
    /// A username no account can have (longer than any may be).
    #[error("No active account found with the given credentials")]
    NoSuchAccount,
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// A direct (unkeyed) limiter: one socket's commands, on the process's one clock.
pub type CommandLimiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    SharedClock,
    governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;

/// The clock of every socket's command limiter: one `quanta` clock for the process. A new
/// `quanta` clock reads the CPU's features and calibrates itself, which once cost about a
/// tenth of a connect's CPU; a copy of one is 40 bytes, which every idle socket would carry.
#[derive(Clone, Copy, Debug, Default)]
pub struct SharedClock;

static CLOCK: std::sync::LazyLock<DefaultClock> = std::sync::LazyLock::new(DefaultClock::default);

impl Clock for SharedClock {
    type Instant = <DefaultClock as Clock>::Instant;

    fn now(&self) -> Self::Instant {
        CLOCK.now()
    }
}

/// The hub's throttles.
pub struct Limits {
    login_ip: Keyed<IpAddr>,
    login_user: Keyed<String>,
    refresh_ip: Keyed<IpAddr>,
    register_ip: Keyed<IpAddr>,
    writes_user: Keyed<tickethub_actors::domain::UserId>,
    api_key: Keyed<i64>,
    hashing: tokio::sync::Semaphore,
    hashing_wait: Duration,
    commands: Option<Quota>,
    flood_after: u32,
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
            api_key: keyed(per_minute(c.api_key_requests_per_minute)),
            hashing: tokio::sync::Semaphore::new(match c.password_hashing_concurrency {
                0 => std::thread::available_parallelism().map_or(2, usize::from),
                n => n as usize,
            }),
            hashing_wait: Duration::from_millis(c.password_hashing_wait_ms),
            commands,
            flood_after: c.ws_command_burst.max(1),
        }
    }

    /// Frames refused in a row after which a socket counts as flooding and is closed (4008).
    pub fn flood_after(&self) -> u32 {
        self.flood_after
    }

    /// A login from `ip` for `username`. A username longer than any account's is refused
    /// before it becomes a key; look-alike spellings of one name share its bucket.
    pub fn login(&self, ip: IpAddr, username: &str) -> Result<(), Refused> {
        check(&self.login_ip, &client_key(ip), "login_ip")?;
        if username.chars().count() > tickethub_actors::domain::MAX_USERNAME {
            return Err(Refused::NoSuchAccount);
        }
        check(
            &self.login_user,
            &crate::store::username_key(username),
            "login_username",
        )
    }

    /// A token refresh (or logout, or an email's verification link) from `ip`.
    pub fn refresh(&self, ip: IpAddr) -> Result<(), Refused> {
        check(&self.refresh_ip, &client_key(ip), "refresh_ip")
    }

    /// A registration from `ip`.
    pub fn register(&self, ip: IpAddr) -> Result<(), Refused> {
        check(&self.register_ip, &client_key(ip), "register_ip")
    }

    /// A ticket or comment by `user`: each may send email to several people.
    pub fn write(&self, user: tickethub_actors::domain::UserId) -> Result<(), Refused> {
        check(&self.writes_user, &user, "user_writes")
    }

    /// A request made with the API key `id`.
    pub fn api_key(&self, id: i64) -> Result<(), Refused> {
        check(&self.api_key, &id, "api_key")
    }

    /// A turn at password hashing (about one per core at once): waits briefly for one, else
    /// 503, so that a flood of logins never holds more than a few argon2 buffers.
    pub async fn hashing(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Refused> {
        match tokio::time::timeout(self.hashing_wait, self.hashing.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                metrics::counter!("tickethub_throttled_total", "limit" => "password_hashing")
                    .increment(1);
                Err(Refused::Busy)
            }
        }
    }

    /// A fresh command limiter for one socket, if commands are limited.
    pub fn command_limiter(&self) -> Option<CommandLimiter> {
        self.commands
            .map(|q| RateLimiter::direct_with_clock(q, SharedClock))
    }

    /// Forgets the buckets that are full again, so memory follows the active clients.
    pub fn retain_recent(&self) {
        self.login_ip.retain_recent();
        self.login_user.retain_recent();
        self.refresh_ip.retain_recent();
        self.register_ip.retain_recent();
        self.writes_user.retain_recent();
        self.api_key.retain_recent();
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
) -> Result<(), Refused> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(limiter.clock().now()).as_secs() + 1;
        metrics::counter!("tickethub_throttled_total", "limit" => name).increment(1);
        Refused::Throttled { retry_after: wait }
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
        assert_eq!(err, Refused::NoSuchAccount);
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

    fn limits(configure: impl FnOnce(&mut ServeConfig)) -> Limits {
        let mut c = ServeConfig::defaults();
        configure(&mut c);
        Limits::from_config(&c)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_per_minute_limit_of_zero_is_no_limit_and_otherwise_bursts_its_rate() {
        assert_eq!(per_minute(0), None);
        for (n, interval_ms) in [(1, 60_000), (4, 15_000), (60, 1_000), (7_000, 8)] {
            let q = per_minute(n).unwrap();
            assert_eq!(q.burst_size().get(), n, "{n} per minute");
            assert_eq!(
                q.replenish_interval().as_millis(),
                interval_ms,
                "{n} per minute"
            );
        }
    }

    #[test]
    fn client_keys_of_edge_addresses() {
        let k = |s: &str| client_key(ip(s)).to_string();
        for (address, key) in [
            ("0.0.0.0", "0.0.0.0"),
            ("255.255.255.255", "255.255.255.255"),
            ("::", "::"),
            ("::1", "::"),
            ("fe80::1:2:3:4", "fe80::"),
            (
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "ffff:ffff:ffff:ffff::",
            ),
            // IPv4-mapped (the dual-stack listener's form) is the IPv4 client itself.
            ("::ffff:0.0.0.0", "0.0.0.0"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
            // IPv4-compatible is not mapped: an IPv6 address in the all-zero /64.
            ("::203.0.113.7", "::"),
        ] {
            assert_eq!(k(address), key, "{address}");
        }
    }

    #[test]
    fn logins_past_the_rate_are_refused_with_the_wait() {
        let limits = limits(|c| c.login_per_minute = 3);
        let from = ip("192.0.2.1");
        for name in ["a", "b", "c"] {
            limits.login(from, name).unwrap();
        }
        let err = limits.login(from, "d").unwrap_err();
        // 3 a minute: the next one is 20 seconds after the first.
        assert_eq!(err, Refused::Throttled { retry_after: 20 });
        assert_eq!(
            err.to_string(),
            "Request was throttled. Expected available in 20 seconds."
        );
        // Another address has its own bucket.
        limits.login(ip("192.0.2.2"), "d").unwrap();
    }

    #[test]
    fn one_username_is_limited_across_addresses() {
        let limits = limits(|c| c.login_per_minute = 2);
        limits.login(ip("192.0.2.1"), "carol").unwrap();
        limits.login(ip("192.0.2.2"), "carol").unwrap();
        let err = limits.login(ip("192.0.2.3"), "carol").unwrap_err();
        assert!(matches!(err, Refused::Throttled { .. }), "{err:?}");
        limits.login(ip("192.0.2.3"), "dave").unwrap();
    }

    #[test]
    fn addresses_of_one_ipv6_64_share_a_login_bucket() {
        let limits = limits(|c| c.login_per_minute = 1);
        limits.login(ip("2001:db8:0:1::1"), "a").unwrap();
        let err = limits.login(ip("2001:db8:0:1:ffff::2"), "b").unwrap_err();
        assert!(matches!(err, Refused::Throttled { .. }), "{err:?}");
        limits.login(ip("2001:db8:0:2::1"), "b").unwrap();
    }

    #[test]
    fn an_overlong_username_still_spends_the_address_s_attempt() {
        let limits = limits(|c| c.login_per_minute = 1);
        let from = ip("192.0.2.1");
        let err = limits.login(from, &"x".repeat(151)).unwrap_err();
        assert_eq!(err, Refused::NoSuchAccount);
        let err = limits.login(from, "alice").unwrap_err();
        assert!(matches!(err, Refused::Throttled { .. }), "{err:?}");
    }

    #[test]
    fn the_username_length_bound_counts_characters_not_bytes() {
        let limits = limits(|c| c.login_per_minute = 0);
        let from = ip("192.0.2.1");
        // 150 two-byte characters (300 bytes): at the bound, accepted.
        for username in ["a".repeat(150), "é".repeat(150), "👩".repeat(150)] {
            assert!(limits.login(from, &username).is_ok(), "{username}");
        }
        for username in ["a".repeat(151), "é".repeat(151)] {
            let err = limits.login(from, &username).unwrap_err();
            assert_eq!(err, Refused::NoSuchAccount);
        }
    }

    #[test]
    fn a_rate_of_zero_never_throttles() {
        let limits = limits(|c| {
            c.login_per_minute = 0;
            c.writes_per_minute = 0;
            c.register_per_hour = 0;
        });
        let from = ip("192.0.2.1");
        for _ in 0..1_000 {
            limits.login(from, "alice").unwrap();
            limits.refresh(from).unwrap();
            limits.register(from).unwrap();
            limits.write(tickethub_actors::domain::UserId(1)).unwrap();
        }
    }

    #[test]
    fn refreshes_get_six_times_the_login_rate_in_a_bucket_of_their_own() {
        let limits = limits(|c| c.login_per_minute = 1);
        let from = ip("192.0.2.1");
        for _ in 0..6 {
            limits.refresh(from).unwrap();
        }
        let err = limits.refresh(from).unwrap_err();
        assert!(matches!(err, Refused::Throttled { .. }), "{err:?}");
        // Logins are counted apart.
        limits.login(from, "alice").unwrap();
    }

    #[test]
    fn the_largest_login_rate_does_not_overflow_the_refresh_rate() {
        let limits = limits(|c| c.login_per_minute = u32::MAX);
        let from = ip("192.0.2.1");
        for _ in 0..100 {
            limits.refresh(from).unwrap();
        }
    }

    #[test]
    fn registrations_are_limited_per_hour() {
        let limits = limits(|c| c.register_per_hour = 2);
        let from = ip("198.51.100.9");
        limits.register(from).unwrap();
        limits.register(from).unwrap();
        // 2 an hour: the next one 30 minutes after the first.
        assert_eq!(
            limits.register(from).unwrap_err(),
            Refused::Throttled { retry_after: 1800 }
        );
        limits.register(ip("198.51.100.10")).unwrap();
    }

    #[test]
    fn writes_are_limited_per_user() {
        use tickethub_actors::domain::UserId;
        let limits = limits(|c| c.writes_per_minute = 2);
        limits.write(UserId(1)).unwrap();
        limits.write(UserId(1)).unwrap();
        let err = limits.write(UserId(1)).unwrap_err();
        assert!(matches!(err, Refused::Throttled { .. }), "{err:?}");
        limits.write(UserId(2)).unwrap();
    }

    #[test]
    fn a_socket_counts_as_flooding_after_its_burst_of_refusals_and_at_least_one() {
        for (burst, flood_after) in [(0, 1), (1, 1), (7, 7), (u32::MAX, u32::MAX)] {
            let limits = limits(|c| c.ws_command_burst = burst);
            assert_eq!(limits.flood_after(), flood_after, "burst {burst}");
        }
    }

    #[test]
    fn each_socket_gets_a_fresh_command_bucket_of_its_burst() {
        // (per second, burst, commands accepted at once)
        for (rate, burst, accepted) in [(2, 0, 2), (1, 5, 5), (10, 1, 1)] {
            let limits = limits(|c| {
                c.ws_commands_per_second = rate;
                c.ws_command_burst = burst;
            });
            for _ in 0..2 {
                let limiter = limits.command_limiter().unwrap();
                for n in 0..accepted {
                    assert!(
                        limiter.check().is_ok(),
                        "{rate}/s burst {burst}: command {n}"
                    );
                }
                assert!(limiter.check().is_err(), "{rate}/s burst {burst}: one more");
            }
        }
        let unlimited = limits(|c| c.ws_commands_per_second = 0);
        assert!(unlimited.command_limiter().is_none());
    }

    #[tokio::test]
    async fn password_hashing_takes_turns_and_is_busy_when_none_comes() {
        let limits = limits(|c| {
            c.password_hashing_concurrency = 1;
            c.password_hashing_wait_ms = 0;
        });
        let turn = limits.hashing().await.unwrap();
        assert_eq!(limits.hashing().await.unwrap_err(), Refused::Busy);
        drop(turn);
        assert!(limits.hashing().await.is_ok());
    }

    #[test]
    fn hashing_turns_default_to_one_per_core() {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        for (configured, turns) in [(0, cores), (1, 1), (3, 3)] {
            let limits = limits(|c| c.password_hashing_concurrency = configured);
            assert_eq!(limits.hashing.available_permits(), turns, "{configured}");
        }
    }
}
