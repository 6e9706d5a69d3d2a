//! Switchboard: a WebRTC SFU (WHIP/WHEP) whose policy lives in WebAssembly plugins.
//!
//! Where things live:
//! - [`signalling`]: the HTTP surface — WHIP, WHEP, session resources, health, pages.
//! - [`sfu`]: the core — rooms, sessions, peer connections and the RTP forwarding hot path.
//! - [`ice`]: ICE servers for clients and the server (TURN REST credentials, STUN discovery).
//! - [`admin`]: the operator API under `/admin/` (rooms, sessions, plugins, its OpenAPI
//!   document), behind a bearer token; the public room list `/api/rooms`.
//! - [`metrics`]: `GET /metrics` (Prometheus), every metric name in one table.
//! - [`health`]: `GET /readyz`, each dependency's state.
//! - [`auth`]: the admission interface the core and HTTP layer ask before any work.
//! - [`config`]: `config.toml` + environment, validated at start-up.
//! - [`plugins`]: the WebAssembly plugin runtime that implements [`auth::Gatekeeper`].
//! - [`events`]: room, session and plugin events for webhooks, players and logs.
//! - [`recording`]: rooms written to files (frames, IVF, Ogg, WebM writers so far).
//! - [`store`]: the one durable file (webhook outbox; the recording upload queue next).
//! - [`logging`]: the binary's log output (library log lines rate-limited).
//! - [`server`]: wiring it all together and shutting down cleanly.
//! - [`web`]: the embedded publish/play pages.
//! - [`client`]: a webrtc-rs WHIP/WHEP client (tests, load tool).
//! - [`loadgen`]: the load generator behind `switchboard-load` (benchmarks, not the server).

pub mod admin;
pub mod auth;
pub mod client;
pub mod config;
pub mod events;
pub mod health;
pub mod ice;
pub mod loadgen;
pub mod logging;
pub mod metrics;
pub mod plugins;
pub mod recording;
pub mod server;
pub mod sfu;
pub mod signalling;
pub mod store;
pub mod web;
