//! Acting on a bounce or a complaint. A notification email's return path names its delivery
//! and recipient (signed, see [`crate::channels::email::reply_address`]), so what comes back
//! to it is about that one message:
//!
//! - a delivery status notification (RFC 3464, `multipart/report; report-type=delivery-status`)
//!   whose recipient `failed` with a permanent status about the address (`5.1.x`: no such
//!   mailbox or domain; `5.2.1`: the mailbox is disabled) is a **hard bounce**: the delivery
//!   fails with the code, the address goes on the suppression list and its owner's address is
//!   marked invalid. Any other failure (`5.2.2` a full mailbox, `5.7.x` a refusal of the
//!   message, a `4.x.x` given up on) fails the delivery only; `delayed` and `delivered`
//!   reports are kept as they are;
//! - a complaint (an abuse report, RFC 5965, `report-type=feedback-report`) puts the address on
//!   the list as well: its owner called the hub's mail spam;
//! - anything else (an out-of-office answer, a bounce in no standard form) is taken and left.
//!
//! Each report is a receipt on the notification's timeline. A bounce is never refused for
//! what it says (that would bounce a bounce); only a database away answers `451`, for the
//! sending server to try again, and the same report twice is kept once.

use tickethub_actors::domain::UserId;
use tickethub_actors::ports::Report;
use tickethub_actors::routing::Channel;

use crate::state::AppState;

/// What a message to a return path says.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A delivery status notification, with its recipients' reports.
    Status(Vec<Recipient>),
    /// A complaint, with its feedback type (`abuse`, `fraud`, …).
    Complaint(String),
    /// Neither.
    Other,
}

