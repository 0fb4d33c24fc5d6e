//! Merging window parts of the same (project, model, version, environment, window) pushed by
//! different SDK processes into one profile before forwarding. Parts that arrive after their
//! window was forwarded travel as extra parts, which the collector merges.

use neurocloak_proto::v1::ingest_item::Payload;
use neurocloak_proto::v1::{IngestItem, PredictionRecord, SampledRow, WindowProfile};

use crate::queue::RawRecord;

/// The items to forward for one batch, and what merging did.
#[derive(Debug, Default)]
pub struct Merged {
    pub items: Vec<IngestItem>,
    /// Window parts folded into another part of the same window.
    pub parts_merged: u64,
    /// Groups whose parts could not be merged (kept as separate parts instead).
    pub merge_failures: u64,
    /// Records that passed their checksum but did not decode; they are left out (counted as
    /// corrupt by the queue when the batch is acknowledged).
    pub undecodable: u64,
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

/// The parts of one window seen so far in a batch. Decoded parts are several times their
/// encoded size, so they are folded into one accumulator as they are decoded instead of being
/// held side by side; the encoded bodies stay available for the rare group that fails.
enum Fold {
    /// One part, kept as it came: a lone part is forwarded untouched.
    One(WindowProfile),
    Merging(neurocloak_core::WindowProfile),
    /// A merge failed (the accumulator may be half-updated): the parts go separately,
    /// decoded again from their records.
    Failed,
}

struct Group {
    key: WindowKey,
    /// Indexes of the group's records in the batch.
    members: Vec<usize>,
    fold: Fold,
}

impl Group {
    fn add(&mut self, part: WindowProfile) -> Result<(), neurocloak_core::CoreError> {
        let fold = std::mem::replace(&mut self.fold, Fold::Failed);
        let mut acc = match fold {
            Fold::Failed => return Ok(()),
            Fold::One(first) => {
                let (mut acc, bulk) = decode_part(first)?;
                bulk.append_to(&mut acc);
                acc
            }
            Fold::Merging(acc) => acc,
        };
        let (part, bulk) = decode_part(part)?;
        acc.merge(&part)?;
        bulk.append_to(&mut acc);
        self.fold = Fold::Merging(acc);
        Ok(())
    }
}

/// A part's prediction records and hash-sampled rows: most of its size, and merging only
/// appends them in part order (`neurocloak_core::WindowProfile::merge`), so they are moved
/// into the accumulator instead of being copied twice (proto → profile → accumulator).
struct Bulk {
    predictions: Vec<PredictionRecord>,
    hash_sampled: Vec<SampledRow>,
}

impl Bulk {
    fn append_to(mut self, acc: &mut neurocloak_core::WindowProfile) {
        // Exact: the amortized doubling of `extend` could leave half the capacity unused.
        acc.predictions.reserve_exact(self.predictions.len());
        acc.predictions.append(&mut self.predictions);
        acc.hash_sampled.reserve_exact(self.hash_sampled.len());
        acc.hash_sampled.append(&mut self.hash_sampled);
    }
}

/// The mergeable form of a part, its bulk held aside. The receive stage validated the whole
/// part (records included) with `from_proto` before queuing it.
fn decode_part(
    mut w: WindowProfile,
) -> Result<(neurocloak_core::WindowProfile, Bulk), neurocloak_core::CoreError> {
    let bulk = Bulk {
        predictions: std::mem::take(&mut w.predictions),
        hash_sampled: std::mem::take(&mut w.hash_sampled),
    };
    Ok((neurocloak_core::WindowProfile::from_proto(&w)?, bulk))
}

/// The wire form of a merged window, moving its bulk rather than cloning it.
fn encode_merged(mut acc: neurocloak_core::WindowProfile) -> WindowProfile {
    let predictions = std::mem::take(&mut acc.predictions);
    let hash_sampled = std::mem::take(&mut acc.hash_sampled);
    WindowProfile {
        predictions,
        hash_sampled,
        ..acc.to_proto()
    }
}

enum Slot {
    Group(usize),
    /// Any other item, decoded again when the output is built.
    Record(usize),
}

fn window_of(item: Option<IngestItem>) -> Option<WindowProfile> {
    match item?.payload? {
        Payload::Window(w) => Some(w),
        _ => None,
    }
}

/// Merges window parts by key, keeping every item's first-appearance order (so the same
/// records always give the same items). At most one part per window is decoded besides the
/// window's accumulator. A group whose parts cannot be merged (e.g. schemas that disagree) is
/// forwarded part by part rather than lost.
pub fn merge_batch(records: &[RawRecord]) -> Merged {
    let mut out = Merged::default();
    let mut groups: Vec<Group> = Vec::new();
    let mut slots = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let Ok(stored) = r.decode() else {
            out.undecodable += 1;
            continue;
        };
        let Some(w) = window_of(stored.item) else {
            slots.push(Slot::Record(i));
            continue;
        };
        let k = key(&w);
        let Some(g) = groups.iter_mut().find(|g| g.key == k) else {
            slots.push(Slot::Group(groups.len()));
            groups.push(Group {
                key: k,
                members: vec![i],
                fold: Fold::One(w),
            });
            continue;
        };
        g.members.push(i);
        if let Err(e) = g.add(w) {
            tracing::warn!(error = %e, parts = g.members.len(), "window parts not mergeable; forwarding them separately");
            out.merge_failures += 1;
        }
    }
    let decoded = |i: usize| records.get(i).and_then(|r| r.decode().ok()?.item);
    for slot in slots {
        match slot {
            Slot::Record(i) => out.items.extend(decoded(i)),
            Slot::Group(g) => {
                let Some(g) = groups.get_mut(g) else { continue };
                match std::mem::replace(&mut g.fold, Fold::Failed) {
                    Fold::One(w) => out.items.push(window_item(w)),
                    Fold::Merging(acc) => {
                        out.parts_merged += g.members.len() as u64 - 1;
                        out.items.push(window_item(encode_merged(acc)));
                    }
                    Fold::Failed => out
                        .items
                        .extend(g.members.iter().filter_map(|&i| decoded(i))),
                }
            }
        }
    }
    out
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
    use prost::Message;

