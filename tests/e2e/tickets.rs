//! Tickets drive notifications: the lifecycle over REST, exactly the right recipients over
//! sockets, permissions and conflicts, and serialized transitions.

use std::collections::BTreeMap;

use futures::future::join_all;
use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::harness::{Backend, Crew, TestHub, Ws};
mod edits;
mod mentions;
mod search;
use edits::*;
use mentions::*;
use search::*;

/// Two admins (one a super admin), two developers, two clients, one project.
pub struct Cast {
    pub a1: User,
    pub a2: User,
    pub d1: User,
    pub d2: User,
    pub c1: User,
    pub c2: User,
    pub project: i64,
}

pub async fn cast(hub: &TestHub) -> Cast {
    let a1 = hub.user_with("a1", Role::Admin, true).await;
    let a2 = hub.user("a2", Role::Admin).await;
    let d1 = hub.user("d1", Role::Developer).await;
    let d2 = hub.user("d2", Role::Developer).await;
    let c1 = hub.user("c1", Role::Client).await;
    let c2 = hub.user("c2", Role::Client).await;
    let project = hub
        .project("WEB", &[&a1, &a2, &d1, &d2, &c1, &c2])
        .await
        .id
        .0;
    Cast {
        a1,
        a2,
        d1,
        d2,
        c1,
        c2,
        project,
    }
}

pub async fn create_ticket(hub: &TestHub, by: &User, project: i64, title: &str) -> Value {
    let crew = crate::harness::Crew {
        creator: by,
        admin: by,
        devs: &[],
    };
    hub.ticket_in("NEW", &crew, json!({"project": project, "title": title}))
        .await
}

/// Every notification of a user, oldest first, from the REST API.
async fn inbox(hub: &TestHub, user: &User) -> Vec<Value> {
    let mut page = hub
        .get_as(user, "/api/notifications/?page_size=100", 200)
        .await;
    let mut list: Vec<Value> = page["results"].as_array().unwrap().clone();
    list.reverse();
    page.take();
    list
}

