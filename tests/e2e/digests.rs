//! Less noise, over real SMTP: a person's updates about one ticket within the batch window
//! go out as one email (`3 updates on WEB-1`), a type's own `batch` and a page go alone; a
//! digest sums up, at the time a person chose, what reached them only in the app, grouped by
//! ticket, once, and a claim another node left behind is taken over only when it runs out.

use chrono::{Duration, Utc};
use serde_json::{json, Value};
use tickethub_actors::domain::Role;

use crate::analytics::{db_exec, Bind};
use crate::delivery::{quick, settled_deliveries};
use crate::fakes::{Mail, Smtp};
use crate::harness::{cli, eventually_ok, Backend, Crew, TestHub};

/// The analytics rows of a type on a channel, over the last week, summed: `field`.
async fn analytics(
    hub: &TestHub,
    admin: &tickethub_actors::domain::User,
    kind: &str,
    field: &str,
) -> i64 {
    let answer = hub
        .get_as(
            admin,
            &format!("/api/admin/analytics?type={kind}&channel=email"),
            200,
        )
        .await;
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[field].as_i64().unwrap())
        .sum()
}

/// A mail's subject and text part.
fn read(mail: &Mail) -> (String, String) {
    let parsed = mail_parser::MessageParser::default()
        .parse(mail.data.as_bytes())
        .expect("a mail");
    (
        parsed.subject().unwrap_or_default().to_owned(),
        parsed.body_text(0).unwrap_or_default().into_owned(),
    )
}

/// The mails to `address` so far, read.
fn mails_to(smtp: &Smtp, address: &str) -> Vec<(String, String)> {
    smtp.mails()
        .iter()
        .filter(|m| m.to.contains(&address.to_owned()))
        .map(read)
        .collect()
}

/// The batch window: far longer than the test; the test moves its notifications' time past it.
const WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

const WORK_STARTED_ALONE: &str = r#"
[work_started]
recipients = ["creator"]
channels = ["websocket", "email"]
batch = "0s"
"#;

