//! Presence across hub processes, in Redis (fred): per project a hash
//! `<prefix>:presence:<project>` with one field per user and node, `<user>@<node>`, whose value
//! carries the user's entry and when the lease runs out. Each node renews its own fields; a
//! node that dies stops renewing, and the first node to find the lease run out removes it
//! (`HDEL` answers 1 to exactly one node) and, if that was the user's last, says `left`.
//!
//! Leases are written and read by Redis's clock alone: a node sends the lease's length, the
//! script stamps when it runs out, and reads take Redis's time with the hash. A node whose own
//! clock jumps (or was never right) can neither make a lease outlive it nor cut another's short.
//!
//! Entering and leaving are Lua scripts, each one atomic step over the hash: two nodes that
//! take in the same user at once cannot both (or neither) decide that the user joined, nor both
//! (or neither) that the user left.

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
    /// Redis's clock less this node's, in milliseconds, as last measured: what a script is
    /// told the time is, for Redis to refuse one that reached it late (see [`STALE`]).
    offset_ms: AtomicI64,
}

/// A lease as the node writes it: the scripts add when it runs out (`leased` in [`LIVE`]).
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "n")]
    username: &'a str,
    #[serde(rename = "d")]
    display_name: &'a str,
    #[serde(rename = "v")]
    viewing: Option<i64>,
}

/// A lease as it is read back.
#[derive(Deserialize)]
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

    fn fast(&self) -> fred::clients::WithOptions<Client> {
        self.client.with_options(&Options {
            fail_fast: true,
            timeout: Some(Duration::from_secs(2)),
            max_attempts: Some(1),
            ..Options::default()
        })
    }

    /// The lease of `entry` without its expiry, which the script that writes it adds.
    fn body_of(entry: &PresenceEntry) -> String {
        serde_json::to_string(&Body {
            username: &entry.username,
            display_name: &entry.display_name,
            viewing: entry.viewing.map(|t| t.0),
        })
        .expect("leases serialize")
    }

    /// Every field of the project's hash, (user, node, lease), and Redis's time as it read
    /// them, in milliseconds since the Unix epoch; measures this node's clock against it.
    async fn all(
        &self,
        project: ProjectId,
    ) -> Result<(Vec<(UserId, String, Lease)>, i64), StoreError> {
        let before = local_ms();
        let reply: Vec<String> = self.eval(READ, vec![self.key(project)], Vec::new()).await?;
        let local = before + (local_ms() - before) / 2;
        let mut reply = reply.into_iter();
        let now: i64 = reply
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| StoreError::Backend("Redis answered no time".into()))?;
        self.offset_ms.store(now - local, Ordering::Relaxed);
        let mut all = Vec::new();
        while let (Some(field), Some(value)) = (reply.next(), reply.next()) {
            all.extend(parse_lease(&field, &value));
        }
        Ok((all, now))
    }

    /// Runs one of the scripts below with this node, the time, the lease's length and `args`;
    /// answers the user ids it returns.
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
        let mut all = vec![
            self.node.clone(),
            self.now_ms().to_string(),
            self.lease.as_millis().to_string(),
        ];
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

/// Redis's time and every field and value of the hash `KEYS[1]`, in one array.
const READ: &str = r#"
local t = redis.call('TIME')
local all = redis.call('HGETALL', KEYS[1])
table.insert(all, 1, string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
return all
"#;

/// What every script that writes begins with. `ARGV[1]` is the node, `ARGV[2]` the time in
/// milliseconds by Redis's clock as the node last measured it, `ARGV[3]` the lease's length in
/// milliseconds. A script that reaches Redis more than 2 s after it was sent (queued by the
/// client through a reconnect, its caller long gone) does nothing: its decision would be
/// stale. `leased(body)` is a lease body (`{…}`) with its expiry, by Redis's clock; `live`
/// answers the users with a live lease in the hash (on nodes other than `ARGV[1]` when
/// `others` is true), as a Lua set.
const LIVE: &str = r#"
local t = redis.call('TIME')
local server_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if math.abs(server_ms - tonumber(ARGV[2])) > 2000 then
  return redis.error_reply('stale presence script')
end
local expiry = string.format('%d', server_ms + tonumber(ARGV[3]))
local function leased(body)
  return string.sub(body, 1, -2) .. ',"x":' .. expiry .. '}'
end
local function live(others)
  local set = {}
  local all = redis.call('HGETALL', KEYS[1])
  local now = server_ms
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

/// Sets this node's leases (`ARGV[4..]`: user, lease body, user, lease body…) and answers the
/// users that no other node held a live lease for.
const ENTER: &str = r#"
local elsewhere = live(true)
local new = {}
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i] .. '@' .. ARGV[1], leased(ARGV[i + 1]))
  if not elsewhere[ARGV[i]] then table.insert(new, ARGV[i]) end
end
return new
"#;

/// Renews this node's leases (`ARGV[4..]` as for `ENTER`); answers no one.
const RENEW: &str = r#"
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i] .. '@' .. ARGV[1], leased(ARGV[i + 1]))
end
return {}
"#;

/// Removes this node's leases of the users `ARGV[4..]` and answers those with no live lease
/// left on any node.
const EXIT: &str = r#"
for i = 4, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i] .. '@' .. ARGV[1])
end
local still = live(false)
local gone = {}
for i = 4, #ARGV do
  if not still[ARGV[i]] then table.insert(gone, ARGV[i]) end
end
return gone
"#;

static ENTER_SCRIPT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{LIVE}{ENTER}"));
static EXIT_SCRIPT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{LIVE}{EXIT}"));
static RENEW_SCRIPT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{LIVE}{RENEW}"));

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
            .flat_map(|e| [e.user_id.0.to_string(), Self::body_of(e)])
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
        let args = entries
            .iter()
            .flat_map(|e| [e.user_id.0.to_string(), Self::body_of(e)])
            .collect();
        self.script(&RENEW_SCRIPT, project, args).await?;
        Ok(())
    }

    async fn others(
        &self,
        project: ProjectId,
        reap: bool,
    ) -> Result<(Vec<PresenceEntry>, Vec<(UserId, String)>), StoreError> {
        // The periodic look at the room: the clock is measured again here.
        let (all, now) = self.all(project).await?;
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
    fn a_project_is_one_hash() {
        let p = presence("node-a");
        assert_eq!(p.key(ProjectId(7)), "th:presence:7");
        assert_eq!(p.key(ProjectId(0)), "th:presence:0");
    }

    #[test]
    fn a_lease_is_written_with_the_entry_and_without_an_expiry_which_redis_stamps() {
        let text = RedisPresence::body_of(&PresenceEntry {
            user_id: UserId(5),
            username: "zoë".into(),
            display_name: "Zoë Ünal 🦀".into(),
            viewing: Some(TicketId(12)),
        });
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        // Short names: a lease is written for every user every few seconds.
        assert_eq!(keys, ["d", "n", "v"]);
        assert_eq!(v["n"], "zoë");
        assert_eq!(v["d"], "Zoë Ünal 🦀");
        assert_eq!(v["v"], 12);
        // The scripts put the expiry before the closing brace.
        assert!(text.starts_with('{') && text.ends_with('}'), "{text}");
        let nobody_viewed = RedisPresence::body_of(&PresenceEntry {
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
