//! Project chats end to end: `POST /api/projects/{id}/chat/` with Slack (one message per
//! ticket, changed in place by `chat.update` as the ticket moves, its thread the history, a
//! button in it acting by the REST rules), Mattermost (a post patched in place, replies under
//! it) and Microsoft Teams (a card per event), against the stand-ins; and Teams as a personal
//! channel.

use reqwest::Method;
use serde_json::{json, Value};
use tickethub_actors::domain::Role;

use crate::harness::{Backend, TestHub};
use crate::mattermost_fakes::{Mattermost, ROOM};
use crate::slack_fakes::{deliver, Slack, ANN, BOB, CAROL, CHANNEL, SIGNING_SECRET};
use crate::teams_fakes::Teams;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The project's chats, as an admin lists them.
async fn chats(hub: &TestHub, admin: &tickethub_actors::domain::User, project: i64) -> Value {
    hub.get_as(admin, &format!("/api/projects/{project}/chat/"), 200)
        .await
}

/// A Slack channel hears a project's HIGH and CRITICAL tickets: each is one message, posted
/// with its first event and changed in place with each later one, its thread the ticket's
/// history in order. Its Start work button acts by the REST rules, as the Slack member's hub
/// user; a LOW ticket is never posted. Bad requests are refused with the field at fault.
async fn a_slack_channel_keeps_one_message_per_ticket_through_its_life(backend: Backend) {
    let slack = Slack::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        slack.configure(c);
        c.public_url = Some("https://hub.example.com".into());
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let client = hub.user("cleo", Role::Client).await;
    let ann = hub.user("ann", Role::Developer).await;
    let bob = hub.user("bob", Role::Developer).await;
    crate::delivery::vouch_address(&hub, &ann, "slack", ANN).await;
    crate::delivery::vouch_address(&hub, &bob, "slack", BOB).await;
    let project = hub.project("WEB", &[&client, &ann]).await;
    let path = format!("/api/projects/{}/chat/", project.id.0);

    // Refused: by a non-admin; a provider the hub lacks; a bad channel, event or priority.
    let good = json!({"provider": "slack", "channel": CHANNEL,
                      "when": {"priority": ["HIGH", "CRITICAL"]}});
    hub.post_as(&ann, &path, good.clone(), 403).await;
    for (bad, field) in [
        (json!({"provider": "teams", "channel": CHANNEL}), "provider"),
        (
            json!({"provider": "slack", "channel": "#general"}),
            "channel",
        ),
        (
            json!({"provider": "slack", "channel": CHANNEL, "events": ["ticket_eaten"]}),
            "events",
        ),
        (
            json!({"provider": "slack", "channel": CHANNEL, "when": {"priority": ["URGENT"]}}),
            "when.priority",
        ),
    ] {
        let refused = hub.post_as(&admin, &path, bad, 400).await;
        assert!(refused.to_string().contains(field), "{field}: {refused}");
    }
    let chat = hub.post_as(&admin, &path, good.clone(), 201).await;
    assert_eq!(chat["provider"], "slack");
    assert_eq!(chat["channel"], CHANNEL);
    assert_eq!(chat["when"]["priority"], json!(["HIGH", "CRITICAL"]));
    assert_eq!(chat["events"], json!([]));
    hub.post_as(&admin, &path, good, 400).await;

    // A LOW ticket is not told; a HIGH one is, through its whole life.
    let low = hub
        .post_as(
            &client,
            "/api/tickets/",
            json!({"project": project.id.0, "title": "Typo",
               "description": "x", "priority": "LOW", "category": "BUG"}),
            201,
        )
        .await;
    let high = hub
        .post_as(
            &client,
            "/api/tickets/",
            json!({"project": project.id.0,
               "title": "Checkout <!here> fails", "description": "500s",
               "priority": "HIGH", "category": "BUG"}),
            201,
        )
        .await;
    let id = high["id"].as_i64().unwrap();
    let key = high["key"].as_str().unwrap().to_owned();
    let action = |name: &str| format!("/api/tickets/{id}/{name}/");
    hub.post_as(&admin, &action("open_ticket"), json!({}), 200)
        .await;
    hub.post_as(
        &admin,
        &action("assign"),
        json!({"developer_ids": [ann.id.0]}),
        200,
    )
    .await;
    // Four events: the message, three updates, four replies.
    slack
        .until(|s| s.updated().len() >= 2 && s.posted().len() >= 4)
        .await;
    let updated = slack.updated();
    let last = updated.last().unwrap();
    let start = last.button("start_work");
    assert_eq!(start["value"], format!("ticket:{id}"));
    assert_eq!(
        last.button("open")["url"],
        format!("https://hub.example.com/tickets/{id}/")
    );

    // Clicks on the channel's message: Carol is linked to nobody, Bob may not see the ticket;
    // Ann starts work.
    for member in [CAROL, BOB, ANN] {
        let click = slack.click(member, "start_work", &format!("ticket:{id}"));
        assert_eq!(
            deliver(&hub, &click, Some((SIGNING_SECRET, now()))).await,
            200
        );
    }
    // Slack's answers are posted as they come: in any order.
    let answers = slack.answers(3).await;
    let said = |text: &str| answers.iter().any(|a| a.contains(text));
    assert!(said("not linked"), "{answers:?}");
    assert!(said("not one you can see"), "{answers:?}");
    assert!(said(&format!("{key} is IN_PROGRESS.")), "{answers:?}");
    hub.post_as(&ann, &action("finish_work"), json!({}), 200)
        .await;
    hub.post_as(
        &client,
        &action("comments"),
        json!({"body": "Thanks & <@U1> cheers"}),
        201,
    )
    .await;
    hub.post_as(&client, &action("approve"), json!({}), 200)
        .await;

    // 7 events: one message, 6 updates, 7 thread replies, all in order.
    slack
        .until(|s| s.updated().len() >= 6 && s.posted().len() >= 8)
        .await;
    let posted = slack.posted();
    let roots: Vec<_> = posted
        .iter()
        .filter(|p| p.body.get("thread_ts").is_none())
        .collect();
    assert_eq!(roots.len(), 1, "one message for the ticket: {posted:?}");
    let root = roots[0];
    assert_eq!(root.body["channel"], CHANNEL);
    assert!(root.text().contains(&key), "{}", root.text());
    assert!(
        root.text().contains("Checkout &lt;!here&gt; fails"),
        "{}",
        root.text()
    );
    assert!(
        !posted.iter().any(|p| p.body.to_string().contains("Typo")),
        "the LOW ticket was told: {posted:?}"
    );
    let ts = "1700000000.000001";
    let replies: Vec<String> = posted
        .iter()
        .filter(|p| p.body.get("thread_ts").is_some())
        .map(|p| {
            assert_eq!(p.body["thread_ts"], ts, "{p:?}");
            p.body["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        replies,
        [
            "*cleo display* created the ticket.",
            "*boss display* opened the ticket.",
            "*boss display* assigned *ann display*.",
            "*ann display* started work.",
            "*ann display* finished work.",
            "*cleo display* commented: Thanks &amp; &lt;@U1&gt; cheers",
            "*cleo display* approved the work.",
        ]
    );
    let updated = slack.updated();
    assert_eq!(updated.len(), 6, "{updated:?}");
    for u in &updated {
        assert_eq!(u.refused, None, "{u:?}");
        assert_eq!(u.body["ts"], ts);
        assert_eq!(u.body["channel"], CHANNEL);
    }
    let last = updated.last().unwrap();
    let facts = last.body["blocks"][1]["elements"][0]["text"]
        .as_str()
        .unwrap();
    assert_eq!(facts, "High · Approved · ann display");
    assert_eq!(last.actions(), ["open"], "no step is left");
    let _ = low;

    // The last event is gone from the queue once its reply was posted and recorded.
    let deadline = tokio::time::Instant::now() + crate::harness::patience();
    let listed = loop {
        let listed = chats(&hub, &admin, project.id.0).await;
        if listed[0]["pending"] == 0 || tokio::time::Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(listed[0]["pending"], 0, "{listed}");
    assert_eq!(listed[0]["failed"], 0, "{listed}");
    let chat_id = listed[0]["id"].as_i64().unwrap();
    let (status, _) = hub
        .call(
            Method::DELETE,
            &format!("{path}{chat_id}/"),
            Some(&hub.token(&admin)),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(chats(&hub, &admin, project.id.0).await, json!([]));
}

/// A rate limit holds the channel's messages until it ends; the ticket's message is kept
/// across a restart; a message deleted in Slack is posted anew at the ticket's next event;
/// the chat hears only the events it asked for.
async fn a_slack_channel_rides_out_a_rate_limit_a_restart_and_a_deleted_message(backend: Backend) {
    let slack = Slack::start().await;
    let configure = |c: &mut tickethub::ServeConfig| {
        slack.configure(c);
    };
    let hub = TestHub::start_with(&backend, configure).await;
    let admin = hub.user("boss", Role::Admin).await;
    let client = hub.user("cleo", Role::Client).await;
    let project = hub.project("OPS", &[&client]).await;
    let path = format!("/api/projects/{}/chat/", project.id.0);
    hub.post_as(
        &admin,
        &path,
        json!({"provider": "slack", "channel": CHANNEL,
               "events": ["ticket_created", "ticket_opened", "comment_added"]}),
        201,
    )
    .await;
    slack.rate_limit([1]);
    let ticket = hub
        .post_as(
            &client,
            "/api/tickets/",
            json!({"project": project.id.0, "title": "Disk full",
               "description": "x", "priority": "CRITICAL", "category": "BUG"}),
            201,
        )
        .await;
    let id = ticket["id"].as_i64().unwrap();
    // Refused once (429), then posted with its reply.
    slack.until(|s| s.posted().len() >= 3).await;
    let posted = slack.posted();
    assert_eq!(posted[0].refused.as_deref(), Some("ratelimited"));
    assert!(posted[1].at - posted[0].at >= std::time::Duration::from_millis(900));

    // After a restart the ticket's message is still the one changed.
    let db = hub.stop_keep_db().await;
    let hub = TestHub::start_on(db, configure).await;
    hub.post_as(
        &admin,
        &format!("/api/tickets/{id}/open_ticket/"),
        json!({}),
        200,
    )
    .await;
    // `ticket_assigned` is not one the chat hears.
    let dev = hub.user("dan", Role::Developer).await;
    hub.post_as(
        &admin,
        &format!("/api/tickets/{id}/assign/"),
        json!({"developer_ids": [dev.id.0]}),
        200,
    )
    .await;
    slack
        .until(|s| !s.updated().is_empty() && s.posted().len() >= 4)
        .await;
    assert_eq!(slack.updated()[0].body["ts"], "1700000000.000002");
    assert_eq!(slack.updated()[0].refused, None);

    // Someone deletes the message in Slack: the next event posts it anew.
    slack.delete("1700000000.000002");
    hub.post_as(
        &client,
        &format!("/api/tickets/{id}/comments/"),
        json!({"body": "still full"}),
        201,
    )
    .await;
    slack
        .until(|s| s.updated().len() >= 2 && s.posted().len() >= 6)
        .await;
    assert_eq!(
        slack.updated()[1].refused.as_deref(),
        Some("message_not_found")
    );
    let threads: Vec<(String, String)> = slack
        .posted()
        .iter()
        .filter(|p| p.refused.is_none() && p.body.get("thread_ts").is_some())
        .map(|p| {
            (
                p.body["thread_ts"].as_str().unwrap().to_owned(),
                p.body["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let thread = |ts: &str, text: &str| (ts.to_owned(), text.to_owned());
    assert_eq!(
        threads,
        [
            thread("1700000000.000002", "*cleo display* created the ticket."),
            thread("1700000000.000002", "*boss display* opened the ticket."),
            thread("1700000000.000005", "*cleo display* commented: still full"),
        ]
    );
    let roots = slack
        .posted()
        .iter()
        .filter(|p| p.refused.is_none() && p.body.get("thread_ts").is_none())
        .count();
    assert_eq!(roots, 2);
}

/// Mattermost: the ticket's post is patched in place and its history replies under it, with
/// the button of its next step. Teams: a card per event to the channel's workflow (a webhook
/// cannot change a card), and a user's `teams` address gets their notifications as cards;
/// URLs off the allowed hosts are refused.
async fn mattermost_patches_its_post_and_teams_gets_a_card_per_event(backend: Backend) {
    let mm = Mattermost::start().await;
    let teams = Teams::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        mm.configure(c);
        teams.configure(c);
        c.public_url = Some("https://hub.example.com".into());
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let client = hub.user("cleo", Role::Client).await;
    let ann = hub.user("ann", Role::Developer).await;
    let project = hub.project("APP", &[&client, &ann]).await;
    let path = format!("/api/projects/{}/chat/", project.id.0);
    hub.post_as(
        &admin,
        &path,
        json!({"provider": "mattermost", "channel": ROOM}),
        201,
    )
    .await;
    let refused = hub
        .post_as(
            &admin,
            &path,
            json!({"provider": "teams", "channel": "https://evil.example.com/hook"}),
            400,
        )
        .await;
    assert!(refused.to_string().contains("channel"), "{refused}");
    let teams_chat = hub
        .post_as(
            &admin,
            &path,
            json!({"provider": "teams", "channel": teams.url("ops-channel")}),
            201,
        )
        .await;
    assert!(
        !teams_chat["channel"].as_str().unwrap().contains("s3cr3t"),
        "the URL's secret is not shown again: {teams_chat}"
    );

    let ticket = hub
        .post_as(
            &client,
            "/api/tickets/",
            json!({"project": project.id.0, "title": "Login loops",
               "description": "x", "priority": "MEDIUM", "category": "BUG"}),
            201,
        )
        .await;
    let id = ticket["id"].as_i64().unwrap();
    hub.post_as(
        &admin,
        &format!("/api/tickets/{id}/open_ticket/"),
        json!({}),
        200,
    )
    .await;
    hub.post_as(
        &admin,
        &format!("/api/tickets/{id}/assign/"),
        json!({"developer_ids": [ann.id.0]}),
        200,
    )
    .await;

    // Mattermost: a post, two patches, three replies under it.
    let posts = mm.wait_for(6).await;
    let root = &posts[0];
    assert_eq!(root["channel_id"], ROOM);
    assert!(root.get("root_id").is_none());
    let attachment = &root["props"]["attachments"][0];
    assert!(attachment["title"]
        .as_str()
        .unwrap()
        .contains("Login loops"));
    assert_eq!(
        attachment["title_link"],
        format!("https://hub.example.com/tickets/{id}/")
    );
    let patches: Vec<&Value> = posts.iter().filter(|p| p["patched"] == true).collect();
    assert_eq!(patches.len(), 2, "{posts:?}");
    assert!(patches.iter().all(|p| p["id"] == root["id"]));
    let last = &patches[1]["props"]["attachments"][0];
    assert!(
        last["text"].as_str().unwrap().contains("Assigned"),
        "{last}"
    );
    assert_eq!(
        last["actions"][0]["integration"]["context"]["action"],
        "start_work"
    );
    assert_eq!(
        last["actions"][0]["integration"]["context"]["notification"],
        format!("ticket:{id}")
    );
    let replies: Vec<&str> = posts
        .iter()
        .filter(|p| p.get("root_id").is_some())
        .map(|p| {
            assert_eq!(p["root_id"], root["id"]);
            p["message"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        replies,
        [
            "**cleo display** created the ticket.",
            "**boss display** opened the ticket.",
            "**boss display** assigned **ann display**."
        ]
    );

    // Teams: a card per event.
    let cards = teams.wait_for("ops-channel", 3).await;
    assert_eq!(cards.len(), 3, "{cards:?}");
    assert!(cards[0]["body"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Login loops"));
    assert_eq!(
        cards[2]["body"][1]["text"],
        "**boss display** assigned **ann display**."
    );
    assert_eq!(
        cards[2]["actions"][0]["url"],
        format!("https://hub.example.com/tickets/{id}/")
    );

    // Teams as a personal channel: an address typed is verified by a code sent as a card;
    // ann's notifications are cards in her chat's workflow.
    let (status, _) = hub
        .call(
            Method::PATCH,
            "/api/users/me/",
            Some(&hub.token(&ann)),
            Some(json!({"addresses": {"teams": teams.url("ann-chat")}})),
        )
        .await;
    assert_eq!(status, 200);
    let code = teams.wait_for("ann-chat", 1).await;
    assert_eq!(
        code[0]["body"][0]["text"], "Confirm your Teams chat",
        "{}",
        code[0]
    );
    let digits: String = code[0]["body"][1]["text"]
        .as_str()
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .take(6)
        .collect();
    hub.post_as(
        &ann,
        "/api/users/me/verify/",
        json!({"channel": "teams", "code": digits}),
        200,
    )
    .await;
    hub.send(
        &admin,
        &[&ann],
        json!({"notification_type": "heads_up", "title": "Deploy at 5",
               "message": "Freeze starts now", "channels": ["teams"]}),
    )
    .await;
    let mine = teams.wait_for("ann-chat", 2).await;
    assert_eq!(mine[1]["body"][0]["text"], "Deploy at 5");
    assert!(
        mine[1]["body"][1]["text"]
            .as_str()
            .unwrap()
            .contains("Freeze starts now"),
        "{}",
        mine[1]
    );
}

/// Two nodes on one database both tell the chat: each ticket's events, made on either node
/// while other tickets move at the same time, are told once each, in order, in one thread.
async fn two_nodes_tell_each_ticket_s_events_once_and_in_order(backend: Backend) {
    let slack = Slack::start().await;
    let a = TestHub::start_with(&backend, |c| slack.configure(c)).await;
    let b = a.sibling_with(|c| slack.configure(c)).await;
    let admin = a.user("boss", Role::Admin).await;
    let client = a.user("cleo", Role::Client).await;
    let dev = a.user("dan", Role::Developer).await;
    let project = a.project("DUO", &[&client, &dev]).await;
    a.post_as(
        &admin,
        &format!("/api/projects/{}/chat/", project.id.0),
        json!({"provider": "slack", "channel": CHANNEL}),
        201,
    )
    .await;
    const TICKETS: usize = 4;
    let story = |n: usize| {
        let (a, b, admin, client, dev) = (&a, &b, &admin, &client, &dev);
        async move {
            let (one, other) = if n % 2 == 0 { (a, b) } else { (b, a) };
            let t = one
                .post_as(
                    client,
                    "/api/tickets/",
                    json!({"project": project.id.0,
                       "title": format!("Story {n}"), "description": "x",
                       "priority": "HIGH", "category": "BUG"}),
                    201,
                )
                .await;
            let id = t["id"].as_i64().unwrap();
            let act = |name: &str| format!("/api/tickets/{id}/{name}/");
            other
                .post_as(admin, &act("open_ticket"), json!({}), 200)
                .await;
            one.post_as(
                admin,
                &act("assign"),
                json!({"developer_ids": [dev.id.0]}),
                200,
            )
            .await;
            other
                .post_as(client, &act("comments"), json!({"body": "one"}), 201)
                .await;
            one.post_as(dev, &act("comments"), json!({"body": "two"}), 201)
                .await;
            t["key"].as_str().unwrap().to_owned()
        }
    };
    let keys = futures::future::join_all((0..TICKETS).map(story)).await;
    slack
        .until(|s| s.posted().len() >= TICKETS * 6 && s.updated().len() >= TICKETS * 4)
        .await;
    let posted = slack.posted();
    assert_eq!(posted.len(), TICKETS * 6, "no event told twice");
    assert_eq!(slack.updated().len(), TICKETS * 4, "no update made twice");
    for key in keys {
        let roots: Vec<String> = posted
            .iter()
            .enumerate()
            .filter(|(_, p)| p.body.get("thread_ts").is_none() && p.text().contains(&key))
            .map(|(i, _)| format!("1700000000.{:06}", i + 1))
            .collect();
        assert_eq!(roots.len(), 1, "{key}: {posted:?}");
        let thread: Vec<&str> = posted
            .iter()
            .filter(|p| p.body["thread_ts"] == roots[0].as_str())
            .map(|p| p.body["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            thread,
            [
                "*cleo display* created the ticket.",
                "*boss display* opened the ticket.",
                "*boss display* assigned *dan display*.",
                "*cleo display* commented: one",
                "*dan display* commented: two",
            ],
            "{key}"
        );
    }
}

crate::trials! {
    both: [
        two_nodes_tell_each_ticket_s_events_once_and_in_order,
        a_slack_channel_keeps_one_message_per_ticket_through_its_life,
        a_slack_channel_rides_out_a_rate_limit_a_restart_and_a_deleted_message,
        mattermost_patches_its_post_and_teams_gets_a_card_per_event,
    ],
    tests: [],
    sync: [],
}
