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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn redis_error(e: Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl RedisPresence {
    /// Presence on `client` (the bus's publishing connection) for this node.
    pub fn new(client: Client, node: String, prefix: &str, lease: Duration) -> Self {
        Self {
            client,
            node,
            prefix: prefix.to_owned(),
            lease,
        }
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
            expires_ms: now_ms() + self.lease.as_millis() as i64,
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
            .filter_map(|(field, value)| {
                let (user, node) = field.split_once('@')?;
                let lease: Lease = serde_json::from_str(&value).ok()?;
                Some((UserId(user.parse().ok()?), node.to_owned(), lease))
            })
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
        let mut all = vec![self.node.clone(), now_ms().to_string()];
        all.extend(args);
        // A script is not failed fast by the client while it reconnects: do it here, and
        // bound the wait, so that a room never waits on Redis for long.
        if !self.client.is_connected() {
            return Err(StoreError::Backend("Redis is not connected".into()));
        }
        let ids: Vec<String> = tokio::time::timeout(
            Duration::from_secs(2),
            self.fast().eval(script, vec![self.key(project)], all),
        )
        .await
        .map_err(|_| StoreError::Backend("Redis did not answer in time".into()))?
        .map_err(redis_error)?;
        Ok(ids
            .iter()
            .filter_map(|u| u.parse().ok().map(UserId))
            .collect())
    }
}

/// The users with a live lease in the hash `KEYS[1]` (on nodes other than `ARGV[1]` when
/// `others` is true), as a Lua set; `ARGV[2]` is the time in milliseconds. A script that
/// reaches Redis more than 2 s after it was sent (queued by the client through a reconnect,
/// its caller long gone) does nothing: its decision would be stale.
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
    ) -> Result<(Vec<PresenceEntry>, Vec<(UserId, String)>), StoreError> {
        let now = now_ms();
        let all = self.all(project).await?;
        let live: Vec<&(UserId, String, Lease)> =
            all.iter().filter(|(_, _, l)| l.expires_ms > now).collect();
        let mut present: Vec<PresenceEntry> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (user, node, lease) in &live {
            if *node == self.node || !seen.insert(*user) {
                continue;
            }
            present.push(PresenceEntry {
                user_id: *user,
                username: lease.username.clone(),
                display_name: lease.display_name.clone(),
                viewing: lease.viewing.map(TicketId),
            });
        }
        let mut gone = Vec::new();
        for (user, node, lease) in all.iter().filter(|(_, _, l)| l.expires_ms <= now) {
            let removed: i64 = self
                .fast()
                .hdel(self.key(project), format!("{}@{node}", user.0))
                .await
                .map_err(redis_error)?;
            let still = live.iter().any(|(u, _, _)| u == user);
            if removed == 1 && !still && !gone.iter().any(|(u, _)| u == user) {
                gone.push((*user, lease.username.clone()));
            }
        }
        Ok((present, gone))
    }
}
