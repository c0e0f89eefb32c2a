use super::*;
use crate::harness::{eventually_some, Crew};
use crate::sms_fakes::Twilio;

/// `HH:MM` in UTC this far from now.
fn clock_in(minutes: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::minutes(minutes))
        .format("%H:%M")
        .to_string()
}

/// The SMS delivery of a notification of `user`'s, once it is held: its `last_error` says by
/// what, until when.
async fn held_sms(hub: &TestHub, user: &User, id: i64) -> Value {
    eventually_some("the SMS is held", || async {
        let list = hub
            .get_as(user, &format!("/api/notifications/{id}/deliveries/"), 200)
            .await;
        list["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| {
                d["channel"] == "sms"
                    && d["status"] == "QUEUED"
                    && d["last_error"]
                        .as_str()
                        .is_some_and(|e| e.starts_with("held by "))
            })
            .cloned()
    })
    .await
}

/// Quiet hours (set by the person, in their time zone) hold a notification's SMS while they
/// last, and let a page through; turning them off sends what they held. A project's
/// maintenance window holds even a CRITICAL ticket's SMS; deleting it sends what it held.
/// Admins make windows; members see them; others get 404.
pub(super) async fn quiet_hours_and_maintenance_windows_hold_outbound_messages(backend: Backend) {
    let twilio = Twilio::start().await;
    let routing = r#"
[ticket_assigned]
recipients = ["newly_assigned"]
channels = ["websocket", "sms"]
"#;
    let hub = TestHub::start_routed(&backend, routing, |c| {
        twilio.configure(c);
        c.delivery_poll_ms = 50;
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let carol = hub.user("carol", Role::Client).await;
    let dan = hub.user("dan", Role::Developer).await;
    let changes = tickethub_actors::ports::ProfileChanges {
        addresses: vec![(
            tickethub_actors::routing::Channel::Sms,
            Some("+15551230001".into()),
        )],
        ..Default::default()
    };
    crate::delivery::vouch(&hub, &ann, changes).await;

    // Refused: an unknown zone, a time that is none, hours of no length.
    let me = "/api/users/me/";
    let token = hub.token(&ann);
    for (body, says) in [
        (json!({"time_zone": "Mars/Base"}), "time_zone"),
        (
            json!({"quiet_hours": {"start": "25:00", "end": "07:00"}}),
            "quiet_hours.start",
        ),
        (
            json!({"quiet_hours": {"start": "07:00", "end": "07:00"}}),
            "the same time",
        ),
    ] {
        let (status, answer) = hub.call(Method::PATCH, me, Some(&token), Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains(says),
            "{answer}"
        );
    }
    // Quiet now: from an hour ago to an hour from now.
    let hours = json!({"start": clock_in(-60), "end": clock_in(60)});
    let (status, answer) = hub
        .call(
            Method::PATCH,
            me,
            Some(&token),
            Some(json!({"time_zone": "UTC", "quiet_hours": hours})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["time_zone"], "UTC");
    assert_eq!(answer["quiet_hours"], hours);
    assert_eq!(answer["username"], "ann");
    assert_eq!(hub.get_as(&ann, me, 200).await["quiet_hours"], hours);

    let send = |kind: &str, title: &str| {
        json!({"user_id": ann.id.0, "notification_type": kind, "title": title,
               "message": "m", "channels": ["sms"]})
    };
    hub.post_as(&admin, SEND, send("notice", "Lunch is served"), 201)
        .await;
    let notice = hub.get_as(&ann, "/api/notifications/", 200).await["results"][0]["id"]
        .as_i64()
        .unwrap();
    let held = held_sms(&hub, &ann, notice).await;
    assert!(
        held["last_error"]
            .as_str()
            .unwrap()
            .starts_with("held by quiet hours until "),
        "{held}"
    );
    // Operators see it in /metrics.
    let metrics = hub.metrics_text().await;
    assert!(
        metrics.contains("tickethub_outbox_held{reason=\"quiet_hours\"} 1"),
        "{metrics}"
    );
    // A page goes through; the notice still waits.
    hub.post_as(&admin, SEND, send("page", "db down"), 201)
        .await;
    let sent = twilio.wait_for(1).await;
    assert!(sent[0].body().starts_with("db down"), "{:?}", sent[0]);
    assert_eq!(held_sms(&hub, &ann, notice).await["id"], held["id"]);
    // Quiet hours off: the notice goes.
    let (status, answer) = hub
        .call(
            Method::PATCH,
            me,
            Some(&token),
            Some(json!({"quiet_hours": null})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["quiet_hours"], Value::Null);
    assert_eq!(answer["time_zone"], "UTC");
    let sent = twilio.wait_for(2).await;
    assert!(
        sent[1].body().starts_with("Lunch is served"),
        "{:?}",
        sent[1]
    );

    // A maintenance window of the project holds even a CRITICAL ticket's SMS.
    let project = hub.project("OPS", &[&ann, &carol, &admin]).await;
    let windows = format!("/api/projects/{}/maintenance/", project.id.0);
    let now = chrono::Utc::now();
    let span = json!({
        "from": (now - chrono::Duration::minutes(1)).to_rfc3339(),
        "to": (now + chrono::Duration::hours(1)).to_rfc3339(),
    });
    hub.post_as(&carol, &windows, span.clone(), 403).await;
    let (status, answer) = hub
        .post(
            &windows,
            Some(&hub.token(&admin)),
            json!({"from": now.to_rfc3339(), "to": now.to_rfc3339()}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let window = hub.post_as(&admin, &windows, span, 201).await;
    assert_eq!(window["project"], project.id.0);
    assert_eq!(
        hub.get_as(&carol, &windows, 200)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    hub.get_as(&dan, &windows, 404).await;
    let crew = Crew {
        creator: &carol,
        admin: &admin,
        devs: &[&ann],
    };
    hub.ticket_in(
        "ASSIGNED",
        &crew,
        json!({"project": project.id.0, "title": "Checkout is down", "priority": "CRITICAL", "category": "BUG"}),
    )
    .await;
    let assigned = hub.get_as(&ann, "/api/notifications/", 200).await["results"][0].clone();
    assert_eq!(
        assigned["notification_type"], "ticket_assigned",
        "{assigned}"
    );
    let held = held_sms(&hub, &ann, assigned["id"].as_i64().unwrap()).await;
    assert!(
        held["last_error"]
            .as_str()
            .unwrap()
            .starts_with("held by maintenance until "),
        "{held}"
    );
    assert_eq!(twilio.sent().len(), 2);
    // The window deleted: it goes.
    let (status, _) = hub
        .call(
            Method::DELETE,
            &format!("{windows}{}/", window["id"]),
            Some(&hub.token(&admin)),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let sent = twilio.wait_for(3).await;
    assert_eq!(sent[2].to(), "+15551230001");
    assert!(hub
        .get_as(&carol, &windows, 200)
        .await
        .as_array()
        .unwrap()
        .is_empty());
}
