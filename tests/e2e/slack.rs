//! Slack end to end, against the Web API stand-in (`slack_fakes`): direct messages in Block
//! Kit with the buttons a notification asks for, clicks signed as Slack signs them and acted
//! on once by the rules of the REST actions, rate limits honoured.

use reqwest::Method;
use serde_json::json;
use tickethub_actors::domain::{Role, User};

use crate::harness::{Backend, Crew, TestHub};
use crate::oncall::timeline_events;
use crate::slack_fakes::{deliver, Slack, ANN, BOB, CAROL, SIGNING_SECRET};

/// Gives `user` the verified Slack address `member`.
async fn link(hub: &TestHub, user: &User, id: &str) {
    crate::delivery::vouch_address(hub, user, "slack", id).await;
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A page reaches its recipient's Slack DM with Acknowledge and Open buttons, its text
/// escaped (no mention of the whole channel), after a rate limit's `Retry-After`. A click is
/// taken only signed with the app's secret and fresh; it acknowledges once (read, on the
/// timeline as via `slack`), however often Slack sends it; the clicker alone hears what it
/// came to. A click by a member linked to nobody, and a click on someone else's
/// notification, act on nothing.
async fn a_page_reaches_slack_and_a_signed_click_acknowledges_it_once(backend: Backend) {
    let slack = Slack::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        slack.configure(c);
        c.public_url = Some("https://hub.example.com".into());
        c.delivery_backoff_ms = 50;
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let bob = hub.user("bob", Role::Developer).await;
    link(&hub, &ann, ANN).await;
    link(&hub, &bob, BOB).await;
    slack.rate_limit([1]);
    hub.send(
        &admin,
        &[&ann],
        json!({"notification_type": "page", "title": "db down <!channel> & out",
               "message": "primary is not answering", "link": "/tickets/",
               "channels": ["slack"]}),
    )
    .await;
    let posts = slack.wait_for(2).await;
    assert_eq!(posts[0].refused.as_deref(), Some("ratelimited"));
    let post = &posts[1];
    assert_eq!(post.refused, None, "{post:?}");
    assert_eq!(post.body["channel"], ANN);
    assert!(
        post.text().contains("*db down &lt;!channel&gt; &amp; out*"),
        "{}",
        post.text()
    );
    assert!(post.context().starts_with("Page "), "{}", post.context());
    assert_eq!(post.actions(), ["ack", "open"]);
    assert_eq!(
        post.button("open")["url"],
        "https://hub.example.com/tickets/"
    );
    let id = post.button("ack")["value"].as_str().unwrap().to_owned();

    // Refused: unsigned, signed with another secret, stale, or over the size cap.
    let click = slack.click(ANN, "ack", &id);
    assert_eq!(deliver(&hub, &click, None).await, 403);
    assert_eq!(
        deliver(&hub, &click, Some(("not-the-secret", now()))).await,
        403
    );
    assert_eq!(
        deliver(&hub, &click, Some((SIGNING_SECRET, now() - 301))).await,
        403
    );
    let huge = format!("payload={}", "x".repeat(70_000));
    assert_eq!(
        deliver(&hub, &huge, Some((SIGNING_SECRET, now()))).await,
        413
    );
    let junk = "payload=%7Bnot%20json";
    assert_eq!(
        deliver(&hub, junk, Some((SIGNING_SECRET, now()))).await,
        400
    );
    let unread = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(unread["results"][0]["is_read"], false, "{unread}");

    // Acting on nothing: a member linked to nobody; bob clicking ann's button.
    let stranger = slack.click(CAROL, "ack", &id);
    assert_eq!(
        deliver(&hub, &stranger, Some((SIGNING_SECRET, now()))).await,
        200
    );
    let bobs = slack.click(BOB, "ack", &id);
    assert_eq!(
        deliver(&hub, &bobs, Some((SIGNING_SECRET, now()))).await,
        200
    );
    let answers = slack.answers(2).await;
    assert!(
        answers.iter().any(|a| a.contains("not linked")),
        "{answers:?}"
    );
    assert!(
        answers.iter().any(|a| a.contains("not yours")),
        "{answers:?}"
    );
    let unread = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(unread["results"][0]["is_read"], false, "{unread}");

    // Ann's click acknowledges, once, though Slack sends it twice.
    for _ in 0..2 {
        assert_eq!(
            deliver(&hub, &click, Some((SIGNING_SECRET, now()))).await,
            200
        );
    }
    let answers = slack.answers(4).await;
    assert_eq!(
        answers[2..],
        [
            "Acknowledged \"db down <!channel> & out\".",
            "Acknowledged \"db down <!channel> & out\"."
        ]
    );
    let read = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(read["results"][0]["is_read"], true, "{read}");
    let acknowledged = timeline_events(
        &hub,
        &admin,
        &json!(id.parse::<i64>().unwrap()),
        "acknowledged",
    )
    .await;
    assert_eq!(acknowledged.len(), 1, "{acknowledged:?}");
    assert_eq!(acknowledged[0]["via"], "slack");
    // A new click on the button says so.
    let again = slack.click(ANN, "ack", &id);
    assert_eq!(
        deliver(&hub, &again, Some((SIGNING_SECRET, now()))).await,
        200
    );
    assert!(slack.answers(5).await[4].contains("acknowledged already"));
    // One delivery: the rate limit was waited out, not counted twice.
    assert_eq!(slack.posted().len(), 2);
}

/// Slack sends a click again when an answer is slow, and a load balancer may hand the two
/// to different nodes: the click acts once (one acknowledgement on the timeline), and both
/// answers say the same.
async fn a_click_sent_to_two_nodes_at_once_acts_once(backend: Backend) {
    let slack = Slack::start().await;
    let a = TestHub::start_with(&backend, |c| slack.configure(c)).await;
    let b = a.sibling_with(|c| slack.configure(c)).await;
    let admin = a.user("boss", Role::Admin).await;
    let ann = a.user("ann", Role::Developer).await;
    link(&a, &ann, ANN).await;
    a.send(
        &admin,
        &[&ann],
        json!({"notification_type": "page", "title": "disk full", "channels": ["slack"]}),
    )
    .await;
    let post = slack.wait_for(1).await.remove(0);
    let id = post.button("ack")["value"].as_str().unwrap().to_owned();
    let click = slack.click(ANN, "ack", &id);
    let signed = Some((SIGNING_SECRET, now()));
    let (on_a, on_b) = tokio::join!(deliver(&a, &click, signed), deliver(&b, &click, signed));
    assert_eq!((on_a, on_b), (200, 200));
    let answers = slack.answers(2).await;
    assert_eq!(answers[0], answers[1], "{answers:?}");
    let acknowledged = timeline_events(
        &a,
        &admin,
        &json!(id.parse::<i64>().unwrap()),
        "acknowledged",
    )
    .await;
    assert_eq!(acknowledged.len(), 1, "{acknowledged:?}");
}

/// Slack's rate limit is the app's, for the whole workspace: after a 429, no message to
/// anyone is posted until its `Retry-After` has passed, and then each goes once.
async fn a_rate_limit_holds_every_message_until_it_ends(backend: Backend) {
    let slack = Slack::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        slack.configure(c);
        c.delivery_backoff_ms = 50;
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let mut people = Vec::new();
    for (name, member) in [("ann", ANN), ("bob", BOB), ("carol", CAROL)] {
        let user = hub.user(name, Role::Developer).await;
        link(&hub, &user, member).await;
        people.push(user);
    }
    slack.rate_limit([2]);
    let body = json!({"title": "deploy at 5", "channels": ["slack"]});
    hub.send(&admin, &[&people[0]], body.clone()).await;
    let limited = slack.wait_for(1).await.remove(0);
    assert_eq!(limited.refused.as_deref(), Some("ratelimited"));
    // Once the hub has taken the 429 (the attempt is recorded):
    let ann = &people[0];
    let id = hub.get_as(ann, "/api/notifications/", 200).await["results"][0]["id"].clone();
    crate::harness::eventually_ok("the 429 recorded", || async {
        let d = hub
            .get_as(ann, &format!("/api/notifications/{id}/deliveries/"), 200)
            .await;
        let attempts = d["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["channel"] == "slack")
            .map_or(0, |d| d["attempts"].as_i64().unwrap_or(0));
        match attempts {
            0 => Err(d.to_string()),
            _ => Ok(()),
        }
    })
    .await;
    // Sent once Slack has said to wait: they wait too.
    hub.send(&admin, &[&people[1], &people[2]], body).await;
    let posts = slack.wait_for(4).await;
    let waited = limited.at + std::time::Duration::from_secs(2);
    for p in &posts[1..] {
        assert!(
            p.at >= waited,
            "a post came {:?} after the 429",
            p.at - limited.at
        );
    }
    let mut delivered: Vec<String> = posts
        .iter()
        .filter(|p| p.refused.is_none())
        .map(|p| p.body["channel"].as_str().unwrap().to_owned())
        .collect();
    delivered.sort();
    assert_eq!(delivered, [ANN, BOB, CAROL]);
}

/// A ticket's notifications carry the buttons of its next step, and a click runs it by the
/// ticket's rules: the assignee starts work from Slack; the client who created the ticket
/// is shown Resolve but cannot finish the work, and is told why.
async fn ticket_buttons_run_the_ticket_s_rules(backend: Backend) {
    let slack = Slack::start().await;
    let routing = r#"
[ticket_assigned]
recipients = ["newly_assigned"]
channels = ["websocket", "slack"]

[work_started]
recipients = ["creator"]
channels = ["websocket", "slack"]
"#;
    let hub = TestHub::start_routed(&backend, routing, |c| slack.configure(c)).await;
    let admin = hub.user("boss", Role::Admin).await;
    let client = hub.user("cli", Role::Client).await;
    let dev = hub.user("dev", Role::Developer).await;
    link(&hub, &dev, ANN).await;
    link(&hub, &client, BOB).await;
    let crew = Crew {
        creator: &client,
        admin: &admin,
        devs: &[&dev],
    };
    let project = hub.project("WEB", &[&admin, &client, &dev]).await;
    let ticket = hub
        .ticket_in("ASSIGNED", &crew, json!({"project": project.id.0}))
        .await;
    let key = ticket["key"].as_str().unwrap().to_owned();
    let assigned = slack.wait_for(1).await.remove(0);
    assert_eq!(assigned.body["channel"], ANN);
    assert!(assigned.context().contains(&key), "{}", assigned.context());
    assert_eq!(assigned.actions(), ["start_work"]);
    let id = assigned.button("start_work")["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let click = slack.click(ANN, "start_work", &id);
    assert_eq!(
        deliver(&hub, &click, Some((SIGNING_SECRET, now()))).await,
        200
    );
    assert_eq!(slack.answers(1).await[0], format!("{key} is IN_PROGRESS."));
    let path = format!("/api/tickets/{}/", ticket["id"]);
    let now_is = hub.get_as(&admin, &path, 200).await;
    assert_eq!(now_is["status"], "IN_PROGRESS", "{now_is}");

    // The client hears that work started, with a Resolve button it has no power to use.
    let started = slack.wait_for(2).await.remove(1);
    assert_eq!(started.body["channel"], BOB);
    assert_eq!(started.actions(), ["finish_work"]);
    let id = started.button("finish_work")["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let click = slack.click(BOB, "finish_work", &id);
    assert_eq!(
        deliver(&hub, &click, Some((SIGNING_SECRET, now()))).await,
        200
    );
    let refused = &slack.answers(2).await[1];
    assert!(refused.contains("Only a developer assigned"), "{refused}");
    let still = hub.get_as(&admin, &path, 200).await;
    assert_eq!(still["status"], "IN_PROGRESS", "{still}");
}

/// A Slack address is a member id, checked when it is set; the hub has no interactions
/// endpoint without a signing secret.
async fn slack_addresses_are_member_ids(backend: Backend) {
    let slack = Slack::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        slack.configure(c);
        c.channels.slack.slack_signing_secret = None;
    })
    .await;
    let ann = hub.user("ann", Role::Developer).await;
    for bad in ["ann", "<@U0ANN0001>", "C0123ABCD"] {
        let (status, body) = hub
            .call(
                Method::PATCH,
                "/api/users/me/",
                Some(&hub.token(&ann)),
                Some(json!({"addresses": {"slack": bad}})),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.to_string().contains("member id"), "{body}");
    }
    // Its verification code goes by direct message.
    let (status, body) = hub
        .call(
            Method::PATCH,
            "/api/users/me/",
            Some(&hub.token(&ann)),
            Some(json!({"addresses": {"slack": ANN}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let code = slack.wait_for(1).await.remove(0);
    assert_eq!(code.body["channel"], ANN);
    assert!(
        code.actions().is_empty(),
        "no buttons without a signing secret"
    );
    let click = slack.click(ANN, "ack", "1");
    assert_eq!(
        deliver(&hub, &click, Some((SIGNING_SECRET, now()))).await,
        404
    );
}

/// A user finds themselves in the workspace by their verified email address: their `slack`
/// address is set, verified, and takes their messages. A bot, a deactivated member or an
/// unknown email finds no one (404); a user without a verified email, or a hub without Slack,
/// is told why (400).
async fn a_member_is_found_by_their_verified_email(backend: Backend) {
    let slack = Slack::start().await;
    let hub = TestHub::start_with(&backend, |c| slack.configure(c)).await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let lookup = "/api/users/me/slack/lookup/";
    let me = hub.post_as(&ann, lookup, json!({}), 200).await;
    assert_eq!(me["addresses"]["slack"]["address"], ANN, "{me}");
    assert!(me["addresses"]["slack"]["verified_at"].is_string(), "{me}");
    hub.send(
        &admin,
        &[&ann],
        json!({"notification_type": "heads_up", "title": "Hello", "message": "there",
               "channels": ["slack"]}),
    )
    .await;
    let posts = slack.wait_for(1).await;
    assert_eq!(posts[0].body["channel"], ANN);

    for name in ["robo", "gone", "nobody"] {
        let user = hub.user(name, Role::Developer).await;
        let refused = hub.post_as(&user, lookup, json!({}), 404).await;
        assert!(
            refused["detail"].as_str().unwrap().contains("member id"),
            "{refused}"
        );
    }
    let unverified = hub.user("una", Role::Developer).await;
    let (status, _) = hub
        .call(
            Method::PATCH,
            "/api/users/me/",
            Some(&hub.token(&unverified)),
            Some(json!({"email": "ann@example.test"})),
        )
        .await;
    assert_eq!(status, 200);
    let refused = hub.post_as(&unverified, lookup, json!({}), 400).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("verified email"),
        "{refused}"
    );

    let plain = TestHub::start(&backend).await;
    let someone = plain.user("ann", Role::Developer).await;
    plain.post_as(&someone, lookup, json!({}), 400).await;
}

crate::trials! {
    both: [
        a_member_is_found_by_their_verified_email,
        a_page_reaches_slack_and_a_signed_click_acknowledges_it_once,
        a_click_sent_to_two_nodes_at_once_acts_once,
        a_rate_limit_holds_every_message_until_it_ends,
        ticket_buttons_run_the_ticket_s_rules,
        slack_addresses_are_member_ids,
    ],
    tests: [],
    sync: [],
}
