//! The domain core of tickethub and its supervised actors.
//!
//! This crate knows nothing about HTTP, SQL, Redis or JSON. It defines the domain types,
//! the ports (traits and message types) that the adapters in the `tickethub` crate implement,
//! and the actors that own the live state of the hub.
//!
//! # Supervision tree
//!
//! ```text
//! HubRoot                          restarts a failed directory; never stops on a child's exit
//! ├── Directory<UserActor>         get-or-spawn; prunes on exit or failure; heartbeat ticks
//! │   └── UserActor(user_id)*      one per connected user: sockets, heartbeat, inbox changes
//! ├── Directory<TicketActor>       get-or-spawn; prunes on exit or failure
//! │   └── TicketActor(ticket_id)*  one per active ticket: serializes its transitions
//! ├── Directory<RoomActor>         get-or-spawn; prunes; heartbeat ticks
//! │   └── RoomActor(project_id)*   one per project with live board or presence sockets
//! ├── DeliverySupervisor           restarts a failed channel alone
//! │   └── ChannelActor(email | whatsapp | webhook)   drains the outbox with retries
//! └── EscalationActor              fires due escalation steps from the database
//! ```
//!
//! A socket is not an actor. It is one task in the adapter (`tickethub::ws::session`) that owns
//! the socket, and it talks to its user actor through [`connection::ConnHandle`]: a bounded queue
//! of [`connection::ConnectionMsg`] plus a little shared state. A user actor that panics is
//! removed from the directory alone; its sockets close with 1012 and reconnect to a fresh actor.
//!
//! # Invariants
//!
//! - Domain types have no serde: wire shapes live at the edges and are converted by hand.
//! - Actors return `Err` from a handler only for bugs or lost infrastructure; refusals travel
//!   in replies.

pub mod acks;
pub mod analytics;
pub mod batch;
pub mod board;
pub mod connection;
pub mod delivery;
pub mod directory;
pub mod domain;
pub mod escalation;
pub mod event;
pub mod hub;
pub mod mention;
pub mod notices;
pub mod notification;
pub mod notifier;
pub mod oncall;
pub mod policy;
pub mod ports;
pub mod purge;
pub mod quiet;
pub mod reply;
pub mod room;
pub mod routing;
pub mod scheduler;
pub mod sent;
pub mod signups;
pub mod supervision;
pub mod ticket;
pub mod ticket_domain;
pub mod user;

pub use hub::{DeliveryConfig, Hub, HubConfig, HubDeps};
