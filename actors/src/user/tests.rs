//! Unit tests of `user.rs`.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ractor::concurrency::JoinHandle;

use super::*;
use crate::connection::Outbound;
use crate::domain::{NewUser, Project, ProjectId, Role, User};
use crate::notification::Draft;
use crate::ports::*;
use crate::ports::{EscalationJob, Finish};
use crate::routing::{Channel, EventType, Preferences};
use crate::ticket_domain::{Change, Comment, Ticket, TicketId};
mod store;
use store::*;

/// What a socket was sent, one line per queued message.
fn received(rx: &mut Outbound) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(msg) = rx.try_recv() {
        out.push(match msg {
            ConnectionMsg::Ping => "ping".to_owned(),
            ConnectionMsg::Close(reason) => format!("close {reason:?}"),
            ConnectionMsg::Notification(n) => format!("n{}", n.seq),
            ConnectionMsg::Replay(r) => format!(
                "replay {:?} +{} to {}",
                r.notifications.iter().map(|n| n.seq).collect::<Vec<_>>(),
                r.remaining,
                r.last_seq
            ),
            ConnectionMsg::Updated(u) => format!("{u:?}"),
            ConnectionMsg::Room(_) => "room".to_owned(),
        });
    }
    out
}

#[test]
fn only_changes_that_changed_something_are_told_to_other_sockets() {
    let all_read = UserCommand::MarkAllRead(NotificationFilter {
        notification_type: Some("comment_added".into()),
        ticket: Some(TicketId(5)),
        ..NotificationFilter::default()
    });
    let read = UserCommand::SetRead { id: 3, read: true };
    let found = Some(Box::new(note(1)));
    for (outcome, cmd, update) in [
        (
            CommandOutcome::SetRead {
                id: 3,
                read: true,
                notification: found.clone(),
            },
            &read,
            Some(Update::Read {
                id: 3,
                is_read: true,
            }),
        ),
        (
            CommandOutcome::SetRead {
                id: 3,
                read: false,
                notification: found,
            },
            &read,
            Some(Update::Read {
                id: 3,
                is_read: false,
            }),
        ),
        (
            CommandOutcome::SetRead {
                id: 3,
                read: true,
                notification: None,
            },
            &read,
            None,
        ),
        (
            CommandOutcome::AllRead(vec![4, 9]),
            &all_read,
            Some(Update::AllRead {
                count: 2,
                ids: vec![4, 9],
                notification_type: Some("comment_added".into()),
                ticket: Some(5),
            }),
        ),
        (CommandOutcome::AllRead(Vec::new()), &all_read, None),
        // An outcome that does not answer its command says nothing.
        (CommandOutcome::AllRead(vec![4]), &read, None),
        (
            CommandOutcome::Deleted {
                id: 8,
                success: true,
            },
            &UserCommand::Delete { id: 8 },
            Some(Update::Deleted { id: 8 }),
        ),
        (
            CommandOutcome::Deleted {
                id: 8,
                success: false,
            },
            &UserCommand::Delete { id: 8 },
            None,
        ),
        (
            CommandOutcome::AllDeleted(vec![1, 2, 3]),
            &UserCommand::DeleteAll,
            Some(Update::AllDeleted {
                count: 3,
                ids: vec![1, 2, 3],
            }),
        ),
        (
            CommandOutcome::AllDeleted(Vec::new()),
            &UserCommand::DeleteAll,
            None,
        ),
        (CommandOutcome::Acked(7), &UserCommand::Ack(7), None),
    ] {
        assert_eq!(outcome.update(cmd), update, "{outcome:?}");
    }
}

