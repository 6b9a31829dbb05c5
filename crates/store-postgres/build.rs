//! Marks this crate's PostgreSQL tests ignored when the machine has no PostgreSQL at all (`cfg(no_postgres)`: no
//! `DATABASE_URL`, no `initdb`, no `CI`), and those that start a cluster of their own when there is no `initdb`
//! (`cfg(no_initdb)`). See `src/testkit/probe.rs`, shared with the other crates' build scripts.

#[allow(dead_code, unreachable_pub)]
#[path = "src/testkit/probe.rs"]
mod probe;

fn main() {
    probe::build_script("src/testkit/probe.rs");
}
