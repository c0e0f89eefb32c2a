//! The WebSocket protocol's JSON: encoding the frames the hub sends and decoding client frames.
//!
//! `encode/notification` writes a live `notification` frame (a notification about a ticket,
//! with a small `data` object) straight to bytes with `wire::notification_frame_bytes`, as a
//! session does; `encode/notification_via_tree` builds the same frame as a JSON tree
//! (`wire::notification_frame`) and serializes that. `encode/announcement*` are the same for a
//! notification with no ticket. `encode/<variant>` serializes each
//! `ServerFrame` variant with `to_json`. `decode/*` runs `ClientFrame::decode` on a ping, a
//! `mark_read`, a `get_notifications` with every filter, and a frame that is not JSON.
//!
//! `cargo bench --bench protocol`

use std::hint::black_box;
use std::time::Duration;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tickethub::wire::dialect::Dialect;
use tickethub::wire::{notification_frame, notification_frame_bytes};
use tickethub::ws::protocol::{ClientFrame, ServerFrame};
use tickethub_actors::domain::UserId;
use tickethub_actors::notification::{Notification, TicketSummary};
use tickethub_actors::routing::EventType;
use tickethub_actors::ticket_domain::{Category, Priority, TicketId, TicketStatus};

fn notification() -> Notification {
    Notification {
        id: 123,
        user_id: UserId(4),
        seq: 42,
        notification_type: EventType::WorkStarted,
        title: "Work Started".into(),
        message: "Jane Developer started work on your ticket WEB-5: Homepage not loading".into(),
        ticket: Some(TicketSummary {
            id: TicketId(10),
            key: "WEB-5".into(),
            title: "Homepage not loading".into(),
            priority: Priority::High,
            category: Category::Bug,
            status: TicketStatus::InProgress,
            created_by: "John Client".into(),
            project_name: "Main Website".into(),
            created_at: Utc::now(),
        }),
        data: r#"{"ticket_key":"WEB-5","actor":"Jane Developer"}"#.into(),
        action_url: Some("/tickets/10/".into()),
        is_read: false,
        read_at: None,
        created_at: Utc::now(),
    }
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(2));

    let n = notification();
    group.throughput(Throughput::Bytes(
        serde_json::to_vec(&notification_frame(&n, false))
            .unwrap()
            .len() as u64,
    ));
    group.bench_function("notification_via_tree", |b| {
        b.iter(|| serde_json::to_vec(&notification_frame(black_box(&n), false)).unwrap())
    });
    group.bench_function("notification", |b| {
        b.iter(|| notification_frame_bytes(black_box(&n), false))
    });
    // An announcement: no ticket.
    let a = Notification {
        ticket: None,
        ..notification()
    };
    group.bench_function("announcement_via_tree", |b| {
        b.iter(|| serde_json::to_vec(&notification_frame(black_box(&a), false)).unwrap())
    });
    group.bench_function("announcement", |b| {
        b.iter(|| notification_frame_bytes(black_box(&a), false))
    });

    // The seeds' dialects: each frame from its JSON tree, and from typed fields.
    for dialect in [Dialect::Seed002, Dialect::Seed003, Dialect::Seed004] {
        let name = format!("{dialect:?}").to_lowercase();
        let now = Utc::now();
        group.bench_function(format!("{name}_via_tree"), |b| {
            b.iter(|| {
                serde_json::to_vec(&dialect.notification_at(black_box(&n), false, now)).unwrap()
            })
        });
        group.bench_function(name, |b| {
            b.iter(|| dialect.notification_bytes_at(black_box(&n), false, now))
        });
    }

    let frames = [
        (
            "connection_established",
            ServerFrame::ConnectionEstablished {
                message: "Connected successfully as john_client".into(),
                user_id: 4,
                last_seq: 41,
            },
        ),
        (
            "pong",
            ServerFrame::Pong {
                timestamp: serde_json::json!(1_735_038_600_000u64),
            },
        ),
        (
            "token_expiring",
            ServerFrame::TokenExpiring { expires_in: 30 },
        ),
        (
            "token_refreshed",
            ServerFrame::TokenRefreshed {
                expires_at: 1_735_039_500,
            },
        ),
        (
            "error",
            ServerFrame::Error {
                code: "unknown_type",
                message: "Unknown message type `dance`".into(),
            },
        ),
    ];
    for (name, frame) in &frames {
        group.throughput(Throughput::Bytes(frame.to_json().len() as u64));
        group.bench_function(*name, |b| b.iter(|| black_box(frame).to_json()));
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(2));
    let frames: [(&str, &[u8]); 4] = [
        ("ping", br#"{"type":"ping","timestamp":1735038600000}"#),
        ("mark_read", br#"{"type":"mark_read","notification_id":123}"#),
        (
            "get_notifications",
            br#"{"type":"get_notifications","is_read":false,"notification_type":"work_started","ticket":10,"limit":50,"before_seq":42}"#,
        ),
        ("malformed", br#"{"type":"mark_read","notification_id":12"#),
    ];
    for (name, text) in frames {
        // The malformed frame must fail, and every other one must decode.
        assert_eq!(ClientFrame::decode(text).is_err(), name == "malformed");
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| b.iter(|| ClientFrame::decode(black_box(text))));
    }
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
