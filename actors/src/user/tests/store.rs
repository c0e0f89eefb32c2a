use super::*;

pub(super) const USER: UserId = UserId(1);

/// One user's inbox in memory: what the user actor reads and changes.
#[derive(Default)]
pub(super) struct Inbox {
    pub(super) held: Mutex<Held>,
    pub(super) faults: StoreFaults,
    /// Holds every ack's write until a permit is added.
    pub(super) ack_gate: Option<Arc<tokio::sync::Semaphore>>,
}

#[derive(Default)]
pub(super) struct Held {
    /// The committed notifications, by seq.
    pub(super) notifications: BTreeMap<i64, Notification>,
    /// The highest seq committed, deleted ones included.
    pub(super) last_seq: i64,
    pub(super) acked_seq: i64,
    pub(super) sent_seq: i64,
    /// Where the stream stands cannot be read.
    pub(super) cursor_fails: bool,
    /// The `sent_seq` writes.
    pub(super) recorded: Vec<(UserId, i64)>,
}

impl Inbox {
    pub(super) fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap()
    }

    /// Commits the notifications `seqs` (as another process could: nobody is told).
    pub(super) fn commit(&self, seqs: impl IntoIterator<Item = i64>) {
        let mut held = self.held();
        for seq in seqs {
            held.notifications.insert(seq, note(seq));
            held.last_seq = held.last_seq.max(seq);
        }
    }
}

pub(super) fn note(seq: i64) -> Notification {
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
    fn change_comment(&self, id: i64, body: Option<&str>, at: DateTime<Utc>) -> Result<Option<Comment>, StoreError>;
});

inbox!(NotificationStore {
    fn commit_notifications(&self, drafts: Vec<Draft>, mark: Option<&IdempotencyMark>) -> Result<Vec<Notification>, StoreError>;
    fn commit_notifications_part(&self, drafts: Vec<Draft>, mark: Option<&IdempotencyMark>, last: bool) -> Result<Vec<Notification>, StoreError>;
    fn list_notifications(&self, user: UserId, filter: &NotificationFilter, page: Page) -> Result<(i64, Vec<Notification>), StoreError>;
    fn unread_counts(&self, user: UserId) -> Result<(i64, Vec<(String, i64)>), StoreError>;
    fn notification(&self, user: UserId, id: i64) -> Result<Option<Notification>, StoreError>;
});

inbox!(InboxStore {
    fn inbox_changes(&self, users: &[UserId], since: DateTime<Utc>) -> Result<Vec<InboxChange>, StoreError>;
}
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

    async fn delete_all_notifications(&self, _: UserId) -> Result<Vec<i64>, StoreError> {
        let mut held = self.held();
        let mut ids: Vec<i64> = held.notifications.values().map(|n| n.id).collect();
        ids.sort_unstable();
        held.notifications.clear();
        Ok(ids)
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
    fn gather_batch(&self, id: i64, node: &str, joins: &(dyn for<'n> Fn(&'n Notification) -> bool + Sync)) -> Result<Option<Vec<Notification>>, StoreError>;
    fn outbox_depth(&self, channel: Channel) -> Result<i64, StoreError>;
});

inbox!(HistoryStore {
    fn timeline(&self, id: i64) -> Result<Option<TimelineRecord>, StoreError>;
    fn ticket_events(&self, ticket: TicketId) -> Result<Vec<TicketEvent>, StoreError>;
    fn ticket_follow_ups(&self, ticket: TicketId) -> Result<Vec<crate::ports::FollowUp>, StoreError>;
    fn event_notifications(&self, ticket: TicketId, user: UserId) -> Result<Vec<(i64, i64)>, StoreError>;
}
    async fn record_pushes(&self, _: &str, _: &[Pushed]) -> Result<(), StoreError> {
        Ok(())
    }
);

