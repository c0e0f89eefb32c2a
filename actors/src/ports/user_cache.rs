//! Active users held in memory, so that a request's caller and a send's recipients are not
//! read from the database on every call; with them, the projects each is a member of (as
//! asked) and their notification preferences.
//!
//! Only what may never grant access when stale is kept safe here:
//!
//! - A write of a user's row through this node's store drops the entry before the write's
//!   call returns, and is announced on the bus ([`UserCache::on_change`]), whose other nodes
//!   drop theirs as the message arrives.
//! - A fill races a write: a row read before the write but stored after it would outlive the
//!   write. Every drop moves a generation, and a fill is kept only if the generation is the
//!   one it read under.
//! - While the bus is down (or healing), other nodes' writes cannot be heard: the cache is
//!   cleared and bypassed until the node has resubscribed ([`UserCache::distrust`],
//!   [`UserCache::trust`]). A gap on the bus clears it as well.
//! - Only active users are kept: a stale entry can only be one that a write turned inactive
//!   (or changed), never one that a write turned active, so a refusal never outlives an
//!   activation. Likewise only memberships are kept, never their absence: a removal from a
//!   project drops the user as any write of theirs does, and an addition needs no drop.
//! - A user's preferences are dropped with the user, by a write of their switches.
//! - A start's warm-up ([`UserCache::warm`]) keeps, beside each user, where their notification
//!   stream stood, stamped with the news counters taken before the read: a connect takes it
//!   once ([`UserCache::take_cursor`]), and the user's actor believes it only if nothing
//!   reached the user since (see [`crate::notices`]); otherwise it reads the cursor itself.
//! - Every entry ends after a lifetime (the backstop for writes from outside any hub, such as
//!   the command line without `--redis-url`), and the cache holds at most a bounded number.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::domain::{ProjectId, User, UserId};
use crate::notices::Stamp;
use crate::ports::NotificationCursor;
use crate::routing::Preferences;

/// How large, and how long an entry lives.
#[derive(Debug, Clone, Copy)]
pub struct UserCacheOptions {
    /// How long an entry is believed (zero: the cache is off).
    pub ttl: Duration,
    /// The most users held.
    pub capacity: usize,
}

impl Default for UserCacheOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            capacity: 100_000,
        }
    }
}

type OnChange = Arc<dyn Fn(UserId) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;
type Probe = Box<dyn Fn() -> bool + Send + Sync>;

/// See the module's documentation.
pub struct UserCache {
    options: UserCacheOptions,
    state: Mutex<State>,
    /// Off while the bus is down or healing.
    trusted: AtomicBool,
    on_change: OnceLock<OnChange>,
    /// Whether other nodes' writes can be heard right now (the bus's subscriber is connected).
    listening: OnceLock<Probe>,
    /// `tickethub_user_cache_total` by result, looked up in the metrics registry once (the
    /// hub installs its recorder before it opens the store).
    hits: metrics::Counter,
    misses: metrics::Counter,
}

#[derive(Default)]
struct State {
    /// Boxed: the table keeps a pointer per slot, and a table has up to twice the slots of the
    /// users it holds.
    users: HashMap<UserId, (Box<User>, Instant)>,
    /// The projects each user was found a member of, and when.
    memberships: HashMap<UserId, HashMap<ProjectId, Instant>>,
    /// Each user's preferences (the defaults when they set none), and when they were read.
    preferences: HashMap<UserId, (Preferences, Instant)>,
    /// Where each warmed user's notification stream stood, until a connect takes it.
    cursors: HashMap<UserId, ((NotificationCursor, Stamp), Instant)>,
    /// Moves with every drop: a fill read under an older generation is not kept.
    generation: u64,
}

/// The generation a fill read under: see [`UserCache::fill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

