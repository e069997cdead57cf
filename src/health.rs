//! What the admin endpoints report about the bridge itself.

use std::sync::atomic::AtomicBool;

/// Shared state the admin endpoints read.
#[derive(Default)]
pub struct Health {
    /// The bridge is running (groups in place) and not shutting down.
    pub ready: AtomicBool,
}
