//! The bounded in-memory backlog between `enqueue` and the shipping thread, and its accounting.
//!
//! Every counter changes under the same lock as the items, so a `stats()` snapshot always
//! satisfies `sent == delivered + dropped + queued`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use neurocloak_proto::v1::push_request::Payload;
use parking_lot::{Condvar, Mutex};

/// Why a payload left the backlog without being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The backlog was full (items or bytes) and this was the oldest payload.
    Overflow,
    /// Larger than `max_message_bytes` on its own; the agent would refuse it anyway.
    Oversized,
    /// The agent answered with a non-retryable gRPC code.
    Rejected,
    /// Still undelivered when the shipper shut down (or enqueued after shutdown).
    Shutdown,
}

/// A snapshot of the shipper's accounting. `sent == delivered + dropped + queued` always.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShipStats {
    /// Payloads handed to `enqueue`.
    pub sent: u64,
    /// Payloads the agent acknowledged (durably queued on its side).
    pub delivered: u64,
    /// Sum of the four drop reasons below.
    pub dropped: u64,
    /// Payloads waiting or in flight.
    pub queued: u64,
    pub dropped_overflow: u64,
    pub dropped_oversized: u64,
    pub dropped_rejected: u64,
    pub dropped_shutdown: u64,
    /// Bytes (encoded) of the payloads counted in `queued`.
    pub queued_bytes: u64,
    /// Failed push attempts that were retried.
    pub retries: u64,
}

pub(crate) struct Pending {
    pub sequence: u64,
    pub bytes: usize,
    pub payload: Payload,
}

#[derive(Default)]
struct State {
    items: VecDeque<Pending>,
    in_flight: Option<(u64, usize)>,
    bytes: usize,
    next_sequence: u64,
    closed: bool,
    stats: ShipStats,
}

impl State {
    fn count_drop(&mut self, reason: DropReason) {
        self.stats.dropped += 1;
        match reason {
            DropReason::Overflow => self.stats.dropped_overflow += 1,
            DropReason::Oversized => self.stats.dropped_oversized += 1,
            DropReason::Rejected => self.stats.dropped_rejected += 1,
            DropReason::Shutdown => self.stats.dropped_shutdown += 1,
        }
    }

    /// True when nothing with a sequence `<= upto` is waiting or in flight.
    fn done_upto(&self, upto: u64) -> bool {
        let front_done = self.items.front().is_none_or(|p| p.sequence > upto);
        let flight_done = self.in_flight.is_none_or(|(s, _)| s > upto);
        front_done && flight_done
    }
}

pub(crate) struct Backlog {
    state: Mutex<State>,
    progress: Condvar,
    max_items: usize,
    max_bytes: usize,
    max_message_bytes: usize,
}

/// What `enqueue` did with a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    Dropped(DropReason),
}

