//! Unit tests of the group commit's batching and the notifications' row helpers.

use crate::store::db;

use super::*;
use chrono::TimeZone;
use tickethub_actors::domain::{NewUser, Role};
use tickethub_actors::notification::{Cause, Draft, Recipient};
use tickethub_actors::ports::StoreError;
use tickethub_actors::routing::{Channel, EventType};
use tickethub_actors::ticket_domain::{Category, Priority, TicketStatus};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 2, 29, 12, 0, 0).unwrap()
}

fn row() -> NotificationRow {
    NotificationRow {
        id: 41,
        user_id: 3,
        seq: 9,
        notification_type: "ticket_assigned".into(),
        title: "Ticket Assigned".into(),
        message: "WEB-5 is yours".into(),
        ticket_id: Some(5),
        data: "{}".into(),
        action_url: Some("/tickets/5".into()),
        is_read: true,
        read_at: Some(t0()),
        created_at: t0(),
        t_number: Some(5),
        t_title: Some("Löschen geht nicht".into()),
        t_priority: Some("HIGH".into()),
        t_category: Some("BUG".into()),
        t_status: Some("ASSIGNED".into()),
        t_created_at: Some(t0() - chrono::Duration::hours(1)),
        p_key: Some("WEB".into()),
        p_name: Some("Web".into()),
        c_name: Some("Zoë".into()),
    }
}

#[test]
fn a_row_becomes_a_notification_with_its_ticket_as_it_is_now() {
    let n = row().into_notification().unwrap();
    assert_eq!(
        n,
        Notification {
            id: 41,
            user_id: UserId(3),
            seq: 9,
            notification_type: tickethub_actors::routing::EventType::TicketAssigned,
            title: "Ticket Assigned".into(),
            message: "WEB-5 is yours".into(),
            ticket: Some(TicketSummary {
                id: TicketId(5),
                key: "WEB-5".into(),
                title: "Löschen geht nicht".into(),
                priority: Priority::High,
                category: Category::Bug,
                status: TicketStatus::Assigned,
                created_by: "Zoë".into(),
                project_name: "Web".into(),
                created_at: t0() - chrono::Duration::hours(1),
            }),
            data: "{}".into(),
            action_url: Some("/tickets/5".into()),
            is_read: true,
            read_at: Some(t0()),
            created_at: t0(),
        }
    );
}

#[test]
fn a_notification_shows_no_ticket_unless_the_ticket_and_its_project_are_found() {
    type Edit = fn(&mut NotificationRow);
    let cases: [(&str, Edit); 4] = [
        ("no ticket", |r| r.ticket_id = None),
        ("ticket row gone", |r| r.t_number = None),
        ("project row gone", |r| r.p_key = None),
        ("none of them", |r| {
            r.ticket_id = None;
            r.t_number = None;
            r.p_key = None;
        }),
    ];
    for (case, edit) in cases {
        let mut r = row();
        edit(&mut r);
        assert_eq!(r.into_notification().unwrap().ticket, None, "{case}");
    }
}

#[test]
fn missing_ticket_details_fall_back_and_unreadable_ones_are_an_error() {
    let mut r = row();
    r.t_title = None;
    r.c_name = None;
    r.p_name = None;
    r.t_created_at = None;
    let t = r.into_notification().unwrap().ticket.unwrap();
    assert_eq!(
        (
            t.title.as_str(),
            t.created_by.as_str(),
            t.project_name.as_str()
        ),
        ("", "", "")
    );
    assert_eq!(t.created_at, t0(), "the notification's own time");
    type Edit = fn(&mut NotificationRow);
    let cases: [(&str, Edit); 5] = [
        ("priority", |r| r.t_priority = Some("URGENT".into())),
        ("priority case", |r| r.t_priority = Some("high".into())),
        ("missing priority", |r| r.t_priority = None),
        ("category", |r| r.t_category = Some("CHORE".into())),
        ("status", |r| r.t_status = Some("DONE".into())),
    ];
    for (case, edit) in cases {
        let mut r = row();
        edit(&mut r);
        assert!(
            matches!(r.into_notification(), Err(StoreError::Backend(_))),
            "{case}"
        );
    }
}

#[test]
fn any_type_name_is_a_notification_type() {
    for (stored, event) in [
        ("comment_added", EventType::CommentAdded),
        ("Comment_Added", EventType::Custom("Comment_Added".into())),
        ("maintenance 🛠", EventType::Custom("maintenance 🛠".into())),
        ("", EventType::Custom(String::new())),
    ] {
        let mut r = row();
        r.notification_type = stored.into();
        assert_eq!(r.into_notification().unwrap().notification_type, event);
    }
}