#[tokio::test]
async fn a_new_socket_replays_from_where_it_asks_or_from_what_was_seen() {
    // (resume, acked, sent, replay cap, replay, greeting's last_seq)
    for (resume, acked, sent, cap, replay, greeting) in [
        (
            Resume::Unacknowledged,
            0,
            0,
            100,
            "replay [1, 2, 3, 4, 5] +0 to 5",
            5,
        ),
        (
            Resume::Unacknowledged,
            2,
            0,
            100,
            "replay [3, 4, 5] +0 to 5",
            5,
        ),
        // What a client acknowledged wins over what was written to its sockets.
        (
            Resume::Unacknowledged,
            2,
            4,
            100,
            "replay [3, 4, 5] +0 to 5",
            5,
        ),
        (Resume::Unacknowledged, 0, 4, 100, "replay [5] +0 to 5", 5),
        (Resume::Unacknowledged, 5, 0, 100, "replay [] +0 to 5", 5),
        (Resume::Unacknowledged, 0, 0, 2, "replay [4, 5] +3 to 5", 5),
        (
            Resume::After(0),
            4,
            4,
            100,
            "replay [1, 2, 3, 4, 5] +0 to 5",
            5,
        ),
        (Resume::After(3), 0, 0, 100, "replay [4, 5] +0 to 5", 5),
        (Resume::After(3), 0, 0, 1, "replay [5] +1 to 5", 5),
        (
            Resume::After(-7),
            0,
            0,
            100,
            "replay [1, 2, 3, 4, 5] +0 to 5",
            5,
        ),
        // A seq from the future (another server's, a stale tab) is held to the newest.
        (Resume::After(99), 0, 0, 100, "replay [] +0 to 5", 5),
        (Resume::After(i64::MAX), 0, 0, 100, "replay [] +0 to 5", 5),
    ] {
        let inbox = Inbox::default();
        inbox.commit(1..=5);
        inbox.held().acked_seq = acked;
        inbox.held().sent_seq = sent;
        let user = start(
            inbox,
            cap,
            Duration::from_secs(3_600),
            Duration::from_secs(3_600),
        )
        .await;
        let (attached, _conn, mut rx) = user.attach(1, resume).await;
        let case = format!("{resume:?}, acked {acked}, sent {sent}, cap {cap}");
        assert_eq!(received(&mut rx), [replay], "{case}");
        assert_eq!(attached.last_seq, greeting, "{case}");
        assert_eq!(attached.connections, 1, "{case}");
    }
}

#[tokio::test]
async fn live_pushes_never_wait_for_an_ack_to_be_written() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let user = patient(Inbox {
        ack_gate: Some(gate.clone()),
        ..Inbox::default()
    })
    .await;
    let (_, _a, mut a) = user.attach(1, Resume::Unacknowledged).await;
    user.inbox.commit(1..=2);
    user.notify([1]);
    let (tx, acked) = ractor::concurrency::oneshot();
    user.send(UserMsg::Command(Box::new(CommandRequest {
        from: Some(ConnId(1)),
        cmd: UserCommand::Ack(1),
        reply: tx.into(),
    })));
    // The ack's write is held up; the next notification goes out all the same.
    user.notify([2]);
    tokio::time::timeout(Duration::from_secs(10), user.snapshot())
        .await
        .expect("the actor waited for the ack's write");
    assert_eq!(received(&mut a), ["replay [] +0 to 0", "n1", "n2"]);
    assert_eq!(user.inbox.held().acked_seq, 0);
    gate.add_permits(1);
    assert_eq!(acked.await.unwrap(), Ok(CommandOutcome::Acked(1)));
    assert_eq!(user.inbox.held().acked_seq, 1);
}

#[tokio::test]
async fn a_user_without_notifications_is_greeted_with_seq_zero() {
    let user = patient(Inbox::default()).await;
    let (attached, _conn, mut rx) = user.attach(1, Resume::Unacknowledged).await;
    assert_eq!(attached.last_seq, 0);
    assert_eq!(received(&mut rx), ["replay [] +0 to 0"]);
}

#[tokio::test]
async fn deleted_notifications_leave_gaps_in_a_replay() {
    let inbox = Inbox::default();
    inbox.commit(1..=4);
    inbox.held().notifications.remove(&2);
    let user = patient(inbox).await;
    let (_, _conn, mut rx) = user.attach(1, Resume::After(0)).await;
    assert_eq!(received(&mut rx), ["replay [1, 3, 4] +0 to 4"]);
}

