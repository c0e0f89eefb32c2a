use super::*;
use crate::fakes::Smtp;
use crate::harness::Crew;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

/// The domain replies go to.
const DOMAIN: &str = "replies.example.test";

/// What the hub's SMTP listener answered a message: its code and its text (the refusal's at
/// `RCPT` or at the end of the message).
async fn mail_reply(hub: &TestHub, from: &str, to: &str, message: &str) -> (u16, String) {
    let addr = hub.smtp_addr.expect("the SMTP listener is on");
    let client = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .build();
    let envelope = Envelope::new(Some(from.parse().unwrap()), vec![to.parse().unwrap()]).unwrap();
    match client.send_raw(&envelope, message.as_bytes()).await {
        Ok(response) => (
            u16::from(response.code()),
            response.message().collect::<Vec<_>>().join(" "),
        ),
        Err(e) => {
            let code = e.status().map_or(0, u16::from);
            (code, e.to_string())
        }
    }
}

/// Says each line to the hub's SMTP listener in turn; answers the code of the greeting and of
/// each answer.
async fn smtp_session(hub: &TestHub, lines: &[&str]) -> Vec<u16> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let addr = hub.smtp_addr.expect("the SMTP listener is on");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    let mut codes = Vec::new();
    let answer = async |read: &mut tokio::io::BufReader<_>| {
        // The last line of a (multi-line) answer has a space after its code.
        loop {
            let mut line = String::new();
            let got = tokio::time::timeout(crate::harness::patience(), read.read_line(&mut line));
            got.await.expect("the listener answers").unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line[..3].parse::<u16>().unwrap_or(0);
            }
        }
    };
    codes.push(answer(&mut read).await);
    for line in lines {
        write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        codes.push(answer(&mut read).await);
    }
    codes
}

/// A reply as a mail program writes it: headers, the text, and the page quoted below.
fn written(from: &str, to: &str, id: &str, text: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: Re: a page\r\nMessage-ID: <{id}@mail.example.test>\r\n\
         Date: Fri, 27 Nov 2026 09:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         {text}\r\n\r\nOn Fri, 27 Nov 2026 at 08:59, tickethub <noreply@tickethub.local> wrote:\r\n\
         > Hello ann,\r\n> ACK to acknowledge\r\n"
    )
}

