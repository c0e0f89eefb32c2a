use super::*;

/// The trace of `ticket` for `user` (an id or a username), as `admin` asks for it.
pub(super) async fn trace(hub: &TestHub, admin: &User, ticket: i64, user: &str) -> Value {
    hub.get_as(
        admin,
        &format!("/api/admin/trace?ticket={ticket}&user={user}"),
        200,
    )
    .await
}

/// The traced decision of the only event of a type.
pub(super) fn decision(trace: &Value, kind: &str) -> Value {
    let found: Vec<&Value> = trace["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["notification_type"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} in {trace}");
    found[0].clone()
}

/// A traced channel of a decision.
pub(super) fn channel(decision: &Value, name: &str) -> Value {
    decision["channels"]
        .as_array()
        .unwrap_or_else(|| panic!("no channels in {decision}"))
        .iter()
        .find(|c| c["channel"] == name)
        .unwrap_or_else(|| panic!("no {name} in {decision}"))
        .clone()
}

/// Deactivates a user (`PATCH /api/users/{id}/`).
pub(super) async fn deactivate(hub: &TestHub, admin: &User, user: &User) {
    let (status, body) = hub
        .call(
            reqwest::Method::PATCH,
            &format!("/api/users/{}/", user.id.0),
            Some(&hub.token(admin)),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_active"], false, "{body}");
}

/// A deactivated creator or assignee is left out as `inactive`, with the sentence saying so,
/// for the events that named them before and for those after the deactivation, which indeed
/// did not notify them.
pub(super) async fn the_trace_names_a_deactivated_user_inactive(backend: Backend) {
    let file = routing_file("");
    let hub = hub_with(&backend, &file, None, None).await;
    let c = cast(&hub).await;
    let (id, _) = assigned_ticket(
        &hub,
        &c,
        &c.a1,
        &[&c.d1, &c.d2],
        "Search is slow",
        "HIGH",
        "BUG",
    )
    .await;
    let before = trace(&hub, &c.a1, id, "c1").await;
    assert_eq!(decision(&before, "ticket_opened")["recipient"], true);
    assert_eq!(before["user"]["is_active"], true);

    deactivate(&hub, &c.a1, &c.c1).await;
    deactivate(&hub, &c.a1, &c.d1).await;
    // A comment after the deactivation: of its creator and assignees only d2 is active.
    hub.post_as(
        &c.a2,
        &format!("/api/tickets/{id}/comments/"),
        json!({"body": "Still slow?"}),
        201,
    )
    .await;
    let d2_note = note_of(&hub, &c.d2, "comment_added", id).await;

    let c1 = trace(&hub, &c.a1, id, "c1").await;
    assert_eq!(c1["user"]["is_active"], false, "{c1}");
    assert_eq!(c1["user"]["member"], true, "{c1}");
    for kind in ["ticket_opened", "comment_added"] {
        let e = decision(&c1, kind);
        assert_eq!(e["recipient"], false, "{e}");
        assert_eq!(e["reason"], "inactive", "{e}");
        assert_eq!(e["explanation"], "c1 is deactivated", "{e}");
    }
    // Whether an event's route names the user is decided first: the creation goes to admins
    // only.
    assert_eq!(decision(&c1, "ticket_created")["reason"], "not_routed");

    let d1 = trace(&hub, &c.a1, id, &c.d1.id.0.to_string()).await;
    for kind in ["ticket_assigned", "comment_added"] {
        let e = decision(&d1, kind);
        assert_eq!(e["reason"], "inactive", "{e}");
        assert_eq!(e["explanation"], "d1 is deactivated", "{e}");
    }
    let d2 = trace(&hub, &c.a1, id, "d2").await;
    let e = decision(&d2, "comment_added");
    assert_eq!(e["recipient"], true, "{e}");
    assert_eq!(e["audiences"], json!(["assignees"]), "{e}");
    assert_eq!(e["notification"]["id"], d2_note, "{e}");

    // d2's notification was committed with the comment, in one transaction with every other
    // recipient's: the deactivated users got none.
    for user in [&c.c1, &c.d1] {
        let n = crate::harness::db_number(
            &hub.db,
            &format!(
                "SELECT COUNT(*) FROM notifications WHERE user_id = {} \
                 AND notification_type = 'comment_added'",
                user.id.0
            ),
        )
        .await;
        assert_eq!(n, 0, "{} was notified", user.username);
    }
}

/// A channel the route names but the user has no address for is `no_address`, email and
/// WhatsApp alike, and nothing is sent to them on it; a user with the addresses is reached.
pub(super) async fn the_trace_says_which_channel_has_no_address(backend: Backend) {
    let (smtp, api) = (Smtp::start().await, Http::start().await);
    let file = routing_file("");
    let hub = hub_with(&backend, &file, Some(&smtp), Some(&api)).await;
    let c = cast(&hub).await;
    // d1 has neither an email address nor a WhatsApp number; d2 has both.
    let (status, me) = hub
        .call(
            reqwest::Method::PATCH,
            "/api/users/me/",
            Some(&hub.token(&c.d1)),
            Some(json!({"email": null})),
        )
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], Value::Null, "{me}");
    set_whatsapp(&hub, &c.d2, "+15550102222").await;
    let (id, _) = assigned_ticket(
        &hub,
        &c,
        &c.a1,
        &[&c.d1, &c.d2],
        "Login loops",
        "HIGH",
        "BUG",
    )
    .await;
    let d1_note = note_of(&hub, &c.d1, "ticket_assigned", id).await;

    let d1 = decision(&trace(&hub, &c.a1, id, "d1").await, "ticket_assigned");
    assert_eq!(d1["recipient"], true, "{d1}");
    assert_eq!(d1["audiences"], json!(["newly_assigned"]), "{d1}");
    for (name, sentence) in [
        ("email", "the user has no email address"),
        ("whatsapp", "the user has no whatsapp address"),
    ] {
        let ch = channel(&d1, name);
        assert_eq!(ch["reached"], false, "{ch}");
        assert_eq!(ch["reason"], "no_address", "{ch}");
        assert_eq!(ch["explanation"], sentence, "{ch}");
    }
    // The in-app notification is stored all the same.
    assert_eq!(d1["notification"]["id"], d1_note, "{d1}");

    let d2 = decision(&trace(&hub, &c.a1, id, "d2").await, "ticket_assigned");
    assert_eq!(
        channel(&d2, "email"),
        json!({"channel": "email", "reached": true, "address": "d2@example.test"})
    );
    assert_eq!(
        channel(&d2, "whatsapp"),
        json!({"channel": "whatsapp", "reached": true, "address": "+15550102222"})
    );

    // What the trace says is what happened: d2's assignment went out on both channels, d1's on
    // none (its deliveries are committed with it).
    let d2_note = note_of(&hub, &c.d2, "ticket_assigned", id).await;
    assert_eq!(
        sent_deliveries(&hub, &c.d2, d2_note).await,
        [
            ("email".to_owned(), "d2@example.test".to_owned()),
            ("whatsapp".to_owned(), "+15550102222".to_owned()),
        ]
    );
    let d = outbound_deliveries(&hub, &c.d1, d1_note).await;
    assert!(d.is_empty(), "{d:?}");
    let requests = api.wait_for(1).await;
    assert!(
        requests.iter().all(|r| r.body["to"] == "15550102222"),
        "{:?}",
        requests.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    eventually("d2's assignment is mailed", || async {
        smtp.mails()
            .iter()
            .any(|m| m.to == ["d2@example.test"] && m.subject().contains("Assigned"))
    })
    .await;
    assert!(smtp
        .mails()
        .iter()
        .all(|m| m.to.iter().all(|t| !t.starts_with("d1@"))));
}

