//! The pure domain core: the ticket state machine and notification routing, without IO.
//!
//! `transition/*` decides one action on a ticket in the status where that action applies, by
//! the person allowed to take it. `routing/*` resolves one event of seed 001's table: the
//! recipients of its route (`recipients`), then the outbound channels of each recipient
//! (`channels_for`), for users who have both an email address and a WhatsApp number.
//!
//! `cargo bench --bench domain`

use std::hint::black_box;
use std::time::Duration;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tickethub_actors::domain::{Address, ProjectId, Role, User, UserId};
use tickethub_actors::routing::{
    channels_for, recipients, Channel, EventType, Parties, Preferences, RoutingTable,
};
use tickethub_actors::ticket_domain::{
    transition, Action, Category, Principal, Priority, Ticket, TicketId, TicketStatus,
};

const ADMIN: Principal = Principal {
    id: UserId(1),
    role: Role::Admin,
};
const DEV: Principal = Principal {
    id: UserId(2),
    role: Role::Developer,
};
const CLIENT: Principal = Principal {
    id: UserId(4),
    role: Role::Client,
};

/// A ticket of the client's, assigned to the developer, in the given status.
fn ticket(status: TicketStatus) -> Ticket {
    Ticket {
        id: TicketId(10),
        project_id: ProjectId(1),
        project_key: "WEB".into(),
        project_name: "Main Website".into(),
        number: 5,
        title: "Homepage not loading".into(),
        description: "The homepage answers 502 since the last deploy.".into(),
        priority: Priority::High,
        category: Category::Bug,
        status,
        created_by: CLIENT.id,
        created_by_name: "John Client".into(),
        assignees: vec![DEV.id],
        created_at: Utc::now(),
        updated_at: Utc::now(),
        version: 3,
    }
}

fn transitions(c: &mut Criterion) {
    use TicketStatus as S;
    let cases = [
        (S::New, ADMIN, Action::Open),
        (
            S::Open,
            ADMIN,
            Action::Assign {
                developer_ids: vec![UserId(3), DEV.id],
            },
        ),
        (S::Assigned, DEV, Action::StartWork),
        (S::InProgress, DEV, Action::FinishWork),
        (S::Finished, CLIENT, Action::Approve),
        (
            S::Finished,
            CLIENT,
            Action::Reject {
                reason: "  The fix does not cover the mobile layout.  ".into(),
            },
        ),
        (
            S::InProgress,
            DEV,
            Action::Comment {
                body: "Deployed to staging; please have a look.".into(),
            },
        ),
    ];
    let mut group = c.benchmark_group("transition");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(2));
    for (status, by, action) in cases {
        let t = ticket(status);
        assert!(
            transition(&t, by, &action).is_ok(),
            "{} must apply",
            action.name()
        );
        group.bench_function(action.name(), |b| {
            b.iter(|| transition(black_box(&t), black_box(by), black_box(&action)))
        });
    }
    group.finish();
}

fn user(id: i64, role: Role) -> User {
    User {
        id: UserId(id),
        username: format!("user{id}"),
        display_name: String::new(),
        addresses: vec![
            Address::verified(Channel::Email, format!("user{id}@example.test")),
            Address::verified(Channel::Whatsapp, format!("+1555000{id:04}")),
        ],
        role,
        is_superuser: id == 1,
        is_active: true,
        token_version: 0,
        created_at: Utc::now(),
    }
}

fn routing(c: &mut Criterion) {
    let table = RoutingTable::default();
    // Two admins (the first a super admin), two assigned developers (one newly) and the client.
    let users: Vec<User> = [
        (1, Role::Admin),
        (2, Role::Admin),
        (3, Role::Developer),
        (4, Role::Developer),
        (5, Role::Client),
    ]
    .into_iter()
    .map(|(id, role)| user(id, role))
    .collect();
    let admins = [UserId(1), UserId(2)];
    let super_admins = [UserId(1)];
    let assignees = [UserId(3), UserId(4)];
    let newly_assigned = [UserId(4)];
    // One switch off for every type and one back on for a single type, so both lookups run.
    let mut prefs = Preferences::default();
    prefs.set("*", Channel::Whatsapp, false);
    prefs.set("ticket_assigned", Channel::Whatsapp, true);

    let mut group = c.benchmark_group("routing");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(2));
    for event in EventType::BUILT_IN {
        let route = table.route(&event).expect("seed events are routed");
        // The acting user is the one an event of this type usually comes from.
        let actor = match event {
            EventType::TicketCreated
            | EventType::TicketApproved
            | EventType::TicketRejected
            | EventType::UserRegistered => UserId(5),
            EventType::TicketOpened | EventType::TicketAssigned => UserId(2),
            _ => UserId(3),
        };
        let parties = Parties {
            actor: Some(actor),
            creator: Some(UserId(5)),
            assignees: &assignees,
            newly_assigned: &newly_assigned,
            admins: &admins,
            super_admins: &super_admins,
            mentioned: &[],
        };
        group.bench_with_input(BenchmarkId::from_parameter(&event), &event, |b, event| {
            b.iter(|| {
                let ids = recipients(black_box(route), black_box(&parties));
                ids.iter()
                    .map(|id| {
                        let u = &users[(id.0 - 1) as usize];
                        channels_for(&route.channels, event, u, &prefs)
                    })
                    .collect::<Vec<_>>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, transitions, routing);
criterion_main!(benches);
