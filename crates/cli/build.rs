//! Marks the PostgreSQL tests of `tests/cli` ignored when the machine has no PostgreSQL at all (`cfg(no_postgres)`:
//! no `DATABASE_URL`, no `initdb`, no `CI`). Builds nothing into the binary. The probe is store-postgres's
//! testkit's, shared by every crate with PostgreSQL tests.

#[allow(dead_code, unreachable_pub)]
#[path = "../store-postgres/src/testkit/probe.rs"]
mod probe;

fn main() {
    probe::build_script("../store-postgres/src/testkit/probe.rs");
}
