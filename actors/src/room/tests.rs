//! Unit tests of `room.rs`.

use super::*;
use crate::connection::Outbound;
use crate::ticket_domain::{sample_ticket, TicketStatus};

fn socket(id: u64) -> (ConnHandle, Outbound) {
    ConnHandle::new(ConnId(id), 16, 1 << 20)
}

fn update(version: i64) -> RoomEvent {
    let mut ticket = sample_ticket(TicketStatus::Open);
    ticket.version = version;
    RoomEvent::TicketUpdate {
        action: BoardAction::StatusChanged,
        ticket: Arc::new(ticket),
    }
}

#[test]
fn a_board_update_older_than_one_pushed_is_dropped_and_a_batch_is_shared() {
    let mut state = RoomState::new(ProjectId(1));
    let (a, mut ra) = socket(1);
    let (b, mut rb) = socket(2);
    state.board.extend([a, b]);
    state.push_board(&update(3));
    // Read late from another node: an older version after a newer one.
    state.push_board(&update(2));
    state.push_board(&update(3));
    state.push_board(&update(4));
    let versions = |rx: &mut Outbound| {
        let mut out = Vec::new();
        while let Some(ConnectionMsg::Room(batch)) = rx.try_recv() {
            for e in batch.iter() {
                if let RoomEvent::TicketUpdate { ticket, .. } = e.event() {
                    out.push(ticket.version);
                }
            }
        }
        out
    };
    assert_eq!(versions(&mut ra), vec![3, 4]);
    assert_eq!(versions(&mut rb), vec![3, 4]);
    // One allocation for every socket: the batch is shared, not copied.
    let (c, mut rc) = socket(3);
    let (d, mut rd) = socket(4);
    state.board = vec![c, d];
    state.push_board(&update(5));
    let (Some(ConnectionMsg::Room(x)), Some(ConnectionMsg::Room(y))) =
        (rc.try_recv(), rd.try_recv())
    else {
        panic!("both sockets get the update");
    };
    assert!(Arc::ptr_eq(&x, &y));
}

#[test]
fn a_room_remembers_a_bounded_number_of_board_versions() {
    let mut state = RoomState::new(ProjectId(1));
    for id in 0..(BOARD_VERSIONS_KEPT as i64 * 2 + 5) {
        let mut ticket = sample_ticket(TicketStatus::Open);
        ticket.id = crate::ticket_domain::TicketId(id);
        state.push_board(&RoomEvent::TicketUpdate {
            action: BoardAction::Updated,
            ticket: Arc::new(ticket),
        });
        assert!(state.board_versions.len() <= BOARD_VERSIONS_KEPT);
    }
}

#[test]
fn stopped_typers_are_forgotten_once_their_throttle_ran_out() {
    let mut state = RoomState::new(ProjectId(1));
    let long_ago = Instant::now() - Duration::from_secs(60);
    let typing = |active: bool, relayed: Instant| Typing {
        relayed,
        heard: relayed,
        active,
    };
    state.members.insert(
        UserId(1),
        Member {
            username: "u1".into(),
            display_name: String::new(),
            tabs: Vec::new(),
            viewing: None,
            typing: [
                (crate::ticket_domain::TicketId(1), typing(false, long_ago)),
                (crate::ticket_domain::TicketId(2), typing(true, long_ago)),
                (
                    crate::ticket_domain::TicketId(3),
                    typing(false, Instant::now()),
                ),
            ]
            .into_iter()
            .collect(),
            gone_since: None,
        },
    );
    state.forget_stopped_typing(Duration::from_secs(1));
    let mut left: Vec<i64> = state.members[&UserId(1)]
        .typing
        .keys()
        .map(|t| t.0)
        .collect();
    left.sort();
    assert_eq!(
        left,
        [2, 3],
        "a stopped typer past the throttle is forgotten"
    );
}

fn joined(user: i64) -> RoomEvent {
    PresenceChange::Joined(PresenceEntry {
        user_id: UserId(user),
        username: format!("u{user}"),
        display_name: format!("U {user}"),
        viewing: None,
    })
    .event()
}

fn left(user: i64) -> RoomEvent {
    PresenceChange::Left {
        user_id: UserId(user),
        username: format!("u{user}"),
    }
    .event()
}

