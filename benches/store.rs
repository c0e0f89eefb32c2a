//! Notification commits per second through the store, on SQLite and on PostgreSQL.
//!
//! `commit/<backend>/single` is one `commit_notifications` call with one draft: one transaction
//! that takes the recipient's next seq and stores the notification. `commit/<backend>/batch_100`
//! is one call with 100 drafts, one to each of 100 users, in one transaction (`batch_1000`: 1,000
//! users). The drafts carry
//! no outbound deliveries, so no outbox rows are written. The throughput is in notifications.
//!
//! SQLite is a file (WAL) in a temporary directory. PostgreSQL runs when `TEST_DATABASE_URL` is
//! set, on a fresh database that is dropped afterwards.
//!
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench store`

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use tickethub_actors::domain::{NewUser, Role, UserId};
use tickethub_actors::notification::Draft;
use tickethub_actors::ports::Store;

/// How many drafts a batched commit carries, one per user.
const BATCH: usize = 100;

/// How many drafts an announcement's commit carries, one per user.
const ANNOUNCEMENT: usize = 1_000;

async fn users(store: &Arc<dyn Store>) -> Vec<UserId> {
    let mut ids = Vec::with_capacity(ANNOUNCEMENT);
    for i in 0..ANNOUNCEMENT {
        let user = store
            .create_user(NewUser::new(format!("store{i}"), Role::Client, "x"))
            .await
            .unwrap();
        ids.push(user.id);
    }
    ids
}

fn draft(recipient: UserId) -> Draft {
    Draft {
        recipient,
        notification_type: "maintenance".parse().unwrap(),
        title: "Planned maintenance".into(),
        message: "The hub restarts tonight at 22:00 UTC for about five minutes.".into(),
        ticket: None,
        data: r#"{"window_minutes":5}"#.into(),
        action_url: Some("/status/".into()),
        deliveries: Vec::new(),
        webhook_recipients: Vec::new(),
        cause: Default::default(),
        escalations: Vec::new(),
    }
}

/// Benchmarks a single and a batched commit on one store.
fn commits(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    backend: &str,
    store: &Arc<dyn Store>,
) {
    let ids = rt.block_on(users(store));
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{backend}/single"), |b| {
        b.to_async(rt).iter(|| async {
            store
                .commit_notifications(vec![draft(ids[0])], None)
                .await
                .unwrap()
        })
    });
    for size in [BATCH, ANNOUNCEMENT] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("{backend}/batch_{size}"), |b| {
            b.to_async(rt).iter(|| async {
                let drafts = ids[..size].iter().copied().map(draft).collect();
                store.commit_notifications(drafts, None).await.unwrap()
            })
        });
    }
}

/// A fresh PostgreSQL database: its URL, and the admin URL and name to drop it with.
async fn postgres_db() -> Option<(String, String, String)> {
    use sqlx::Connection;
    let admin = std::env::var("TEST_DATABASE_URL").ok()?;
    let name = format!("th_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .ok()?;
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned())?;
    Some((format!("{base}/{name}"), admin, name))
}

async fn drop_db(admin: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("commit");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = rt.block_on(tickethub::store::connect(&url)).unwrap();
    commits(&mut group, &rt, "sqlite", &sqlite);

    if let Some((url, admin, name)) = rt.block_on(postgres_db()) {
        let pg = rt.block_on(tickethub::store::connect(&url)).unwrap();
        commits(&mut group, &rt, "postgres", &pg);
        drop(pg);
        rt.block_on(drop_db(&admin, &name));
    } else {
        eprintln!("notice: TEST_DATABASE_URL is not set; skipping the PostgreSQL benchmarks");
    }
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
