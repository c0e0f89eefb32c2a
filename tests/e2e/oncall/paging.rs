use super::*;

/// `HH:MM` in UTC this long from now: a daily layer handing over then keeps its first user on
/// call from its start until then.
fn handoff_in(hours: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(hours))
        .format("%H:%M")
        .to_string()
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A schedule `primary` (UTC) whose layer puts `first` on call now, for about twelve hours,
/// and `second` after them.
pub(super) async fn primary(hub: &TestHub, admin: &User, first: &User, second: &User) {
    let start = rfc3339(chrono::Utc::now() - chrono::Duration::minutes(5));
    hub.post_as(
        admin,
        SCHEDULES,
        json!({"name": "primary", "time_zone": "UTC", "layers": [{
            "users": [first.id.0, second.id.0], "rotation": "daily",
            "handoff": handoff_in(12), "start": start}]}),
        201,
    )
    .await;
}

/// What `user`'s inbox holds, newest first.
async fn inbox(hub: &TestHub, user: &User) -> Vec<Value> {
    hub.get_as(user, "/api/notifications/", 200).await["results"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The send API pages whoever is on call as the send commits (an override while it lasts;
/// `:next` for the person after them), says who and why in `data.oncall` and the timeline,
/// resolves a scheduled send as it fires, and refuses a schedule that does not exist or that
/// names nobody.
pub(super) async fn a_send_to_a_schedule_pages_whoever_is_on_call_as_it_commits(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| c.escalation_poll_ms = 100).await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let bob = hub.user("bob", Role::Developer).await;
    primary(&hub, &admin, &ann, &bob).await;
    let mut ann_tab = hub.connect(&ann).await;
    let mut bob_tab = hub.connect(&bob).await;
    let page = |to: &str, title: &str| json!({"oncall": to, "notification_type": "page", "title": title, "message": "db down"});

    let sent = hub.post_as(&admin, SEND, page("primary", "p1"), 201).await;
    assert_eq!(sent["count"], 1, "{sent}");
    let got = ann_tab.next_of("notification").await;
    assert_eq!(got["title"], "p1");
    let why = &got["data"]["oncall"];
    assert_eq!(why["schedule"], "primary", "{got}");
    assert_eq!(why["username"], "ann");
    assert_eq!(why["user_id"], ann.id.0);
    assert_eq!(
        (why["source"].clone(), why["source_id"].clone()),
        (json!("layer"), json!(1))
    );
    assert_eq!(why["next"], false);
    assert!(
        why["explanation"]
            .as_str()
            .unwrap()
            .starts_with("ann is on call for primary (layer 1) until "),
        "{why}"
    );
    // The timeline says it too.
    let resolved = timeline_events(&hub, &admin, &got["id"], "oncall_resolved").await;
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0]["username"], "ann");

    // The person after them.
    hub.post_as(&admin, SEND, page("primary:next", "p2"), 201)
        .await;
    let got = bob_tab.next_of("notification").await;
    assert_eq!(got["title"], "p2");
    assert_eq!(got["data"]["oncall"]["next"], true);
    assert!(
        got["data"]["oncall"]["explanation"]
            .as_str()
            .unwrap()
            .starts_with("bob is next on call for primary (layer 1, from "),
        "{got}"
    );

    // An override wins while it lasts.
    let now = chrono::Utc::now();
    let cover = hub
        .post_as(
            &admin,
            &format!("{SCHEDULES}primary/overrides/"),
            json!({"user_id": bob.id.0, "from": rfc3339(now - chrono::Duration::minutes(1)),
                   "to": rfc3339(now + chrono::Duration::hours(1))}),
            201,
        )
        .await;
    hub.post_as(&admin, SEND, page("primary", "p3"), 201).await;
    let got = bob_tab.next_of("notification").await;
    assert_eq!(got["title"], "p3");
    assert_eq!(got["data"]["oncall"]["source"], "override");
    assert_eq!(got["data"]["oncall"]["source_id"], cover["id"]);

    // A scheduled send goes to whoever is on call as it fires: the override is gone by then.
    let delay = format!("{}ms", crate::harness::scaled_ms(3000));
    let mut later = page("primary", "p4");
    later["delay"] = delay.into();
    let stored = hub.post_as(&admin, SEND, later, 202).await;
    assert_eq!(stored["oncall"], "primary", "{stored}");
    assert_eq!(stored["user_ids"], Value::Null);
    let (status, _) = hub
        .call(
            Method::DELETE,
            &format!("{SCHEDULES}primary/overrides/{}/", cover["id"]),
            Some(&hub.token(&admin)),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let got = ann_tab.next_of("notification").await;
    assert_eq!(got["title"], "p4");
    assert_eq!(got["data"]["oncall"]["username"], "ann");
    assert!(got["data"]["scheduled_send"].is_object(), "{got}");
    // Each page reached one person only.
    let titles = |list: Vec<Value>| -> Vec<String> {
        list.iter()
            .map(|n| n["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(titles(inbox(&hub, &ann).await), ["p4", "p1"]);
    assert_eq!(titles(inbox(&hub, &bob).await), ["p3", "p2"]);

    // Refused: no such schedule (now or later), a schedule that names nobody yet, a name that
    // is none, and two kinds of recipients at once.
    let start = rfc3339(chrono::Utc::now() + chrono::Duration::days(3));
    hub.post_as(
        &admin,
        SCHEDULES,
        json!({"name": "later", "time_zone": "UTC", "layers": [{
            "users": [ann.id.0], "rotation": "weekly", "handoff": "09:00", "start": start}]}),
        201,
    )
    .await;
    let mut scheduled_nowhere = page("nope", "x");
    scheduled_nowhere["delay"] = "1h".into();
    for (body, says) in [
        (page("nope", "x"), "no on-call schedule is named `nope`"),
        (scheduled_nowhere, "no on-call schedule is named `nope`"),
        (page("later", "x"), "nobody is on call for `later`"),
        (page("Primary Team", "x"), "is not a schedule's name"),
        (
            json!({"oncall": "primary", "user_ids": [ann.id.0], "title": "x", "message": "y"}),
            "Give exactly one of",
        ),
    ] {
        let (status, answer) = hub.post(SEND, Some(&hub.token(&admin)), body).await;
        assert_eq!(status, 400, "{answer}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{detail}");
    }
    assert_eq!(inbox(&hub, &ann).await.len(), 2);
}

/// An escalation step tells whoever a schedule names as it fires: the page goes to the person
/// on call, and the step to the next one, with the reason in the step's detail.
pub(super) async fn an_unread_page_escalates_to_the_next_person_on_call(backend: Backend) {
    let routing = r#"
[[escalation]]
name = "pages"
events = ["page"]
steps = [{ after = "500ms", unless = "read", also = ["oncall:primary:next"] }]
"#;
    let hub = TestHub::start_routed(&backend, routing, |_| {}).await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let bob = hub.user("bob", Role::Developer).await;
    primary(&hub, &admin, &ann, &bob).await;
    let mut bob_tab = hub.connect(&bob).await;
    hub.post_as(
        &admin,
        SEND,
        json!({"oncall": "primary", "notification_type": "page", "title": "db down", "message": "now"}),
        201,
    )
    .await;
    let escalated = bob_tab.next_of("notification").await;
    assert_eq!(
        escalated["notification_type"], "ticket_escalated",
        "{escalated}"
    );
    assert_eq!(escalated["title"], "Escalated: db down");
    let steps = hub
        .get_as(&admin, "/api/admin/escalations?status=all", 200)
        .await;
    let step = &steps["results"][0];
    assert_eq!(step["status"], "FIRED", "{steps}");
    assert_eq!(step["also"], json!(["oncall:primary:next"]), "{steps}");
    let scheduled = timeline_events(
        &hub,
        &admin,
        &step["notification_id"],
        "escalation_scheduled",
    )
    .await;
    assert_eq!(
        scheduled[0]["also"],
        json!(["oncall:primary:next"]),
        "{scheduled:?}"
    );
    let detail = step["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("bob is next on call for primary (layer 1, from ")
            && detail.ends_with("told bob"),
        "{detail}"
    );
    // Ann, the page's recipient, got the page only.
    let ann_inbox = inbox(&hub, &ann).await;
    assert_eq!(ann_inbox.len(), 1);
    assert_eq!(ann_inbox[0]["notification_type"], "page");
}
