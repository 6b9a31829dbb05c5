//! Integration tests of the PostgreSQL credential store against a real server.
//!
//! They use the server at `DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); without it, a throwaway
//! cluster this test process starts with the machine's `initdb` and `postgres` (one for all its tests, stopped and
//! deleted when it exits); with no PostgreSQL installed either, they are reported as ignored (`cfg(no_postgres)`,
//! set by `build.rs`), and under `CI` they fail: never a silent pass. Each test works in its own random schema,
//! dropped at the end, so tests run in parallel. `tls` starts a cluster of its own with TLS on (`cfg(no_initdb)`
//! ignores it where there is no `initdb`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod contract;
mod events;
mod failures;
mod locks;
mod migrations;
mod readiness;
mod rotation;
mod store;
mod support;
mod testkit;
mod tls;