#[tokio::test]
async fn live_notifications_go_out_in_seq_order_whatever_order_they_arrive_in() {
    let user = patient(Inbox::default()).await;
    let (_, _a, mut a) = user.attach(1, Resume::Unacknowledged).await;
    let (_, _b, mut b) = user.attach(2, Resume::Unacknowledged).await;
    user.inbox.commit(1..=4);
    user.notify([3, 1, 4, 2]);
    let snapshot = user.snapshot().await;
    assert_eq!(
        received(&mut a),
        ["replay [] +0 to 0", "n1", "n2", "n3", "n4"]
    );
    assert_eq!(
        received(&mut b),
        ["replay [] +0 to 0", "n1", "n2", "n3", "n4"]
    );
    assert_eq!(snapshot.delivered_seq, 4);
    assert_eq!(snapshot.connections, [ConnId(1), ConnId(2)]);
    // One already pushed, arriving again, is not pushed twice.
    user.notify([2, 4]);
    user.snapshot().await;
    assert!(received(&mut a).is_empty());
}

#[tokio::test]
async fn a_notification_ahead_of_a_gap_waits_for_it() {
    let user = patient(Inbox::default()).await;
    let (_, _conn, mut rx) = user.attach(1, Resume::Unacknowledged).await;
    user.inbox.commit(1..=3);
    user.notify([1, 3]);
    let snapshot = user.snapshot().await;
    assert_eq!(received(&mut rx), ["replay [] +0 to 0", "n1"]);
    assert_eq!(snapshot.delivered_seq, 1);
    user.notify([2]);
    assert_eq!(user.snapshot().await.delivered_seq, 3);
    assert_eq!(received(&mut rx), ["n2", "n3"]);
}

