//! The composition root: the only place that wires store, auth, actors and HTTP together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tickethub_actors::domain::{NewUser, Role, User};
use tickethub_actors::ports::{Store, StoreError};
use tickethub_actors::user::CatchUp;
use tickethub_actors::{Hub, HubConfig, HubDeps};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Auth};
use crate::config::{ConfigError, DatabaseKind, JwtAlgorithm, ServeConfig};
use crate::http::{self, AppState};
use crate::store::{self, ConnectError};
use crate::ws::WsSettings;

mod keys;
mod user_cache;
use keys::{attachment_store, embedded_secret, reply_key, sqlite_file, unsubscribe_key};
use user_cache::{warm_user_cache, watch_user_cache};

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] ConnectError),
    /// The listening socket could not be bound.
    #[error("--bind (TICKETHUB_BIND): cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The actor system could not start.
    #[error("cannot start the actor system: {0}")]
    Actors(#[from] ractor::SpawnErr),
    /// The jwt secret file could not be read or written.
    #[error("--jwt-secret (TICKETHUB_JWT_SECRET): {0}")]
    Secret(String),
}

/// How long shutdown lets the actors close their sockets themselves.
const ACTORS_CLOSE_SOCKETS: Duration = Duration::from_secs(2);

/// A built hub, bound to its port and ready to run.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    /// `/metrics` on a listener of its own (`--metrics-bind`).
    metrics_listener: Option<TcpListener>,
    state: AppState,
    max_body_bytes: usize,
    shutdown_timeout: Duration,
    limits: crate::serve::ServerLimits,
    request_timeout: Duration,
    /// Where project rooms run, when they have threads of their own.
    _rooms_runtime: Option<NicedRuntime>,
    /// The SMTP listener for replies to pages (`--inbound-smtp-bind`), and what it needs.
    smtp: Option<(TcpListener, Arc<crate::channels::email::ReplyKey>, usize)>,
    /// Posts the event webhooks' events.
    webhooks: crate::webhooks::Poster,
    /// Sends the digests: the email transport, and how long a claim holds.
    digests: Option<crate::digests::Email>,
}

/// A multi-threaded runtime whose threads run at a lower CPU priority (a higher nice value).
/// Under a CPU shortage the kernel then runs the other threads first: what runs here yields,
/// and never starves (nice 10 still gets about a tenth of a busy core).
pub struct NicedRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl NicedRuntime {
    /// Starts one thread per core, named `name`, at `nice`.
    pub fn start(name: &str, nice: i32) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name(name)
            .on_thread_start(move || {
                // On Linux, nice is per thread: this lowers only the runtime's own threads.
                #[cfg(target_os = "linux")]
                if let Err(e) =
                    rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice)
                {
                    tracing::warn!(nice, error = %e, "cannot lower a thread's priority");
                }
                #[cfg(not(target_os = "linux"))]
                tracing::debug!(nice, "thread priorities are only set on Linux");
            })
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// A handle to spawn on it.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime runs until dropped")
            .handle()
            .clone()
    }
}

