use super::*;

/// Sends `ticket_viewing` on a presence socket.
pub(super) async fn viewing(ws: &mut Ws, id: i64) {
    ws.send_json(json!({"type": "ticket_viewing", "ticket_id": id}))
        .await;
}

/// A member flooding `ticket_viewing` with ids that do not exist costs database reads on
/// their own socket only: the room goes on relaying the others' presence. Shown on
/// PostgreSQL, where a test can make every read of `tickets` wait behind a lock.
pub(super) async fn a_member_flooding_unknown_tickets_stalls_nobody_else() {
    let backend = Backend::postgres();
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("root", Role::Admin).await;
    let (ann, bob, mal) = (
        hub.user("ann", Role::Client).await,
        hub.user("bob", Role::Client).await,
        hub.user("mal", Role::Client).await,
    );
    let project = hub.project("FLD", &[&admin, &ann, &bob, &mal]).await;
    let ticket = crate::tickets::create_ticket(&hub, &ann, project.id.0, "Real").await;
    let ticket_id = ticket["id"].as_i64().unwrap();
    let presence = |u: &User| {
        hub.ws_url(&format!(
            "/ws/projects/{}/presence/?token={}",
            project.id.0,
            hub.token(u)
        ))
    };
    let mut ann_ws = Ws::connect(&presence(&ann)).await;
    assert_eq!(ann_ws.next_json().await["type"], "presence_state");
    let mut bob_ws = Ws::connect(&presence(&bob)).await;
    assert_eq!(bob_ws.next_json().await["type"], "presence_state");
    let mut mal_ws = Ws::connect(&presence(&mal)).await;
    assert_eq!(mal_ws.next_json().await["type"], "presence_state");
    // Bob looks at the real ticket once, so that it is known; ann hears it.
    viewing(&mut bob_ws, ticket_id).await;
    let seen = loop {
        let v = ann_ws.next_json().await;
        if v["type"] == "ticket_viewing" {
            break v;
        }
    };
    assert_eq!(seen["user_id"], bob.id.0);

    // Every read of `tickets` now waits behind this transaction's lock.
    use sqlx::Connection;
    let mut locker = sqlx::PgConnection::connect(&hub.db.url).await.unwrap();
    let mut tx = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE tickets IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    for i in 0..20 {
        viewing(&mut mal_ws, 900_000 + i).await;
    }
    // Bob looks away and back: the room relays it while mal's reads wait.
    viewing(&mut bob_ws, ticket_id).await;
    let relayed = tokio::time::timeout(patience(), async {
        loop {
            let v = ann_ws.next_json().await;
            if v["type"] == "ticket_viewing" && v["user_id"] == bob.id.0 {
                return v;
            }
        }
    })
    .await;
    tx.rollback().await.unwrap();
    assert!(relayed.is_ok(), "the room waited on mal's reads");
    // Mal is told, once the reads are answered, that those tickets are not there.
    let refused = loop {
        let v = mal_ws.next_json().await;
        if v["type"] == "error" {
            break v;
        }
    };
    assert_eq!(refused["code"], "not_found");
}

/// A hub whose webhooks go to `url`, without the allowance for private destinations, and
/// the deliveries of the `ticket_created` its admin gets once they settle.
pub(super) async fn webhook_outcome(url: String, allow_private: bool) -> serde_json::Value {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.channels.webhook.webhook_urls = vec![url];
        c.channels.webhook.webhook_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        c.channels.webhook.webhook_allow_private = allow_private;
        c.delivery_max_attempts = 1;
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let client = hub.user("cli", Role::Client).await;
    let project = hub.project("HK", &[&admin, &client]).await;
    crate::tickets::create_ticket(&hub, &client, project.id.0, "Hook").await;
    let mine = hub.get_as(&admin, "/api/notifications/", 200).await;
    let nid = mine["results"][0]["id"].as_i64().unwrap();
    let path = format!("/api/notifications/{nid}/deliveries/");
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let d = hub.get_as(&admin, &path, 200).await;
        let hook = d["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["channel"] == "webhook")
            .cloned()
            .unwrap_or_default();
        if hook["status"] == "FAILED" || hook["status"] == "SENT" {
            return hook;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook never settled: {hook}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(super) async fn a_webhook_name_that_resolves_to_a_private_address_is_refused() {
    let receiver = crate::fakes::Http::start().await;
    // `localhost`, not `127.0.0.1`: the name is resolved by the request itself.
    let url = format!("http://localhost:{}/hook", receiver.addr.port());
    let hook = webhook_outcome(url, false).await;
    assert_eq!(hook["status"], "FAILED", "{hook}");
    assert!(
        hook["last_error"].as_str().unwrap().contains("non-public"),
        "{hook}"
    );
    assert!(receiver.requests().is_empty(), "the receiver was reached");
}

pub(super) async fn a_receivers_oversized_answer_is_not_read() {
    // A receiver that fails with a 20 MB answer: the hub keeps a note, not the body.
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "x".repeat(20 * 1024 * 1024),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let hook = webhook_outcome(format!("http://{addr}/hook"), true).await;
    assert_eq!(hook["status"], "FAILED", "{hook}");
    let error = hook["last_error"].as_str().unwrap();
    assert!(error.contains("HTTP 500"), "{error}");
    assert!(error.contains("larger than 65536 bytes"), "{error}");
}
