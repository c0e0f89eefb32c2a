//! Unit tests of `notifier.rs`.

use super::*;
use crate::notification::{Cause, Recipient};
use crate::policy::{Policy, Step, Unless};
use crate::routing::Audience as To;

fn user(id: i64, email: Option<&str>, whatsapp: Option<&str>) -> User {
    User {
        id: UserId(id),
        username: format!("user{id}"),
        display_name: format!("Üser {id}"),
        addresses: email
            .map(|e| crate::domain::Address::verified(Channel::Email, e))
            .into_iter()
            .chain(whatsapp.map(|w| crate::domain::Address::verified(Channel::Whatsapp, w)))
            .collect(),
        role: Role::Developer,
        is_superuser: false,
        is_active: true,
        token_version: 0,
        created_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
    }
}

fn reachable(id: i64) -> User {
    user(
        id,
        Some(&format!("u{id}@example.com")),
        Some(&format!("4915100000{id}")),
    )
}

fn audience(users: Vec<User>, outbound: &[Channel]) -> Audience {
    Audience {
        users: users.into_iter().map(|u| (u.id, u)).collect(),
        outbound: outbound.to_vec(),
        ..Audience::default()
    }
}

fn content(event: EventType) -> Content {
    Content {
        event,
        title: "Kommentar".into(),
        message: "Neuer Kommentar zu WEB-5 ✍".into(),
        ticket: None,
        data: "{}".into(),
        action_url: Some("/tickets/5".into()),
        cause: Cause {
            action: "comment",
            actor: Some(UserId(99)),
        },
    }
}

fn recipients_of(drafts: &[Draft]) -> Vec<i64> {
    drafts.iter().map(|d| d.recipient.0).collect()
}

fn deliveries(d: &Draft) -> Vec<(Channel, &str)> {
    d.deliveries.iter().map(|(c, a)| (*c, a.as_str())).collect()
}

fn draft_with(deliveries: &[Channel]) -> Draft {
    Draft {
        recipient: UserId(1),
        notification_type: EventType::CommentAdded,
        title: String::new(),
        message: String::new(),
        ticket: None,
        data: "{}".into(),
        action_url: None,
        deliveries: deliveries.iter().map(|c| (*c, "x".to_owned())).collect(),
        cause: Cause::default(),
        escalations: Vec::new(),
        webhook_recipients: Vec::new(),
    }
}

#[test]
fn a_commit_wakes_each_channel_it_queued_on_once() {
    use crate::event::channel::*;
    for (drafts, woken) in [
        (vec![], vec![]),
        (vec![draft_with(&[])], vec![]),
        (vec![draft_with(&[Email])], vec![Email]),
        (
            vec![
                draft_with(&[Webhook, Email]),
                draft_with(&[]),
                draft_with(&[Email, Whatsapp, Webhook]),
            ],
            // By name.
            vec![Email, Webhook, Whatsapp],
        ),
    ] {
        assert_eq!(Deps::queued_channels(&drafts), woken);
    }
}

