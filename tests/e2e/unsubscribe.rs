//! One-click unsubscribe (RFC 8058) end to end, over a real SMTP server: the email's
//! `List-Unsubscribe` and `List-Unsubscribe-Post` headers, the link in its footer, and a POST
//! shaped as mail clients send it, which switches that type's email off for that person with
//! no login.

use serde_json::json;
use tickethub_actors::domain::Role;

use crate::fakes::{Mail, Smtp};
use crate::harness::{Backend, TestHub};

/// A header of a mail (unfolded), if it has it.
fn header(mail: &Mail, name: &str) -> Option<String> {
    let head = mail.data.split("\r\n\r\n").next().unwrap_or_default();
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// The path and query of the hub's unsubscribe link in a mail's header.
pub(crate) fn link(mail: &Mail) -> String {
    let value = header(mail, "List-Unsubscribe").expect("a List-Unsubscribe header");
    let url = value.trim_start_matches('<').trim_end_matches('>');
    let rest = url
        .strip_prefix("https://hub.example.com")
        .unwrap_or_else(|| panic!("not the hub's https link: {url}"));
    rest.to_owned()
}

/// Every notification email carries the one-click headers and the link in its footer; a
/// page's does not. Opening the link changes nothing; a mail client's POST (form-encoded,
/// then multipart) turns that type's email off for that person only, once and again; a link
/// whose token was changed is refused.
async fn a_one_click_post_turns_that_type_s_email_off(backend: Backend) {
    let smtp = Smtp::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        c.channels.email.smtp_url = Some(smtp.url());
        c.public_url = Some("https://hub.example.com".into());
        c.delivery_backoff_ms = 50;
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let bob = hub.user("bob", Role::Developer).await;
    hub.send(
        &admin,
        &[&ann, &bob],
        json!({"notification_type": "release_notes", "title": "v2 is out",
               "message": "read all about it", "channels": ["email"]}),
    )
    .await;
    let mails = smtp.wait_for(2).await;
    let anns = mails.iter().find(|m| m.to == ["ann@example.test"]).unwrap();
    assert_eq!(
        header(anns, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let path = link(anns);
    assert!(path.starts_with("/unsubscribe/?token="), "{path}");
    assert!(
        anns.text()
            .contains(&format!("https://hub.example.com{path}")),
        "the footer links it: {}",
        anns.text()
    );

    // Opening it shows a button and changes nothing.
    let http = reqwest::Client::new();
    let page = http.get(hub.url(&path)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("release_notes"));
    let email_on = |prefs: &serde_json::Value| prefs["types"]["release_notes"]["email"] != false;
    let prefs = hub
        .get_as(&ann, "/api/notifications/preferences/", 200)
        .await;
    assert!(email_on(&prefs), "{prefs}");

    // A changed token is refused.
    let forged = format!("{path}x");
    let refused = http
        .post(hub.url(&forged))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    // The mail client's one click: a form POST, no cookie, no token of the API.
    for _ in 0..2 {
        let done = http
            .post(hub.url(&path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 200);
    }
    let prefs = hub
        .get_as(&ann, "/api/notifications/preferences/", 200)
        .await;
    assert!(!email_on(&prefs), "{prefs}");
    let prefs = hub
        .get_as(&bob, "/api/notifications/preferences/", 200)
        .await;
    assert!(email_on(&prefs), "bob's stays on: {prefs}");

    // Bob's, as a multipart form (the other shape RFC 8058 allows).
    let bobs = mails.iter().find(|m| m.to == ["bob@example.test"]).unwrap();
    let boundary = "----tickethub-test";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--{boundary}--\r\n"
    );
    let done = http
        .post(hub.url(&link(bobs)))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);

    // The next release notes reach ann in the app only; another type still by email.
    hub.send(
        &admin,
        &[&ann],
        json!({"notification_type": "release_notes", "title": "v3 is out",
               "message": "again", "channels": ["email"]}),
    )
    .await;
    hub.send(
        &admin,
        &[&ann],
        json!({"notification_type": "maintenance", "title": "Downtime at 5",
               "message": "brief", "channels": ["email"]}),
    )
    .await;
    let mails = smtp.wait_for(3).await;
    assert!(
        mails[2].subject().contains("Downtime at 5"),
        "{}",
        mails[2].subject()
    );
    let list = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(list["count"], 3, "{list}");

    // A page's email carries no unsubscribe link: pages are not for switching off here.
    hub.send(
        &admin,
        &[&ann],
        json!({"notification_type": "page", "title": "db down", "message": "now",
               "channels": ["email"]}),
    )
    .await;
    let mails = smtp.wait_for(4).await;
    assert_eq!(header(&mails[3], "List-Unsubscribe"), None);
}

crate::trials! {
    both: [a_one_click_post_turns_that_type_s_email_off],
    tests: [],
    sync: [],
}