impl Drop for NicedRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async context forbids: let it wind down alone.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Application {
    /// Validates the configuration, opens the database (running migrations), starts the
    /// actors and binds the listener.
    pub async fn build(config: ServeConfig) -> Result<Self, BuildError> {
        config.validate()?;
        // Every channel plug-in's name, before anything names one (the routing file).
        crate::channels::register();
        // The routing file is read before anything is written: a bad one changes nothing.
        let routing = if config.demo && config.routing.is_none() {
            crate::routing::demo()
        } else {
            crate::routing::load(config.routing.as_deref())?
        };
        crate::telemetry::metrics();
        let store = store::connect_with(
            &config.database_url,
            store::StoreOptions {
                acquire_timeout: Duration::from_millis(config.db_acquire_timeout_ms),
                max_connections: config.db_max_connections,
                durability: config.sqlite_synchronous,
                wal_limit_bytes: config.sqlite_wal_limit_mb.max(1) * 1024 * 1024,
                page_size: config.sqlite_page_size,
                user_cache: tickethub_actors::ports::UserCacheOptions {
                    ttl: Duration::from_secs(config.user_cache_ttl),
                    capacity: config.user_cache_size.max(1),
                },
            },
        )
        .await?;
        let secret = match (config.jwt_algorithm, &config.jwt_secret) {
            (JwtAlgorithm::Hs256, Some(secret)) => Some(secret.clone()),
            (JwtAlgorithm::Hs256, None) => Some(embedded_secret(&config.database_url)?),
            _ => None,
        };
        let auth = Arc::new(Auth::from_config(&config, secret.as_deref())?);
        let vapid = vapid_key(&config)?.map(Arc::new);
        if vapid.is_some() && config.channels.webpush.webpush_subject.is_none() {
            tracing::warn!(
                "Web Push is on without --webpush-subject: Apple's push service refuses pushes that name no contact"
            );
        }
        tokio::spawn({
            let auth = auth.clone();
            async move { auth.prefetch_keys().await }
        });
        let (bus, remote) = match &config.redis_url {
            Some(url) => {
                let (bus, remote) = crate::bus::RedisBus::connect(
                    url,
                    &config.redis_prefix,
                    config.bus_publish_queue as usize,
                )
                .await?;
                (Some(bus), Some(remote))
            }
            None => (None, None),
        };
        if let Some(bus) = &bus {
            watch_user_cache(&store, bus);
        }
        let rooms_runtime = match config.rooms_nice {
            0 => None,
            nice => Some(NicedRuntime::start("tickethub-rooms", nice).map_err(|e| {
                ConfigError::new(
                    "--rooms-nice (TICKETHUB_ROOMS_NICE)",
                    format!("cannot start the rooms' threads: {e}"),
                )
            })?),
        };
        let replies = reply_key(&config, secret.as_deref())?;
        let unsubscribe = unsubscribe_key(&config, secret.as_deref())?;
        let attachments = attachment_store(&config, secret.as_deref())?;
        let (mut delivery, rooms) =
            delivery_config(&config, vapid.clone(), replies.clone(), unsubscribe.clone())?;
        let digests = crate::digests::email(&delivery);
        delivery.policy.batching = tickethub_actors::batch::Batching {
            window: config.batch_window,
            per_type: routing.batches().clone(),
        };
        let verifier = Arc::new(crate::verification::Verifier::new(
            store.clone(),
            &delivery.transports,
            config
                .public_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            Default::default(),
        ));
        let hub = Hub::start(
            HubConfig {
                ping_interval: config.ping_interval(),
                idle_timeout: config.idle_timeout(),
                ticket_idle: Duration::from_secs(config.ticket_actor_idle.max(1)),
                replay_cap: config.replay_cap,
                call_timeout: Duration::from_millis(config.actor_call_timeout_ms.max(1)),
                rooms: tickethub_actors::room::RoomConfig {
                    grace: Duration::from_millis(config.presence_grace_ms),
                    typing_idle: Duration::from_millis(config.typing_idle_ms.max(1)),
                    presence_lease: Duration::from_secs(config.presence_lease.max(1)),
                    ..Default::default()
                },
                rooms_runtime: rooms_runtime.as_ref().map(NicedRuntime::handle),
                signup_notice_interval: Duration::from_secs(config.signup_notice_interval),
                escalation_poll: Duration::from_millis(config.escalation_poll_ms.max(10)),
                escalation_lease: Duration::from_secs(config.escalation_lease.max(1)),
                retention: config.retention_policy(),
                ..HubConfig::default()
            },
            HubDeps {
                store: store.clone(),
                routing,
                delivery,
                bus: bus
                    .clone()
                    .map(|b| b as Arc<dyn tickethub_actors::ports::Bus>),
                presence: bus.as_ref().map(|b| {
                    Arc::new(b.presence(
                        &config.redis_prefix,
                        Duration::from_secs(config.presence_lease.max(1)),
                    )) as Arc<dyn tickethub_actors::ports::PresenceStore>
                }),
            },
        )
        .await?;
        if bus.is_none() {
            warm_user_cache(
                &store,
                &hub,
                config.user_cache_warm.min(config.user_cache_size / 2),
            )
            .await;
        }
        if let (Some(remote), Some(bus)) = (remote, &bus) {
            let listening = bus.listening();
            tokio::spawn(follow_bus(
                hub.clone(),
                store.clone(),
                remote,
                (
                    Duration::from_secs(config.bus_reconcile_interval.max(1)),
                    Duration::from_millis(config.bus_outage_poll_ms.max(1)),
                ),
                listening,
            ));
        }
        let listener = crate::serve::listen(config.bind).map_err(|source| BuildError::Bind {
            addr: config.bind,
            source,
        })?;
        let metrics_listener = config
            .metrics_bind
            .map(|addr| {
                crate::serve::listen(addr).map_err(|source| BuildError::Bind { addr, source })
            })
            .transpose()?;
        let addr = listener.local_addr().map_err(|source| BuildError::Bind {
            addr: config.bind,
            source,
        })?;
        let smtp = match (config.channels.email.inbound_smtp_bind, &replies) {
            (Some(addr), Some(key)) => Some((
                crate::serve::listen(addr).map_err(|source| BuildError::Bind { addr, source })?,
                key.clone(),
                config.channels.email.inbound_smtp_max_bytes.max(1024),
            )),
            _ => None,
        };
        let ws = Arc::new(WsSettings {
            allowed_origins: config.allowed_origins.clone(),
            max_message_bytes: config.ws_max_message_bytes,
            outbound_queue: config.ws_outbound_queue,
            outbound_queue_bytes: config.ws_outbound_queue_bytes,
            handshakes: tokio::sync::Semaphore::new(config.ws_handshake_concurrency as usize),
            max_sockets_per_user: config.max_sockets_per_user as usize,
            user_sockets: Default::default(),
            dialect: config.ws_dialect,
            sessions: TaskTracker::new(),
            rooms_runtime: rooms_runtime.as_ref().map(NicedRuntime::handle),
            shutdown: CancellationToken::new(),
            next_conn_id: AtomicU64::new(1),
            ticket_projects: Default::default(),
        });
        let state = AppState::new(crate::state::AppParts {
            bus,
            store,
            auth,
            hub,
            ws,
            dummy_hash: auth::hash_password("not a password".into()).await.into(),
            trusted_proxies: config.trusted_proxy_nets().unwrap_or_default().into(),
            public_url: config
                .public_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            limits: Arc::new(crate::limits::Limits::from_config(&config)),
            registration: config.registration,
            push: Arc::new(crate::state::PushSettings {
                vapid_public_key: vapid.as_ref().map(|k| k.public_key.clone()),
                allow_private: config.channels.push.push_allow_private,
                device_cap: config.channels.push.push_device_cap,
                fcm: config.channels.fcm.fcm_service_account.is_some(),
                apns: config.channels.apns.apns_key.is_some(),
            }),
            verifier,
            vapid: vapid.clone(),
            slack: slack_inbound(&config)?,
            rooms: rooms.clone(),
            unsubscribe,
            attachments,
            slack_members: crate::channels::slack::SlackMembers::new(
                &config.channels.slack,
                Duration::from_secs(config.delivery_timeout.max(1)),
            )?
            .map(Arc::new),
            mattermost_action_token: match &config.channels.mattermost {
                m if m.mattermost_url.is_some() && m.mattermost_bot_token.is_some() => {
                    m.mattermost_action_token.clone()
                }
                _ => None,
            },
            twilio_auth_token: match &config.channels.sms {
                s if s.twilio_account_sid.is_some() && s.twilio_from.is_some() => {
                    s.twilio_auth_token.clone()
                }
                _ => None,
            },
            dns: Arc::new(
                crate::delivery::outbound::Dns::new(
                    config.dns_server,
                    config.dns_concurrency as usize,
                )
                .map_err(|e| {
                    let why = match config.dns_server {
                        Some(_) => e.to_string(),
                        None => format!(
                            "cannot read the system's resolver settings ({e}); name a DNS server"
                        ),
                    };
                    ConfigError::new("--dns-server (TICKETHUB_DNS_SERVER)", why)
                })?,
            ),
            schedule: crate::state::ScheduleLimits {
                max_ahead: config.schedule_max_ahead,
                max_pending: config.schedule_max_pending.max(1),
            },
            idempotency_lease: chrono::TimeDelta::seconds(config.idempotency_lease.max(1) as i64),
            metrics: Arc::new(http::MetricsAccess {
                token: config.metrics_token.clone(),
                on_main: config.metrics_bind.is_none(),
            }),
        });
        state.limits.spawn_cleanup();
        Ok(Self {
            listener,
            addr,
            metrics_listener,
            state,
            max_body_bytes: config.max_body_bytes,
            shutdown_timeout: Duration::from_secs(config.shutdown_timeout),
            limits: crate::serve::ServerLimits {
                max_connections: match config.max_connections {
                    0 => crate::serve::default_max_connections(),
                    n => n,
                },
                header_timeout: Duration::from_secs(config.http_header_timeout),
            },
            request_timeout: Duration::from_secs(config.http_request_timeout),
            _rooms_runtime: rooms_runtime,
            smtp,
            webhooks: crate::webhooks::Poster::from_config(&config)?,
            digests,
        })
    }

