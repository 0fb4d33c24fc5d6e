//! Rate limits: token buckets per API key (REST reads, REST writes, gRPC ingest) and a budget of
//! failed authentications per client address.
//!
//! Buckets live in this process's memory: N collectors behind a load balancer allow N times the
//! configured rates. A key's bucket is charged only after the key checked out, so nobody can
//! drain another key's budget by sending its public prefix with a wrong secret. Failures are
//! counted per client address (IPv6 per /64, which one host usually controls); once an address
//! is over its budget its requests are refused before any store lookup, except those carrying a
//! key that authenticated recently (it has a live bucket), so a valid client sharing an address
//! with a misbehaving one keeps working.
//!
//! Memory is bounded: a bucket idle long enough to have refilled is dropped (a new one starts
//! full, so nothing changes), and past `max_tracked` entries the least recently used go first.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::store::Scope;
use crate::{Error, Result};

/// `[rate_limit]` settings. A rate of 0 turns that limit off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// REST reads (read-scope routes, including back-tests and the live socket) per key.
    pub read_per_s: f64,
    pub read_burst: u32,
    /// REST writes (admin-scope routes: rules, channels, acknowledgements, settings) per key.
    pub write_per_s: f64,
    pub write_burst: u32,
    /// gRPC ingest calls (batches and reference-bin lookups) per key.
    pub ingest_per_s: f64,
    pub ingest_burst: u32,
    /// Failed authentications per client address per minute (also the burst).
    pub auth_failures_per_minute: u32,
    /// Most buckets kept (keys and addresses each); beyond it the least recently used go.
    pub max_tracked: usize,
}

impl Default for RateLimitConfig {
    /// Generous: an agent sends about one batch per model per 60 s window, a dashboard a few
    /// reads a second; these only stop runaway or hostile clients.
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            read_per_s: 100.0,
            read_burst: 1000,
            write_per_s: 20.0,
            write_burst: 200,
            ingest_per_s: 200.0,
            ingest_burst: 2000,
            auth_failures_per_minute: 120,
            max_tracked: 100_000,
        }
    }
}

impl RateLimitConfig {
    pub fn check(&self) -> Result<()> {
        for (name, rate, burst) in [
            ("read", self.read_per_s, self.read_burst),
            ("write", self.write_per_s, self.write_burst),
            ("ingest", self.ingest_per_s, self.ingest_burst),
        ] {
            if !rate.is_finite() || rate < 0.0 {
                return Err(Error::Config(format!(
                    "rate_limit.{name}_per_s must be a finite number >= 0"
                )));
            }
            if rate > 0.0 && burst == 0 {
                return Err(Error::Config(format!(
                    "rate_limit.{name}_burst must be at least 1 when {name}_per_s > 0"
                )));
            }
        }
        if self.max_tracked == 0 {
            return Err(Error::Config(
                "rate_limit.max_tracked must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What a limited request was doing; the `surface` label of the rate-limited metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Surface {
    RestRead,
    RestWrite,
    Ingest,
    /// Failed authentications of one client address.
    AuthFailures,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::RestRead => "rest_read",
            Surface::RestWrite => "rest_write",
            Surface::Ingest => "ingest",
            Surface::AuthFailures => "auth_failures",
        }
    }

    /// The scope an operation demands says what kind of operation it is.
    pub fn for_scopes(any_of: &[Scope]) -> Surface {
        match any_of.first() {
            Some(Scope::Ingest) => Surface::Ingest,
            Some(Scope::Admin) => Surface::RestWrite,
            _ => Surface::RestRead,
        }
    }
}

/// Time as seen by the limiter, injectable so tests need not sleep.
pub trait Clock: Send + Sync {
    /// Time since an arbitrary fixed origin; never goes backwards.
    fn now(&self) -> Duration;
}

/// The monotonic clock of the process.
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A refused request: how long until one more would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub surface: Surface,
    /// Whole seconds, at least 1 (the `Retry-After` value).
    pub retry_after_s: u64,
}

#[derive(Debug, Clone, Copy)]
struct Rate {
    per_s: f64,
    burst: f64,
}

impl Rate {
    fn new(per_s: f64, burst: u32) -> Option<Rate> {
        (per_s > 0.0).then_some(Rate {
            per_s,
            burst: f64::from(burst.max(1)),
        })
    }

