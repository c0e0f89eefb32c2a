//! End-to-end tests: the real hub on port 0, real sockets, real SQLite and PostgreSQL.
//!
//! One test binary keeps link time down; its harness is libtest-mimic, so that a test whose
//! service is missing says so: tests that need PostgreSQL read `TEST_DATABASE_URL` (Redis:
//! `TEST_REDIS_URL`), and without it use the local server on its default port if it answers;
//! if neither, they are reported `ignored` with the reason, unless
//! `TICKETHUB_REQUIRE_SERVICES=1` (as in `.ci/run`), where a missing service fails them.
//! `TICKETHUB_TEST_PATIENCE=3` gives every wait three times as long on a loaded machine.

mod actors;
mod analytics;
mod api_keys;
mod attachments;
mod auth;
mod bounces;
mod browser;
mod channels;
mod cli;
mod clients;
mod cluster;
mod delivery;
mod dialect_replay;
mod dialects;
mod digests;
mod docs;
mod edges;
mod escalation;
mod event_webhooks;
mod fakes;
mod faults;
mod fuzz_seeds;
mod fuzz_session;
mod harness;
mod idempotency;
mod inbox;
mod layers;
mod lifecycle;
mod locales;
mod mattermost;
mod mattermost_fakes;
mod nemesis;
mod nodes;
mod oncall;
mod openapi;
mod operators;
mod outage;
mod people;
mod process;
mod project_chat;
mod push_fakes;
mod push_mobile;
mod receipts;
mod replay;
mod rooms;
mod routing_rules;
mod rust_client;
mod scheduled;
mod security;
mod seed;
mod sessions;
mod slack;
mod slack_fakes;
mod sms;
mod sms_fakes;
mod sse;
mod store;
mod teams_fakes;
mod throttles;
mod tickets;
mod unsubscribe;
mod webpush;
mod ws;

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    harness::install_panic_hook();
    harness::trust_test_ca();
    let trials = [
        actors::trials(),
        analytics::trials(),
        api_keys::trials(),
        attachments::trials(),
        oncall::trials(),
        slack::trials(),
        mattermost::trials(),
        project_chat::trials(),
        unsubscribe::trials(),
        receipts::trials(),
        bounces::trials(),
        locales::trials(),
        digests::trials(),
        docs::trials(),
        event_webhooks::trials(),
        auth::trials(),
        browser::trials(),
        channels::trials(),
        cli::trials(),
        clients::trials(),
        cluster::trials(),
        delivery::trials(),
        dialect_replay::trials(),
        dialects::trials(),
        edges::trials(),
        escalation::trials(),
        faults::trials(),
        fuzz_seeds::trials(),
        fuzz_session::trials(),
        idempotency::trials(),
        inbox::trials(),
        layers::trials(),
        lifecycle::trials(),
        nemesis::trials(),
        openapi::trials(),
        operators::trials(),
        outage::trials(),
        people::trials(),
        process::trials(),
        push_mobile::trials(),
        replay::trials(),
        rooms::trials(),
        rust_client::trials(),
        routing_rules::trials(),
        scheduled::trials(),
        security::trials(),
        seed::trials(),
        sessions::trials(),
        sms::trials(),
        sse::trials(),
        store::trials(),
        throttles::trials(),
        tickets::trials(),
        webpush::trials(),
        ws::trials(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    harness::stop_private_services();
    let _ = std::fs::remove_dir_all(harness::scratch());
    conclusion.exit();
}