/// Carol's ticket goes from new to finished at once. Within the window, her `ticket_opened`
/// and `work_finished` go as one email; `work_started` has a window of zero in the routing
/// file and goes alone; the admin's `ticket_created` and `work_finished` are one email too;
/// Ann's one assignment is an email of its own. The in-app inbox has every one at once. A
/// CRITICAL ticket's messages are pages: each goes alone.
async fn updates_to_one_ticket_go_out_as_one_email(backend: Backend) {
    let smtp = Smtp::start().await;
    let routing = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(routing.path(), WORK_STARTED_ALONE).unwrap();
    let path = routing.path().to_owned();
    let hub = TestHub::start_with(&backend, |c| {
        quick(c);
        c.channels.email.smtp_url = Some(smtp.url());
        c.routing = Some(path);
        c.batch_window = WINDOW;
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let carol = hub.user("carol", Role::Client).await;
    let project = hub.project("WEB", &[&carol, &ann]).await;
    let crew = Crew {
        creator: &carol,
        admin: &admin,
        devs: &[&ann],
    };
    let ticket = hub
        .ticket_in(
            "FINISHED",
            &crew,
            json!({"project": project.id.0, "priority": "HIGH", "title": "Login fails"}),
        )
        .await;
    let key = ticket["key"].as_str().unwrap().to_owned();
    // In the app, at once.
    let inbox = hub.get_as(&carol, "/api/notifications/", 200).await;
    assert_eq!(inbox["count"], 3, "{inbox}");

    // Only the update with a window of zero went; the others (Ann's one assignment too) wait,
    // and the window passes when the test says so.
    smtp.wait_for(1).await;
    let held = eventually_ok("the others wait for their batch", || async {
        match crate::harness::db_number(
            &hub.db,
            "SELECT COUNT(*) FROM deliveries WHERE held = 'batch' AND status = 'QUEUED'",
        )
        .await
        {
            5 => Ok(5),
            n => Err(format!("{n} held")),
        }
    })
    .await;
    assert_eq!((held, smtp.mails().len()), (5, 1));
    let past = Utc::now() - Duration::seconds(WINDOW.as_secs() as i64 + 60);
    db_exec(
        &hub.db,
        "UPDATE notifications SET created_at = $1",
        &[Bind::At(past)],
    )
    .await;
    db_exec(
        &hub.db,
        "UPDATE deliveries SET next_attempt_at = $1 WHERE held = 'batch'",
        &[Bind::At(past)],
    )
    .await;
    eventually_ok("four emails", || async {
        match smtp.mails().len() {
            4 => Ok(()),
            n => Err(format!(
                "{n}: {:?}",
                smtp.mails().iter().map(read).collect::<Vec<_>>()
            )),
        }
    })
    .await;
    let carols = mails_to(&smtp, "carol@example.test");
    assert_eq!(carols.len(), 2, "{carols:?}");
    let batch = format!("2 updates on {key}");
    let (subject, text) = carols
        .iter()
        .find(|(s, _)| s.contains(&batch))
        .unwrap_or_else(|| panic!("no batch in {carols:?}"));
    assert_eq!(subject, &format!("{batch}: {key} Login fails"));
    assert!(text.contains(&format!("{batch}:")), "{text}");
    let listed: Vec<&str> = text.lines().filter(|l| l.starts_with("- ")).collect();
    assert_eq!(listed.len(), 2, "{text}");
    assert!(listed[0].contains("opened"), "{text}");
    assert!(
        listed[1].contains("finished") || listed[1].contains("Finished"),
        "{text}"
    );
    let alone = carols
        .iter()
        .find(|(s, _)| !s.contains("updates on"))
        .unwrap();
    assert!(alone.0.contains(&key), "{alone:?}");
    assert!(!alone.1.lines().any(|l| l.starts_with("- ")), "{alone:?}");

    let admins = mails_to(&smtp, "boss@example.test");
    assert_eq!(admins.len(), 1, "{admins:?}");
    assert!(admins[0].0.starts_with(&batch), "{admins:?}");
    let anns = mails_to(&smtp, "ann@example.test");
    assert_eq!(anns.len(), 1, "{anns:?}");
    assert!(!anns[0].0.contains("updates on"), "{anns:?}");
    // Both of Carol's batched notifications, and both of the admin's, count as sent by email
    // (the mail reaches the server before the hub records its answer: awaited here, before the
    // analytics count them).
    for (user, kind) in [
        (&carol, "ticket_opened"),
        (&carol, "work_finished"),
        (&admin, "ticket_created"),
        (&admin, "work_finished"),
    ] {
        let deliveries = settled_deliveries(&hub, user, kind).await;
        let email = deliveries
            .iter()
            .find(|d| d["channel"] == "email")
            .unwrap_or_else(|| panic!("{deliveries:?}"));
        assert_eq!(email["status"], "SENT", "{kind}: {deliveries:?}");
    }

    // The analytics count the two updates that went inside another's message.
    assert_eq!(analytics(&hub, &admin, "work_finished", "batched").await, 2);
    assert_eq!(
        analytics(&hub, &admin, "work_finished", "delivered").await,
        2
    );
    assert_eq!(analytics(&hub, &admin, "ticket_opened", "batched").await, 0);

    // A CRITICAL ticket pages: nothing of it waits or joins a batch.
    let before = smtp.mails().len();
    hub.ticket_in(
        "FINISHED",
        &crew,
        json!({"project": project.id.0, "priority": "CRITICAL", "title": "Down"}),
    )
    .await;
    let all = smtp.wait_for(before + 6).await;
    for mail in &all[before..] {
        let (subject, _) = read(mail);
        assert!(!subject.contains("updates on"), "{subject}");
    }
    assert_eq!(mails_to(&smtp, "carol@example.test").len(), 5);
}

/// Ann takes her updates by digest: her email is off for every type, so what reaches her
/// reaches her in the app only. Her digest (daily at 08:00) is made due: one email lists
/// both tickets' notifications, grouped, with links; it is recorded once and moved to the
/// next morning, and a digest due again with nothing new sends nothing. A claim left by a
/// node that died is taken over once its lease runs out, not before.
async fn a_digest_sums_up_what_reached_a_person_only_in_the_app(backend: Backend) {
    let smtp = Smtp::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        quick(c);
        c.channels.email.smtp_url = Some(smtp.url());
        c.public_url = Some("https://hub.example.com".into());
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let carol = hub.user("carol", Role::Client).await;
    let project = hub.project("WEB", &[&carol, &ann]).await;
    let token = hub.token(&ann);
    let (code, _) = hub
        .call(
            reqwest::Method::PUT,
            "/api/notifications/preferences/",
            Some(&token),
            Some(json!({"channels": {"email": false}})),
        )
        .await;
    assert_eq!(code, 200);
    let patch = |body: Value| {
        let token = token.clone();
        let hub = &hub;
        async move {
            hub.call(
                reqwest::Method::PATCH,
                "/api/users/me/",
                Some(&token),
                Some(body),
            )
            .await
        }
    };
    for bad in [
        json!({"every": "weekly"}),
        json!({"every": "daily", "at": "25:00"}),
        json!({"every": "daily", "when": "08:00"}),
        json!("daily"),
    ] {
        let (code, said) = patch(json!({ "digest": bad })).await;
        assert_eq!(code, 400, "{bad}: {said}");
    }
    let (code, me) = patch(json!({"digest": {"every": "daily", "at": "08:00"}})).await;
    assert_eq!(code, 200, "{me}");
    assert_eq!(
        me["digest"],
        json!({"every": "daily", "at": "08:00"}),
        "{me}"
    );

    let crew = Crew {
        creator: &carol,
        admin: &admin,
        devs: &[&ann],
    };
    let mut keys = Vec::new();
    for title in ["Login fails", "Export is slow"] {
        let t = hub
            .ticket_in(
                "ASSIGNED",
                &crew,
                json!({"project": project.id.0, "title": title}),
            )
            .await;
        keys.push(t["key"].as_str().unwrap().to_owned());
    }
    let inbox = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(inbox["count"], 2, "{inbox}");

    // What it would say, from the command line, before it is due.
    let preview = cli(&[
        "digest",
        "preview",
        "--user",
        "ann",
        "--public-url",
        "https://hub.example.com",
        "--database-url",
        &hub.db.url,
    ])
    .await;
    assert!(preview.ok, "{}{}", preview.stdout, preview.stderr);
    assert!(
        preview.stdout.contains("To: ann@example.test"),
        "{}",
        preview.stdout
    );
    assert!(
        preview
            .stdout
            .contains("Subject: Your tickethub digest: 2 unread notifications"),
        "{}",
        preview.stdout
    );
    let nobody = cli(&[
        "digest",
        "preview",
        "--user",
        "carol",
        "--database-url",
        &hub.db.url,
    ])
    .await;
    assert!(
        !nobody.ok && nobody.stderr.contains("no digest"),
        "{}",
        nobody.stderr
    );

    // Morning comes.
    let due = Utc::now();
    db_exec(&hub.db, "UPDATE digests SET due_at = $1", &[Bind::At(due)]).await;
    let mail = eventually_ok("Ann's digest", || async {
        let got = smtp
            .mails()
            .into_iter()
            .filter(|m| m.to.contains(&"ann@example.test".to_owned()))
            .collect::<Vec<_>>();
        match got.len() {
            0 => Err("no digest yet".to_owned()),
            _ => Ok(got),
        }
    })
    .await;
    assert_eq!(mail.len(), 1);
    let (subject, text) = read(&mail[0]);
    assert_eq!(subject, "Your tickethub digest: 2 unread notifications");
    for key in &keys {
        assert!(
            text.contains(&format!("https://hub.example.com/#/tickets/{key}")),
            "{text}"
        );
    }
    assert_eq!(
        text.lines().filter(|l| l.starts_with("- ")).count(),
        2,
        "{text}"
    );
    assert!(mail[0]
        .data
        .contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    assert!(
        mail[0].data.contains("Message-ID: <digest."),
        "{}",
        mail[0].data
    );
    // Recorded once, and moved to the next morning, covering from this one on.
    eventually_ok("the digest moves on", || async {
        let moved = db_exec(
            &hub.db,
            "UPDATE digests SET user_id = user_id WHERE since = $1 AND due_at > $1 \
             AND claimed_by IS NULL",
            &[Bind::At(due)],
        )
        .await;
        (moved == 1).then_some(()).ok_or("not yet".to_owned())
    })
    .await;
    let sent = crate::harness::db_number(&hub.db, "SELECT COUNT(*) FROM digest_sends").await;
    assert_eq!(sent, 1);

    // Due again with nothing new: it moves on and sends nothing.
    let again = Utc::now();
    db_exec(
        &hub.db,
        "UPDATE digests SET due_at = $1",
        &[Bind::At(again)],
    )
    .await;
    eventually_ok("the empty digest moves on", || async {
        let moved = db_exec(
            &hub.db,
            "UPDATE digests SET user_id = user_id WHERE since = $1 AND due_at > $1 \
             AND claimed_by IS NULL",
            &[Bind::At(again)],
        )
        .await;
        (moved == 1).then_some(()).ok_or("not yet".to_owned())
    })
    .await;

    // A node died holding the next one: it goes once the claim runs out, not before.
    let t = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({"project": project.id.0, "title": "Third"}),
        )
        .await;
    let lease_end = Utc::now() + Duration::seconds(3);
    db_exec(
        &hub.db,
        "UPDATE digests SET due_at = $1, claimed_by = 'gone', claimed_until = $2",
        &[Bind::At(Utc::now()), Bind::At(lease_end)],
    )
    .await;
    let second = eventually_ok("the digest a dead node held", || async {
        let got = mails_to(&smtp, "ann@example.test");
        match got.len() {
            2 => Ok(got[1].clone()),
            n => Err(format!("{n} mails")),
        }
    })
    .await;
    assert!(Utc::now() >= lease_end, "sent before the claim ran out");
    assert_eq!(
        second.0, "Your tickethub digest: 1 unread notification",
        "{}",
        second.1
    );
    assert!(
        second.1.contains(t["key"].as_str().unwrap()),
        "{}",
        second.1
    );
    assert!(!second.1.contains(&keys[0]), "{}", second.1);
    // Recorded once it went (the mail may come a moment before the record).
    eventually_ok("the second digest is recorded", || async {
        match crate::harness::db_number(&hub.db, "SELECT COUNT(*) FROM digest_sends").await {
            2 => Ok(()),
            n => Err(format!("{n}")),
        }
    })
    .await;

    // The analytics count two digests, of three notifications.
    assert_eq!(analytics(&hub, &admin, "digest", "delivered").await, 2);
    assert_eq!(analytics(&hub, &admin, "digest", "digested").await, 3);

    // Off stops it; the row goes.
    let (code, me) = patch(json!({"digest": {"every": "off"}})).await;
    assert_eq!((code, &me["digest"]), (200, &Value::Null), "{me}");
    let left = crate::harness::db_number(&hub.db, "SELECT COUNT(*) FROM digests").await;
    assert_eq!(left, 0);

    // On again, then the first digest's one-click link (a mail client's POST) stops it.
    let (code, _) = patch(json!({"digest": {"every": "daily"}})).await;
    assert_eq!(code, 200);
    let clicked = reqwest::Client::new()
        .post(hub.url(&crate::unsubscribe::link(&mail[0])))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(clicked.status(), 200);
    let me = hub.get_as(&ann, "/api/users/me/", 200).await;
    assert_eq!(me["digest"], Value::Null, "{me}");
    let left = crate::harness::db_number(&hub.db, "SELECT COUNT(*) FROM digests").await;
    assert_eq!(left, 0);
}

/// `kill -9` around a digest's send, on a hub process: killed while it holds the digest (its
/// mail server refusing for now), the digest goes once when the next process takes the claim
/// over; killed after a digest went and was recorded, nothing goes again, and the next digest
/// lists only what came since.
async fn kill_9_around_a_digest_loses_none_and_sends_none_twice(backend: Backend) {
    let smtp = Smtp::start().await;
    let url = smtp.url();
    let mut cluster = crate::nodes::Cluster::start(
        &backend,
        1,
        &[
            "--smtp-url",
            &url,
            "--delivery-timeout",
            "1",
            "--delivery-lease",
            "2",
        ],
    )
    .await;
    let admin = cluster.user("boss", Role::Admin).await;
    let ann = cluster.user("ann", Role::Developer).await;
    let email = tickethub_actors::routing::Channel::Email;
    cluster
        .store
        .update_profile(
            ann.id,
            tickethub_actors::ports::ProfileChanges {
                addresses: vec![(email, Some("ann@example.test".into()))],
                vouched: true,
                by: Some("cli".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    let (code, me) = cluster
        .call(
            0,
            reqwest::Method::PATCH,
            &ann,
            "/api/users/me/",
            Some(json!({"digest": {"every": "hourly", "at": "00:30"}})),
        )
        .await;
    assert_eq!(code, 200, "{me}");
    cluster.send(0, &admin, &ann, "Disk almost full").await;
    let db = crate::harness::TestDb::existing(cluster.db_url());

    // Due, with the mail server refusing for now: the node holds the digest when it dies.
    smtp.set_down(true).await;
    db_exec(
        &db,
        "UPDATE digests SET due_at = $1",
        &[Bind::At(Utc::now())],
    )
    .await;
    eventually_ok("the digest is claimed", || async {
        let held = db_exec(
            &db,
            "UPDATE digests SET user_id = user_id WHERE claimed_by IS NOT NULL",
            &[],
        )
        .await;
        (held == 1).then_some(()).ok_or("not yet".to_owned())
    })
    .await;
    cluster.nodes[0].kill().await;
    smtp.set_down(false).await;
    cluster.nodes[0].restart().await;
    let first = smtp.wait_for(1).await;
    assert_eq!(
        first[0].subject(),
        "Your tickethub digest: 1 unread notification"
    );
    assert!(
        first[0].text().contains("Disk almost full"),
        "{}",
        first[0].text()
    );
    let sent_at = Utc::now();
    eventually_ok("the digest is recorded and moved on", || async {
        let moved = db_exec(
            &db,
            "UPDATE digests SET user_id = user_id WHERE claimed_by IS NULL AND due_at > $1",
            &[Bind::At(sent_at)],
        )
        .await;
        (moved == 1).then_some(()).ok_or("not yet".to_owned())
    })
    .await;

    // Killed after it went: nothing goes again; the next lists only what came since.
    cluster.nodes[0].kill().await;
    cluster.nodes[0].restart().await;
    cluster.send(0, &admin, &ann, "Backup failed").await;
    db_exec(
        &db,
        "UPDATE digests SET due_at = $1",
        &[Bind::At(Utc::now())],
    )
    .await;
    let both = smtp.wait_for(2).await;
    assert_eq!(
        both.len(),
        2,
        "{:?}",
        both.iter().map(|m| m.subject()).collect::<Vec<_>>()
    );
    assert_eq!(
        both[1].subject(),
        "Your tickethub digest: 1 unread notification"
    );
    assert!(
        both[1].text().contains("Backup failed"),
        "{}",
        both[1].text()
    );
    assert!(
        !both[1].text().contains("Disk almost full"),
        "{}",
        both[1].text()
    );
    eventually_ok("both recorded", || async {
        match crate::harness::db_number(&db, "SELECT COUNT(*) FROM digest_sends").await {
            2 => Ok(()),
            n => Err(format!("{n}")),
        }
    })
    .await;
}

crate::trials! {
    both: [
        updates_to_one_ticket_go_out_as_one_email,
        a_digest_sums_up_what_reached_a_person_only_in_the_app,
        kill_9_around_a_digest_loses_none_and_sends_none_twice,
    ],
    tests: [],
    sync: [],
}
