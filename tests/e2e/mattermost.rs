//! Mattermost end to end, against the server stand-in (`mattermost_fakes`): a page posted to
//! the person's direct channel with the bot, with buttons whose clicks act once, only with the
//! hub's action token, and only for the person the server says clicked.

use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::harness::{Backend, TestHub};
use crate::mattermost_fakes::{Mattermost, ANN, BOB};
use crate::oncall::timeline_events;

async fn link(hub: &TestHub, user: &User, id: &str) {
    crate::delivery::vouch_address(hub, user, "mattermost", id).await;
}

/// Posts a click as the Mattermost server would; answers the status and the body.
async fn post_click(hub: &TestHub, url: &str, body: &Value) -> (u16, Value) {
    let path = url
        .strip_prefix("https://hub.example.com")
        .expect("the integration is the hub's");
    let response = reqwest::Client::new()
        .post(hub.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A page reaches the recipient's direct channel with the bot, its code and an Acknowledge
/// button. A click without the hub's action token is 403; one by a user linked to nobody, or
/// by someone else than the recipient, acts on nothing; the recipient's acknowledges once
/// (timeline: via `mattermost`), however often the server posts it.
async fn a_page_reaches_mattermost_and_its_button_acknowledges_it(backend: Backend) {
    let mm = Mattermost::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        mm.configure(c);
        c.public_url = Some("https://hub.example.com".into());
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let bob = hub.user("bob", Role::Developer).await;
    link(&hub, &ann, ANN).await;
    link(&hub, &bob, BOB).await;
    hub.send(
        &admin,
        &[&ann],
        json!({"notification_type": "page", "title": "db down", "message": "primary is not answering",
               "link": "/tickets/", "channels": ["mattermost"]}),
    )
    .await;
    let post = mm.wait_for(1).await.remove(0);
    assert!(
        post["message"].as_str().unwrap().contains("**db down**"),
        "{post}"
    );
    let attachment = &post["props"]["attachments"][0];
    assert!(
        attachment["text"].as_str().unwrap().starts_with("Page "),
        "{post}"
    );
    assert_eq!(attachment["title_link"], "https://hub.example.com/tickets/");
    let (url, mut click) = Mattermost::click(&post, "ack", ANN, "t1");
    let id = click["context"]["notification"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .unwrap();

    let mut forged = click.clone();
    forged["context"]["token"] = json!("not-the-token-at-all");
    assert_eq!(post_click(&hub, &url, &forged).await.0, 403);
    assert_eq!(post_click(&hub, &url, &json!({"junk": true})).await.0, 400);
    let (_, bobs) = post_click(&hub, &url, &Mattermost::click(&post, "ack", BOB, "t2").1).await;
    assert!(
        bobs["ephemeral_text"]
            .as_str()
            .unwrap()
            .contains("not yours"),
        "{bobs}"
    );
    let stranger = "zzzzzzzzzzzzzzzzzzzzzzzz99";
    let (_, theirs) = post_click(
        &hub,
        &url,
        &Mattermost::click(&post, "ack", stranger, "t3").1,
    )
    .await;
    assert!(
        theirs["ephemeral_text"]
            .as_str()
            .unwrap()
            .contains("not linked"),
        "{theirs}"
    );
    let unread = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(unread["results"][0]["is_read"], false, "{unread}");

    for _ in 0..2 {
        let (status, answer) = post_click(&hub, &url, &click).await;
        assert_eq!(status, 200);
        assert_eq!(answer["ephemeral_text"], "Acknowledged \"db down\".");
    }
    click["trigger_id"] = json!("t4");
    let (_, again) = post_click(&hub, &url, &click).await;
    assert!(
        again["ephemeral_text"]
            .as_str()
            .unwrap()
            .contains("already"),
        "{again}"
    );
    let read = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(read["results"][0]["is_read"], true, "{read}");
    let acknowledged = timeline_events(&hub, &admin, &json!(id), "acknowledged").await;
    assert_eq!(acknowledged.len(), 1, "{acknowledged:?}");
    assert_eq!(acknowledged[0]["via"], "mattermost");
}

/// A Mattermost address is a user id of 26 letters and digits; a user the server does not
/// know is unreachable for good (the delivery fails and is not tried again).
async fn mattermost_addresses_are_user_ids(backend: Backend) {
    let mm = Mattermost::start().await;
    let hub = TestHub::start_with(&backend, |c| mm.configure(c)).await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let (status, body) = hub
        .call(
            reqwest::Method::PATCH,
            "/api/users/me/",
            Some(&hub.token(&ann)),
            Some(json!({"addresses": {"mattermost": "ann"}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("user id"), "{body}");
    link(&hub, &ann, "nobodynobodynobodynobody00").await;
    hub.send(
        &admin,
        &[&ann],
        json!({"title": "hi", "channels": ["mattermost"]}),
    )
    .await;
    let id = hub.get_as(&ann, "/api/notifications/", 200).await["results"][0]["id"].clone();
    crate::harness::eventually_ok("the delivery failed", || async {
        let d = hub
            .get_as(&ann, &format!("/api/notifications/{id}/deliveries/"), 200)
            .await;
        let failed = d["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["channel"] == "mattermost" && d["status"] == "FAILED");
        match failed {
            true => Ok(()),
            false => Err(d.to_string()),
        }
    })
    .await;
}

crate::trials! {
    both: [
        a_page_reaches_mattermost_and_its_button_acknowledges_it,
        mattermost_addresses_are_user_ids,
    ],
    tests: [],
    sync: [],
}
