//! Tests of the file credential store: the storage and event contracts (also on the in-memory store), the file
//! layout and encryption at rest, crash safety (also of the events written with a change), locking and the outbox
//! across tasks and processes, the refresh-token index, and key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod contract;
mod crash;
mod cross_process;
mod events;
mod files;
mod helpers;
mod index;
mod listing;
mod rotation;
mod versions;