#[test]
fn reach_says_which_channels_reach_a_user_and_why_the_others_do_not() {
    use crate::event::channel::*;
    let mut a = audience(
        vec![
            reachable(1),
            user(2, Some(""), None),
            user(3, Some("u3@example.com"), None),
        ],
        &[Email, Whatsapp],
    );
    let mut prefs = Preferences::default();
    prefs.set("comment_added", Email, false);
    a.prefs.insert(UserId(3), prefs);
    let event = EventType::CommentAdded;
    let all = [Email, Whatsapp, Websocket, Webhook];
    let no_transport = "this hub has no transport for it";
    // (user, reached, missed)
    for (id, reached, missed) in [
        (
            1,
            vec![(Email, "u1@example.com"), (Whatsapp, "49151000001")],
            vec![(Websocket, no_transport), (Webhook, no_transport)],
        ),
        (
            2,
            vec![],
            vec![
                (Email, "the user has no email address"),
                (Whatsapp, "the user has no whatsapp address"),
                (Websocket, no_transport),
                (Webhook, no_transport),
            ],
        ),
        (
            3,
            vec![],
            vec![
                (Email, "the user switched email off for this type"),
                (Whatsapp, "the user has no whatsapp address"),
                (Websocket, no_transport),
                (Webhook, no_transport),
            ],
        ),
    ] {
        let (got, not) = a.reach(a.user(UserId(id)).unwrap(), &all, &event);
        let got: Vec<(Channel, &str)> = got.iter().map(|(c, s)| (*c, s.as_str())).collect();
        let not: Vec<(Channel, &str)> = not.iter().map(|(c, s)| (*c, s.as_str())).collect();
        assert_eq!((got, not), (reached, missed), "user {id}");
    }
    // With every transport, the in-app and webhook channels still name nobody.
    let every = audience(vec![reachable(1)], &Channel::all());
    let (_, missed) = every.reach(&reachable(1), &[Websocket, Webhook], &event);
    assert_eq!(
        missed,
        [
            (Websocket, "websocket has no per-user address".to_owned()),
            (Webhook, "webhook has no per-user address".to_owned())
        ]
    );
    assert_eq!(every.reach(&reachable(1), &[], &event), (vec![], vec![]));
}

#[test]
fn an_event_without_a_route_has_no_drafts() {
    let a = audience(vec![reachable(1)], &Channel::outbound());
    let parties = Parties {
        creator: Some(UserId(1)),
        ..Parties::default()
    };
    assert!(a
        .drafts(parties, &content(EventType::Custom("deploy".into())))
        .is_empty());
}

#[test]
fn a_routed_event_drafts_for_its_audiences_less_the_actor_and_the_inactive() {
    use crate::event::channel::*;
    let mut inactive = reachable(4);
    inactive.is_active = false;
    let mut a = audience(
        vec![
            reachable(1),
            reachable(2),
            reachable(3),
            inactive,
            user(5, None, None),
        ],
        &[Email],
    );
    a.route = Some(Route {
        audiences: vec![To::Creator, To::Admins, To::Assignees],
        channels: vec![Websocket, Email, Whatsapp],
        push_unless_seen: None,
    });
    // The admins the audience loaded count, not the ones the caller passed.
    a.admins = vec![UserId(3), UserId(2)];
    let parties = Parties {
        actor: Some(UserId(2)),
        creator: Some(UserId(1)),
        assignees: &[UserId(4), UserId(5), UserId(6), UserId(1)],
        admins: &[UserId(7)],
        ..Parties::default()
    };
    let drafts = a.drafts(parties, &content(EventType::CommentAdded));
    // 2 acted, 4 is deactivated, 6 was not loaded; 1 is named once.
    assert_eq!(recipients_of(&drafts), [1, 3, 5]);
    assert_eq!(deliveries(&drafts[0]), [(Email, "u1@example.com")]);
    assert_eq!(deliveries(&drafts[1]), [(Email, "u3@example.com")]);
    assert_eq!(deliveries(&drafts[2]), []);
    let d = &drafts[0];
    assert_eq!(d.notification_type, EventType::CommentAdded);
    assert_eq!(d.title, "Kommentar");
    assert_eq!(d.message, "Neuer Kommentar zu WEB-5 ✍");
    assert_eq!(d.action_url.as_deref(), Some("/tickets/5"));
    assert_eq!(d.cause.action, "comment");
    assert!(d.webhook_recipients.is_empty());
    assert!(d.escalations.is_empty());
}

#[test]
fn super_admins_are_those_the_audience_loaded() {
    let mut a = audience(vec![reachable(1), reachable(2)], &[]);
    a.route = Some(Route {
        audiences: vec![To::SuperAdmins],
        channels: vec![Channel::Websocket],
        push_unless_seen: None,
    });
    a.super_admins = vec![UserId(2)];
    let parties = Parties {
        super_admins: &[UserId(1)],
        ..Parties::default()
    };
    let drafts = a.drafts(parties, &content(EventType::UserRegistered));
    assert_eq!(recipients_of(&drafts), [2]);
}

