//! On-disk record framing of the queue's append-only segment files.
//!
//! A record is `MAGIC (4) | body length (u32 LE) | CRC-32 of the body (u32 LE) | body`, where the
//! body is a prost-encoded [`StoredRecord`]. The magic lets a reader find the next record after
//! a damaged one (the length of a damaged record cannot be trusted); the CRC decides whether a
//! candidate is a real record.

use std::path::{Path, PathBuf};

use neurocloak_proto::v1::IngestItem;
use prost::Message;

pub const MAGIC: [u8; 4] = *b"NCQ1";
pub const HEADER: usize = 12;
/// Larger bodies are never written (the gRPC limit is far below), so a larger length field is
/// damage.
pub const MAX_BODY: usize = 256 << 20;

/// What one queue record stores. Field numbers are part of the on-disk format.
#[derive(Clone, PartialEq, Message)]
pub struct StoredRecord {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub arrival_ms: i64,
    #[prost(string, tag = "3")]
    pub sdk_instance: String,
    #[prost(uint64, tag = "4")]
    pub sequence: u64,
    #[prost(message, optional, tag = "5")]
    pub item: Option<IngestItem>,
}

pub fn frame(record: &StoredRecord) -> Vec<u8> {
    let body = record.encode_to_vec();
    let mut out = frame_header(&[&body]);
    out.extend_from_slice(&body);
    out
}

/// Magic, length and CRC of a body given in pieces (their concatenation is the body), so a
/// large body can be written without first being copied into one buffer.
pub fn frame_header(pieces: &[&[u8]]) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0usize;
    for p in pieces {
        crc.update(p);
        len += p.len();
    }
    let mut out = Vec::with_capacity(HEADER);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out
}

/// The part of a [`StoredRecord`] known before the queue numbers it: fields 3–5 encoded.
/// Protobuf fields may come in any order, so `encode(id, arrival_ms) ++ tail` decodes to the
/// whole record; the receive stage encodes the tail on its own thread and drops the decoded
/// push at once instead of holding it until the group commit.
pub fn encode_tail(sdk_instance: String, sequence: u64, item: IngestItem) -> Vec<u8> {
    // id and arrival_ms are 0 here, and proto3 does not encode zero scalars.
    StoredRecord {
        id: 0,
        arrival_ms: 0,
        sdk_instance,
        sequence,
        item: Some(item),
    }
    .encode_to_vec()
}

/// Fields 1–2 of a [`StoredRecord`], to be followed by a tail from [`encode_tail`].
pub fn encode_head(id: u64, arrival_ms: i64) -> Vec<u8> {
    StoredRecord {
        id,
        arrival_ms,
        ..StoredRecord::default()
    }
    .encode_to_vec()
}

/// Just the id of a stored record: decoding it skips the item by its length, without
/// building it.
#[derive(Clone, PartialEq, Message)]
struct RecordId {
    #[prost(uint64, tag = "1")]
    id: u64,
}

/// A record's body as read back from disk, checksum verified but not decoded: the forwarder
/// decodes one record at a time while merging, so a batch never exists decoded all at once.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    pub id: u64,
    pub body: Vec<u8>,
}

impl RawRecord {
    pub fn decode(&self) -> Result<StoredRecord, prost::DecodeError> {
        StoredRecord::decode(self.body.as_slice())
    }
}

/// The body of one frame (magic, length and CRC checked) and its record id.
pub fn unframe_record(mut frame: Vec<u8>) -> Option<RawRecord> {
    if frame.get(0..4)? != MAGIC {
        return None;
    }
    let len = u32_at(&frame, 4)? as usize;
    let end = HEADER.checked_add(len)?;
    let body = frame.get(HEADER..end)?;
    if len > MAX_BODY || crc32fast::hash(body) != u32_at(&frame, 8)? {
        return None;
    }
    let id = RecordId::decode(body).ok()?.id;
    // Reuse the read buffer for the body rather than copying it.
    frame.truncate(end);
    frame.drain(..HEADER);
    Some(RawRecord { id, body: frame })
}

const STATE_MAGIC: [u8; 4] = *b"NCS1";

/// Frames the forwarder's state file the same way as a record, with its own magic.
pub fn frame_state(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&STATE_MAGIC);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

