//! Editing: a ticket's fields by its creator (while NEW or OPEN) and admins, recorded with
//! before and after and notified as `ticket_updated`; comments edited and deleted by their
//! authors; a rejection's reason in the history.

use reqwest::Method;
use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use super::{cast, create_ticket};
use crate::harness::{Backend, Crew, TestHub};

/// `PATCH` as `user`; panics unless the status is `expect`.
async fn patch(hub: &TestHub, user: &User, path: &str, body: Value, expect: u16) -> Value {
    let (status, res) = hub
        .call(Method::PATCH, path, Some(&hub.token(user)), Some(body))
        .await;
    assert_eq!(status, expect, "PATCH {path} as {}: {res}", user.username);
    res
}

/// `DELETE` as `user`; answers the status.
async fn delete(hub: &TestHub, user: &User, path: &str) -> u16 {
    hub.call(Method::DELETE, path, Some(&hub.token(user)), None)
        .await
        .0
}

async fn history(hub: &TestHub, user: &User, id: i64) -> Vec<Value> {
    hub.get_as(user, &format!("/api/tickets/{id}/history/"), 200)
        .await
        .as_array()
        .unwrap()
        .clone()
}

async fn updates_of(hub: &TestHub, user: &User) -> Vec<Value> {
    hub.get_as(
        user,
        "/api/notifications/?notification_type=ticket_updated",
        200,
    )
    .await["results"]
        .as_array()
        .unwrap()
        .clone()
}

