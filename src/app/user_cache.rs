//! The user cache at start: warmed from the database on a node alone, told of and by the other
//! nodes over the bus on a node with one.

use std::sync::Arc;

use tickethub_actors::ports::Store;
use tickethub_actors::Hub;

/// Reads up to `limit` users into the cache with where each one's notification stream stands,
/// stamped with the news counters taken before the read (see `tickethub_actors::notices`): the
/// sockets that come back after a restart open without a read of their own. Only without a
/// bus: another node's acknowledgements and sent seqs are not heard here, and a cursor read at
/// start could replay what a client already acknowledged there.
pub(super) async fn warm_user_cache(store: &Arc<dyn Store>, hub: &Hub, limit: usize) {
    let Some(cache) = store.user_cache() else {
        return;
    };
    // With the cache off (a zero lifetime) nothing read would be kept.
    if limit == 0 || cache.lifetime().is_zero() {
        return;
    }
    let started = std::time::Instant::now();
    let generation = cache.generation();
    let snapshot = hub.notice_snapshot();
    match store.warm_users(limit).await {
        Ok(read) => {
            let kept = cache.warm(
                generation,
                read.into_iter().map(|(user, cursor)| {
                    let stamp = snapshot.stamp(user.id);
                    (user, cursor, stamp)
                }),
            );
            tracing::info!(
                users = kept,
                ms = started.elapsed().as_millis() as u64,
                "user cache warmed"
            );
            if kept == 0 {
                return;
            }
            // Once no connect can take a cursor read at start: what no connect took is not kept
            // for nothing, and every user connected here is caught up from the database in
            // batched reads. A commit that counted no news here (another process's, one whose
            // outcome its caller never learned) may be missing from a replay that started from
            // a cursor read at start; the pass finds it, as the periodic pass of a node with a
            // bus would.
            let lifetime = cache.lifetime();
            let store = Arc::downgrade(store);
            let hub = hub.clone();
            tokio::spawn(async move {
                tokio::time::sleep(lifetime).await;
                if let Some(cache) = store.upgrade().as_ref().and_then(|s| s.user_cache()) {
                    cache.expire();
                }
                if let Err(e) = hub.catch_up_all(None).await {
                    tracing::warn!(error = %e, "cannot catch the users warmed at start up");
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot warm the user cache: each connect reads its user")
        }
    }
}

/// The user cache hears of the other nodes' writes only through the bus: this node's writes
/// are told to them, and while the bus is broken the cache is bypassed.
pub(super) fn watch_user_cache(
    store: &Arc<dyn tickethub_actors::ports::Store>,
    bus: &Arc<crate::bus::RedisBus>,
) {
    let Some(cache) = store.user_cache() else {
        return;
    };
    let tell = Arc::downgrade(bus);
    cache.on_change(move |user| {
        let bus = tell.upgrade();
        Box::pin(async move {
            if let Some(bus) = bus {
                bus.user_changed(user).await;
            }
        })
    });
    let heard = Arc::downgrade(store);
    bus.on_user_changed(move |user| {
        if let Some(cache) = heard.upgrade().as_ref().and_then(|s| s.user_cache()) {
            cache.forget(user);
        }
    });
    cache.serve_while(bus.listening());
    let store = Arc::downgrade(store);
    bus.on_health(move |up| {
        let Some(store) = store.upgrade() else {
            return;
        };
        if let Some(cache) = store.user_cache() {
            if up {
                cache.trust();
            } else {
                tracing::info!(
                    "the bus is broken: users are read from the database until it is back"
                );
                cache.distrust();
            }
        }
    });
}
