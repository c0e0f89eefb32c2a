//! Exactly once where a step's outcome is unknown: each fault is injected, and the work it
//! could repeat is shown to happen once (or to say honestly that it is pending).

use std::time::Duration;

use serde_json::json;
use tickethub_actors::domain::Role;
use tickethub_actors::user::UserMsg;

use crate::harness::{eventually, Backend, TestHub};

/// A command whose call to the user's actor times out is not run a second time beside the
/// actor: it runs once, in the actor's order, so the user's other tabs hear of it; the caller
/// is told that it is pending.
async fn an_inbox_command_whose_actor_is_slow_runs_once_in_its_order(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| c.actor_call_timeout_ms = 200).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    hub.post_as(
        &admin,
        "/api/notifications/send/",
        json!({"user_ids": [ann.id.0], "title": "t", "message": "m"}),
        201,
    )
    .await;
    let mut tab = hub.connect(&ann).await;
    let id = tab.replayed[0]["id"].as_i64().unwrap();
    // The actor is held as a slow database would hold it, longer than the call waits.
    hub.hub
        .user(ann.id)
        .expect("ann is connected")
        .send_message(UserMsg::InjectStall(Duration::from_millis(1500)))
        .unwrap();
    let (status, body) = hub
        .call(
            reqwest::Method::DELETE,
            &format!("/api/notifications/{id}/"),
            Some(&hub.token(&ann)),
            None,
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("applied once"),
        "{body}"
    );
    // Once the actor is free it deletes the notification, once, and the tab hears of it.
    let updated = tab.next_of("notification_updated").await;
    assert_eq!(
        updated,
        json!({"type": "notification_updated", "id": id, "deleted": true})
    );
    let inbox = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(inbox["count"], 0);
}

