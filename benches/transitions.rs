//! Ticket transitions per second: the HTTP-free path through the ticket actor and the commit.
//!
//! Each iteration creates a ticket and walks it through open → assign → start → finish →
//! approve: six commits, each with its notifications and outbox rows in one transaction.
//! Runs on SQLite, and on PostgreSQL when `TEST_DATABASE_URL` is set.
//!
//! `cargo bench --bench transitions`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tickethub_actors::domain::{NewUser, Role, User};
use tickethub_actors::ports::{NewTicket, Store};
use tickethub_actors::routing::RoutingTable;
use tickethub_actors::ticket_domain::{Action, Category, Priority};
use tickethub_actors::{Hub, HubConfig};

struct Fixture {
    hub: Hub,
    admin: User,
    dev: User,
    client: User,
    project: tickethub_actors::domain::ProjectId,
    _dir: Option<tempfile::TempDir>,
}

async fn user(store: &Arc<dyn Store>, name: &str, role: Role) -> User {
    store
        .create_user(NewUser {
            email: Some(format!("{name}@example.test")),
            is_superuser: role == Role::Admin,
            ..NewUser::new(name, role, "x")
        })
        .await
        .unwrap()
}

async fn fixture(url: String, dir: Option<tempfile::TempDir>) -> Fixture {
    let store = tickethub::store::connect(&url).await.unwrap();
    let admin = user(&store, "admin", Role::Admin).await;
    let dev = user(&store, "dev", Role::Developer).await;
    let client = user(&store, "client", Role::Client).await;
    let project = store
        .create_project("BENCH", "Bench", &[admin.id, dev.id, client.id])
        .await
        .unwrap()
        .id;
    let hub = Hub::start(
        HubConfig::default(),
        tickethub_actors::HubDeps {
            store,
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
        admin,
        dev,
        client,
        project,
        _dir: dir,
    }
}

async fn lifecycle(f: &Fixture) {
    let t = f
        .hub
        .create_ticket(
            &f.client,
            NewTicket {
                project: f.project,
                title: "Bench".into(),
                description: String::new(),
                priority: Priority::High,
                category: Category::Bug,
                created_by: f.client.id,
                idempotency: None,
            },
        )
        .await
        .unwrap();
    let steps = [
        (&f.admin, Action::Open),
        (
            &f.admin,
            Action::Assign {
                developer_ids: vec![f.dev.id],
            },
        ),
        (&f.dev, Action::StartWork),
        (&f.dev, Action::FinishWork),
        (&f.client, Action::Approve),
    ];
    for (by, action) in steps {
        f.hub.apply(t.id, by, action).await.unwrap();
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

fn transitions(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("ticket_lifecycle");
    group.throughput(Throughput::Elements(6));
    group.sample_size(20);

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = rt.block_on(fixture(url, Some(dir)));
    group.bench_function("sqlite", |b| b.to_async(&rt).iter(|| lifecycle(&sqlite)));

    if let Some((url, admin, name)) = rt.block_on(postgres_db()) {
        let pg = rt.block_on(fixture(url, None));
        group.bench_function("postgres", |b| b.to_async(&rt).iter(|| lifecycle(&pg)));
        rt.block_on(async {
            pg.hub.shutdown().await;
            drop(pg);
            drop_db(&admin, &name).await;
        });
    } else {
        eprintln!("notice: TEST_DATABASE_URL is not set; skipping the PostgreSQL benchmark");
    }
    group.finish();
}

criterion_group!(benches, transitions);
criterion_main!(benches);