fn delivery_row(channel: &str) -> DeliveryRow {
    DeliveryRow {
        id: 1,
        notification_id: 41,
        channel: channel.into(),
        address: "z@example.com".into(),
        status: "QUEUED".into(),
        attempts: 0,
        last_error: None,
        provider_message_id: None,
        next_attempt_at: t0(),
        sent_at: None,
    }
}

#[test]
fn a_delivery_row_needs_a_known_channel() {
    for (stored, channel) in [
        ("email", Some(Channel::Email)),
        ("whatsapp", Some(Channel::Whatsapp)),
        ("webhook", Some(Channel::Webhook)),
        ("websocket", Some(Channel::Websocket)),
        ("sms", Some(Channel::Sms)),
        ("EMAIL", None),
        ("telegram", None),
        ("", None),
    ] {
        let read = delivery_row(stored).into_delivery();
        assert_eq!(read.as_ref().ok().map(|d| d.channel), channel, "{stored}");
    }
    let d = delivery_row("email").into_delivery().unwrap();
    assert_eq!(
        (
            d.id,
            d.notification_id,
            d.address.as_str(),
            d.status.as_str()
        ),
        (1, 41, "z@example.com", "QUEUED")
    );
}

pub(crate) fn draft(recipient: i64, title: &str) -> Draft {
    Draft {
        recipient: UserId(recipient),
        notification_type: EventType::CommentAdded,
        title: title.into(),
        message: "A comment".into(),
        ticket: None,
        data: "{}".into(),
        action_url: None,
        deliveries: Vec::new(),
        cause: Cause::default(),
        escalations: Vec::new(),
        webhook_recipients: Vec::new(),
    }
}

fn recipient(id: i64, username: &str, display_name: &str) -> Recipient {
    Recipient {
        user_id: UserId(id),
        username: username.into(),
        display_name: display_name.into(),
    }
}

#[test]
fn only_a_webhook_delivery_for_several_recipients_records_them() {
    let mut shared = draft(1, "t");
    shared.webhook_recipients = vec![
        recipient(1, "zoë", "Zoë \"Z\" Ünal"),
        recipient(2, "bob", ""),
    ];
    for channel in [Channel::Email, Channel::Whatsapp, Channel::Websocket] {
        assert_eq!(recipients_json(&shared, channel), None, "{channel:?}");
    }
    assert_eq!(recipients_json(&draft(1, "t"), Channel::Webhook), None);
    let text = recipients_json(&shared, Channel::Webhook).unwrap();
    assert_eq!(
        text,
        r#"[{"display_name":"Zoë \"Z\" Ünal","user_id":1,"username":"zoë"},{"display_name":"","user_id":2,"username":"bob"}]"#
    );
    assert_eq!(parse_recipients(&text).unwrap(), shared.webhook_recipients);
}

#[test]
fn recorded_recipients_that_cannot_be_read_are_an_error() {
    assert_eq!(parse_recipients("[]").unwrap(), Vec::new());
    for text in [
        "",
        "null",
        "{}",
        r#"[{"user_id":1,"username":"a"}]"#,
        r#"[{"user_id":"1","username":"a","display_name":""}]"#,
    ] {
        let err = parse_recipients(text).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("database error: bad recipients: "),
            "{text}: {err}"
        );
    }
}

