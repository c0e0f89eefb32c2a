//! On-call schedules end to end: made by admins, who is on call at any moment and over a
//! window (handoffs at their local time across daylight-saving changes), overrides, and who
//! may see a project's schedule.

use reqwest::Method;
use serde_json::{json, Value};
use tickethub_actors::domain::Role;

use crate::harness::{Backend, TestHub, SEND};
use tickethub_actors::domain::User;

mod paging;
use paging::*;
mod email_replies;
mod holds;
mod replies;
mod voice;
use email_replies::*;
use holds::*;
use replies::*;
use voice::*;

const SCHEDULES: &str = "/api/oncall/schedules/";

/// The events of kind `event` on a notification's timeline, as `admin` reads it.
pub(crate) async fn timeline_events(
    hub: &TestHub,
    admin: &User,
    id: &Value,
    event: &str,
) -> Vec<Value> {
    let timeline = hub
        .get_as(admin, &format!("/api/notifications/{id}/timeline/"), 200)
        .await;
    timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == event)
        .cloned()
        .collect()
}

/// `GET …/primary/now/?at=<at>`: who, and until when.
async fn on_call_at(hub: &TestHub, token: &str, at: &str) -> (Value, Value) {
    let (status, body) = hub
        .get(&format!("{SCHEDULES}primary/now/?at={at}"), Some(token))
        .await;
    assert_eq!(status, 200, "{body}");
    (body["username"].clone(), body["until"].clone())
}

/// A daily rotation handing over at 09:00 in Berlin: the handoff stays at 09:00 local across
/// the spring change (08:00 UTC before, 07:00 after; that day's shift lasts 23 hours), an
/// override wins while it lasts, and what was asked for comes back as it was given.
async fn a_daily_rotation_hands_over_at_nine_local_across_a_daylight_saving_change(
    backend: Backend,
) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let [ann, bob, cat, dan] = [
        hub.user("ann", Role::Developer).await,
        hub.user("bob", Role::Developer).await,
        hub.user("cat", Role::Developer).await,
        hub.user("dan", Role::Developer).await,
    ];
    let made = hub
        .post_as(
            &admin,
            SCHEDULES,
            json!({"name": "primary", "time_zone": "Europe/Berlin", "layers": [{
                "users": [ann.id.0, bob.id.0, cat.id.0], "rotation": "daily",
                "handoff": "09:00", "start": "2026-03-27T08:00:00Z"}]}),
            201,
        )
        .await;
    assert_eq!(made["name"], "primary");
    assert_eq!(made["project"], Value::Null);
    assert_eq!(
        made["layers"],
        json!([{"users": [ann.id.0, bob.id.0, cat.id.0], "rotation": "daily",
                "handoff": "09:00", "start": "2026-03-27T08:00:00Z"}])
    );
    let token = hub.token(&dan);
    assert_eq!(
        on_call_at(&hub, &token, "2026-03-27T07:59:00Z").await,
        (Value::Null, Value::Null),
        "before the start, nobody"
    );
    assert_eq!(
        on_call_at(&hub, &token, "2026-03-28T12:00:00Z").await,
        (json!("bob"), json!("2026-03-29T07:00:00Z"))
    );
    assert_eq!(
        on_call_at(&hub, &token, "2026-03-29T06:59:00Z").await.0,
        "bob"
    );
    assert_eq!(
        on_call_at(&hub, &token, "2026-03-29T07:00:00Z").await,
        (json!("cat"), json!("2026-03-30T07:00:00Z"))
    );
    let (status, body) = hub
        .get(
            &format!(
                "{SCHEDULES}primary/shifts/?from=2026-03-27T08:00:00Z&to=2026-03-31T07:00:00Z"
            ),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let shifts: Vec<(String, String, String)> = body["shifts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap().to_owned();
            (text("username"), text("from"), text("to"))
        })
        .collect();
    let expected = [
        ("ann", "2026-03-27T08:00:00Z", "2026-03-28T08:00:00Z"),
        ("bob", "2026-03-28T08:00:00Z", "2026-03-29T07:00:00Z"),
        ("cat", "2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z"),
        ("ann", "2026-03-30T07:00:00Z", "2026-03-31T07:00:00Z"),
    ]
    .map(|(u, f, t)| (u.to_owned(), f.to_owned(), t.to_owned()));
    assert_eq!(shifts, expected);
    assert_eq!(body["time_zone"], "Europe/Berlin");

    // Dan covers two hours of Bob's shift.
    let over = hub
        .post_as(
            &admin,
            &format!("{SCHEDULES}primary/overrides/"),
            json!({"user_id": dan.id.0, "from": "2026-03-28T12:00:00Z", "to": "2026-03-28T14:00:00Z"}),
            201,
        )
        .await;
    let (status, now) = hub
        .get(
            &format!("{SCHEDULES}primary/now/?at=2026-03-28T13:00:00Z"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            &now["username"],
            &now["until"],
            &now["source"],
            &now["source_id"]
        ),
        (
            &json!("dan"),
            &json!("2026-03-28T14:00:00Z"),
            &json!("override"),
            &over["id"]
        )
    );
    assert_eq!(
        on_call_at(&hub, &token, "2026-03-28T14:00:00Z").await.0,
        "bob"
    );
    let (status, _) = hub
        .call(
            Method::DELETE,
            &format!("{SCHEDULES}primary/overrides/{}/", over["id"]),
            Some(&hub.token(&admin)),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        on_call_at(&hub, &token, "2026-03-28T13:00:00Z").await.0,
        "bob"
    );
}

