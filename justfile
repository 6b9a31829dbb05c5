# offline-access tasks. `just` lists them.
default:
    @just --list

# Run the whole server-side access flow offline (fake Google + server in-process).
demo:
    cargo run --release -- demo

# The test suite (what CI runs, plus fmt and clippy).
test:
    cargo test --workspace

# Lints as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Benchmarks in release: criterion micro benches, then the load generator (docs/performance.md; Postgres parts
# when DATABASE_URL is set). The report also goes to target/performance.md.
bench:
    cargo bench --workspace
    cargo run --release -p offline-access-bench -- all --out target/performance.md

# CI exactly as it runs on a clean clone.
ci:
    bash .ci/run

# Google's own Python and Node client libraries against fake-google (needs PyPI and npm the first time).
compat:
    fake-google/compat/run.sh

# Fuzz /authcode request parsing and ID-token (JWT) parsing: the proptest `fuzz_*` targets in release with large
# case counts (about 4 minutes after the build; `cargo test` runs them with 256 cases), and the model-based test of
# the credential lifecycle (random interleavings of sign-ins, refreshes, forgets, sweeps, restarts; 256 cases in
# `cargo test`). A failure prints the (shrunk) input.
fuzz:
    PROPTEST_CASES=200000 cargo test --release -p offline-access-domain --lib lifecycle_tests::model
    PROPTEST_CASES=2000000 cargo test --release -p offline-access-http --lib fuzz_
    PROPTEST_CASES=1000000 cargo test --release -p offline-access-http --test api fuzz_
    PROPTEST_CASES=700000 cargo test --release -p offline-access-google --test google fuzz_
