//! Unit tests of `user.rs`.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ractor::concurrency::JoinHandle;

use super::*;
use crate::connection::Outbound;
use crate::domain::{NewUser, Project, ProjectId, Role, User};
use crate::notification::Draft;
use crate::ports::*;
use crate::ports::{EscalationJob, Finish};
use crate::routing::{Channel, EventType, Preferences};
use crate::ticket_domain::{Change, Comment, Ticket, TicketId};

const USER: UserId = UserId(1);

/// One user's inbox in memory: what the user actor reads and changes.
#[derive(Default)]
struct Inbox {
    held: Mutex<Held>,
    faults: StoreFaults,
    /// Holds every ack's write until a permit is added.
    ack_gate: Option<Arc<tokio::sync::Semaphore>>,
}

#[derive(Default)]
struct Held {
    /// The committed notifications, by seq.
    notifications: BTreeMap<i64, Notification>,
    /// The highest seq committed, deleted ones included.
    last_seq: i64,
    acked_seq: i64,
    sent_seq: i64,
    /// Where the stream stands cannot be read.
    cursor_fails: bool,
    /// The `sent_seq` writes.
    recorded: Vec<(UserId, i64)>,
}

impl Inbox {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap()
    }

    /// Commits the notifications `seqs` (as another process could: nobody is told).
    fn commit(&self, seqs: impl IntoIterator<Item = i64>) {
        let mut held = self.held();
        for seq in seqs {
            held.notifications.insert(seq, note(seq));
            held.last_seq = held.last_seq.max(seq);
        }
    }
}

fn note(seq: i64) -> Notification {
    Notification {
        id: seq * 10,
        user_id: USER,
        seq,
        notification_type: EventType::CommentAdded,
        title: format!("n{seq}"),
        message: "Ein Kommentar ✍".into(),
        ticket: None,
        data: "{}".into(),
        action_url: None,
        is_read: false,
        read_at: None,
        created_at: DateTime::from_timestamp(1_700_000_000 + seq, 0).unwrap(),
    }
}

/// Implements a store trait for [`Inbox`]: the methods listed are never called by a user
/// actor, and panic; those after the list are given.
macro_rules! inbox {
    ($trait:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)* } $($given:tt)*) => {
        #[async_trait]
        impl $trait for Inbox {
            $(async fn $name(&self $(, _: $ty)*) -> $ret {
                unreachable!(concat!("a user actor does not call ", stringify!($name)))
            })*
            $($given)*
        }
    };
}

