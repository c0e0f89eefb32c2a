//! The binary: management commands, bad configuration, a real serve with SIGTERM.

use std::process::{Command, Stdio};

use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_tickethub");

fn tickethub(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("TICKETHUB_JWT_SECRET")
        .output()
        .unwrap()
}

fn users_and_projects_are_added_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let out = tickethub(&[
        "users",
        "add",
        "--username",
        "root",
        "--role",
        "admin",
        "--superuser",
        "--password",
        "rootroot",
        "--database-url",
        &db,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created admin `root`"));

    let out = tickethub(&[
        "users",
        "add",
        "--username",
        "dev",
        "--role",
        "developer",
        "--database-url",
        &db,
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("password: "), "{stdout}");

    let out = tickethub(&[
        "users",
        "add",
        "--username",
        "root",
        "--role",
        "admin",
        "--password",
        "rootroot",
        "--database-url",
        &db,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already taken"));

    let out = tickethub(&[
        "users",
        "add",
        "--username",
        "x",
        "--role",
        "wizard",
        "--database-url",
        &db,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("--role"));

    let out = tickethub(&[
        "projects",
        "add",
        "--key",
        "PROJ",
        "--name",
        "Project",
        "--members",
        "root,dev",
        "--database-url",
        &db,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("with 2 member(s)"));

    let out = tickethub(&[
        "projects",
        "add",
        "--key",
        "OTHER",
        "--name",
        "x",
        "--members",
        "ghost",
        "--database-url",
        &db,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named `ghost`"));
}

fn bad_configuration_exits_64_with_one_line_naming_the_setting() {
    let cases: &[(&[&str], &str)] = &[
        (&["serve", "--bind", "nowhere"], "--bind"),
        (&["serve", "--database-url", "mysql://x"], "--database-url"),
        (
            &["serve", "--database-url", "postgres://localhost/x"],
            "--jwt-secret",
        ),
        (&["serve", "--jwt-secret", "short"], "--jwt-secret"),
        (
            &["serve", "--ws-ping-interval", "abc"],
            "--ws-ping-interval",
        ),
        (&["serve", "--jwt-algorithm", "RS256"], "--jwt-public-key"),
        (&["serve", "--jwt-algorithm", "none"], "--jwt-algorithm"),
        (&["--config", "/does/not/exist.toml", "serve"], "--config"),
    ];
    for (args, setting) in cases {
        let out = tickethub(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(setting), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

async fn serve_demo_prints_logins_and_exits_0_on_sigterm() {
    // This test builds a reqwest client without starting an in-process hub.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}\"\ndemo = true\n",
            dir.path().join("demo.db").display()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env_remove("DATABASE_URL")
        .env_remove("TICKETHUB_JWT_SECRET")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while let Ok(Some(line)) =
        tokio::time::timeout(crate::harness::patience() * 2, lines.next_line())
            .await
            .expect("demo output in time")
    {
        let done = line.contains("WebSocket:");
        printed.push(line);
        if done {
            break;
        }
    }
    let text = printed.join("\n");
    for needle in ["admin-demo", "developer-demo", "client-demo", "DEMO"] {
        assert!(text.contains(needle), "{text}");
    }
    let addr = text
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();
    let res = client
        .post(format!("http://{addr}/api/auth/login/"))
        .json(&serde_json::json!({"username": "client", "password": "client-demo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(dir.path().join("demo.db.jwt-secret").exists());

    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(crate::harness::patience() * 2, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // Logs to a pipe are plain text: no terminal colour codes.
    let mut logs = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut logs)
        .await
        .unwrap();
    assert!(logs.contains("INFO"), "{logs}");
    assert!(!logs.contains('\x1b'), "{logs}");
}

fn the_demo_refuses_an_address_other_hosts_reach_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("demo.db").display());
    let out = tickethub(&[
        "serve",
        "--demo",
        "--bind",
        "0.0.0.0:0",
        "--database-url",
        &db,
    ]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--demo") && stderr.contains("--demo-public"),
        "{stderr}"
    );
}

fn an_identity_provider_without_its_issuer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("idp.db").display());
    let out = tickethub(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--jwt-jwks-url",
        "https://idp.example.test/certs",
        "--jwt-username-claim",
        "preferred_username",
        "--database-url",
        &db,
    ]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("--jwt-issuer"), "{stderr}");
    let out = tickethub(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--jwt-jwks-url",
        "http://idp.example.test/certs",
        "--jwt-issuer",
        "https://idp.example.test",
        "--database-url",
        &db,
    ]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("--jwt-jwks-url"), "{stderr}");
}

fn erase_asks_for_yes_and_frees_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("purge.db").display());
    let out = tickethub(&[
        "users",
        "add",
        "--username",
        "ann",
        "--role",
        "client",
        "--password",
        "ann-password",
        "--database-url",
        &db,
    ]);
    assert!(out.status.success());
    let out = tickethub(&["users", "erase", "ann", "--database-url", &db]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("--yes"));
    let out = tickethub(&["users", "erase", "ann", "--yes", "--database-url", &db]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("signed \"Erased user\""));
    // Erased: the name no longer logs in, and is free again.
    let out = tickethub(&[
        "users",
        "add",
        "--username",
        "ann",
        "--role",
        "client",
        "--password",
        "ann-password",
        "--database-url",
        &db,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tickethub purge` on a database with history: the dry run counts exactly what the purge
/// then deletes, and deletes nothing itself; unread notifications stay without
/// `--retention-unread`.
async fn purge_from_the_command_line_counts_then_deletes(backend: crate::harness::Backend) {
    use crate::harness::{db_number, TestHub};
    use tickethub_actors::domain::Role;
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    for i in 0..5 {
        hub.send(
            &admin,
            &[&ann],
            serde_json::json!({"title": format!("n{i}")}),
        )
        .await;
    }
    let listed = hub
        .get_as(&ann, "/api/notifications/?page_size=100", 200)
        .await;
    let mut listed: Vec<i64> = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed.len(), 5);
    for id in &listed[..3] {
        hub.post_as(
            &ann,
            &format!("/api/notifications/{id}/mark_as_read/"),
            serde_json::json!({}),
            200,
        )
        .await;
    }
    let db = hub.stop_keep_db().await;
    let count = || db_number(&db, "SELECT COUNT(*) FROM notifications");
    let purge = |extra: &[&str]| {
        let mut args = vec!["purge", "--retention", "0s", "--database-url", &db.url];
        args.extend_from_slice(extra);
        let out = tickethub(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let rows = |out: &str, table: &str| -> i64 {
        out.lines()
            .find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some(table)).then(|| words.next().unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no {table} in {out}"))
    };
    let dry = purge(&["--dry-run"]);
    assert_eq!(rows(&dry, "read_notifications"), 3, "{dry}");
    assert!(!dry.contains("unread_notifications"), "{dry}");
    assert!(dry.contains("(dry run: nothing was deleted)"), "{dry}");
    assert_eq!(count().await, 5, "a dry run deletes nothing");
    let done = purge(&[]);
    assert_eq!(rows(&done, "read_notifications"), 3, "{done}");
    assert!(!done.contains("dry run"), "{done}");
    assert_eq!(count().await, 2, "the unread ones stay");
    let again = purge(&["--dry-run"]);
    assert_eq!(rows(&again, "read_notifications"), 0, "{again}");
}

crate::trials! {
    both: [purge_from_the_command_line_counts_then_deletes],
    tests: [
        serve_demo_prints_logins_and_exits_0_on_sigterm,
    ],
    sync: [
        users_and_projects_are_added_from_the_command_line,
        bad_configuration_exits_64_with_one_line_naming_the_setting,
        the_demo_refuses_an_address_other_hosts_reach_unless_told,
        an_identity_provider_without_its_issuer_is_refused,
        erase_asks_for_yes_and_frees_the_name,
    ],
}