impl std::fmt::Debug for UserCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCache")
            .field("options", &self.options)
            .field("trusted", &self.trusted.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl UserCache {
    /// An empty cache, trusted.
    pub fn new(options: UserCacheOptions) -> Self {
        Self {
            options,
            state: Mutex::new(State::default()),
            trusted: AtomicBool::new(true),
            on_change: OnceLock::new(),
            listening: OnceLock::new(),
            hits: metrics::counter!("tickethub_user_cache_total", "result" => "hit"),
            misses: metrics::counter!("tickethub_user_cache_total", "result" => "miss"),
        }
    }

    fn on(&self) -> bool {
        !self.options.ttl.is_zero()
            && self.trusted.load(Ordering::Acquire)
            && self.listening.get().is_none_or(|listening| listening())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-done that matters: a map.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user, if held and not expired.
    pub fn get(&self, id: UserId) -> Option<User> {
        self.get_many(&[id]).0.pop()
    }

    /// Splits `ids` into the users held (in the order asked) and the ids to read.
    pub fn get_many(&self, ids: &[UserId]) -> (Vec<User>, Vec<UserId>) {
        self.split(ids, User::clone)
    }

    /// Splits `ids` into those held (active, in the order asked) and those to read, without
    /// copying the users.
    pub fn held_ids(&self, ids: &[UserId]) -> (Vec<UserId>, Vec<UserId>) {
        self.split(ids, |user| user.id)
    }

    fn split<T>(&self, ids: &[UserId], take: impl Fn(&User) -> T) -> (Vec<T>, Vec<UserId>) {
        self.lookup(|state| &state.users, ids, |_, user| take(user))
    }

    /// Splits `ids` into what `map` holds for them, unexpired (as `take` makes it, in the
    /// order asked), and the ids to read; counts the hits and misses.
    fn lookup<V, T>(
        &self,
        map: impl Fn(&State) -> &HashMap<UserId, (V, Instant)>,
        ids: &[UserId],
        take: impl Fn(UserId, &V) -> T,
    ) -> (Vec<T>, Vec<UserId>) {
        if !self.on() {
            return (Vec::new(), ids.to_vec());
        }
        let now = Instant::now();
        let (mut held, mut missing) = (Vec::with_capacity(ids.len()), Vec::new());
        {
            let state = self.state();
            let map = map(&state);
            for id in ids {
                match map.get(id) {
                    Some((value, at)) if now.duration_since(*at) < self.options.ttl => {
                        held.push(take(*id, value))
                    }
                    _ => missing.push(*id),
                }
            }
        }
        self.hits.increment(held.len() as u64);
        self.misses.increment(missing.len() as u64);
        (held, missing)
    }

    /// Read before reading users from the database, and handed to [`UserCache::fill`] after.
    pub fn generation(&self) -> Generation {
        Generation(self.state().generation)
    }

    /// Keeps the users read from the database under `generation`, unless a drop came between
    /// (then they may predate a write, and are not kept). Inactive users are not kept.
    pub fn fill<'a>(&self, generation: Generation, users: impl IntoIterator<Item = &'a User>) {
        if !self.on() {
            return;
        }
        let now = Instant::now();
        let mut state = self.state();
        if state.generation != generation.0 {
            return;
        }
        for user in users {
            if !user.is_active {
                continue;
            }
            let ttl = self.options.ttl;
            make_room(&mut state.users, self.options.capacity, |(_, at)| {
                now.duration_since(*at) < ttl
            });
            state.users.insert(user.id, (Box::new(user.clone()), now));
        }
    }

    /// [`UserCache::fill`] with where each user's notification stream stood when read, and the
    /// news counters' stamp taken before the read: a start's warm-up, so that the sockets
    /// coming back after a restart open without a read. Returns how many users were kept.
    pub fn warm(
        &self,
        generation: Generation,
        read: impl IntoIterator<Item = (User, NotificationCursor, Stamp)>,
    ) -> usize {
        if !self.on() {
            return 0;
        }
        let now = Instant::now();
        let mut state = self.state();
        if state.generation != generation.0 {
            return 0;
        }
        let (ttl, capacity) = (self.options.ttl, self.options.capacity);
        let mut kept = 0;
        for (user, cursor, stamp) in read {
            if !user.is_active {
                continue;
            }
            make_room(&mut state.users, capacity, |(_, at)| {
                now.duration_since(*at) < ttl
            });
            make_room(&mut state.cursors, capacity, |(_, at)| {
                now.duration_since(*at) < ttl
            });
            state.cursors.insert(user.id, ((cursor, stamp), now));
            state.users.insert(user.id, (Box::new(user), now));
            kept += 1;
        }
        kept
    }

    /// Where a warmed user's notification stream stood, with the stamp taken before it was
    /// read, once: the user's actor keeps it from then on.
    pub fn take_cursor(&self, id: UserId) -> Option<(NotificationCursor, Stamp)> {
        let taken = self.state().cursors.remove(&id);
        taken
            .filter(|(_, at)| self.on() && at.elapsed() < self.options.ttl)
            .map(|(warm, _)| warm)
    }

    /// Drops every entry past its lifetime and gives back the room it held: after a warm-up,
    /// the users that did not come back and the cursors no connect took.
    pub fn expire(&self) {
        let ttl = self.options.ttl;
        let live = |at: &Instant| at.elapsed() < ttl;
        let mut state = self.state();
        state.users.retain(|_, (_, at)| live(at));
        state.users.shrink_to_fit();
        state.cursors.retain(|_, (_, at)| live(at));
        state.cursors.shrink_to_fit();
        state.preferences.retain(|_, (_, at)| live(at));
        state.preferences.shrink_to_fit();
        state.memberships.retain(|_, projects| {
            projects.retain(|_, at| live(at));
            !projects.is_empty()
        });
        state.memberships.shrink_to_fit();
    }

    /// How long an entry is believed.
    pub fn lifetime(&self) -> Duration {
        self.options.ttl
    }

    /// Drops one user, here only (another node's write, heard on the bus).
    pub fn forget(&self, id: UserId) {
        let mut state = self.state();
        state.generation += 1;
        state.users.remove(&id);
        state.memberships.remove(&id);
        state.preferences.remove(&id);
        state.cursors.remove(&id);
    }

    /// A write of this user's row was committed through this node: drops it here and tells
    /// the other nodes, returning once they have dropped it too (as the bus's owner decides:
    /// see [`UserCache::on_change`]).
    pub async fn changed(&self, id: UserId) {
        self.forget(id);
        let tell = self.on_change.get().cloned();
        if let Some(tell) = tell {
            tell(id).await;
        }
    }

    /// Drops every user (a gap on the bus: writes may have gone unheard).
    pub fn clear(&self) {
        let mut state = self.state();
        state.generation += 1;
        state.users.clear();
        state.memberships.clear();
        state.preferences.clear();
        state.cursors.clear();
    }

    /// Whether `user` is held as a member of `project` (`false`: not known here, read it).
    pub fn is_member(&self, user: UserId, project: ProjectId) -> bool {
        if !self.on() {
            return false;
        }
        let now = Instant::now();
        let hit = self
            .state()
            .memberships
            .get(&user)
            .and_then(|projects| projects.get(&project))
            .is_some_and(|at| now.duration_since(*at) < self.options.ttl);
        if hit { &self.hits } else { &self.misses }.increment(1);
        hit
    }

    /// Keeps that `user` is a member of `project`, read under `generation` (see
    /// [`UserCache::fill`]).
    pub fn fill_member(&self, generation: Generation, user: UserId, project: ProjectId) {
        if !self.on() {
            return;
        }
        let now = Instant::now();
        let mut state = self.state();
        if state.generation != generation.0 {
            return;
        }
        let (ttl, capacity) = (self.options.ttl, self.options.capacity);
        make_room(&mut state.memberships, capacity, |projects| {
            projects.retain(|_, at| now.duration_since(*at) < ttl);
            !projects.is_empty()
        });
        state
            .memberships
            .entry(user)
            .or_default()
            .insert(project, now);
    }

    /// Splits `users` into the preferences held and the users whose preferences to read.
    pub fn preferences(&self, users: &[UserId]) -> (HashMap<UserId, Preferences>, Vec<UserId>) {
        let (held, missing) = self.lookup(
            |state| &state.preferences,
            users,
            |id, prefs| (id, prefs.clone()),
        );
        (held.into_iter().collect(), missing)
    }

    /// Keeps the preferences of `users` read under `generation`: `read` holds those who set
    /// any, and the others have the defaults.
    pub fn fill_preferences(
        &self,
        generation: Generation,
        users: &[UserId],
        read: &HashMap<UserId, Preferences>,
    ) {
        if !self.on() {
            return;
        }
        let now = Instant::now();
        let mut state = self.state();
        if state.generation != generation.0 {
            return;
        }
        let ttl = self.options.ttl;
        for user in users {
            make_room(&mut state.preferences, self.options.capacity, |(_, at)| {
                now.duration_since(*at) < ttl
            });
            let prefs = read.get(user).cloned().unwrap_or_default();
            state.preferences.insert(*user, (prefs, now));
        }
    }

    /// The bus is down: other nodes' writes cannot be heard, so nothing is served from here
    /// until [`UserCache::trust`].
    pub fn distrust(&self) {
        self.trusted.store(false, Ordering::Release);
        self.clear();
    }

    /// The bus is back and subscribed: what is read from now on is heard of again.
    pub fn trust(&self) {
        self.clear();
        self.trusted.store(true, Ordering::Release);
    }

    /// How the other nodes are told of this node's writes (set once, by the bus's owner): the
    /// future ends once they have dropped the user, so that the write's call answers only then.
    pub fn on_change(
        &self,
        tell: impl Fn(UserId) -> futures::future::BoxFuture<'static, ()> + Send + Sync + 'static,
    ) {
        let _ = self.on_change.set(Arc::new(tell));
    }

    /// Asked before every use: while it answers `false` (the bus's subscriber is not
    /// connected), nothing is served or kept (set once, by the bus's owner).
    pub fn serve_while(&self, listening: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.listening.set(Box::new(listening));
    }

    /// How many users are held.
    pub fn len(&self) -> usize {
        self.state().users.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room for one more entry in a map at `capacity`: drops what `live` says is over, and if
/// the map is still full, everything (rather than track recency).
fn make_room<V>(map: &mut HashMap<UserId, V>, capacity: usize, live: impl FnMut(&mut V) -> bool) {
    if map.len() < capacity {
        return;
    }
    let mut live = live;
    map.retain(|_, v| live(v));
    if map.len() >= capacity {
        map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn user(id: i64, active: bool) -> User {
        User {
            id: UserId(id),
            username: format!("u{id}"),
            display_name: String::new(),
            addresses: Vec::new(),
            role: Role::Client,
            is_superuser: false,
            is_active: active,
            token_version: 0,
            created_at: chrono::Utc::now(),
        }
    }

    fn cache(ttl: Duration) -> UserCache {
        UserCache::new(UserCacheOptions { ttl, capacity: 4 })
    }

    #[test]
    fn a_fill_read_before_a_write_is_not_kept() {
        let c = cache(Duration::from_secs(60));
        let before = c.generation();
        // A write lands (and drops the user) while the read was under way.
        c.forget(UserId(1));
        c.fill(before, [&user(1, true)]);
        assert!(c.get(UserId(1)).is_none());
        let now = c.generation();
        c.fill(now, [&user(1, true)]);
        assert_eq!(c.get(UserId(1)).unwrap().id, UserId(1));
    }

    #[test]
    fn inactive_users_are_never_kept() {
        let c = cache(Duration::from_secs(60));
        c.fill(c.generation(), [&user(1, false), &user(2, true)]);
        let (held, missing) = c.get_many(&[UserId(1), UserId(2)]);
        assert_eq!(held.len(), 1);
        assert_eq!(missing, vec![UserId(1)]);
    }

    #[test]
    fn entries_expire_and_a_zero_lifetime_turns_the_cache_off() {
        let c = cache(Duration::from_millis(1));
        c.fill(c.generation(), [&user(1, true)]);
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.get(UserId(1)).is_none());
        let off = cache(Duration::ZERO);
        off.fill(off.generation(), [&user(1, true)]);
        assert!(off.is_empty());
    }

    #[test]
    fn a_distrusted_cache_serves_nothing_until_trusted_again() {
        let c = cache(Duration::from_secs(60));
        c.fill(c.generation(), [&user(1, true)]);
        c.distrust();
        assert!(c.get(UserId(1)).is_none());
        c.fill(c.generation(), [&user(1, true)]);
        assert!(c.is_empty(), "nothing is kept while the bus is down");
        c.trust();
        c.fill(c.generation(), [&user(1, true)]);
        assert!(c.get(UserId(1)).is_some());
    }

    #[tokio::test]
    async fn the_size_stays_bounded_and_changes_are_told() {
        let c = cache(Duration::from_secs(60));
        let told = Arc::new(Mutex::new(Vec::new()));
        let sink = told.clone();
        c.on_change(move |id| {
            sink.lock().unwrap().push(id);
            Box::pin(async {})
        });
        for id in 0..10 {
            c.fill(c.generation(), [&user(id, true)]);
            assert!(c.len() <= 4);
        }
        c.changed(UserId(9)).await;
        c.forget(UserId(8));
        assert_eq!(*told.lock().unwrap(), vec![UserId(9)]);
        assert!(c.get(UserId(9)).is_none());
    }

    #[test]
    fn a_warmed_cursor_is_taken_once_and_goes_with_its_user() {
        let c = cache(Duration::from_secs(60));
        let notices = crate::notices::Notices::default();
        let stamp = notices.stamp(UserId(1));
        let cursor = NotificationCursor {
            last_seq: 5,
            acked_seq: 3,
            sent_seq: 4,
        };
        let read = |id| (user(id, id != 3), cursor, stamp);
        assert_eq!(c.warm(c.generation(), [read(1), read(2), read(3)]), 2);
        assert!(c.get(UserId(1)).is_some(), "the users are held too");
        assert_eq!(c.take_cursor(UserId(1)), Some((cursor, stamp)));
        assert_eq!(c.take_cursor(UserId(1)), None, "taken once");
        assert_eq!(
            c.take_cursor(UserId(3)),
            None,
            "an inactive user is not kept"
        );
        c.forget(UserId(2));
        assert_eq!(c.take_cursor(UserId(2)), None, "dropped with its user");
        // A warm-up read before a drop keeps nothing, as a fill does.
        let before = c.generation();
        c.forget(UserId(9));
        assert_eq!(c.warm(before, [read(4)]), 0);
        assert!(c.take_cursor(UserId(4)).is_none());
        // Nor does it outlive the lifetime, or serve while the bus is down.
        let short = cache(Duration::from_millis(1));
        short.warm(short.generation(), [read(1), read(2)]);
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.take_cursor(UserId(1)).is_none());
        short.expire();
        assert!(
            short.state().cursors.is_empty() && short.is_empty(),
            "what no connect took is dropped"
        );
        c.warm(c.generation(), [read(5)]);
        c.distrust();
        assert!(c.take_cursor(UserId(5)).is_none());
    }

    #[test]
    fn memberships_and_preferences_go_with_their_user() {
        let c = cache(Duration::from_secs(60));
        let (u, p) = (UserId(1), ProjectId(7));
        assert!(!c.is_member(u, p));
        c.fill_member(c.generation(), u, p);
        assert!(c.is_member(u, p));
        assert!(!c.is_member(u, ProjectId(8)), "only what was found is held");
        let mut prefs = Preferences::default();
        prefs.set("general", crate::routing::Channel::Email, false);
        let read = HashMap::from([(u, prefs.clone())]);
        c.fill_preferences(c.generation(), &[u, UserId(2)], &read);
        let (held, missing) = c.preferences(&[u, UserId(2), UserId(3)]);
        assert_eq!(held[&u], prefs);
        assert_eq!(
            held[&UserId(2)],
            Preferences::default(),
            "none set: the defaults"
        );
        assert_eq!(missing, vec![UserId(3)]);
        // A removal from the project, or a change of switches, drops the user.
        c.forget(u);
        assert!(!c.is_member(u, p));
        assert_eq!(c.preferences(&[u]).1, vec![u]);
        // A fill read before that drop is not kept.
        let before = c.generation();
        c.forget(UserId(2));
        c.fill_member(before, UserId(2), p);
        c.fill_preferences(before, &[UserId(2)], &HashMap::new());
        assert!(!c.is_member(UserId(2), p));
        assert_eq!(c.preferences(&[UserId(2)]).1, vec![UserId(2)]);
    }
}