/// One recipient's report of a delivery status notification.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recipient {
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded`.
    pub action: String,
    /// The enhanced status code (`5.1.1`).
    pub status: Option<String>,
    /// The remote server's diagnostic, if any.
    pub diagnostic: Option<String>,
    /// The addresses it names: `Final-Recipient` and `Original-Recipient`, in lower case.
    pub addresses: Vec<String>,
}

/// The fields of a report part: blocks of `Name: value` lines (continued by lines that start
/// with white space), split by empty lines; names in lower case.
fn blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let block = blocks.last_mut().expect("one block at least");
        if line.trim().is_empty() {
            if !block.is_empty() {
                blocks.push(Vec::new());
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = block.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            block.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    blocks.retain(|b| !b.is_empty());
    blocks
}

fn field<'a>(block: &'a [(String, String)], name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// An enhanced status code (`class.subject.detail`) at the start of `value`.
fn status_code(value: &str) -> Option<String> {
    let code = value.split_whitespace().next()?;
    let mut parts = code.split('.');
    let class = parts.next()?;
    let well_formed = matches!(class, "2" | "4" | "5")
        && parts.clone().count() == 2
        && parts.all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    well_formed.then(|| code.to_owned())
}

/// Reads a message sent to a return path.
pub fn read(data: &[u8]) -> Found {
    use mail_parser::MimeHeaders;
    let Some(message) = mail_parser::MessageParser::default().parse(data) else {
        return Found::Other;
    };
    for part in &message.parts {
        let Some(kind) = part.content_type() else {
            continue;
        };
        if !kind.ctype().eq_ignore_ascii_case("message") {
            continue;
        }
        let subtype = kind.subtype().unwrap_or_default().to_ascii_lowercase();
        let text = String::from_utf8_lossy(part.contents());
        match subtype.as_str() {
            "delivery-status" | "global-delivery-status" => {
                let recipients = blocks(&text)
                    .iter()
                    .filter_map(|b| {
                        Some(Recipient {
                            action: field(b, "action")?.to_ascii_lowercase(),
                            status: field(b, "status").and_then(status_code),
                            diagnostic: field(b, "diagnostic-code").map(str::to_owned),
                            addresses: ["final-recipient", "original-recipient"]
                                .iter()
                                .filter_map(|f| field(b, f).and_then(named_address))
                                .collect(),
                        })
                    })
                    .collect();
                return Found::Status(recipients);
            }
            "feedback-report" => {
                let kind = blocks(&text)
                    .iter()
                    .find_map(|b| field(b, "feedback-type").map(str::to_ascii_lowercase))
                    .unwrap_or_else(|| "abuse".into());
                return Found::Complaint(kind);
            }
            _ => {}
        }
    }
    Found::Other
}

/// The address of an `rfc822; ann@example.com` field, in lower case.
fn named_address(value: &str) -> Option<String> {
    let (kind, address) = value.split_once(';')?;
    let address = address.trim().trim_matches(['<', '>']).to_ascii_lowercase();
    (kind.trim().eq_ignore_ascii_case("rfc822") && address.contains('@')).then_some(address)
}

/// Whether a status says the address cannot take mail, for good.
fn hard(status: &str) -> bool {
    status.starts_with("5.1.") || status == "5.2.1"
}

/// The report a message makes of its delivery, if any.
pub fn report_of(found: &Found) -> Option<Report> {
    match found {
        Found::Status(recipients) => {
            // One delivery has one address: its worst word counts.
            let rank = |r: &Recipient| match r.action.as_str() {
                "failed" => 3,
                "delayed" => 2,
                "delivered" | "relayed" | "expanded" => 1,
                _ => 0,
            };
            let worst = recipients
                .iter()
                .filter(|r| rank(r) > 0)
                .max_by_key(|r| rank(r))?;
            let failed = worst.action == "failed";
            let status = match worst.action.as_str() {
                "failed" => "bounced",
                "delayed" => "delayed",
                _ => "delivered",
            };
            let suppress = worst
                .status
                .as_deref()
                .filter(|s| failed && hard(s))
                .map(|s| {
                    let said = worst.diagnostic.as_deref().unwrap_or("no diagnostic");
                    ("bounce".to_owned(), format!("bounced: {s} ({said})"))
                });
            Some(Report {
                status: status.into(),
                failed,
                error_code: worst.status.clone(),
                detail: worst.diagnostic.clone(),
                suppress,
                about: worst.addresses.clone(),
            })
        }
        Found::Complaint(kind) => Some(Report {
            status: "complained".into(),
            failed: false,
            error_code: None,
            detail: Some(format!("feedback type: {kind}")),
            suppress: Some(("complaint".into(), format!("complaint: {kind}"))),
            about: Vec::new(),
        }),
        Found::Other => None,
    }
}

/// Acts on a message to the return paths `bounces` (delivery, user) and answers the SMTP line
/// that ends it.
pub async fn answer(state: &AppState, bounces: &[(i64, i64)], data: &[u8]) -> Vec<u8> {
    let found = read(data);
    let Some(report) = report_of(&found) else {
        metrics::counter!("tickethub_inbound_bounces_total", "kind" => "other").increment(1);
        return b"250 2.0.0 tickethub: taken, nothing to do.\r\n".to_vec();
    };
    for (delivery, user) in bounces {
        let at = state.store.now();
        match state
            .store
            .record_report(Channel::Email, *delivery, UserId(*user), &report, at)
            .await
        {
            Ok(Some(receipt)) => {
                metrics::counter!("tickethub_inbound_bounces_total", "kind" => receipt.status.clone())
                    .increment(1);
                if report.suppress.is_some() {
                    tracing::info!(user, delivery, status = %receipt.status, code = ?receipt.error_code, "an email address is suppressed");
                }
            }
            Ok(None) => {
                tracing::debug!(delivery, "a bounce of a delivery this hub no longer has");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot keep a bounce");
                return b"451 4.3.0 The database is unavailable; try again shortly.\r\n".to_vec();
            }
        }
    }
    format!("250 2.0.0 tickethub: {} kept.\r\n", report.status).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bounce as Postfix writes it (RFC 3464's example, shortened).
    const POSTFIX: &str = "From: MAILER-DAEMON@mx.example.test (Mail Delivery System)\r\n\
        To: bounce+1-2-3-abc@replies.example.test\r\n\
        Subject: Undelivered Mail Returned to Sender\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
        \r\n\
        --B\r\n\
        Content-Type: text/plain\r\n\
        \r\n\
        I'm sorry to have to inform you that your message could not be delivered.\r\n\
        --B\r\n\
        Content-Type: message/delivery-status\r\n\
        \r\n\
        Reporting-MTA: dns; mx.example.test\r\n\
        Arrival-Date: Fri, 27 Nov 2026 09:00:00 +0000\r\n\
        \r\n\
        Final-Recipient: rfc822; ann@example.test\r\n\
        Original-Recipient: rfc822;ann@example.test\r\n\
        Action: failed\r\n\
        Status: 5.1.1\r\n\
        Diagnostic-Code: smtp; 550 5.1.1 <ann@example.test>:\r\n\
        \x20   Recipient address rejected: User unknown\r\n\
        \r\n\
        --B\r\n\
        Content-Type: text/rfc822-headers\r\n\
        \r\n\
        Subject: [WEB-1] Ticket assigned\r\n\
        --B--\r\n";

    #[test]
    fn a_hard_bounce_suppresses_with_its_code_and_diagnostic() {
        let found = read(POSTFIX.as_bytes());
        assert_eq!(
            found,
            Found::Status(vec![Recipient {
                action: "failed".into(),
                status: Some("5.1.1".into()),
                diagnostic: Some(
                    "smtp; 550 5.1.1 <ann@example.test>: Recipient address rejected: User unknown"
                        .into()
                ),
                addresses: vec!["ann@example.test".into(), "ann@example.test".into()],
            }])
        );
        let report = report_of(&found).unwrap();
        assert_eq!(report.status, "bounced");
        assert!(report.failed);
        assert_eq!(report.error_code.as_deref(), Some("5.1.1"));
        let (source, reason) = report.suppress.unwrap();
        assert_eq!(source, "bounce");
        assert!(reason.starts_with("bounced: 5.1.1 (smtp; 550"), "{reason}");
    }

    #[test]
    fn a_full_mailbox_fails_the_delivery_but_leaves_the_address() {
        let full = POSTFIX
            .replace("Status: 5.1.1", "Status: 5.2.2 (mailbox full)")
            .replace("User unknown", "Mailbox full");
        let report = report_of(&read(full.as_bytes())).unwrap();
        assert!(report.failed);
        assert_eq!(report.error_code.as_deref(), Some("5.2.2"));
        assert_eq!(report.suppress, None);
        let delayed = POSTFIX
            .replace("Action: failed", "Action: delayed")
            .replace("Status: 5.1.1", "Status: 4.4.1");
        let report = report_of(&read(delayed.as_bytes())).unwrap();
        assert_eq!((report.status.as_str(), report.failed), ("delayed", false));
        assert_eq!(report.suppress, None);
    }

    #[test]
    fn a_complaint_suppresses_and_other_mail_is_nothing() {
        let arf = "From: fbl@isp.example\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n\
            --F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n\
            --F\r\nContent-Type: message/feedback-report\r\n\r\n\
            Feedback-Type: abuse\r\nUser-Agent: ISP-FBL/1.0\r\nVersion: 1\r\n\
            Original-Rcpt-To: <ann@example.test>\r\n\r\n\
            --F\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: x\r\n--F--\r\n";
        let found = read(arf.as_bytes());
        assert_eq!(found, Found::Complaint("abuse".into()));
        let report = report_of(&found).unwrap();
        assert_eq!(report.status, "complained");
        assert!(!report.failed);
        assert_eq!(report.suppress.unwrap().0, "complaint");
        let away = "From: ann@example.test\r\nSubject: Out of office\r\n\r\nBack on Monday.\r\n";
        assert_eq!(read(away.as_bytes()), Found::Other);
        assert_eq!(report_of(&Found::Other), None);
        assert_eq!(read(b"\xff\xfe not mail"), Found::Other);
    }
}
