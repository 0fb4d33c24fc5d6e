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

#[test]
fn child_starts_empty_and_parent_keeps_its_rows() {
    let (m, sink) = common::monitor(|_| {});
    log_rows(&m, 5);
    m.before_fork();
    // SAFETY: the child only runs code that allocates and takes locks released by
    // after_fork_child, then leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        m.after_fork_child();
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            log_rows(&m, 10);
            let w = common::flushed(&m, &sink);
            w.rows == 10 && w.features["x"].counters.count == 10
        }))
        .unwrap_or(false);
        // SAFETY: leaving the child without running the parent's test harness teardown.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    m.after_fork_parent();
    let mut status = 0;
    // SAFETY: waiting for the child we just created.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {status}"
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
    // SAFETY: as above.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            log_rows(&m, 2);
            let w = common::flushed(&m, &sink);
            w.rows == 2
        }))
        .unwrap_or(false);
        // SAFETY: as above.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {status}"
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
        // SAFETY: the child only records, flushes and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                log_rows(&m, 3);
                let w = common::flushed(&m, &sink);
                w.rows == 3
            }))
            .unwrap_or(false);
            // SAFETY: as above.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: as above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child failed: {status}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    busy.join().unwrap();
}