    /// The address the SMTP listener for replies listens on, when it is on.
    pub fn smtp_addr(&self) -> Option<SocketAddr> {
        self.smtp.as_ref().and_then(|(l, _, _)| l.local_addr().ok())
    }

    /// The address the hub listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `/metrics` is served on, when it has a listener of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The actor system.
    pub fn hub(&self) -> Hub {
        self.state.hub.clone()
    }

    /// The database.
    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    /// Token issue and verification.
    pub fn auth(&self) -> Arc<Auth> {
        self.state.auth.clone()
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully: stop accepting, close
    /// every socket with 1001, let in-flight requests finish, close the database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Application {
            listener,
            metrics_listener,
            state,
            max_body_bytes,
            shutdown_timeout,
            limits,
            request_timeout,
            smtp,
            webhooks,
            digests,
            ..
        } = self;
        let smtp = smtp.map(|(listener, key, max_bytes)| {
            let mailbox = crate::mailbox::Mailbox {
                state: state.clone(),
                key,
                max_bytes,
            };
            tokio::spawn(crate::mailbox::serve(listener, mailbox))
        });
        let streams = crate::sse::router().merge(crate::ws::router().into());
        let router = http::router(state.clone(), streams, max_body_bytes, request_timeout);
        let stop_accepting = CancellationToken::new();
        let server = tokio::spawn(crate::serve::serve(
            listener,
            router,
            limits,
            stop_accepting.clone(),
            shutdown_timeout,
        ));
        let chats = CancellationToken::new();
        let poster = (!state.rooms.is_empty()).then(|| {
            crate::chats::spawn(
                state.store.clone(),
                state.rooms.clone(),
                state.hub.node().to_owned(),
                state.public_url.clone(),
                chats.clone(),
            )
        });
        let webhooks = crate::webhooks::spawn(state.clone(), webhooks, chats.clone());
        let digests = digests.map(|d| crate::digests::spawn(d.on(&state), chats.clone()));
        let sweeper = state.attachments.clone().map(|a| {
            tokio::spawn(a.sweep(state.store.clone(), Duration::from_secs(60), chats.clone()))
        });
        if let Some(listener) = metrics_listener {
            tokio::spawn(crate::serve::serve(
                listener,
                http::ops::metrics_router(state.clone()),
                crate::serve::ServerLimits {
                    max_connections: 64,
                    ..limits
                },
                stop_accepting.clone(),
                Duration::ZERO,
            ));
        }
        shutdown.await;
        tracing::info!("shutting down");
        stop_accepting.cancel();
        if let Some(smtp) = smtp {
            smtp.abort();
        }
        // The project chats', event webhooks' and digests' posters finish what they are telling.
        chats.cancel();
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        for mut poster in poster.into_iter().chain([webhooks]).chain(digests) {
            if tokio::time::timeout(shutdown_timeout, &mut poster)
                .await
                .is_err()
            {
                poster.abort();
            }
        }
        let told = state.hub.disconnect_all().await;
        state.ws.sessions.close();
        // Each socket's actor closes it with 1001 behind everything it still had to push (its
        // mailbox may hold notifications not yet queued to the socket); the token then cuts
        // short whatever is left, after what is queued.
        if tokio::time::timeout(ACTORS_CLOSE_SOCKETS, state.ws.sessions.wait())
            .await
            .is_err()
        {
            state.ws.shutdown.cancel();
        }
        if tokio::time::timeout(shutdown_timeout, state.ws.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!("some sockets did not close in time");
        }
        // The server drains its requests within the shutdown timeout itself.
        let served = server.await.map_err(std::io::Error::other);
        state.hub.shutdown().await;
        if let Some(bus) = &state.bus {
            bus.close().await;
        }
        state.store.close().await;
        tracing::info!(user_actors = told, "stopped");
        served
    }
}

