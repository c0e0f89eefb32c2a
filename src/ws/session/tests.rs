//! Unit tests of `session.rs`.

use super::*;
use crate::ws::session::commands::page_limit;
use tokio::time::Instant;

/// A flow as the close it sends: `None` to go on, `Some((code, reason))` to close, and
/// `Some((0, "dropped"))` to drop the connection.
fn closing(flow: Flow) -> Option<(u16, &'static str)> {
    match flow {
        Flow::Continue => None,
        Flow::Close(code, reason) => Some((code.code(), reason)),
        Flow::Drop => Some((0, "dropped")),
    }
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

#[test]
fn a_client_s_close_is_answered_by_its_code_and_reason() {
    let protocol = |why| Some((1002, why));
    let not_sendable = protocol("a close code a client must not send");
    for (payload, answer) in [
        (vec![], Some((1000, ""))),
        (vec![0x03], protocol("a close payload of one byte")),
        (close_payload(1000, b""), Some((1000, ""))),
        (close_payload(1001, b"bye"), Some((1000, ""))),
        (close_payload(1003, b""), Some((1000, ""))),
        (close_payload(1007, b""), Some((1000, ""))),
        (close_payload(1011, b""), Some((1000, ""))),
        (close_payload(3000, b""), Some((1000, ""))),
        (close_payload(4999, b""), Some((1000, ""))),
        (close_payload(0, b""), not_sendable),
        (close_payload(999, b""), not_sendable),
        // Reserved, or only for the endpoint's own use (RFC 6455 §7.4.1).
        (close_payload(1004, b""), not_sendable),
        (close_payload(1005, b""), not_sendable),
        (close_payload(1006, b""), not_sendable),
        (close_payload(1012, b""), not_sendable),
        (close_payload(1015, b""), not_sendable),
        (close_payload(2999, b""), not_sendable),
        (close_payload(5000, b""), not_sendable),
        (close_payload(u16::MAX, b""), not_sendable),
        (
            close_payload(1000, "tschüß 👋".as_bytes()),
            Some((1000, "")),
        ),
        (close_payload(1000, b"\xff"), Some((1007, "invalid UTF-8"))),
        // A character cut short.
        (
            close_payload(1000, &"ü".as_bytes()[..1]),
            Some((1007, "invalid UTF-8")),
        ),
        // The code is checked before the reason.
        (close_payload(999, b"\xff"), not_sendable),
        // A control frame's payload: 125 bytes at most.
        (close_payload(1000, &[b'a'; 123]), Some((1000, ""))),
        (
            close_payload(1000, &[b'a'; 124]),
            protocol("control frame too large"),
        ),
    ] {
        assert_eq!(closing(close_reply(&payload)), answer, "{payload:?}");
    }
}

#[test]
fn a_frame_the_client_got_wrong_closes_the_socket_with_its_code() {
    use WebSocketError::*;
    let protocol = Some((1002, "protocol error"));
    for (error, answer) in [
        (FrameTooLarge, Some((1009, "message too big"))),
        (InvalidUTF8, Some((1007, "invalid UTF-8"))),
        (ReservedBitsNotZero, protocol),
        (ControlFrameFragmented, protocol),
        (PingFrameTooLarge, protocol),
        (InvalidValue, protocol),
        (InvalidFragment, protocol),
        (InvalidContinuationFrame, protocol),
        (InvalidCloseFrame, protocol),
        (InvalidCloseCode, protocol),
    ] {
        let name = format!("{error:?}");
        let flow = read_error(error).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(closing(flow), answer, "{name}");
    }
}

#[test]
fn a_connection_that_is_gone_ends_without_a_close_frame() {
    use WebSocketError::*;
    for error in [
        ConnectionClosed,
        UnexpectedEOF,
        IoError(std::io::ErrorKind::ConnectionReset.into()),
        InvalidStatusCode(500),
    ] {
        let name = format!("{error:?}");
        assert!(read_error(error).is_err(), "{name}");
    }
}

/// What a continuation frame gave: `Ok(None)` for more to come, the whole message, or the
/// close.
type Received = Result<Option<Vec<u8>>, Option<(u16, &'static str)>>;

/// Feeds continuation frames `(payload, fin)` after a first fragment; answers what each
/// one gave.
fn receive(first: Option<&[u8]>, frames: &[(&[u8], bool)], max: usize) -> Vec<Received> {
    let mut fragments = first.map(<[u8]>::to_vec);
    frames
        .iter()
        .map(|(payload, fin)| continue_message(&mut fragments, payload, *fin, max).map_err(closing))
        .collect()
}

#[test]
fn fragments_make_up_one_message_when_the_last_arrives() {
    assert_eq!(
        receive(
            Some(b"{\"type\":"),
            &[(b"\"pi", false), (b"ng\"}", true)],
            100
        ),
        [Ok(None), Ok(Some(b"{\"type\":\"ping\"}".to_vec()))]
    );
    // An empty last fragment ends the message as it stands.
    assert_eq!(
        receive(Some(b"abc"), &[(b"", true)], 3),
        [Ok(Some(b"abc".to_vec()))]
    );
    // A character split across fragments is whole once they are joined.
    let (head, tail) = "€".as_bytes().split_at(1);
    assert_eq!(
        receive(Some(head), &[(tail, true)], 100),
        [Ok(Some("€".as_bytes().to_vec()))]
    );
}

#[test]
fn a_continuation_with_nothing_to_continue_is_a_protocol_error() {
    let stray = || {
        Err(Some((
            1002,
            "a continuation frame with no message to continue",
        )))
    };
    assert_eq!(receive(None, &[(b"x", true)], 100), [stray()]);
    assert_eq!(receive(None, &[(b"", false)], 100), [stray()]);
    // Once a message is complete, the next continuation has nothing to continue.
    assert_eq!(
        receive(Some(b"a"), &[(b"b", true), (b"c", true)], 100),
        [Ok(Some(b"ab".to_vec())), stray()]
    );
}

#[test]
fn a_fragmented_message_may_reach_the_size_limit_but_not_pass_it() {
    let too_big = || Err(Some((1009, "message too big")));
    assert_eq!(
        receive(Some(b"12345"), &[(b"678", false), (b"90", true)], 10),
        [Ok(None), Ok(Some(b"1234567890".to_vec()))]
    );
    assert_eq!(
        receive(Some(b"12345"), &[(b"678", false), (b"901", true)], 10),
        [Ok(None), too_big()]
    );
    assert_eq!(receive(Some(b""), &[(b"x", false)], 0), [too_big()]);
    assert_eq!(
        receive(Some(b""), &[(b"", true)], 0),
        [Ok(Some(Vec::new()))]
    );
}

#[test]
fn a_fragmented_message_that_is_not_utf8_closes_with_1007() {
    let invalid = || Err(Some((1007, "invalid UTF-8")));
    assert_eq!(receive(Some(b"ok "), &[(b"\xc3", true)], 100), [invalid()]);
    assert_eq!(receive(Some(b"\xff"), &[(b"", true)], 100), [invalid()]);
    // Checked only once the message is whole.
    assert_eq!(
        receive(Some(b"\xc3"), &[(b"\xbc", false), (b"\xff", true)], 100),
        [Ok(None), invalid()]
    );
}

#[test]
fn a_page_of_notifications_is_1_to_100_and_20_by_default() {
    let refused = Err(("bad_request", "limit must be between 1 and 100".to_owned()));
    for (asked, answer) in [
        (None, Ok(20)),
        (Some(1), Ok(1)),
        (Some(20), Ok(20)),
        (Some(100), Ok(100)),
        (Some(0), refused.clone()),
        (Some(101), refused.clone()),
        (Some(-1), refused.clone()),
        (Some(i64::MIN), refused.clone()),
        (Some(i64::MAX), refused.clone()),
    ] {
        assert_eq!(page_limit(asked), answer, "{asked:?}");
    }
}

#[test]
fn inbox_changes_elsewhere_become_their_frames() {
    for (update, frame) in [
        (
            Update::Read {
                id: 7,
                is_read: true,
            },
            json!({"type": "notification_updated", "id": 7, "is_read": true}),
        ),
        (
            Update::Read {
                id: 7,
                is_read: false,
            },
            json!({"type": "notification_updated", "id": 7, "is_read": false}),
        ),
        (
            Update::Deleted { id: 8 },
            json!({"type": "notification_updated", "id": 8, "deleted": true}),
        ),
        (
            Update::AllDeleted {
                count: 0,
                ids: vec![],
            },
            json!({"type": "notifications_cleared", "count": 0}),
        ),
        (
            Update::AllRead {
                count: 3,
                ids: vec![1, 2, 3],
                notification_type: Some("comment_added".into()),
                ticket: Some(5),
            },
            json!({"type": "all_marked_read", "count": 3, "notification_type": "comment_added", "ticket": 5}),
        ),
        (
            Update::AllRead {
                count: 1,
                ids: vec![7],
                notification_type: None,
                ticket: None,
            },
            json!({"type": "all_marked_read", "count": 1, "notification_type": null, "ticket": null}),
        ),
    ] {
        assert_eq!(update_frame(update.clone()), frame, "{update:?}");
    }
}

#[test]
fn a_token_clock_in_the_past_rings_now_and_one_ahead_in_that_many_seconds() {
    let now = Utc::now().timestamp();
    // (Unix time, seconds from now the clock rings)
    for (unix, after) in [
        (now - 100, 0),
        (0, 0),
        (i64::MIN, 0),
        (now, 0),
        (now + 30, 30),
        (now + 86_400, 86_400),
    ] {
        let start = Instant::now();
        let ring = instant_at(unix).saturating_duration_since(start).as_secs();
        // The wall clock may tick over a second between the readings.
        assert!(
            ring == after || ring + 1 == after,
            "{unix}: rings in {ring} s, not {after} s"
        );
    }
}
