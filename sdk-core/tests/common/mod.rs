//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use neurocloak_core::{MemorySink, Monitor, MonitorConfig, WindowProfile};

/// A monitor writing into memory, with a window long enough that a test never straddles two.
pub fn monitor(cfg: impl FnOnce(&mut MonitorConfig)) -> (Monitor, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::new());
    let mut c = MonitorConfig::new("proj", "model", "v1");
    c.window = Duration::from_secs(24 * 3600);
    cfg(&mut c);
    let m = Monitor::with_sink(c, sink.clone()).unwrap();
    (m, sink)
}

/// Flushes and folds every window part the sink received into one profile.
pub fn flushed(m: &Monitor, sink: &MemorySink) -> WindowProfile {
    m.flush(Duration::from_secs(1)).unwrap();
    let windows = sink.take_windows();
    assert!(!windows.is_empty(), "no window was shipped");
    let mut acc: Option<WindowProfile> = None;
    for w in &windows {
        let mut p = WindowProfile::from_proto(w).unwrap();
        p.window_start_ms = 0;
        match acc.as_mut() {
            None => acc = Some(p),
            Some(a) => a.merge(&p).unwrap(),
        }
    }
    acc.unwrap()
}

/// Like [`flushed`], but an empty profile of the monitor's model when nothing was recorded
/// (a window without rows is never shipped).
pub fn flushed_or_empty(m: &Monitor, sink: &MemorySink) -> WindowProfile {
    m.flush(Duration::from_secs(1)).unwrap();
    if m.stats().windows == 0 {
        let c = m.config();
        let len = i64::try_from(c.window.as_millis()).unwrap();
        return WindowProfile::new(c.identity.clone(), Default::default(), 0, len);
    }
    flushed(m, sink)
}