/// How much earlier than the last periodic pass the next one looks for inbox changes.
const INBOX_MARGIN: Duration = Duration::from_secs(5);

/// Hands other nodes' events to the local actors, and catches every connected user up from
/// the database after any gap on the bus (a resync) and on a slow timer. Requests that arrive
/// while a catch-up runs are merged into the next one. After a gap, the sockets also hear the
/// inbox changes (read, unread, deleted) made while it lasted, and
/// [`tickethub_actors::hub::INBOX_LOOKBACK`] before; each periodic pass, those since the last
/// pass that the actors never told them. While the bus is away, a pass runs every `away`
/// (`--bus-outage-poll-ms`), so that other nodes' commits still reach this node's sockets.
async fn follow_bus(
    hub: Hub,
    store: Arc<dyn tickethub_actors::ports::Store>,
    mut remote: crate::bus::Remote,
    (every, away): (Duration, Duration),
    listening: impl Fn() -> bool + Send + 'static,
) {
    let wanted = Arc::new(tokio::sync::Notify::new());
    // The earliest inbox change a resync still owes the sockets, by the store's clock.
    let inboxes = Arc::new(std::sync::Mutex::new(None::<chrono::DateTime<chrono::Utc>>));
    let owe = |inboxes: &std::sync::Mutex<Option<chrono::DateTime<chrono::Utc>>>, since| {
        let mut owed = inboxes.lock().unwrap_or_else(|e| e.into_inner());
        *owed = Some(owed.map_or(since, |owed: chrono::DateTime<chrono::Utc>| owed.min(since)));
    };
    let reconciler = {
        let hub = hub.clone();
        let wanted = wanted.clone();
        let inboxes = inboxes.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer.tick().await;
            // The seqs the last pass of this outage read (none once the bus is back).
            let mut seen = tickethub_actors::hub::Seen::new();
            // Looks at the bus every `away`; a pass runs only while it is away.
            let mut outage = tokio::time::interval(away);
            outage.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            outage.tick().await;
            loop {
                let reason = tokio::select! {
                    _ = wanted.notified() => "resync",
                    _ = timer.tick() => "periodic",
                    _ = outage.tick() => {
                        if listening() {
                            continue;
                        }
                        "outage"
                    }
                };
                let mut owed = inboxes.lock().unwrap_or_else(|e| e.into_inner()).take();
                // A pass while the bus is away, or with a resync owed, heals a known gap.
                let why = match (reason, owed) {
                    ("periodic", None) if listening() => CatchUp::Periodic,
                    _ => CatchUp::Resync,
                };
                // Each periodic pass tells the changes since the last one (and a margin for
                // commits that became visible late) again: the actors tell their sockets only
                // those they never heard, which heals a message lost without any sign of a gap.
                // A pass while the bus is away does the same over its own, shorter, interval.
                let since_last = match reason {
                    "periodic" => Some(every),
                    "outage" => Some(away),
                    _ => None,
                };
                if let Some(since_last) = since_last {
                    let margin =
                        chrono::Duration::from_std(since_last + INBOX_MARGIN).unwrap_or_default();
                    let since = store.now() - margin;
                    owed = Some(owed.map_or(since, |owed| owed.min(since)));
                }
                // A pass while the bus is away asks only the actors whose users' seqs moved
                // since the last such pass; every other pass asks them all.
                if reason != "outage" {
                    seen.clear();
                }
                let moved = (reason == "outage").then_some(&mut seen);
                let caught_up = match hub.catch_up_all(moved).await {
                    Ok(users) => match owed {
                        Some(since) => hub
                            .catch_up_inboxes(since, why)
                            .await
                            .map(|told| (users, told)),
                        None => Ok((users, 0)),
                    },
                    Err(e) => Err(e),
                };
                match caught_up {
                    Ok((users, changes)) => {
                        metrics::counter!("tickethub_bus_catch_ups_total", "reason" => reason)
                            .increment(1);
                        tracing::debug!(users, changes, reason, "caught connected users up");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, reason, "cannot catch connected users up");
                        if let Some(since) = owed {
                            owe(&inboxes, since);
                        }
                        // Try again soon: the database may be back before the next tick.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        wanted.notify_one();
                    }
                }
            }
        })
    };
    while let Some(event) = remote.recv().await {
        match event {
            tickethub_actors::ports::BusEvent::Resync(lost_for) => {
                // Writes to users may have gone unheard as well.
                if let Some(cache) = store.user_cache() {
                    cache.clear();
                }
                hub.resync_rooms();
                let lookback = lost_for + tickethub_actors::hub::INBOX_LOOKBACK;
                owe(
                    &inboxes,
                    store.now() - chrono::Duration::from_std(lookback).unwrap_or_default(),
                );
                wanted.notify_one();
            }
            event => hub.remote(event),
        }
    }
    reconciler.abort();
}