/// A channel this hub has no transport for (WhatsApp without a token) is `no_transport`, even
/// for a user with a number, and nothing is queued on it; email, which it has, reaches them.
pub(super) async fn the_trace_says_which_channel_has_no_transport(backend: Backend) {
    let smtp = Smtp::start().await;
    let file = routing_file("");
    let hub = hub_with(&backend, &file, Some(&smtp), None).await;
    let c = cast(&hub).await;
    set_whatsapp(&hub, &c.d1, "+15550101111").await;
    let (id, _) =
        assigned_ticket(&hub, &c, &c.a1, &[&c.d1], "Export times out", "HIGH", "BUG").await;
    let note = note_of(&hub, &c.d1, "ticket_assigned", id).await;

    let d1 = decision(&trace(&hub, &c.a1, id, "d1").await, "ticket_assigned");
    assert_eq!(d1["recipient"], true, "{d1}");
    assert_eq!(
        d1["route"]["channels"],
        json!(["email", "whatsapp", "websocket"]),
        "{d1}"
    );
    assert_eq!(
        channel(&d1, "whatsapp"),
        json!({"channel": "whatsapp", "reached": false, "reason": "no_transport",
               "explanation": "this hub has no whatsapp transport"})
    );
    assert_eq!(
        channel(&d1, "email"),
        json!({"channel": "email", "reached": true, "address": "d1@example.test"})
    );
    // The creator's ticket_opened, on the same route channels, is told the same.
    let c1 = decision(&trace(&hub, &c.a1, id, "c1").await, "ticket_opened");
    assert_eq!(channel(&c1, "whatsapp")["reason"], "no_transport", "{c1}");

    // The assignment was mailed, and nothing was queued for WhatsApp.
    assert_eq!(
        sent_deliveries(&hub, &c.d1, note).await,
        [("email".to_owned(), "d1@example.test".to_owned())]
    );
    eventually("d1's assignment is mailed", || async {
        smtp.mails()
            .iter()
            .any(|m| m.to == ["d1@example.test"] && m.subject().contains("Assigned"))
    })
    .await;
}