#[test]
fn drafts_share_content_whatever_their_recipient_and_deliveries() {
    let base = draft(1, "t");
    let mut other_recipient = draft(2, "t");
    other_recipient.deliveries = vec![(Channel::Email, "b@example.com".into())];
    other_recipient.webhook_recipients = vec![recipient(2, "b", "")];
    assert!(same_content(&base, &other_recipient));
    assert!(same_content(&base, &base));
    type Edit = fn(&mut Draft);
    let cases: [(&str, Edit); 8] = [
        ("type", |d| d.notification_type = EventType::WorkStarted),
        ("title", |d| d.title = "T".into()),
        ("message", |d| d.message.push(' ')),
        ("ticket", |d| {
            d.ticket = Some(TicketSummary {
                id: TicketId(1),
                key: "A-1".into(),
                title: String::new(),
                priority: Priority::Low,
                category: Category::Other,
                status: TicketStatus::New,
                created_by: String::new(),
                project_name: String::new(),
                created_at: t0(),
            })
        }),
        ("data", |d| d.data = r#"{"a":1}"#.into()),
        ("action url", |d| d.action_url = Some("/".into())),
        ("action", |d| d.cause.action = "send"),
        ("actor", |d| d.cause.actor = Some(UserId(1))),
    ];
    for (case, edit) in cases {
        let mut changed = draft(2, "t");
        edit(&mut changed);
        assert!(!same_content(&base, &changed), "{case}");
        assert!(!same_content(&changed, &base), "{case}");
    }
}

#[test]
fn calls_merge_in_recipient_order_keeping_each_recipient_s_call_order() {
    let calls = [
        vec![draft(2, "b1"), draft(1, "a1")],
        vec![],
        vec![draft(1, "a2"), draft(3, "c1")],
        vec![draft(2, "b2")],
    ];
    let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
    let (tags, merged) = merge_calls(calls.to_vec());
    let titles: Vec<&str> = merged.iter().map(|d| d.title.as_str()).collect();
    assert_eq!(titles, ["a1", "a2", "b1", "b2", "c1"]);
    assert_eq!(tags, [0, 2, 0, 3, 2]);
    // Each call gets back its own, in recipient order.
    let answers = split_by_call(tags, titles, sizes);
    assert_eq!(
        answers,
        [vec!["a1", "b1"], vec![], vec!["a2", "c1"], vec!["b2"]]
    );
}

#[test]
fn no_calls_merge_into_nothing() {
    let (tags, merged) = merge_calls(Vec::new());
    assert!(tags.is_empty() && merged.is_empty());
    let answers: Vec<Vec<i64>> = split_by_call(tags, Vec::new(), [0, 0]);
    assert_eq!(answers, [Vec::<i64>::new(), Vec::new()]);
}

#[tokio::test]
async fn sqlite_reads_the_recipient_rows_back_exactly() {
    let pool = db::Pool::Sqlite(
        sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap(),
        None,
    );
    for rows in [
        vec![],
        vec![(1, 1)],
        vec![(7, 3), (2, 9), (7, 4)],
        vec![(i64::MAX, i64::MIN), (-1, 0)],
    ] {
        let mut q = db::Builder::new("SELECT r.user_id, r.seq FROM ");
        q.push_pairs(rows.clone(), "r", "user_id", "seq");
        let read: Vec<(i64, i64)> = q.build_query_as().fetch_all(&pool).await.unwrap();
        assert_eq!(read, rows);
    }
}

/// A store on an SQLite file (so that groups are committed by the writer thread, as in a
/// deployment), with `n` users; the folder lives as long as the store is used.
async fn store_with_users(
    n: usize,
) -> (
    std::sync::Arc<dyn crate::store::Store>,
    Vec<UserId>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    let store = crate::store::connect(&url).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let user = store
            .create_user(NewUser::new(format!("user{i}"), Role::Client, "x"))
            .await
            .unwrap();
        ids.push(user.id);
    }
    (store, ids, dir)
}

