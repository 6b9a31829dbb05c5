//! File credential store: one encrypted file per user, atomic writes, file locks.
