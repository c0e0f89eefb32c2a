use super::*;

/// A kill -9 in the middle loses no step, and two nodes sharing the due steps (on PostgreSQL;
/// one node restarted on SQLite) fire none twice; a step claimed by a node that died while
/// firing is taken over once its lease runs out.
pub(super) async fn kill_9_loses_no_step_and_fires_none_twice(backend: Backend) {
    let nodes = match backend {
        Backend::Sqlite => 1,
        _ => 2,
    };
    let api = Http::start().await;
    // Steps due later than the setup can take (scaled on a loaded machine), so that the kill
    // below meets them all pending.
    let first = (4.0 * patience().as_secs_f64() / 15.0).ceil();
    let file = policy(&format!("{first}s"), &format!("{}s", first + 1.0));
    let args = node_args(&file, &api, "1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = Cluster::start(&backend, nodes, &args).await;
    let mut cluster = cluster;
    let admin = cluster.user("boss", Role::Admin).await;
    let client = cluster.user("cli", Role::Client).await;
    let mut devs = Vec::new();
    for i in 0..10 {
        let d = cluster.user(&format!("dev{i}"), Role::Developer).await;
        cluster
            .store
            .update_profile(
                d.id,
                tickethub_actors::ports::ProfileChanges {
                    addresses: vec![(
                        tickethub_actors::routing::Channel::Whatsapp,
                        Some(format!("+1555000{i:04}")),
                    )],
                    // Set as an admin would: verified.
                    vouched: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        devs.push(d);
    }
    let mut members: Vec<_> = devs.iter().map(|d| d.id).collect();
    members.extend([admin.id, client.id]);
    let project = cluster
        .store
        .create_project("OPS", "Operations", &members)
        .await
        .unwrap();
    // Ten CRITICAL assignments, spread over the nodes.
    for (i, dev) in devs.iter().enumerate() {
        let crew = Crew {
            creator: &client,
            admin: &admin,
            devs: &[dev],
        };
        ticket_in(
            &cluster.on(i % nodes),
            "ASSIGNED",
            &crew,
            json!({"project": project.id.0, "title": format!("Outage {i}"), "priority": "CRITICAL", "category": "BUG"}),
        )
        .await;
    }
    // A node dies with every step still pending, and comes back while they fire.
    let whatsapp_pending = |rows: &[tickethub_actors::ports::EscalationRow]| {
        rows.iter()
            .filter(|r| {
                r.status == "PENDING"
                    && r.step
                        .channels
                        .contains(&tickethub_actors::routing::Channel::Whatsapp)
            })
            .count()
    };
    let at_kill = cluster.store.list_escalations(None, 500).await.unwrap();
    assert_eq!(
        whatsapp_pending(&at_kill),
        10,
        "every developer's first step is still pending when the node dies: {at_kill:?}"
    );
    cluster.nodes[0].kill().await;
    // A step claimed by a node that then died (its claim runs out after a second), as such a
    // node leaves its row: no node can claim a step before it is due by the database's clock.
    let claimed = ghost_claim(&cluster.db).await;
    assert_eq!(claimed, 1, "one step claimed by the ghost");
    cluster.nodes[0].restart().await;

    // Every step settles: 20 steps per developer pair… each developer's assignment has two
    // steps; the admins' ticket_created steps were cancelled when the tickets were opened.
    // Twice the patience: every developer's two steps fire, on a node that just restarted.
    let rows = eventually_within("every step settles", patience() * 2, || async {
        let rows = cluster.store.list_escalations(None, 500).await.unwrap();
        let open = rows
            .iter()
            .filter(|r| r.status == "PENDING" || r.status == "FIRING")
            .count();
        if open == 0 {
            Ok(rows)
        } else {
            Err(format!("steps did not settle: {rows:?}"))
        }
    })
    .await;
    let assigned: Vec<_> = rows
        .iter()
        .filter(|r| {
            r.step
                .channels
                .contains(&tickethub_actors::routing::Channel::Whatsapp)
        })
        .filter(|r| r.status == "FIRED")
        .collect();
    let dev_ids: Vec<_> = devs.iter().map(|d| d.id).collect();
    let fired_for_devs = assigned
        .iter()
        .filter(|r| dev_ids.contains(&r.user_id))
        .count();
    assert_eq!(
        fired_for_devs, 10,
        "each developer's WhatsApp step fired once: {rows:?}"
    );
    // Exactly one WhatsApp message per developer: none lost, none twice.
    eventually("every WhatsApp message is sent", || async {
        api.requests().len() >= 10
    })
    .await;
    let mut to: Vec<String> = api
        .requests()
        .iter()
        .map(|r| r.body["to"].as_str().unwrap().to_owned())
        .collect();
    to.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("1555000{i:04}")).collect();
    expected.sort();
    assert_eq!(to, expected);
}

/// Reading the notification on another node between the steps cancels the rest, for the
/// whole cluster.
pub(super) async fn reading_on_another_node_cancels_the_remaining_steps() {
    let backend = Backend::postgres();
    let api = Http::start().await;
    let file = policy("1s", "4s");
    let args = node_args(&file, &api, "60");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = Cluster::start(&backend, 2, &args).await;
    let admin = cluster.user("boss", Role::Admin).await;
    let client = cluster.user("cli", Role::Client).await;
    let dev = cluster.user("dev", Role::Developer).await;
    cluster
        .store
        .update_profile(
            dev.id,
            tickethub_actors::ports::ProfileChanges {
                addresses: vec![
                    (
                        tickethub_actors::routing::Channel::Whatsapp,
                        Some("+15550009999".into()),
                    ),
                    (
                        tickethub_actors::routing::Channel::Email,
                        Some("dev@example.test".into()),
                    ),
                ],
                // Set as an admin would: verified.
                vouched: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let project = cluster
        .store
        .create_project("OPS", "Operations", &[admin.id, client.id, dev.id])
        .await
        .unwrap();
    let crew = Crew {
        creator: &client,
        admin: &admin,
        devs: &[&dev],
    };
    ticket_in(
        &cluster.on(0),
        "ASSIGNED",
        &crew,
        json!({"project": project.id.0, "title": "Outage", "priority": "CRITICAL", "category": "BUG"}),
    )
    .await;
    api.wait_for(1).await;
    let (_, page) = cluster
        .call(
            1,
            reqwest::Method::GET,
            &dev,
            "/api/notifications/?notification_type=ticket_assigned",
            None,
        )
        .await;
    let note = page["results"][0]["id"].as_i64().unwrap();
    cluster
        .post(
            1,
            &dev,
            &format!("/api/notifications/{note}/mark_as_read/"),
            json!({}),
            200,
        )
        .await;
    let (_, timeline) = cluster
        .call(
            0,
            reqwest::Method::GET,
            &admin,
            &format!("/api/notifications/{note}/timeline/"),
            None,
        )
        .await;
    assert_eq!(events(&timeline, "escalation_fired").len(), 1, "{timeline}");
    let cancelled = events(&timeline, "escalation_cancelled");
    assert_eq!(cancelled.len(), 1, "{timeline}");
    assert_eq!(
        cancelled[0]["reason"],
        "the recipient read the notification"
    );
    // A cancelled step is settled for good: no node claims it again (claims take only pending
    // steps and expired claims), so its channels were never used.
    let (_, deliveries) = cluster
        .call(
            1,
            reqwest::Method::GET,
            &dev,
            &format!("/api/notifications/{note}/deliveries/"),
            None,
        )
        .await;
    assert!(
        deliveries["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["channel"] != "email"),
        "{deliveries}"
    );
    assert_eq!(api.requests().len(), 1);
}

/// Marks the first pending step claimed for a second by a node `ghost`, as a node that died
/// while firing it leaves its row; answers how many rows it marked.
async fn ghost_claim(db: &crate::harness::TestDb) -> u64 {
    use sqlx::Connection;
    let until = chrono::Utc::now() + chrono::Duration::seconds(1);
    let sql = "UPDATE escalations SET status = 'FIRING', claimed_by = 'ghost', claimed_until = $1 \
               WHERE id = (SELECT id FROM escalations WHERE status = 'PENDING' ORDER BY due_at, id LIMIT 1)";
    if db.url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        let done = sqlx::query(sql).bind(until).execute(&mut conn).await;
        done.unwrap().rows_affected()
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let done = sqlx::query(sql).bind(until).execute(&mut conn).await;
        done.unwrap().rows_affected()
    }
}

/// A step decided to fire while its notification was unread does not fire once a read has
/// committed before its settling: the read's own cancellation of open steps (a second
/// statement) may not have run yet, or its node may have died before it, and the settling
/// checks the notification again, holding its row.
pub(super) async fn a_step_decided_before_a_read_does_not_fire_after_it(backend: Backend) {
    use tickethub_actors::escalation::{Finish, PlannedStep, Unless};
    use tickethub_actors::routing::Channel;
    let db = crate::harness::TestDb::create(&backend).await;
    let store = tickethub::store::connect(&db.url).await.unwrap();
    let new = |name: &str| tickethub_actors::domain::NewUser::new(name, Role::Client, "x");
    let alice = store.create_user(new("alice")).await.unwrap();
    let draft = tickethub_actors::notification::Draft {
        escalations: vec![PlannedStep {
            policy: "p".into(),
            step: 1,
            after: Duration::ZERO,
            unless: Unless::Read,
            channels: vec![Channel::Email],
            also: Vec::new(),
            oncall: Vec::new(),
            push_unless_seen: None,
        }],
        recipient: alice.id,
        notification_type: "page".parse().unwrap(),
        title: "page".into(),
        message: "m".into(),
        ticket: None,
        data: "{}".into(),
        action_url: None,
        deliveries: Vec::new(),
        webhook_recipients: Vec::new(),
        cause: Default::default(),
    };
    let committed = store.commit_notifications(vec![draft], None).await.unwrap();
    let id = committed[0].id;
    let now = store.now();
    let lease = now + chrono::Duration::seconds(30);
    let claimed = store.claim_escalations("a", now, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(!claimed[0].notification.is_read);
    // The read commits; its cancellation of open steps has not run.
    crate::analytics::db_exec(&db, "UPDATE notifications SET is_read = TRUE", &[]).await;
    let fire = Finish::Fired {
        deliveries: vec![(Channel::Email, "alice@example.test".into())],
        drafts: Vec::new(),
        detail: "sent on email".into(),
    };
    let settled = store
        .finish_escalation(claimed[0].id, "a", fire)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settled.outcome, "cancelled");
    let sql = format!("SELECT COUNT(*) FROM deliveries WHERE notification_id = {id}");
    assert_eq!(
        crate::harness::db_number(&db, &sql).await,
        0,
        "no delivery of the step"
    );
    let sql = "SELECT COUNT(*) FROM escalations WHERE status = 'CANCELLED' \
               AND detail = 'the recipient read the notification'";
    assert_eq!(crate::harness::db_number(&db, sql).await, 1);
    store.close().await;
}
