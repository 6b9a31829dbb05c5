//! Shared set-up: key rings and stores in temp directories.

use std::path::Path;
use std::sync::Arc;

use offline_access_crypto::KeyRing;
use offline_access_store_file::FileStore;

/// Fixed test keys (standard base64 of 32 bytes).
pub(crate) const KEY_A: &str = "a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub(crate) const KEY_B: &str = "b:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

pub(crate) fn ring(spec: &str) -> Arc<KeyRing> {
    Arc::new(KeyRing::parse(spec).unwrap())
}

pub(crate) fn open(dir: &Path, spec: &str) -> FileStore {
    FileStore::open(dir, ring(spec)).unwrap()
}

/// Names of the files in a directory, sorted.
pub(crate) fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}
