//! The hub's configuration: one typed struct, read once at the edge.
//!
//! Every setting is a flag of `tickethub serve`, an environment variable and a key of the
//! optional TOML file given with `--config`. Flags win over the environment, the environment
//! wins over the file, and the file wins over the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

mod validate;

/// Settings of `tickethub serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeConfig {
    /// Address and port the hub listens on.
    #[arg(long, env = "TICKETHUB_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Database URL: `sqlite://FILE` (created if missing), `sqlite::memory:` or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://tickethub.db")]
    pub database_url: String,

    /// Redis URL (`redis://host:6379`): fan-out between hub processes that share a database.
    /// A single hub runs without it.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Milliseconds a call waits for a database connection before it fails (503, or
    /// `unavailable` on a socket): during a database outage every call fails this fast.
    #[arg(long, env = "TICKETHUB_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2_000)]
    pub db_acquire_timeout_ms: u64,

    /// The most connections this hub opens to PostgreSQL. Every hub of a deployment opens up
    /// to this many: keep hubs × this below the server's `max_connections`, or the calls that
    /// wait for a connection the server refuses fail with 503. From 6 on, two of them are held
    /// outside the pool for the read each socket's connect makes.
    #[arg(long, env = "TICKETHUB_DB_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..))]
    pub db_max_connections: u32,

    /// Seconds an active user read from the database is kept in memory for the next request's
    /// token check and the next send's recipients (0: off). A write through any hub drops it
    /// at once on every hub; this lifetime bounds only a change made beside the hubs (the
    /// command line without `--redis-url`, or SQL by hand).
    #[arg(long, env = "TICKETHUB_USER_CACHE_TTL", default_value_t = 10)]
    pub user_cache_ttl: u64,

    /// The most active users kept in memory.
    #[arg(long, env = "TICKETHUB_USER_CACHE_SIZE", default_value_t = 100_000)]
    pub user_cache_size: usize,

    /// How many users a hub without `--redis-url` reads into the cache at start, the newest
    /// accounts first, with where each one's notification stream stands: the sockets that come
    /// back within the cache's lifetime of a restart open without a read (0: none; at most
    /// half of `--user-cache-size`, which leaves room for the users read after). As the
    /// lifetime ends, one pass catches every connected user up from the database (for what was
    /// committed beside the hub meanwhile). A hub with a bus reads each connecting user, as
    /// other nodes' acknowledgements are not heard here.
    #[arg(long, env = "TICKETHUB_USER_CACHE_WARM", default_value_t = 50_000)]
    pub user_cache_warm: usize,

    /// SQLite durability. `full`: an acknowledged notification survives a power loss (each
    /// group commit waits for the log's `fdatasync`). `normal`: it survives a crash of the
    /// process only; the last commits before a power loss may be lost.
    #[arg(
        long,
        env = "TICKETHUB_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value = "full"
    )]
    pub sqlite_synchronous: SqliteDurability,

    /// MiB past which SQLite's write-ahead log is checkpointed in full and truncated. Readers
    /// are held for that moment and commits wait for it (a few milliseconds); the log is
    /// otherwise copied into the database every 500 ms without stopping anyone.
    #[arg(long, env = "TICKETHUB_SQLITE_WAL_LIMIT_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub sqlite_wal_limit_mb: u64,

    /// Bytes in a page of a new SQLite database file (a power of two from 512 to 65536; a file
    /// keeps the size it was made with). The log holds each page a commit touches whole, and a
    /// notification touches three: smaller pages write less of it per commit.
    #[arg(long, env = "TICKETHUB_SQLITE_PAGE_SIZE", default_value_t = 2048, value_parser = page_size)]
    pub sqlite_page_size: u32,

    /// Milliseconds a socket's attach waits for its user or room actor before it tries again
    /// (an attach is idempotent: a slow first try is never replayed twice).
    #[arg(
        long,
        env = "TICKETHUB_ACTOR_CALL_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub actor_call_timeout_ms: u64,

    /// Prefix of the Redis channels, so that several deployments can share one Redis.
    #[arg(long, env = "TICKETHUB_REDIS_PREFIX", default_value = "tickethub")]
    pub redis_prefix: String,

    /// Messages waiting to be published to the bus; one that finds the queue full (Redis
    /// connected but slow) is dropped, and the other nodes resync once publishing works again.
    #[arg(long, env = "TICKETHUB_BUS_PUBLISH_QUEUE", default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(1..))]
    pub bus_publish_queue: u64,

    /// Seconds between the periodic reconciliations of a node with a bus: every connected
    /// user is caught up from the database in one batched read, healing any lost message.
    #[arg(long, env = "TICKETHUB_BUS_RECONCILE_INTERVAL", default_value_t = 30)]
    pub bus_reconcile_interval: u64,

    /// Milliseconds between the catch-ups of a node whose bus is away (Redis down or
    /// unreachable): every connected user is caught up from the database (one read per 1,000
    /// connected users), so that other nodes' commits still reach this node's sockets, within
    /// about this delay, until the bus is back.
    #[arg(long, env = "TICKETHUB_BUS_OUTAGE_POLL_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..))]
    pub bus_outage_poll_ms: u64,

    /// Secret that signs HS256 tokens. Without one, an SQLite hub generates a secret and keeps
    /// it beside the database file (`<file>.jwt-secret`); a PostgreSQL hub needs one.
    #[arg(long, env = "TICKETHUB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// The only signature algorithm accepted for tokens: HS256, RS256 or ES256.
    #[arg(
        long,
        env = "TICKETHUB_JWT_ALGORITHM",
        value_enum,
        default_value = "HS256"
    )]
    pub jwt_algorithm: JwtAlgorithm,

    /// PEM public key that verifies RS256/ES256 tokens from an external identity provider.
    #[arg(long, env = "TICKETHUB_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// PEM private key that signs RS256/ES256 tokens issued by `/api/auth/login/`. Without it,
    /// an RS256/ES256 hub only verifies tokens and its login endpoints answer 503.
    #[arg(long, env = "TICKETHUB_JWT_PRIVATE_KEY")]
    pub jwt_private_key: Option<PathBuf>,

    /// The `aud` every token must carry (an identity provider's client id, say); the hub's
    /// own tokens carry it too. Unset: a token with an `aud` claim is refused.
    #[arg(long, env = "TICKETHUB_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// The `iss` every token must carry (an identity provider's issuer URL); the hub's own
    /// tokens carry it too. Unset: not checked.
    #[arg(long, env = "TICKETHUB_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Seconds of clock skew allowed when checking `exp` and `nbf`.
    #[arg(long, env = "TICKETHUB_JWT_LEEWAY", default_value_t = 0)]
    pub jwt_leeway: u64,

    /// An identity provider's JWKS URL (Keycloak: `<realm>/protocol/openid-connect/certs`).
    /// A token whose header names a `kid` is verified with that key of the set (RS256, ES256
    /// or EdDSA, as the key says); tokens without a `kid` with the hub's own key.
    #[arg(long, env = "TICKETHUB_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// Allow an `http://` JWKS URL (development, tests, a provider on the same host). Keys
    /// fetched in the clear can be swapped by anyone on the path, so the default is https only.
    #[arg(long, env = "TICKETHUB_JWT_JWKS_ALLOW_HTTP")]
    pub jwt_jwks_allow_http: bool,

    /// Least seconds between two fetches of the JWKS, however many tokens name unknown keys.
    #[arg(long, env = "TICKETHUB_JWT_JWKS_REFETCH_FLOOR", default_value_t = 30)]
    pub jwt_jwks_refetch_floor: u64,

    /// Seconds a fetched JWKS is trusted before it is fetched again (keys the provider has
    /// withdrawn stop working by then).
    #[arg(long, env = "TICKETHUB_JWT_JWKS_MAX_AGE", default_value_t = 600)]
    pub jwt_jwks_max_age: u64,

    /// The claim that names the local user by username (`preferred_username` with Keycloak).
    /// A token carrying it may have any `sub`; without it, `user_id` or a numeric `sub` names
    /// the user by id.
    #[arg(long, env = "TICKETHUB_JWT_USERNAME_CLAIM")]
    pub jwt_username_claim: Option<String>,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "TICKETHUB_ACCESS_TOKEN_TTL", default_value_t = 900)]
    pub access_token_ttl: u64,

    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "TICKETHUB_REFRESH_TOKEN_TTL", default_value_t = 86_400)]
    pub refresh_token_ttl: u64,

    /// Create a demo admin, developer and client in one project (if absent) and print how to
    /// log in.
    #[arg(long, env = "TICKETHUB_DEMO")]
    pub demo: bool,

    /// Allow `--demo` on an address other than loopback. The demo accounts' passwords are
    /// printed in this project's README: anyone who reaches the hub can log in as its admin.
    #[arg(long, env = "TICKETHUB_DEMO_PUBLIC")]
    pub demo_public: bool,

    /// Reverse proxies (IP addresses or CIDR blocks, comma-separated) whose
    /// `X-Forwarded-For` is believed: throttles then count the client's address, not the
    /// proxy's. Empty: that header is ignored.
    #[arg(long, env = "TICKETHUB_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// The DNS server (`host:port`) asked while a request waits on a name (a Web Push
    /// endpoint's host, when a browser registers). Unset: the system's (`/etc/resolv.conf`).
    #[arg(long, env = "TICKETHUB_DNS_SERVER")]
    pub dns_server: Option<std::net::SocketAddr>,

    /// DNS lookups at once for those checks; past it, a request waits up to a second, then
    /// is answered 503 with `Retry-After`.
    #[arg(long, env = "TICKETHUB_DNS_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub dns_concurrency: u32,

    /// The hub's address as people reach it, e.g. `https://tickets.example.com`: the links
    /// the API builds (pagination `next`/`previous`) and the links in messages (address
    /// verification) start with it. Unset: the API's links are relative, and messages carry
    /// codes without links.
    #[arg(long, env = "TICKETHUB_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Origins allowed to open WebSockets, comma-separated, matched exactly
    /// (e.g. `https://app.example.com`). Empty: only the hub's own origin.
    #[arg(long, env = "TICKETHUB_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Seconds between protocol pings the hub sends to every socket.
    #[arg(long, env = "TICKETHUB_WS_PING_INTERVAL", default_value_t = 25)]
    pub ws_ping_interval: u64,

    /// Seconds of silence after which a socket is closed.
    #[arg(long, env = "TICKETHUB_WS_IDLE_TIMEOUT", default_value_t = 60)]
    pub ws_idle_timeout: u64,

    /// The frame shapes `/ws/notifications/` speaks: seed001 (the contract's), seed002, seed003
    /// or seed004 (their frontends' shapes). A client may ask for another with `?dialect=` or
    /// a `tickethub.<dialect>` subprotocol.
    #[arg(
        long,
        env = "TICKETHUB_WS_DIALECT",
        value_enum,
        default_value = "seed001"
    )]
    pub ws_dialect: crate::wire::dialect::Dialect,

    /// Milliseconds a user whose last presence socket closed stays present in a project (so a
    /// page reload does not flap joined/left).
    #[arg(long, env = "TICKETHUB_PRESENCE_GRACE_MS", default_value_t = 5_000)]
    pub presence_grace_ms: u64,

    /// Seconds a node's presence lease lasts in Redis unless renewed: the users of a node that
    /// dies without a word leave the other nodes' presence within about this long.
    #[arg(long, env = "TICKETHUB_PRESENCE_LEASE", default_value_t = 15)]
    pub presence_lease: u64,

    /// Milliseconds of silence after which a typing user is relayed as stopped.
    #[arg(long, env = "TICKETHUB_TYPING_IDLE_MS", default_value_t = 5_000)]
    pub typing_idle_ms: u64,

    /// The nice value (1–19) of the threads that run project rooms (board and presence
    /// sockets, room actors): a storm of presence joins then yields the CPU to notifications.
    /// 0 runs rooms on the same threads as everything else.
    #[arg(long, env = "TICKETHUB_ROOMS_NICE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub rooms_nice: i32,

    /// Largest WebSocket message accepted from a client, in bytes; larger ones close with 1009.
    #[arg(long, env = "TICKETHUB_WS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub ws_max_message_bytes: usize,

    /// Frames that may wait in one socket's outbound queue before it is closed as a slow
    /// consumer (4008).
    #[arg(long, env = "TICKETHUB_WS_OUTBOUND_QUEUE", default_value_t = 256)]
    pub ws_outbound_queue: usize,

    /// Bytes that may wait in one socket's outbound queue before it is closed as a slow
    /// consumer (4008).
    #[arg(long, env = "TICKETHUB_WS_OUTBOUND_QUEUE_BYTES", default_value_t = 1024 * 1024)]
    pub ws_outbound_queue_bytes: usize,

    /// Logins per minute from one client address, and for one username (0: no limit); token
    /// refreshes get six times as many per address. Past it: 429 with `Retry-After`.
    #[arg(long, env = "TICKETHUB_LOGIN_PER_MINUTE", default_value_t = 20)]
    pub login_per_minute: u32,

    /// Whether `POST /api/auth/register/` is open to anyone (`open`) or answers 403 (`closed`).
    #[arg(
        long,
        env = "TICKETHUB_REGISTRATION",
        value_enum,
        default_value = "open"
    )]
    pub registration: Registration,

    /// Seconds over which sign-up emails to super admins are coalesced: the first sign-up
    /// after a quiet spell is mailed at once, later ones together when the window closes
    /// (0: one email per sign-up). Inbox notifications are never held back.
    #[arg(long, env = "TICKETHUB_SIGNUP_NOTICE_INTERVAL", default_value_t = 300)]
    pub signup_notice_interval: u64,

    /// How long a person's updates about one ticket wait for each other on email, SMS,
    /// WhatsApp and chats, to go out as one message (`3 updates on WEB-42`), e.g. `2m`; `0s`
    /// sends each at once. In-app notifications, pushes and pages never wait. A type's
    /// `batch` in the routing file overrides it.
    #[arg(long, env = "TICKETHUB_BATCH_WINDOW", default_value = "2m", value_parser = crate::timespan::parse)]
    pub batch_window: std::time::Duration,

    /// How far ahead a send may be scheduled (`send_at`, `delay`).
    #[arg(long, env = "TICKETHUB_SCHEDULE_MAX_AHEAD", default_value = "30d", value_parser = crate::timespan::parse)]
    pub schedule_max_ahead: std::time::Duration,

    /// Scheduled sends one caller may have pending.
    #[arg(long, env = "TICKETHUB_SCHEDULE_MAX_PENDING", default_value_t = 1000)]
    pub schedule_max_pending: i64,

    /// How long read and deleted notifications and the history tables (socket pushes and
    /// acks, ticket events, delivery attempts, finished escalation steps) are kept, e.g. `180d`,
    /// `12h`. Expired refresh-token records go whatever it says.
    #[arg(long, env = "TICKETHUB_RETENTION", default_value = "180d", value_parser = crate::timespan::parse)]
    pub retention: std::time::Duration,

    /// How long unread notifications are kept once a socket of their user was written them
    /// (or acknowledged them). Unset: for ever. An unread notification that was never
    /// delivered to a socket is never purged.
    #[arg(long, env = "TICKETHUB_RETENTION_UNREAD", value_parser = crate::timespan::parse)]
    pub retention_unread: Option<std::time::Duration>,

    /// Time between two purges, e.g. `1h`.
    #[arg(long, env = "TICKETHUB_RETENTION_INTERVAL", default_value = "1h", value_parser = crate::timespan::parse)]
    pub retention_interval: std::time::Duration,

    /// Rows a purge deletes per transaction: a live commit waits at most one such batch.
    #[arg(long, env = "TICKETHUB_RETENTION_BATCH", default_value_t = 200, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub retention_batch: i64,

    /// Milliseconds a purge pauses between two batches, so that what else waits for the
    /// database goes first.
    #[arg(long, env = "TICKETHUB_RETENTION_PAUSE_MS", default_value_t = 10)]
    pub retention_pause_ms: u64,

    /// Milliseconds between the escalation actor's looks at the database for steps due (it
    /// also wakes for the next step it knows of). Steps scheduled by other nodes fire within
    /// this.
    #[arg(long, env = "TICKETHUB_ESCALATION_POLL_MS", default_value_t = 1_000)]
    pub escalation_poll_ms: u64,

    /// Seconds a node's claim on a firing escalation step holds; a step claimed by a node that
    /// died is taken over after it.
    #[arg(long, env = "TICKETHUB_ESCALATION_LEASE", default_value_t = 60)]
    pub escalation_lease: u64,

    /// Tickets and comments one user may create per minute (0: no limit); each may send email
    /// and WhatsApp messages to several people. Past it: 429 with `Retry-After`.
    #[arg(long, env = "TICKETHUB_WRITES_PER_MINUTE", default_value_t = 30)]
    pub writes_per_minute: u32,

    /// Seconds a request with an `Idempotency-Key` holds the key before a retry may run too
    /// (a retry sooner gets 409 with `Retry-After`). Only one of them can commit, however long
    /// either takes.
    #[arg(long, env = "TICKETHUB_IDEMPOTENCY_LEASE", default_value_t = 30)]
    pub idempotency_lease: u64,

    /// Requests one API key may make per minute (0: no limit), whatever its scopes. Past it:
    /// 429 with `Retry-After`.
    #[arg(
        long,
        env = "TICKETHUB_API_KEY_REQUESTS_PER_MINUTE",
        default_value_t = 600
    )]
    pub api_key_requests_per_minute: u32,

    /// Registrations per hour from one client address (0: no limit).
    #[arg(long, env = "TICKETHUB_REGISTER_PER_HOUR", default_value_t = 10)]
    pub register_per_hour: u32,

    /// Passwords hashed or verified at once (argon2, 19 MiB each); 0 means one per core.
    #[arg(
        long,
        env = "TICKETHUB_PASSWORD_HASHING_CONCURRENCY",
        default_value_t = 0
    )]
    pub password_hashing_concurrency: u32,

    /// Milliseconds a login waits for a turn at hashing before it gets 503.
    #[arg(
        long,
        env = "TICKETHUB_PASSWORD_HASHING_WAIT_MS",
        default_value_t = 1_000
    )]
    pub password_hashing_wait_ms: u64,

    /// Frames per second one socket may send (0: no limit); past it, each frame is answered
    /// `{"type":"error","code":"rate_limited"}`, and a socket that goes on flooding is closed
    /// with 4008.
    #[arg(long, env = "TICKETHUB_WS_COMMANDS_PER_SECOND", default_value_t = 20)]
    pub ws_commands_per_second: u32,

    /// Frames a socket may send at once above that rate.
    #[arg(long, env = "TICKETHUB_WS_COMMAND_BURST", default_value_t = 50)]
    pub ws_command_burst: u32,

    /// Sockets one user may hold open on one node, of every kind (0: no limit); one more is
    /// closed with 4008 right after the upgrade, and the user's other sockets stay.
    #[arg(long, env = "TICKETHUB_MAX_SOCKETS_PER_USER", default_value_t = 20)]
    pub max_sockets_per_user: u32,

    /// WebSocket handshakes that may read the database at once (the token's user, the
    /// project membership, the replay cursor). The rest wait their turn, so that a connect
    /// storm never holds every database connection that requests and notifications need.
    #[arg(long, env = "TICKETHUB_WS_HANDSHAKE_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_handshake_concurrency: u32,

    /// The most notifications replayed to a reconnecting socket; older ones are announced with
    /// `replay_truncated` and left to the REST API.
    #[arg(long, env = "TICKETHUB_REPLAY_CAP", default_value_t = 1000)]
    pub replay_cap: i64,

    /// Largest HTTP request body accepted, in bytes; larger ones answer 413.
    #[arg(long, env = "TICKETHUB_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Seconds a client has to send a request's head (from the connection's start, or the
    /// end of its previous request: also the keep-alive idle time). A client that trickles
    /// its headers is disconnected after it.
    #[arg(long, env = "TICKETHUB_HTTP_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout: u64,

    /// Seconds a request may take, body included, before it is answered 503 (WebSocket
    /// upgrades answer at once and are not bound by it).
    #[arg(long, env = "TICKETHUB_HTTP_REQUEST_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_request_timeout: u64,

    /// Connections open at once, HTTP and WebSocket; the next waits in the accept backlog. 0:
    /// the process's open-file limit less 512 (kept for the database, Redis and deliveries).
    #[arg(long, env = "TICKETHUB_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Serve `/metrics` on this address only (an internal interface, say), and not on
    /// `--bind`. Unset: `/metrics` is served on `--bind` beside the API.
    #[arg(long, env = "TICKETHUB_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// A bearer token `/metrics` asks for (`Authorization: Bearer <token>`, Prometheus's
    /// `authorization` setting); unset, `/metrics` answers anyone who reaches it.
    #[arg(long, env = "TICKETHUB_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Seconds a ticket's actor lives without messages before it is passivated.
    #[arg(long, env = "TICKETHUB_TICKET_ACTOR_IDLE", default_value_t = 60)]
    pub ticket_actor_idle: u64,

    /// TOML file overriding who hears about which event on which channels (see README).
    #[arg(long, env = "TICKETHUB_ROUTING")]
    pub routing: Option<PathBuf>,

    /// Every channel's own settings (see `crate::channels`).
    #[command(flatten)]
    pub channels: crate::channels::Settings,

    /// Where attached files are kept, and what they may be (see `crate::attachments`).
    #[command(flatten)]
    pub attachments: crate::attachments::AttachmentSettings,

    /// Folder of message templates overriding the defaults (`<type>.subject.txt`, `<type>.txt`,
    /// `<type>.html`, `<type>.whatsapp.txt`, `<type>.sms.txt`, or `default.*`).
    #[arg(long, env = "TICKETHUB_TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,

    /// Attempts before a delivery is marked FAILED.
    #[arg(long, env = "TICKETHUB_DELIVERY_MAX_ATTEMPTS", default_value_t = 8)]
    pub delivery_max_attempts: i64,

    /// First retry delay in milliseconds; it doubles per attempt (with jitter).
    #[arg(long, env = "TICKETHUB_DELIVERY_BACKOFF_MS", default_value_t = 2_000)]
    pub delivery_backoff_ms: u64,

    /// Longest retry delay in milliseconds.
    #[arg(
        long,
        env = "TICKETHUB_DELIVERY_BACKOFF_MAX_MS",
        default_value_t = 600_000
    )]
    pub delivery_backoff_max_ms: u64,

    /// Sends in flight at once per channel.
    #[arg(long, env = "TICKETHUB_DELIVERY_CONCURRENCY", default_value_t = 8)]
    pub delivery_concurrency: usize,

    /// Seconds a provider call may take.
    #[arg(long, env = "TICKETHUB_DELIVERY_TIMEOUT", default_value_t = 10)]
    pub delivery_timeout: u64,

    /// Seconds a claimed outbox row stays with the hub process that claimed it; a process
    /// that dies holding rows has them taken over by another once this runs out. At least
    /// twice the delivery timeout, so that a live process never has a send taken from it.
    /// 0: four times the delivery timeout, at least 30 s.
    #[arg(long, env = "TICKETHUB_DELIVERY_LEASE", default_value_t = 0)]
    pub delivery_lease: u64,

    /// Consecutive retryable failures that open a channel's circuit.
    #[arg(long, env = "TICKETHUB_CIRCUIT_THRESHOLD", default_value_t = 5)]
    pub circuit_threshold: u32,

    /// Milliseconds an open circuit waits before letting a probe through.
    #[arg(long, env = "TICKETHUB_CIRCUIT_COOLDOWN_MS", default_value_t = 30_000)]
    pub circuit_cooldown_ms: u64,

    /// Milliseconds between a channel's looks for due retries.
    #[arg(long, env = "TICKETHUB_DELIVERY_POLL_MS", default_value_t = 1_000)]
    pub delivery_poll_ms: u64,

    /// Log format.
    #[arg(long, env = "TICKETHUB_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Seconds a graceful shutdown waits for sockets and requests before it gives up.
    #[arg(long, env = "TICKETHUB_SHUTDOWN_TIMEOUT", default_value_t = 10)]
    pub shutdown_timeout: u64,
}