/// What takes Slack's interactions: with a bot token and a signing secret.
fn slack_inbound(
    config: &ServeConfig,
) -> Result<Option<Arc<crate::channels::slack::SlackInbound>>, BuildError> {
    let s = &config.channels.slack;
    let (Some(_), Some(secret)) = (&s.slack_bot_token, &s.slack_signing_secret) else {
        return Ok(None);
    };
    Ok(Some(Arc::new(crate::channels::slack::SlackInbound {
        signing_secret: secret.clone(),
        api_host: reqwest::Url::parse(&s.slack_api_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned)),
        client: crate::delivery::http_client(Duration::from_secs(10))?,
    })))
}

/// Builds the transports the configuration turns on, one per channel plug-in whose settings
/// turn it on (see `crate::channels`): email always (SMTP, or `.eml` files in the outbox
/// folder), WhatsApp with a token and phone-number id, SMS with a Twilio account SID, auth
/// token and sender, webhooks with URLs, Web Push with a VAPID key, FCM with a service account,
/// APNs with a token key, the chats with theirs; and the chats' rooms for project chats.
fn delivery_config(
    config: &ServeConfig,
    vapid: Option<Arc<crate::channels::push::VapidKey>>,
    replies: Option<Arc<crate::channels::email::ReplyKey>>,
    unsubscribe: Option<Arc<crate::channels::email::UnsubscribeKey>>,
) -> Result<(tickethub_actors::DeliveryConfig, crate::chats::Rooms), ConfigError> {
    // reqwest and lettre share rustls with the ring provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let templates = Arc::new(crate::delivery::templates::Templates::load(
        config.templates_dir.as_deref(),
    )?);
    let timeout = Duration::from_secs(config.delivery_timeout.max(1));
    let ctx = crate::channels::Context {
        templates,
        timeout,
        vapid,
        public_url: config.public_url.clone(),
        replies,
        unsubscribe,
    };
    let transports = crate::channels::transports(&config.channels, &ctx)?;
    let rooms = crate::channels::rooms(&config.channels, &ctx)?;
    let delivery = tickethub_actors::DeliveryConfig {
        transports,
        destinations: crate::channels::destinations(&config.channels),
        policy: tickethub_actors::delivery::RetryPolicy {
            max_attempts: config.delivery_max_attempts,
            base_backoff: Duration::from_millis(config.delivery_backoff_ms.max(1)),
            max_backoff: Duration::from_millis(config.delivery_backoff_max_ms.max(1)),
            concurrency: config.delivery_concurrency,
            lease: match config.delivery_lease {
                0 => (timeout * 4).max(Duration::from_secs(30)),
                secs => Duration::from_secs(secs),
            },
            circuit_threshold: config.circuit_threshold,
            circuit_cooldown: Duration::from_millis(config.circuit_cooldown_ms),
            poll_interval: Duration::from_millis(config.delivery_poll_ms.max(10)),
            batching: Default::default(),
        },
    };
    Ok((delivery, Arc::new(rooms.into_iter().collect())))
}

