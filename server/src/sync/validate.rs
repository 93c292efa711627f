//! Checks a peer's automerge sync message before automerge sees it. Automerge trusts what it
//! is sent: a Bloom filter declaring `num_probes = u32::MAX` makes it allocate 16 GiB and the
//! process aborts, `num_bits_per_entry = 0` divides by zero, a compressed chunk is inflated
//! without limit, and run-length encoding lets a few bytes claim a billion operations. So the
//! message's counts, its filters' parameters and its chunks (inflated here under a hard
//! limit, their operations counted from the run lengths) are checked first, and a message
//! outside the limits is refused as a whole.

use std::io::Read;

use std::panic::AssertUnwindSafe;

use automerge::sync::{self, Message, SyncDoc};
use automerge::{ActorId, Automerge, AutomergeError, ChangeHash, PatchLog, ReadDoc};

/// What a sync message may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Heads, and hashes the peer needs.
    pub max_hashes: usize,
    /// `have` entries (automerge sends one).
    pub max_haves: usize,
    /// Change chunks.
    pub max_chunks: usize,
    /// Bytes of the chunks once inflated.
    pub max_bytes: usize,
    /// Operations in all chunks together.
    pub max_ops: u64,
}

/// Why a message was refused; the text names the limit, for the peer's `error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{what}: {count} is more than the limit of {limit}")]
    TooMany {
        what: &'static str,
        count: u64,
        limit: u64,
    },
    #[error("Bloom filter {0}")]
    Bloom(String),
    #[error("change chunk {0}")]
    Chunk(String),
    #[error("objects nest {depth} levels deep; the limit is {limit}")]
    TooDeep { depth: usize, limit: usize },
    #[error("automerge cannot apply it")]
    Unappliable,
}

impl Limits {
    /// The limits the settings put on one message.
    pub fn of(settings: &crate::settings::Limits) -> Limits {
        Limits {
            max_hashes: settings.max_message_hashes,
            // automerge sends one; a few leave room for other implementations.
            max_haves: 16,
            max_chunks: settings.max_message_chunks,
            max_bytes: settings.max_message_bytes,
            max_ops: settings.max_message_ops,
        }
    }
}

fn too_many(what: &'static str, count: impl TryInto<u64>, limit: impl TryInto<u64>) -> Refusal {
    Refusal::TooMany {
        what,
        count: count.try_into().unwrap_or(u64::MAX),
        limit: limit.try_into().unwrap_or(u64::MAX),
    }
}

pub fn check(message: &Message, limits: &Limits) -> Result<(), Refusal> {
    let hashes = message.heads.len().saturating_add(message.need.len());
    if hashes > limits.max_hashes {
        return Err(too_many(
            "heads and needed hashes",
            hashes,
            limits.max_hashes,
        ));
    }
    if message.have.len() > limits.max_haves {
        return Err(too_many(
            "have entries",
            message.have.len(),
            limits.max_haves,
        ));
    }
    for have in &message.have {
        if have.last_sync.len() > limits.max_hashes {
            return Err(too_many(
                "last-sync hashes",
                have.last_sync.len(),
                limits.max_hashes,
            ));
        }
        bloom(&have.bloom.to_bytes())?;
    }
    if message.changes.len() > limits.max_chunks {
        return Err(too_many(
            "change chunks",
            message.changes.len(),
            limits.max_chunks,
        ));
    }
    let mut budget = Budget {
        bytes: limits.max_bytes,
        ops: limits.max_ops,
        limits: *limits,
    };
    for bytes in message.changes.iter() {
        let mut reader = Reader(bytes);
        while !reader.0.is_empty() {
            chunk(&mut reader, &mut budget)?;
        }
    }
    Ok(())
}

/// Parameters automerge would use to size allocations and divide by.
fn bloom(bytes: &[u8]) -> Result<(), Refusal> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut reader = Reader(bytes);
    let malformed = |_| Refusal::Bloom("is malformed".into());
    let entries = reader.uleb().map_err(malformed)?;
    let bits_per_entry = reader.uleb().map_err(malformed)?;
    let probes = reader.uleb().map_err(malformed)?;
    if !(1..=64).contains(&bits_per_entry) {
        return Err(Refusal::Bloom(format!(
            "declares {bits_per_entry} bits per entry (1 to 64)"
        )));
    }
    if !(1..=32).contains(&probes) {
        return Err(Refusal::Bloom(format!(
            "declares {probes} probes (1 to 32)"
        )));
    }
    let expected = entries.saturating_mul(bits_per_entry).div_ceil(8);
    if u64::try_from(reader.0.len()).unwrap_or(u64::MAX) != expected {
        return Err(Refusal::Bloom(format!(
            "has {} bytes of bits for {entries} entries of {bits_per_entry} bits",
            reader.0.len()
        )));
    }
    Ok(())
}

