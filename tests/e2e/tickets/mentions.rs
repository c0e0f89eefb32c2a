//! Markdown and @mentions: texts rendered to safe HTML, and the people a comment or a
//! description names told as `ticket_mentioned`, if they may see the ticket, once, by their
//! preferences.

use reqwest::Method;
use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use super::{cast, create_ticket};
use crate::harness::{Backend, Crew, TestHub};

/// The user's `ticket_mentioned` notifications, newest first.
async fn mentions_of(hub: &TestHub, user: &User) -> Vec<Value> {
    hub.get_as(
        user,
        "/api/notifications/?notification_type=ticket_mentioned",
        200,
    )
    .await["results"]
        .as_array()
        .unwrap()
        .clone()
}

/// The channels of a notification's deliveries.
async fn channels(hub: &TestHub, user: &User, id: &Value) -> Vec<String> {
    hub.get_as(user, &format!("/api/notifications/{id}/deliveries/"), 200)
        .await["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["channel"].as_str().unwrap().to_owned())
        .collect()
}

pub(super) async fn mentions_reach_the_people_named_who_may_see_the_ticket(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let outsider = hub.user("c3", Role::Client).await;
    let crew = Crew {
        creator: &c.c1,
        admin: &c.a1,
        devs: &[&c.d1],
    };
    let t = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({"project": c.project, "title": "Checkout"}),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    // c2 wants no email about mentions; d2 keeps the default.
    let (status, _) = hub
        .call(
            Method::PUT,
            "/api/notifications/preferences/",
            Some(&hub.token(&c.c2)),
            Some(json!({"types": {"ticket_mentioned": {"email": false}}})),
        )
        .await;
    assert_eq!(status, 200);
    let mut d2 = hub.connect(&c.d2).await;
    hub.post_as(
        &c.d1,
        &format!("/api/tickets/{id}/comments/"),
        json!({"body": "@c2 @d2, @c3 and @a2: see `@a1`; mail me at x@d2.example. @C2 again, @nobody, @c1"}),
        201,
    )
    .await;
    let n = &d2.notifications(1).await[0];
    assert_eq!(n["notification_type"], "ticket_mentioned");
    assert_eq!(n["title"], "You Were Mentioned");
    assert!(
        n["message"]
            .as_str()
            .unwrap()
            .starts_with("d1 display mentioned you on WEB-1: @c2 @d2"),
        "{n}"
    );
    assert_eq!(n["ticket"]["key"], "WEB-1");
    let of_d2 = mentions_of(&hub, &c.d2).await;
    assert_eq!(of_d2.len(), 1);
    assert_eq!(
        channels(&hub, &c.d2, &of_d2[0]["id"]).await,
        ["websocket", "email"]
    );
    let of_c2 = mentions_of(&hub, &c.c2).await;
    assert_eq!(of_c2.len(), 1, "named twice, told once");
    assert_eq!(
        channels(&hub, &c.c2, &of_c2[0]["id"]).await,
        ["websocket"],
        "their preference holds"
    );
    assert_eq!(
        mentions_of(&hub, &c.a2).await.len(),
        1,
        "admins see every ticket"
    );
    assert!(
        mentions_of(&hub, &outsider).await.is_empty(),
        "not a member"
    );
    assert!(mentions_of(&hub, &c.a1).await.is_empty(), "in code");
    assert!(
        mentions_of(&hub, &c.c1).await.is_empty(),
        "the creator hears of the comment already"
    );
    assert!(mentions_of(&hub, &c.d1).await.is_empty(), "not the author");

    // A description's edit tells the people it newly names, once.
    let new = create_ticket(&hub, &c.c1, c.project, "Invoices").await;
    let path = format!("/api/tickets/{}/", new["id"]);
    let patch = |body: Value| {
        let token = hub.token(&c.c1);
        let hub = &hub;
        let path = path.clone();
        async move {
            let (status, res) = hub
                .call(Method::PATCH, &path, Some(&token), Some(body))
                .await;
            assert_eq!(status, 200, "{res}");
        }
    };
    patch(json!({"description": "Ask @d2 about it."})).await;
    let n = &d2.notifications(1).await[0];
    assert_eq!(n["notification_type"], "ticket_mentioned");
    assert_eq!(
        n["message"],
        "c1 display mentioned you on WEB-2: Ask @d2 about it."
    );
    patch(json!({"description": "Ask @d2 about it, please."})).await;
    d2.roundtrip().await;
    assert_eq!(
        mentions_of(&hub, &c.d2).await.len(),
        2,
        "no new name, no new mention"
    );
}

pub(super) async fn markdown_is_rendered_to_safe_html(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let crew = Crew {
        creator: &c.c1,
        admin: &c.a1,
        devs: &[&c.d1],
    };
    let t = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({
                "project": c.project,
                "title": "<img src=x onerror=alert(1)>",
                "description": "Steps:\n\n1. open **Checkout**\n2. see [docs](https://example.com/a?b=1)\n\n<script>alert(1)</script>",
            }),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    let detail = hub.get_as(&c.d1, &format!("/api/tickets/{id}/"), 200).await;
    let html = detail["description_html"].as_str().unwrap();
    assert!(
        html.contains("<ol>") && html.contains("<strong>Checkout</strong>"),
        "{html}"
    );
    assert!(
        html.contains(
            r#"<a href="https://example.com/a?b=1" rel="noopener noreferrer nofollow">docs</a>"#
        ),
        "{html}"
    );
    assert!(
        !html.contains("<script") && html.contains("&lt;script&gt;"),
        "{html}"
    );
    assert_eq!(
        detail["title"], "<img src=x onerror=alert(1)>",
        "titles are text, never HTML"
    );
    for (body, never) in [
        ("[click](javascript:alert(1))", "javascript:"),
        // Raw HTML is text: no element, so no handler.
        (
            "<a href=\"https://x.example\" onclick=\"alert(1)\">x</a>",
            "<a ",
        ),
        ("![pixel](https://tracker.example/p.gif)", "tracker.example"),
        ("[x](data:text/html;base64,PHNjcmlwdD4=)", "data:"),
        ("<iframe src=\"https://x.example\"></iframe>", "<iframe"),
    ] {
        let comment = hub
            .post_as(
                &c.d1,
                &format!("/api/tickets/{id}/comments/"),
                json!({"body": body}),
                201,
            )
            .await;
        let html = comment["body_html"].as_str().unwrap();
        assert!(!html.contains(never), "{body} → {html}");
        assert_eq!(comment["body"], body, "the text is kept as written");
    }
    let listed = hub
        .get_as(&c.c1, &format!("/api/tickets/{id}/comments/"), 200)
        .await;
    assert!(listed["results"][0]["body_html"].is_string());
}
