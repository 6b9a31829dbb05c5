//! The offline-access binary: the one composition root.

fn main() {}