#[tokio::test]
async fn a_gap_still_open_after_the_wait_is_filled_from_the_database() {
    let user = start(
        Inbox::default(),
        100,
        Duration::from_millis(20),
        Duration::from_secs(3_600),
    )
    .await;
    let (_, _conn, mut rx) = user.attach(1, Resume::Unacknowledged).await;
    // 2 and 3 were committed by another process; 4 was deleted before it was read.
    user.inbox.commit(1..=5);
    user.inbox.held().notifications.remove(&4);
    user.notify([1, 5]);
    assert_eq!(user.snapshot().await.delivered_seq, 1);
    for _ in 0..250 {
        if user.snapshot().await.delivered_seq == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(user.snapshot().await.delivered_seq, 5);
    assert_eq!(
        received(&mut rx),
        ["replay [] +0 to 0", "n1", "n2", "n3", "n5"]
    );
}

#[tokio::test]
async fn another_process_s_commits_are_caught_up_from_the_database() {
    let user = patient(Inbox::default()).await;
    let (_, _conn, mut rx) = user.attach(1, Resume::Unacknowledged).await;
    user.inbox.commit(1..=3);
    user.send(UserMsg::CatchUp(2));
    assert_eq!(user.snapshot().await.delivered_seq, 2);
    assert_eq!(received(&mut rx), ["replay [] +0 to 0", "n1", "n2"]);
    // Nothing new below what was delivered.
    user.send(UserMsg::CatchUp(1));
    user.send(UserMsg::CatchUp(2));
    user.snapshot().await;
    assert!(received(&mut rx).is_empty());
    // Up to 4, of which only 3 exists: 4 is taken as deleted.
    user.send(UserMsg::CatchUp(4));
    assert_eq!(user.snapshot().await.delivered_seq, 4);
    assert_eq!(received(&mut rx), ["n3"]);
}

#[tokio::test]
async fn a_socket_is_not_pushed_live_what_its_replay_already_had() {
    let user = patient(Inbox::default()).await;
    let (_, _a, mut a) = user.attach(1, Resume::Unacknowledged).await;
    // Committed, but its fan-out has yet to arrive as a second tab opens.
    user.inbox.commit(1..=2);
    let (attached, _b, mut b) = user.attach(2, Resume::After(0)).await;
    assert_eq!(attached.last_seq, 2);
    user.notify([1, 2, 3]);
    user.snapshot().await;
    assert_eq!(received(&mut a), ["replay [] +0 to 0", "n1", "n2", "n3"]);
    assert_eq!(received(&mut b), ["replay [1, 2] +0 to 2", "n3"]);
}

#[tokio::test]
async fn a_retried_attach_is_answered_again_without_a_second_replay() {
    let inbox = Inbox::default();
    inbox.commit(1..=2);
    let user = patient(inbox).await;
    let (first, conn, mut rx) = user.attach(1, Resume::After(0)).await;
    let again = user
        .attach_handle(conn.clone(), Resume::After(0))
        .await
        .unwrap();
    assert_eq!((first.connections, first.last_seq), (1, 2));
    assert_eq!((again.connections, again.last_seq), (1, 2));
    assert_eq!(received(&mut rx), ["replay [1, 2] +0 to 2"]);
}

#[tokio::test]
async fn a_change_from_one_socket_is_told_to_the_user_s_other_sockets() {
    let inbox = Inbox::default();
    inbox.commit(1..=3);
    let user = patient(inbox).await;
    let (_, _a, mut a) = user.attach(1, Resume::After(3)).await;
    let (_, _b, mut b) = user.attach(2, Resume::After(3)).await;
    received(&mut a);
    received(&mut b);
    let outcome = user
        .command(Some(1), UserCommand::SetRead { id: 20, read: true })
        .await
        .unwrap();
    let mut read = note(2);
    read.is_read = true;
    assert_eq!(
        outcome,
        CommandOutcome::SetRead {
            id: 20,
            read: true,
            notification: Some(Box::new(read)),
        }
    );
    assert!(received(&mut a).is_empty(), "not told of its own change");
    assert_eq!(received(&mut b), ["Read { id: 20, is_read: true }"]);
    // From REST, every socket hears.
    let outcome = user
        .command(None, UserCommand::Delete { id: 30 })
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CommandOutcome::Deleted {
            id: 30,
            success: true
        }
    );
    assert_eq!(received(&mut a), ["Deleted { id: 30 }"]);
    assert_eq!(received(&mut b), ["Deleted { id: 30 }"]);
    // A change to nothing is told to nobody.
    for cmd in [
        UserCommand::SetRead {
            id: 999,
            read: true,
        },
        UserCommand::Delete { id: 30 },
        UserCommand::Ack(2),
    ] {
        user.command(None, cmd.clone()).await.unwrap();
        assert!(received(&mut a).is_empty(), "{cmd:?}");
        assert!(received(&mut b).is_empty(), "{cmd:?}");
    }
    let outcome = user
        .command(
            Some(2),
            UserCommand::MarkAllRead(NotificationFilter::default()),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CommandOutcome::AllRead(vec![10]));
    assert_eq!(
        received(&mut a),
        ["AllRead { count: 1, ids: [10], notification_type: None, ticket: None }"]
    );
    assert!(received(&mut b).is_empty());
    assert_eq!(
        user.command(None, UserCommand::DeleteAll).await.unwrap(),
        CommandOutcome::AllDeleted(vec![10, 20])
    );
    assert_eq!(received(&mut b), ["AllDeleted { count: 2, ids: [10, 20] }"]);
    assert_eq!(
        user.command(None, UserCommand::Ack(99)).await.unwrap(),
        CommandOutcome::Acked(3)
    );
}

#[tokio::test]
async fn a_change_made_elsewhere_follows_the_notifications_committed_before_it() {
    let user = patient(Inbox::default()).await;
    let (_, _conn, mut rx) = user.attach(1, Resume::Unacknowledged).await;
    received(&mut rx);
    // Committed on another node, its fan-out not yet here, and already read there.
    user.inbox.commit([1]);
    user.send(UserMsg::Changed(Update::Read {
        id: 10,
        is_read: true,
    }));
    assert_eq!(user.snapshot().await.delivered_seq, 1);
    assert_eq!(received(&mut rx), ["n1", "Read { id: 10, is_read: true }"]);
}