/// The Web Push key: the file `--webpush-vapid-key` names; else, for an embedded hub, the one
/// kept beside its database (a fresh one for an in-memory database); else none, and Web Push
/// is off (hubs sharing a PostgreSQL database must share one key, so it is never made up).
fn vapid_key(config: &ServeConfig) -> Result<Option<crate::channels::push::VapidKey>, BuildError> {
    use crate::channels::push::VapidKey;
    if let Some(path) = &config.channels.webpush.webpush_vapid_key {
        return Ok(Some(VapidKey::load(path)?));
    }
    if crate::config::database_kind(&config.database_url)? != DatabaseKind::Sqlite {
        return Ok(None);
    }
    Ok(Some(match sqlite_file(&config.database_url) {
        Some(path) => VapidKey::beside(&path)?,
        None => VapidKey::generate()?,
    }))
}

/// One demo account.
#[derive(Debug, Clone)]
pub struct DemoAccount {
    /// Login name.
    pub username: &'static str,
    /// Password.
    pub password: &'static str,
    /// Role.
    pub role: Role,
}

/// The demo accounts `--demo` creates.
pub const DEMO_ACCOUNTS: [DemoAccount; 3] = [
    DemoAccount {
        username: "admin",
        password: "admin-demo",
        role: Role::Admin,
    },
    DemoAccount {
        username: "developer",
        password: "developer-demo",
        role: Role::Developer,
    },
    DemoAccount {
        username: "client",
        password: "client-demo",
        role: Role::Client,
    },
];

