//! Many offline-access server instances on one credential store, against one fake Google: a user's token is
//! refreshed once per expiry however many instances ask, a crashed lock holder blocks nobody, and readiness
//! follows the store.
//!
//! The PostgreSQL tests read `DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); without it each
//! prints `SKIPPED: DATABASE_URL not set` and passes, unless `CI` is set, where a skip is a failure. Each test works
//! in its own random schema, dropped at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod events;
mod file;
mod postgres;
mod readiness;
mod support;