    use super::*;
    use crate::queue::segment::StoredRecord;

    fn raw(r: StoredRecord) -> RawRecord {
        RawRecord {
            id: r.id,
            body: r.encode_to_vec(),
        }
    }

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
        let records: Vec<RawRecord> = [
            part("a", 0, 1),
            labels,
            part("b", 0, 10),
            part("a", 0, 2),
            part("a", 60_000, 100),
            part("a", 0, 4),
        ]
        .into_iter()
        .map(raw)
        .collect();
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
        let m = merge_batch(&[raw(with_reservoir(1, 10)), raw(with_reservoir(2, 20))]);
        assert_eq!(m.merge_failures, 1);
        let got: Vec<(u64, u32)> = m.items.iter().map(rows_of).collect();
        assert_eq!(got, vec![(1, 1), (2, 1)]);
        // A failure after two parts merged: the half-updated accumulator is not forwarded,
        // every part goes as it came.
        let m = merge_batch(&[
            raw(with_reservoir(1, 10)),
            raw(with_reservoir(2, 10)),
            raw(with_reservoir(4, 20)),
        ]);
        assert_eq!((m.merge_failures, m.parts_merged), (1, 0));
        let got: Vec<(u64, u32)> = m.items.iter().map(rows_of).collect();
        assert_eq!(got, vec![(1, 1), (2, 1), (4, 1)]);
    }

    /// One real SDK part with `rows` rows of a few features, sampled rows and prediction ids.
    fn sdk_part(seed: u32, rows: u32) -> WindowProfile {
        use neurocloak_core::monitor::{MemorySink, Monitor, MonitorConfig, Prediction, Value};
        let sink = std::sync::Arc::new(MemorySink::new());
        let monitor = Monitor::with_sink(MonitorConfig::new("p", "m", "v1"), sink.clone()).unwrap();
        for r in 0..rows {
            let x = f64::from((r * 7 + seed * 13) % 101);
            let id = format!("{seed}-{r}");
            monitor
                .log(
                    &[
                        ("x", Value::Number(x)),
                        ("c", Value::Text(["a", "b", "c"][(r % 3) as usize])),
                    ],
                    &Prediction {
                        id: (r % 4 == 0).then_some(id.as_str()),
                        prediction: Value::Number(f64::from(r % 2)),
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        monitor.flush(std::time::Duration::from_secs(5)).unwrap();
        let mut w = sink.take_windows().into_iter().next().unwrap();
        // Parts of different processes share the aligned window.
        w.window_start_ms = 0;
        w.window_length_ms = 60_000;
        w
    }

    #[test]
    fn folding_one_part_at_a_time_gives_what_merge_parts_gives() {
        let parts: Vec<WindowProfile> = (0..4).map(|s| sdk_part(s, 500 + 100 * s)).collect();
        // The bulk that merging moves instead of copying must be there to be checked.
        assert!(parts.iter().all(|p| !p.predictions.is_empty()));
        assert!(parts.iter().any(|p| !p.hash_sampled.is_empty()));
        let records: Vec<RawRecord> = parts
            .iter()
            .map(|w| {
                raw(StoredRecord {
                    item: Some(window_item(w.clone())),
                    ..StoredRecord::default()
                })
            })
            .collect();
        let m = merge_batch(&records);
        let expected = neurocloak_core::merge_parts(&parts).unwrap();
        assert_eq!(m.items, vec![window_item(expected)]);
        assert_eq!(m.parts_merged, 3);
    }

    #[test]
    fn a_record_that_does_not_decode_is_left_out_and_counted() {
        let mut bad = raw(part("a", 0, 1));
        // A length prefix running past the end: the checksum was right, the body is not
        // protobuf.
        bad.body = vec![0x2a, 0xff, 0xff, 0x01];
        let m = merge_batch(&[raw(part("a", 0, 2)), bad, raw(part("a", 0, 4))]);
        assert_eq!(m.undecodable, 1);
        let got: Vec<(u64, u32)> = m.items.iter().map(rows_of).collect();
        assert_eq!(got, vec![(6, 2)]);
    }
}
