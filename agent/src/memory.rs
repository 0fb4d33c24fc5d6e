//! The agent's dealings with the process allocator (glibc's malloc on Linux).
//!
//! The agent works in bursts: at every window's end it decodes, validates, merges and encodes
//! the window's parts (tens of MB), then idles. With glibc's defaults (up to 8 arenas per core,
//! freed memory kept by the arena that freed it) RSS settled at about three times the live
//! heap of a burst; see docs/agent.md, "Resource use", for the measurements.

/// Caps glibc at two malloc arenas. Call before the runtime starts its threads. The agent's
/// threads allocate little besides the bursts, and with fewer arenas the memory one burst freed
/// is reused by the next instead of sitting in an arena another thread allocates from.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator, under its own lock.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns the allocator's free pages to the OS; called once a burst of forwarding is over.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only takes the allocator's own locks; it is safe at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