#[tokio::test]
async fn a_socket_whose_session_ended_is_dropped_at_the_next_push() {
    let user = patient(Inbox::default()).await;
    let (_, _a, mut a) = user.attach(1, Resume::Unacknowledged).await;
    let (_, _b, b) = user.attach(2, Resume::Unacknowledged).await;
    drop(b);
    user.notify([1]);
    let snapshot = user.snapshot().await;
    assert_eq!(snapshot.connections, [ConnId(1)]);
    assert_eq!(received(&mut a), ["replay [] +0 to 0", "n1"]);
}

#[tokio::test]
async fn the_heartbeat_pings_live_sockets() {
    let user = patient(Inbox::default()).await;
    let (_, conn, mut rx) = user.attach(1, Resume::Unacknowledged).await;
    received(&mut rx);
    user.send(UserMsg::Heartbeat);
    assert_eq!(user.snapshot().await.connections, [ConnId(1)]);
    assert_eq!(received(&mut rx), ["ping"]);
    assert_eq!(conn.shared.kicked(), None);
}

#[tokio::test]
async fn the_heartbeat_closes_silent_sockets_and_the_actor_stops_without_any() {
    let user = start(
        Inbox::default(),
        100,
        Duration::from_secs(3_600),
        Duration::ZERO,
    )
    .await;
    let (_, conn, _rx) = user.attach(1, Resume::Unacknowledged).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    user.send(UserMsg::Heartbeat);
    user.stops().await;
    assert_eq!(conn.shared.kicked(), Some(Disconnect::Idle));
}

#[tokio::test]
async fn closing_tells_every_socket_why_and_shutdown_stops_the_actor() {
    let user = patient(Inbox::default()).await;
    let (_, _a, mut a) = user.attach(1, Resume::Unacknowledged).await;
    let (_, _b, mut b) = user.attach(2, Resume::Unacknowledged).await;
    received(&mut a);
    received(&mut b);
    user.send(UserMsg::Close(Disconnect::Deactivated));
    user.stops().await;
    assert_eq!(received(&mut a), ["close Deactivated"]);
    assert_eq!(received(&mut b), ["close Deactivated"]);

    let user = patient(Inbox::default()).await;
    let (_, _a, mut a) = user.attach(1, Resume::Unacknowledged).await;
    received(&mut a);
    user.send(UserMsg::Shutdown);
    user.stops().await;
    assert_eq!(received(&mut a), ["close Shutdown"]);
}

#[tokio::test]
async fn the_last_socket_leaving_records_what_it_was_sent_and_stops_the_actor() {
    let user = patient(Inbox::default()).await;
    let (_, a, _ra) = user.attach(1, Resume::Unacknowledged).await;
    let (_, b, _rb) = user.attach(2, Resume::Unacknowledged).await;
    a.shared.mark_sent(7);
    b.shared.mark_sent(5);
    user.send(UserMsg::Detach(ConnId(2)));
    assert_eq!(user.snapshot().await.connections, [ConnId(1)]);
    // The highest seq written to any socket, the one that stays included.
    assert_eq!(user.inbox.held().recorded, [(USER, 7)]);
    user.send(UserMsg::Detach(ConnId(1)));
    let inbox = user.inbox.clone();
    user.stops().await;
    assert_eq!(inbox.held().recorded, [(USER, 7)], "nothing new to record");
}

