//! Named steps of the write paths, for crash tests. Without the `failpoints` feature [`hit`] compiles to nothing.
//!
//! With it, a test process installs a hook ([`set_hook`]) that is called with each step's name as the store
//! passes it: a child process can print the step and stop there until its parent kills it with SIGKILL, so the
//! parent can check what a crash at exactly that point leaves on disk.
//!
//! The steps, in the order a write passes them:
//! - `tentative:synced`, `tentative:durable`: a write's events are in `outbox/tentative/<hash>` (file synced; then
//!   its directory synced too);
//! - `atomic:temp_synced`, `atomic:renamed`, `atomic:durable`: any atomic file write (a credential, a tombstone,
//!   an event file): the temp file is synced; renamed into place; its directory synced;
//! - `delete:removed`, `delete:durable`: `delete` removed the credential file; synced its directory;
//! - `write:confirmed`: the tentative events were renamed into `outbox/incoming/`;
//! - `write:done`: the write's clean-up is done, it is about to return;
//! - `outbox:records_batched`: filing wrote the events of incoming records into a new batch, synced and named,
//!   before removing the records' names; `outbox:batch_filed`: a batch is filed, named and held;
//! - `outbox:event_created`, `outbox:event_filed`: `open` filed a batch's event as a file (created; with its due
//!   marker);
//! - `outbox:event_settled`: settling created a held event's file with its outcome; `outbox:event_written`: it
//!   rewrote an event file; `outbox:settled`: every outcome of the step is written.

#[cfg(feature = "failpoints")]
use std::sync::OnceLock;

/// A hook called with the name of each step.
#[cfg(feature = "failpoints")]
pub type Hook = Box<dyn Fn(&'static str) + Send + Sync>;

#[cfg(feature = "failpoints")]
static HOOK: OnceLock<Hook> = OnceLock::new();

/// Installs the process's hook (once: `false` if one was installed already).
#[cfg(feature = "failpoints")]
pub fn set_hook(hook: Hook) -> bool {
    HOOK.set(hook).is_ok()
}

/// Passes the step `name`: calls the hook if one is installed.
#[inline]
pub(crate) fn hit(name: &'static str) {
    #[cfg(feature = "failpoints")]
    if let Some(hook) = HOOK.get() {
        hook(name);
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
