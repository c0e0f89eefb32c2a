use super::*;

/// A tab that opens and closes at once, five times over: whatever the batches make of it,
/// its user never leaves without having joined, and once every tab is gone a newcomer sees only
/// who is there.
pub(super) async fn a_tab_that_comes_and_goes_never_leaves_without_having_joined() {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| c.presence_grace_ms = 0).await;
    let (users, p) = crowd(&hub, "FLASH", 2).await;
    let (mut observer, _) = presence(&hub, &users[0], p).await;
    for _ in 0..5 {
        let ws = open(&hub, &users[1], p, "presence").await;
        drop(ws.inner);
    }
    // The room says when the last of those tabs is gone.
    let room = hub.hub.room(ProjectId(p)).expect("the room is live");
    crate::harness::eventually("every flashing tab has left the room", || async {
        let snapshot = ractor::call_t!(
            room,
            tickethub_actors::room::RoomMsg::Snapshot,
            crate::harness::patience_ms()
        )
        .expect("the room answers");
        snapshot.presence_sockets == 1
            && snapshot.members.iter().all(|(id, _, _)| *id != users[1].id)
    })
    .await;
    let (mut late, state) = presence(&hub, &users[0], p).await;
    assert_eq!(user_ids(&state), vec![users[0].id.0], "{state}");
    late.roundtrip().await;
    // The observer heard joins and leaves in pairs; the ping after the newcomer's arrival
    // comes after all of them.
    observer
        .send_json(json!({"type": "ping", "timestamp": 1}))
        .await;
    let mut present = false;
    loop {
        let v = observer.next_json().await;
        if v["type"] == "pong" {
            break;
        }
        assert_eq!(v["type"], "user_status", "{v}");
        match v["action"].as_str() {
            Some("joined") => {
                assert!(!present, "joined twice: {v}");
                present = true;
            }
            Some("left") => {
                assert!(present, "left without joined: {v}");
                present = false;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(!present, "the flashing user is still shown present");
}

/// A tab that comes and goes within one presence batch is announced to nobody: neither
/// `joined` nor `left`. The batch is held open deterministically: the room is kept busy on a
/// Redis that answers nothing (frozen) while the tab's whole life is queued to it, in the
/// messages a socket and its grace timer send (join, leave, grace check); only then is Redis
/// let go. Another user's tab opened afterwards is the marker: its `joined` reaches the
/// observer only once every earlier batch was written.
pub(super) async fn a_tab_that_comes_and_goes_within_one_batch_is_never_announced() {
    use tickethub_actors::connection::{ConnHandle, ConnId};
    use tickethub_actors::room::{RoomMsg, RoomSocket};
    let redis = crate::nodes::RedisServer::start().await;
    let url = redis.url();
    let hub = TestHub::start_with(&Backend::Sqlite, move |c| {
        c.presence_grace_ms = 0;
        c.redis_url = Some(url);
        c.redis_prefix = format!("th-{}", uuid::Uuid::new_v4().simple());
    })
    .await;
    let (users, p) = crowd(&hub, "BLINK", 3).await;
    let (observer_user, flashing, marker) = (&users[0], &users[1], &users[2]);
    let (mut observer, state) = presence(&hub, observer_user, p).await;
    assert_eq!(user_ids(&state), vec![observer_user.id.0], "{state}");
    let room = hub.hub.room(ProjectId(p)).expect("the room is live");

    // While Redis is frozen, a resync keeps the room waiting on it (the room cannot take the
    // next message before it is done), so the tab's join, leave and grace check are all queued
    // behind it, before any flush could be.
    let tab = ConnId(u64::MAX - 7);
    let (conn, _outbound) = ConnHandle::new(tab, 256, 1 << 20);
    let (reply, joined) = ractor::concurrency::oneshot();
    redis.freeze();
    room.send_message(RoomMsg::Resync).unwrap();
    room.send_message(RoomMsg::Join {
        user: flashing.clone(),
        kind: RoomSocket::Presence,
        diff: false,
        conn,
        reply: reply.into(),
    })
    .unwrap();
    room.send_message(RoomMsg::Leave(tab)).unwrap();
    room.send_message(RoomMsg::GraceCheck(flashing.id)).unwrap();
    let mut joined = Box::pin(joined);
    let answered_early = futures::FutureExt::now_or_never(&mut joined).is_some();
    redis.thaw();
    assert!(
        !answered_early,
        "the room took the join while Redis was frozen: the batch was not held open"
    );
    tokio::time::timeout(crate::harness::patience(), joined)
        .await
        .expect("the room takes the join once Redis answers")
        .expect("the room answers the join");

    // The marker joins; everything the observer hears before it is about nobody else.
    let (_marker_tab, _) = presence(&hub, marker, p).await;
    loop {
        let v = observer.next_json().await;
        match v["type"].as_str() {
            Some("user_status") if v["user_id"] == marker.id.0 => {
                assert_eq!(v["action"], "joined", "{v}");
                break;
            }
            Some("presence_state") => assert!(
                !user_ids(&v).contains(&flashing.id.0),
                "the flashing tab is shown present: {v}"
            ),
            _ => panic!("the observer heard of something else than the marker: {v}"),
        }
    }
    nothing_more(&mut observer).await;
    // Nor does a newcomer see the flashing user, and the room holds nobody of theirs.
    let (_late, state) = presence(&hub, observer_user, p).await;
    assert_eq!(
        user_ids(&state),
        vec![observer_user.id.0, marker.id.0],
        "{state}"
    );
    let snapshot = ractor::call_t!(room, RoomMsg::Snapshot, crate::harness::patience_ms())
        .expect("the room answers");
    assert!(
        snapshot.members.iter().all(|(id, _, _)| *id != flashing.id),
        "{:?}",
        snapshot.members
    );
}