async fn a_full_lifecycle_reaches_exactly_the_right_people(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let users = [&c.a1, &c.a2, &c.d1, &c.d2, &c.c1, &c.c2];
    let mut sockets: Vec<Ws> = Vec::new();
    for u in users {
        sockets.push(hub.connect(u).await);
    }

    let t = create_ticket(&hub, &c.c1, c.project, "Homepage not loading").await;
    assert_eq!(t["status"], "NEW");
    assert_eq!(t["key"], "WEB-1");
    assert_eq!(t["priority_display"], "High");
    let id = t["id"].as_i64().unwrap();
    let act = |user: &User, action: &str, body: Value| {
        let path = format!("/api/tickets/{id}/{action}/");
        let hub = &hub;
        let user = user.clone();
        async move { hub.post_as(&user, &path, body, 200).await }
    };
    assert_eq!(act(&c.a1, "open_ticket", json!({})).await["status"], "OPEN");
    let assigned = act(&c.a1, "assign", json!({"developer_ids": [c.d1.id.0]})).await;
    assert_eq!(assigned["status"], "ASSIGNED");
    assert_eq!(assigned["assignees"], json!([c.d1.id.0]));
    assert_eq!(
        act(&c.d1, "start_work", json!({})).await["status"],
        "IN_PROGRESS"
    );
    assert_eq!(
        act(&c.d1, "finish_work", json!({})).await["status"],
        "FINISHED"
    );
    let approved = act(&c.c1, "approve", json!({})).await;
    assert_eq!(approved["status"], "APPROVED");
    assert_eq!(approved["version"], 6);

    let expected: BTreeMap<&str, Vec<&str>> = [
        (
            "a1",
            vec!["ticket_created", "work_finished", "ticket_approved"],
        ),
        (
            "a2",
            vec!["ticket_created", "work_finished", "ticket_approved"],
        ),
        ("d1", vec!["ticket_assigned", "ticket_approved"]),
        ("d2", vec![]),
        ("c1", vec!["ticket_opened", "work_started", "work_finished"]),
        ("c2", vec![]),
    ]
    .into_iter()
    .collect();

    for (user, ws) in users.iter().zip(sockets.iter_mut()) {
        let want = &expected[user.username.as_str()];
        // The database is the truth: exactly the expected types, seq 1, 2, 3, …
        let stored = inbox(&hub, user).await;
        let types: Vec<&str> = stored
            .iter()
            .map(|n| n["notification_type"].as_str().unwrap())
            .collect();
        assert_eq!(&types, want, "stored for {}", user.username);
        let seqs: Vec<i64> = stored.iter().map(|n| n["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=want.len() as i64).collect::<Vec<_>>());

        // The socket received the same notifications, in seq order, and nothing else.
        let live = ws.notifications(want.len()).await;
        let live_types: Vec<&str> = live
            .iter()
            .map(|n| n["notification_type"].as_str().unwrap())
            .collect();
        assert_eq!(&live_types, want, "live for {}", user.username);
        let live_seqs: Vec<i64> = live.iter().map(|n| n["seq"].as_i64().unwrap()).collect();
        assert_eq!(live_seqs, seqs);
        ws.roundtrip().await;
        for n in &live {
            assert_notification_shape(n);
            assert_eq!(n["ticket"]["id"], id);
            assert_eq!(n["ticket"]["key"], "WEB-1");
        }
    }

    // The seed's wording and shape, on the first admin's first notification.
    let first = &inbox(&hub, &c.a1).await[0];
    assert_eq!(
        first["message"],
        "New High priority ticket created: Homepage not loading"
    );
    assert_eq!(first["title"], "New Ticket Created");
    assert_eq!(first["ticket"], id);
    assert_eq!(first["ticket_title"], "Homepage not loading");
    assert_eq!(first["recipient"], c.a1.id.0);
    assert_eq!(first["is_read"], false);
}

/// The contract's `notification` frame: every field, with the right types.
pub fn assert_notification_shape(n: &Value) {
    let keys: Vec<&str> = n.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "type",
        "id",
        "seq",
        "notification_type",
        "title",
        "message",
        "ticket",
        "data",
        "action_url",
        "is_read",
        "timestamp",
        "replayed",
    ] {
        assert!(keys.contains(&k), "missing {k} in {n}");
    }
    assert_eq!(n["type"], "notification");
    assert!(n["id"].is_i64() && n["seq"].is_i64());
    assert!(n["data"].is_object());
    assert_eq!(n["replayed"], false);
    assert!(n["timestamp"].as_str().unwrap().ends_with('Z'));
    let t = &n["ticket"];
    if !t.is_null() {
        for k in [
            "id",
            "key",
            "title",
            "priority",
            "priority_display",
            "category",
            "status",
            "created_by",
            "project_name",
            "created_at",
        ] {
            assert!(t.get(k).is_some(), "missing ticket.{k} in {n}");
        }
        assert!(t["created_by"].is_string());
    }
}

async fn wrong_people_get_403_and_wrong_states_409(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let outsider = hub.user("outsider", Role::Client).await;
    hub.project("OPS", &[&outsider]).await;

    // Only clients create, and only in their projects (another project answers as one that
    // does not exist: 400, so that ids reveal nothing); bad fields are 400.
    let body = json!({"project": c.project, "title": "x", "priority": "HIGH", "category": "BUG"});
    hub.post_as(&c.a1, "/api/tickets/", body.clone(), 403).await;
    hub.post_as(&c.d1, "/api/tickets/", body.clone(), 403).await;
    hub.post_as(&outsider, "/api/tickets/", body.clone(), 400)
        .await;
    for bad in [
        json!({"project": c.project, "title": "x", "priority": "URGENT"}),
        json!({"project": c.project, "title": "x", "category": "CHORE"}),
        json!({"project": c.project, "title": "   "}),
        json!({"project": 99_999, "title": "x"}),
        json!({"project": "one", "title": "x"}),
        json!({"title": "x"}),
    ] {
        let res = hub.post_as(&c.c1, "/api/tickets/", bad.clone(), 400).await;
        assert!(res["detail"].is_string(), "{bad}: {res}");
    }

    let t = create_ticket(&hub, &c.c1, c.project, "Broken").await;
    let id = t["id"].as_i64().unwrap();
    let path = |a: &str| format!("/api/tickets/{id}/{a}/");
    // Wrong role or person: 403, whatever the status.
    hub.post_as(&c.d1, &path("open_ticket"), json!({}), 403)
        .await;
    hub.post_as(&c.c1, &path("open_ticket"), json!({}), 403)
        .await;
    hub.post_as(
        &c.c1,
        &path("assign"),
        json!({"developer_ids": [c.d1.id.0]}),
        403,
    )
    .await;
    hub.post_as(&c.d1, &path("start_work"), json!({}), 403)
        .await;
    hub.post_as(&c.c2, &path("approve"), json!({}), 403).await;
    // Not applicable now: 409 with the current status.
    let res = hub
        .post_as(
            &c.a1,
            &path("assign"),
            json!({"developer_ids": [c.d1.id.0]}),
            409,
        )
        .await;
    assert_eq!(res["status"], "NEW");
    hub.post_as(&c.a1, &path("open_ticket"), json!({}), 200)
        .await;
    let res = hub
        .post_as(&c.a1, &path("open_ticket"), json!({}), 409)
        .await;
    assert_eq!(res["status"], "OPEN");
    assert!(res["detail"].as_str().unwrap().contains("OPEN"));
    hub.post_as(&c.c1, &path("approve"), json!({}), 409).await;
    // Assigning needs developers.
    hub.post_as(
        &c.a1,
        &path("assign"),
        json!({"developer_ids": [c.c2.id.0]}),
        400,
    )
    .await;
    hub.post_as(&c.a1, &path("assign"), json!({"developer_ids": []}), 400)
        .await;
    hub.post_as(&c.a1, &path("assign"), json!({"developer_ids": "d1"}), 400)
        .await;
    hub.post_as(
        &c.a1,
        &path("assign"),
        json!({"developer_ids": [c.d1.id.0]}),
        200,
    )
    .await;
    // An unassigned developer cannot start; the assigned one can.
    hub.post_as(&c.d2, &path("start_work"), json!({}), 403)
        .await;
    hub.post_as(&c.d1, &path("finish_work"), json!({}), 409)
        .await;
    hub.post_as(&c.d1, &path("start_work"), json!({}), 200)
        .await;
    hub.post_as(&c.d1, &path("finish_work"), json!({}), 200)
        .await;
    hub.post_as(&c.c1, &path("reject"), json!({"reason": 5}), 400)
        .await;
    hub.post_as(
        &c.c1,
        &path("reject"),
        json!({"reason": "Still broken on mobile"}),
        200,
    )
    .await;
    // Rejected work goes back to the developer.
    hub.post_as(&c.d1, &path("start_work"), json!({}), 200)
        .await;
    hub.post_as(&c.d1, &path("finish_work"), json!({}), 200)
        .await;
    hub.post_as(&c.c1, &path("approve"), json!({}), 200).await;
    // Approved is final, comments included.
    hub.post_as(
        &c.c1,
        &format!("/api/tickets/{id}/comments/"),
        json!({"body": "thanks"}),
        409,
    )
    .await;
    hub.post_as(
        &c.a1,
        &path("assign"),
        json!({"developer_ids": [c.d2.id.0]}),
        409,
    )
    .await;

    // Unknown actions and tickets are 404, and so are tickets of other projects.
    hub.post_as(&c.a1, &path("teleport"), json!({}), 404).await;
    hub.post_as(&c.a1, "/api/tickets/999999/open_ticket/", json!({}), 404)
        .await;
    hub.post_as(&c.a1, "/api/tickets/abc/open_ticket/", json!({}), 404)
        .await;
    hub.get_as(&outsider, &format!("/api/tickets/{id}/"), 404)
        .await;
    hub.post_as(&outsider, &path("approve"), json!({}), 404)
        .await;
    // Garbage bodies are 400, never 500.
    let res = hub
        .http
        .post(hub.url(&path("reject")))
        .bearer_auth(hub.token(&c.c1))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // The rejection's reason reached the assignee.
    let d1_inbox = hub
        .get_as(
            &c.d1,
            "/api/notifications/?notification_type=ticket_rejected",
            200,
        )
        .await;
    assert_eq!(d1_inbox["count"], 1);
    assert!(d1_inbox["results"][0]["message"]
        .as_str()
        .unwrap()
        .contains("Still broken on mobile"));
}

async fn conflicting_actions_race_and_exactly_one_wins(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    // A second hub on the same database: two processes racing on one ticket.
    let sibling = hub.sibling().await;
    let c = cast(&hub).await;
    for round in 0..2 {
        let t = create_ticket(&hub, &c.c1, c.project, &format!("Race {round}")).await;
        let id = t["id"].as_i64().unwrap();
        let path = |a: &str| format!("/api/tickets/{id}/{a}/");
        hub.post_as(&c.a1, &path("open_ticket"), json!({}), 200)
            .await;
        hub.post_as(
            &c.a1,
            &path("assign"),
            json!({"developer_ids": [c.d1.id.0]}),
            200,
        )
        .await;
        hub.post_as(&c.d1, &path("start_work"), json!({}), 200)
            .await;
        hub.post_as(&c.d1, &path("finish_work"), json!({}), 200)
            .await;
        let token = hub.token(&c.c1);
        let requests = (0..8).map(|i| {
            let target = if round == 1 && i % 2 == 1 {
                &sibling
            } else {
                &hub
            };
            let action = if i % 2 == 0 { "approve" } else { "reject" };
            let url = target.url(&path(action));
            let client = target.http.clone();
            let token = token.clone();
            async move {
                let res = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"reason": "no"}))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                (status, res.json::<Value>().await.unwrap())
            }
        });
        let results = join_all(requests).await;
        let ok: Vec<_> = results.iter().filter(|(s, _)| *s == 200).collect();
        let conflicts = results.iter().filter(|(s, _)| *s == 409).count();
        assert_eq!(ok.len(), 1, "round {round}: {results:?}");
        assert_eq!(conflicts, 7, "round {round}: {results:?}");
        let final_status = ok[0].1["status"].as_str().unwrap().to_owned();
        let stored = hub.get_as(&c.a1, &format!("/api/tickets/{id}/"), 200).await;
        assert_eq!(stored["status"], final_status);
        assert_eq!(stored["version"], 6);
        // Exactly one approval or rejection notice per admin.
        let admin_inbox = hub
            .get_as(&c.a2, &format!("/api/notifications/?ticket={id}"), 200)
            .await;
        let decisions = admin_inbox["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| {
                n["notification_type"] == "ticket_approved"
                    || n["notification_type"] == "ticket_rejected"
            })
            .count();
        assert_eq!(decisions, 1);
    }
}

