//! The gate that keeps `os.fork()` from deadlocking against threads that log.
//!
//! The core's `before_fork` takes every shard lock and holds it until `after_fork_*`. Python
//! runs its at-fork hooks as Python code, so between our `before` hook and the fork other
//! threads may get the GIL; one that then waited for a shard lock *while holding the GIL* would
//! never let the forking thread continue. So the `before` hook closes this gate first, and every
//! call that is about to take a core lock with the GIL held passes it: while it is closed the
//! caller waits with the GIL released. A caller holds the GIL from its gate check through its
//! core call, so the forking thread cannot close the gate in between.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use pyo3::prelude::*;

static CLOSED: AtomicBool = AtomicBool::new(false);
/// Core calls running without the GIL. The fork waits for them to finish, so that no thread is
/// parked on a core lock when the process is copied: in the child such a thread is a ghost, and
/// a lock handed over to it on release would never be free again.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// How often a parked caller looks again; forks are rare and short.
const POLL: Duration = Duration::from_micros(200);

/// Returns with the GIL held and the gate open. The check repeats after the GIL comes back:
/// another fork may have closed the gate while this thread was waiting for the GIL.
#[inline]
pub fn pass(py: Python<'_>) {
    while CLOSED.load(Ordering::SeqCst) {
        py.detach(|| {
            while CLOSED.load(Ordering::SeqCst) {
                std::thread::sleep(POLL);
            }
        });
    }
}

/// Runs `f` without the GIL, counted as in flight, once the gate is open.
pub fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    py.detach(|| {
        loop {
            while CLOSED.load(Ordering::SeqCst) {
                std::thread::sleep(POLL);
            }
            IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
            // The gate may have closed between the check and the increment; if so, back off so
            // that the fork is not waiting for us while we wait for it.
            if !CLOSED.load(Ordering::SeqCst) {
                break;
            }
            IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        }
        let out = f();
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        out
    })
}

/// Called first by the `before` at-fork hook: stops new core calls and waits (without the GIL,
/// so GIL-holding callers can reach the gate and park) for the running ones.
#[pyfunction]
pub fn _fork_gate_close(py: Python<'_>) {
    CLOSED.store(true, Ordering::SeqCst);
    py.detach(|| {
        while IN_FLIGHT.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(POLL);
        }
    });
}

/// Called last by the `after_in_parent` / `after_in_child` hooks.
#[pyfunction]
pub fn _fork_gate_open() {
    CLOSED.store(false, Ordering::SeqCst);
}