fn presence_socket(id: u64, user: i64, diff: bool, fresh: bool) -> PresenceSocket {
    PresenceSocket {
        conn: socket(id).0,
        user: UserId(user),
        diff,
        fresh,
    }
}

#[test]
fn a_batch_is_one_message_per_socket_shared_by_sockets_alike() {
    let mut state = RoomState::new(ProjectId(1));
    state.presence = vec![
        presence_socket(1, 1, false, false),
        presence_socket(2, 2, false, false),
        presence_socket(3, 3, true, false),
        presence_socket(4, 4, true, false),
        presence_socket(5, 5, false, true),
        // The typing user's own socket is spared their relay.
        presence_socket(6, 9, false, false),
    ];
    for user in 100..200 {
        state.queue(Skip::Nobody, joined(user));
    }
    state.queue(
        Skip::User(UserId(9)),
        PresenceChange::Typing {
            user_id: UserId(9),
            ticket_id: TicketId(1),
            is_typing: true,
        }
        .event(),
    );
    let present = RoomFrame::new(RoomEvent::PresenceState(Vec::new()));
    let batches: HashMap<usize, Batch> = state.batches(Some(present)).into_iter().collect();
    assert_eq!(batches.len(), 6);
    // One frame per event for seed clients, the same message for both.
    assert_eq!(batches[&0].len(), 101);
    assert!(Arc::ptr_eq(&batches[&0], &batches[&1]));
    // Diff sockets: one diff frame with the 100 joins, then the typing relay.
    assert_eq!(batches[&2].len(), 2);
    assert!(Arc::ptr_eq(&batches[&2], &batches[&3]));
    let RoomEvent::PresenceDiff { joins, leaves } = batches[&2][0].event() else {
        panic!("a diff first");
    };
    assert_eq!((joins.len(), leaves.len()), (100, 0));
    // A socket that just joined gets the state (which says who joined) and the relay.
    assert!(matches!(
        batches[&4][0].event(),
        RoomEvent::PresenceState(_)
    ));
    assert_eq!(batches[&4].len(), 2);
    // The typing user's socket: the joins only.
    assert_eq!(batches[&5].len(), 100);
    // Nothing is left for the next flush, and nobody is fresh any more.
    assert!(!state.flush_due());
}

#[test]
fn a_diff_nets_out_who_came_and_went_within_the_batch() {
    let frames: Vec<Arc<RoomFrame>> = [joined(1), left(1), left(2), joined(2), joined(3), left(4)]
        .into_iter()
        .map(RoomFrame::new)
        .collect();
    let out = with_diff(frames.iter());
    assert_eq!(out.len(), 1);
    let RoomEvent::PresenceDiff { joins, leaves } = out[0].event() else {
        panic!("one diff");
    };
    assert_eq!(
        joins.iter().map(|e| e.user_id.0).collect::<Vec<_>>(),
        vec![3]
    );
    assert_eq!(leaves.iter().map(|(u, _)| u.0).collect::<Vec<_>>(), vec![4]);
    assert!(with_diff([].iter()).is_empty());
}

#[test]
fn a_bigger_room_batches_longer_within_bounds() {
    let mut state = RoomState::new(ProjectId(1));
    assert_eq!(state.batch_interval(), PRESENCE_BATCH);
    state.presence = (0..5_000)
        .map(|i| presence_socket(i, i as i64, false, false))
        .collect();
    assert_eq!(state.batch_interval(), Duration::from_millis(100));
    state.presence = (0..50_000)
        .map(|i| presence_socket(i, i as i64, false, false))
        .collect();
    assert_eq!(state.batch_interval(), PRESENCE_BATCH_MAX);
}

fn entry(user: i64) -> PresenceEntry {
    PresenceEntry {
        user_id: UserId(user),
        username: format!("u{user}"),
        display_name: format!("U {user}"),
        viewing: None,
    }
}