#[test]
fn in_app_only_drafts_go_to_the_active_candidates_without_deliveries() {
    let a = Audience {
        in_app_only: Some(vec![UserId(2), UserId(5), UserId(9)]),
        outbound: Channel::outbound(),
        ..Audience::default()
    };
    let drafts = a.drafts_for(
        &[UserId(9), UserId(1), UserId(5)],
        &[Channel::Email, Channel::Whatsapp],
        &content(EventType::Custom("maintenance".into())),
    );
    assert_eq!(recipients_of(&drafts), [9, 5]);
    assert!(drafts.iter().all(|d| d.deliveries.is_empty()));
    assert!(a
        .drafts_for(&[], &[Channel::Email], &content(EventType::CommentAdded))
        .is_empty());
}

#[test]
fn webhooks_are_posted_once_per_url_by_the_first_draft_for_every_recipient() {
    use crate::event::channel::*;
    let mut a = audience(
        vec![reachable(1), reachable(2), reachable(3)],
        &[Email, Webhook],
    );
    a.webhooks = vec![
        (Webhook, "https://a.example/hook".into()),
        (Webhook, "https://b.example/hook".into()),
    ];
    let drafts = a.drafts_for(
        &[UserId(2), UserId(1), UserId(3)],
        &[Email],
        &content(EventType::CommentAdded),
    );
    assert_eq!(recipients_of(&drafts), [2, 1, 3]);
    assert_eq!(
        deliveries(&drafts[0]),
        [
            (Email, "u2@example.com"),
            (Webhook, "https://a.example/hook"),
            (Webhook, "https://b.example/hook")
        ]
    );
    assert_eq!(deliveries(&drafts[1]), [(Email, "u1@example.com")]);
    assert_eq!(
        drafts[0].webhook_recipients,
        [2, 1, 3].map(|id| Recipient {
            user_id: UserId(id),
            username: format!("user{id}"),
            display_name: format!("Üser {id}"),
        })
    );
    assert!(drafts[1].webhook_recipients.is_empty());
    // One recipient: the delivery speaks for the draft's own.
    let one = a.drafts_for(&[UserId(1)], &[], &content(EventType::CommentAdded));
    assert_eq!(
        deliveries(&one[0]),
        [
            (Webhook, "https://a.example/hook"),
            (Webhook, "https://b.example/hook")
        ]
    );
    assert!(one[0].webhook_recipients.is_empty());
    // Nobody to tell: nothing is posted.
    assert!(a
        .drafts_for(&[UserId(42)], &[], &content(EventType::CommentAdded))
        .is_empty());
}

#[test]
fn every_draft_carries_the_first_matching_policy_s_steps() {
    let step = |minutes: u64, channel| Step {
        after: std::time::Duration::from_secs(minutes * 60),
        unless: Unless::Read,
        channels: vec![channel],
        also: Vec::new(),
        oncall: Vec::new(),
        push_unless_seen: None,
    };
    let policy = |name: &str, event: EventType, steps| Policy {
        name: name.into(),
        events: vec![event],
        priorities: Vec::new(),
        categories: Vec::new(),
        steps,
    };
    let mut a = audience(vec![reachable(1), reachable(2)], &[]);
    a.policies = vec![
        policy(
            "other",
            EventType::WorkStarted,
            vec![step(1, Channel::Email)],
        ),
        policy(
            "comments",
            EventType::CommentAdded,
            vec![step(5, Channel::Email), step(30, Channel::Whatsapp)],
        ),
        policy(
            "later",
            EventType::CommentAdded,
            vec![step(60, Channel::Email)],
        ),
    ];
    let drafts = a.drafts_for(
        &[UserId(1), UserId(2)],
        &[],
        &content(EventType::CommentAdded),
    );
    for d in &drafts {
        let steps: Vec<(&str, i64, u64)> = d
            .escalations
            .iter()
            .map(|s| (s.policy.as_str(), s.step, s.after.as_secs()))
            .collect();
        assert_eq!(steps, [("comments", 1, 300), ("comments", 2, 1_800)]);
    }
    let none = a.drafts_for(&[UserId(1)], &[], &content(EventType::TicketOpened));
    assert!(none[0].escalations.is_empty());
}
