//! tickethub: the ticket REST API, the WebSocket hub and notification delivery in one binary.
//!
//! This crate holds the adapters around the core in `tickethub-actors`:
//!
//! - [`config`] and [`cli`]: settings from flags, environment and a TOML file.
//! - [`app`]: the composition root; [`app::Application`] builds and runs the hub.
//! - [`auth`]: JWT and argon2, shared by [`http`] and [`ws`].
//! - [`bus`]: fan-out between hub processes over Redis.
//! - [`http`]: the REST API, one module per resource.
//! - [`ws`]: the WebSocket handshake and the per-socket session task.
//! - [`store`]: SQLite and PostgreSQL implementations of the storage ports.
//! - [`delivery`]: email, WhatsApp and webhook transports, and their message templates.
//! - [`telemetry`]: tracing setup.
//!
//! `main.rs` stays thin: it parses the command line and calls into this library, so the tests
//! can start the very same hub on port 0.

pub mod app;
pub mod attachments;
pub mod auth;
pub mod bus;
pub mod channels;
pub mod chats;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod digests;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod limits;
pub mod mailbox;
pub mod markdown;
pub mod presence;
pub mod replies;
pub mod routing;
pub mod secret;
pub mod serve;
pub mod setting;
pub mod sockets;
pub mod sse;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod timeline;
pub mod timespan;
pub mod tree;
pub mod verification;
pub mod webhooks;
pub mod wire;
pub mod ws;

pub use app::Application;
pub use config::ServeConfig;
