use super::*;
use crate::sms_fakes::{Refusal, Twilio, AUTH_TOKEN, VOICE_FROM};

/// The hub's address as Twilio calls it (`--public-url`).
const PUBLIC: &str = "https://hub.example.com";

/// Twilio posting the key pressed during a call to `action` (the `<Gather>`'s, as the call's
/// script gave it), signed with `token`: the status, and what the caller hears.
async fn pressed(
    hub: &TestHub,
    action: &str,
    to: &str,
    digits: &str,
    token: Option<&str>,
) -> (u16, String) {
    let fields: Vec<(String, String)> = [
        ("AccountSid", crate::sms_fakes::ACCOUNT_SID),
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("Digits", digits),
        ("Direction", "outbound-api"),
        ("From", VOICE_FROM),
        ("To", to),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let path = action
        .strip_prefix(PUBLIC)
        .expect("the action is the hub's");
    let mut request = reqwest::Client::new()
        .post(hub.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&fields).unwrap());
    if let Some(token) = token {
        let signature = tickethub::http::inbound::twilio_signature(token, action, &fields);
        request = request.header("x-twilio-signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let said = text
        .split_once("<Say>")
        .and_then(|(_, rest)| rest.split_once("</Say>"))
        .map_or(text.clone(), |(said, _)| said.to_owned());
    (status, said)
}

/// An unread page escalates to a voice call (a step with `channels = ["voice"]`): Twilio is
/// asked to call the person's verified voice number from the hub's voice number, retried by
/// the outbox's rules when Twilio fails; the call reads the page out and asks for a key, which
/// Twilio posts back signed. 1 acknowledges (read, on the timeline as by voice, once); another
/// key, an unsigned request, and a call to another number acknowledge nothing.
pub(super) async fn an_escalated_page_calls_and_one_key_acknowledges_it(backend: Backend) {
    let twilio = Twilio::start().await;
    let routing = r#"
[[escalation]]
name = "pages"
events = ["page"]
steps = [{ after = "1s", unless = "read", channels = ["voice"] }]
"#;
    let hub = TestHub::start_routed(&backend, routing, |c| {
        twilio.configure(c);
        c.channels.voice.twilio_voice_from = Some(VOICE_FROM.into());
        c.public_url = Some(PUBLIC.into());
        c.delivery_backoff_ms = 50;
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let (ann_phone, bob_phone) = ("+15551230001", "+15551230002");
    let voice = tickethub_actors::routing::Channel::stored("voice").unwrap();
    let changes = tickethub_actors::ports::ProfileChanges {
        addresses: vec![(voice, Some(ann_phone.into()))],
        ..Default::default()
    };
    crate::delivery::vouch(&hub, &ann, changes).await;
    // Twilio fails the first try; the outbox tries again.
    twilio.script([Refusal::unavailable()]);
    hub.send(
        &admin,
        &[&ann],
        json!({"notification_type": "page", "title": "db down & out",
               "message": "primary is not answering", "channels": ["websocket"]}),
    )
    .await;
    let calls = twilio.wait_for(2).await;
    let page = hub.get_as(&ann, "/api/notifications/", 200).await["results"][0].clone();
    let id = page["id"].as_i64().unwrap();
    assert_eq!(calls[0].refused, Some(20500));
    let call = &calls[1];
    assert_eq!(call.refused, None, "{call:?}");
    assert!(call.path.ends_with("/Calls.json"), "{}", call.path);
    assert_eq!(call.to(), ann_phone);
    assert_eq!(call.field("From"), Some(VOICE_FROM));
    let script = call.field("Twiml").unwrap().to_owned();
    assert!(
        script.contains("<Say>This is tickethub. db down &amp; out. primary is not answering."),
        "{script}"
    );
    let action = format!(
        "{PUBLIC}{}?notification={id}&user={}",
        tickethub::http::inbound::TWILIO_VOICE,
        ann.id.0
    );
    assert!(
        script.contains(&format!("action=\"{}\"", action.replace('&', "&amp;"))),
        "{script}"
    );
    assert!(script.contains("Press 1 to acknowledge."), "{script}");

    // Refused or acting on nothing: unsigned, signed with another token, another key, and a
    // call that was not to ann's number.
    assert_eq!(pressed(&hub, &action, ann_phone, "1", None).await.0, 403);
    assert_eq!(
        pressed(&hub, &action, ann_phone, "1", Some("not-the-token"))
            .await
            .0,
        403
    );
    let (status, said) = pressed(&hub, &action, ann_phone, "2", Some(AUTH_TOKEN)).await;
    assert_eq!((status, said.as_str()), (200, "Not acknowledged. Goodbye."));
    let (_, said) = pressed(&hub, &action, bob_phone, "1", Some(AUTH_TOKEN)).await;
    assert_eq!(said, "This call is not to the page's recipient. Goodbye.");
    let unread = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(unread["results"][0]["is_read"], false, "{unread}");

    // 1 acknowledges, once.
    let (status, said) = pressed(&hub, &action, ann_phone, "1", Some(AUTH_TOKEN)).await;
    assert_eq!((status, said.as_str()), (200, "Acknowledged. Goodbye."));
    let read = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(read["results"][0]["is_read"], true, "{read}");
    let (_, said) = pressed(&hub, &action, ann_phone, "1", Some(AUTH_TOKEN)).await;
    assert_eq!(said, "It was acknowledged already. Goodbye.");
    let acknowledged = timeline_events(&hub, &admin, &json!(id), "acknowledged").await;
    assert_eq!(acknowledged.len(), 1, "{acknowledged:?}");
    assert_eq!(acknowledged[0]["via"], "voice");
    // One call placed: the step fired once, and its delivery was retried once.
    assert_eq!(twilio.sent().len(), 2);
}

/// A voice number is verified as any address: the call reads the code out, digit by digit.
pub(super) async fn a_voice_number_is_verified_by_a_call_that_reads_the_code(backend: Backend) {
    let twilio = Twilio::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        twilio.configure(c);
        c.channels.voice.twilio_voice_from = Some(VOICE_FROM.into());
        c.public_url = Some(PUBLIC.into());
    })
    .await;
    let ann = hub.user("ann", Role::Developer).await;
    let (status, me) = hub
        .call(
            Method::PATCH,
            "/api/users/me/",
            Some(&hub.token(&ann)),
            Some(json!({"addresses": {"voice": "+15551230001"}})),
        )
        .await;
    assert_eq!(status, 200, "{me}");
    let call = twilio.wait_for(1).await.remove(0);
    let script = call.field("Twiml").unwrap();
    let digits: String = script
        .split_once("code is ")
        .map(|(_, rest)| rest.split('.').next().unwrap().replace(", ", ""))
        .unwrap_or_else(|| panic!("no code in {script}"));
    assert!(
        digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit()),
        "{script}"
    );
    assert!(!script.contains("<Gather"), "{script}");
    // A channel the hub does not have is refused, naming those it has.
    let wrong = hub
        .post_as(
            &ann,
            "/api/users/me/verify/",
            json!({"channel": "fax", "code": digits}),
            400,
        )
        .await;
    assert!(
        wrong["detail"].as_str().unwrap().contains("`voice`"),
        "{wrong}"
    );
    hub.post_as(
        &ann,
        "/api/users/me/verify/",
        json!({"channel": "voice", "code": digits}),
        200,
    )
    .await;
    let me = hub.get_as(&ann, "/api/users/me/", 200).await;
    assert!(me["addresses"]["voice"]["verified_at"].is_string(), "{me}");
}