    /// How long an empty bucket takes to fill: after that an idle bucket equals a new one.
    fn fill_time(&self) -> Duration {
        Duration::from_secs_f64((self.burst / self.per_s).min(1e9))
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

impl Bucket {
    fn full(rate: &Rate, now: Duration) -> Bucket {
        Bucket {
            tokens: rate.burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: &Rate, now: Duration) {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_s).min(rate.burst);
        self.at = now;
    }

    /// Seconds until a token is there, rounded up to at least 1.
    fn wait_s(&self, rate: &Rate) -> u64 {
        let wait = ((1.0 - self.tokens) / rate.per_s).ceil();
        if wait.is_finite() && wait >= 1.0 {
            wait.min(u64::MAX as f64) as u64
        } else {
            1
        }
    }
}

/// Token buckets by key with bounded memory.
pub struct Buckets<K> {
    rate: Rate,
    max: usize,
    map: HashMap<K, Bucket>,
    last_sweep: Duration,
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    fn new(rate: Rate, max: usize) -> Buckets<K> {
        Buckets {
            rate,
            max: max.max(1),
            map: HashMap::new(),
            last_sweep: Duration::ZERO,
        }
    }

    /// Takes one token for `key`, or says how long to wait.
    fn take(&mut self, key: &K, now: Duration) -> std::result::Result<(), u64> {
        self.sweep_if_due(now);
        if !self.map.contains_key(key) {
            self.make_room(now);
        }
        let rate = self.rate;
        let b = self
            .map
            .entry(key.clone())
            .or_insert_with(|| Bucket::full(&rate, now));
        b.refill(&rate, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(b.wait_s(&rate))
        }
    }

    /// Whether `key` has no token left, without charging or creating anything.
    fn exhausted(&self, key: &K, now: Duration) -> Option<u64> {
        let mut b = *self.map.get(key)?;
        b.refill(&self.rate, now);
        (b.tokens < 1.0).then(|| b.wait_s(&self.rate))
    }

    fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Drops refilled buckets about once per fill time, so idle keys do not accumulate.
    fn sweep_if_due(&mut self, now: Duration) {
        let every = self.rate.fill_time().max(Duration::from_secs(1));
        if now.saturating_sub(self.last_sweep) >= every {
            self.drop_refilled(now);
            self.last_sweep = now;
        }
    }

    fn drop_refilled(&mut self, now: Duration) {
        let fill = self.rate.fill_time();
        self.map.retain(|_, b| now.saturating_sub(b.at) < fill);
    }

    /// At capacity: drop refilled buckets, then, if still full, the least recently used tenth.
    /// Dropping a bucket that was not full forgives what it had used: the price of the bound.
    fn make_room(&mut self, now: Duration) {
        if self.map.len() < self.max {
            return;
        }
        self.drop_refilled(now);
        if self.map.len() < self.max {
            return;
        }
        let mut ages: Vec<Duration> = self.map.values().map(|b| b.at).collect();
        let cut = (self.map.len() / 10).max(1).min(ages.len() - 1);
        let (_, &mut oldest_kept, _) = ages.select_nth_unstable(cut);
        self.map.retain(|_, b| b.at >= oldest_kept);
        // Equal timestamps can keep more than intended; the newest-first rule still bounds it.
        while self.map.len() >= self.max {
            let Some(k) = self
                .map
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.map.remove(&k);
        }
    }
}

/// The key and address buckets of one collector process.
pub struct RateLimiter {
    clock: Arc<dyn Clock>,
    keys: Mutex<HashMap<Surface, Buckets<String>>>,
    failures: Option<Mutex<Buckets<IpAddr>>>,
    limited: Option<prometheus::IntCounterVec>,
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig, clock: Arc<dyn Clock>) -> RateLimiter {
        let max = config.max_tracked;
        let keys = [
            (Surface::RestRead, config.read_per_s, config.read_burst),
            (Surface::RestWrite, config.write_per_s, config.write_burst),
            (Surface::Ingest, config.ingest_per_s, config.ingest_burst),
        ]
        .into_iter()
        .filter_map(|(s, per_s, burst)| Some((s, Buckets::new(Rate::new(per_s, burst)?, max))))
        .collect();
        let n = config.auth_failures_per_minute;
        let failures = Rate::new(f64::from(n) / 60.0, n).map(|r| Mutex::new(Buckets::new(r, max)));
        RateLimiter {
            clock,
            keys: Mutex::new(keys),
            failures,
            limited: None,
        }
    }

    /// Counts every refusal in `neurocloak_collector_rate_limited_total{surface}`.
    pub fn with_metric(mut self, counter: prometheus::IntCounterVec) -> RateLimiter {
        self.limited = Some(counter);
        self
    }

    fn refused(&self, surface: Surface, retry_after_s: u64) -> Limited {
        if let Some(c) = &self.limited {
            c.with_label_values(&[surface.as_str()]).inc();
        }
        Limited {
            surface,
            retry_after_s,
        }
    }

    /// Charges one request of an authenticated key.
    pub fn charge_key(&self, prefix: &str, surface: Surface) -> std::result::Result<(), Limited> {
        let now = self.clock.now();
        let mut keys = lock(&self.keys);
        let Some(buckets) = keys.get_mut(&surface) else {
            return Ok(());
        };
        let out = buckets.take(&prefix.to_owned(), now);
        drop(keys);
        out.map_err(|wait| self.refused(surface, wait))
    }

    /// Whether `prefix` authenticated recently (it holds a bucket on some surface).
    pub fn knows_key(&self, prefix: &str) -> bool {
        let key = prefix.to_owned();
        lock(&self.keys).values().any(|b| b.contains(&key))
    }

    /// Refuses `client` when it has used up its failed-authentication budget.
    pub fn check_client(&self, client: IpAddr) -> std::result::Result<(), Limited> {
        let Some(failures) = &self.failures else {
            return Ok(());
        };
        let now = self.clock.now();
        let wait = lock(failures).exhausted(&client_key(client), now);
        match wait {
            Some(w) => Err(self.refused(Surface::AuthFailures, w)),
            None => Ok(()),
        }
    }

    /// Records one failed authentication of `client`.
    pub fn record_failure(&self, client: IpAddr) {
        if let Some(failures) = &self.failures {
            let now = self.clock.now();
            // An exhausted budget stays exhausted; the refusal is reported by the next check.
            let _ = lock(failures).take(&client_key(client), now);
        }
    }

    /// Buckets held (keys on every surface, addresses), for tests and diagnostics.
    pub fn tracked(&self) -> (usize, usize) {
        let keys = lock(&self.keys).values().map(Buckets::len).sum();
        let addrs = self.failures.as_ref().map_or(0, |f| lock(f).len());
        (keys, addrs)
    }
}

/// A poisoned lock only means another request panicked mid-update of plain numbers; the
/// buckets are still usable, and refusing every later request would be worse.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One budget per IPv4 address and per IPv6 /64 (what one host or subscriber usually holds).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

tokio::task_local! {
    /// The HTTP request being served: its peer address, and the `Retry-After` a refusal set.
    static HTTP_REQUEST: HttpRequest;
}

struct HttpRequest {
    client: Option<IpAddr>,
    retry_after_s: Cell<Option<u64>>,
}

/// The peer address of the HTTP request this task serves (see [`http_layer`]).
pub fn http_client() -> Option<IpAddr> {
    HTTP_REQUEST.try_with(|r| r.client).ok().flatten()
}

/// Tells [`http_layer`] to answer with `Retry-After: seconds`.
pub fn set_retry_after(seconds: u64) {
    let _ = HTTP_REQUEST.try_with(|r| r.retry_after_s.set(Some(seconds)));
}

/// axum middleware around every route: makes the peer address known to authentication and
/// puts `Retry-After` on a 429. Handlers build their errors without knowing about headers.
pub async fn http_layer(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let state = HttpRequest {
        client,
        retry_after_s: Cell::new(None),
    };
    let (mut response, retry) = HTTP_REQUEST
        .scope(state, async {
            let response = next.run(request).await;
            let retry = HTTP_REQUEST.with(|r| r.retry_after_s.get());
            (response, retry)
        })
        .await;
    if let Some(s) = retry
        && response.status() == http::StatusCode::TOO_MANY_REQUESTS
    {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(s));
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Default)]
    struct ManualClock(AtomicU64);

