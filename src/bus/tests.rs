//! Unit tests of `bus.rs`: the text of bus messages, and which of them carry notifications whole.

use super::*;
use tickethub_actors::connection::Update;
use tickethub_actors::domain::ProjectId;
use tickethub_actors::notification::{Notification, TicketSummary, UPDATE_IDS};
use tickethub_actors::ports::BoardNotice;
use tickethub_actors::room::{BoardAction, PresenceChange, PresenceEntry};
use tickethub_actors::ticket_domain::TicketId;

#[test]
fn messages_round_trip_and_skip_their_own_node() {
    let events = [
        BusEvent::Committed(vec![(UserId(1), 5), (UserId(22), 7)]),
        BusEvent::Inbox(
            UserId(3),
            Update::Read {
                id: 9,
                is_read: true,
            },
        ),
        BusEvent::Inbox(UserId(3), Update::Deleted { id: 9 }),
        BusEvent::Inbox(
            UserId(3),
            Update::AllDeleted {
                count: 4,
                ids: vec![1, 2, 3, 4],
            },
        ),
        BusEvent::Inbox(
            UserId(3),
            Update::AllRead {
                count: 600,
                ids: (1..=UPDATE_IDS as i64).collect(),
                notification_type: Some("a|b".into()),
                ticket: Some(2),
            },
        ),
        BusEvent::Ticket(TicketId(12), 4),
        BusEvent::Board {
            project: ProjectId(3),
            ticket: TicketId(12),
            notice: BoardNotice::Update(BoardAction::StatusChanged),
        },
        BusEvent::Board {
            project: ProjectId(3),
            ticket: TicketId(12),
            notice: BoardNotice::Comment(77),
        },
        BusEvent::Board {
            project: ProjectId(3),
            ticket: TicketId(12),
            notice: BoardNotice::Attachments,
        },
        BusEvent::Presence(
            ProjectId(3),
            PresenceChange::Typing {
                user_id: UserId(4),
                ticket_id: TicketId(5),
                is_typing: true,
            },
        ),
        BusEvent::Presence(
            ProjectId(3),
            PresenceChange::Left {
                user_id: UserId(4),
                username: "a|b".into(),
            },
        ),
        BusEvent::Presence(
            ProjectId(3),
            PresenceChange::Joined(PresenceEntry {
                user_id: UserId(4),
                username: "a|b".into(),
                display_name: "A, B".into(),
                viewing: Some(TicketId(9)),
            }),
        ),
        BusEvent::Revoked(ProjectId(3), vec![UserId(4), UserId(5)]),
        BusEvent::SessionsEnded(UserId(6)),
        BusEvent::UserChanged(UserId(7)),
        BusEvent::Resync(std::time::Duration::from_millis(1500)),
    ];
    for event in events {
        let text = encode("a", &event);
        assert_eq!(decode(&text, "b"), Some(event), "{text}");
        assert_eq!(decode(&text, "a"), None);
    }
    assert_eq!(
        encode(
            "a",
            &BusEvent::Committed(vec![(UserId(1), 5), (UserId(22), 7)])
        ),
        "a|n|1:5,22:7"
    );
}

/// A notification with every field set, its times to the nanosecond.
fn notification(user: i64, seq: i64, ticket: bool) -> Arc<Notification> {
    use chrono::TimeZone;
    let at = chrono::Utc
        .timestamp_opt(1_764_000_000, 123_456_789)
        .unwrap();
    Arc::new(Notification {
        id: 40 + seq,
        user_id: UserId(user),
        seq,
        notification_type: if ticket {
            tickethub_actors::event::EventType::TicketAssigned
        } else {
            tickethub_actors::event::EventType::Custom("deploy|done".into())
        },
        title: "Assigned \"WEB-5\" | now".into(),
        message: "Ticket WEB-5 → you, ünïcode".into(),
        ticket: ticket.then(|| TicketSummary {
            id: TicketId(5),
            key: "WEB-5".into(),
            title: "Login fails".into(),
            priority: tickethub_actors::ticket_domain::Priority::High,
            category: tickethub_actors::ticket_domain::Category::Bug,
            status: tickethub_actors::ticket_domain::TicketStatus::InProgress,
            created_by: "Ada L.".into(),
            project_name: "Web".into(),
            created_at: at,
        }),
        data: r#"{"k":[1,"|"]}"#.into(),
        action_url: ticket.then(|| "/tickets/5".into()),
        is_read: !ticket,
        read_at: (!ticket).then_some(at),
        created_at: at,
    })
}

#[test]
fn carried_notifications_round_trip_whole() {
    let event = BusEvent::Notified(vec![notification(1, 5, true), notification(22, 7, false)]);
    let text = encode("a", &event);
    assert!(text.starts_with("a|m|["), "{text}");
    assert_eq!(decode(&text, "b"), Some(event));
    assert_eq!(decode(&text, "a"), None);
    // A value the hub would not write is dropped whole.
    let bad = text.replace("\"HIGH\"", "\"URGENT!\"");
    assert_ne!(bad, text);
    assert_eq!(decode(&bad, "b"), None);
}

#[test]
fn a_few_notifications_go_whole_and_many_or_large_ones_as_pairs() {
    let c = interest::Channels::new("th", false);
    let few = vec![notification(1, 5, true), notification(1, 6, false)];
    assert_eq!(
        c.route(BusEvent::Notified(few.clone())),
        vec![(Some("th:bus:u:1".to_owned()), BusEvent::Notified(few))]
    );
    let many: Vec<Arc<Notification>> = (1..=interest::CARRIED_MOST as i64 + 1)
        .map(|seq| notification(2, seq, false))
        .collect();
    let pairs: Vec<(UserId, i64)> = many.iter().map(|n| (n.user_id, n.seq)).collect();
    assert_eq!(
        c.route(BusEvent::Notified(many)),
        vec![(Some("th:bus:u:2".to_owned()), BusEvent::Committed(pairs))]
    );
    let mut large = (*notification(3, 1, false)).clone();
    large.message = "x".repeat(interest::CARRIED_BYTES);
    assert_eq!(
        c.route(BusEvent::Notified(vec![Arc::new(large)])),
        vec![(
            Some("th:bus:u:3".to_owned()),
            BusEvent::Committed(vec![(UserId(3), 1)])
        )]
    );
    // An announcement goes once to every node, as pairs, in the commit's order.
    let everyone: Vec<Arc<Notification>> = (0..=interest::SPREAD_TO_ALL as i64)
        .rev()
        .map(|user| notification(user, 1, false))
        .collect();
    let pairs: Vec<(UserId, i64)> = everyone.iter().map(|n| (n.user_id, n.seq)).collect();
    assert_eq!(
        c.route(BusEvent::Notified(everyone)),
        vec![(None, BusEvent::Committed(pairs))]
    );
}

#[test]
fn malformed_messages_are_ignored() {
    for text in [
        "garbage",
        "b|m|[{}]",
        "b|m|{",
        "b|x:1",
        "b|n|x:1",
        "b|t|1",
        "b|i|1|{}",
        "b|z|",
        "b|i|x|{\"kind\":\"deleted\",\"id\":1}",
    ] {
        assert_eq!(decode(text, "a"), None, "{text}");
    }
}