/// A type whose route the routing file emptied (`recipients = []`) goes to nobody: the trace
/// says `no_route` for every user, members and admins alike, and indeed nobody was notified,
/// while the other types are routed as before.
pub(super) async fn the_trace_says_no_route_for_a_type_the_routing_file_emptied(backend: Backend) {
    let file = routing_file(
        r#"
[ticket_opened]
recipients = []
channels = ["websocket"]
"#,
    );
    let hub = hub_with(&backend, &file, None, None).await;
    let c = cast(&hub).await;
    let (id, _) = assigned_ticket(&hub, &c, &c.a1, &[&c.d1], "Login fails", "HIGH", "BUG").await;
    for user in everyone(&c) {
        let t = trace(&hub, &c.a1, id, &user.username).await;
        let e = decision(&t, "ticket_opened");
        assert_eq!(e["recipient"], false, "{e}");
        assert_eq!(e["reason"], "no_route", "{e}");
        assert_eq!(
            e["explanation"], "ticket_opened goes to nobody: its route names no audience",
            "{e}"
        );
        assert_eq!(e["route"]["audiences"], json!([]), "{e}");
    }
    let opened = crate::harness::db_number(
        &hub.db,
        "SELECT COUNT(*) FROM notifications WHERE notification_type = 'ticket_opened'",
    )
    .await;
    assert_eq!(opened, 0, "nobody is notified of the opening");
    // The route of the other types is untouched: the creator's opening route was the one
    // emptied, the assignment still reaches the developer.
    let d1 = trace(&hub, &c.a1, id, "d1").await;
    let assigned = decision(&d1, "ticket_assigned");
    assert_eq!(assigned["recipient"], true, "{assigned}");
    assert_ne!(decision(&d1, "ticket_created")["reason"], "no_route");
}

/// The trace answers bad input with 400, an unknown ticket or user with 404, a caller who is
/// not an admin with 403, and no token with 401.
pub(super) async fn the_trace_refuses_bad_input(backend: Backend) {
    let file = routing_file("");
    let hub = hub_with(&backend, &file, None, None).await;
    let c = cast(&hub).await;
    let t = create_ticket(&hub, &c.c1, c.project, "Broken").await;
    let id = t["id"].as_i64().unwrap();
    // A good question first, so that the refusals below are about the input alone.
    let ok = trace(&hub, &c.a1, id, "d1").await;
    assert_eq!(ok["ticket"]["id"], id, "{ok}");

    let refused = |query: String, status: u16| {
        let (hub, admin) = (&hub, c.a1.clone());
        async move {
            hub.get_as(&admin, &format!("/api/admin/trace{query}"), status)
                .await
        }
    };
    let detail = |v: &Value| v["detail"].as_str().unwrap_or_default().to_owned();
    let missing = refused("?user=d1".into(), 400).await;
    assert!(detail(&missing).starts_with("ticket:"), "{missing}");
    let bad = refused("?ticket=1.5&user=d1".into(), 400).await;
    assert!(detail(&bad).starts_with("ticket:"), "{bad}");
    for query in [
        format!("?ticket={id}&user="),
        format!("?ticket={id}&user=%20"),
    ] {
        let v = refused(query, 400).await;
        assert!(detail(&v).starts_with("user:"), "{v}");
    }
    refused(format!("?ticket={id}&ticket={id}&user=d1"), 400).await;
    refused(format!("?ticket={id}&user=d1&user=d2"), 400).await;
    refused("".into(), 400).await;
    for query in [
        format!("?ticket={id}&user=999999"),
        format!("?ticket={id}&user=ghost"),
        "?ticket=999999&user=d1".to_owned(),
        "?ticket=-1&user=d1".to_owned(),
    ] {
        let v = refused(query, 404).await;
        assert_eq!(v["detail"], "Not found.", "{v}");
    }
    hub.get_as(&c.d1, &format!("/api/admin/trace?ticket={id}&user=d1"), 403)
        .await;
    hub.get_as(&c.c1, &format!("/api/admin/trace?ticket={id}&user=c1"), 403)
        .await;
    let (status, _) = hub
        .get(&format!("/api/admin/trace?ticket={id}&user=d1"), None)
        .await;
    assert_eq!(status, 401);
}