    impl ManualClock {
        fn advance(&self, d: Duration) {
            self.0.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Duration {
            Duration::from_nanos(self.0.load(Ordering::SeqCst))
        }
    }

    fn limiter(c: RateLimitConfig) -> (Arc<ManualClock>, RateLimiter) {
        let clock = Arc::new(ManualClock::default());
        let l = RateLimiter::new(&c, clock.clone());
        (clock, l)
    }

    fn tiny() -> RateLimitConfig {
        RateLimitConfig {
            read_per_s: 2.0,
            read_burst: 3,
            write_per_s: 0.0,
            write_burst: 0,
            ingest_per_s: 0.5,
            ingest_burst: 1,
            auth_failures_per_minute: 2,
            max_tracked: 4,
        }
    }

    #[test]
    fn burst_then_refused_with_the_wait_then_refilled() {
        let (clock, l) = limiter(tiny());
        for _ in 0..3 {
            l.charge_key("k1", Surface::RestRead).unwrap();
        }
        let refused = l.charge_key("k1", Surface::RestRead).unwrap_err();
        assert_eq!(refused.surface, Surface::RestRead);
        // 2 tokens/s: the next token is 0.5 s away, announced as the minimum of 1 s.
        assert_eq!(refused.retry_after_s, 1);
        clock.advance(Duration::from_millis(499));
        assert!(l.charge_key("k1", Surface::RestRead).is_err());
        clock.advance(Duration::from_millis(2));
        l.charge_key("k1", Surface::RestRead).unwrap();
        // A long pause refills up to the burst, not beyond.
        clock.advance(Duration::from_secs(3600));
        for _ in 0..3 {
            l.charge_key("k1", Surface::RestRead).unwrap();
        }
        assert!(l.charge_key("k1", Surface::RestRead).is_err());
    }

