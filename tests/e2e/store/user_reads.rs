//! Users read one by key: a connect's user, a token's user, a send's one recipient missing from
//! the user cache.

use super::{add_user, open};
use crate::harness::{Backend, TestDb};
use tickethub_actors::domain::UserId;

/// A send's one recipient missing from the user cache, and a token's user, are read by key as
/// a connect reads its user (on SQLite's inline reader, on a PostgreSQL held connection): an
/// active user is found, an inactive one is left out of a send but found by id, an unknown id
/// finds nobody, and a later change to the user is seen at once (a write drops the entry).
pub(super) async fn one_user_is_read_by_key_for_a_send_and_a_token(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let store = open(&db).await;
    let ann = add_user(&store, "ann").await;
    let bob = add_user(&store, "bob").await;
    let nobody = UserId(bob.id.0 + 1_000);
    let deactivate = |user: UserId, active: bool| {
        let store = store.clone();
        async move {
            store
                .update_profile(
                    user,
                    tickethub_actors::ports::ProfileChanges {
                        is_active: Some(active),
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .unwrap()
        }
    };
    deactivate(bob.id, false).await;
    assert_eq!(store.active_user_ids(&[ann.id]).await.unwrap(), [ann.id]);
    assert_eq!(store.active_user_ids(&[bob.id]).await.unwrap(), []);
    assert_eq!(store.active_user_ids(&[nobody]).await.unwrap(), []);
    assert_eq!(
        store
            .active_user_ids(&[nobody, bob.id, ann.id])
            .await
            .unwrap(),
        [ann.id]
    );
    assert!(!store.user_by_id(bob.id).await.unwrap().unwrap().is_active);
    assert_eq!(store.user_by_id(nobody).await.unwrap(), None);
    assert_eq!(
        store.user_by_id(ann.id).await.unwrap().unwrap().username,
        "ann"
    );
    // Held in the cache now; a change through the store is seen by the next send.
    deactivate(ann.id, false).await;
    assert_eq!(store.active_user_ids(&[ann.id]).await.unwrap(), []);
    deactivate(bob.id, true).await;
    assert_eq!(store.active_user_ids(&[bob.id]).await.unwrap(), [bob.id]);
}
