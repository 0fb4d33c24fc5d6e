//! Merging window parts of the same (project, model, version, environment, window) pushed by
//! different SDK processes into one profile before forwarding. Parts that arrive after their
//! window was forwarded travel as extra parts, which the collector merges.

use neurocloak_proto::v1::ingest_item::Payload;
use neurocloak_proto::v1::{IngestItem, WindowProfile};

use crate::queue::segment::StoredRecord;

/// The items to forward for one batch, and what merging did.
#[derive(Debug, Default)]
pub struct Merged {
    pub items: Vec<IngestItem>,
    /// Window parts folded into another part of the same window.
    pub parts_merged: u64,
    /// Groups whose parts could not be merged (kept as separate parts instead).
    pub merge_failures: u64,
}

type WindowKey = (String, String, String, String, i64, i64);

fn key(w: &WindowProfile) -> WindowKey {
    let id = w.identity.clone().unwrap_or_default();
    (
        id.project,
        id.model,
        id.version,
        id.environment,
        w.window_start_ms,
        w.window_length_ms,
    )
}

/// Merges window parts by key, keeping every item's first-appearance order (so the same
/// records always give the same items). A group whose parts cannot be merged (e.g. schemas
/// that disagree) is forwarded part by part rather than lost.
pub fn merge_batch(records: &[StoredRecord]) -> Merged {
    let mut out = Merged::default();
    let mut groups: Vec<(WindowKey, Vec<WindowProfile>)> = Vec::new();
    // Slot per output position: a window group index or a ready item.
    enum Slot {
        Group(usize),
        Item(Box<IngestItem>),
    }
    let mut slots = Vec::new();
    for r in records {
        let Some(item) = r.item.clone() else { continue };
        match item.payload {
            Some(Payload::Window(w)) => {
                let k = key(&w);
                match groups.iter().position(|(g, _)| *g == k) {
                    Some(i) => groups[i].1.push(w),
                    None => {
                        slots.push(Slot::Group(groups.len()));
                        groups.push((k, vec![w]));
                    }
                }
            }
            _ => slots.push(Slot::Item(Box::new(item))),
        }
    }
    let mut groups: Vec<Option<Vec<WindowProfile>>> =
        groups.into_iter().map(|(_, parts)| Some(parts)).collect();
    for slot in slots {
        match slot {
            Slot::Item(i) => out.items.push(*i),
            Slot::Group(g) => {
                let parts = groups[g].take().unwrap_or_default();
                let merged = merge_group(parts, &mut out);
                out.items.extend(merged.into_iter().map(window_item));
            }
        }
    }
    out
}

fn merge_group(parts: Vec<WindowProfile>, stats: &mut Merged) -> Vec<WindowProfile> {
    if parts.len() < 2 {
        return parts;
    }
    match neurocloak_core::merge_parts(&parts) {
        Ok(m) => {
            stats.parts_merged += parts.len() as u64 - 1;
            vec![m]
        }
        Err(e) => {
            tracing::warn!(error = %e, parts = parts.len(), "window parts not mergeable; forwarding them separately");
            stats.merge_failures += 1;
            parts
        }
    }
}

fn window_item(w: WindowProfile) -> IngestItem {
    IngestItem {
        payload: Some(Payload::Window(w)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use neurocloak_proto::v1::{LabelBatch, ModelIdentity, Schema};

    use super::*;

    fn part(model: &str, start: i64, rows: u64) -> StoredRecord {
        let identity = ModelIdentity {
            project: "p".into(),
            model: model.into(),
            version: "v1".into(),
            environment: "prod".into(),
        };
        let mut w = neurocloak_core::WindowProfile::new(identity, Schema::default(), start, 60_000)
            .to_proto();
        w.rows = rows;
        StoredRecord {
            item: Some(window_item(w)),
            ..StoredRecord::default()
        }
    }

    fn rows_of(i: &IngestItem) -> (u64, u32) {
        match &i.payload {
            Some(Payload::Window(w)) => (w.rows, w.parts),
            _ => (0, 0),
        }
    }

    #[test]
    fn parts_of_one_window_merge_and_order_is_kept() {
        let labels = StoredRecord {
            item: Some(IngestItem {
                payload: Some(Payload::Labels(LabelBatch::default())),
            }),
            ..StoredRecord::default()
        };
        let records = vec![
            part("a", 0, 1),
            labels,
            part("b", 0, 10),
            part("a", 0, 2),
            part("a", 60_000, 100),
            part("a", 0, 4),
        ];
        let m = merge_batch(&records);
        let got: Vec<(u64, u32)> = m.items.iter().map(rows_of).collect();
        // a@0 (three parts merged), labels, b@0, a@60000.
        assert_eq!(got, vec![(7, 3), (0, 0), (10, 1), (100, 1)]);
        assert_eq!(m.parts_merged, 2);
        assert_eq!(m.merge_failures, 0);
        // The same records always give the same items (a batch re-sent after a restart).
        assert_eq!(merge_batch(&records).items, m.items);
    }

    #[test]
    fn parts_that_do_not_merge_are_forwarded_separately() {
        let with_reservoir = |rows: u64, capacity: u32| {
            let mut r = part("a", 0, rows);
            if let Some(IngestItem {
                payload: Some(Payload::Window(w)),
            }) = r.item.as_mut()
            {
                w.reservoir = Some(neurocloak_proto::v1::Reservoir {
                    capacity,
                    ..Default::default()
                });
            }
            r
        };
        // Processes configured with different reservoir sizes cannot merge; neither part may
        // be lost.
        let m = merge_batch(&[with_reservoir(1, 10), with_reservoir(2, 20)]);
        assert_eq!(m.merge_failures, 1);
        let got: Vec<(u64, u32)> = m.items.iter().map(rows_of).collect();
        assert_eq!(got, vec![(1, 1), (2, 1)]);
    }
}