fn said(state: &mut RoomState) -> Vec<String> {
    std::mem::take(&mut state.pending)
        .iter()
        .map(|(f, _)| match f.event() {
            RoomEvent::Presence(PresenceChange::Joined(e)) => format!("+{}", e.user_id.0),
            RoomEvent::Presence(PresenceChange::Left { user_id, .. }) => {
                format!("-{}", user_id.0)
            }
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn the_view_of_other_nodes_follows_their_leases_when_the_bus_missed_it() {
    let mut state = RoomState::new(ProjectId(1));
    state.members.insert(
        UserId(2),
        Member {
            username: "u2".into(),
            display_name: "U 2".into(),
            tabs: vec![(ConnId(1), None)],
            viewing: None,
            typing: HashMap::new(),
            gone_since: None,
        },
    );
    // User 1 is on another node and the bus never said so; user 2 is here as well.
    let t0 = Instant::now();
    let lease = Duration::from_secs(15);
    let patience = Some(lease / 2);
    let at = |thirds: u32| t0 + lease / 3 * thirds;
    RoomActor::reconcile(&mut state, vec![entry(1), entry(2)], at(0), patience);
    assert_eq!(said(&mut state), vec!["+1"]);
    RoomActor::reconcile(&mut state, vec![entry(1), entry(2)], at(1), patience);
    assert!(said(&mut state).is_empty(), "said once");
    // A read that misses a user may be a lease between renewals, and so may one a moment
    // later (a resync reads at any time): nothing yet.
    RoomActor::reconcile(&mut state, vec![entry(2)], at(2), patience);
    RoomActor::reconcile(&mut state, vec![entry(2)], at(2), patience);
    assert!(said(&mut state).is_empty());
    RoomActor::reconcile(&mut state, vec![entry(1), entry(2)], at(3), patience);
    RoomActor::reconcile(&mut state, vec![], at(4), patience);
    assert!(
        said(&mut state).is_empty(),
        "a miss is forgiven once seen again"
    );
    // While leases are spared, misses do not count.
    RoomActor::reconcile(&mut state, vec![], at(6), None);
    assert!(said(&mut state).is_empty());
    RoomActor::reconcile(&mut state, vec![], at(5), patience);
    assert!(said(&mut state).is_empty(), "missed for a third of a lease");
    RoomActor::reconcile(&mut state, vec![], at(6), patience);
    assert_eq!(said(&mut state), vec!["-1"]);
    assert!(state.remote.is_empty());
}

#[test]
fn leases_are_spared_after_a_store_failure_until_a_lease_after_it_answers() {
    let mut state = RoomState::new(ProjectId(1));
    let t0 = Instant::now();
    let lease = Duration::from_secs(15);
    assert!(!state.sparing(t0));
    state.store_answered(t0, lease);
    assert!(!state.sparing(t0), "an answer alone spares nothing");
    state.store_failed(&crate::ports::StoreError::Backend("failover".into()));
    assert!(state.sparing(t0), "spared while the store fails");
    state.store_answered(t0 + lease, lease);
    assert!(state.sparing(t0 + lease + lease / 2));
    assert!(!state.sparing(t0 + lease * 2));
}

#[test]
fn a_user_who_arrived_and_left_within_a_batch_and_came_back_is_still_to_be_announced() {
    let actor = RoomActor {
        bus: None,
        presence: None,
        config: RoomConfig::default(),
    };
    let mut state = RoomState::new(ProjectId(1));
    let member = |tab: u64| Member {
        username: "u2".into(),
        display_name: "U 2".into(),
        tabs: vec![(ConnId(tab), None)],
        viewing: None,
        typing: HashMap::new(),
        gone_since: None,
    };
    // A first tab arrives (its `joined` waits for the flush), and goes: the user departs.
    state.members.insert(UserId(2), member(1));
    state.entering.push(UserId(2));
    actor.depart(&mut state, UserId(2));
    assert!(
        state.entering.is_empty() && state.leaving.is_empty(),
        "came and went: nothing to say"
    );
    // A second tab arrives within the same batch: the flush says `joined`, once.
    state.members.insert(UserId(2), member(2));
    state.entering.push(UserId(2));
    assert_eq!(state.entering, vec![UserId(2)]);
    assert!(state.leaving.is_empty(), "no leave cancels the arrival");
    // A user whose arrival was announced leaves as usual.
    state.entering.clear();
    actor.depart(&mut state, UserId(2));
    assert_eq!(state.leaving.len(), 1);
}
