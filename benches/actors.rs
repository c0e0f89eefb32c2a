//! The actor layer: a call into a user actor, and one notification fanned out to N users.
//!
//! `user_actor/snapshot_round_trip` is one `ractor::call_t!` to a connected user's actor
//! (`UserMsg::Snapshot`): the message goes through the actor's mailbox and the answer comes
//! back on a reply port.
//!
//! `fanout/N` (N = 1, 100, 10,000) runs a hub on SQLite (a file in a temporary directory) whose
//! N users each have one socket, stood in for by an in-memory queue drained by a task of its
//! own. One iteration is the time from `Hub::announce` of one announcement to all N users until
//! every one of the N sockets has received its `notification` message. It includes the commit:
//! the audience lookup and one transaction storing N notifications, each with the recipient's
//! next seq, before the fan-out through the N user actors starts. The users are created and
//! their sockets attached once, outside the measured loop; serializing and writing the frames
//! to a real socket are not part of it.
//!
//! `cargo bench --bench actors`

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use futures::StreamExt;
use tickethub_actors::connection::{ConnHandle, ConnId, ConnectionMsg};
use tickethub_actors::domain::{NewUser, Role, UserId};
use tickethub_actors::hub::{Announcement, Recipients};
use tickethub_actors::ports::Store;
use tickethub_actors::routing::RoutingTable;
use tickethub_actors::user::{Resume, UserMsg};
use tickethub_actors::{Hub, HubConfig, HubDeps};
use tokio::sync::Notify;

/// The fan-out sizes.
const SIZES: [usize; 3] = [1, 100, 10_000];

/// Counts the notifications the sockets receive, and wakes the bench once all have arrived.
#[derive(Default)]
struct Tally {
    received: AtomicUsize,
    expected: AtomicUsize,
    done: Notify,
}

impl Tally {
    /// Expects `n` notifications from now on.
    fn expect(&self, n: usize) {
        self.received.store(0, Ordering::SeqCst);
        self.expected.store(n, Ordering::SeqCst);
    }

    fn received_one(&self) {
        let received = self.received.fetch_add(1, Ordering::SeqCst) + 1;
        if received == self.expected.load(Ordering::SeqCst) {
            // A stored permit is taken by the next `notified()`, so the wake-up cannot be lost.
            self.done.notify_one();
        }
    }
}

/// A hub on a fresh SQLite file, and the users that have a socket so far.
struct Fixture {
    hub: Hub,
    store: Arc<dyn Store>,
    users: Vec<UserId>,
    tally: Arc<Tally>,
    next_conn: AtomicU64,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = tickethub::store::connect(&url).await.unwrap();
        // Heartbeats would queue pings and close sockets that stay silent, so they are pushed
        // past the end of the run.
        let config = HubConfig {
            ping_interval: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(3600),
            ..HubConfig::default()
        };
        let hub = Hub::start(
            config,
            HubDeps {
                store: store.clone(),
                routing: RoutingTable::default(),
                delivery: Default::default(),
                bus: None,
                presence: None,
            },
        )
        .await
        .unwrap();
        Fixture {
            hub,
            store,
            users: Vec::new(),
            tally: Arc::default(),
            next_conn: AtomicU64::new(1),
            _dir: dir,
        }
    }

    /// Creates users until `n` of them have a socket attached to their actor.
    async fn ensure(&mut self, n: usize) {
        if self.users.len() >= n {
            return;
        }
        let started = Instant::now();
        let first = self.users.len();
        let mut created = Vec::with_capacity(n - first);
        for i in first..n {
            let user = self
                .store
                .create_user(NewUser::new(format!("fanout{i}"), Role::Client, "x"))
                .await
                .unwrap();
            created.push(user.id);
        }
        let this = &*self;
        futures::stream::iter(created.iter().copied())
            .for_each_concurrent(64, |id| this.attach(id))
            .await;
        self.users.extend(created);
        eprintln!(
            "notice: {} users with a socket ({} new in {:.1?})",
            n,
            n - first,
            started.elapsed()
        );
    }

    /// Gives `user` one socket: a bounded queue whose frames a task drains and counts.
    async fn attach(&self, user: UserId) {
        let (conn, mut rx) = ConnHandle::new(
            ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed)),
            1024,
            1 << 30,
        );
        let tally = self.tally.clone();
        let drained = conn.shared.clone();
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                drained.written(msg.estimated_bytes());
                // The replay queued on attach and any other message are not counted.
                if let ConnectionMsg::Notification(_) = msg {
                    tally.received_one();
                }
            }
        });
        self.hub
            .attach(user, conn, Resume::After(0), None)
            .await
            .unwrap();
    }

    fn announcement(&self, n: usize) -> Announcement {
        Announcement {
            to: Recipients::Users(self.users[..n].to_vec()),
            notification_type: "maintenance".into(),
            title: "Planned maintenance".into(),
            message: "The hub restarts tonight at 22:00 UTC for about five minutes.".into(),
            data: r#"{"window_minutes":5}"#.into(),
            link: Some("/status/".into()),
            channels: Vec::new(),
            sent_by: None,
            idempotency: None,
        }
    }
}

fn actors(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Set up on first use, so that a filtered run only creates the users it needs.
    let mut fixture: Option<Fixture> = None;

    let mut group = c.benchmark_group("user_actor");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("snapshot_round_trip", |b| {
        let f = fixture.get_or_insert_with(|| rt.block_on(Fixture::start()));
        rt.block_on(f.ensure(1));
        let actor = f.hub.user(f.users[0]).expect("the user is connected");
        b.to_async(&rt).iter(|| {
            let actor = &actor;
            async move { ractor::call_t!(actor, UserMsg::Snapshot, 5_000).unwrap() }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("fanout");
    // Every sample runs the same number of iterations, so that the 10,000-user case needs
    // ten iterations rather than the 55 of linear sampling.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for n in SIZES {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let f = fixture.get_or_insert_with(|| rt.block_on(Fixture::start()));
            rt.block_on(f.ensure(n));
            let f = &*f;
            let announcement = f.announcement(n);
            b.to_async(&rt).iter_custom(|iters| {
                let announcement = &announcement;
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let a = announcement.clone();
                        f.tally.expect(n);
                        let started = Instant::now();
                        let sent = f.hub.announce(a).await.unwrap();
                        f.tally.done.notified().await;
                        total += started.elapsed();
                        assert_eq!(sent.ids.len(), n);
                    }
                    total
                }
            })
        });
    }
    group.finish();

    if let Some(f) = fixture {
        rt.block_on(f.hub.shutdown());
    }
}

criterion_group!(benches, actors);
criterion_main!(benches);