pub(super) async fn creators_and_admins_edit_tickets_with_history_and_notice(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let outsider = hub.user("c3", Role::Client).await;
    let t = create_ticket(&hub, &c.c1, c.project, "Homepage broken").await;
    let id = t["id"].as_i64().unwrap();
    let path = format!("/api/tickets/{id}/");
    let mut a2 = hub.connect(&c.a2).await;

    let edited = patch(
        &hub,
        &c.c1,
        &path,
        json!({"title": "  Homepage blank on Safari ", "priority": "CRITICAL", "category": "BUG"}),
        200,
    )
    .await;
    assert_eq!(edited["title"], "Homepage blank on Safari");
    assert_eq!(edited["priority"], "CRITICAL");
    assert_eq!(edited["status"], "NEW");
    let n = &a2.notifications(1).await[0];
    assert_eq!(n["notification_type"], "ticket_updated");
    assert_eq!(
        n["message"],
        "c1 display changed WEB-1: the title to \"Homepage blank on Safari\", priority High → Critical"
    );
    assert_eq!(n["ticket"]["title"], "Homepage blank on Safari");
    assert!(
        updates_of(&hub, &c.c1).await.is_empty(),
        "the editor is not told of their own edit"
    );
    let h = history(&hub, &c.c1, id).await;
    let last = h.last().unwrap();
    assert_eq!(last["action"], "edit");
    assert_eq!(last["event"], "ticket_updated");
    assert_eq!(last["actor"], c.c1.id.0);
    assert_eq!(
        last["changes"],
        json!([
            {"field": "title", "before": "Homepage broken", "after": "Homepage blank on Safari"},
            {"field": "priority", "before": "HIGH", "after": "CRITICAL"},
        ]),
        "the category was BUG already"
    );

    // The values it has: nothing recorded, nobody told.
    patch(
        &hub,
        &c.c1,
        &path,
        json!({"title": "Homepage blank on Safari"}),
        200,
    )
    .await;
    a2.roundtrip().await;
    assert_eq!(history(&hub, &c.c1, id).await.len(), h.len());
    assert_eq!(updates_of(&hub, &c.a2).await.len(), 1);

    // Bad input is refused with the field named; nothing changes.
    for (body, words) in [
        (json!({"title": "   "}), "title"),
        (json!({"title": "x".repeat(201)}), "title"),
        (json!({"description": "x".repeat(20_001)}), "description"),
        (json!({"priority": "URGENT"}), "priority"),
        (json!({"category": 7}), "expected a string"),
        (json!({"status": "APPROVED"}), "status"),
    ] {
        let res = patch(&hub, &c.c1, &path, body, 400).await;
        assert!(res.to_string().contains(words), "{words}: {res}");
    }
    let (status, _) = hub
        .call(
            Method::PATCH,
            &path,
            Some(&hub.token(&c.c1)),
            Some(json!("not an object")),
        )
        .await;
    assert_eq!(status, 400);

    // Only the creator and admins; an outsider does not learn the ticket exists.
    patch(&hub, &c.d1, &path, json!({"title": "Mine now"}), 403).await;
    patch(&hub, &c.c2, &path, json!({"title": "Mine now"}), 403).await;
    patch(&hub, &outsider, &path, json!({"title": "Mine now"}), 404).await;
    patch(
        &hub,
        &c.c1,
        "/api/tickets/999999/",
        json!({"title": "x"}),
        404,
    )
    .await;
    assert_eq!(
        hub.get_as(&c.c1, &path, 200).await["title"],
        "Homepage blank on Safari"
    );

    // Once assigned the creator may not; an admin may, and the assignee is told.
    let crew = Crew {
        creator: &c.c1,
        admin: &c.a1,
        devs: &[&c.d1],
    };
    let mut d1 = hub.connect(&c.d1).await;
    let assigned = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({"project": c.project, "title": "Login slow"}),
        )
        .await;
    let id2 = assigned["id"].as_i64().unwrap();
    let path2 = format!("/api/tickets/{id2}/");
    d1.notifications(1).await;
    let refused = patch(
        &hub,
        &c.c1,
        &path2,
        json!({"title": "Login very slow"}),
        409,
    )
    .await;
    assert_eq!(refused["status"], "ASSIGNED");
    let desc = "Takes **10 s** since Monday.";
    let by_admin = patch(&hub, &c.a1, &path2, json!({"description": desc}), 200).await;
    assert_eq!(by_admin["description"], desc);
    assert_eq!(
        by_admin["status"], "ASSIGNED",
        "an edit never moves the status"
    );
    let n = &d1.notifications(1).await[0];
    assert_eq!(n["notification_type"], "ticket_updated");
    assert_eq!(n["message"], "a1 display changed WEB-2: the description");
    assert_eq!(
        updates_of(&hub, &c.c1).await.len(),
        1,
        "the creator is told"
    );

    // A rejection's reason is in the history, not only in the developer's notification.
    let rejected = hub
        .ticket_in(
            "FINISHED",
            &crew,
            json!({"project": c.project, "title": "Export fails"}),
        )
        .await;
    let id3 = rejected["id"].as_i64().unwrap();
    hub.post_as(
        &c.c1,
        &format!("/api/tickets/{id3}/reject/"),
        json!({"reason": "Still fails for CSV files"}),
        200,
    )
    .await;
    let h = history(&hub, &c.a1, id3).await;
    let last = h.last().unwrap();
    assert_eq!(last["action"], "reject");
    assert_eq!(last["reason"], "Still fails for CSV files");
    assert_eq!(last["changes"], json!([]));
    assert!(h[0]["reason"].is_null());
}

