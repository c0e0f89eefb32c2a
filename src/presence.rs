//! Presence across hub processes, in Redis (fred): per project a hash
//! `<prefix>:presence:<project>` with one field per user and node, `<user>@<node>`, whose value
//! carries the user's entry and when the lease runs out. Each node renews its own fields; a
//! node that dies stops renewing, and the first node to find the lease run out removes it
//! (`HDEL` answers 1 to exactly one node) and, if that was the user's last, says `left`.
//!
//! Entering and leaving are Lua scripts, each one atomic step over the hash: two nodes that
//! take in the same user at once cannot both (or neither) decide that the user joined, nor both
//! (or neither) that the user left.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::config::Options;
use serde::{Deserialize, Serialize};
use tickethub_actors::domain::{ProjectId, UserId};
use tickethub_actors::ports::{PresenceStore, StoreError};
use tickethub_actors::room::PresenceEntry;
use tickethub_actors::ticket_domain::TicketId;

/// Presence leases in Redis.
pub struct RedisPresence {
    client: Client,
    node: String,
    prefix: String,
    lease: Duration,
    /// Redis's clock less this node's, in milliseconds, as last measured: every node writes
    /// and reads leases by Redis's clock, so that nodes whose own clocks disagree agree on
    /// whose lease ran out.
    offset_ms: AtomicI64,
}

#[derive(Serialize, Deserialize)]
struct Lease {
    #[serde(rename = "n")]
    username: String,
    #[serde(rename = "d")]
    display_name: String,
    #[serde(rename = "v")]
    viewing: Option<i64>,
    /// When the lease runs out, in milliseconds since the Unix epoch.
    #[serde(rename = "x")]
    expires_ms: i64,
}

/// This node's own clock, in milliseconds since the Unix epoch.
fn local_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Redis's clock, in milliseconds since the Unix epoch.
const TIME: &str = r#"
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"#;