/// The comments on a ticket: (author's id, text).
async fn comments(hub: &TestHub, admin: &User, ticket: i64) -> Vec<(i64, String)> {
    let listed = hub
        .get_as(admin, &format!("/api/tickets/{ticket}/comments/"), 200)
        .await;
    listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["author"].as_i64().unwrap_or_default(),
                c["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A page's email (a CRITICAL ticket's assignment) goes out with a reply address of its own;
/// the hub's SMTP listener takes replies to it from its recipient only: `ack` acknowledges
/// (read, on the timeline as by email, once however often the reply comes), other text is a
/// comment on the ticket as its writer (without the quoted page and the signature, once),
/// `resolve` finishes the work. Any other address, a forged or foreign token, another sender,
/// and a message over the size cap are refused with SMTP's codes.
pub(super) async fn a_page_is_acknowledged_commented_and_resolved_by_email_replies(
    backend: Backend,
) {
    let smtp = Smtp::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        c.channels.email.smtp_url = Some(smtp.url());
        c.channels.email.inbound_smtp_bind = Some("127.0.0.1:0".parse().unwrap());
        c.channels.email.inbound_email_domain = Some(DOMAIN.into());
        c.channels.email.inbound_smtp_max_bytes = 16 * 1024;
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let bob = hub.user("bob", Role::Developer).await;
    let carol = hub.user("carol", Role::Client).await;
    let project = hub.project("WEB", &[&carol, &ann, &bob]).await;
    let crew = Crew {
        creator: &carol,
        admin: &admin,
        devs: &[&ann],
    };
    let ticket = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({"project": project.id.0, "priority": "CRITICAL", "title": "db down"}),
        )
        .await;
    let ticket_id = ticket["id"].as_i64().unwrap();
    // Ann's assignment is a page (its ticket is CRITICAL): its email says how to answer, and
    // answers to an address of its own.
    let mail = tokio::time::timeout(crate::harness::patience(), async {
        loop {
            let found = smtp.mails().into_iter().find(|m| {
                m.to.contains(&"ann@example.test".to_owned()) && m.text().contains("Reply ACK")
            });
            if let Some(found) = found {
                return found;
            }
            smtp.wait_for(smtp.mails().len() + 1).await;
        }
    })
    .await
    .expect("ann's page arrives by email");
    let text = mail.text();
    let page = hub.get_as(&ann, "/api/notifications/", 200).await["results"][0].clone();
    let code = tickethub_actors::reply::code(page["seq"].as_i64().unwrap());
    assert!(
        text.contains(&format!(
            "Page {code}. Reply ACK to acknowledge it, RESOLVE to resolve WEB-"
        )),
        "{text}"
    );
    let reply_to = mail
        .data
        .lines()
        .find_map(|l| l.strip_prefix("Reply-To: "))
        .unwrap_or_else(|| panic!("no Reply-To in {}", mail.data))
        .trim()
        .to_owned();
    assert!(
        reply_to.starts_with("ack+") && reply_to.ends_with(&format!("@{DOMAIN}")),
        "{reply_to}"
    );
    let page = hub.get_as(&ann, "/api/notifications/", 200).await["results"][0].clone();
    assert_eq!(page["is_read"], false, "{page}");
    let id = page["id"].as_i64().unwrap();
    let (ann_mail, bob_mail) = ("ann@example.test", "bob@example.test");

    // Refused at RCPT: no relay, a forged token (another user's id in ann's), and an address
    // of another hub's key.
    let (code, _) = mail_reply(
        &hub,
        ann_mail,
        "someone@example.org",
        "Subject: x\r\n\r\nack",
    )
    .await;
    assert_eq!(code, 550);
    let (claims, mac) = reply_to.rsplit_once('-').unwrap();
    let mut parts: Vec<&str> = claims.split('-').collect();
    let forged_user = bob.id.0.to_string();
    parts[1] = &forged_user;
    let forged = format!("{}-{mac}", parts.join("-"));
    let (code, text) = mail_reply(&hub, bob_mail, &forged, "Subject: x\r\n\r\nack").await;
    assert_eq!(code, 550, "{text}");
    let foreign = tickethub::channels::email::ReplyKey::derive(b"another hub", DOMAIN).address(
        id,
        ann.id.0,
        chrono::Utc::now() + chrono::TimeDelta::hours(1),
    );
    let (code, _) = mail_reply(&hub, ann_mail, &foreign, "Subject: x\r\n\r\nack").await;
    assert_eq!(code, 550);
    // Refused at the end of the message: bob writing to ann's address, and a message over
    // the cap.
    let (code, text) = mail_reply(
        &hub,
        bob_mail,
        &reply_to,
        &written(bob_mail, &reply_to, "b1", "ack"),
    )
    .await;
    assert_eq!(code, 550, "{text}");
    assert!(
        text.contains("must come from the address the page was sent to"),
        "{text}"
    );
    // Said by hand, to see the session go on after the refusal.
    let big = written(ann_mail, &reply_to, "big", &"x".repeat(20 * 1024));
    let said = smtp_session(
        &hub,
        &[
            "EHLO mail.example.test",
            &format!("MAIL FROM:<{ann_mail}>"),
            &format!("RCPT TO:<{reply_to}>"),
            "DATA",
            &format!("{big}\r\n."),
            "RSET",
            "QUIT",
        ],
    )
    .await;
    assert_eq!(said, [220, 250, 250, 250, 354, 552, 250, 221]);
    // A line past 64 KiB is refused, and the session ends.
    let long = format!("NOOP {}", "x".repeat(70 * 1024));
    let said = smtp_session(&hub, &["EHLO mail.example.test", &long]).await;
    assert_eq!(said, [220, 250, 500]);
    let unread = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(unread["results"][0]["is_read"], false, "{unread}");
    assert!(comments(&hub, &admin, ticket_id).await.is_empty());

    // Ann acknowledges: the page is read, the timeline says by email; the same message sent
    // again is answered the same and acts once.
    let ack = written(ann_mail, &reply_to, "a1", "Ack");
    let (code, said) = mail_reply(&hub, ann_mail, &reply_to, &ack).await;
    assert_eq!(code, 250, "{said}");
    assert!(said.contains("acknowledged \"Ticket Assigned\""), "{said}");
    let read = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(read["results"][0]["is_read"], true, "{read}");
    let (code, again) = mail_reply(&hub, ann_mail, &reply_to, &ack).await;
    assert_eq!((code, &again), (250, &said));
    let acknowledged = timeline_events(&hub, &admin, &json!(id), "acknowledged").await;
    assert_eq!(acknowledged.len(), 1, "{acknowledged:?}");
    assert_eq!(acknowledged[0]["via"], "email");
    assert_eq!(acknowledged[0]["by"]["username"], "ann");

    // Words are a comment, as ann, without the quote and the signature; once.
    let words = written(
        ann_mail,
        &reply_to,
        "c1",
        "The disk is full; cleaning up.\r\n\r\n-- \r\nAnn, SRE",
    );
    let (code, said) = mail_reply(&hub, ann_mail, &reply_to, &words).await;
    assert_eq!(code, 250, "{said}");
    assert!(said.contains("commented on WEB-"), "{said}");
    let (code, _) = mail_reply(&hub, ann_mail, &reply_to, &words).await;
    assert_eq!(code, 250);
    assert_eq!(
        comments(&hub, &admin, ticket_id).await,
        vec![(ann.id.0, "The disk is full; cleaning up.".to_owned())]
    );

    // `resolve` finishes the work, by its rules: refused while the ticket is only assigned,
    // done once ann has started; what follows the command is a comment.
    let early = written(ann_mail, &reply_to, "r0", "resolve");
    let (code, said) = mail_reply(&hub, ann_mail, &reply_to, &early).await;
    assert_eq!(code, 250, "{said}");
    let shown = hub
        .get_as(&admin, &format!("/api/tickets/{ticket_id}/"), 200)
        .await;
    assert_eq!(shown["status"], "ASSIGNED", "{said}");
    hub.post_as(
        &ann,
        &format!("/api/tickets/{ticket_id}/start_work/"),
        json!({}),
        200,
    )
    .await;
    let resolve = written(ann_mail, &reply_to, "r1", "RESOLVE\r\nFreed 40 GB.");
    let (code, said) = mail_reply(&hub, ann_mail, &reply_to, &resolve).await;
    assert_eq!(code, 250, "{said}");
    assert!(said.contains("is FINISHED."), "{said}");
    let shown = hub
        .get_as(&admin, &format!("/api/tickets/{ticket_id}/"), 200)
        .await;
    assert_eq!(shown["status"], "FINISHED", "{shown}");
    let last = comments(&hub, &admin, ticket_id).await.pop().unwrap();
    assert_eq!(last, (ann.id.0, "Freed 40 GB.".to_owned()));
    let counted = hub.metrics().await;
    assert!(
        counted.value("tickethub_acknowledgements_total", &["via=\"email\""]) >= 1.0,
        "the acknowledgement is counted"
    );
}
