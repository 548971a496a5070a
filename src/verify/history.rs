//! What a `strand verify` run observed, and the checker that judges it.
//!
//! A [`History`] is everything the workload saw, with no interpretation: each record it sent
//! (its unique id, the partition it was sent to, its transaction, and what the producer was
//! told: acknowledged at an offset, refused, or unknown), each transaction's outcome, every
//! record any reader was handed (which reader, which partition and offset, when), and every
//! committed group offset it acknowledged or fetched. [`check`] is a pure function of it, so
//! it can be fed planted histories in tests.
//!
//! The checker's rules (each one a Kafka promise):
//! - **Lost acknowledged write:** an acknowledged record (outside a transaction, or in a
//!   committed one) that a reader which read its partition to the end never saw.
//! - **Lost read:** a record some reader was shown that a complete reader of the same or a
//!   weaker isolation level no longer finds.
//! - **Divergent offset:** two readers were handed different records at one offset.
//! - **Wrong ack offset:** a record acknowledged at an offset but found at another, or another
//!   record found at its offset.
//! - **Duplicate:** one record at two offsets (the producers are idempotent).
//! - **Out of order:** within a partition, one producer's records not in the order it sent them.
//! - **Offset backwards:** a reader handed an offset not above the previous one in the same
//!   partition, within one assignment (a reader's assignment starts a new session).
//! - **Aborted read:** a read_committed reader handed a record of an aborted transaction.
//! - **Uncommitted read:** a read_committed reader handed a transactional record before its
//!   transaction's commit was even requested.
//! - **Refused but present:** a record the producer was told was never persisted, in the log.
//! - **Phantom:** a record of this run that was never sent.
//! - **Committed offset backwards:** a group's committed offset lower than one acknowledged or
//!   fetched before the observation started.
//! - **Group lost:** an acknowledged (committed) record in a partition the group consumed to the
//!   end that no group member was handed.
//! - **Corrupt record:** a record with this run's mark whose value is not what was sent.
//!
//! A reader that could not read a partition to its end within the time given is
//! reported as a stall for that partition (a liveness problem, not a safety violation), and
//! that partition is left out of its loss checks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

/// A record's identity: the producer session that sent it and its sequence number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RecordId {
    pub producer: u32,
    pub seq: u64,
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.producer, self.seq)
    }
}