/// What is left of a message's allowance as its chunks are read.
struct Budget {
    bytes: usize,
    ops: u64,
    limits: Limits,
}

impl Budget {
    fn spend_bytes(&mut self, bytes: usize) -> Result<(), Refusal> {
        let limit = self.limits.max_bytes;
        self.bytes = self.bytes.checked_sub(bytes).ok_or_else(|| {
            let used = limit.saturating_sub(self.bytes).saturating_add(bytes);
            too_many("bytes of changes once inflated", used, limit)
        })?;
        Ok(())
    }

    fn spend_ops(&mut self, ops: u64) -> Result<(), Refusal> {
        let limit = self.limits.max_ops;
        self.ops = self.ops.checked_sub(ops).ok_or_else(|| {
            too_many(
                "operations",
                limit.saturating_sub(self.ops).saturating_add(ops),
                limit,
            )
        })?;
        Ok(())
    }

    /// Inflates `compressed`, refusing once more than the remaining allowance comes out.
    fn inflate(&mut self, compressed: &[u8]) -> Result<Vec<u8>, Refusal> {
        let limit = u64::try_from(self.bytes).unwrap_or(u64::MAX);
        let mut inflated = Vec::new();
        flate2::read::DeflateDecoder::new(compressed)
            .take(limit.saturating_add(1))
            .read_to_end(&mut inflated)
            .map_err(|_| Refusal::Chunk("does not inflate".into()))?;
        self.spend_bytes(inflated.len())?;
        Ok(inflated)
    }
}

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const DOCUMENT: u8 = 0;
const CHANGE: u8 = 1;
const COMPRESSED_CHANGE: u8 = 2;

fn chunk(reader: &mut Reader<'_>, budget: &mut Budget) -> Result<(), Refusal> {
    let malformed = |_| Refusal::Chunk("is malformed".into());
    if reader.take(4).map_err(malformed)? != MAGIC {
        return Err(Refusal::Chunk(
            "does not start with automerge's magic bytes".into(),
        ));
    }
    reader.take(4).map_err(malformed)?; // checksum, verified by automerge
    let kind = reader.take(1).map_err(malformed)?[0];
    let len = reader.uleb().map_err(malformed)?;
    let data = reader
        .take(usize::try_from(len).unwrap_or(usize::MAX))
        .map_err(malformed)?;
    match kind {
        CHANGE => {
            budget.spend_bytes(data.len())?;
            change(data, budget)
        }
        COMPRESSED_CHANGE => {
            let inflated = budget.inflate(data)?;
            change(&inflated, budget)
        }
        DOCUMENT => {
            budget.spend_bytes(data.len())?;
            document(data, budget)
        }
        other => Err(Refusal::Chunk(format!("of type {other} is not accepted"))),
    }
}

/// A change chunk's body: its header fields, then its operation columns (never compressed
/// inside a change; automerge refuses those).
fn change(data: &[u8], budget: &mut Budget) -> Result<(), Refusal> {
    let malformed = |_| Refusal::Chunk("is malformed".into());
    let mut reader = Reader(data);
    let deps = reader.uleb().map_err(malformed)?;
    for _ in 0..deps {
        reader.take(32).map_err(malformed)?;
    }
    reader.bytes().map_err(malformed)?; // actor
    reader.uleb().map_err(malformed)?; // seq
    reader.uleb().map_err(malformed)?; // start op
    reader.uleb().map_err(malformed)?; // time (signed, read as bytes)
    reader.bytes().map_err(malformed)?; // message
    let others = reader.uleb().map_err(malformed)?;
    for _ in 0..others {
        reader.bytes().map_err(malformed)?;
    }
    let columns = reader.columns().map_err(malformed)?;
    let ops = operations(&mut reader, &columns, budget)?;
    budget.spend_ops(ops)
}