#[tokio::test]
async fn sockets_running_far_ahead_of_the_record_are_recorded_at_once() {
    let user = patient(Inbox::default()).await;
    let (_, conn, _rx) = user.attach(1, Resume::Unacknowledged).await;
    conn.shared.mark_sent(SENT_FLUSH_EVERY - 1);
    user.notify([1]);
    user.snapshot().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        user.inbox.held().recorded.is_empty(),
        "within the allowance"
    );
    conn.shared.mark_sent(SENT_FLUSH_EVERY);
    user.notify([2]);
    user.snapshot().await;
    for _ in 0..100 {
        if !user.inbox.held().recorded.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(user.inbox.held().recorded, [(USER, SENT_FLUSH_EVERY)]);
}

#[tokio::test]
async fn an_actor_that_cannot_read_the_stream_fails_the_attach_and_stops() {
    let inbox = Inbox::default();
    inbox.held().cursor_fails = true;
    let user = patient(inbox).await;
    let (conn, _rx) = ConnHandle::new(ConnId(1), 64, 1 << 20);
    assert!(user
        .attach_handle(conn, Resume::Unacknowledged)
        .await
        .is_err());
    user.stops().await;
}

/// The cursor the inbox holds now, with the notices' stamp taken first, as a handshake reads it.
fn handshake_read(user: &Running) -> CursorHint {
    let stamp = user.notices.stamp(USER);
    let held = user.inbox.held();
    CursorHint {
        cursor: NotificationCursor {
            last_seq: held.last_seq,
            acked_seq: held.acked_seq,
            sent_seq: held.sent_seq,
        },
        stamp,
    }
}

#[tokio::test]
async fn a_starting_actor_takes_the_handshake_s_cursor_while_nothing_reached_the_user() {
    let inbox = Inbox::default();
    inbox.commit(1..=3);
    inbox.held().acked_seq = 1;
    let user = patient(inbox).await;
    let hint = handshake_read(&user);
    // The actor's own read would fail: the attach succeeds only on the handshake's.
    user.inbox.held().cursor_fails = true;
    let (attached, _conn, mut rx) = user.attach_after(hint).await;
    assert_eq!(attached.last_seq, 3);
    assert_eq!(received(&mut rx), ["replay [2, 3] +0 to 3"]);
}

#[tokio::test]
async fn a_starting_actor_reads_the_cursor_again_when_the_user_had_news_since_the_handshake() {
    let inbox = Inbox::default();
    inbox.commit(1..=2);
    let user = patient(inbox).await;
    let hint = handshake_read(&user);
    // Committed after the handshake's read, and counted before any actor was looked up to
    // push it to: no actor was found, so only a fresh read brings it.
    user.inbox.commit(3..=3);
    user.notices.news(USER);
    let (attached, _conn, mut rx) = user.attach_after(hint).await;
    assert_eq!(attached.last_seq, 3);
    assert_eq!(received(&mut rx), ["replay [1, 2, 3] +0 to 3"]);

    // News for everyone (a gap on the bus) does the same.
    let inbox = Inbox::default();
    let user = patient(inbox).await;
    let hint = handshake_read(&user);
    user.inbox.commit(1..=1);
    user.notices.news_for_everyone();
    let (_, _conn, mut rx) = user.attach_after(hint).await;
    assert_eq!(received(&mut rx), ["replay [1] +0 to 1"]);
}

#[tokio::test]
async fn an_actor_that_stops_sends_a_handshake_that_read_before_to_the_database() {
    let user = patient(Inbox::default()).await;
    let (_, conn, _rx) = user.attach(1, Resume::Unacknowledged).await;
    conn.shared.mark_sent(4);
    // A handshake for the user's next socket reads while this actor still owns the last one:
    // the sent seq it reads is older than the one the actor records as the socket leaves.
    let hint = handshake_read(&user);
    assert_eq!(hint.cursor.sent_seq, 0);
    let (inbox, notices) = (user.inbox.clone(), user.notices.clone());
    user.send(UserMsg::Detach(ConnId(1)));
    user.stops().await;
    assert_eq!(inbox.held().recorded, [(USER, 4)]);
    assert!(
        !notices.unchanged(USER, hint.stamp),
        "the next actor must read the recorded sent seq, not the handshake's"
    );
}