fn redis_error(e: Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// A field of a project's hash, `<user>@<node>`, and its value: whose lease it is, on which
/// node, and the lease; `None` for a field or value the hub did not write.
fn parse_lease(field: &str, value: &str) -> Option<(UserId, String, Lease)> {
    let (user, node) = field.split_once('@')?;
    let lease: Lease = serde_json::from_str(value).ok()?;
    Some((UserId(user.parse().ok()?), node.to_owned(), lease))
}

/// The users present through other nodes than `node` at `now`: those with a live lease there,
/// each once.
fn present_elsewhere(all: &[(UserId, String, Lease)], node: &str, now: i64) -> Vec<PresenceEntry> {
    let mut present: Vec<PresenceEntry> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (user, lease_node, lease) in all.iter().filter(|(_, _, l)| l.expires_ms > now) {
        if lease_node == node || !seen.insert(*user) {
            continue;
        }
        present.push(PresenceEntry {
            user_id: *user,
            username: lease.username.clone(),
            display_name: lease.display_name.clone(),
            viewing: lease.viewing.map(TicketId),
        });
    }
    present
}

/// Whether `user` holds a live lease at `now` on any node.
fn live_anywhere(all: &[(UserId, String, Lease)], user: UserId, now: i64) -> bool {
    all.iter().any(|(u, _, l)| *u == user && l.expires_ms > now)
}

impl RedisPresence {
    /// Presence on `client` (the bus's publishing connection) for this node.
    pub fn new(client: Client, node: String, prefix: &str, lease: Duration) -> Self {
        Self {
            client,
            node,
            prefix: prefix.to_owned(),
            lease,
            offset_ms: AtomicI64::new(0),
        }
    }

    /// The time by Redis's clock, as last measured, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64 {
        local_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Measures this node's clock against Redis's.
    async fn measure(&self) -> Result<(), StoreError> {
        let before = local_ms();
        let server: i64 = self.eval(TIME, Vec::new(), Vec::new()).await?;
        let local = before + (local_ms() - before) / 2;
        self.offset_ms.store(server - local, Ordering::Relaxed);
        Ok(())
    }

    fn key(&self, project: ProjectId) -> String {
        format!("{}:presence:{}", self.prefix, project.0)
    }

    fn field(&self, user: UserId) -> String {
        format!("{}@{}", user.0, self.node)
    }

    fn fast(&self) -> fred::clients::WithOptions<Client> {
        self.client.with_options(&Options {
            fail_fast: true,
            timeout: Some(Duration::from_secs(2)),
            max_attempts: Some(1),
            ..Options::default()
        })
    }

    fn lease_of(&self, entry: &PresenceEntry) -> String {
        serde_json::to_string(&Lease {
            username: entry.username.clone(),
            display_name: entry.display_name.clone(),
            viewing: entry.viewing.map(|t| t.0),
            expires_ms: self.now_ms() + self.lease.as_millis() as i64,
        })
        .expect("leases serialize")
    }

    /// Every field of the project's hash: (user, node, lease).
    async fn all(&self, project: ProjectId) -> Result<Vec<(UserId, String, Lease)>, StoreError> {
        let fields: HashMap<String, String> = self
            .fast()
            .hgetall(self.key(project))
            .await
            .map_err(redis_error)?;
        Ok(fields
            .into_iter()
            .filter_map(|(field, value)| parse_lease(&field, &value))
            .collect())
    }

    /// Runs one of the scripts below with this node, the time, and `args`; answers the user ids
    /// it returns.
    async fn script(
        &self,
        script: &'static str,
        project: ProjectId,
        args: Vec<String>,
    ) -> Result<Vec<UserId>, StoreError> {
        match self.script_once(script, project, args.clone()).await {
            // Refused as stale: this node's clock may have moved since it was last measured
            // (a script held back by a reconnect is answered by an error before it gets here).
            Err(StoreError::Backend(e)) if e.to_string().contains(STALE) => {
                self.measure().await?;
                self.script_once(script, project, args).await
            }
            answer => answer,
        }
    }

    /// Runs a Lua script. A script is not failed fast by the client while it reconnects: it
    /// is here, and its wait is bounded, so that a room never waits on Redis for long.
    async fn eval<R: FromValue>(
        &self,
        script: &'static str,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<R, StoreError> {
        if !self.client.is_connected() {
            return Err(StoreError::Backend("Redis is not connected".into()));
        }
        tokio::time::timeout(Duration::from_secs(2), self.fast().eval(script, keys, args))
            .await
            .map_err(|_| StoreError::Backend("Redis did not answer in time".into()))?
            .map_err(redis_error)
    }

    async fn script_once(
        &self,
        script: &'static str,
        project: ProjectId,
        args: Vec<String>,
    ) -> Result<Vec<UserId>, StoreError> {
        let mut all = vec![self.node.clone(), self.now_ms().to_string()];
        all.extend(args);
        let ids: Vec<String> = self.eval(script, vec![self.key(project)], all).await?;
        Ok(ids
            .iter()
            .filter_map(|u| u.parse().ok().map(UserId))
            .collect())
    }
}

/// What a presence script answers when it reached Redis long after it was sent.
const STALE: &str = "stale presence script";

/// The users with a live lease in the hash `KEYS[1]` (on nodes other than `ARGV[1]` when
/// `others` is true), as a Lua set; `ARGV[2]` is the time in milliseconds by Redis's clock, as
/// the node last measured it. A script that reaches Redis more than 2 s after it was sent
/// (queued by the client through a reconnect, its caller long gone) does nothing: its
/// decision would be stale.
const LIVE: &str = r#"
local t = redis.call('TIME')
local server_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if math.abs(server_ms - tonumber(ARGV[2])) > 2000 then
  return redis.error_reply('stale presence script')
end
local function live(others)
  local set = {}
  local all = redis.call('HGETALL', KEYS[1])
  local now = tonumber(ARGV[2])
  for i = 1, #all, 2 do
    local at = string.find(all[i], '@', 1, true)
    if at then
      local user = string.sub(all[i], 1, at - 1)
      local node = string.sub(all[i], at + 1)
      local ok, lease = pcall(cjson.decode, all[i + 1])
      if ok and (not others or node ~= ARGV[1]) and tonumber(lease['x']) and tonumber(lease['x']) > now then
        set[user] = true
      end
    end
  end
  return set
end
"#;

/// Sets this node's leases (`ARGV[3..]`: user, lease, user, lease…) and answers the users that
/// no other node held a live lease for.
const ENTER: &str = r#"
local elsewhere = live(true)
local new = {}
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i] .. '@' .. ARGV[1], ARGV[i + 1])
  if not elsewhere[ARGV[i]] then table.insert(new, ARGV[i]) end
