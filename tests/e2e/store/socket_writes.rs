//! The timelines' records of what was written to each user's sockets.

use super::*;

/// The timelines' runs of socket writes come in batches of a row per user: a batch larger than
/// the part SQLite's writer thread writes in one turn lands whole, each row as given (times to
/// the millisecond, the node), whatever order the users came in.
pub(super) async fn socket_write_runs_of_many_users_are_recorded_whole_in_parts(backend: Backend) {
    use tickethub_actors::ports::Pushed;
    let db = TestDb::create(&backend).await;
    let store = open(&db).await;
    let (a, b) = (add_user(&store, "ann").await, add_user(&store, "bob").await);
    let committed = store
        .commit_notifications(
            vec![general_draft(a.id, "a1"), general_draft(b.id, "b1")],
            None,
        )
        .await
        .unwrap();
    let id_of = |user: UserId| committed.iter().find(|n| n.user_id == user).unwrap().id;
    let start: chrono::DateTime<chrono::Utc> = "2026-01-01T00:00:00.123Z".parse().unwrap();
    // 130 runs of ann's and 70 of bob's, interleaved: three parts and a bit.
    let pushes: Vec<Pushed> = (0..200i64)
        .map(|i| Pushed {
            user: if i % 3 == 2 || i >= 190 { b.id } else { a.id },
            first_seq: 1,
            last_seq: 1 + i,
            sockets: i + 1,
            first_at: start + chrono::Duration::milliseconds(i),
            at: start + chrono::Duration::milliseconds(i + 1),
        })
        .collect();
    let (of_a, of_b) = pushes
        .iter()
        .partition::<Vec<&Pushed>, _>(|p| p.user == a.id);
    assert_eq!((of_a.len(), of_b.len()), (127, 73));
    store.record_pushes("node-7", &pushes).await.unwrap();
    for (user, given) in [(a.id, of_a), (b.id, of_b)] {
        let timeline = store.timeline(id_of(user)).await.unwrap().unwrap();
        let recorded: Vec<(i64, String, i64, i64)> = timeline
            .pushes
            .iter()
            .map(|p| {
                let node = p.node.clone().unwrap_or_default();
                (
                    p.sockets,
                    node,
                    p.first_at.timestamp_millis(),
                    p.at.timestamp_millis(),
                )
            })
            .collect();
        let expected: Vec<(i64, String, i64, i64)> = given
            .iter()
            .map(|p| {
                let node = "node-7".to_owned();
                (
                    p.sockets,
                    node,
                    p.first_at.timestamp_millis(),
                    p.at.timestamp_millis(),
                )
            })
            .collect();
        assert_eq!(recorded, expected, "user {}", user.0);
    }
}