/// Bad input gets a clear 400 naming the field, a taken name 409, a non-admin 403; a
/// project's schedule is seen by its members and admins only (404 to anyone else).
async fn schedules_refuse_bad_input_and_hide_a_project_s_schedule_from_non_members(
    backend: Backend,
) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let out = hub.user("out", Role::Developer).await;
    let layer = |users: Vec<i64>, rotation: &str, handoff: &str, start: &str| json!({"users": users, "rotation": rotation, "handoff": handoff, "start": start});
    let good = layer(vec![ann.id.0], "weekly", "10:00", "2026-01-05T10:00:00Z");
    let body = |name: &str, tz: &str, layers: Value| json!({"name": name, "time_zone": tz, "layers": layers});
    let refused = [
        (body("Bad Name", "UTC", json!([good])), "name"),
        (body("ok", "Mars/Olympus", json!([good])), "time_zone"),
        (body("ok", "UTC", json!([])), "layers"),
        (
            body(
                "ok",
                "UTC",
                json!([layer(vec![ann.id.0], "5h", "10:00", "2026-01-05T10:00:00Z")]),
            ),
            "layers[0].rotation",
        ),
        (
            body(
                "ok",
                "UTC",
                json!([layer(
                    vec![ann.id.0],
                    "daily",
                    "25:00",
                    "2026-01-05T10:00:00Z"
                )]),
            ),
            "layers[0].handoff",
        ),
        (
            body(
                "ok",
                "UTC",
                json!([layer(vec![ann.id.0], "daily", "10:00", "yesterday")]),
            ),
            "layers[0].start",
        ),
        (
            body(
                "ok",
                "UTC",
                json!([layer(
                    vec![999_999],
                    "daily",
                    "10:00",
                    "2026-01-05T10:00:00Z"
                )]),
            ),
            "layers[0].users",
        ),
        (
            json!({"name": "ok", "time_zone": "UTC", "layers": [good], "project": 999_999}),
            "project",
        ),
    ];
    for (bad, field) in refused {
        let (status, answer) = hub
            .post(SCHEDULES, Some(&hub.token(&admin)), bad.clone())
            .await;
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(answer.to_string().contains(field), "{bad}: {answer}");
    }
    let (status, _) = hub
        .post(
            SCHEDULES,
            Some(&hub.token(&ann)),
            body("mine", "UTC", json!([good])),
        )
        .await;
    assert_eq!(status, 403);

    let project = hub.project("OPS", &[&ann]).await;
    let scoped =
        json!({"name": "ops", "time_zone": "UTC", "layers": [good], "project": project.id.0});
    hub.post_as(&admin, SCHEDULES, scoped.clone(), 201).await;
    let (status, _) = hub.post(SCHEDULES, Some(&hub.token(&admin)), scoped).await;
    assert_eq!(status, 409);
    hub.get_as(&ann, &format!("{SCHEDULES}ops/"), 200).await;
    let now = hub
        .get_as(
            &ann,
            &format!("{SCHEDULES}ops/now/?at=2026-01-06T00:00:00Z"),
            200,
        )
        .await;
    assert_eq!(now["username"], "ann");
    for path in ["ops/", "ops/now/", "ops/shifts/", "ops/overrides/"] {
        hub.get_as(&out, &format!("{SCHEDULES}{path}"), 404).await;
    }
    let listed = hub.get_as(&out, SCHEDULES, 200).await;
    assert_eq!(listed, json!([]));
    assert_eq!(
        hub.get_as(&admin, SCHEDULES, 200)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let token = hub.token(&ann);
    for (query, field) in [
        ("now/?at=soon", "at"),
        (
            "shifts/?from=2026-01-01T00:00:00Z&to=2026-06-01T00:00:00Z",
            "92 days",
        ),
        (
            "shifts/?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "after from",
        ),
    ] {
        let (status, answer) = hub
            .get(&format!("{SCHEDULES}ops/{query}"), Some(&token))
            .await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert!(answer.to_string().contains(field), "{query}: {answer}");
    }
    let overrides = format!("{SCHEDULES}ops/overrides/");
    for bad in [
        json!({"user_id": 999_999, "from": "2026-01-06T00:00:00Z", "to": "2026-01-07T00:00:00Z"}),
        json!({"user_id": ann.id.0, "from": "2026-01-07T00:00:00Z", "to": "2026-01-06T00:00:00Z"}),
    ] {
        let (status, answer) = hub.post(&overrides, Some(&hub.token(&admin)), bad).await;
        assert_eq!(status, 400, "{answer}");
    }
    let (status, _) = hub
        .call(
            Method::DELETE,
            &format!("{SCHEDULES}ops/"),
            Some(&hub.token(&ann)),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = hub
        .call(
            Method::DELETE,
            &format!("{SCHEDULES}ops/"),
            Some(&hub.token(&admin)),
            None,
        )
        .await;
    assert_eq!(status, 204);
    hub.get_as(&admin, &format!("{SCHEDULES}ops/"), 404).await;
}

crate::trials! {
    both: [
        a_daily_rotation_hands_over_at_nine_local_across_a_daylight_saving_change,
        schedules_refuse_bad_input_and_hide_a_project_s_schedule_from_non_members,
        a_send_to_a_schedule_pages_whoever_is_on_call_as_it_commits,
        an_unread_page_escalates_to_the_next_person_on_call,
        a_page_is_acknowledged_and_its_ticket_resolved_by_sms_replies,
        quiet_hours_and_maintenance_windows_hold_outbound_messages,
        a_pushed_page_is_acknowledged_from_its_button,
        a_page_is_acknowledged_commented_and_resolved_by_email_replies,
        an_escalated_page_calls_and_one_key_acknowledges_it,
        a_voice_number_is_verified_by_a_call_that_reads_the_code,
    ],
    tests: [an_sms_acknowledgement_holds_across_nodes_and_a_kill_9],
    sync: [],
}
