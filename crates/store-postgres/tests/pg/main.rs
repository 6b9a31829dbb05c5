//! Integration tests of the PostgreSQL credential store against a real server.
//!
//! They read `DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); without it each test prints
//! `SKIPPED: DATABASE_URL not set` and passes, unless `CI` is set, where a skip is a failure. Each test works in its
//! own random schema, dropped at the end, so tests run in parallel.
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