/// A commit that applied but whose answer was lost is answered as committed, and committed
/// once: alone, or in a group (which used to be committed again call by call).
async fn a_commit_whose_answer_was_lost_is_not_committed_again(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    let faults = hub.store.faults();
    let send = |title: String| {
        let (hub, admin, ann) = (&hub, &admin, &ann);
        async move {
            hub.post(
                "/api/notifications/send/",
                Some(&hub.token(admin)),
                json!({"user_ids": [ann.id.0], "title": title, "message": "m"}),
            )
            .await
            .0
        }
    };
    faults
        .lost_commit_acks
        .store(1, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(send("alone".into()).await, 201);
    // Many at once, so that they are committed in groups; one group's answer is lost.
    faults
        .lost_commit_acks
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let statuses = futures::future::join_all((0..20).map(|i| send(format!("together {i}")))).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    assert_eq!(
        faults
            .lost_commit_acks
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the fault was met"
    );
    let inbox = hub
        .get_as(&ann, "/api/notifications/?page_size=100", 200)
        .await;
    assert_eq!(inbox["count"], 21, "every call once, none twice");
    let mut seqs: Vec<i64> = inbox["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["seq"].as_i64().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(seqs, (1..=21).collect::<Vec<_>>());
}

/// A send that went out but whose record failed to land is recorded by trying the write
/// again, not sent again once its claim runs out.
async fn a_sent_delivery_whose_record_failed_is_not_sent_again(backend: Backend) {
    let receiver = crate::fakes::Http::start().await;
    let url = format!("{}/hook", receiver.url());
    let hub = TestHub::start_with(&backend, |c| {
        c.channels.webhook.webhook_urls = vec![url];
        c.channels.webhook.webhook_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        c.channels.webhook.webhook_allow_private = true;
        c.delivery_poll_ms = 50;
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let client = hub.user("cli", Role::Client).await;
    let project = hub.project("REC", &[&admin, &client]).await;
    hub.store
        .faults()
        .failed_outcome_writes
        .store(2, std::sync::atomic::Ordering::SeqCst);
    crate::tickets::create_ticket(&hub, &client, project.id.0, "Hook").await;
    receiver.wait_for(1).await;
    let page = hub.get_as(&admin, "/api/notifications/", 200).await;
    let id = page["results"][0]["id"].as_i64().unwrap();
    let path = format!("/api/notifications/{id}/deliveries/");
    // SENT is final: a row recorded as sent is never claimed again.
    eventually("the webhook delivery is recorded as sent", || async {
        let d = hub.get_as(&admin, &path, 200).await;
        d["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["channel"] == "webhook" && x["status"] == "SENT" && x["attempts"] == 1)
    })
    .await;
    assert_eq!(receiver.requests().len(), 1);
}

/// A claimed escalation step whose firing fails is given back at once: it fires at a later
/// look, and the steps claimed with it fire now, none waiting for the claims' lease.
async fn a_failed_escalation_step_holds_back_neither_itself_nor_its_batch(backend: Backend) {
    let routing = r#"
[[escalation]]
name = "created-unread"
events = ["ticket_created"]
steps = [ { after = "1s", unless = "read", channels = ["email"] } ]
"#;
    let hub = TestHub::start_routed(&backend, routing, |c| {
        // Longer than the test may take: a claim abandoned until its lease would fail it.
        c.escalation_lease = 600;
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let client = hub.user("cli", Role::Client).await;
    let project = hub.project("ESC", &[&admin, &client]).await;
    hub.store
        .faults()
        .failed_escalation_finishes
        .store(1, std::sync::atomic::Ordering::SeqCst);
    for i in 0..3 {
        crate::tickets::create_ticket(&hub, &client, project.id.0, &format!("T{i}")).await;
    }
    eventually("every step is settled", || async {
        let fired = hub
            .get_as(&admin, "/api/admin/escalations?status=FIRED", 200)
            .await;
        fired["results"].as_array().unwrap().len() == 3
    })
    .await;
    assert_eq!(
        hub.store
            .faults()
            .failed_escalation_finishes
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the fault was met"
    );
}

/// A send that panics gives its row back; when that release fails too, the failure is
/// logged and counted, and the row is sent once its claim runs out, once.
async fn a_release_that_fails_is_counted_and_the_row_is_sent_after_its_lease(backend: Backend) {
    let receiver = crate::fakes::Http::start().await;
    let url = format!("{}/hook", receiver.url());
    let hub = TestHub::start_with(&backend, |c| {
        c.channels.webhook.webhook_urls = vec![url];
        c.channels.webhook.webhook_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        c.channels.webhook.webhook_allow_private = true;
        c.delivery_poll_ms = 50;
        c.delivery_timeout = 1;
        c.delivery_lease = 2;
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let client = hub.user("cli", Role::Client).await;
    let project = hub.project("REL", &[&admin, &client]).await;
    let failures = |m: &crate::harness::Metrics| {
        m.value(
            "tickethub_outbox_release_failures_total",
            &["channel=\"webhook\""],
        )
    };
    let before = failures(&hub.metrics().await);
    hub.store
        .faults()
        .failed_releases
        .store(1, std::sync::atomic::Ordering::SeqCst);
    hub.hub
        .channel(tickethub_actors::routing::Channel::Webhook)
        .expect("the webhook channel runs")
        .send_message(tickethub_actors::delivery::ChannelMsg::InjectSendPanic)
        .unwrap();
    crate::tickets::create_ticket(&hub, &client, project.id.0, "Hook").await;
    eventually("the failed release is counted", || async {
        failures(&hub.metrics().await) > before
    })
    .await;
    assert_eq!(
        hub.store
            .faults()
            .failed_releases
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the release was tried"
    );
    // Still claimed: the row comes back when its claim runs out, and is sent once.
    receiver.wait_for(1).await;
    let page = hub.get_as(&admin, "/api/notifications/", 200).await;
    let id = page["results"][0]["id"].as_i64().unwrap();
    let path = format!("/api/notifications/{id}/deliveries/");
    eventually("the webhook delivery is recorded as sent", || async {
        let d = hub.get_as(&admin, &path, 200).await;
        d["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["channel"] == "webhook" && x["status"] == "SENT")
    })
    .await;
    assert_eq!(receiver.requests().len(), 1);
}

/// Other nodes' board events are read one after the other, in the order they came: a read
/// that fails drops its event, logged and counted, and the events after it still arrive, in
/// order.
async fn a_remote_board_event_that_cannot_be_read_is_counted_and_the_rest_keep_their_order(
    backend: Backend,
) {
    let (a, b) = TestHub::pair_on_redis(&backend).await;
    let admin = a.user("root", Role::Admin).await;
    let ann = a.user("ann", Role::Client).await;
    let project = a.project("BRD", &[&admin, &ann]).await;
    let ticket = crate::tickets::create_ticket(&a, &ann, project.id.0, "Board").await;
    let id = ticket["id"].as_i64().unwrap();
    // The admin watches the project's board on the other node.
    let mut board = crate::harness::Ws::connect(&b.ws_url(&format!(
        "/ws/projects/{}/tickets/?token={}",
        project.id.0,
        b.token(&admin)
    )))
    .await;
    let hello = board.next_json().await;
    assert_eq!(hello["type"], "connection_established", "{hello}");
    let failures =
        |m: &crate::harness::Metrics| m.total("tickethub_board_remote_read_failures_total");
    let before = failures(&b.metrics().await);
    b.store
        .faults()
        .failed_board_reads
        .store(1, std::sync::atomic::Ordering::SeqCst);
    for i in 0..10 {
        a.post_as(
            &ann,
            &format!("/api/tickets/{id}/comments/"),
            json!({"body": format!("c{i}")}),
            201,
        )
        .await;
    }
    // The first comment's read fails; the nine after it arrive in the order they were made.
    let mut bodies = Vec::new();
    while bodies.len() < 9 {
        let frame = board.next_json().await;
        if frame["type"] == "comment_added" {
            bodies.push(
                frame["data"]["comment"]["body"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    let expected: Vec<String> = (1..10).map(|i| format!("c{i}")).collect();
    assert_eq!(bodies, expected);
    assert!(failures(&b.metrics().await) > before);
}

crate::trials! {
    both: [
        an_inbox_command_whose_actor_is_slow_runs_once_in_its_order,
        a_commit_whose_answer_was_lost_is_not_committed_again,
        a_sent_delivery_whose_record_failed_is_not_sent_again,
        a_failed_escalation_step_holds_back_neither_itself_nor_its_batch,
        a_release_that_fails_is_counted_and_the_row_is_sent_after_its_lease,
        a_remote_board_event_that_cannot_be_read_is_counted_and_the_rest_keep_their_order,
    ],
    tests: [],
    sync: [],
}