#[tokio::test]
async fn each_recipient_gets_the_next_seqs_with_no_gaps() {
    let (store, u, _dir) = store_with_users(2).await;
    let seqs = |out: &[Notification]| -> Vec<(i64, i64, String)> {
        out.iter()
            .map(|n| (n.user_id.0, n.seq, n.title.clone()))
            .collect()
    };
    // One event to both: the content bound once.
    let out = store
        .commit_notifications(vec![draft(u[1].0, "e1"), draft(u[0].0, "e1")], None)
        .await
        .unwrap();
    assert_eq!(
        seqs(&out),
        [(u[0].0, 1, "e1".into()), (u[1].0, 1, "e1".into())]
    );
    // Different content, one recipient twice: one statement each.
    let out = store
        .commit_notifications(
            vec![draft(u[1].0, "x"), draft(u[0].0, "y"), draft(u[1].0, "z")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        seqs(&out),
        [
            (u[0].0, 2, "y".into()),
            (u[1].0, 2, "x".into()),
            (u[1].0, 3, "z".into())
        ]
    );
    assert_eq!(store.notification_cursor(u[1]).await.unwrap().last_seq, 3);
    assert!(store
        .commit_notifications(Vec::new(), None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_commit_naming_an_unknown_recipient_stores_nothing() {
    let (store, u, _dir) = store_with_users(1).await;
    let err = store
        .commit_notifications(vec![draft(u[0].0, "a"), draft(9_999, "a")], None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(store.notification_cursor(u[0]).await.unwrap().last_seq, 0);
    let out = store
        .commit_notifications(vec![draft(u[0].0, "b")], None)
        .await
        .unwrap();
    assert_eq!(out[0].seq, 1, "the refused commit used no seq");
}

#[test]
fn seqs_are_planned_per_recipient_in_the_drafts_order() {
    let drafts = [draft(5, "a"), draft(2, "b"), draft(5, "c"), draft(5, "d")];
    let (counts, back) = seq_plan(&drafts);
    // Recipients in id order (the lock order) with their counts.
    assert_eq!(counts, [(2, 1), (5, 3)]);
    // The last draft to a recipient takes its new last_seq, the ones before count down.
    assert_eq!(back, [2, 0, 1, 0]);
    assert_eq!(seq_plan(&[]), (vec![], vec![]));
}

#[tokio::test]
async fn calls_to_one_recipient_in_one_group_get_consecutive_seqs_and_their_own_deliveries() {
    let (store, u, _dir) = store_with_users(3).await;
    let with_email = |recipient: i64, title: &str| {
        let mut d = draft(recipient, title);
        d.deliveries = vec![(Channel::Email, format!("{title}@example.com"))];
        d
    };
    // Several calls at once, so that the committer groups them: each recipient more than once,
    // with content that differs and content that is shared.
    let calls = (0..6).map(|i| {
        let store = store.clone();
        let drafts = vec![
            with_email(u[i % 3].0, &format!("own{i}")),
            with_email(u[(i + 1) % 3].0, "shared"),
        ];
        tokio::spawn(async move { store.commit_notifications(drafts, None).await })
    });
    let mut committed = Vec::new();
    for call in futures::future::join_all(calls).await {
        committed.extend(call.unwrap().unwrap());
    }
    for user in &u {
        let mut seqs: Vec<i64> = committed
            .iter()
            .filter(|n| n.user_id == *user)
            .map(|n| n.seq)
            .collect();
        seqs.sort();
        assert_eq!(seqs, (1..=4).collect::<Vec<_>>(), "user {user}");
        assert_eq!(store.notification_cursor(*user).await.unwrap().last_seq, 4);
    }
    // Every delivery carries the notification it was queued with.
    let now = Utc::now();
    let jobs = store
        .claim(
            Channel::Email,
            "n",
            100,
            now + chrono::Duration::seconds(1),
            now + chrono::Duration::minutes(1),
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), committed.len());
    for job in jobs {
        let n = committed
            .iter()
            .find(|n| n.id == job.notification.id)
            .expect("its notification");
        assert_eq!(job.address, format!("{}@example.com", n.title));
        assert_eq!(
            (job.notification.user_id, job.notification.seq),
            (n.user_id, n.seq)
        );
    }
}

#[tokio::test]
async fn a_capped_backlog_is_the_newest_oldest_first_with_the_rest_counted() {
    let (store, u, _dir) = store_with_users(1).await;
    for i in 1..=5 {
        store
            .commit_notifications(vec![draft(u[0].0, &format!("n{i}"))], None)
            .await
            .unwrap();
    }
    // (after seq, cap, left out, seqs replayed)
    for (after, cap, remaining, replayed) in [
        (0, 10, 0, vec![1, 2, 3, 4, 5]),
        (0, 2, 3, vec![4, 5]),
        (3, 2, 0, vec![4, 5]),
        (3, 1, 1, vec![5]),
        (5, 10, 0, vec![]),
        (99, 10, 0, vec![]),
        (-1, 5, 0, vec![1, 2, 3, 4, 5]),
    ] {
        let (left, list) = store.backlog(u[0], after, cap).await.unwrap();
        let seqs: Vec<i64> = list.iter().map(|n| n.seq).collect();
        assert_eq!(
            (left, seqs),
            (remaining, replayed),
            "after {after}, cap {cap}"
        );
    }
    // A deleted one is neither replayed nor counted.
    let (_, list) = store.backlog(u[0], 3, 2).await.unwrap();
    assert!(store.delete_notification(u[0], list[0].id).await.unwrap());
    let (left, list) = store.backlog(u[0], 0, 10).await.unwrap();
    let seqs: Vec<i64> = list.iter().map(|n| n.seq).collect();
    assert_eq!((left, seqs), (0, vec![1, 2, 3, 5]));
    // The range read to fill a gap skips it too, and excludes both ends.
    let range: Vec<i64> = store
        .seq_range(u[0], 2, 5)
        .await
        .unwrap()
        .iter()
        .map(|n| n.seq)
        .collect();
    assert_eq!(range, [3]);
}