async fn comments_reach_creator_and_assignees_but_not_the_author(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let crew = Crew {
        creator: &c.c1,
        admin: &c.a1,
        devs: &[&c.d1, &c.d2],
    };
    let t = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({"project": c.project, "title": "Needs talk"}),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    let mut c1 = hub.connect(&c.c1).await;
    let mut d2 = hub.connect(&c.d2).await;
    let mut d1 = hub.connect(&c.d1).await;
    let comment = hub
        .post_as(
            &c.d1,
            &format!("/api/tickets/{id}/comments/"),
            json!({"body": "Which browser?"}),
            201,
        )
        .await;
    assert_eq!(comment["body"], "Which browser?");
    assert_eq!(comment["author"], c.d1.id.0);
    for ws in [&mut c1, &mut d2] {
        let n = &ws.notifications(1).await[0];
        assert_eq!(n["notification_type"], "comment_added");
        assert_eq!(
            n["message"],
            "d1 display commented on WEB-1: Which browser?"
        );
    }
    d1.roundtrip().await;
    let d1_comments = hub
        .get_as(
            &c.d1,
            "/api/notifications/?notification_type=comment_added",
            200,
        )
        .await;
    assert_eq!(d1_comments["count"], 0);
    // Admins may comment too; non-participants may not.
    hub.post_as(
        &c.a2,
        &format!("/api/tickets/{id}/comments/"),
        json!({"body": "Chrome"}),
        201,
    )
    .await;
    hub.post_as(
        &c.c2,
        &format!("/api/tickets/{id}/comments/"),
        json!({"body": "me too"}),
        403,
    )
    .await;
    hub.post_as(
        &c.c1,
        &format!("/api/tickets/{id}/comments/"),
        json!({}),
        400,
    )
    .await;
    let detail = hub.get_as(&c.c1, &format!("/api/tickets/{id}/"), 200).await;
    assert_eq!(detail["comments"].as_array().unwrap().len(), 2);
    let list = hub
        .get_as(&c.c1, &format!("/api/tickets/{id}/comments/"), 200)
        .await;
    assert_eq!(list["count"], 2);
    assert_eq!(list["results"][1]["body"], "Chrome");
}