/// A whole document (what automerge sends when the other side has nothing): its change and
/// operation columns, each possibly compressed.
fn document(data: &[u8], budget: &mut Budget) -> Result<(), Refusal> {
    let malformed = |_| Refusal::Chunk("is malformed".into());
    let mut reader = Reader(data);
    let actors = reader.uleb().map_err(malformed)?;
    for _ in 0..actors {
        reader.bytes().map_err(malformed)?;
    }
    let heads = reader.uleb().map_err(malformed)?;
    for _ in 0..heads {
        reader.take(32).map_err(malformed)?;
    }
    let change_columns = reader.columns().map_err(malformed)?;
    let op_columns = reader.columns().map_err(malformed)?;
    // The change columns' counts are bounded by the operations they carry.
    operations(&mut reader, &change_columns, budget)?;
    let ops = operations(&mut reader, &op_columns, budget)?;
    budget.spend_ops(ops)
}

/// Column spec bits: the id above bit 4, deflate in bit 3, the type in bits 0–2.
const DEFLATE: u32 = 0b1000;
const TYPE_INTEGER: u32 = 2;
const TYPE_BOOLEAN: u32 = 4;
const INSERT_COLUMN: u32 = 3;
const ACTION_COLUMN: u32 = 4;

/// Reads the data of `columns`, inflating the compressed ones under the budget, and returns
/// how many operations (rows) they hold: the longest of the insert and action columns, whose
/// lengths are sums of run lengths.
fn operations(
    reader: &mut Reader<'_>,
    columns: &[(u32, u64)],
    budget: &mut Budget,
) -> Result<u64, Refusal> {
    let malformed = |_| Refusal::Chunk("is malformed".into());
    let mut rows = 0;
    for &(spec, len) in columns {
        let raw = reader
            .take(usize::try_from(len).unwrap_or(usize::MAX))
            .map_err(malformed)?;
        let inflated;
        let data = if spec & DEFLATE != 0 {
            inflated = budget.inflate(raw)?;
            &inflated[..]
        } else {
            raw
        };
        let (id, kind) = (spec >> 4, spec & 0b111);
        let counted = match (id, kind) {
            (INSERT_COLUMN, TYPE_BOOLEAN) => boolean_rows(data, budget.limits.max_ops)?,
            (ACTION_COLUMN, TYPE_INTEGER) => rle_rows(data, budget.limits.max_ops)?,
            _ => continue,
        };
        rows = rows.max(counted);
    }
    Ok(rows)
}

/// A boolean column: alternating run lengths.
fn boolean_rows(data: &[u8], limit: u64) -> Result<u64, Refusal> {
    let mut reader = Reader(data);
    let mut rows: u64 = 0;
    while !reader.0.is_empty() {
        let run = reader
            .uleb()
            .map_err(|_| Refusal::Chunk("has a malformed column".into()))?;
        rows = rows.saturating_add(run);
        if rows > limit {
            return Err(too_many("operations in a chunk", rows, limit));
        }
    }
    Ok(rows)
}

/// An integer column, run-length encoded: a positive count repeats the value after it, a
/// negative one announces that many literal values, zero announces a run of nulls.
fn rle_rows(data: &[u8], limit: u64) -> Result<u64, Refusal> {
    let malformed = |_| Refusal::Chunk("has a malformed column".into());
    let mut reader = Reader(data);
    let mut rows: u64 = 0;
    while !reader.0.is_empty() {
        let count = reader.sleb().map_err(malformed)?;
        let run = match count {
            0 => reader.uleb().map_err(malformed)?,
            repeat if repeat > 0 => {
                reader.uleb().map_err(malformed)?;
                repeat.unsigned_abs()
            }
            literals => {
                let literals = literals.unsigned_abs();
                for _ in 0..literals.min(limit.saturating_add(1)) {
                    reader.uleb().map_err(malformed)?;
                }
                literals
            }
        };
        rows = rows.saturating_add(run);
        if rows > limit {
            return Err(too_many("operations in a chunk", rows, limit));
        }
    }
    Ok(rows)
}

struct Reader<'a>(&'a [u8]);

