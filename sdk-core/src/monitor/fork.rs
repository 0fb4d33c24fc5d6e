//! Fork detection without any hook from the user: a `pthread_atfork` child handler bumps a
//! process-wide generation, and monitors compare it with their own on every recording call (one
//! relaxed atomic load).

use std::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// How many forks this process's ancestry went through since the SDK was loaded.
#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

#[cfg(target_os = "linux")]
extern "C" fn on_fork_child() {
    // An atomic add is async-signal-safe, which is all a fork child handler may do.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Registers the handler once per process.
pub(crate) fn watch() {
    #[cfg(target_os = "linux")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: registering a handler that only touches an atomic.
            unsafe {
                libc::pthread_atfork(None, None, Some(on_fork_child));
            }
        });
    }
}
