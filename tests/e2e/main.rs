//! End-to-end tests: the real hub on port 0, real sockets, real SQLite and PostgreSQL.
//!
//! One test binary keeps link time down. Tests that need PostgreSQL read `TEST_DATABASE_URL`
//! (Redis: `TEST_REDIS_URL`); without it they use the local server on its default port if it
//! answers, and otherwise print a notice and pass, unless `TICKETHUB_REQUIRE_SERVICES=1` (as in
//! `.ci/run`), where a missing service fails them.

mod harness;

mod actors;
mod auth;
mod browser;
mod cli;
mod cluster;
mod delivery;
mod dialects;
mod edges;
mod escalation;
mod fakes;
mod faults;
mod fuzz_session;
mod inbox;
mod lifecycle;
mod nodes;
mod openapi;
mod operators;
mod outage;
mod replay;
mod rooms;
mod seed;
mod store;
mod tickets;
mod ws;