inbox!(UserStore {
    fn create_user(&self, user: NewUser) -> Result<User, StoreError>;
    fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;
    fn user_with_hash(&self, username: &str) -> Result<Option<(User, String)>, StoreError>;
    fn list_users(&self) -> Result<Vec<User>, StoreError>;
    fn find_users(&self, query: UserQuery, page: Page) -> Result<(i64, Vec<User>), StoreError>;
    fn users_with_role(&self, role: Role) -> Result<Vec<User>, StoreError>;
    fn users_by_ids(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError>;
    fn active_user_ids(&self, ids: &[UserId]) -> Result<Vec<UserId>, StoreError>;
    fn update_profile(&self, user: UserId, changes: ProfileChanges) -> Result<Option<User>, StoreError>;
    fn erase_user(&self, user: UserId, by: &str) -> Result<Option<User>, StoreError>;
    fn register_user(&self, user: NewUser) -> Result<User, StoreError>;
    fn last_seqs(&self, users: &[UserId]) -> Result<Vec<(UserId, i64)>, StoreError>;
    fn phone_number_invalid(&self, user: UserId, number: &str, why: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;
}
    async fn notification_cursor(&self, _: UserId) -> Result<NotificationCursor, StoreError> {
        let held = self.held();
        if held.cursor_fails {
            return Err(StoreError::Backend("the database is down".into()));
        }
        Ok(NotificationCursor {
            last_seq: held.last_seq,
            acked_seq: held.acked_seq,
            sent_seq: held.sent_seq,
        })
    }
);

inbox!(ProjectStore {
    fn create_project(&self, key: &str, name: &str, members: &[UserId]) -> Result<Project, StoreError>;
    fn project_by_id(&self, id: ProjectId) -> Result<Option<Project>, StoreError>;
    fn membership(&self, id: ProjectId, user: UserId) -> Result<Option<bool>, StoreError>;
    fn project_by_key(&self, key: &str) -> Result<Option<Project>, StoreError>;
    fn list_projects(&self, member: Option<UserId>) -> Result<Vec<Project>, StoreError>;
    fn add_members(&self, project: ProjectId, members: &[UserId]) -> Result<(), StoreError>;
    fn remove_members(&self, project: ProjectId, members: &[UserId]) -> Result<(), StoreError>;
    fn rename_project(&self, project: ProjectId, name: &str) -> Result<(), StoreError>;
});

inbox!(TicketStore {
    fn create_ticket(&self, ticket: NewTicket, plan: PlanDrafts<'_>) -> Result<(Ticket, Vec<Notification>), StoreError>;
    fn ticket(&self, id: TicketId) -> Result<Option<Ticket>, StoreError>;
    fn ticket_by_key(&self, project_key: &str, number: i64) -> Result<Option<Ticket>, StoreError>;
    fn commit_change(&self, id: TicketId, expected_version: i64, change: &Change, author: UserId, drafts: Vec<Draft>, mark: Option<&IdempotencyMark>) -> Result<Committed, StoreError>;
    fn list_tickets(&self, filter: &TicketFilter, page: Page) -> Result<(i64, Vec<Ticket>), StoreError>;
    fn comments(&self, id: TicketId, page: Page) -> Result<(i64, Vec<Comment>), StoreError>;
    fn latest_comments(&self, id: TicketId, limit: i64) -> Result<(i64, Vec<Comment>), StoreError>;
    fn comment(&self, id: i64) -> Result<Option<Comment>, StoreError>;
});

inbox!(NotificationStore {
    fn commit_notifications(&self, drafts: Vec<Draft>, mark: Option<&IdempotencyMark>) -> Result<Vec<Notification>, StoreError>;
    fn commit_notifications_part(&self, drafts: Vec<Draft>, mark: Option<&IdempotencyMark>, last: bool) -> Result<Vec<Notification>, StoreError>;
    fn list_notifications(&self, user: UserId, filter: &NotificationFilter, page: Page) -> Result<(i64, Vec<Notification>), StoreError>;
    fn unread_counts(&self, user: UserId) -> Result<(i64, Vec<(String, i64)>), StoreError>;
    fn notification(&self, user: UserId, id: i64) -> Result<Option<Notification>, StoreError>;
});

inbox!(InboxStore {}
    async fn set_read(&self, _: UserId, id: i64, read: bool) -> Result<Option<Notification>, StoreError> {
        let mut held = self.held();
        let found = held.notifications.values_mut().find(|n| n.id == id);
        Ok(found.map(|n| {
            n.is_read = read;
            n.clone()
        }))
    }

    async fn mark_all_read(&self, _: UserId, filter: &NotificationFilter) -> Result<Vec<i64>, StoreError> {
        let mut held = self.held();
        Ok(held
            .notifications
            .values_mut()
            .filter(|n| !n.is_read)
            .filter(|n| filter.notification_type.as_deref().is_none_or(|t| t == n.notification_type.as_str()))
            .map(|n| {
                n.is_read = true;
                n.id
            })
            .collect())
    }

    async fn delete_notification(&self, _: UserId, id: i64) -> Result<bool, StoreError> {
        let mut held = self.held();
        let before = held.notifications.len();
        held.notifications.retain(|_, n| n.id != id);
        Ok(held.notifications.len() < before)
    }

    async fn delete_all_notifications(&self, _: UserId) -> Result<i64, StoreError> {
        let mut held = self.held();
        let count = held.notifications.len() as i64;
        held.notifications.clear();
        Ok(count)
    }
);

inbox!(StreamStore {
    fn notifications_at(&self, keys: &[(UserId, i64)]) -> Result<Vec<Notification>, StoreError>;
}
    async fn backlog(&self, _: UserId, after_seq: i64, cap: i64) -> Result<(i64, Vec<Notification>), StoreError> {
        let held = self.held();
        let after: Vec<Notification> = held
            .notifications
            .range(after_seq.saturating_add(1)..)
            .map(|(_, n)| n.clone())
            .collect();
        let skip = after.len().saturating_sub(cap as usize);
        Ok((skip as i64, after[skip..].to_vec()))
    }

    async fn seq_range(&self, _: UserId, after: i64, before: i64) -> Result<Vec<Notification>, StoreError> {
        let held = self.held();
        Ok(held
            .notifications
            .values()
            .filter(|n| n.seq > after && n.seq < before)
            .cloned()
            .collect())
    }

    async fn ack(&self, _: UserId, seq: i64) -> Result<i64, StoreError> {
        if let Some(gate) = &self.ack_gate {
            gate.acquire().await.unwrap().forget();
        }
        let mut held = self.held();
        held.acked_seq = held.acked_seq.max(seq.min(held.last_seq));
        Ok(held.acked_seq)
    }

    async fn record_sent(&self, sent: &[(UserId, i64)]) -> Result<(), StoreError> {
        self.held().recorded.extend_from_slice(sent);
        Ok(())
    }
);

inbox!(PreferenceStore {
    fn preferences(&self, users: &[UserId]) -> Result<HashMap<UserId, Preferences>, StoreError>;
    fn set_preferences(&self, user: UserId, switches: &[(String, Channel, bool)]) -> Result<(), StoreError>;
    fn types_received(&self, user: UserId, types: &[String]) -> Result<Vec<String>, StoreError>;
});

inbox!(OutboxStore {
    fn deliveries(&self, user: UserId, id: i64) -> Result<Option<Vec<Delivery>>, StoreError>;
    fn delivery_summaries(&self, ids: &[i64]) -> Result<HashMap<i64, DeliverySummary>, StoreError>;
    fn claim(&self, channel: Channel, node: &str, limit: i64, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> Result<Vec<DeliveryJob>, StoreError>;
    fn delivery_sent(&self, id: i64, node: &str, attempts: i64, provider_id: Option<&str>) -> Result<bool, StoreError>;
    fn delivery_failed(&self, id: i64, node: &str, attempts: i64, error: &str) -> Result<bool, StoreError>;
    fn delivery_retry(&self, id: i64, node: &str, attempts: i64, next_attempt_at: DateTime<Utc>, error: &str) -> Result<bool, StoreError>;
    fn delivery_suppressed(&self, id: i64, node: &str, why: &str) -> Result<bool, StoreError>;
    fn delivery_release(&self, ids: &[i64]) -> Result<(), StoreError>;
    fn delivery_reclaim(&self, channel: Channel, node: &str, sending: &[i64]) -> Result<u64, StoreError>;
    fn outbox_depth(&self, channel: Channel) -> Result<i64, StoreError>;
});

inbox!(HistoryStore {
    fn timeline(&self, id: i64) -> Result<Option<TimelineRecord>, StoreError>;
    fn ticket_events(&self, ticket: TicketId) -> Result<Vec<TicketEvent>, StoreError>;
    fn event_notifications(&self, ticket: TicketId, user: UserId) -> Result<Vec<(i64, i64)>, StoreError>;
}
    async fn record_pushes(&self, _: &str, _: &[Pushed]) -> Result<(), StoreError> {
        Ok(())
    }
);

inbox!(EscalationStore {
    fn claim_escalations(&self, node: &str, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: i64) -> Result<Vec<EscalationJob>, StoreError>;
    fn finish_escalation(&self, id: i64, node: &str, finish: Finish) -> Result<Option<Vec<Notification>>, StoreError>;
    fn release_escalations(&self, ids: &[i64], node: &str) -> Result<(), StoreError>;
    fn escalation_outlook(&self) -> Result<(i64, Option<DateTime<Utc>>), StoreError>;
    fn list_escalations(&self, status: Option<&str>, limit: i64) -> Result<Vec<EscalationRow>, StoreError>;
});

inbox!(CredentialStore {
    fn record_refresh(&self, token: RefreshRecord) -> Result<(), StoreError>;
    fn rotate_refresh(&self, jti: &str, next: RefreshRecord, now: DateTime<Utc>) -> Result<Rotation, StoreError>;
    fn revoke_refresh_family(&self, jti: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    fn linked_user(&self, issuer: &str, subject: &str) -> Result<Option<UserId>, StoreError>;
    fn link_identity(&self, issuer: &str, subject: &str, user: UserId) -> Result<(), StoreError>;
});

inbox!(AnalyticsStore {
    fn analytics(&self, query: &crate::analytics::AnalyticsQuery) -> Result<crate::analytics::Tallies, StoreError>;
});

inbox!(RetentionStore {
    fn purge(&self, what: Purgeable, cutoff: DateTime<Utc>, limit: i64) -> Result<u64, StoreError>;
    fn purgeable(&self, what: Purgeable, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;
});

inbox!(ApiKeyStore {
    fn create_api_key(&self, key: NewApiKey, actor: &str) -> Result<ApiKey, StoreError>;
    fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError>;
    fn api_key_by_prefix(&self, prefix: &str) -> Result<Option<(ApiKey, String)>, StoreError>;
    fn revoke_api_key(&self, name: &str, at: DateTime<Utc>, actor: &str) -> Result<bool, StoreError>;
    fn touch_api_key(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
});

inbox!(IdempotencyStore {
    fn claim_idempotency(&self, mark: &IdempotencyMark, fingerprint: &str, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> Result<IdempotencyClaim, StoreError>;
    fn answer_idempotency(&self, mark: &IdempotencyMark, status: u16, body: &str) -> Result<(), StoreError>;
    fn release_idempotency(&self, mark: &IdempotencyMark) -> Result<bool, StoreError>;
    fn idempotency_progress(&self, mark: &IdempotencyMark) -> Result<crate::ports::Progress, StoreError>;
});

inbox!(DeviceStore {
    fn register_device(&self, user: UserId, device: NewDevice, cap: i64) -> Result<Registered, StoreError>;
    fn devices(&self, user: UserId) -> Result<Vec<Device>, StoreError>;
    fn delete_device(&self, user: UserId, id: i64) -> Result<bool, StoreError>;
    fn device_gone(&self, id: i64) -> Result<bool, StoreError>;
    fn device_used(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
});

inbox!(ScheduleStore {
    fn schedule_send(&self, send: NewScheduledSend, cap: i64, mark: Option<&IdempotencyMark>) -> Result<Scheduled, StoreError>;
    fn scheduled_send(&self, id: i64) -> Result<Option<ScheduledSend>, StoreError>;
    fn pending_sends(&self, owner: Option<Sender>, offset: i64, limit: i64) -> Result<(i64, Vec<ScheduledSend>), StoreError>;
    fn cancel_send(&self, owner: Option<Sender>, id: i64, actor: &str) -> Result<Cancelled, StoreError>;
    fn claim_sends(&self, node: &str, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: i64) -> Result<Vec<ScheduledSend>, StoreError>;
    fn finish_send(&self, id: i64, node: &str, outcome: Fired) -> Result<bool, StoreError>;
    fn release_sends(&self, ids: &[i64], node: &str, due: DateTime<Utc>) -> Result<(), StoreError>;
    fn schedule_outlook(&self) -> Result<(i64, Option<DateTime<Utc>>), StoreError>;
    fn power_lost(&self, send: &ScheduledSend) -> Result<Option<String>, StoreError>;
});

inbox!(AuditStore {
    fn record_audit(&self, event: NewAuditEvent) -> Result<(), StoreError>;
    fn audit_events(&self, filter: &AuditFilter, offset: i64, limit: i64) -> Result<(i64, Vec<AuditEvent>), StoreError>;
});

inbox!(VerificationStore {
    fn start_verification(&self, v: NewVerification) -> Result<Started, StoreError>;
    fn check_verification(&self, user: UserId, channel: Channel, code_hash: &str, now: DateTime<Utc>, attempts: i64) -> Result<Checked, StoreError>;
    fn check_verification_link(&self, link_hash: &str, now: DateTime<Utc>) -> Result<Checked, StoreError>;
});

#[async_trait]
impl Store for Inbox {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn close(&self) {}

    fn faults(&self) -> &StoreFaults {
        &self.faults
    }
}

/// A running user actor over an inbox.
struct Running {
    inbox: Arc<Inbox>,
    notices: Arc<crate::notices::Notices>,
    actor: ActorRef<UserMsg>,
    stopped: JoinHandle<()>,
}

async fn start(
    inbox: Inbox,
    replay_cap: i64,
    gap_wait: Duration,
    idle_timeout: Duration,
) -> Running {
    let inbox = Arc::new(inbox);
    let store: Arc<dyn Store> = inbox.clone();
    let sent = crate::sent::SentRecorder::start(
        store.clone(),
        Duration::from_secs(3_600),
        "node-a".into(),
    );
    let notices: Arc<crate::notices::Notices> = Arc::default();
    let (actor, stopped) = Actor::spawn(
        None,
        UserActor::new(UserSettings {
            notices: notices.clone(),
            idle_timeout,
            acks: crate::acks::AckRecorder::start(store.clone()),
            store,
            sent,
            bus: None,
            replay_cap,
            gap_wait,
        }),
        USER,
    )
    .await
    .unwrap();
    Running {
        inbox,
        notices,
        actor,
        stopped,
    }
}

/// An actor that holds out-of-order notifications for an hour and keeps idle sockets.
async fn patient(inbox: Inbox) -> Running {
    start(
        inbox,
        100,
        Duration::from_secs(3_600),
        Duration::from_secs(3_600),
    )
    .await
}

impl Running {
    async fn attach(&self, id: u64, resume: Resume) -> (Attached, ConnHandle, Outbound) {
        let (conn, rx) = ConnHandle::new(ConnId(id), 64, 1 << 20);
        let attached = self.attach_handle(conn.clone(), resume).await.unwrap();
        (attached, conn, rx)
    }

    async fn attach_handle(
        &self,
        conn: ConnHandle,
        resume: Resume,
    ) -> Result<Attached, ractor::RactorErr<UserMsg>> {
        self.attach_hinted(conn, resume, None).await
    }

    async fn attach_hinted(
        &self,
        conn: ConnHandle,
        resume: Resume,
        hint: Option<CursorHint>,
    ) -> Result<Attached, ractor::RactorErr<UserMsg>> {
        ractor::call!(self.actor, |reply| UserMsg::Attach(Box::new(
            AttachRequest {
                conn,
                resume,
                hint,
                reply,
            }
        )))
    }

    /// A socket attached as a handshake that read `hint` attaches it.
    async fn attach_after(&self, hint: CursorHint) -> (Attached, ConnHandle, Outbound) {
        let (conn, rx) = ConnHandle::new(ConnId(1), 64, 1 << 20);
        let attached = self
            .attach_hinted(conn.clone(), Resume::Unacknowledged, Some(hint))
            .await
            .unwrap();
        (attached, conn, rx)
    }

    fn send(&self, msg: UserMsg) {
        self.actor.send_message(msg).unwrap();
    }

    fn notify(&self, seqs: impl IntoIterator<Item = i64>) {
        for seq in seqs {
            self.send(UserMsg::Notify(Arc::new(note(seq))));
        }
    }

    /// Waits until the actor has handled everything sent before, and describes it.
    async fn snapshot(&self) -> UserSnapshot {
        ractor::call!(self.actor, UserMsg::Snapshot).unwrap()
    }

    async fn command(&self, from: Option<u64>, cmd: UserCommand) -> Result<CommandOutcome, String> {
        ractor::call!(self.actor, |reply| UserMsg::Command(Box::new(
            CommandRequest {
                from: from.map(ConnId),
                cmd,
                reply,
            }
        )))
        .unwrap()
    }

    async fn stops(self) {
        tokio::time::timeout(Duration::from_secs(5), self.stopped)
            .await
            .expect("the actor stops")
            .unwrap();
    }
}

/// What a socket was sent, one line per queued message.
fn received(rx: &mut Outbound) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(msg) = rx.try_recv() {
        out.push(match msg {
            ConnectionMsg::Ping => "ping".to_owned(),
            ConnectionMsg::Close(reason) => format!("close {reason:?}"),
            ConnectionMsg::Notification(n) => format!("n{}", n.seq),
            ConnectionMsg::Replay(r) => format!(
                "replay {:?} +{} to {}",
                r.notifications.iter().map(|n| n.seq).collect::<Vec<_>>(),
                r.remaining,
                r.last_seq
            ),
            ConnectionMsg::Updated(u) => format!("{u:?}"),
            ConnectionMsg::Room(_) => "room".to_owned(),
        });
    }
    out
}

#[test]
fn only_changes_that_changed_something_are_told_to_other_sockets() {
    let all_read = UserCommand::MarkAllRead(NotificationFilter {
        notification_type: Some("comment_added".into()),
        ticket: Some(TicketId(5)),
        ..NotificationFilter::default()
    });
    let read = UserCommand::SetRead { id: 3, read: true };
    let found = Some(Box::new(note(1)));
    for (outcome, cmd, update) in [
        (
            CommandOutcome::SetRead {
                id: 3,
                read: true,
                notification: found.clone(),
            },
            &read,
            Some(Update::Read {
                id: 3,
                is_read: true,
            }),
        ),
        (
            CommandOutcome::SetRead {
                id: 3,
                read: false,
                notification: found,
            },
            &read,
            Some(Update::Read {
                id: 3,
                is_read: false,
            }),
        ),
        (
            CommandOutcome::SetRead {
                id: 3,
                read: true,
                notification: None,
            },
            &read,
            None,
        ),
        (
            CommandOutcome::AllRead(vec![4, 9]),
            &all_read,
            Some(Update::AllRead {
                count: 2,
                notification_type: Some("comment_added".into()),
                ticket: Some(5),
            }),
        ),
        (CommandOutcome::AllRead(Vec::new()), &all_read, None),
        // An outcome that does not answer its command says nothing.
        (CommandOutcome::AllRead(vec![4]), &read, None),
        (
            CommandOutcome::Deleted {
                id: 8,
                success: true,
            },
            &UserCommand::Delete { id: 8 },
            Some(Update::Deleted { id: 8 }),
        ),
        (
            CommandOutcome::Deleted {
                id: 8,
                success: false,
            },
            &UserCommand::Delete { id: 8 },
            None,
        ),
        (
            CommandOutcome::AllDeleted(3),
            &UserCommand::DeleteAll,
            Some(Update::AllDeleted { count: 3 }),
        ),
        (CommandOutcome::AllDeleted(0), &UserCommand::DeleteAll, None),
        (CommandOutcome::Acked(7), &UserCommand::Ack(7), None),
    ] {
        assert_eq!(outcome.update(cmd), update, "{outcome:?}");
    }
}

#[tokio::test]
async fn a_new_socket_replays_from_where_it_asks_or_from_what_was_seen() {
    // (resume, acked, sent, replay cap, replay, greeting's last_seq)
    for (resume, acked, sent, cap, replay, greeting) in [
        (
            Resume::Unacknowledged,
            0,
            0,
            100,
            "replay [1, 2, 3, 4, 5] +0 to 5",
            5,
        ),
        (
            Resume::Unacknowledged,
            2,
            0,
            100,
            "replay [3, 4, 5] +0 to 5",
            5,
        ),
        // What a client acknowledged wins over what was written to its sockets.
        (
            Resume::Unacknowledged,
            2,
            4,
            100,
            "replay [3, 4, 5] +0 to 5",
            5,
        ),
        (Resume::Unacknowledged, 0, 4, 100, "replay [5] +0 to 5", 5),
        (Resume::Unacknowledged, 5, 0, 100, "replay [] +0 to 5", 5),
        (Resume::Unacknowledged, 0, 0, 2, "replay [4, 5] +3 to 5", 5),
        (
            Resume::After(0),
            4,
            4,
            100,
            "replay [1, 2, 3, 4, 5] +0 to 5",
            5,
        ),
        (Resume::After(3), 0, 0, 100, "replay [4, 5] +0 to 5", 5),
        (Resume::After(3), 0, 0, 1, "replay [5] +1 to 5", 5),
        (
            Resume::After(-7),
            0,
            0,
            100,
            "replay [1, 2, 3, 4, 5] +0 to 5",
            5,
        ),
        // A seq from the future (another server's, a stale tab) is held to the newest.
        (Resume::After(99), 0, 0, 100, "replay [] +0 to 5", 5),
        (Resume::After(i64::MAX), 0, 0, 100, "replay [] +0 to 5", 5),
    ] {
        let inbox = Inbox::default();
        inbox.commit(1..=5);
        inbox.held().acked_seq = acked;
        inbox.held().sent_seq = sent;
        let user = start(
            inbox,
            cap,
            Duration::from_secs(3_600),
            Duration::from_secs(3_600),
        )
        .await;
        let (attached, _conn, mut rx) = user.attach(1, resume).await;
        let case = format!("{resume:?}, acked {acked}, sent {sent}, cap {cap}");
        assert_eq!(received(&mut rx), [replay], "{case}");
        assert_eq!(attached.last_seq, greeting, "{case}");
        assert_eq!(attached.connections, 1, "{case}");
    }
}

#[tokio::test]
async fn live_pushes_never_wait_for_an_ack_to_be_written() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let user = patient(Inbox {
        ack_gate: Some(gate.clone()),
        ..Inbox::default()
    })
    .await;
    let (_, _a, mut a) = user.attach(1, Resume::Unacknowledged).await;
    user.inbox.commit(1..=2);
    user.notify([1]);
    let (tx, acked) = ractor::concurrency::oneshot();
    user.send(UserMsg::Command(Box::new(CommandRequest {
        from: Some(ConnId(1)),
        cmd: UserCommand::Ack(1),
        reply: tx.into(),
    })));
    // The ack's write is held up; the next notification goes out all the same.
    user.notify([2]);
    tokio::time::timeout(Duration::from_secs(10), user.snapshot())
        .await
        .expect("the actor waited for the ack's write");
    assert_eq!(received(&mut a), ["replay [] +0 to 0", "n1", "n2"]);
    assert_eq!(user.inbox.held().acked_seq, 0);
    gate.add_permits(1);
    assert_eq!(acked.await.unwrap(), Ok(CommandOutcome::Acked(1)));
    assert_eq!(user.inbox.held().acked_seq, 1);
}

#[tokio::test]
async fn a_user_without_notifications_is_greeted_with_seq_zero() {
    let user = patient(Inbox::default()).await;
    let (attached, _conn, mut rx) = user.attach(1, Resume::Unacknowledged).await;
    assert_eq!(attached.last_seq, 0);
    assert_eq!(received(&mut rx), ["replay [] +0 to 0"]);
}

#[tokio::test]
async fn deleted_notifications_leave_gaps_in_a_replay() {
    let inbox = Inbox::default();
    inbox.commit(1..=4);
    inbox.held().notifications.remove(&2);
    let user = patient(inbox).await;
    let (_, _conn, mut rx) = user.attach(1, Resume::After(0)).await;
    assert_eq!(received(&mut rx), ["replay [1, 3, 4] +0 to 4"]);
}

#[tokio::test]
async fn live_notifications_go_out_in_seq_order_whatever_order_they_arrive_in() {
    let user = patient(Inbox::default()).await;
    let (_, _a, mut a) = user.attach(1, Resume::Unacknowledged).await;
    let (_, _b, mut b) = user.attach(2, Resume::Unacknowledged).await;
    user.inbox.commit(1..=4);
    user.notify([3, 1, 4, 2]);
    let snapshot = user.snapshot().await;
    assert_eq!(
        received(&mut a),
        ["replay [] +0 to 0", "n1", "n2", "n3", "n4"]
    );
    assert_eq!(
        received(&mut b),
        ["replay [] +0 to 0", "n1", "n2", "n3", "n4"]
    );
    assert_eq!(snapshot.delivered_seq, 4);
    assert_eq!(snapshot.connections, [ConnId(1), ConnId(2)]);
    // One already pushed, arriving again, is not pushed twice.
    user.notify([2, 4]);
    user.snapshot().await;
    assert!(received(&mut a).is_empty());
}

#[tokio::test]
async fn a_notification_ahead_of_a_gap_waits_for_it() {
    let user = patient(Inbox::default()).await;
    let (_, _conn, mut rx) = user.attach(1, Resume::Unacknowledged).await;
    user.inbox.commit(1..=3);
    user.notify([1, 3]);
    let snapshot = user.snapshot().await;
    assert_eq!(received(&mut rx), ["replay [] +0 to 0", "n1"]);
    assert_eq!(snapshot.delivered_seq, 1);
    user.notify([2]);
    assert_eq!(user.snapshot().await.delivered_seq, 3);
    assert_eq!(received(&mut rx), ["n2", "n3"]);
}

#[tokio::test]
async fn a_gap_still_open_after_the_wait_is_filled_from_the_database() {
    let user = start(
        Inbox::default(),
        100,
        Duration::from_millis(20),
        Duration::from_secs(3_600),
    )
    .await;
    let (_, _conn, mut rx) = user.attach(1, Resume::Unacknowledged).await;
    // 2 and 3 were committed by another process; 4 was deleted before it was read.
    user.inbox.commit(1..=5);
    user.inbox.held().notifications.remove(&4);
    user.notify([1, 5]);
    assert_eq!(user.snapshot().await.delivered_seq, 1);
    for _ in 0..250 {
        if user.snapshot().await.delivered_seq == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(user.snapshot().await.delivered_seq, 5);
    assert_eq!(
        received(&mut rx),
        ["replay [] +0 to 0", "n1", "n2", "n3", "n5"]
    );
}

#[tokio::test]
async fn another_process_s_commits_are_caught_up_from_the_database() {
    let user = patient(Inbox::default()).await;
    let (_, _conn, mut rx) = user.attach(1, Resume::Unacknowledged).await;
    user.inbox.commit(1..=3);
    user.send(UserMsg::CatchUp(2));
    assert_eq!(user.snapshot().await.delivered_seq, 2);
    assert_eq!(received(&mut rx), ["replay [] +0 to 0", "n1", "n2"]);
    // Nothing new below what was delivered.
    user.send(UserMsg::CatchUp(1));
    user.send(UserMsg::CatchUp(2));
    user.snapshot().await;
    assert!(received(&mut rx).is_empty());
    // Up to 4, of which only 3 exists: 4 is taken as deleted.
    user.send(UserMsg::CatchUp(4));
    assert_eq!(user.snapshot().await.delivered_seq, 4);
    assert_eq!(received(&mut rx), ["n3"]);
}

#[tokio::test]
async fn a_socket_is_not_pushed_live_what_its_replay_already_had() {
    let user = patient(Inbox::default()).await;
    let (_, _a, mut a) = user.attach(1, Resume::Unacknowledged).await;
    // Committed, but its fan-out has yet to arrive as a second tab opens.
    user.inbox.commit(1..=2);
    let (attached, _b, mut b) = user.attach(2, Resume::After(0)).await;
    assert_eq!(attached.last_seq, 2);
    user.notify([1, 2, 3]);
    user.snapshot().await;
    assert_eq!(received(&mut a), ["replay [] +0 to 0", "n1", "n2", "n3"]);
    assert_eq!(received(&mut b), ["replay [1, 2] +0 to 2", "n3"]);
}

#[tokio::test]
async fn a_retried_attach_is_answered_again_without_a_second_replay() {
    let inbox = Inbox::default();
    inbox.commit(1..=2);
    let user = patient(inbox).await;
    let (first, conn, mut rx) = user.attach(1, Resume::After(0)).await;
    let again = user
        .attach_handle(conn.clone(), Resume::After(0))
        .await
        .unwrap();
    assert_eq!((first.connections, first.last_seq), (1, 2));
    assert_eq!((again.connections, again.last_seq), (1, 2));
    assert_eq!(received(&mut rx), ["replay [1, 2] +0 to 2"]);
}

#[tokio::test]
async fn a_change_from_one_socket_is_told_to_the_user_s_other_sockets() {
    let inbox = Inbox::default();
    inbox.commit(1..=3);
    let user = patient(inbox).await;
    let (_, _a, mut a) = user.attach(1, Resume::After(3)).await;
    let (_, _b, mut b) = user.attach(2, Resume::After(3)).await;
    received(&mut a);
    received(&mut b);
    let outcome = user
        .command(Some(1), UserCommand::SetRead { id: 20, read: true })
        .await
        .unwrap();
    let mut read = note(2);
    read.is_read = true;
    assert_eq!(
        outcome,
        CommandOutcome::SetRead {
            id: 20,
            read: true,
            notification: Some(Box::new(read)),
        }
    );
    assert!(received(&mut a).is_empty(), "not told of its own change");
    assert_eq!(received(&mut b), ["Read { id: 20, is_read: true }"]);
    // From REST, every socket hears.
    let outcome = user
        .command(None, UserCommand::Delete { id: 30 })
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CommandOutcome::Deleted {
            id: 30,
            success: true
        }
    );
    assert_eq!(received(&mut a), ["Deleted { id: 30 }"]);
    assert_eq!(received(&mut b), ["Deleted { id: 30 }"]);
    // A change to nothing is told to nobody.
    for cmd in [
        UserCommand::SetRead {
            id: 999,
            read: true,
        },
        UserCommand::Delete { id: 30 },
        UserCommand::Ack(2),
    ] {
        user.command(None, cmd.clone()).await.unwrap();
        assert!(received(&mut a).is_empty(), "{cmd:?}");
        assert!(received(&mut b).is_empty(), "{cmd:?}");
    }
    let outcome = user
        .command(
            Some(2),
            UserCommand::MarkAllRead(NotificationFilter::default()),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CommandOutcome::AllRead(vec![10]));
    assert_eq!(
        received(&mut a),
        ["AllRead { count: 1, notification_type: None, ticket: None }"]
    );
    assert!(received(&mut b).is_empty());
    assert_eq!(
        user.command(None, UserCommand::DeleteAll).await.unwrap(),
        CommandOutcome::AllDeleted(2)
    );
    assert_eq!(received(&mut b), ["AllDeleted { count: 2 }"]);
    assert_eq!(
        user.command(None, UserCommand::Ack(99)).await.unwrap(),
        CommandOutcome::Acked(3)
    );
}

#[tokio::test]
async fn a_change_made_elsewhere_follows_the_notifications_committed_before_it() {
    let user = patient(Inbox::default()).await;
    let (_, _conn, mut rx) = user.attach(1, Resume::Unacknowledged).await;
    received(&mut rx);
    // Committed on another node, its fan-out not yet here, and already read there.
    user.inbox.commit([1]);
    user.send(UserMsg::Changed(Update::Read {
        id: 10,
        is_read: true,
    }));
    assert_eq!(user.snapshot().await.delivered_seq, 1);
    assert_eq!(received(&mut rx), ["n1", "Read { id: 10, is_read: true }"]);
}

#[tokio::test]
async fn a_socket_whose_session_ended_is_dropped_at_the_next_push() {
    let user = patient(Inbox::default()).await;
    let (_, _a, mut a) = user.attach(1, Resume::Unacknowledged).await;
    let (_, _b, b) = user.attach(2, Resume::Unacknowledged).await;
    drop(b);
    user.notify([1]);
    let snapshot = user.snapshot().await;
    assert_eq!(snapshot.connections, [ConnId(1)]);
    assert_eq!(received(&mut a), ["replay [] +0 to 0", "n1"]);
}

#[tokio::test]
async fn the_heartbeat_pings_live_sockets() {
    let user = patient(Inbox::default()).await;
    let (_, conn, mut rx) = user.attach(1, Resume::Unacknowledged).await;
    received(&mut rx);
    user.send(UserMsg::Heartbeat);
    assert_eq!(user.snapshot().await.connections, [ConnId(1)]);
    assert_eq!(received(&mut rx), ["ping"]);
    assert_eq!(conn.shared.kicked(), None);
}

#[tokio::test]
async fn the_heartbeat_closes_silent_sockets_and_the_actor_stops_without_any() {
    let user = start(
        Inbox::default(),
        100,
        Duration::from_secs(3_600),
        Duration::ZERO,
    )
    .await;
    let (_, conn, _rx) = user.attach(1, Resume::Unacknowledged).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    user.send(UserMsg::Heartbeat);
    user.stops().await;
    assert_eq!(conn.shared.kicked(), Some(Disconnect::Idle));
}

#[tokio::test]
async fn closing_tells_every_socket_why_and_shutdown_stops_the_actor() {
    let user = patient(Inbox::default()).await;
    let (_, _a, mut a) = user.attach(1, Resume::Unacknowledged).await;
    let (_, _b, mut b) = user.attach(2, Resume::Unacknowledged).await;
    received(&mut a);
    received(&mut b);
    user.send(UserMsg::Close(Disconnect::Deactivated));
    user.stops().await;
    assert_eq!(received(&mut a), ["close Deactivated"]);
    assert_eq!(received(&mut b), ["close Deactivated"]);

    let user = patient(Inbox::default()).await;
    let (_, _a, mut a) = user.attach(1, Resume::Unacknowledged).await;
    received(&mut a);
    user.send(UserMsg::Shutdown);
    user.stops().await;
    assert_eq!(received(&mut a), ["close Shutdown"]);
}

#[tokio::test]
async fn the_last_socket_leaving_records_what_it_was_sent_and_stops_the_actor() {
    let user = patient(Inbox::default()).await;
    let (_, a, _ra) = user.attach(1, Resume::Unacknowledged).await;
    let (_, b, _rb) = user.attach(2, Resume::Unacknowledged).await;
    a.shared.mark_sent(7);
    b.shared.mark_sent(5);
    user.send(UserMsg::Detach(ConnId(2)));
    assert_eq!(user.snapshot().await.connections, [ConnId(1)]);
    // The highest seq written to any socket, the one that stays included.
    assert_eq!(user.inbox.held().recorded, [(USER, 7)]);
    user.send(UserMsg::Detach(ConnId(1)));
    let inbox = user.inbox.clone();
    user.stops().await;
    assert_eq!(inbox.held().recorded, [(USER, 7)], "nothing new to record");
}

#[tokio::test]
async fn sockets_running_far_ahead_of_the_record_are_recorded_at_once() {
    let user = patient(Inbox::default()).await;
    let (_, conn, _rx) = user.attach(1, Resume::Unacknowledged).await;
    conn.shared.mark_sent(SENT_FLUSH_EVERY - 1);
    user.notify([1]);
    user.snapshot().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        user.inbox.held().recorded.is_empty(),
        "within the allowance"
    );
    conn.shared.mark_sent(SENT_FLUSH_EVERY);
    user.notify([2]);
    user.snapshot().await;
    for _ in 0..100 {
        if !user.inbox.held().recorded.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(user.inbox.held().recorded, [(USER, SENT_FLUSH_EVERY)]);
}

#[tokio::test]
async fn an_actor_that_cannot_read_the_stream_fails_the_attach_and_stops() {
    let inbox = Inbox::default();
    inbox.held().cursor_fails = true;
    let user = patient(inbox).await;
    let (conn, _rx) = ConnHandle::new(ConnId(1), 64, 1 << 20);
    assert!(user
        .attach_handle(conn, Resume::Unacknowledged)
        .await
        .is_err());
    user.stops().await;
}

/// The cursor the inbox holds now, with the notices' stamp taken first, as a handshake reads it.
fn handshake_read(user: &Running) -> CursorHint {
    let stamp = user.notices.stamp(USER);
    let held = user.inbox.held();
    CursorHint {
        cursor: NotificationCursor {
            last_seq: held.last_seq,
            acked_seq: held.acked_seq,
            sent_seq: held.sent_seq,
        },
        stamp,
    }
}

#[tokio::test]
async fn a_starting_actor_takes_the_handshake_s_cursor_while_nothing_reached_the_user() {
    let inbox = Inbox::default();
    inbox.commit(1..=3);
    inbox.held().acked_seq = 1;
    let user = patient(inbox).await;
    let hint = handshake_read(&user);
    // The actor's own read would fail: the attach succeeds only on the handshake's.
    user.inbox.held().cursor_fails = true;
    let (attached, _conn, mut rx) = user.attach_after(hint).await;
    assert_eq!(attached.last_seq, 3);
    assert_eq!(received(&mut rx), ["replay [2, 3] +0 to 3"]);
}

#[tokio::test]
async fn a_starting_actor_reads_the_cursor_again_when_the_user_had_news_since_the_handshake() {
    let inbox = Inbox::default();
    inbox.commit(1..=2);
    let user = patient(inbox).await;
    let hint = handshake_read(&user);
    // Committed after the handshake's read, and counted before any actor was looked up to
    // push it to: no actor was found, so only a fresh read brings it.
    user.inbox.commit(3..=3);
    user.notices.news(USER);
    let (attached, _conn, mut rx) = user.attach_after(hint).await;
    assert_eq!(attached.last_seq, 3);
    assert_eq!(received(&mut rx), ["replay [1, 2, 3] +0 to 3"]);

    // News for everyone (a gap on the bus) does the same.
    let inbox = Inbox::default();
    let user = patient(inbox).await;
    let hint = handshake_read(&user);
    user.inbox.commit(1..=1);
    user.notices.news_for_everyone();
    let (_, _conn, mut rx) = user.attach_after(hint).await;
    assert_eq!(received(&mut rx), ["replay [1] +0 to 1"]);
}

#[tokio::test]
async fn an_actor_that_stops_sends_a_handshake_that_read_before_to_the_database() {
    let user = patient(Inbox::default()).await;
    let (_, conn, _rx) = user.attach(1, Resume::Unacknowledged).await;
    conn.shared.mark_sent(4);
    // A handshake for the user's next socket reads while this actor still owns the last one:
    // the sent seq it reads is older than the one the actor records as the socket leaves.
    let hint = handshake_read(&user);
    assert_eq!(hint.cursor.sent_seq, 0);
    let (inbox, notices) = (user.inbox.clone(), user.notices.clone());
    user.send(UserMsg::Detach(ConnId(1)));
    user.stops().await;
    assert_eq!(inbox.held().recorded, [(USER, 4)]);
    assert!(
        !notices.unchanged(USER, hint.stamp),
        "the next actor must read the recorded sent seq, not the handshake's"
    );
}