impl Backlog {
    pub fn new(max_items: usize, max_bytes: usize, max_message_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            progress: Condvar::new(),
            max_items: max_items.max(1),
            max_bytes: max_bytes.max(1),
            max_message_bytes,
        }
    }

    /// Never blocks beyond the short critical section; evicts the oldest payloads when full.
    pub fn push(&self, payload: Payload, bytes: usize) -> Enqueued {
        let mut st = self.state.lock();
        st.stats.sent += 1;
        st.next_sequence += 1;
        let sequence = st.next_sequence;
        if st.closed {
            st.count_drop(DropReason::Shutdown);
            return Enqueued::Dropped(DropReason::Shutdown);
        }
        if bytes > self.max_message_bytes || bytes > self.max_bytes {
            st.count_drop(DropReason::Oversized);
            return Enqueued::Dropped(DropReason::Oversized);
        }
        while !st.items.is_empty()
            && (st.items.len() + 1 > self.max_items || st.bytes + bytes > self.max_bytes)
        {
            if let Some(old) = st.items.pop_front() {
                st.bytes -= old.bytes;
                st.count_drop(DropReason::Overflow);
            }
        }
        st.bytes += bytes;
        st.items.push_back(Pending {
            sequence,
            bytes,
            payload,
        });
        drop(st);
        // Eviction can complete a waiting flush.
        self.progress.notify_all();
        Enqueued::Queued
    }

    /// Takes the oldest payload for delivery; it stays counted as queued until `settle`.
    pub fn take(&self) -> Option<Pending> {
        let mut st = self.state.lock();
        let p = st.items.pop_front()?;
        st.bytes -= p.bytes;
        st.in_flight = Some((p.sequence, p.bytes));
        Some(p)
    }

    /// Puts a payload whose push failed back at the front, so that while the agent is down
    /// it is the oldest payload that overflow evicts.
    pub fn requeue(&self, p: Pending) {
        let mut st = self.state.lock();
        if st.in_flight.take().is_none() {
            return;
        }
        if st.closed {
            st.count_drop(DropReason::Shutdown);
        } else if st.items.len() + 1 > self.max_items || st.bytes + p.bytes > self.max_bytes {
            st.count_drop(DropReason::Overflow);
        } else {
            st.bytes += p.bytes;
            st.items.push_front(p);
        }
        drop(st);
        self.progress.notify_all();
    }

    /// Records the outcome of the in-flight payload: `None` means delivered.
    pub fn settle(&self, outcome: Option<DropReason>) {
        let mut st = self.state.lock();
        if st.in_flight.take().is_some() {
            match outcome {
                None => st.stats.delivered += 1,
                Some(reason) => st.count_drop(reason),
            }
        }
        drop(st);
        self.progress.notify_all();
    }

    pub fn count_retry(&self) {
        self.state.lock().stats.retries += 1;
    }

    /// Refuses further payloads and counts everything still waiting as dropped at shutdown.
    /// The in-flight payload (if any) is settled by the shipping thread.
    pub fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        while let Some(p) = st.items.pop_front() {
            st.bytes -= p.bytes;
            st.count_drop(DropReason::Shutdown);
        }
        drop(st);
        self.progress.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    pub fn is_empty(&self) -> bool {
        self.state.lock().items.is_empty()
    }

    pub fn last_sequence(&self) -> u64 {
        self.state.lock().next_sequence
    }

    /// Waits until every payload up to `upto` is delivered or dropped; false on timeout.
    pub fn wait_done(&self, upto: u64, deadline: Instant) -> bool {
        let mut st = self.state.lock();
        while !st.done_upto(upto) {
            if self.progress.wait_until(&mut st, deadline).timed_out() {
                return st.done_upto(upto);
            }
        }
        true
    }

    pub fn stats(&self) -> ShipStats {
        let st = self.state.lock();
        let mut s = st.stats;
        let flight = st.in_flight.map_or(0, |(_, b)| b);
        s.queued = st.items.len() as u64 + u64::from(st.in_flight.is_some());
        s.queued_bytes = (st.bytes + flight) as u64;
        s
    }
}

pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use neurocloak_proto::v1::LabelBatch;

    fn payload() -> Payload {
        Payload::Labels(LabelBatch::default())
    }

    fn check(b: &Backlog) -> ShipStats {
        let s = b.stats();
        assert_eq!(s.sent, s.delivered + s.dropped + s.queued, "{s:?}");
        assert_eq!(
            s.dropped,
            s.dropped_overflow + s.dropped_oversized + s.dropped_rejected + s.dropped_shutdown
        );
        s
    }

    #[test]
    fn full_backlog_drops_oldest_by_count_and_bytes() {
        let b = Backlog::new(3, 1000, 1000);
        for _ in 0..5 {
            assert_eq!(b.push(payload(), 10), Enqueued::Queued);
        }
        let s = check(&b);
        assert_eq!((s.queued, s.dropped_overflow), (3, 2));
        // The survivors are the newest three.
        assert_eq!(b.take().unwrap().sequence, 3);
        b.settle(None);
        // 600 bytes more must evict the two remaining 10-byte payloads only if needed.
        assert_eq!(b.push(payload(), 600), Enqueued::Queued);
        assert_eq!(b.push(payload(), 600), Enqueued::Queued);
        let s = check(&b);
        assert_eq!(s.queued, 1);
        assert_eq!(s.queued_bytes, 600);
    }

    #[test]
    fn oversized_payload_is_counted_not_queued() {
        let b = Backlog::new(10, 1000, 100);
        assert_eq!(
            b.push(payload(), 101),
            Enqueued::Dropped(DropReason::Oversized)
        );
        let s = check(&b);
        assert_eq!((s.sent, s.dropped_oversized, s.queued), (1, 1, 0));
    }

    #[test]
    fn close_counts_waiting_and_later_payloads_as_shutdown_drops() {
        let b = Backlog::new(10, 1000, 1000);
        b.push(payload(), 1);
        b.push(payload(), 1);
        let _ = b.take();
        b.close();
        assert_eq!(
            b.push(payload(), 1),
            Enqueued::Dropped(DropReason::Shutdown)
        );
        b.settle(Some(DropReason::Shutdown));
        let s = check(&b);
        assert_eq!((s.sent, s.dropped_shutdown, s.queued), (3, 3, 0));
    }

    #[test]
    fn wait_done_tracks_in_flight_and_times_out() {
        let b = Backlog::new(10, 1000, 1000);
        b.push(payload(), 1);
        let _ = b.take();
        let t0 = Instant::now();
        assert!(!b.wait_done(1, t0 + Duration::from_millis(50)));
        assert!(t0.elapsed() >= Duration::from_millis(50));
        b.settle(None);
        assert!(b.wait_done(1, Instant::now()));
    }
}