inbox!(EscalationStore {
    fn claim_escalations(&self, node: &str, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: i64) -> Result<Vec<EscalationJob>, StoreError>;
    fn finish_escalation(&self, id: i64, node: &str, finish: Finish) -> Result<Option<crate::ports::Settled>, StoreError>;
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

inbox!(OncallStore {
    fn create_oncall_schedule(&self, schedule: crate::ports::NewOncallSchedule) -> Result<Option<crate::ports::OncallSchedule>, StoreError>;
    fn oncall_schedules(&self) -> Result<Vec<crate::ports::OncallSchedule>, StoreError>;
    fn oncall_schedule(&self, name: &str) -> Result<Option<crate::ports::OncallSchedule>, StoreError>;
    fn delete_oncall_schedule(&self, name: &str) -> Result<bool, StoreError>;
    fn add_oncall_override(&self, schedule: i64, user: UserId, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<crate::oncall::Override, StoreError>;
    fn oncall_overrides(&self, schedule: i64, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<crate::oncall::Override>, StoreError>;
    fn delete_oncall_override(&self, schedule: i64, id: i64) -> Result<bool, StoreError>;
});

inbox!(ReplyStore {
    fn users_with_address(&self, channel: Channel, address: &str) -> Result<Vec<UserId>, StoreError>;
    fn replyable(&self, user: UserId, channel: Channel, limit: i64) -> Result<Vec<crate::ports::Replyable>, StoreError>;
    fn record_acknowledgement(&self, notification: i64, user: UserId, via: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;
    fn acknowledgements(&self, notification: i64) -> Result<Vec<crate::ports::Acknowledgement>, StoreError>;
    fn inbound_answer(&self, provider: &str, id: &str) -> Result<Option<String>, StoreError>;
    fn keep_inbound_answer(&self, provider: &str, id: &str, answer: &str, at: DateTime<Utc>) -> Result<String, StoreError>;
});

inbox!(HoldStore {
    fn quiet(&self, user: UserId) -> Result<crate::ports::Quiet, StoreError>;
    fn set_quiet(&self, user: UserId, quiet: crate::ports::Quiet) -> Result<(), StoreError>;
    fn add_maintenance(&self, project: crate::domain::ProjectId, from: DateTime<Utc>, to: DateTime<Utc>, by: UserId) -> Result<crate::ports::MaintenanceWindow, StoreError>;
    fn maintenance_windows(&self, project: crate::domain::ProjectId, after: DateTime<Utc>) -> Result<Vec<crate::ports::MaintenanceWindow>, StoreError>;
    fn delete_maintenance(&self, project: crate::domain::ProjectId, id: i64) -> Result<bool, StoreError>;
    fn maintenance_until(&self, ticket: crate::ticket_domain::TicketId, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError>;
    fn held_deliveries(&self) -> Result<Vec<(String, i64)>, StoreError>;
    fn hold_delivery(&self, id: i64, node: &str, until: DateTime<Utc>, why: &str) -> Result<bool, StoreError>;
});

inbox!(VerificationStore {
    fn start_verification(&self, v: NewVerification) -> Result<Started, StoreError>;
    fn check_verification(&self, user: UserId, channel: Channel, code_hash: &str, now: DateTime<Utc>, attempts: i64) -> Result<Checked, StoreError>;
    fn check_verification_link(&self, link_hash: &str, now: DateTime<Utc>) -> Result<Checked, StoreError>;
});

inbox!(ChatStore {
    fn add_project_chat(&self, chat: crate::ports::NewProjectChat) -> Result<crate::ports::ProjectChat, StoreError>;
    fn project_chats(&self, project: crate::domain::ProjectId) -> Result<Vec<crate::ports::ProjectChat>, StoreError>;
    fn delete_project_chat(&self, project: crate::domain::ProjectId, id: i64) -> Result<bool, StoreError>;
    fn claim_chat_updates(&self, node: &str, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: i64) -> Result<Vec<crate::ports::ChatUpdate>, StoreError>;
    fn set_chat_thread(&self, chat: i64, ticket: crate::ticket_domain::TicketId, message: &str) -> Result<(), StoreError>;
    fn chat_update_told(&self, id: i64) -> Result<(), StoreError>;
    fn chat_update_failed(&self, id: i64, error: &str, due: Option<DateTime<Utc>>) -> Result<(), StoreError>;
});

inbox!(ReceiptStore {
    fn record_receipt(&self, channel: Channel, provider_id: &str, status: &str, failed: bool, error_code: Option<&str>, at: DateTime<Utc>) -> Result<Option<crate::ports::Receipt>, StoreError>;
    fn record_report(&self, channel: Channel, delivery: i64, user: UserId, report: &crate::ports::Report, at: DateTime<Utc>) -> Result<Option<crate::ports::Receipt>, StoreError>;
    fn receipts(&self, notification: i64) -> Result<Vec<crate::ports::Receipt>, StoreError>;
    fn suppress(&self, entry: crate::ports::NewSuppression<'_>) -> Result<(), StoreError>;
    fn suppressions(&self, channel: Option<Channel>, address: Option<&str>, offset: i64, limit: i64) -> Result<(i64, Vec<crate::ports::Suppression>), StoreError>;
    fn unsuppress(&self, id: i64, actor: &str) -> Result<Option<crate::ports::Suppression>, StoreError>;
});

inbox!(WebhookStore {
    fn add_webhook(&self, webhook: crate::ports::NewWebhook) -> Result<crate::ports::Webhook, StoreError>;
    fn webhooks(&self) -> Result<Vec<crate::ports::Webhook>, StoreError>;
    fn webhook(&self, id: i64) -> Result<Option<crate::ports::Webhook>, StoreError>;
    fn set_webhook_enabled(&self, id: i64, enabled: bool) -> Result<Option<crate::ports::Webhook>, StoreError>;
    fn delete_webhook(&self, id: i64) -> Result<bool, StoreError>;
    fn webhook_deliveries(&self, subscription: i64, offset: i64, limit: i64) -> Result<(i64, Vec<crate::ports::WebhookDelivery>), StoreError>;
    fn queue_webhook_test(&self, subscription: i64, at: DateTime<Utc>) -> Result<Option<crate::ports::WebhookDelivery>, StoreError>;
    fn claim_webhook_deliveries(&self, node: &str, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: i64) -> Result<Vec<crate::ports::WebhookJob>, StoreError>;
    fn webhook_delivered(&self, id: i64, node: &str, status: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    fn webhook_failed(&self, id: i64, node: &str, status: Option<i64>, error: &str, due: Option<DateTime<Utc>>, at: DateTime<Utc>, disable_before: DateTime<Utc>) -> Result<crate::ports::WebhookFailed, StoreError>;
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
pub(super) struct Running {
    pub(super) inbox: Arc<Inbox>,
    pub(super) notices: Arc<crate::notices::Notices>,
    pub(super) actor: ActorRef<UserMsg>,
    pub(super) stopped: JoinHandle<()>,
}

pub(super) async fn start(
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
pub(super) async fn patient(inbox: Inbox) -> Running {
    start(
        inbox,
        100,
        Duration::from_secs(3_600),
        Duration::from_secs(3_600),
    )
    .await
}

impl Running {
    pub(super) async fn attach(&self, id: u64, resume: Resume) -> (Attached, ConnHandle, Outbound) {
        let (conn, rx) = ConnHandle::new(ConnId(id), 64, 1 << 20);
        let attached = self.attach_handle(conn.clone(), resume).await.unwrap();
        (attached, conn, rx)
    }

    pub(super) async fn attach_handle(
        &self,
        conn: ConnHandle,
        resume: Resume,
    ) -> Result<Attached, ractor::RactorErr<UserMsg>> {
        self.attach_hinted(conn, resume, None).await
    }

    pub(super) async fn attach_hinted(
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
    pub(super) async fn attach_after(&self, hint: CursorHint) -> (Attached, ConnHandle, Outbound) {
        let (conn, rx) = ConnHandle::new(ConnId(1), 64, 1 << 20);
        let attached = self
            .attach_hinted(conn.clone(), Resume::Unacknowledged, Some(hint))
            .await
            .unwrap();
        (attached, conn, rx)
    }

    pub(super) fn send(&self, msg: UserMsg) {
        self.actor.send_message(msg).unwrap();
    }

    pub(super) fn notify(&self, seqs: impl IntoIterator<Item = i64>) {
        for seq in seqs {
            self.send(UserMsg::Notify(Arc::new(note(seq))));
        }
    }

    /// Waits until the actor has handled everything sent before, and describes it.
    pub(super) async fn snapshot(&self) -> UserSnapshot {
        ractor::call!(self.actor, UserMsg::Snapshot).unwrap()
    }

    pub(super) async fn command(
        &self,
        from: Option<u64>,
        cmd: UserCommand,
    ) -> Result<CommandOutcome, String> {
        ractor::call!(self.actor, |reply| UserMsg::Command(Box::new(
            CommandRequest {
                from: from.map(ConnId),
                cmd,
                reply,
            }
        )))
        .unwrap()
    }

    pub(super) async fn stops(self) {
        tokio::time::timeout(Duration::from_secs(5), self.stopped)
            .await
            .expect("the actor stops")
            .unwrap();
    }
}

inbox!(DigestStore {
    fn claim_digests(&self, node: &str, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: i64) -> Result<Vec<crate::ports::DueDigest>, StoreError>;
    fn next_digest(&self, user: UserId) -> Result<Option<crate::ports::DueDigest>, StoreError>;
    fn digest_contents(&self, user: UserId, since: DateTime<Utc>, until: DateTime<Utc>, limit: i64) -> Result<Vec<Notification>, StoreError>;
    fn digest_done(&self, user: UserId, node: &str, until: DateTime<Utc>, next: DateTime<Utc>, sent: i64) -> Result<bool, StoreError>;
});

inbox!(AttachmentStore {
    fn add_attachment(&self, new: crate::ports::NewAttachment, at: DateTime<Utc>) -> Result<crate::ports::Attachment, StoreError>;
    fn attachments(&self, ticket: crate::ticket_domain::TicketId) -> Result<Vec<crate::ports::Attachment>, StoreError>;
    fn attachment(&self, ticket: crate::ticket_domain::TicketId, id: i64) -> Result<Option<crate::ports::Attachment>, StoreError>;
    fn delete_attachment(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    fn objects_to_remove(&self, limit: i64) -> Result<Vec<(i64, String)>, StoreError>;
    fn object_removed(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    fn attachment_totals(&self) -> Result<(i64, i64), StoreError>;
});

inbox!(InvitationStore {
    fn add_invitation(&self, new: crate::ports::NewInvitation, at: DateTime<Utc>) -> Result<crate::ports::Invitation, StoreError>;
    fn invitations(&self, limit: i64) -> Result<Vec<crate::ports::Invitation>, StoreError>;
    fn invitation_by_token(&self, token_hash: &str) -> Result<Option<crate::ports::Invitation>, StoreError>;
    fn revoke_invitation(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError>;
    fn claim_invitation(&self, token_hash: &str, at: DateTime<Utc>) -> Result<Option<crate::ports::Invitation>, StoreError>;
    fn release_invitation(&self, id: i64) -> Result<(), StoreError>;
    fn invitation_accepted(&self, id: i64, user: UserId) -> Result<(), StoreError>;
    fn add_join_request(&self, project: ProjectId, user: UserId, message: &str, at: DateTime<Utc>) -> Result<crate::ports::JoinRequest, StoreError>;
    fn join_requests(&self, user: Option<UserId>, waiting: bool, limit: i64) -> Result<Vec<crate::ports::JoinRequest>, StoreError>;
    fn decide_join_request(&self, id: i64, approve: bool, by: UserId, at: DateTime<Utc>) -> Result<Option<crate::ports::JoinRequest>, StoreError>;
});
