//! The checks of a configuration that clap cannot make alone: settings that depend on each
//! other, ranges, addresses and URLs.

use super::{database_kind, ConfigError, DatabaseKind, JwtAlgorithm, ServeConfig};

impl ServeConfig {
    /// Checks the settings that clap cannot check alone.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let kind = database_kind(&self.database_url)?;
        if self.jwt_algorithm == JwtAlgorithm::Hs256 {
            if let Some(secret) = &self.jwt_secret {
                if secret.len() < 32 {
                    return Err(ConfigError::new(
                        "--jwt-secret (TICKETHUB_JWT_SECRET)",
                        "must be at least 32 characters",
                    ));
                }
            } else if kind == DatabaseKind::Postgres {
                return Err(ConfigError::new(
                    "--jwt-secret (TICKETHUB_JWT_SECRET)",
                    "is required with a PostgreSQL database (every node must share it)",
                ));
            }
        } else if self.jwt_public_key.is_none() && self.jwt_jwks_url.is_none() {
            return Err(ConfigError::new(
                "--jwt-public-key (TICKETHUB_JWT_PUBLIC_KEY)",
                "is required with RS256 and ES256, unless --jwt-jwks-url is set",
            ));
        }
        if let Some(url) = &self.jwt_jwks_url {
            let plain = url.starts_with("http://");
            if !(url.starts_with("https://") || plain) {
                return Err(ConfigError::new(
                    "--jwt-jwks-url (TICKETHUB_JWT_JWKS_URL)",
                    "must be an https:// URL",
                ));
            }
            if plain && !self.jwt_jwks_allow_http {
                return Err(ConfigError::new(
                    "--jwt-jwks-url (TICKETHUB_JWT_JWKS_URL)",
                    "must be an https:// URL (--jwt-jwks-allow-http allows http:// for development)",
                ));
            }
        }
        // A provider's keys sign tokens for every tenant and application it serves: without
        // its issuer pinned, anyone who can sign up as `admin` anywhere those keys sign would
        // be the local admin.
        if (self.jwt_jwks_url.is_some() || self.jwt_username_claim.is_some())
            && self.jwt_issuer.as_deref().is_none_or(str::is_empty)
        {
            return Err(ConfigError::new(
                "--jwt-issuer (TICKETHUB_JWT_ISSUER)",
                "is required with --jwt-jwks-url or --jwt-username-claim: name the identity provider whose tokens count",
            ));
        }
        if self.demo && !self.demo_public && !self.bind.ip().is_loopback() {
            return Err(ConfigError::new(
                "--demo (TICKETHUB_DEMO)",
                format!(
                    "the demo accounts have published passwords (admin/admin-demo); bind to a \
                     loopback address, or add --demo-public to serve them on {} anyway",
                    self.bind
                ),
            ));
        }
        if self.delivery_lease != 0 && self.delivery_lease < 2 * self.delivery_timeout.max(1) {
            return Err(ConfigError::new(
                "--delivery-lease (TICKETHUB_DELIVERY_LEASE)",
                "must be at least twice --delivery-timeout, or 0 for the default",
            ));
        }
        if self.retention_interval.is_zero() {
            return Err(ConfigError::new(
                "--retention-interval (TICKETHUB_RETENTION_INTERVAL)",
                "must be longer than zero",
            ));
        }
        if self.db_acquire_timeout_ms == 0 {
            return Err(ConfigError::new(
                "--db-acquire-timeout-ms (TICKETHUB_DB_ACQUIRE_TIMEOUT_MS)",
                "must be at least 1 millisecond",
            ));
        }
        if self.bus_reconcile_interval == 0 {
            return Err(ConfigError::new(
                "--bus-reconcile-interval (TICKETHUB_BUS_RECONCILE_INTERVAL)",
                "must be at least 1 second",
            ));
        }
        if self.trusted_proxy_nets().is_none() {
            return Err(ConfigError::new(
                "--trusted-proxies (TICKETHUB_TRUSTED_PROXIES)",
                "must be IP addresses or CIDR blocks, e.g. 10.0.0.0/8,127.0.0.1",
            ));
        }
        // A span past a century is no setting anyone needs, and adding it to a time would
        // overflow; a log past a tebibyte likewise.
        let longest_ms = crate::timespan::LONGEST.as_millis() as u64;
        let spans_ms = [
            (
                "--db-acquire-timeout-ms (TICKETHUB_DB_ACQUIRE_TIMEOUT_MS)",
                self.db_acquire_timeout_ms,
                1,
            ),
            (
                "--user-cache-ttl (TICKETHUB_USER_CACHE_TTL)",
                self.user_cache_ttl,
                1000,
            ),
            (
                "--actor-call-timeout-ms (TICKETHUB_ACTOR_CALL_TIMEOUT_MS)",
                self.actor_call_timeout_ms,
                1,
            ),
            (
                "--bus-reconcile-interval (TICKETHUB_BUS_RECONCILE_INTERVAL)",
                self.bus_reconcile_interval,
                1000,
            ),
            (
                "--bus-outage-poll-ms (TICKETHUB_BUS_OUTAGE_POLL_MS)",
                self.bus_outage_poll_ms,
                1,
            ),
            ("--jwt-leeway (TICKETHUB_JWT_LEEWAY)", self.jwt_leeway, 1000),
            (
                "--jwt-jwks-refetch-floor (TICKETHUB_JWT_JWKS_REFETCH_FLOOR)",
                self.jwt_jwks_refetch_floor,
                1000,
            ),
            (
                "--jwt-jwks-max-age (TICKETHUB_JWT_JWKS_MAX_AGE)",
                self.jwt_jwks_max_age,
                1000,
            ),
            (
                "--access-token-ttl (TICKETHUB_ACCESS_TOKEN_TTL)",
                self.access_token_ttl,
                1000,
            ),
            (
                "--refresh-token-ttl (TICKETHUB_REFRESH_TOKEN_TTL)",
                self.refresh_token_ttl,
                1000,
            ),
            (
                "--ws-ping-interval (TICKETHUB_WS_PING_INTERVAL)",
                self.ws_ping_interval,
                1000,
            ),
            (
                "--ws-idle-timeout (TICKETHUB_WS_IDLE_TIMEOUT)",
                self.ws_idle_timeout,
                1000,
            ),
            (
                "--presence-grace-ms (TICKETHUB_PRESENCE_GRACE_MS)",
                self.presence_grace_ms,
                1,
            ),
            (
                "--presence-lease (TICKETHUB_PRESENCE_LEASE)",
                self.presence_lease,
                1000,
            ),
            (
                "--typing-idle-ms (TICKETHUB_TYPING_IDLE_MS)",
                self.typing_idle_ms,
                1,
            ),
            (
                "--signup-notice-interval (TICKETHUB_SIGNUP_NOTICE_INTERVAL)",
                self.signup_notice_interval,
                1000,
            ),
            (
                "--retention-pause-ms (TICKETHUB_RETENTION_PAUSE_MS)",
                self.retention_pause_ms,
                1,
            ),
            (
                "--escalation-poll-ms (TICKETHUB_ESCALATION_POLL_MS)",
                self.escalation_poll_ms,
                1,
            ),
            (
                "--escalation-lease (TICKETHUB_ESCALATION_LEASE)",
                self.escalation_lease,
                1000,
            ),
            (
                "--idempotency-lease (TICKETHUB_IDEMPOTENCY_LEASE)",
                self.idempotency_lease,
                1000,
            ),
            (
                "--password-hashing-wait-ms (TICKETHUB_PASSWORD_HASHING_WAIT_MS)",
                self.password_hashing_wait_ms,
                1,
            ),
            (
                "--http-header-timeout (TICKETHUB_HTTP_HEADER_TIMEOUT)",
                self.http_header_timeout,
                1000,
            ),
            (
                "--http-request-timeout (TICKETHUB_HTTP_REQUEST_TIMEOUT)",
                self.http_request_timeout,
                1000,
            ),
            (
                "--ticket-actor-idle (TICKETHUB_TICKET_ACTOR_IDLE)",
                self.ticket_actor_idle,
                1000,
            ),
            (
                "--push-ttl (TICKETHUB_PUSH_TTL)",
                self.channels.push.push_ttl,
                1000,
            ),
            (
                "--delivery-backoff-ms (TICKETHUB_DELIVERY_BACKOFF_MS)",
                self.delivery_backoff_ms,
                1,
            ),
            (
                "--delivery-backoff-max-ms (TICKETHUB_DELIVERY_BACKOFF_MAX_MS)",
                self.delivery_backoff_max_ms,
                1,
            ),
            (
                "--delivery-timeout (TICKETHUB_DELIVERY_TIMEOUT)",
                self.delivery_timeout,
                1000,
            ),
            (
                "--delivery-lease (TICKETHUB_DELIVERY_LEASE)",
                self.delivery_lease,
                1000,
            ),
            (
                "--circuit-cooldown-ms (TICKETHUB_CIRCUIT_COOLDOWN_MS)",
                self.circuit_cooldown_ms,
                1,
            ),
            (
                "--delivery-poll-ms (TICKETHUB_DELIVERY_POLL_MS)",
                self.delivery_poll_ms,
                1,
            ),
            (
                "--shutdown-timeout (TICKETHUB_SHUTDOWN_TIMEOUT)",
                self.shutdown_timeout,
                1000,
            ),
        ];
        for (setting, value, unit_ms) in spans_ms {
            if value.checked_mul(unit_ms).is_none_or(|ms| ms > longest_ms) {
                return Err(ConfigError::new(setting, "must be at most 100 years"));
            }
        }
        if self.max_connections > 10_000_000 {
            return Err(ConfigError::new(
                "--max-connections (TICKETHUB_MAX_CONNECTIONS)",
                "must be at most 10000000",
            ));
        }
        if self.sqlite_wal_limit_mb > 1 << 20 {
            return Err(ConfigError::new(
                "--sqlite-wal-limit-mb (TICKETHUB_SQLITE_WAL_LIMIT_MB)",
                "must be at most 1048576 (1 TiB)",
            ));
        }
        if let Some(url) = &self.public_url {
            let setting = "--public-url (TICKETHUB_PUBLIC_URL)";
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| ConfigError::new(setting, format!("`{url}`: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https")
                || parsed.host_str().is_none()
                || parsed.query().is_some()
                || parsed.fragment().is_some()
                || !parsed.username().is_empty()
            {
                return Err(ConfigError::new(
                    setting,
                    format!("`{url}` is not an address like https://tickets.example.com"),
                ));
            }
        }
        for origin in &self.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(ConfigError::new(
                    "--allowed-origins (TICKETHUB_ALLOWED_ORIGINS)",
                    format!("`{origin}` is not an origin like https://app.example.com"),
                ));
            }
        }
        if self.ws_ping_interval == 0 || self.ws_idle_timeout <= self.ws_ping_interval {
            return Err(ConfigError::new(
                "--ws-idle-timeout (TICKETHUB_WS_IDLE_TIMEOUT)",
                "must be longer than --ws-ping-interval, which must be at least 1",
            ));
        }
        if self.ws_max_message_bytes < 1024 {
            return Err(ConfigError::new(
                "--ws-max-message-bytes (TICKETHUB_WS_MAX_MESSAGE_BYTES)",
                "must be at least 1024",
            ));
        }
        if self.ws_outbound_queue == 0 {
            return Err(ConfigError::new(
                "--ws-outbound-queue (TICKETHUB_WS_OUTBOUND_QUEUE)",
                "must be at least 1",
            ));
        }
        crate::channels::validate(&self.channels)?;
        if self.delivery_max_attempts < 1
            || self.delivery_concurrency == 0
            || self.circuit_threshold == 0
        {
            return Err(ConfigError::new(
                "--delivery-max-attempts (TICKETHUB_DELIVERY_MAX_ATTEMPTS)",
                "attempts, concurrency and the circuit threshold must be at least 1",
            ));
        }
        if !(1..=100_000).contains(&self.replay_cap) {
            return Err(ConfigError::new(
                "--replay-cap (TICKETHUB_REPLAY_CAP)",
                "must be between 1 and 100000",
            ));
        }
        if self.access_token_ttl < 60 {
            return Err(ConfigError::new(
                "--access-token-ttl (TICKETHUB_ACCESS_TOKEN_TTL)",
                "must be at least 60 seconds",
            ));
        }
        Ok(())
    }
}
