//! Server time is the record's time (D11–D13). A device's clock may be wrong and its user may
//! backdate a report; the server knows, for every change of an incident, when it received it
//! and the earliest time the device could have made it (`documents::Receipt`). A time the
//! device wrote counts as written when it lies between the two; outside them (beyond a
//! tolerance for honest clocks) it is a problem on the incident, counted in the KPIs, and the
//! nearest bound counts instead. Online, the earliest time is the receipt itself, so what a
//! connected device reports counts from when the server heard it.

use std::collections::HashMap;

use automerge::{Automerge, ObjId, ReadDoc};

use crate::documents::Receipt;

/// How far a device's time may fall outside what the server saw before it is a problem: the
/// clock skew a device is told about at login (`auth`).
pub const TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// How long after connecting a device counts as catching up: changes arriving in this time
/// may have been made while it was offline, since its last contact; later ones were made
/// online, when they were sent.
pub const CATCH_UP_MS: i64 = 2 * 60 * 1000;

/// A document's receipts by actor, each actor's in operation order.
#[derive(Debug, Clone, Default)]
pub struct Receipts(HashMap<String, Vec<Receipt>>);

impl Receipts {
    pub fn new(receipts: impl IntoIterator<Item = Receipt>) -> Self {
        let mut all = Receipts::default();
        for receipt in receipts {
            all.add(receipt);
        }
        all
    }

    /// Keeps the first receipt of a change.
    pub fn add(&mut self, receipt: Receipt) {
        let list = self.0.entry(receipt.actor.clone()).or_default();
        if let Err(at) = list.binary_search_by_key(&receipt.start_op, |known| known.start_op) {
            list.insert(at, receipt);
        }
    }

    /// The receipt of the change holding operation `counter` of `actor`.
    fn of(&self, actor: &str, counter: u64) -> Option<&Receipt> {
        let list = self.0.get(actor)?;
        let at = list.partition_point(|receipt| receipt.start_op <= counter);
        list[..at]
            .last()
            .filter(|receipt| counter <= receipt.end_op)
    }
}

/// A time a device wrote, and the time the server counts for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub counted: Option<i64>,
    /// Why the written time could not be true, if so.
    pub problem: Option<String>,
}

/// Checks `written`, the value of `object.key` named `label` in problems, against the
/// receipt of the change that wrote it. A value written before receipts were kept counts as
/// written.
pub fn check(
    doc: &Automerge,
    receipts: &Receipts,
    object: &ObjId,
    key: &str,
    written: Option<i64>,
    label: &str,
) -> Checked {
    let receipt = match doc.get(object, key) {
        Ok(Some((_, ObjId::Id(counter, actor, _)))) => receipts.of(&actor.to_hex_string(), counter),
        _ => None,
    };
    let (Some(written), Some(receipt)) = (written, receipt) else {
        return Checked {
            counted: written,
            problem: None,
        };
    };
    let earliest = receipt.earliest.min(receipt.received_at);
    let problem = if written < earliest.saturating_sub(TOLERANCE_MS) {
        Some(format!(
            "{label} backdated: the device wrote {}, but it could not have made this before {}; \
             {} counts",
            show(written),
            show(earliest),
            show(earliest)
        ))
    } else if written > receipt.received_at.saturating_add(TOLERANCE_MS) {
        Some(format!(
            "{label} in the future: the device wrote {}, but the server received it at {}, \
             which counts",
            show(written),
            show(receipt.received_at)
        ))
    } else {
        None
    };
    Checked {
        counted: Some(written.clamp(earliest, receipt.received_at)),
        problem,
    }
}

fn show(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ROOT};

    use super::*;

    const MINUTE: i64 = 60_000;

    fn doc_with_time(at: i64) -> (Automerge, String) {
        let mut doc = Automerge::new();
        doc.set_actor(ActorId::from(b"device".as_slice()));
        let mut tx = doc.transaction();
        tx.put(ROOT, "title", "x").unwrap();
        tx.put(ROOT, "known_at", at).unwrap();
        tx.commit();
        let actor = doc.get_actor().to_hex_string();
        (doc, actor)
    }

    fn receipt(actor: &str, received_at: i64, earliest: i64) -> Receipt {
        Receipt {
            actor: actor.into(),
            start_op: 1,
            end_op: 2,
            hash: "h".into(),
            received_at,
            earliest,
        }
    }

    #[test]
    fn a_time_counts_as_written_between_last_contact_and_receipt_and_is_flagged_outside() {
        let now = 1_800_000_000_000;
        let offline_since = now - 3 * 60 * MINUTE;
        for (written, counted, flagged) in [
            (now - 60 * MINUTE, now - 60 * MINUTE, false),
            (offline_since - 4 * MINUTE, offline_since, false),
            (offline_since - 6 * MINUTE, offline_since, true),
            (now + 4 * MINUTE, now, false),
            (now + 6 * MINUTE, now, true),
        ] {
            let (doc, actor) = doc_with_time(written);
            let receipts = Receipts::new([receipt(&actor, now, offline_since)]);
            let checked = check(
                &doc,
                &receipts,
                &ROOT,
                "known_at",
                Some(written),
                "known_at",
            );
            assert_eq!(checked.counted, Some(counted), "written {written}");
            assert_eq!(checked.problem.is_some(), flagged, "written {written}");
        }
    }

    #[test]
    fn online_the_receipt_counts_and_unknown_changes_count_as_written() {
        let now = 1_800_000_000_000;
        let (doc, actor) = doc_with_time(now - 2 * MINUTE);
        let online = Receipts::new([receipt(&actor, now, now)]);
        let checked = check(
            &doc,
            &online,
            &ROOT,
            "known_at",
            Some(now - 2 * MINUTE),
            "k",
        );
        assert_eq!((checked.counted, checked.problem), (Some(now), None));
        let other = Receipts::new([receipt("abcd", now, now)]);
        let checked = check(
            &doc,
            &other,
            &ROOT,
            "known_at",
            Some(now - 99 * MINUTE),
            "k",
        );
        assert_eq!(
            (checked.counted, checked.problem),
            (Some(now - 99 * MINUTE), None)
        );
    }
}
