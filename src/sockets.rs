//! What every socket of this node shares: the settings they were opened with, the count of
//! each user's sockets, the session tasks shutdown waits for, and the tickets' projects.

use std::sync::atomic::AtomicU64;

use tickethub_actors::domain::ProjectId;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::wire::dialect;

/// WebSocket settings and the registry of live sessions.
#[derive(Debug)]
pub struct WsSettings {
    /// Origins allowed to connect; empty means only the hub's own.
    pub allowed_origins: Vec<String>,
    /// Largest message accepted from a client.
    pub max_message_bytes: usize,
    /// Frames one socket's outbound queue holds.
    pub outbound_queue: usize,
    /// Bytes one socket's outbound queue holds.
    pub outbound_queue_bytes: usize,
    /// What sockets speak unless they ask for another dialect.
    pub dialect: dialect::Dialect,
    /// Handshakes that may read the database at once.
    pub handshakes: tokio::sync::Semaphore,
    /// Sockets one user may hold on this node (0: no limit).
    pub max_sockets_per_user: usize,
    /// Each user's open sockets on this node.
    pub user_sockets:
        std::sync::Mutex<std::collections::HashMap<tickethub_actors::domain::UserId, usize>>,
    /// Every session task, so that shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Where board and presence sessions run, when rooms have threads of their own.
    pub rooms_runtime: Option<tokio::runtime::Handle>,
    /// Cancelled when the hub shuts down.
    pub shutdown: CancellationToken,
    /// Source of connection ids.
    pub next_conn_id: AtomicU64,
    /// Which project each ticket a presence socket names is in.
    pub ticket_projects: TicketProjects,
}

/// Which project a ticket is in, as presence sockets ask (`ticket_viewing`, `user_typing`):
/// read from the database by the asking socket's own task, never by its room, so that a
/// member flooding made-up ids slows down nobody but themselves (their command rate bounds
/// them). Tickets never move, so a found ticket is kept; an id not found is asked again, since
/// ids are handed out in order and the ticket may exist a moment later.
#[derive(Debug, Default)]
pub struct TicketProjects {
    found: std::sync::Mutex<
        std::collections::HashMap<tickethub_actors::ticket_domain::TicketId, ProjectId>,
    >,
}

impl TicketProjects {
    /// The most tickets kept; past it the map starts over.
    const CAPACITY: usize = 100_000;

    /// The project of a ticket, `None` if there is no such ticket.
    pub async fn project_of(
        &self,
        store: &dyn tickethub_actors::ports::Store,
        ticket: tickethub_actors::ticket_domain::TicketId,
    ) -> Result<Option<ProjectId>, tickethub_actors::ports::StoreError> {
        if let Some(project) = self
            .found
            .lock()
            .expect("ticket projects poisoned")
            .get(&ticket)
        {
            return Ok(Some(*project));
        }
        let project = store.ticket(ticket).await?.map(|t| t.project_id);
        if let Some(p) = project {
            let mut found = self.found.lock().expect("ticket projects poisoned");
            if found.len() >= Self::CAPACITY {
                found.clear();
            }
            found.insert(ticket, p);
        }
        Ok(project)
    }
}

/// One of a user's sockets, counted against `--max-sockets-per-user` until dropped.
pub struct SocketSlot {
    ws: std::sync::Arc<WsSettings>,
    user: tickethub_actors::domain::UserId,
}

impl WsSettings {
    /// Takes a socket slot for `user`, unless they hold the most this node allows already.
    pub fn take_slot(
        self: &std::sync::Arc<Self>,
        user: tickethub_actors::domain::UserId,
    ) -> Option<SocketSlot> {
        let mut counts = self.user_sockets.lock().expect("socket counts poisoned");
        let count = counts.entry(user).or_default();
        if self.max_sockets_per_user > 0 && *count >= self.max_sockets_per_user {
            return None;
        }
        *count += 1;
        Some(SocketSlot {
            ws: self.clone(),
            user,
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut counts = self.ws.user_sockets.lock().expect("socket counts poisoned");
        if let std::collections::hash_map::Entry::Occupied(mut e) = counts.entry(self.user) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}
