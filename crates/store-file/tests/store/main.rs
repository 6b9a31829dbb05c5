//! Tests of the file credential store: the storage contract (also on the in-memory store), the file layout and
//! encryption at rest, crash safety, locking across tasks and processes, and key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod contract;
mod cross_process;
mod files;
mod helpers;
mod listing;
mod rotation;
mod versions;