async fn ticket_lists_filter_paginate_and_hide_other_projects(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let outsider = hub.user("outsider", Role::Client).await;
    let ops = hub.project("OPS", &[&outsider]).await.id.0;
    for i in 0..23 {
        create_ticket(&hub, &c.c1, c.project, &format!("T{i}")).await;
    }
    create_ticket(&hub, &outsider, ops, "Hidden").await;
    let first = hub.get_as(&c.c2, "/api/tickets/", 200).await;
    assert_eq!(first["count"], 23);
    assert_eq!(first["results"].as_array().unwrap().len(), 20);
    assert_eq!(first["results"][0]["title"], "T22");
    assert!(first["previous"].is_null());
    let next = first["next"].as_str().unwrap();
    assert!(next.ends_with("/api/tickets/?page=2"), "{next}");
    let second = hub.get_as(&c.c2, "/api/tickets/?page=2", 200).await;
    assert_eq!(second["results"].as_array().unwrap().len(), 3);
    assert!(second["next"].is_null());
    hub.get_as(&c.c2, "/api/tickets/?page=3", 404).await;
    let all = hub.get_as(&c.c2, "/api/tickets/?page_size=100", 200).await;
    assert_eq!(all["results"].as_array().unwrap().len(), 23);
    hub.get_as(&c.c2, "/api/tickets/?status=LOST", 400).await;
    hub.get_as(&c.c2, "/api/tickets/?page=x", 404).await;
    hub.get_as(&c.c2, "/api/tickets/?page=0", 404).await;
    // An empty page is not a number either (the document says a page is an integer).
    hub.get_as(&c.c2, "/api/tickets/?page=", 404).await;
    // Admins see every project.
    assert_eq!(hub.get_as(&c.a1, "/api/tickets/", 200).await["count"], 24);
    assert_eq!(
        hub.get_as(&c.a1, &format!("/api/tickets/?project={ops}"), 200)
            .await["count"],
        1
    );
    // Status and assignment filters.
    let id = hub.get_as(&c.c1, "/api/tickets/?page_size=1", 200).await["results"][0]["id"]
        .as_i64()
        .unwrap();
    hub.post_as(
        &c.a1,
        &format!("/api/tickets/{id}/open_ticket/"),
        json!({}),
        200,
    )
    .await;
    hub.post_as(
        &c.a1,
        &format!("/api/tickets/{id}/assign/"),
        json!({"developer_ids": [c.d2.id.0]}),
        200,
    )
    .await;
    assert_eq!(
        hub.get_as(&c.c1, "/api/tickets/?status=NEW", 200).await["count"],
        22
    );
    assert_eq!(
        hub.get_as(&c.c1, "/api/tickets/?status=ASSIGNED", 200)
            .await["count"],
        1
    );
    let mine = hub
        .get_as(&c.d2, "/api/tickets/?assigned_to_me=true", 200)
        .await;
    assert_eq!(mine["count"], 1);
    assert_eq!(mine["results"][0]["id"], id);
    assert_eq!(
        hub.get_as(&c.d1, "/api/tickets/?assigned_to_me=true", 200)
            .await["count"],
        0
    );
    // A developer assigned to a ticket of a project they are not a member of may act on it,
    // so they see it: in the list as on its own page.
    let hidden = hub
        .get_as(&c.a1, &format!("/api/tickets/?project={ops}"), 200)
        .await["results"][0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(hub.get_as(&c.d1, "/api/tickets/", 200).await["count"], 23);
    hub.get_as(&c.d1, &format!("/api/tickets/{hidden}/"), 404)
        .await;
    hub.post_as(
        &c.a1,
        &format!("/api/tickets/{hidden}/open_ticket/"),
        json!({}),
        200,
    )
    .await;
    hub.post_as(
        &c.a1,
        &format!("/api/tickets/{hidden}/assign/"),
        json!({"developer_ids": [c.d1.id.0]}),
        200,
    )
    .await;
    hub.get_as(&c.d1, &format!("/api/tickets/{hidden}/"), 200)
        .await;
    let listed = hub.get_as(&c.d1, "/api/tickets/?page_size=100", 200).await;
    assert_eq!(listed["count"], 24);
    assert!(listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == hidden));
    let theirs = hub
        .get_as(&c.d1, "/api/tickets/?assigned_to_me=true", 200)
        .await;
    assert_eq!(theirs["count"], 1);
    assert_eq!(theirs["results"][0]["id"], hidden);
    hub.post_as(
        &c.d1,
        &format!("/api/tickets/{hidden}/start_work/"),
        json!({}),
        200,
    )
    .await;
    // Its project's other members still do not leak to them.
    assert_eq!(
        hub.get_as(&c.d1, &format!("/api/tickets/?project={ops}"), 200)
            .await["count"],
        1
    );
    // Projects: members see theirs, admins all and create.
    let projects = hub.get_as(&outsider, "/api/projects/", 200).await;
    assert_eq!(projects["count"], 1);
    assert_eq!(projects["results"][0]["key"], "OPS");
    assert_eq!(hub.get_as(&c.a2, "/api/projects/", 200).await["count"], 2);
    let created = hub
        .post_as(
            &c.a1,
            "/api/projects/",
            json!({"key": "API", "name": "Public API", "member_ids": [c.d1.id.0]}),
            201,
        )
        .await;
    assert_eq!(created["member_ids"], json!([c.d1.id.0]));
    hub.post_as(
        &c.a1,
        "/api/projects/",
        json!({"key": "API", "name": "Again"}),
        400,
    )
    .await;
    hub.post_as(
        &c.a1,
        "/api/projects/",
        json!({"key": "bad key", "name": "x"}),
        400,
    )
    .await;
    hub.post_as(
        &c.a1,
        "/api/projects/",
        json!({"key": "NEW", "name": "x", "member_ids": [424242]}),
        400,
    )
    .await;
    hub.post_as(
        &c.d1,
        "/api/projects/",
        json!({"key": "DEV", "name": "x"}),
        403,
    )
    .await;
}