pub(super) async fn comments_are_edited_and_deleted_by_their_authors(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let crew = Crew {
        creator: &c.c1,
        admin: &c.a1,
        devs: &[&c.d1],
    };
    let t = hub
        .ticket_in(
            "IN_PROGRESS",
            &crew,
            json!({"project": c.project, "title": "Needs talk"}),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    let other = create_ticket(&hub, &c.c1, c.project, "Another").await["id"]
        .as_i64()
        .unwrap();
    let comments = format!("/api/tickets/{id}/comments/");
    let typo = hub
        .post_as(&c.d1, &comments, json!({"body": "Whcih browser?"}), 201)
        .await;
    assert_eq!(typo["edited_at"], Value::Null);
    assert_eq!(typo["deleted"], false);
    let one = format!("{comments}{}/", typo["id"]);

    let fixed = patch(&hub, &c.d1, &one, json!({"body": " Which browser? "}), 200).await;
    assert_eq!(fixed["body"], "Which browser?");
    assert!(fixed["edited_at"].is_string());
    assert_eq!(fixed["created_at"], typo["created_at"]);
    // Only the author edits; the author or an admin deletes.
    patch(&hub, &c.c1, &one, json!({"body": "Chrome"}), 403).await;
    patch(&hub, &c.a1, &one, json!({"body": "Chrome"}), 403).await;
    assert_eq!(delete(&hub, &c.c1, &one).await, 403);
    patch(&hub, &c.d1, &one, json!({"body": "  "}), 400).await;
    patch(&hub, &c.d1, &one, json!({}), 400).await;
    // The comment of another ticket, or none, is not found.
    let elsewhere = format!("/api/tickets/{other}/comments/{}/", typo["id"]);
    patch(&hub, &c.d1, &elsewhere, json!({"body": "x"}), 404).await;
    patch(
        &hub,
        &c.d1,
        &format!("{comments}999999/"),
        json!({"body": "x"}),
        404,
    )
    .await;
    patch(
        &hub,
        &c.d1,
        &format!("{comments}abc/"),
        json!({"body": "x"}),
        404,
    )
    .await;

    let answer = hub
        .post_as(
            &c.c1,
            &comments,
            json!({"body": "Safari 17, my password is hunter2"}),
            201,
        )
        .await;
    let theirs = format!("{comments}{}/", answer["id"]);
    assert_eq!(delete(&hub, &c.a1, &theirs).await, 204);
    assert_eq!(
        delete(&hub, &c.c1, &theirs).await,
        204,
        "deleting again changes nothing"
    );
    patch(&hub, &c.c1, &theirs, json!({"body": "Safari 17"}), 400).await;
    let detail = hub.get_as(&c.d1, &format!("/api/tickets/{id}/"), 200).await;
    let listed = detail["comments"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "a deleted comment stays as a tombstone");
    assert_eq!(listed[0]["body"], "Which browser?");
    assert_eq!(listed[1]["deleted"], true);
    assert_eq!(listed[1]["body"], "");
    assert!(!detail.to_string().contains("hunter2"));
    let paged = hub.get_as(&c.c1, &comments, 200).await;
    assert_eq!(paged["results"][1]["deleted"], true);

    // Once approved, the comments are closed: no edits, no deletions.
    hub.post_as(
        &c.d1,
        &format!("/api/tickets/{id}/finish_work/"),
        json!({}),
        200,
    )
    .await;
    hub.post_as(
        &c.c1,
        &format!("/api/tickets/{id}/approve/"),
        json!({}),
        200,
    )
    .await;
    let closed = patch(&hub, &c.d1, &one, json!({"body": "Which one?"}), 409).await;
    assert_eq!(closed["status"], "APPROVED");
    assert_eq!(delete(&hub, &c.d1, &one).await, 409);
}

pub(super) async fn an_edit_back_to_a_value_another_node_changed_is_applied(backend: Backend) {
    // Two hubs on one database and no bus between them: the first keeps its ticket actor's
    // copy, which the second's edit makes stale without telling it.
    let a = TestHub::start(&backend).await;
    let c = cast(&a).await;
    let b = a.sibling().await;
    let t = create_ticket(&a, &c.c1, c.project, "Original title").await;
    let path = format!("/api/tickets/{}/", t["id"]);
    patch(&a, &c.c1, &path, json!({"priority": "LOW"}), 200).await;
    patch(&b, &c.c1, &path, json!({"title": "Changed elsewhere"}), 200).await;
    // On the first hub's stale copy the title is as asked already; the database's is not.
    let back = patch(&a, &c.c1, &path, json!({"title": "Original title"}), 200).await;
    assert_eq!(back["title"], "Original title");
    assert_eq!(a.get_as(&c.c1, &path, 200).await["title"], "Original title");
    let h = history(&a, &c.c1, t["id"].as_i64().unwrap()).await;
    let edits: Vec<&Value> = h.iter().filter(|e| e["action"] == "edit").collect();
    assert_eq!(edits.len(), 3, "{h:?}");
    assert_eq!(
        edits[2]["changes"],
        json!([{"field": "title", "before": "Changed elsewhere", "after": "Original title"}])
    );
}