pub fn unframe_state(buf: &[u8]) -> Option<&[u8]> {
    if buf.get(0..4)? != STATE_MAGIC {
        return None;
    }
    let len = u32_at(buf, 4)? as usize;
    let body = buf.get(HEADER..HEADER + len)?;
    (crc32fast::hash(body) == u32_at(buf, 8)?).then_some(body)
}

/// One valid record found by [`scan`], with where its frame sits in the file.
pub struct Found {
    pub offset: u64,
    pub framed_len: u64,
    pub record: StoredRecord,
}

/// Result of reading a whole segment.
pub struct Scan {
    pub records: Vec<Found>,
    /// Damaged regions skipped between valid records.
    pub damaged_regions: u64,
    /// Bytes after the last valid record that do not form a record (a torn final write).
    pub torn_tail_bytes: u64,
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decodes the record framed at `at`, if a valid one starts there.
pub fn decode_at(buf: &[u8], at: usize) -> Option<(StoredRecord, usize)> {
    if buf.get(at..at + 4)? != MAGIC {
        return None;
    }
    let len = u32_at(buf, at + 4)? as usize;
    let crc = u32_at(buf, at + 8)?;
    if len > MAX_BODY {
        return None;
    }
    let body = buf.get(at + HEADER..at + HEADER + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let record = StoredRecord::decode(body).ok()?;
    Some((record, HEADER + len))
}

/// Reads every valid record of a segment image, skipping damage by searching for the next
/// magic whose frame checks out.
pub fn scan(buf: &[u8]) -> Scan {
    let mut out = Scan {
        records: Vec::new(),
        damaged_regions: 0,
        torn_tail_bytes: 0,
    };
    let mut at = 0usize;
    while at < buf.len() {
        if let Some((record, n)) = decode_at(buf, at) {
            out.records.push(Found {
                offset: at as u64,
                framed_len: n as u64,
                record,
            });
            at += n;
            continue;
        }
        match find_next_record(buf, at + 1) {
            Some(next) => {
                out.damaged_regions += 1;
                at = next;
            }
            None => {
                out.torn_tail_bytes = (buf.len() - at) as u64;
                break;
            }
        }
    }
    out
}

fn find_next_record(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + HEADER <= buf.len() {
        let rel = buf.get(i..)?.windows(4).position(|w| w == MAGIC)?;
        let cand = i + rel;
        if decode_at(buf, cand).is_some() {
            return Some(cand);
        }
        i = cand + 1;
    }
    None
}

pub fn segment_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.seg"))
}

/// The first record id a segment file was named after, or None for foreign files.
pub fn parse_segment_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".seg")?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn rec(id: u64) -> StoredRecord {
        StoredRecord {
            id,
            arrival_ms: 7,
            sdk_instance: "i".into(),
            sequence: id,
            item: Some(IngestItem::default()),
        }
    }

    #[test]
    fn skips_a_damaged_record_and_reports_a_torn_tail() {
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for id in 1..=4 {
            offsets.push(buf.len());
            buf.extend(frame(&rec(id)));
        }
        // Flip a body byte of record 2 and tear record 4 in half.
        buf[offsets[1] + HEADER + 1] ^= 0xff;
        let cut = buf.len() - 3;
        buf.truncate(cut);
        let s = scan(&buf);
        let ids: Vec<u64> = s.records.iter().map(|f| f.record.id).collect();
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(s.damaged_regions, 1);
        assert!(s.torn_tail_bytes > 0);
    }

    #[test]
    fn damaged_length_field_does_not_hide_later_records() {
        let mut buf = frame(&rec(1));
        let second = buf.len();
        buf.extend(frame(&rec(2)));
        buf.extend(frame(&rec(3)));
        buf[second + 4..second + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let ids: Vec<u64> = scan(&buf).records.iter().map(|f| f.record.id).collect();
        assert_eq!(ids, vec![1, 3]);
    }

    #[test]
    fn segment_names_round_trip() {
        let p = segment_path(Path::new("/q"), 42);
        assert_eq!(parse_segment_name(&p), Some(42));
        assert_eq!(parse_segment_name(Path::new("/q/state")), None);
    }
}
