#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A forked child (gunicorn worker) starts with empty windows and keeps recording; the parent
//! keeps what it recorded before the fork.

mod common;

use neurocloak_core::{Prediction, Value};

fn log_rows(m: &neurocloak_core::Monitor, n: usize) {
    for i in 0..n {
        m.log(&[("x", Value::Number(i as f64))], &Prediction::default())
            .unwrap();
    }
}

/// Forks: the child runs `child` and leaves with `_exit` (status 0 when it returned true, 1 when
/// it returned false or panicked), so it never reaches the parent's test harness; the parent runs
/// `parent`, then waits for the child and fails unless it succeeded.
fn fork_and_check(child: impl FnOnce() -> bool, parent: impl FnOnce()) {
    // SAFETY: the child only runs code that allocates and takes locks that after_fork_child
    // released or the monitor's fork detection abandons, then leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(false);
        // SAFETY: leaving the child without running the parent's test harness teardown.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    parent();
    let mut status = 0;
    // SAFETY: waiting for the child we just created.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {status}"
    );
}

#[test]
fn child_starts_empty_and_parent_keeps_its_rows() {
    let (m, sink) = common::monitor(|_| {});
    log_rows(&m, 5);
    m.before_fork();
    fork_and_check(
        || {
            m.after_fork_child();
            log_rows(&m, 10);
            let w = common::flushed(&m, &sink);
            w.rows == 10 && w.features["x"].counters.count == 10
        },
        || m.after_fork_parent(),
    );
    log_rows(&m, 1);
    let w = common::flushed(&m, &sink);
    assert_eq!(w.rows, 6);
}

/// No hooks at all (a plain `fork()`, e.g. a pre-fork server that does not know about us): the
/// child's first call notices the fork and starts empty.
#[test]
fn fork_without_hooks_is_detected() {
    let (m, sink) = common::monitor(|_| {});
    log_rows(&m, 7);
    fork_and_check(
        || {
            log_rows(&m, 2);
            common::flushed(&m, &sink).rows == 2
        },
        || {},
    );
    assert_eq!(common::flushed(&m, &sink).rows, 7);
}

/// A plain `fork()` while another thread is recording, over and over: the child may inherit a
/// shard lock held mid-update by a thread that no longer exists. It must neither hang nor touch
/// the torn state, and still record and flush its own rows.
#[test]
fn fork_without_hooks_while_another_thread_records() {
    let (m, sink) = common::monitor(|_| {});
    let m = std::sync::Arc::new(m);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = {
        let (m, stop) = (std::sync::Arc::clone(&m), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                log_rows(&m, 100);
            }
        })
    };
    for _ in 0..20 {
        fork_and_check(
            || {
                log_rows(&m, 3);
                common::flushed(&m, &sink).rows == 3
            },
            || {},
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    busy.join().unwrap();
}