async fn preferences_and_addresses_decide_the_outbox(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    // a2 switches email off for ticket_created only.
    let prefs = hub
        .call(
            reqwest::Method::PUT,
            "/api/notifications/preferences/",
            Some(&hub.token(&c.a2)),
            Some(json!({"types": {"ticket_created": {"email": false}}})),
        )
        .await;
    assert_eq!(prefs.0, 200, "{}", prefs.1);
    assert_eq!(prefs.1["types"]["ticket_created"]["email"], false);
    assert_eq!(prefs.1["channels"]["email"], true);
    let bad = hub
        .call(
            reqwest::Method::PUT,
            "/api/notifications/preferences/",
            Some(&hub.token(&c.a2)),
            Some(json!({"channels": {"fax": true}})),
        )
        .await;
    assert_eq!(bad.0, 400);
    create_ticket(&hub, &c.c1, c.project, "Outbox").await;
    let channels = |inbox: Value| async move {
        let id = inbox["results"][0]["id"].as_i64().unwrap();
        let user = inbox["results"][0]["recipient"].as_i64().unwrap();
        (id, user)
    };
    let (n1, _) = channels(hub.get_as(&c.a1, "/api/notifications/", 200).await).await;
    let (n2, _) = channels(hub.get_as(&c.a2, "/api/notifications/", 200).await).await;
    let d1 = hub
        .get_as(&c.a1, &format!("/api/notifications/{n1}/deliveries/"), 200)
        .await;
    let d2 = hub
        .get_as(&c.a2, &format!("/api/notifications/{n2}/deliveries/"), 200)
        .await;
    let names = |d: &Value| {
        d["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["channel"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    // Test users have an email address and no WhatsApp number.
    assert_eq!(names(&d1), ["websocket", "email"]);
    let status = d1["deliveries"][1]["status"].as_str().unwrap();
    assert!(["QUEUED", "SENDING", "SENT"].contains(&status), "{status}");
    assert_eq!(d1["deliveries"][1]["address"], "a1@example.test");
    assert_eq!(names(&d2), ["websocket"]);
    // Another user's notification is 404.
    hub.get_as(&c.a2, &format!("/api/notifications/{n1}/deliveries/"), 404)
        .await;
}

crate::trials! {
    both: [
        ticket_lists_search_by_title_or_key_filter_by_priority_and_sort,
        a_full_lifecycle_reaches_exactly_the_right_people,
        wrong_people_get_403_and_wrong_states_409,
        conflicting_actions_race_and_exactly_one_wins,
        comments_reach_creator_and_assignees_but_not_the_author,
        ticket_lists_filter_paginate_and_hide_other_projects,
        preferences_and_addresses_decide_the_outbox,
        creators_and_admins_edit_tickets_with_history_and_notice,
        comments_are_edited_and_deleted_by_their_authors,
        an_edit_back_to_a_value_another_node_changed_is_applied,
        mentions_reach_the_people_named_who_may_see_the_ticket,
        markdown_is_rendered_to_safe_html,
    ],
    tests: [],
    sync: [],
}