/// What the producer was told about a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged (acks=all) at this offset.
    Acked { offset: i64 },
    /// A definite failure: the client knows the record was not persisted.
    Refused { error: String },
    /// No verdict (a timeout, or no delivery report at all): it may or may not be in the log.
    Unknown { error: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct Produced {
    pub id: RecordId,
    pub partition: i32,
    /// The transaction it was sent in, if any.
    pub txn: Option<u64>,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnOutcome {
    Committed,
    Aborted,
    Unknown,
}

#[derive(Clone, Debug, Serialize)]
pub struct Txn {
    pub id: u64,
    pub outcome: TxnOutcome,
    /// When (ms since the run started) the commit was first requested, if it was.
    pub commit_requested_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    ReadCommitted,
    ReadUncommitted,
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReaderKind {
    /// Assigned every partition from the start while the workload ran.
    Tail,
    /// Assigned every partition from the start once the producers were done, read to the end.
    Final,
    /// The consumer group (all its members, which come and go), committing as it goes.
    Group,
}

#[derive(Clone, Debug, Serialize)]
pub struct Reader {
    pub name: String,
    pub kind: ReaderKind,
    pub isolation: Isolation,
    /// Partitions it read to their end (the high watermark after the producers finished).
    /// Only these count for its loss checks; a tail reader has none.
    pub complete: BTreeSet<i32>,
    /// Partitions it was meant to read to the end but could not, with where it stopped and
    /// where the end was.
    pub stalled: BTreeMap<i32, (i64, i64)>,
}

/// One record handed to a reader.
#[derive(Clone, Debug, Serialize)]
pub struct Read {
    /// Index into [`History::readers`].
    pub reader: usize,
    /// Changes whenever the reader's assignment does (a group member's rebalance).
    pub session: u32,
    pub partition: i32,
    pub offset: i64,
    pub id: RecordId,
    pub at_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitKind {
    /// An OffsetCommit the coordinator acknowledged.
    Acknowledged,
    /// A value OffsetFetch returned.
    Fetched,
}

/// One observation of a group's committed offset for a partition.
#[derive(Clone, Debug, Serialize)]
pub struct CommitSample {
    pub partition: i32,
    pub offset: i64,
    pub kind: CommitKind,
    pub started_ms: u64,
    pub ended_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct History {
    pub produced: Vec<Produced>,
    pub txns: Vec<Txn>,
    pub readers: Vec<Reader>,
    pub reads: Vec<Read>,
    pub commits: Vec<CommitSample>,
    /// Records with this run's mark whose value was not what was sent (where, and how).
    pub corrupt: Vec<String>,
}

/// How many examples of each violation a report keeps.
pub const EXAMPLES: usize = 10;

/// The count of one kind of finding, with a few examples.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Finding {
    pub count: u64,
    pub examples: Vec<String>,
}

impl Finding {
    fn add(&mut self, example: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }
}

/// Totals: what was done, not judged.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
    pub unknown: u64,
    pub txns_committed: u64,
    pub txns_aborted: u64,
    pub txns_unknown: u64,
    pub reads: u64,
    pub commit_samples: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Violations {
    pub lost_acknowledged: Finding,
    pub lost_reads: Finding,
    pub divergent_offsets: Finding,
    pub wrong_ack_offsets: Finding,
    pub duplicates: Finding,
    pub out_of_order: Finding,
    pub offsets_backwards: Finding,
    pub aborted_reads: Finding,
    pub uncommitted_reads: Finding,
    pub refused_but_present: Finding,
    pub phantoms: Finding,
    pub committed_offsets_backwards: Finding,
    pub group_lost: Finding,
    pub corrupt: Finding,
}

impl Violations {
    /// `(name, finding)` for each kind, in report order.
    pub fn each(&self) -> [(&'static str, &Finding); 14] {
        [
            ("lost acknowledged writes", &self.lost_acknowledged),
            ("lost reads (shown, then gone)", &self.lost_reads),
            ("divergent offsets", &self.divergent_offsets),
            ("wrong acknowledged offsets", &self.wrong_ack_offsets),
            ("duplicates", &self.duplicates),
            ("out of order", &self.out_of_order),
            ("offsets backwards", &self.offsets_backwards),
            ("aborted reads (read_committed)", &self.aborted_reads),
            (
                "uncommitted reads (read_committed)",
                &self.uncommitted_reads,
            ),
            ("refused but present", &self.refused_but_present),
            ("phantom records", &self.phantoms),
            (
                "committed offsets backwards",
                &self.committed_offsets_backwards,
            ),
            ("group lost", &self.group_lost),
            ("corrupt records", &self.corrupt),
        ]
    }

    pub fn total(&self) -> u64 {
        self.each().iter().map(|(_, f)| f.count).sum()
    }
}

/// A reader's stall: a partition it could not read to its end.
#[derive(Clone, Debug, Serialize)]
pub struct Stall {
    pub reader: String,
    pub partition: i32,
    pub reached: i64,
    pub end: i64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub totals: Totals,
    pub violations: Violations,
    pub stalls: Vec<Stall>,
}

impl Report {
    /// True if nothing the cluster promised was broken.
    pub fn safe(&self) -> bool {
        self.violations.total() == 0
    }
}

/// Judges a history (see the module docs for the rules).
pub fn check(h: &History) -> Report {
    let mut r = Report::default();
    let v = &mut r.violations;
    let produced: HashMap<RecordId, &Produced> = h.produced.iter().map(|p| (p.id, p)).collect();
    let txns: HashMap<u64, &Txn> = h.txns.iter().map(|t| (t.id, t)).collect();
    let txn_outcome = |p: &Produced| {
        p.txn
            .map(|t| txns.get(&t).map_or(TxnOutcome::Unknown, |t| t.outcome))
    };
    // Visible to read_committed: outside a transaction, or in one that committed.
    let committed = |p: &Produced| matches!(txn_outcome(p), None | Some(TxnOutcome::Committed));

    r.totals.sent = h.produced.len() as u64;
    for p in &h.produced {
        match p.outcome {
            Outcome::Acked { .. } => r.totals.acked += 1,
            Outcome::Refused { .. } => r.totals.refused += 1,
            Outcome::Unknown { .. } => r.totals.unknown += 1,
        }
    }
    for t in &h.txns {
        match t.outcome {
            TxnOutcome::Committed => r.totals.txns_committed += 1,
            TxnOutcome::Aborted => r.totals.txns_aborted += 1,
            TxnOutcome::Unknown => r.totals.txns_unknown += 1,
        }
    }
    r.totals.reads = h.reads.len() as u64;
    r.totals.commit_samples = h.commits.len() as u64;

    // The log as every reader together saw it; a disagreement is a divergence.
    let mut log: BTreeMap<(i32, i64), RecordId> = BTreeMap::new();
    let mut divergent: HashSet<(i32, i64)> = HashSet::new();
    for rd in &h.reads {
        match log.entry((rd.partition, rd.offset)) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(rd.id);
            }
            std::collections::btree_map::Entry::Occupied(e) => {
                if *e.get() != rd.id && divergent.insert((rd.partition, rd.offset)) {
                    let other = *e.get();
                    v.divergent_offsets.add(|| {
                        format!(
                            "partition {} offset {}: {} and {} (reader {})",
                            rd.partition, rd.offset, other, rd.id, h.readers[rd.reader].name
                        )
                    });
                }
            }
        }
    }
    let mut places: HashMap<RecordId, Vec<(i32, i64)>> = HashMap::new();
    for (&pos, &id) in &log {
        places.entry(id).or_default().push(pos);
    }

    // Records nobody sent; records in two places; records refused yet present.
    let mut ids: Vec<&RecordId> = places.keys().collect();
    ids.sort();
    for id in ids {
        let at = &places[id];
        match produced.get(id) {
            None => v
                .phantoms
                .add(|| format!("{id} at partition {} offset {}", at[0].0, at[0].1)),
            Some(p) => {
                if matches!(p.outcome, Outcome::Refused { .. }) {
                    v.refused_but_present
                        .add(|| format!("{id} at partition {} offset {}", at[0].0, at[0].1));
                }
            }
        }
        if at.len() > 1 {
            v.duplicates.add(|| format!("{id} at {at:?}"));
        }
    }

    // Acknowledged offsets must hold the acknowledged record.
    for p in &h.produced {
        let Outcome::Acked { offset } = p.outcome else {
            continue;
        };
        let at = places.get(&p.id);
        match log.get(&(p.partition, offset)) {
            Some(found) if *found == p.id => {}
            Some(found) => v.wrong_ack_offsets.add(|| {
                format!(
                    "{} acknowledged at partition {} offset {offset}, which holds {found}",
                    p.id, p.partition
                )
            }),
            None => {
                if let Some(at) = at {
                    v.wrong_ack_offsets.add(|| {
                        format!(
                            "{} acknowledged at partition {} offset {offset}, found at {at:?}",
                            p.id, p.partition
                        )
                    });
                }
            }
        }
    }

    // Each producer's records in a partition in the order it sent them.
    let mut last: HashMap<(i32, u32), (u64, i64)> = HashMap::new();
    for (&(partition, offset), id) in &log {
        if let Some((seq, at)) = last.insert((partition, id.producer), (id.seq, offset)) {
            if seq >= id.seq {
                v.out_of_order.add(|| {
                    format!(
                        "partition {partition}: producer {} seq {} at offset {at}, then seq {} at offset {offset}",
                        id.producer, seq, id.seq
                    )
                });
            }
        }
    }

    // Per reader session and partition, offsets only grow; read_committed sees no aborts.
    let mut prev: HashMap<(usize, u32, i32), i64> = HashMap::new();
    for rd in &h.reads {
        let reader = &h.readers[rd.reader];
        if let Some(before) = prev.insert((rd.reader, rd.session, rd.partition), rd.offset) {
            if rd.offset <= before {
                v.offsets_backwards.add(|| {
                    format!(
                        "{}: partition {} offset {} after {}",
                        reader.name, rd.partition, rd.offset, before
                    )
                });
            }
        }
        if reader.isolation != Isolation::ReadCommitted {
            continue;
        }
        let Some(p) = produced.get(&rd.id) else {
            continue;
        };
        let Some(t) = p.txn else { continue };
        let txn = txns.get(&t);
        if txn.is_some_and(|t| t.outcome == TxnOutcome::Aborted) {
            v.aborted_reads.add(|| {
                format!(
                    "{}: {} (transaction {t}, aborted) at partition {} offset {}",
                    reader.name, rd.id, rd.partition, rd.offset
                )
            });
        } else if txn.is_none_or(|t| t.commit_requested_ms.is_none_or(|c| rd.at_ms < c)) {
            v.uncommitted_reads.add(|| {
                format!(
                    "{}: {} (transaction {t}) at {} ms, before its commit was requested",
                    reader.name, rd.id, rd.at_ms
                )
            });
        }
    }

    // What each complete reader saw, by position.
    let mut seen: Vec<HashSet<(i32, i64)>> = vec![HashSet::new(); h.readers.len()];
    let mut seen_ids: Vec<HashSet<RecordId>> = vec![HashSet::new(); h.readers.len()];
    // Positions shown to a read_committed reader (so committed, whatever the producer heard).
    let mut shown_committed: HashSet<(i32, i64)> = HashSet::new();
    for rd in &h.reads {
        let reader = &h.readers[rd.reader];
        if reader.isolation == Isolation::ReadCommitted {
            shown_committed.insert((rd.partition, rd.offset));
        }
        if reader.complete.contains(&rd.partition) {
            seen[rd.reader].insert((rd.partition, rd.offset));
            seen_ids[rd.reader].insert(rd.id);
        }
    }
    let mut lost: BTreeMap<RecordId, Vec<&str>> = BTreeMap::new();
    let mut lost_reads: BTreeMap<(i32, i64), Vec<&str>> = BTreeMap::new();
    let mut group_lost: BTreeSet<RecordId> = BTreeSet::new();
    for (i, reader) in h.readers.iter().enumerate() {
        if reader.complete.is_empty() {
            continue;
        }
        for p in &h.produced {
            if !matches!(p.outcome, Outcome::Acked { .. })
                || !reader.complete.contains(&p.partition)
            {
                continue;
            }
            if reader.isolation == Isolation::ReadCommitted && !committed(p) {
                continue;
            }
            if !seen_ids[i].contains(&p.id) {
                if reader.kind == ReaderKind::Group {
                    group_lost.insert(p.id);
                } else {
                    lost.entry(p.id).or_default().push(&reader.name);
                }
            }
        }
        if reader.kind == ReaderKind::Group {
            continue; // a group starts from its committed offsets: it need not see everything
        }
        for (&pos, id) in &log {
            if !reader.complete.contains(&pos.0) || seen[i].contains(&pos) {
                continue;
            }
            // An acknowledged record this reader missed is already a lost acknowledged write.
            if produced.get(id).is_some_and(|p| {
                matches!(p.outcome, Outcome::Acked { .. })
                    && (reader.isolation == Isolation::ReadUncommitted || committed(p))
            }) {
                continue;
            }
            let visible = match reader.isolation {
                Isolation::ReadUncommitted => true,
                Isolation::ReadCommitted => {
                    shown_committed.contains(&pos) || produced.get(id).is_some_and(|p| committed(p))
                }
            };
            if visible {
                lost_reads.entry(pos).or_default().push(&reader.name);
            }
        }
    }
    for (id, by) in lost {
        let p = produced[&id];
        v.lost_acknowledged.add(|| {
            let at = match p.outcome {
                Outcome::Acked { offset } => offset,
                _ => -1,
            };
            format!(
                "{id} acknowledged at partition {} offset {at}, not seen by {}",
                p.partition,
                by.join(", ")
            )
        });
    }
    for ((partition, offset), by) in lost_reads {
        let id = log[&(partition, offset)];
        v.lost_reads.add(|| {
            format!(
                "{id} at partition {partition} offset {offset}, not seen by {}",
                by.join(", ")
            )
        });
    }
    for id in group_lost {
        let p = produced[&id];
        v.group_lost
            .add(|| format!("{id} in partition {}", p.partition));
    }

    // Committed offsets never go below one observed before the observation started.
    let mut by_partition: BTreeMap<i32, Vec<&CommitSample>> = BTreeMap::new();
    for c in &h.commits {
        by_partition.entry(c.partition).or_default().push(c);
    }
    for (partition, mut samples) in by_partition {
        samples.sort_by_key(|c| (c.ended_ms, c.started_ms));
        // Samples in order of when they ended; `best` is the highest of those that ended
        // before the current one started (a prefix, as ends are sorted).
        let ends: Vec<u64> = samples.iter().map(|c| c.ended_ms).collect();
        let mut prefix_max: Vec<(i64, usize)> = Vec::with_capacity(samples.len());
        for (i, c) in samples.iter().enumerate() {
            let before = prefix_max.last().copied();
            prefix_max.push(match before {
                Some((m, j)) if m >= c.offset => (m, j),
                _ => (c.offset, i),
            });
        }
        for c in &samples {
            let n = ends.partition_point(|&e| e < c.started_ms);
            if n == 0 {
                continue;
            }
            let (m, j) = prefix_max[n - 1];
            if c.offset < m {
                let earlier = samples[j];
                v.committed_offsets_backwards.add(|| {
                    format!(
                        "partition {partition}: {:?} {} at {}-{} ms after {:?} {} at {}-{} ms",
                        c.kind,
                        c.offset,
                        c.started_ms,
                        c.ended_ms,
                        earlier.kind,
                        earlier.offset,
                        earlier.started_ms,
                        earlier.ended_ms
                    )
                });
            }
        }
    }

    for c in &h.corrupt {
        v.corrupt.add(|| c.clone());
    }
    for reader in &h.readers {
        for (&partition, &(reached, end)) in &reader.stalled {
            r.stalls.push(Stall {
                reader: reader.name.clone(),
                partition,
                reached,
                end,
            });
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(producer: u32, seq: u64) -> RecordId {
        RecordId { producer, seq }
    }

    /// A history in which producer 1 wrote seqs 0..n to partition 0 at offsets 0..n, all
    /// acknowledged, and a complete read_uncommitted final reader saw all of them.
    fn clean(n: u64) -> History {
        let mut h = History::default();
        h.readers.push(reader(
            "final-ru",
            ReaderKind::Final,
            Isolation::ReadUncommitted,
        ));
        for s in 0..n {
            h.produced.push(Produced {
                id: id(1, s),
                partition: 0,
                txn: None,
                outcome: Outcome::Acked { offset: s as i64 },
            });
            h.reads.push(read(0, 0, s as i64, id(1, s)));
        }
        h
    }

    fn reader(name: &str, kind: ReaderKind, isolation: Isolation) -> Reader {
        Reader {
            name: name.into(),
            kind,
            isolation,
            complete: if kind == ReaderKind::Tail {
                BTreeSet::new()
            } else {
                [0].into()
            },
            stalled: BTreeMap::new(),
        }
    }

    fn read(reader: usize, partition: i32, offset: i64, id: RecordId) -> Read {
        Read {
            reader,
            session: 0,
            partition,
            offset,
            id,
            at_ms: 1000 + offset as u64,
        }
    }

    fn only(r: &Report, name: &str, count: u64) {
        for (n, f) in r.violations.each() {
            let want = if n == name { count } else { 0 };
            assert_eq!(f.count, want, "{n}: {:?}", f.examples);
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let r = check(&clean(20));
        assert!(r.safe(), "{:?}", r.violations);
        assert_eq!(r.totals.acked, 20);
        assert_eq!(r.totals.reads, 20);
    }

    #[test]
    fn an_acknowledged_record_missing_from_a_complete_read_is_lost() {
        let mut h = clean(10);
        h.reads.retain(|rd| rd.offset != 4);
        let r = check(&h);
        only(&r, "lost acknowledged writes", 1);
        assert!(r.violations.lost_acknowledged.examples[0]
            .starts_with("1/4 acknowledged at partition 0 offset 4"));
    }

    #[test]
    fn a_stalled_partition_is_not_judged_for_loss() {
        let mut h = clean(10);
        h.reads.retain(|rd| rd.offset < 5);
        h.readers[0].complete.clear();
        h.readers[0].stalled.insert(0, (5, 10));
        let r = check(&h);
        assert!(r.safe(), "{:?}", r.violations);
        assert_eq!(r.stalls.len(), 1);
        assert_eq!((r.stalls[0].reached, r.stalls[0].end), (5, 10));
    }

    #[test]
    fn a_record_shown_then_gone_is_a_lost_read() {
        // Unacknowledged (unknown outcome), seen by the tail reader, gone from the final read.
        let mut h = clean(5);
        h.produced.push(Produced {
            id: id(2, 0),
            partition: 0,
            txn: None,
            outcome: Outcome::Unknown {
                error: "timed out".into(),
            },
        });
        h.readers
            .push(reader("tail", ReaderKind::Tail, Isolation::ReadUncommitted));
        h.reads.push(read(1, 0, 5, id(2, 0)));
        let r = check(&h);
        only(&r, "lost reads (shown, then gone)", 1);
    }

    #[test]
    fn two_records_at_one_offset_diverge() {
        let mut h = clean(5);
        h.readers
            .push(reader("tail", ReaderKind::Tail, Isolation::ReadUncommitted));
        h.produced.push(Produced {
            id: id(2, 0),
            partition: 0,
            txn: None,
            outcome: Outcome::Unknown { error: "x".into() },
        });
        // The tail reader saw 2/0 at offset 3, where the final read has 1/3.
        h.reads.insert(0, read(1, 0, 3, id(2, 0)));
        let r = check(&h);
        assert_eq!(r.violations.divergent_offsets.count, 1);
        // And 1/3 was acknowledged at offset 3, which (by the first reading) holds 2/0.
        assert_eq!(r.violations.wrong_ack_offsets.count, 1);
    }

    #[test]
    fn a_record_acknowledged_at_one_offset_and_found_at_another() {
        let mut h = clean(5);
        h.produced[2].outcome = Outcome::Acked { offset: 7 };
        let r = check(&h);
        only(&r, "wrong acknowledged offsets", 1);
    }

    #[test]
    fn a_record_at_two_offsets_is_a_duplicate() {
        let mut h = clean(5);
        h.reads.push(read(0, 0, 5, id(1, 2)));
        let r = check(&h);
        assert_eq!(r.violations.duplicates.count, 1);
        // Seq 2 after seq 4 is also out of order.
        assert_eq!(r.violations.out_of_order.count, 1);
    }

    #[test]
    fn a_reordered_pair_is_out_of_order() {
        let mut h = clean(6);
        // Offsets 2 and 3 hold seqs 3 and 2 (and were acknowledged so).
        h.reads[2].id = id(1, 3);
        h.reads[3].id = id(1, 2);
        h.produced[2].outcome = Outcome::Acked { offset: 3 };
        h.produced[3].outcome = Outcome::Acked { offset: 2 };
        let r = check(&h);
        only(&r, "out of order", 1);
    }

    #[test]
    fn offsets_going_backwards_within_a_session() {
        let mut h = clean(5);
        let again = h.reads[1].clone();
        h.reads.push(again.clone());
        let r = check(&h);
        only(&r, "offsets backwards", 1);
        // In a new session (a group member's new assignment) it is a legitimate redelivery.
        let mut h = clean(5);
        h.reads.push(Read {
            session: 1,
            ..again
        });
        assert!(check(&h).safe());
    }

    fn txn_history(outcome: TxnOutcome, commit_requested_ms: Option<u64>) -> History {
        let mut h = clean(3);
        h.readers.push(reader(
            "final-rc",
            ReaderKind::Final,
            Isolation::ReadCommitted,
        ));
        h.txns.push(Txn {
            id: 9,
            outcome,
            commit_requested_ms,
        });
        for (s, off) in [(3u64, 3i64), (4, 4)] {
            h.produced.push(Produced {
                id: id(1, s),
                partition: 0,
                txn: Some(9),
                outcome: Outcome::Acked { offset: off },
            });
            h.reads.push(read(0, 0, off, id(1, s)));
        }
        // The read_committed reader sees the non-transactional ones.
        for s in 0..3 {
            h.reads.push(read(1, 0, s, id(1, s as u64)));
        }
        h
    }

    #[test]
    fn aborted_records_are_fine_unread_and_wrong_read() {
        let h = txn_history(TxnOutcome::Aborted, None);
        assert!(check(&h).safe(), "{:?}", check(&h).violations);
        let mut h = txn_history(TxnOutcome::Aborted, None);
        h.reads.push(read(1, 0, 3, id(1, 3)));
        only(&check(&h), "aborted reads (read_committed)", 1);
    }

    #[test]
    fn committed_records_must_reach_read_committed() {
        let h = txn_history(TxnOutcome::Committed, Some(500));
        let r = check(&h);
        // 1/3 and 1/4 committed but the read_committed reader never saw them.
        only(&r, "lost acknowledged writes", 2);
        let mut h = txn_history(TxnOutcome::Committed, Some(500));
        h.reads.push(read(1, 0, 3, id(1, 3)));
        h.reads.push(read(1, 0, 4, id(1, 4)));
        assert!(check(&h).safe());
    }

    #[test]
    fn a_read_before_the_commit_was_requested_is_uncommitted() {
        let mut h = txn_history(TxnOutcome::Committed, Some(5000));
        h.reads.push(read(1, 0, 3, id(1, 3))); // at 1003 ms, before 5000 ms
        h.reads.push(read(1, 0, 4, id(1, 4)));
        only(&check(&h), "uncommitted reads (read_committed)", 2);
    }

    #[test]
    fn a_refused_record_in_the_log_and_a_phantom() {
        let mut h = clean(5);
        h.produced[1].outcome = Outcome::Refused {
            error: "not persisted".into(),
        };
        h.reads.push(read(0, 0, 5, id(7, 0)));
        let r = check(&h);
        assert_eq!(r.violations.refused_but_present.count, 1);
        assert_eq!(r.violations.phantoms.count, 1);
        assert_eq!(r.violations.total(), 2);
    }

    #[test]
    fn committed_offsets_backwards() {
        let sample = |offset, kind, started_ms, ended_ms| CommitSample {
            partition: 0,
            offset,
            kind,
            started_ms,
            ended_ms,
        };
        let mut h = clean(1);
        h.commits = vec![
            sample(10, CommitKind::Acknowledged, 100, 110),
            sample(10, CommitKind::Fetched, 120, 130),
            sample(20, CommitKind::Acknowledged, 140, 150),
            // Overlaps the commit of 20: may see the older value.
            sample(10, CommitKind::Fetched, 145, 160),
        ];
        assert!(check(&h).safe());
        h.commits.push(sample(15, CommitKind::Fetched, 170, 180));
        only(&check(&h), "committed offsets backwards", 1);
    }

    #[test]
    fn the_group_must_see_every_acknowledged_record() {
        let mut h = clean(5);
        h.readers
            .push(reader("group", ReaderKind::Group, Isolation::ReadCommitted));
        for s in [0i64, 1, 3, 4] {
            h.reads.push(read(1, 0, s, id(1, s as u64)));
        }
        only(&check(&h), "group lost", 1);
        // Redelivered records (a new session) are fine.
        h.reads.push(Read {
            session: 1,
            ..read(1, 0, 2, id(1, 2))
        });
        h.reads.push(Read {
            session: 1,
            ..read(1, 0, 3, id(1, 3))
        });
        assert!(check(&h).safe());
    }
}