#[derive(Debug)]
struct Truncated;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if n > self.0.len() {
            return Err(Truncated);
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn uleb(&mut self) -> Result<u64, Truncated> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Truncated)
    }

    fn sleb(&mut self) -> Result<i64, Truncated> {
        let mut value: i64 = 0;
        let mut shift = 0;
        loop {
            let byte = self.take(1)?[0];
            if shift >= 64 {
                return Err(Truncated);
            }
            value |= i64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= -1 << shift;
                }
                return Ok(value);
            }
        }
    }

    /// A length-prefixed byte string.
    fn bytes(&mut self) -> Result<&'a [u8], Truncated> {
        let len = self.uleb()?;
        self.take(usize::try_from(len).map_err(|_| Truncated)?)
    }

    /// Column metadata: a count, then (spec, length) pairs.
    fn columns(&mut self) -> Result<Vec<(u32, u64)>, Truncated> {
        let count = self.uleb()?;
        // Each pair takes at least two bytes: a count the input cannot hold is a lie.
        if count > u64::try_from(self.0.len() / 2).unwrap_or(u64::MAX) {
            return Err(Truncated);
        }
        (0..count)
            .map(|_| {
                let spec = u32::try_from(self.uleb()?).map_err(|_| Truncated)?;
                Ok((spec, self.uleb()?))
            })
            .collect()
    }
}

/// What applying a checked message came to.
pub enum Applied {
    /// The changes it brought.
    Changes(Vec<Brought>),
    /// An error automerge reports (a bad checksum, say); the document is as it was.
    Error(AutomergeError),
}

/// A change a message brought: its actor, hash and operation counters.
pub struct Brought {
    pub actor: ActorId,
    pub hash: ChangeHash,
    pub start_op: u64,
    pub max_op: u64,
}

/// Applies a checked message to `doc`: to a copy that replaces it only once automerge got
/// through the message and the changes it brought nest no deeper than `max_depth`. Automerge
/// 0.12 panics on some crafted changes (truncated numbers in columns, operations on objects
/// that do not exist: fuzzing found several, `fuzz/regressions/`); a panic halfway would
/// leave the document half-changed, and cost it and everyone working on it. Here it costs
/// this message. A message with no changes to apply needs no copy. After a refusal, `state`
/// and `patches` are not to be trusted: the caller drops the peer's state and reads the
/// document whole.
pub fn apply(
    doc: &mut Automerge,
    state: &mut sync::State,
    message: Message,
    patches: &mut PatchLog,
    max_depth: usize,
) -> Result<Applied, Refusal> {
    let mut copy = (!message.changes.is_empty() && !state.read_only).then(|| doc.clone());
    let before = doc.get_heads();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let target = copy.as_mut().unwrap_or(doc);
        if let Err(error) = target.receive_sync_message_log_patches(state, message, patches) {
            return Ok(Applied::Error(error));
        }
        if let Some(depth) = nesting(target, &before, max_depth) {
            return Err(Refusal::TooDeep {
                depth,
                limit: max_depth,
            });
        }
        Ok(Applied::Changes(
            target
                .get_changes_meta(&before)
                .into_iter()
                .map(|change| Brought {
                    actor: change.actor.into_owned(),
                    hash: change.hash,
                    start_op: change.start_op,
                    max_op: change.max_op,
                })
                .collect(),
        ))
    }))
    .map_err(|_| Refusal::Unappliable)??;
    if let (Applied::Changes(_), Some(copy)) = (&outcome, copy) {
        *doc = copy;
    }
    Ok(outcome)
}

