//! What the README promises of the delivery channels, each end to end: the last attempt,
//! the circuit's probe, `Retry-After`, webhook retries and redirects, the `.eml` outbox,
//! `--templates-dir`, and mail over STARTTLS with AUTH to a real SMTP server.

use std::time::Duration;

use serde_json::json;
use tickethub_actors::domain::Role;
use tickethub_actors::routing::Channel;

use crate::delivery::{channel, quick, set_whatsapp, settled_deliveries};
use crate::fakes::{Http, Https, Reply, Smtp};
use crate::harness::{eventually, eventually_some, scaled_ms, Backend, TestHub};
use crate::tickets::{cast, create_ticket};

/// A hub sending WhatsApp to the stand-in at `api`, fast retries, then `tweak`.
async fn whatsapp_hub(
    backend: &Backend,
    api: &Http,
    tweak: impl FnOnce(&mut tickethub::ServeConfig),
) -> TestHub {
    let url = api.url();
    TestHub::start_with(backend, |c| {
        quick(c);
        c.channels.whatsapp.whatsapp_api_url = url;
        c.channels.whatsapp.whatsapp_token = Some("test-token".into());
        c.channels.whatsapp.whatsapp_phone_number_id = Some("1234567".into());
        c.channels.whatsapp.whatsapp_mode = tickethub::config::WhatsappMode::Text;
        tweak(c);
    })
    .await
}

fn gap(requests: &[crate::fakes::Request], i: usize) -> Duration {
    requests[i + 1].at.duration_since(requests[i].at)
}

async fn a_delivery_is_failed_after_its_last_attempt(backend: Backend) {
    let api = Http::start().await;
    let hub = whatsapp_hub(&backend, &api, |c| {
        c.delivery_max_attempts = 3;
        // The circuit stays out of it: every failure is the row's own.
        c.circuit_threshold = 100;
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    set_whatsapp(&hub, &ann, "+15550001111").await;
    api.script((0..5).map(|_| Reply::Status(503, json!({"error": "busy"}))));
    hub.send(&admin, &[&ann], json!({"channels": ["whatsapp"]}))
        .await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    let wa = channel(&d, "whatsapp");
    assert_eq!(
        (&wa["status"], &wa["attempts"]),
        (&json!("FAILED"), &json!(3)),
        "{wa}"
    );
    assert!(
        wa["last_error"].as_str().unwrap().contains("HTTP 503"),
        "{wa}"
    );
    assert!(wa["sent_at"].is_null(), "{wa}");
    // Three requests and no fourth: FAILED is final, and the two replies left are unused.
    assert_eq!(api.requests().len(), 3);
    let page = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(page["results"][0]["status"], "FAILED", "{page}");
    // A later notification is sent as usual (the script is used up: 200).
    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["whatsapp"], "title": "Later"}),
    )
    .await;
    api.wait_for(6).await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    assert_eq!(channel(&d, "whatsapp")["status"], "SENT", "{d:?}");
}

