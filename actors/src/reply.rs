//! Replies to what the hub sent: the short code that names a notification in a reply (`4F2K`),
//! and the commands a reply may carry (`ACK`, `ACK 4F2K`, `1`, `RESOLVE 4F2K`). Pure.
//!
//! A code names one of its recipient's notifications, not a secret: a reply acts only for the
//! person its channel proves it came from (an SMS's signed `From`), and only on their own
//! notifications, so a code from one user never acts for another. It is the notification's
//! `seq` (unique per recipient) passed through a bijection of 20 bits and written in four
//! characters of an alphabet without look-alikes, so that a person's last million
//! notifications have codes of their own and the codes do not count up visibly.

/// The characters of a code: digits and capitals without `0`, `1`, `I` and `O`.
const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

const BITS: u32 = 20;
const MASK: u64 = (1 << BITS) - 1;

/// The code of the notification of this `seq` (its recipient's).
pub fn code(seq: i64) -> String {
    let mut x = (seq as u64) & MASK;
    // A bijection on 20 bits: odd multipliers and xor-shifts, each invertible mod 2^20.
    for _ in 0..2 {
        x = x.wrapping_mul(0x9E3B5) & MASK;
        x ^= x >> 7;
        x = x.wrapping_mul(0x5F1C3) & MASK;
        x ^= x >> 11;
    }
    (0..4)
        .rev()
        .map(|i| ALPHABET[((x >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// Whether a notification is a page, whose messages carry its code: a `page` or a
/// `ticket_escalated` notification, one sent to whoever was on call (`data.oncall`), or one
/// about a CRITICAL ticket.
pub fn is_page(n: &crate::notification::Notification) -> bool {
    matches!(
        n.notification_type.as_str(),
        "page" | crate::policy::ESCALATED
    ) || n
        .ticket
        .as_ref()
        .is_some_and(|t| t.priority == crate::ticket_domain::Priority::Critical)
        || serde_json::from_str::<serde_json::Value>(&n.data)
            .is_ok_and(|d| d.get("oncall").is_some_and(|o| o.is_object()))
}

/// What a reply asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Acknowledge the page of this code, or the latest page without one.
    Ack(Option<String>),
    /// Resolve the ticket of the page of this code (or the latest page's).
    Resolve(Option<String>),
    /// Anything else: the answer is the help text.
    Help,
}

/// Reads a reply's text: its first line, case and spacing aside. `ACK`, `ACK 4F2K`, `1` and
/// `1 4F2K` acknowledge; `RESOLVE` or `RESOLVE 4F2K` resolves; anything else asks for help.
pub fn parse(text: &str) -> Command {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let words: Vec<String> = first
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_uppercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let code = |w: Option<&String>| -> Result<Option<String>, ()> {
        match w {
            None => Ok(None),
            Some(w) if is_code(w) => Ok(Some(w.clone())),
            Some(_) => Err(()),
        }
    };
    match words.as_slice() {
        [verb] | [verb, _] if matches!(verb.as_str(), "ACK" | "1" | "ACKNOWLEDGE") => {
            code(words.get(1)).map_or(Command::Help, Command::Ack)
        }
        [verb] | [verb, _] if matches!(verb.as_str(), "RESOLVE" | "RESOLVED") => {
            code(words.get(1)).map_or(Command::Help, Command::Resolve)
        }
        _ => Command::Help,
    }
}

/// Whether `word` (upper case) is written as a code is.
pub fn is_code(word: &str) -> bool {
    word.len() == 4 && word.bytes().all(|b| ALPHABET.contains(&b))
}

/// What the hub answers a reply it cannot read.
pub const HELP: &str =
    "tickethub: reply ACK <code> to acknowledge a page, or RESOLVE <code> to resolve its ticket. ACK alone acknowledges your latest page.";

/// What a person wrote in an email reply, without what their mail program added: the quoted
/// message (lines starting with `>`, and everything from an attribution such as `On Tue, …
/// wrote:`, `-----Original Message-----` or Outlook's rule and header block on), and the
/// signature (from a `-- ` line on, and a trailing `Sent from my …`). Trimmed.
pub fn written_part(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut kept: Vec<&str> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        let next = lines.get(i + 1).map_or("", |l| l.trim());
        let attribution = |l: &str| {
            (l.starts_with("On ") || l.starts_with("Am ") || l.starts_with("Le "))
                && (l.ends_with("wrote:") || l.ends_with("schrieb:") || l.ends_with("écrit :"))
        };
        let quote_starts = attribution(trimmed)
            // An attribution wrapped onto two lines.
            || (trimmed.starts_with("On ") && !trimmed.ends_with(':') && attribution(&format!("{trimmed} {next}")) && next.ends_with("wrote:"))
            || trimmed.starts_with("-----Original Message-----")
            || (trimmed.starts_with("________________") && next.starts_with("From:"))
            || (trimmed.starts_with("From:") && kept.last().is_some_and(|l| l.trim().is_empty()) && lines[i..].iter().take(5).any(|l| l.trim_start().starts_with("Sent:") || l.trim_start().starts_with("Date:")));
        if quote_starts || *line == "-- " || trimmed == "--" {
            break;
        }
        if trimmed.starts_with('>') {
            continue;
        }
        kept.push(line);
    }
    while kept
        .last()
        .is_some_and(|l| l.trim().is_empty() || l.trim().starts_with("Sent from my "))
    {
        kept.pop();
    }
    kept.join("\n").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_million_consecutive_seqs_have_codes_of_their_own() {
        let mut seen = HashSet::new();
        for seq in 1..=(1 << BITS) {
            let c = code(seq);
            assert!(is_code(&c), "{c}");
            assert!(seen.insert(c), "seq {seq} repeats a code");
        }
        // They do not count up visibly.
        assert_ne!(code(2)[..3], code(3)[..3]);
    }

    #[test]
    fn replies_read_as_people_write_them() {
        let c = code(7);
        assert_eq!(parse("ACK"), Command::Ack(None));
        assert_eq!(parse(" ack \n> quoted"), Command::Ack(None));
        assert_eq!(parse("1"), Command::Ack(None));
        assert_eq!(
            parse(&format!("Ack {}", c.to_lowercase())),
            Command::Ack(Some(c.clone()))
        );
        assert_eq!(parse(&format!("ACK {c}.")), Command::Ack(Some(c.clone())));
        assert_eq!(
            parse(&format!("resolve {c}")),
            Command::Resolve(Some(c.clone()))
        );
        assert_eq!(parse("RESOLVE"), Command::Resolve(None));
        for help in [
            "",
            "hello",
            "ACK ABC",
            "ACK 0000",
            "ACK 4F2K now",
            "STOP",
            "2",
        ] {
            assert_eq!(parse(help), Command::Help, "{help}");
        }
    }
    #[test]
    fn an_email_reply_is_what_its_writer_wrote() {
        let gmail = "Looking at it now, the disk is full.\r\n\r\nOn Tue, 3 Nov 2026 at 09:14, tickethub <noreply@example.com> wrote:\r\n> [PAGE] WEB-42 is down\r\n> reply ACK 4F2K\r\n";
        assert_eq!(written_part(gmail), "Looking at it now, the disk is full.");
        let wrapped = "ack\n\nOn Tue, 3 Nov 2026 at 09:14, tickethub\n<noreply@example.com> wrote:\n> quoted\n";
        assert_eq!(written_part(wrapped), "ack");
        let outlook = "Resolve\n\n________________________________\nFrom: tickethub <noreply@example.com>\nSent: Tuesday\nSubject: page\n\nthe page\n";
        assert_eq!(written_part(outlook), "Resolve");
        let original = "On it.\n-----Original Message-----\nFrom: tickethub\n";
        assert_eq!(written_part(original), "On it.");
        let signed = "First line.\nSecond line.\n\n-- \nAlice Example\nSRE\n";
        assert_eq!(written_part(signed), "First line.\nSecond line.");
        let phone = "ack\n\nSent from my iPhone\n";
        assert_eq!(written_part(phone), "ack");
        let inline = "> the page\nmy answer\n> more\n";
        assert_eq!(written_part(inline), "my answer");
        // A line that merely mentions someone writing stays.
        assert_eq!(
            written_part("On call tonight: Bob wrote the runbook"),
            "On call tonight: Bob wrote the runbook"
        );
    }
}