/// After automerge applied a message (depth cannot be seen in the columns): how deep the
/// deepest object the changes since `before` made lies, if deeper than `limit`. Counted from
/// each new object's parents (at most `limit` steps each), so a change costs work in
/// proportion to itself, and nothing here recurses. Taking the changes out again also
/// proves that automerge can: it once could not for a document it had accepted (fuzzing),
/// and the commit, which does the same, would have panicked.
pub fn nesting(doc: &Automerge, before: &[ChangeHash], limit: usize) -> Option<usize> {
    for change in doc.get_changes(before) {
        let actor = change.actor_id().to_hex_string();
        let start = change.start_op().get();
        for (index, op) in change.decode().operations.iter().enumerate() {
            if !matches!(op.action, automerge::legacy::OpType::Make(_)) {
                continue;
            }
            let counter = start.saturating_add(u64::try_from(index).unwrap_or(u64::MAX));
            let Ok(object) = doc.import_obj(&format!("{counter}@{actor}")) else {
                continue;
            };
            let depth = doc
                .parents(&object)
                .map_or(0, |parents| parents.take(limit.saturating_add(1)).count());
            if depth >= limit {
                return Some(depth.saturating_add(1));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use automerge::sync::{self, SyncDoc};
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ROOT};

    use super::*;

    const LIMITS: Limits = Limits {
        max_hashes: 1024,
        max_haves: 16,
        max_chunks: 1000,
        max_bytes: 1 << 20,
        max_ops: 10_000,
    };

    fn doc_with(n: usize) -> Automerge {
        let mut doc = Automerge::new();
        for i in 0..n {
            doc.transact::<_, _, automerge::AutomergeError>(|tx| {
                tx.put(ROOT, format!("k{i}"), i64::try_from(i).unwrap_or_default())
            })
            .unwrap();
        }
        doc
    }

    #[test]
    fn honest_messages_pass() {
        let doc = doc_with(20);
        let mut state = sync::State::new();
        let first = doc.generate_sync_message(&mut state).unwrap();
        assert_eq!(check(&first, &LIMITS), Ok(()));
        // The answer of an empty peer, then the changes it asked for (V1 change chunks).
        let mut empty = Automerge::new();
        let mut theirs = sync::State::new();
        empty.receive_sync_message(&mut theirs, first).unwrap();
        let request = empty.generate_sync_message(&mut theirs).unwrap();
        assert_eq!(check(&request, &LIMITS), Ok(()));
        let mut doc = doc;
        doc.receive_sync_message(&mut state, request).unwrap();
        let changes = doc.generate_sync_message(&mut state).unwrap();
        assert!(!changes.changes.is_empty());
        assert_eq!(check(&changes, &LIMITS), Ok(()));
    }

    #[test]
    fn documents_and_compressed_columns_are_counted() {
        // A whole document, as V2 sends it: 5,000 ops in compressed columns.
        let doc = doc_with(5_000);
        let message = sync::Message {
            heads: doc.get_heads(),
            need: Vec::new(),
            have: Vec::new(),
            changes: doc.save().into(),
            flags: None,
            version: sync::MessageVersion::V2,
        };
        assert_eq!(check(&message, &LIMITS), Ok(()));
        let small = Limits {
            max_ops: 4_000,
            ..LIMITS
        };
        assert!(matches!(
            check(&message, &small),
            Err(Refusal::TooMany { .. })
        ));
        let tiny = Limits {
            max_bytes: 1_000,
            ..LIMITS
        };
        assert!(matches!(
            check(&message, &tiny),
            Err(Refusal::TooMany { .. })
        ));
    }

    #[test]
    fn hostile_bloom_filters_are_refused() {
        for (entries, bits, probes, ok) in [
            (1u8, 10u8, 7u8, true),
            (1, 0, 7, false),
            (1, 10, 0, false),
            (1, 65, 7, false),
        ] {
            let bytes = [entries, bits, probes, 0, 0];
            let mut bytes = bytes[..3].to_vec();
            bytes.extend(vec![0; usize::from(entries * bits).div_ceil(8)]);
            assert_eq!(bloom(&bytes).is_ok(), ok, "{bytes:?}");
        }
        // num_probes = u32::MAX as a LEB128 varint.
        let huge = [1, 10, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0];
        assert!(bloom(&huge).is_err());
    }

    #[test]
    fn run_lengths_cannot_claim_a_billion_operations() {
        // An action column of one run of a billion "set" actions: a few bytes.
        let mut column = vec![];
        leb128_signed(&mut column, 1_000_000_000);
        column.push(1);
        assert!(rle_rows(&column, 10_000).is_err());
        let mut ok = vec![];
        leb128_signed(&mut ok, 3);
        ok.push(1);
        leb128_signed(&mut ok, -2);
        ok.extend([1, 2]);
        assert_eq!(rle_rows(&ok, 10_000), Ok(5));
    }

    fn leb128_signed(out: &mut Vec<u8>, mut value: i64) {
        loop {
            let byte = u8::try_from(value & 0x7f).unwrap_or_default();
            value >>= 7;
            let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
            out.push(if done { byte } else { byte | 0x80 });
            if done {
                return;
            }
        }
    }
}