    #[test]
    fn retry_after_rounds_up_whole_seconds() {
        let (clock, l) = limiter(tiny());
        l.charge_key("k", Surface::Ingest).unwrap();
        // 0.5 tokens/s: an empty bucket needs 2 s.
        assert_eq!(
            l.charge_key("k", Surface::Ingest)
                .unwrap_err()
                .retry_after_s,
            2
        );
        clock.advance(Duration::from_millis(600));
        assert_eq!(
            l.charge_key("k", Surface::Ingest)
                .unwrap_err()
                .retry_after_s,
            2
        );
        clock.advance(Duration::from_millis(1000));
        assert_eq!(
            l.charge_key("k", Surface::Ingest)
                .unwrap_err()
                .retry_after_s,
            1
        );
        clock.advance(Duration::from_millis(400));
        l.charge_key("k", Surface::Ingest).unwrap();
    }

    #[test]
    fn keys_and_surfaces_are_separate_and_zero_disables() {
        let (_, l) = limiter(tiny());
        for _ in 0..3 {
            l.charge_key("a", Surface::RestRead).unwrap();
        }
        assert!(l.charge_key("a", Surface::RestRead).is_err());
        l.charge_key("b", Surface::RestRead).unwrap();
        l.charge_key("a", Surface::Ingest).unwrap();
        for _ in 0..10_000 {
            l.charge_key("a", Surface::RestWrite).unwrap();
        }
    }

