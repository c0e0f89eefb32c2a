use super::*;

/// Applies the migrations before this release's (up to 0013) to a fresh database, writes
/// what an older hub would have written, then lets the hub start on it.
pub(super) async fn upgrade_from_0013(backend: &Backend, legacy: &str) -> crate::harness::TestDb {
    use sqlx::Connection;
    let db = crate::harness::TestDb::create(backend).await;
    let before = |m: sqlx::migrate::Migrator| sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            m.migrations
                .iter()
                .filter(|m| m.version <= 13)
                .cloned()
                .collect(),
        ),
        ..m
    };
    if db.url.starts_with("sqlite") {
        let opts: sqlx::sqlite::SqliteConnectOptions = db.url.parse().unwrap();
        let mut conn = sqlx::SqliteConnection::connect_with(&opts.create_if_missing(true))
            .await
            .unwrap();
        before(sqlx::migrate!("migrations/sqlite"))
            .run(&mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(legacy).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        before(sqlx::migrate!("migrations/postgres"))
            .run(&mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(legacy).execute(&mut conn).await.unwrap();
    }
    db
}

/// A hub upgraded onto an older database gives the sends that could only have come from a key
/// to that key (cancelling those of a key revoked already), moves the keys' own users into the
/// keys' namespace, and counts the addresses set before as verified.
pub(super) async fn an_upgrade_gives_old_sends_to_their_keys_and_moves_key_users(backend: Backend) {
    const AT: &str = "'2026-01-01T00:00:00Z'";
    let legacy = format!(
        "INSERT INTO users (username, display_name, role, is_superuser, is_active, password_hash, created_at, email) VALUES \
           ('root', '', 'admin', TRUE, TRUE, 'x', {AT}, 'root@example.test'), \
           ('billing', 'billing', 'client', FALSE, TRUE, 'x', {AT}, NULL), \
           ('carol', '', 'client', FALSE, TRUE, 'x', {AT}, 'carol@example.test'), \
           ('ada', '', 'developer', FALSE, TRUE, 'x', {AT}, NULL), \
           ('old', 'old', 'client', FALSE, TRUE, 'x', {AT}, NULL); \
         INSERT INTO api_keys (name, prefix, key_hash, scopes, user_id, created_at, revoked_at) VALUES \
           ('billing', 'AAAAAAAA', 'x', 'notifications:send', 2, {AT}, NULL), \
           ('crm', 'BBBBBBBB', 'x', 'notifications:send', 3, {AT}, NULL), \
           ('old', 'CCCCCCCC', 'x', 'notifications:send', 5, {AT}, {AT}); \
         INSERT INTO scheduled_sends (created_by, user_ids, notification_type, title, message, data, channels, send_at, status, created_at, updated_at) VALUES \
           (2, '[4]', 'reminder', 'by billing', 'm', '{{}}', '', '2099-01-01T00:00:00Z', 'PENDING', {AT}, {AT}), \
           (3, '[4]', 'reminder', 'by crm', 'm', '{{}}', '', '2099-01-01T00:00:00Z', 'PENDING', {AT}, {AT}), \
           (5, '[4]', 'reminder', 'by old', 'm', '{{}}', '', '2099-01-01T00:00:00Z', 'PENDING', {AT}, {AT}), \
           (1, '[4]', 'reminder', 'by root', 'm', '{{}}', '', '2099-01-01T00:00:00Z', 'PENDING', {AT}, {AT});"
    );
    let db = upgrade_from_0013(&backend, &legacy).await;
    let hub = TestHub::start_on(db, |_| {}).await;
    let root = hub
        .store
        .user_by_id(tickethub_actors::domain::UserId(1))
        .await
        .unwrap()
        .unwrap();
    assert!(
        root.address(tickethub_actors::routing::Channel::Email)
            .and_then(|a| a.verified_at)
            .is_some(),
        "an old address counts as verified"
    );
    let sends = hub
        .get_as(&root, "/api/notifications/scheduled/?page_size=100", 200)
        .await;
    let by = |title: &str| {
        sends["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["title"] == title)
            .cloned()
    };
    assert_eq!(by("by billing").unwrap()["api_key"], "billing", "{sends}");
    assert_eq!(by("by crm").unwrap()["api_key"], "crm", "{sends}");
    assert_eq!(by("by root").unwrap()["api_key"], Value::Null, "{sends}");
    assert!(
        by("by old").is_none(),
        "the revoked key's send is cancelled: {sends}"
    );
    let cancelled = db_number(
        &hub.db,
        "SELECT COUNT(*) FROM scheduled_sends WHERE title = 'by old' AND status = 'CANCELLED'",
    )
    .await;
    assert_eq!(cancelled, 1);
    // The keys' own users moved; the person a key acts as did not.
    let users = hub.get_as(&root, "/api/users/?page_size=100", 200).await;
    let names: Vec<&str> = users["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    for name in ["key:billing", "key:old", "carol", "root", "ada"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert!(!names.contains(&"billing"), "{names:?}");
    // The name is free for a person now, and still not for a look-alike of the key's.
    let (status, body) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "billing", "password": "billing-password"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// A span or time past anything a send needs is a 400 naming its field, not a dropped
/// connection: the hub stays up and answers the next request.
pub(super) async fn huge_delays_and_times_are_refused_naming_their_field() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let root = hub.user("root", Role::Admin).await;
    let ada = hub.user("ada", Role::Developer).await;
    for (field, value) in [
        ("delay", "300000y"),
        ("delay", "18446744073709551615s"),
        ("delay", "31d"),
        ("send_at", "9999-12-31T23:59:59Z"),
        ("send_at", "0000-01-01T00:00:00Z"),
    ] {
        let (status, body) = hub
            .post(
                SEND,
                Some(&hub.token(&root)),
                send_body(&[ada.id.0], json!({ field: value })),
            )
            .await;
        assert_eq!(status, 400, "{field} = {value}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}:")),
            "{field} = {value}: {body}"
        );
    }
    let (status, _) = hub.get("/healthz", None).await;
    assert_eq!(status, 200);
}