/// How SQLite makes a commit durable.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SqliteDurability {
    /// `synchronous=FULL`: a commit survives a power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit survives a crash of the process.
    Normal,
}

/// The token signature algorithms the hub can be pinned to.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "UPPER")]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    #[value(name = "HS256")]
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA P-256 with SHA-256.
    #[value(name = "ES256")]
    Es256,
}

pub use crate::channels::push::PushContent;
pub use crate::channels::whatsapp::WhatsappMode;

/// Whether anyone may sign up.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// `POST /api/auth/register/` creates client accounts (seed 004's behaviour).
    Open,
    /// It answers 403; admins create users (`tickethub users add`).
    Closed,
}

/// How log lines are written.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

pub(crate) use crate::setting::write_private;
pub use crate::setting::{redact_url, ConfigError};

/// Which database a URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseKind {
    /// An SQLite file (or `:memory:`).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl ServeConfig {
    /// The purge actor's policy.
    pub fn retention_policy(&self) -> tickethub_actors::purge::RetentionPolicy {
        tickethub_actors::purge::RetentionPolicy {
            retention: self.retention,
            unread: self.retention_unread,
            interval: self.retention_interval,
            batch: self.retention_batch,
            pause: std::time::Duration::from_millis(self.retention_pause_ms),
        }
    }

    /// `--trusted-proxies` as networks; `None` if one does not parse.
    pub fn trusted_proxy_nets(&self) -> Option<Vec<ipnet::IpNet>> {
        self.trusted_proxies
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .ok()
                    .or_else(|| p.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
            })
            .collect()
    }

    /// A configuration with every default, for tests and embedding.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            serve: ServeConfig,
        }
        <Wrapper as clap::Parser>::parse_from(["tickethub"]).serve
    }

    /// The ping interval as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ws_ping_interval)
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.ws_idle_timeout)
    }
}

/// Which backend a database URL names.
pub fn database_kind(url: &str) -> Result<DatabaseKind, ConfigError> {
    if url.starts_with("sqlite:") {
        Ok(DatabaseKind::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DatabaseKind::Postgres)
    } else {
        Err(ConfigError::new(
            "--database-url (DATABASE_URL)",
            format!(
                "`{}` is neither sqlite://FILE nor postgres://…",
                redact_url(url)
            ),
        ))
    }
}

#[cfg(test)]
mod tests;

/// A SQLite page size: a power of two from 512 to 65536.
fn page_size(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && (512..=65536).contains(&n) => Ok(n),
        _ => Err("must be a power of two from 512 to 65536".into()),
    }
}