    #[test]
    fn failures_exhaust_an_address_budget_and_refill_per_minute() {
        let (clock, l) = limiter(tiny());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        l.check_client(ip).unwrap();
        l.record_failure(ip);
        l.check_client(ip).unwrap();
        l.record_failure(ip);
        let refused = l.check_client(ip).unwrap_err();
        assert_eq!(refused.surface, Surface::AuthFailures);
        assert_eq!(refused.retry_after_s, 30);
        l.check_client(other).unwrap();
        clock.advance(Duration::from_secs(30));
        l.check_client(ip).unwrap();
    }

    #[test]
    fn ipv6_addresses_share_a_budget_per_64() {
        let (_, l) = limiter(tiny());
        l.record_failure("2001:db8:1:2::1".parse().unwrap());
        l.record_failure("2001:db8:1:2:ffff::9".parse().unwrap());
        assert!(l.check_client("2001:db8:1:2::77".parse().unwrap()).is_err());
        l.check_client("2001:db8:1:3::1".parse().unwrap()).unwrap();
        // An IPv4-mapped address is the IPv4 address.
        l.record_failure("10.1.1.1".parse().unwrap());
        l.record_failure("::ffff:10.1.1.1".parse().unwrap());
        assert!(l.check_client("10.1.1.1".parse().unwrap()).is_err());
    }

    #[test]
    fn refilled_buckets_are_evicted_and_memory_stays_bounded() {
        let (clock, l) = limiter(tiny());
        for i in 0..4 {
            l.charge_key(&format!("k{i}"), Surface::RestRead).unwrap();
        }
        assert_eq!(l.tracked().0, 4);
        assert!(l.knows_key("k0"));
        // Full again after burst / rate = 1.5 s: dropping them loses nothing.
        clock.advance(Duration::from_secs(2));
        l.charge_key("k9", Surface::RestRead).unwrap();
        assert_eq!(l.tracked().0, 1);
        assert!(!l.knows_key("k0"));
        // Busy buckets over the bound: the least recently used goes, the newest stays.
        for i in 0..10 {
            clock.advance(Duration::from_millis(10));
            l.charge_key(&format!("busy{i}"), Surface::RestRead)
                .unwrap();
            assert!(l.tracked().0 <= 4, "{:?}", l.tracked());
        }
        assert!(l.knows_key("busy9"));
        assert!(!l.knows_key("busy0"));
        for i in 0..1000u32 {
            l.record_failure(IpAddr::from(i.to_be_bytes()));
        }
        assert!(l.tracked().1 <= 4);
    }

    #[test]
    fn bad_settings_are_refused() {
        for bad in [
            RateLimitConfig {
                read_per_s: f64::NAN,
                ..Default::default()
            },
            RateLimitConfig {
                write_per_s: f64::INFINITY,
                ..Default::default()
            },
            RateLimitConfig {
                ingest_per_s: -1.0,
                ..Default::default()
            },
            RateLimitConfig {
                read_burst: 0,
                ..Default::default()
            },
            RateLimitConfig {
                max_tracked: 0,
                ..Default::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        RateLimitConfig::default().check().unwrap();
        RateLimitConfig {
            read_per_s: 0.0,
            read_burst: 0,
            ..Default::default()
        }
        .check()
        .unwrap();
    }

    #[test]
    fn metric_counts_refusals_by_surface() {
        let counter =
            prometheus::IntCounterVec::new(prometheus::Opts::new("t", "t"), &["surface"]).unwrap();
        let (_, l) = limiter(tiny());
        let l = l.with_metric(counter.clone());
        l.charge_key("k", Surface::Ingest).unwrap();
        let _ = l.charge_key("k", Surface::Ingest);
        let _ = l.charge_key("k", Surface::Ingest);
        assert_eq!(counter.with_label_values(&["ingest"]).get(), 2);
        assert_eq!(counter.with_label_values(&["rest_read"]).get(), 0);
    }
}