async fn an_open_circuit_waits_its_cooldown_then_lets_one_probe_through() {
    let api = Http::start().await;
    let cooldown = Duration::from_millis(600);
    let hub = whatsapp_hub(&Backend::Sqlite, &api, |c| {
        // Retries come after 25–200 ms; only the circuit can hold one back for 600 ms.
        c.circuit_threshold = 2;
        c.circuit_cooldown_ms = cooldown.as_millis() as u64;
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    let bob = hub.user("bob", Role::Client).await;
    set_whatsapp(&hub, &ann, "+15550001111").await;
    set_whatsapp(&hub, &bob, "+15550002222").await;
    let circuit = || async {
        hub.hub
            .channel_status(Channel::Whatsapp)
            .await
            .unwrap()
            .circuit
    };
    // Two failures open the circuit; the probe after the cooldown fails and opens it again;
    // the next probe succeeds and closes it.
    api.script([
        Reply::Status(500, json!({})),
        Reply::Status(500, json!({})),
        Reply::Status(500, json!({})),
    ]);
    hub.send(&admin, &[&ann], json!({"channels": ["whatsapp"]}))
        .await;
    api.wait_for(2).await;
    eventually("the circuit opens", || async { circuit().await == "open" }).await;
    // Bob's notification comes while the circuit is open: it waits with Ann's.
    hub.send(&admin, &[&bob], json!({"channels": ["whatsapp"]}))
        .await;
    let requests = api.wait_for(5).await;
    eventually("the circuit closes", || async {
        circuit().await == "closed"
    })
    .await;
    let requests = if requests.len() < 5 {
        api.requests()
    } else {
        requests
    };
    // The first probe waited out the cooldown after the failure that opened the circuit, and
    // the second after the probe that reopened it.
    assert!(
        gap(&requests, 1) >= cooldown,
        "first probe after {:?}",
        gap(&requests, 1)
    );
    assert!(
        gap(&requests, 2) >= cooldown,
        "second probe after {:?}",
        gap(&requests, 2)
    );
    // Each probe was one request (two at once would leave no cooldown between them), and
    // once the circuit closed the other row followed: both numbers were reached.
    let to = |i: usize| requests[i].body["to"].as_str().unwrap().to_owned();
    let mut all: Vec<String> = (0..requests.len()).map(to).collect();
    all.sort();
    all.dedup();
    assert_eq!(all, ["15550001111", "15550002222"]);
    for user in [&ann, &bob] {
        let d = settled_deliveries(&hub, user, "general").await;
        assert_eq!(channel(&d, "whatsapp")["status"], "SENT", "{d:?}");
    }
    assert_eq!(api.requests().len(), 5, "nothing was sent twice");
}

/// A provider asking for a day's pause is waited on no longer than the longest backoff: a
/// `Retry-After` never holds a delivery past `--delivery-backoff-max-ms`.
async fn a_retry_after_past_the_longest_backoff_is_held_to_it() {
    let api = Http::start().await;
    let hub = whatsapp_hub(&Backend::Sqlite, &api, |c| {
        c.delivery_backoff_max_ms = 1_000;
        c.circuit_threshold = 100;
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    set_whatsapp(&hub, &ann, "+15550001111").await;
    api.script([Reply::Headers(429, vec![("retry-after", "86400".into())])]);
    hub.send(&admin, &[&ann], json!({"channels": ["whatsapp"]}))
        .await;
    let requests = api.wait_for(2).await;
    assert!(
        gap(&requests, 0) >= Duration::from_millis(1_000),
        "retried {:?} after `Retry-After: 86400`, held to 1 s",
        gap(&requests, 0)
    );
    let d = settled_deliveries(&hub, &ann, "general").await;
    let wa = channel(&d, "whatsapp");
    assert_eq!(
        (&wa["status"], &wa["attempts"]),
        (&json!("SENT"), &json!(2))
    );
}

async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let api = Http::start().await;
    let hub = whatsapp_hub(&Backend::Sqlite, &api, |c| {
        // The backoff alone would retry within 50 ms; Retry-After may ask for up to 5 s.
        c.delivery_backoff_max_ms = 5_000;
        c.circuit_threshold = 100;
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    set_whatsapp(&hub, &ann, "+15550001111").await;
    // Seconds, then an HTTP date three seconds ahead (whole seconds: at least two away).
    api.script([
        Reply::Headers(429, vec![("retry-after", "1".into())]),
        Reply::RetryAt(Duration::from_secs(3)),
    ]);
    hub.send(&admin, &[&ann], json!({"channels": ["whatsapp"]}))
        .await;
    let requests = api.wait_for(3).await;
    assert!(
        gap(&requests, 0) >= Duration::from_secs(1),
        "retried {:?} after `Retry-After: 1`",
        gap(&requests, 0)
    );
    assert!(
        gap(&requests, 1) >= Duration::from_millis(1_500),
        "retried {:?} after a `Retry-After` date",
        gap(&requests, 1)
    );
    let d = settled_deliveries(&hub, &ann, "general").await;
    let wa = channel(&d, "whatsapp");
    assert_eq!(
        (&wa["status"], &wa["attempts"]),
        (&json!("SENT"), &json!(3))
    );
}

async fn webhook_retries_keep_their_id_and_redirects_are_not_followed() {
    let receiver = Http::start().await;
    let url = format!("{}/hooks/tickethub", receiver.url());
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        quick(c);
        c.channels.webhook.webhook_urls = vec![url];
        c.channels.webhook.webhook_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        c.channels.webhook.webhook_allow_private = true;
        c.circuit_threshold = 100;
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    // A 503 and a timeout are retried, under the same `webhook-id` (the receiver's
    // idempotency key), each signed afresh.
    receiver.script([
        Reply::Status(503, json!({})),
        Reply::Hang(Duration::from_secs(3)),
    ]);
    hub.send(&admin, &[&admin], json!({"title": "Retried"}))
        .await;
    let requests = receiver.wait_for(3).await;
    let header = |i: usize, k: &str| requests[i].headers[k].to_str().unwrap().to_owned();
    assert!(header(0, "webhook-id").starts_with("msg_"));
    assert!((1..3).all(|i| header(i, "webhook-id") == header(0, "webhook-id")));
    let d = settled_deliveries(&hub, &admin, "general").await;
    let hook = channel(&d, "webhook");
    assert_eq!(
        (&hook["status"], &hook["attempts"]),
        (&json!("SENT"), &json!(3))
    );

    // A redirect is an answer, not a place to go: permanent, and nothing reaches its target.
    for code in [301u16, 307, 308] {
        let before = receiver.requests().len();
        receiver.script([Reply::Headers(
            code,
            vec![("location", format!("{}/elsewhere", receiver.url()))],
        )]);
        hub.send(&admin, &[&admin], json!({"title": format!("Moved {code}")}))
            .await;
        let d = settled_deliveries(&hub, &admin, "general").await;
        let hook = channel(&d, "webhook");
        assert_eq!(
            (&hook["status"], &hook["attempts"]),
            (&json!("FAILED"), &json!(1)),
            "{hook}"
        );
        assert!(
            hook["last_error"]
                .as_str()
                .unwrap()
                .contains(&format!("HTTP {code}")),
            "{hook}"
        );
        let after = receiver.requests();
        assert_eq!(after.len(), before + 1, "one request, no redirect followed");
        assert!(after.iter().all(|r| r.path == "/hooks/tickethub"));
    }
}

async fn without_an_smtp_server_mail_lands_in_the_outbox_folder_as_eml() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let folder = outbox.clone();
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        quick(c);
        c.channels.email.smtp_url = None;
        c.channels.email.mail_outbox_dir = folder;
    })
    .await;
    let c = cast(&hub).await;
    create_ticket(&hub, &c.c1, c.project, "Homepage not loading").await;
    let files = eventually_some("two .eml files", || async {
        let files: Vec<std::path::PathBuf> = std::fs::read_dir(&outbox)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        (files.len() == 2).then_some(files)
    })
    .await;
    let mut to: Vec<String> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(
                text.contains("Subject: New Ticket Created: WEB-1 Homepage not loading"),
                "{text}"
            );
            assert!(text.contains("text/html"), "{text}");
            text.lines()
                .find_map(|l| l.strip_prefix("To: "))
                .unwrap()
                .to_owned()
        })
        .collect();
    to.sort();
    assert_eq!(to, ["a1@example.test", "a2@example.test"]);
    let d = settled_deliveries(&hub, &c.a1, "ticket_created").await;
    assert_eq!(channel(&d, "email")["status"], "SENT", "{d:?}");

    // A folder that cannot be created is refused at start, naming the setting.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let db = crate::harness::TestDb::create(&Backend::Sqlite).await;
    let mut config = crate::harness::test_config(&db.url);
    config.channels.email.mail_outbox_dir = blocker.join("outbox");
    let err = match tickethub::Application::build(config).await {
        Ok(_) => panic!("a hub started with an outbox it cannot create"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("--mail-outbox-dir"), "{err}");
}

async fn a_templates_dir_overrides_the_messages_and_a_broken_one_is_refused() {
    let smtp = Smtp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "ticket_created.subject.txt",
        "[{{ ticket.key }}] {{ ticket.title | upper }} ({{ ticket.priority_display }})",
    );
    write(
        "default.txt",
        "Dear {{ recipient_name }}: {{ message }} #{{ seq }}\n",
    );
    // A template that fails when rendered (not when loaded): its deliveries fail for good.
    write("general.subject.txt", "{% include \"missing.txt\" %}");
    write("notes.md", "{{ not a template, ignored }");
    let (url, templates) = (smtp.url(), dir.path().to_owned());
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        quick(c);
        c.channels.email.smtp_url = Some(url);
        c.templates_dir = Some(templates);
    })
    .await;
    let c = cast(&hub).await;
    create_ticket(&hub, &c.c1, c.project, "Homepage not loading").await;
    let mails = smtp.wait_for(2).await;
    let a1 = mails.iter().find(|m| m.to == ["a1@example.test"]).unwrap();
    assert_eq!(a1.subject(), "[WEB-1] HOMEPAGE NOT LOADING (High)");
    assert!(
        a1.text()
            .contains("Dear a1 display: New High priority ticket created: Homepage not loading #"),
        "{}",
        a1.text()
    );
    // The HTML part was not overridden: the built-in one is used.
    assert!(a1.text().contains("text/html"), "{}", a1.text());

    hub.send(&c.a1, &[&c.d1], json!({"channels": ["email"]}))
        .await;
    let d = settled_deliveries(&hub, &c.d1, "general").await;
    let email = channel(&d, "email");
    assert_eq!(
        (&email["status"], &email["attempts"]),
        (&json!("FAILED"), &json!(1)),
        "{email}"
    );
    assert!(
        email["last_error"]
            .as_str()
            .unwrap()
            .starts_with("template:"),
        "{email}"
    );
    assert_eq!(smtp.mails().len(), 2);

    // A template that does not parse stops the hub at start, naming the file.
    write("ticket_opened.txt", "{% if %}");
    let db = crate::harness::TestDb::create(&Backend::Sqlite).await;
    let mut config = crate::harness::test_config(&db.url);
    config.templates_dir = Some(dir.path().to_owned());
    let err = match tickethub::Application::build(config).await {
        Ok(_) => panic!("a hub started with a broken template"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("--templates-dir"), "{err}");
    assert!(err.contains("ticket_opened.txt"), "{err}");
}