end
return new
"#;

/// Removes this node's leases of the users `ARGV[3..]` and answers those with no live lease
/// left on any node.
const EXIT: &str = r#"
for i = 3, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i] .. '@' .. ARGV[1])
end
local still = live(false)
local gone = {}
for i = 3, #ARGV do
  if not still[ARGV[i]] then table.insert(gone, ARGV[i]) end
end
return gone
"#;

static ENTER_SCRIPT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{LIVE}{ENTER}"));
static EXIT_SCRIPT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{LIVE}{EXIT}"));

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn enter(
        &self,
        project: ProjectId,
        entries: &[PresenceEntry],
    ) -> Result<Vec<UserId>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let args = entries
            .iter()
            .flat_map(|e| [e.user_id.0.to_string(), self.lease_of(e)])
            .collect();
        self.script(&ENTER_SCRIPT, project, args).await
    }

    async fn exit(&self, project: ProjectId, users: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let args = users.iter().map(|u| u.0.to_string()).collect();
        self.script(&EXIT_SCRIPT, project, args).await
    }

    async fn refresh(
        &self,
        project: ProjectId,
        entries: &[PresenceEntry],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let fields: Vec<(String, String)> = entries
            .iter()
            .map(|e| (self.field(e.user_id), self.lease_of(e)))
            .collect();
        self.fast()
            .hset::<i64, _, _>(self.key(project), fields)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn others(
        &self,
        project: ProjectId,
        reap: bool,
    ) -> Result<(Vec<PresenceEntry>, Vec<(UserId, String)>), StoreError> {
        // The periodic look at the room: the clock is measured again here.
        self.measure().await?;
        let now = self.now_ms();
        let all = self.all(project).await?;
        let present = present_elsewhere(&all, &self.node, now);
        let mut gone = Vec::new();
        if !reap {
            return Ok((present, gone));
        }
        for (user, node, lease) in all.iter().filter(|(_, _, l)| l.expires_ms <= now) {
            let removed: i64 = self
                .fast()
                .hdel(self.key(project), format!("{}@{node}", user.0))
                .await
                .map_err(redis_error)?;
            let still = live_anywhere(&all, *user, now);
            if removed == 1 && !still && !gone.iter().any(|(u, _)| u == user) {
                gone.push((*user, lease.username.clone()));
            }
        }
        Ok((present, gone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(username: &str, viewing: Option<i64>, expires_ms: i64) -> Lease {
        Lease {
            username: username.into(),
            display_name: format!("{username} (display)"),
            viewing,
            expires_ms,
        }
    }

    fn held(user: i64, node: &str, expires_ms: i64) -> (UserId, String, Lease) {
        (
            UserId(user),
            node.into(),
            lease(&format!("u{user}"), None, expires_ms),
        )
    }

    fn presence(node: &str) -> RedisPresence {
        RedisPresence::new(
            Client::default(),
            node.into(),
            "th",
            Duration::from_millis(45_000),
        )
    }

    #[test]
    fn a_project_is_one_hash_and_a_user_one_field_per_node() {
        let p = presence("node-a");
        assert_eq!(p.key(ProjectId(7)), "th:presence:7");
        assert_eq!(p.key(ProjectId(0)), "th:presence:0");
        assert_eq!(p.field(UserId(42)), "42@node-a");
        assert_eq!(p.field(UserId(-1)), "-1@node-a");
    }

    #[test]
    fn a_lease_carries_the_entry_and_runs_out_a_lease_length_from_now() {
        let p = presence("node-a");
        let before = local_ms();
        let text = p.lease_of(&PresenceEntry {
            user_id: UserId(5),
            username: "zoë".into(),
            display_name: "Zoë Ünal 🦀".into(),
            viewing: Some(TicketId(12)),
        });
        let after = local_ms();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        // Short names: a lease is written for every user every few seconds.
        assert_eq!(keys, ["d", "n", "v", "x"]);
        assert_eq!(v["n"], "zoë");
        assert_eq!(v["d"], "Zoë Ünal 🦀");
        assert_eq!(v["v"], 12);
        let x = v["x"].as_i64().unwrap();
        assert!(
            (before + 45_000..=after + 45_000).contains(&x),
            "{x} not within {before}..{after} + 45 s"
        );
        let nobody_viewed = p.lease_of(&PresenceEntry {
            user_id: UserId(5),
            username: String::new(),
            display_name: String::new(),
            viewing: None,
        });
        let v: serde_json::Value = serde_json::from_str(&nobody_viewed).unwrap();
        assert_eq!(v["v"], serde_json::Value::Null);
        assert_eq!(v["n"], "");
    }

    #[test]
    fn fields_the_hub_wrote_are_read_back_and_others_are_skipped() {
        let value = r#"{"n":"zoë","d":"Zoë","v":3,"x":1700000000000}"#;
        // (field, value, user and node read back)
        for (field, value, read) in [
            ("42@node-a", value, Some((42, "node-a"))),
            // Only the first `@` separates: a node name may hold one.
            ("42@node@b", value, Some((42, "node@b"))),
            ("-3@n", value, Some((-3, "n"))),
            ("42@", value, Some((42, ""))),
            ("42", value, None),
            ("@node-a", value, None),
            ("abc@node-a", value, None),
            ("4 2@node-a", value, None),
            ("99999999999999999999@node-a", value, None),
            ("42@node-a", "not json", None),
            ("42@node-a", "", None),
            // A lease without its expiry is not one.
            ("42@node-a", r#"{"n":"zoë","d":"Zoë","v":null}"#, None),
            (
                "42@node-a",
                r#"{"n":"zoë","d":"Zoë","v":null,"x":"soon"}"#,
                None,
            ),
            // Fields it does not know are ignored.
            (
                "42@node-a",
                r#"{"n":"zoë","d":"Zoë","x":1,"extra":true}"#,
                Some((42, "node-a")),
            ),
        ] {
            let parsed = parse_lease(field, value);
            assert_eq!(
                parsed.as_ref().map(|(u, n, _)| (u.0, n.as_str())),
                read,
                "{field} = {value}"
            );
        }
        let (_, _, lease) = parse_lease("42@node-a", value).unwrap();
        assert_eq!(lease.username, "zoë");
        assert_eq!(lease.display_name, "Zoë");
        assert_eq!(lease.viewing, Some(3));
        assert_eq!(lease.expires_ms, 1_700_000_000_000);
    }

    #[test]
    fn users_present_elsewhere_are_those_with_a_live_lease_on_another_node_each_once() {
        let now = 1_000;
        let all = vec![
            held(1, "node-a", now + 1),
            held(2, "node-b", now + 1),
            // Runs out exactly now: gone.
            held(3, "node-b", now),
            held(4, "node-b", now - 1),
            // On this node and another: present through the other.
            held(5, "node-a", now + 1),
            held(5, "node-c", now + 1),
            // On two other nodes: listed once.
            held(6, "node-b", now + 1),
            held(6, "node-c", now + 1),
        ];
        let present = present_elsewhere(&all, "node-a", now);
        let ids: Vec<i64> = present.iter().map(|e| e.user_id.0).collect();
        assert_eq!(ids, [2, 5, 6]);
        assert_eq!(present[0].username, "u2");
        assert_eq!(present[0].display_name, "u2 (display)");
        assert_eq!(present[0].viewing, None);
        assert!(present_elsewhere(&[], "node-a", now).is_empty());
        // Seen from a node that holds nothing, everyone live is present.
        let ids: Vec<i64> = present_elsewhere(&all, "node-z", now)
            .iter()
            .map(|e| e.user_id.0)
            .collect();
        assert_eq!(ids, [1, 2, 5, 6]);
    }

    #[test]
    fn a_lease_says_what_its_user_views() {
        let all = vec![(UserId(8), "node-b".to_owned(), lease("v", Some(77), 10))];
        let present = present_elsewhere(&all, "node-a", 9);
        assert_eq!(present[0].viewing, Some(TicketId(77)));
    }

    #[test]
    fn a_user_is_live_while_any_node_holds_an_unexpired_lease() {
        let now = 500;
        let all = vec![
            held(1, "node-a", now - 10),
            held(1, "node-b", now + 10),
            held(2, "node-a", now - 10),
            held(2, "node-b", now),
            held(3, "node-a", now + 1),
        ];
        // (user, live)
        for (user, live) in [(1, true), (2, false), (3, true), (4, false)] {
            assert_eq!(live_anywhere(&all, UserId(user), now), live, "user {user}");
        }
    }
}
