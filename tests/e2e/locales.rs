//! Localised messages end to end, over real SMTP: a person's `locale` and `time_zone`
//! (`PATCH /api/users/me/`) choose the templates their mail is written with and how its times
//! read; the hub's own German templates say each ticket event in German, with what people
//! wrote escaped in HTML; anyone else keeps the English ones.

use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::delivery::quick;
use crate::fakes::{Mail, Smtp};
use crate::harness::{eventually_ok, Backend, Crew, TestHub};

/// A mail, decoded: its subject, its text part and its HTML part.
fn read(mail: &Mail) -> (String, String, String) {
    let parsed = mail_parser::MessageParser::default()
        .parse(mail.data.as_bytes())
        .expect("a mail");
    (
        parsed.subject().unwrap_or_default().to_owned(),
        parsed.body_text(0).unwrap_or_default().into_owned(),
        parsed.body_html(0).unwrap_or_default().into_owned(),
    )
}

/// The mail to `address` whose subject holds `needle`, once it arrives.
async fn mail_about(smtp: &Smtp, address: &str, needle: &str) -> (String, String, String) {
    eventually_ok(
        &format!("a mail about {needle} reaches {address}"),
        || async {
            smtp.mails()
                .iter()
                .filter(|m| m.to.contains(&address.to_owned()))
                .map(read)
                .find(|(subject, _, _)| subject.contains(needle))
                .ok_or_else(|| {
                    let subjects: Vec<String> = smtp.mails().iter().map(|m| read(m).0).collect();
                    format!("{subjects:?}")
                })
        },
    )
    .await
}

async fn patch_me(hub: &TestHub, user: &User, body: Value) -> (u16, Value) {
    let token = hub.token(user);
    hub.call(
        reqwest::Method::PATCH,
        "/api/users/me/",
        Some(&token),
        Some(body),
    )
    .await
}

/// Ann reads German (`de-CH`, falling back to the hub's `de` templates) in Berlin's time;
/// Carol keeps English in UTC. A tag that is no language is refused, `null` clears it.
async fn mail_is_written_in_the_recipient_s_language_and_time_zone(backend: Backend) {
    let smtp = Smtp::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        quick(c);
        c.channels.email.smtp_url = Some(smtp.url());
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let carol = hub.user("carol", Role::Client).await;
    let project = hub.project("WEB", &[&carol, &ann]).await;

    for bad in [json!("deutsch"), json!("de-"), json!("../de"), json!(7)] {
        let (code, said) = patch_me(&hub, &ann, json!({ "locale": bad })).await;
        assert_eq!(code, 400, "{bad}: {said}");
    }
    let (code, me) = patch_me(
        &hub,
        &ann,
        json!({"locale": "de_ch", "time_zone": "Europe/Berlin"}),
    )
    .await;
    assert_eq!(code, 200, "{me}");
    assert_eq!(
        (&me["locale"], &me["time_zone"]),
        (&json!("de-CH"), &json!("Europe/Berlin")),
        "{me}"
    );
    let me = hub.get_as(&carol, "/api/users/me/", 200).await;
    assert_eq!(me["locale"], Value::Null, "{me}");

    let crew = Crew {
        creator: &carol,
        admin: &admin,
        devs: &[&ann],
    };
    let ticket = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({"project": project.id.0, "priority": "HIGH", "title": "Login <fails>"}),
        )
        .await;
    let key = ticket["key"].as_str().unwrap().to_owned();
    let id = ticket["id"].as_i64().unwrap();

    // Ann's assignment, in German.
    let (subject, text, html) = mail_about(&smtp, "ann@example.test", "zugewiesen").await;
    assert_eq!(subject, format!("Ticket zugewiesen: {key} Login <fails>"));
    for line in [
        "Hallo ann display,".to_owned(),
        format!("Sie wurden dem Ticket {key} zugewiesen: Login <fails>"),
        "Priorität: Hoch".to_owned(),
        "Status:    Zugewiesen".to_owned(),
    ] {
        assert!(text.contains(&line), "{line} in {text}");
    }
    // Sent at a time in Berlin, written the German way: `27.11.2026, 20:10 CET`.
    let sent = text
        .lines()
        .find_map(|l| l.strip_prefix("Gesendet am "))
        .unwrap_or_else(|| panic!("no time in {text}"));
    let (date, rest) = sent.split_once(", ").unwrap();
    assert_eq!(date.split('.').count(), 3, "{sent}");
    assert!(rest.ends_with(" CET") || rest.ends_with(" CEST"), "{sent}");
    assert!(html.contains("<html lang=\"de\">"), "{html}");
    assert!(html.contains("Login &lt;fails&gt;"), "{html}");
    assert!(!html.contains("Login <fails>"), "{html}");

    // Carol's, in English.
    let (subject, text, _) = mail_about(&smtp, "carol@example.test", "Ticket Opened").await;
    assert_eq!(subject, format!("Ticket Opened: {key} Login <fails>"));
    assert!(text.contains("Hello carol display,"), "{text}");
    assert!(text.contains("Priority: High"), "{text}");
    // In UTC, the American way: `Nov 27, 2026, 7:10 PM UTC`.
    let sent = text
        .lines()
        .find_map(|l| l.strip_prefix("Sent "))
        .unwrap_or_else(|| panic!("no time in {text}"));
    assert!(
        sent.ends_with(" UTC") && (sent.contains(" PM") || sent.contains(" AM")),
        "{sent}"
    );

    // What a person wrote reaches Ann in German words around it, escaped in HTML.
    hub.post_as(
        &carol,
        &format!("/api/tickets/{id}/comments/"),
        json!({"body": "<b>still</b> broken"}),
        201,
    )
    .await;
    let (subject, text, html) = mail_about(&smtp, "ann@example.test", "Neuer Kommentar").await;
    assert_eq!(subject, format!("Neuer Kommentar: {key} Login <fails>"));
    assert!(
        text.contains(&format!("Neuer Kommentar zu {key}: <b>still</b> broken")),
        "{text}"
    );
    assert!(
        html.contains(&format!("Neuer Kommentar zu {key}: &lt;b&gt;still&lt;")),
        "{html}"
    );
    assert!(!html.contains("<b>still"), "{html}");

    // Cleared, English again.
    let (code, me) = patch_me(&hub, &ann, json!({"locale": null})).await;
    assert_eq!((code, &me["locale"]), (200, &Value::Null), "{me}");
    hub.send(
        &admin,
        &[&ann],
        json!({"title": "Deploy at five", "channels": ["email"]}),
    )
    .await;
    let (_, text, _) = mail_about(&smtp, "ann@example.test", "Deploy at five").await;
    assert!(text.starts_with("Hello ann display,"), "{text}");
}

crate::trials! {
    both: [mail_is_written_in_the_recipient_s_language_and_time_zone],
    tests: [],
    sync: [],
}
