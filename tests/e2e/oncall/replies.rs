use super::*;
use crate::harness::Crew;
use crate::sms_fakes::{Twilio, AUTH_TOKEN};

/// The hub's address as Twilio calls it (`--public-url`): Twilio signs this URL, not the
/// address the test reaches.
const PUBLIC: &str = "https://hub.example.com";

/// The answer to an inbound SMS: its status and its text (the TwiML message, or the refusal;
/// status 0 when the connection broke).
async fn reply(
    hub: &TestHub,
    from: &str,
    body: &str,
    sid: &str,
    token: Option<&str>,
) -> (u16, String) {
    let path = tickethub::http::inbound::TWILIO_SMS;
    reply_at(&hub.url(path), from, body, sid, token).await
}

/// [`reply`] to the hub at `url` (a node's address of the webhook).
async fn reply_at(
    url: &str,
    from: &str,
    body: &str,
    sid: &str,
    token: Option<&str>,
) -> (u16, String) {
    let fields: Vec<(String, String)> = [
        ("AccountSid", crate::sms_fakes::ACCOUNT_SID),
        ("Body", body),
        ("From", from),
        ("MessageSid", sid),
        ("NumMedia", "0"),
        ("To", crate::sms_fakes::FROM),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let path = tickethub::http::inbound::TWILIO_SMS;
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&fields).unwrap());
    if let Some(token) = token {
        let signature =
            tickethub::http::inbound::twilio_signature(token, &format!("{PUBLIC}{path}"), &fields);
        request = request.header("x-twilio-signature", signature);
    }
    // A node killed as it answers answers nothing: status 0.
    let Ok(response) = request.send().await else {
        return (0, String::new());
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if status != 200 {
        return (status, text);
    }
    let message = text
        .split_once("<Message>")
        .and_then(|(_, rest)| rest.split_once("</Message>"))
        .map(|(m, _)| {
            m.replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .unwrap_or_else(|| panic!("not TwiML: {text}"));
    assert!(text.starts_with("<?xml"), "{text}");
    (status, message)
}

/// The code an SMS carries (`… (reply ACK 4F2K): …`).
fn code_in(body: &str) -> String {
    let (_, rest) = body
        .split_once("(reply ACK ")
        .unwrap_or_else(|| panic!("no code in {body:?}"));
    rest[..4].to_owned()
}

/// A page sent by SMS to whoever is on call carries a code; their reply `ACK <code>`, signed
/// by Twilio, marks it read (its escalation stops), shows on its timeline as acknowledged by
/// SMS, and answers in TwiML. A message Twilio sends again is answered the same and acts once;
/// an unsigned or wrongly signed request is refused; a code sent from another person's phone
/// acts on nothing of theirs; `RESOLVE <code>` finishes the page's ticket by the rules of
/// `finish_work`.
pub(super) async fn a_page_is_acknowledged_and_its_ticket_resolved_by_sms_replies(
    backend: Backend,
) {
    let twilio = Twilio::start().await;
    let routing = r#"
[ticket_assigned]
recipients = ["newly_assigned"]
channels = ["websocket", "sms"]

[[escalation]]
name = "pages"
events = ["page"]
steps = [{ after = "1h", unless = "read", also = ["admins"] }]
"#;
    let hub = TestHub::start_routed(&backend, routing, |c| {
        twilio.configure(c);
        c.public_url = Some(PUBLIC.into());
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let bob = hub.user("bob", Role::Developer).await;
    let carol = hub.user("carol", Role::Client).await;
    let (ann_phone, bob_phone) = ("+15551230001", "+15551230002");
    for (who, phone) in [(&ann, ann_phone), (&bob, bob_phone)] {
        let changes = tickethub_actors::ports::ProfileChanges {
            addresses: vec![(tickethub_actors::routing::Channel::Sms, Some(phone.into()))],
            ..Default::default()
        };
        crate::delivery::vouch(&hub, who, changes).await;
    }
    paging::primary(&hub, &admin, &ann, &bob).await;
    hub.post_as(
        &admin,
        SEND,
        json!({"oncall": "primary", "notification_type": "page", "title": "db down",
               "message": "primary is not answering", "channels": ["sms"]}),
        201,
    )
    .await;
    let sms = twilio.wait_for(1).await.remove(0);
    assert_eq!(sms.to(), ann_phone);
    let code = code_in(sms.body());
    assert!(
        sms.body()
            .starts_with(&format!("db down (reply ACK {code}): primary")),
        "{}",
        sms.body()
    );
    let page = hub.get_as(&ann, "/api/notifications/", 200).await["results"][0].clone();
    let id = page["id"].as_i64().unwrap();

    // Refused: no signature, another token's, and a signed request whose fields were changed.
    let ack = format!("ACK {code}");
    assert_eq!(reply(&hub, ann_phone, &ack, "SM0", None).await.0, 403);
    assert_eq!(
        reply(&hub, ann_phone, &ack, "SM0", Some("not-the-token"))
            .await
            .0,
        403
    );
    // Answered, acting on nothing: an unknown number, bob sending ann's code, and help.
    let (status, text) = reply(&hub, "+15559999999", &ack, "SM1", Some(AUTH_TOKEN)).await;
    assert_eq!(
        (status, text.as_str()),
        (
            200,
            "tickethub: this number is not a verified number of anyone here."
        )
    );
    let (_, text) = reply(&hub, bob_phone, &ack, "SM2", Some(AUTH_TOKEN)).await;
    assert_eq!(
        text,
        format!("tickethub: none of your pages has the code {code}.")
    );
    let (_, text) = reply(&hub, ann_phone, "what is this?", "SM3", Some(AUTH_TOKEN)).await;
    assert!(text.starts_with("tickethub: reply ACK <code>"), "{text}");
    let unread = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(unread["results"][0]["is_read"], false, "{unread}");

    // Ann acknowledges: read, its escalation step cancelled, on the timeline.
    let (_, text) = reply(
        &hub,
        ann_phone,
        &ack.to_lowercase(),
        "SM4",
        Some(AUTH_TOKEN),
    )
    .await;
    assert_eq!(text, "tickethub: acknowledged \"db down\".");
    let read = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(read["results"][0]["is_read"], true, "{read}");
    let steps = hub
        .get_as(&admin, "/api/admin/escalations?status=all", 200)
        .await;
    assert_eq!(steps["results"][0]["notification_id"], id, "{steps}");
    assert_eq!(steps["results"][0]["status"], "CANCELLED", "{steps}");
    // Twilio sending the same message again gets the same answer; it acts once.
    let (_, again) = reply(
        &hub,
        ann_phone,
        &ack.to_lowercase(),
        "SM4",
        Some(AUTH_TOKEN),
    )
    .await;
    assert_eq!(again, text);
    let (_, later) = reply(&hub, ann_phone, "1", "SM5", Some(AUTH_TOKEN)).await;
    assert_eq!(later, "tickethub: \"db down\" was acknowledged already.");
    let acknowledged = timeline_events(&hub, &admin, &json!(id), "acknowledged").await;
    assert_eq!(acknowledged.len(), 1, "{acknowledged:?}");
    assert_eq!(acknowledged[0]["via"], "sms");
    assert_eq!(acknowledged[0]["by"]["username"], "ann");
    let metrics = hub.metrics_text().await;
    assert!(
        metrics.contains("tickethub_acknowledgements_total{via=\"sms\"}"),
        "{metrics}"
    );

    // A CRITICAL ticket assigned to ann reaches her by SMS with its code; RESOLVE finishes it
    // once she has started work, as `finish_work` allows, and not before.
    let project = hub.project("OPS", &[&ann, &carol, &admin]).await;
    let crew = Crew {
        creator: &carol,
        admin: &admin,
        devs: &[&ann],
    };
    let ticket = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({"project": project.id.0, "title": "Checkout is down", "priority": "CRITICAL", "category": "BUG"}),
        )
        .await;
    let sms = twilio.wait_for(2).await.remove(1);
    assert_eq!(sms.to(), ann_phone);
    let resolve = format!("RESOLVE {}", code_in(sms.body()));
    let (_, text) = reply(&hub, ann_phone, &resolve, "SM6", Some(AUTH_TOKEN)).await;
    assert_eq!(
        text,
        "tickethub: Cannot finish_work a ticket whose status is ASSIGNED."
    );
    let ticket_path = format!("/api/tickets/{}/", ticket["id"]);
    hub.post_as(&ann, &format!("{ticket_path}start_work/"), json!({}), 200)
        .await;
    let (_, text) = reply(&hub, ann_phone, &resolve, "SM7", Some(AUTH_TOKEN)).await;
    assert_eq!(
        text,
        format!(
            "tickethub: {} is FINISHED.",
            ticket["key"].as_str().unwrap()
        )
    );
    let now = hub.get_as(&carol, &ticket_path, 200).await;
    assert_eq!(now["status"], "FINISHED", "{now}");
    // The first RESOLVE, refused while ASSIGNED, acknowledged the page all the same: the
    // ticket's history says who and how, in its place among the changes (when the hub recorded
    // it), with the status the ticket had then.
    let history = hub
        .get_as(&carol, &format!("{ticket_path}history/"), 200)
        .await;
    let entries = history.as_array().unwrap();
    let acks: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "acknowledgement")
        .collect();
    assert_eq!(acks.len(), 1, "{history}");
    assert_eq!(acks[0]["via"], "sms");
    assert_eq!(acks[0]["actor"], ann.id.0);
    assert_eq!(acks[0]["actor_name"], "ann display");
    assert_eq!(acks[0]["action"], "acknowledge");
    let acked = entries
        .iter()
        .position(|e| e["kind"] == "acknowledgement")
        .unwrap();
    let assigned = entries
        .iter()
        .position(|e| e["action"] == "assign")
        .unwrap();
    assert!(assigned < acked, "{history}");
    let before = entries[..acked]
        .iter()
        .rev()
        .find(|e| e["kind"] == "change")
        .unwrap();
    assert_eq!(acks[0]["status"], before["status"], "{history}");
    assert!(
        entries[..acked]
            .iter()
            .all(|e| e["at"].as_str() <= acks[0]["at"].as_str()),
        "{history}"
    );
}

/// A page pushed to a browser carries an Acknowledge button and its token; posting the token
/// (as the service worker does on a click) marks the page read, shows on its timeline as
/// acknowledged by push, and acts once. A token changed by a byte, or one for a notification
/// that is gone, acts on nothing; a notification that is no page carries no button.
pub(super) async fn a_pushed_page_is_acknowledged_from_its_button(backend: Backend) {
    use crate::webpush::{push_hub, register, vapid, PushService};
    let service = PushService::start().await;
    let hub = push_hub(&backend, |_| {}).await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let sub = service.subscribe(&vapid(&hub).await).await;
    register(&hub, &ann, &sub, 201).await;
    let send = |kind: &str, title: &str| {
        json!({"user_id": ann.id.0, "notification_type": kind, "title": title,
               "message": "m", "channels": ["push"]})
    };
    hub.post_as(&admin, SEND, send("notice", "Lunch"), 201)
        .await;
    hub.post_as(&admin, SEND, send("page", "db down"), 201)
        .await;
    let pushes = crate::harness::eventually_some("both pushes arrive", || async {
        let m = service.messages(&sub).await;
        (m.len() == 2).then_some(m)
    })
    .await;
    let notice = pushes.iter().find(|p| p["title"] == "Lunch").unwrap();
    assert!(
        notice.get("ack").is_none() && notice.get("actions").is_none(),
        "{notice}"
    );
    let page = pushes.iter().find(|p| p["title"] == "db down").unwrap();
    assert_eq!(
        page["actions"],
        json!([{"action": "ack", "title": "Acknowledge"}]),
        "{page}"
    );
    assert_eq!(page["ack"]["url"], "/api/inbound/push/ack/");
    let seq = page["seq"].as_i64().unwrap();
    assert_eq!(
        page["ack"]["code"],
        tickethub_actors::reply::code(seq),
        "{page}"
    );
    let token = page["ack"]["token"].as_str().unwrap().to_owned();
    let id = page["notification_id"].as_i64().unwrap();

    let ack = |token: String| {
        let hub = &hub;
        async move {
            hub.post("/api/inbound/push/ack/", None, json!({"token": token}))
                .await
        }
    };
    // Changed by a byte: refused.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let (status, answer) = ack(String::from_utf8(forged).unwrap()).await;
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = ack(token.clone()).await;
    assert_eq!(
        (status, answer.clone()),
        (200, json!({"notification_id": id, "acknowledged": true})),
        "{answer}"
    );
    let (status, answer) = ack(token.clone()).await;
    assert_eq!(
        (status, answer),
        (200, json!({"notification_id": id, "acknowledged": false}))
    );
    let inbox = hub.get_as(&ann, "/api/notifications/", 200).await;
    let read = inbox["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(read["is_read"], true, "{read}");
    let acknowledged = timeline_events(&hub, &admin, &json!(id), "acknowledged").await;
    let vias: Vec<&Value> = acknowledged.iter().map(|e| &e["via"]).collect();
    assert_eq!(vias, [&json!("push")], "{acknowledged:?}");
    // Gone: nothing to acknowledge.
    let (status, _) = hub
        .call(
            Method::DELETE,
            &format!("/api/notifications/{id}/"),
            Some(&hub.token(&ann)),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(ack(token).await.0, 404);
}

/// Two nodes on one database: a page sent through one is acknowledged by an SMS reply that
/// reaches the other, and its escalation step is cancelled for both (a step is a row either
/// node may fire). The node that took the reply is killed as it answers; Twilio's retry of the
/// same message, through the other node, is answered the same and acknowledges once.
pub(super) async fn an_sms_acknowledgement_holds_across_nodes_and_a_kill_9() {
    let backend = Backend::postgres();
    let twilio = Twilio::start().await;
    let routing = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        routing.path(),
        "[[escalation]]\nname = \"pages\"\nevents = [\"page\"]\n\
         steps = [{ after = \"1h\", unless = \"read\", also = [\"admins\"] }]\n",
    )
    .unwrap();
    let twilio_url = twilio.url();
    let args = [
        "--routing",
        routing.path().to_str().unwrap(),
        "--public-url",
        PUBLIC,
        "--twilio-api-url",
        &twilio_url,
        "--twilio-account-sid",
        crate::sms_fakes::ACCOUNT_SID,
        "--twilio-auth-token",
        AUTH_TOKEN,
        "--twilio-from",
        crate::sms_fakes::FROM,
        "--delivery-poll-ms",
        "50",
    ];
    let mut c = crate::nodes::Cluster::start(&backend, 2, &args).await;
    let admin = c.user("boss", Role::Admin).await;
    let ann = c.user("ann", Role::Developer).await;
    let phone = "+15551230001";
    c.store
        .update_profile(
            ann.id,
            tickethub_actors::ports::ProfileChanges {
                addresses: vec![(tickethub_actors::routing::Channel::Sms, Some(phone.into()))],
                vouched: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    c.post(
        0,
        &admin,
        SEND,
        json!({"user_id": ann.id.0, "notification_type": "page", "title": "db down",
               "message": "m", "channels": ["sms"]}),
        201,
    )
    .await;
    let sms = twilio.wait_for(1).await.remove(0);
    let ack = format!("ACK {}", code_in(sms.body()));
    let path = tickethub::http::inbound::TWILIO_SMS;
    // Node 1 takes the reply and dies as it answers (before, during or after its commit).
    let url = c.nodes[1].url(path);
    let first =
        tokio::spawn(async move { reply_at(&url, phone, &ack, "SM1", Some(AUTH_TOKEN)).await });
    let ack = format!("ACK {}", code_in(sms.body()));
    c.nodes[1].kill().await;
    let _ = first.await;
    // Twilio tries again, and reaches node 0.
    let (status, text) =
        reply_at(&c.nodes[0].url(path), phone, &ack, "SM1", Some(AUTH_TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text == "tickethub: acknowledged \"db down\"."
            || text == "tickethub: \"db down\" was acknowledged already.",
        "{text}"
    );
    // Once more: the answer kept for the message.
    let (_, again) = reply_at(&c.nodes[0].url(path), phone, &ack, "SM1", Some(AUTH_TOKEN)).await;
    assert_eq!(again, text);
    c.nodes[1].restart().await;
    let (status, steps) = c
        .call(
            1,
            reqwest::Method::GET,
            &admin,
            "/api/admin/escalations?status=all",
            None,
        )
        .await;
    assert_eq!(status, 200, "{steps}");
    assert_eq!(steps["results"][0]["status"], "CANCELLED", "{steps}");
    let id = steps["results"][0]["notification_id"].clone();
    let (_, timeline) = c
        .call(
            1,
            reqwest::Method::GET,
            &admin,
            &format!("/api/notifications/{id}/timeline/"),
            None,
        )
        .await;
    let acknowledged: Vec<&Value> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "acknowledged")
        .collect();
    assert_eq!(acknowledged.len(), 1, "{timeline}");
}
