use super::*;

/// The titles of a ticket list, in its order.
pub(super) fn titles(page: &Value) -> Vec<String> {
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect()
}

pub(super) async fn ticket_lists_search_by_title_or_key_filter_by_priority_and_sort(
    backend: Backend,
) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let outsider = hub.user("outsider", Role::Client).await;
    let ops = hub.project("OPS", &[&outsider]).await.id.0;
    let mut keys = BTreeMap::new();
    for (title, priority) in [
        ("Checkout is slow", "HIGH"),
        ("Refund 100% of order_7", "LOW"),
        ("checkout button misaligned", "CRITICAL"),
        ("Login fails", "MEDIUM"),
    ] {
        let t = hub
            .post_as(
                &c.c1,
                "/api/tickets/",
                json!({"project": c.project, "title": title, "priority": priority}),
                201,
            )
            .await;
        keys.insert(title, t["key"].as_str().unwrap().to_owned());
    }
    hub.post_as(
        &outsider,
        "/api/tickets/",
        json!({"project": ops, "title": "Checkout elsewhere"}),
        201,
    )
    .await;

    // Search: the title, whatever its case; never another project's tickets.
    let found = hub
        .get_as(&c.c2, "/api/tickets/?search=CHECKOUT", 200)
        .await;
    assert_eq!(
        titles(&found),
        ["checkout button misaligned", "Checkout is slow"]
    );
    assert_eq!(found["count"], 2);
    // LIKE's own characters are plain text.
    assert_eq!(
        titles(&hub.get_as(&c.c2, "/api/tickets/?search=100%25", 200).await),
        ["Refund 100% of order_7"]
    );
    // (`d_1` would match "Refund 100%" if `_` were a wildcard.)
    assert_eq!(
        hub.get_as(&c.c2, "/api/tickets/?search=d_1", 200).await["count"],
        0
    );
    assert_eq!(
        hub.get_as(&c.c2, "/api/tickets/?search=%25", 200).await["count"],
        1
    );
    // A key, in any case, finds its ticket.
    let key = &keys["Login fails"];
    assert_eq!(
        titles(
            &hub.get_as(
                &c.c2,
                &format!("/api/tickets/?search={}", key.to_lowercase()),
                200
            )
            .await
        ),
        ["Login fails"]
    );
    // An empty search is no filter; a long one is refused.
    assert_eq!(
        hub.get_as(&c.c2, "/api/tickets/?search=", 200).await["count"],
        4
    );
    let long = "x".repeat(201);
    hub.get_as(&c.c2, &format!("/api/tickets/?search={long}"), 400)
        .await;

    // Priority, alone and with the search.
    assert_eq!(
        titles(
            &hub.get_as(&c.c2, "/api/tickets/?priority=CRITICAL", 200)
                .await
        ),
        ["checkout button misaligned"]
    );
    assert_eq!(
        hub.get_as(&c.c2, "/api/tickets/?priority=HIGH&search=checkout", 200)
            .await["count"],
        1
    );
    let bad = hub
        .get_as(&c.c2, "/api/tickets/?priority=URGENT", 400)
        .await;
    assert!(bad.to_string().contains("priority"), "{bad}");

    // Ordering.
    assert_eq!(
        titles(
            &hub.get_as(&c.c2, "/api/tickets/?ordering=-priority", 200)
                .await
        ),
        [
            "checkout button misaligned",
            "Checkout is slow",
            "Login fails",
            "Refund 100% of order_7"
        ]
    );
    assert_eq!(
        titles(
            &hub.get_as(&c.c2, "/api/tickets/?ordering=created_at", 200)
                .await
        ),
        [
            "Checkout is slow",
            "Refund 100% of order_7",
            "checkout button misaligned",
            "Login fails"
        ]
    );
    assert_eq!(
        titles(
            &hub.get_as(&c.c2, "/api/tickets/?ordering=priority&page_size=1", 200)
                .await
        ),
        ["Refund 100% of order_7"]
    );
    let bad = hub.get_as(&c.c2, "/api/tickets/?ordering=title", 400).await;
    assert!(bad.to_string().contains("-created_at"), "{bad}");
    // A change moves a ticket to the top of `-updated_at`.
    let slow = hub.get_as(&c.c2, "/api/tickets/?search=slow", 200).await["results"][0]["id"]
        .as_i64()
        .unwrap();
    hub.post_as(
        &c.a1,
        &format!("/api/tickets/{slow}/open_ticket/"),
        json!({}),
        200,
    )
    .await;
    assert_eq!(
        titles(
            &hub.get_as(&c.c2, "/api/tickets/?ordering=-updated_at&page_size=1", 200)
                .await
        ),
        ["Checkout is slow"]
    );

    // Its history: every change, oldest first, with who made it.
    hub.post_as(
        &c.a1,
        &format!("/api/tickets/{slow}/assign/"),
        json!({"developer_ids": [c.d1.id.0]}),
        200,
    )
    .await;
    let history = hub
        .get_as(&c.c2, &format!("/api/tickets/{slow}/history/"), 200)
        .await;
    let steps: Vec<(String, String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
                e["actor_name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let name = |u: &User| u.name().to_owned();
    assert_eq!(
        steps,
        [
            ("ticket_created".into(), "NEW".into(), name(&c.c1)),
            ("ticket_opened".into(), "OPEN".into(), name(&c.a1)),
            ("ticket_assigned".into(), "ASSIGNED".into(), name(&c.a1)),
        ]
    );
    assert_eq!(history[2]["newly_assigned"], json!([c.d1.id.0]));
    assert_eq!(history[2]["action"], "assign");
    // Hidden from those who may not see the ticket, like the ticket itself.
    hub.get_as(&outsider, &format!("/api/tickets/{slow}/history/"), 404)
        .await;
    hub.get_as(&c.c2, "/api/tickets/999999/history/", 404).await;
}