async fn mail_goes_over_starttls_with_auth_to_a_real_smtp_server() {
    let smtp = Smtp::start_secure("hub", "s3cret-pass").await;
    let (url, ca) = (smtp.url(), smtp.ca_file());
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        quick(c);
        c.channels.email.smtp_url = Some(url.clone());
        c.channels.email.smtp_ca_file = Some(ca.clone());
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["email"], "title": "Over TLS"}),
    )
    .await;
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].to, ["ann@example.test"]);
    assert!(mails[0].secure, "the mail came over STARTTLS");
    assert_eq!(mails[0].user.as_deref(), Some("hub"));
    assert!(mails[0].subject().starts_with("Over TLS"), "{:?}", mails[0]);
    let d = settled_deliveries(&hub, &ann, "general").await;
    assert_eq!(channel(&d, "email")["status"], "SENT", "{d:?}");

    // A wrong password is refused by the server (535): permanent, one attempt.
    let wrong = url.replace("s3cret-pass", "wrong-pass");
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        quick(c);
        c.channels.email.smtp_url = Some(wrong);
        c.channels.email.smtp_ca_file = Some(ca.clone());
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    hub.send(&admin, &[&ann], json!({"channels": ["email"]}))
        .await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    let email = channel(&d, "email");
    assert_eq!(
        (&email["status"], &email["attempts"]),
        (&json!("FAILED"), &json!(1)),
        "{email}"
    );
    assert!(
        email["last_error"].as_str().unwrap().contains("535"),
        "{email}"
    );
    assert!(
        !email["last_error"].as_str().unwrap().contains("wrong-pass"),
        "{email}"
    );

    // Without the CA, the server's certificate is not trusted: nothing is sent in the clear,
    // and the delivery waits to be retried.
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        quick(c);
        c.channels.email.smtp_url = Some(url.clone());
        c.delivery_backoff_ms = scaled_ms(60_000);
        c.delivery_backoff_max_ms = scaled_ms(60_000);
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    hub.send(&admin, &[&ann], json!({"channels": ["email"]}))
        .await;
    let email = eventually_some("the TLS failure is recorded", || async {
        let page = hub.get_as(&ann, "/api/notifications/", 200).await;
        let id = page["results"][0]["id"].as_i64()?;
        let d = hub
            .get_as(&ann, &format!("/api/notifications/{id}/deliveries/"), 200)
            .await;
        let email = d["deliveries"]
            .as_array()?
            .iter()
            .find(|x| x["channel"] == "email")?
            .clone();
        (email["attempts"] == 1).then_some(email)
    })
    .await;
    assert_eq!(email["status"], "QUEUED", "{email}");
    assert!(email["next_attempt_at"].is_string(), "{email}");
    let error = email["last_error"].as_str().unwrap().to_lowercase();
    assert!(
        error.contains("certificate") || error.contains("tls"),
        "{email}"
    );
    assert_eq!(smtp.mails().len(), 1);

    // A CA file with a URL that asks for no TLS is a configuration error.
    let db = crate::harness::TestDb::create(&Backend::Sqlite).await;
    let mut config = crate::harness::test_config(&db.url);
    config.channels.email.smtp_url = Some(format!("smtp://{}", smtp.addr));
    config.channels.email.smtp_ca_file = Some(ca);
    let err = match tickethub::Application::build(config).await {
        Ok(_) => panic!("a CA file without TLS was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("--smtp-ca-file"), "{err}");
}

/// Outbound HTTPS, as to any provider: a webhook to a receiver whose certificate the system's
/// roots vouch for (`SSL_CERT_FILE` names them here) goes out, over TLS, signed; one to a
/// receiver whose certificate nobody vouches for does not, and says why.
async fn webhooks_go_out_over_https_to_a_certificate_the_roots_vouch_for() {
    for (receiver, trusted) in [
        (Https::start().await, true),
        (Https::start_untrusted().await, false),
    ] {
        let url = format!("{}/hooks/tickethub", receiver.url());
        let hub = TestHub::start_with(&Backend::Sqlite, |c| {
            quick(c);
            c.delivery_max_attempts = 1;
            c.channels.webhook.webhook_urls = vec![url];
            c.channels.webhook.webhook_secret =
                Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
            c.channels.webhook.webhook_allow_private = true;
        })
        .await;
        let c = cast(&hub).await;
        create_ticket(&hub, &c.c1, c.project, "Over TLS").await;
        let d = settled_deliveries(&hub, &c.a1, "ticket_created").await;
        let hook = channel(&d, "webhook");
        if trusted {
            assert_eq!(hook["status"], "SENT", "{hook}");
            let requests = receiver.wait_for(1).await;
            assert_eq!(requests[0].path, "/hooks/tickethub");
            assert!(requests[0].headers.contains_key("webhook-signature"));
            assert_eq!(requests[0].body["data"]["ticket"]["title"], "Over TLS");
        } else {
            assert_eq!(hook["status"], "FAILED", "{hook}");
            let error = hook["last_error"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase();
            assert!(error.contains("certificate"), "{hook}");
            assert!(receiver.requests().is_empty());
        }
    }
}

crate::trials! {
    both: [
        a_delivery_is_failed_after_its_last_attempt,
    ],
    tests: [
        webhooks_go_out_over_https_to_a_certificate_the_roots_vouch_for,
        an_open_circuit_waits_its_cooldown_then_lets_one_probe_through,
        a_429_is_retried_no_sooner_than_its_retry_after,
        a_retry_after_past_the_longest_backoff_is_held_to_it,
        webhook_retries_keep_their_id_and_redirects_are_not_followed,
        without_an_smtp_server_mail_lands_in_the_outbox_folder_as_eml,
        a_templates_dir_overrides_the_messages_and_a_broken_one_is_refused,
        mail_goes_over_starttls_with_auth_to_a_real_smtp_server,
    ],
    sync: [],
}