/// The demo project's key.
pub const DEMO_PROJECT: &str = "DEMO";

/// Creates the demo users and project unless they exist already.
pub async fn seed_demo(store: &dyn Store) -> Result<(), StoreError> {
    let mut ids = Vec::new();
    for account in &DEMO_ACCOUNTS {
        let user = match store.user_with_hash(account.username).await? {
            Some((user, _)) => user,
            None => create_demo_user(store, account).await?,
        };
        ids.push(user.id);
    }
    match store.project_by_key(DEMO_PROJECT).await? {
        Some(project) => store.add_members(project.id, &ids).await?,
        None => {
            store
                .create_project(DEMO_PROJECT, "Demo Project", &ids)
                .await?;
        }
    }
    Ok(())
}

async fn create_demo_user(store: &dyn Store, account: &DemoAccount) -> Result<User, StoreError> {
    let display_name = match account.role {
        Role::Admin => "Ada Lovelace",
        Role::Developer => "Grace Hopper",
        Role::Client => "Carl Jensen",
    };
    store
        .create_user(NewUser {
            username: account.username.to_owned(),
            display_name: display_name.to_owned(),
            email: Some(format!("{}@demo.tickethub.local", account.username)),
            whatsapp_number: None,
            phone_number: None,
            role: account.role,
            is_superuser: account.role == Role::Admin,
            password_hash: auth::hash_password(account.password.to_owned()).await,
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://tickethub.db"),
            Some("tickethub.db".into())
        );
        assert_eq!(
            sqlite_file("sqlite:///var/lib/th.db?mode=rwc"),
            Some("/var/lib/th.db".into())
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://file.db?mode=memory"), None);
    }
}
