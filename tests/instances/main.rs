//! Many offline-access server instances on one credential store, against one fake Google: a user's token is
//! refreshed once per expiry however many instances ask, a crashed lock holder blocks nobody, and readiness
//! follows the store.
//!
//! The PostgreSQL tests use the server at `DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); without
//! it, a throwaway cluster this test process starts with the machine's `initdb` and `postgres` (stopped and deleted
//! when it exits); with no PostgreSQL installed either, they are reported as ignored (`cfg(no_postgres)`, set by
//! `build.rs`), and under `CI` they fail. Each test works in its own random schema, dropped at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod events;
mod file;
mod postgres;
mod readiness;
mod support;
