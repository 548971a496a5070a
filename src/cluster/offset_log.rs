//! The embedded store's coordinator state: consumer-group offsets and transaction states, in an
//! append-only, checksummed log.
//!
//! On-disk format: `<data_dir>/meta/offsets.log` is a sequence of records, each
//! `u32 length (big-endian) | u32 CRC32C of the payload | payload`, where the payload is a JSON
//! [`Entry`]: a commit of some partitions' offsets for one group, a deletion (some partitions
//! of a group, or the whole group), the new state of one transactional id (or its removal), or
//! a producer's pending transactional offsets for a group (and their end: committed or dropped).
//! Replaying the records in order gives the committed offsets and transaction states.
//!
//! Writes go through one writer thread: it takes every entry queued meanwhile, appends them,
//! `fdatasync`s once and only then acknowledges them (group commit), so an acknowledged commit
//! survives a crash, and many concurrent commits cost one fsync.
//!
//! Recovery: at open the log is replayed up to the first record that is incomplete or fails its
//! checksum; the file is truncated there (a torn tail from a crash mid-append). Compaction:
//! when the file is much larger than the live offsets, the writer rewrites it as one commit per
//! group into `offsets.log.tmp`, fsyncs it, renames it over the log and fsyncs the directory; a
//! leftover `.tmp` (crash mid-compaction) is deleted at open, the old log being still whole.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{CommittedOffset, GroupOffsets, PendingTxnOffsets, TxnRecord};

const FILE: &str = "offsets.log";
const COMPACT_MIN_BYTES: u64 = 16 << 20;
const MAX_RECORD: usize = 64 << 20;

/// One change to the offsets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Entry {
    Commit {
        group: String,
        offsets: Vec<(String, i32, CommittedOffset)>,
    },
    /// `partitions: None` deletes every offset of the group.
    Delete {
        group: String,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// The state of a transactional id.
    PutTxn { record: TxnRecord },
    /// A transactional id is forgotten.
    DeleteTxn { transactional_id: String },
    /// A producer's pending transactional offsets for a group (replacing earlier ones).
    PutPending {
        group: String,
        producer_id: i64,
        pending: PendingTxnOffsets,
    },
    /// The transaction's marker reached the group: `commit` offsets become committed (None:
    /// aborted), and the pending entry goes.
    ResolvePending {
        group: String,
        producer_id: i64,
        commit: Option<Vec<(String, i32, CommittedOffset)>>,
    },
}

/// Everything the log holds.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub offsets: BTreeMap<String, GroupOffsets>,
    pub txns: BTreeMap<String, TxnRecord>,
    /// Pending transactional offsets by `(group, producer id)`.
    pub pending: BTreeMap<(String, i64), PendingTxnOffsets>,
}

impl Entry {
    fn apply(&self, all: &mut State) {
        let state = &mut all.offsets;
        match self {
            Entry::Commit { group, offsets } => {
                let g = state.entry(group.clone()).or_default();
                for (t, p, o) in offsets {
                    g.insert((t.clone(), *p), o.clone());
                }
            }
            Entry::Delete { group, partitions } => match partitions {
                None => {
                    state.remove(group);
                }
                Some(parts) => {
                    if let Some(g) = state.get_mut(group) {
                        for (t, p) in parts {
                            g.remove(&(t.clone(), *p));
                        }
                        if g.is_empty() {
                            state.remove(group);
                        }
                    }
                }
            },
            Entry::PutTxn { record } => {
                all.txns
                    .insert(record.transactional_id.clone(), record.clone());
            }
            Entry::DeleteTxn { transactional_id } => {
                all.txns.remove(transactional_id);
            }
            Entry::PutPending {
                group,
                producer_id,
                pending,
            } => {
                all.pending
                    .insert((group.clone(), *producer_id), pending.clone());
            }
            Entry::ResolvePending {
                group,
                producer_id,
                commit,
            } => {
                all.pending.remove(&(group.clone(), *producer_id));
                if let Some(offsets) = commit {
                    let g = all.offsets.entry(group.clone()).or_default();
                    for (t, p, o) in offsets {
                        g.insert((t.clone(), *p), o.clone());
                    }
                }
            }
        }
    }
}

type Request = (Entry, oneshot::Sender<io::Result<()>>);

pub struct OffsetLog {
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    state: Arc<Mutex<State>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl OffsetLog {
    /// Opens (creating if needed) the log in `dir`, recovering from a torn tail.
    pub fn open(dir: &Path) -> io::Result<OffsetLog> {
        let path = dir.join(FILE);
        let _ = fs::remove_file(dir.join(format!("{FILE}.tmp")));
        let mut state = State::default();
        let valid_len = replay(&path, &mut state)?;
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        if file.metadata()?.len() != valid_len {
            tracing::warn!(
                "offsets log {}: dropping a torn tail after byte {valid_len}",
                path.display()
            );
            file.set_len(valid_len)?;
            file.sync_all()?;
        }
        File::open(dir)?.sync_all()?;
        let state = Arc::new(Mutex::new(state));
        let (tx, rx) = mpsc::channel::<Request>();
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            path,
            file,
            len: valid_len,
            state: state.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("strand-offsets".into())
            .spawn(move || writer.run(rx))?;
        Ok(OffsetLog {
            tx: Mutex::new(Some(tx)),
            state,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Every group's committed offsets as of now.
    pub fn snapshot(&self) -> BTreeMap<String, GroupOffsets> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .offsets
            .clone()
    }

    /// Every pending transactional offset as of now.
    pub fn pending(&self) -> BTreeMap<(String, i64), PendingTxnOffsets> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .clone()
    }

    /// Every transactional id's state as of now.
    pub fn transactions(&self) -> BTreeMap<String, TxnRecord> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .txns
            .clone()
    }

    /// Appends `entry` and resolves once it is durable.
    pub async fn append(&self, entry: Entry) -> io::Result<()> {
        let (done, wait) = oneshot::channel();
        {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            let tx = tx
                .as_ref()
                .ok_or_else(|| io::Error::other("offsets log closed"))?;
            tx.send((entry, done))
                .map_err(|_| io::Error::other("offsets log writer stopped"))?;
        }
        wait.await
            .map_err(|_| io::Error::other("offsets log writer stopped"))?
    }

    /// Stops the writer after it has written everything queued.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

impl Drop for OffsetLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Replays `path` into `state`; returns the length of its valid prefix.
fn replay(path: &Path, state: &mut State) -> io::Result<u64> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    }
    let mut pos = 0usize;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD {
            break;
        }
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Ok(entry) = serde_json::from_slice::<Entry>(payload) else {
            break;
        };
        entry.apply(state);
        pos += 8 + len;
    }
    Ok(pos as u64)
}

fn encode(entry: &Entry, out: &mut Vec<u8>) {
    // Entries are plain data: serializing them cannot fail.
    let payload = serde_json::to_vec(entry).unwrap_or_default();
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
}

struct Writer {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    len: u64,
    state: Arc<Mutex<State>>,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let mut buf = Vec::new();
            for (entry, _) in &batch {
                encode(entry, &mut buf);
            }
            let result = self
                .file
                .write_all(&buf)
                .and_then(|_| self.file.sync_data());
            match result {
                Ok(()) => {
                    self.len += buf.len() as u64;
                    {
                        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                        for (entry, _) in &batch {
                            entry.apply(&mut state);
                        }
                    }
                    for (_, done) in batch {
                        let _ = done.send(Ok(()));
                    }
                    if let Err(e) = self.maybe_compact() {
                        tracing::warn!("offsets log compaction failed: {e}");
                    }
                }
                Err(e) => {
                    tracing::error!("offsets log write failed: {e}");
                    // Drop whatever part was written so the log stays a sequence of whole records.
                    let _ = self.file.set_len(self.len);
                    for (_, done) in batch {
                        let _ = done.send(Err(io::Error::new(e.kind(), e.to_string())));
                    }
                }
            }
        }
    }

    fn maybe_compact(&mut self) -> io::Result<()> {
        if self.len < COMPACT_MIN_BYTES {
            return Ok(());
        }
        let mut buf = Vec::new();
        {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            for record in state.txns.values() {
                encode(
                    &Entry::PutTxn {
                        record: record.clone(),
                    },
                    &mut buf,
                );
            }
            for ((group, producer_id), pending) in state.pending.iter() {
                encode(
                    &Entry::PutPending {
                        group: group.clone(),
                        producer_id: *producer_id,
                        pending: pending.clone(),
                    },
                    &mut buf,
                );
            }
            for (group, offsets) in state.offsets.iter() {
                let entry = Entry::Commit {
                    group: group.clone(),
                    offsets: offsets
                        .iter()
                        .map(|((t, p), o)| (t.clone(), *p, o.clone()))
                        .collect(),
                };
                encode(&entry, &mut buf);
            }
        }
        if (buf.len() as u64) * 4 > self.len {
            return Ok(());
        }
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.len = buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn off(o: i64) -> CommittedOffset {
        CommittedOffset {
            offset: o,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_timestamp: 1,
        }
    }

    fn commit(group: &str, topic: &str, p: i32, o: i64) -> Entry {
        Entry::Commit {
            group: group.into(),
            offsets: vec![(topic.into(), p, off(o))],
        }
    }

    #[tokio::test]
    async fn commits_and_deletes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = OffsetLog::open(dir.path()).unwrap();
        log.append(commit("g", "t", 0, 5)).await.unwrap();
        log.append(commit("g", "t", 0, 7)).await.unwrap();
        log.append(commit("g", "t", 1, 3)).await.unwrap();
        log.append(commit("h", "t", 0, 1)).await.unwrap();
        log.append(Entry::Delete {
            group: "h".into(),
            partitions: None,
        })
        .await
        .unwrap();
        log.append(Entry::Delete {
            group: "g".into(),
            partitions: Some(vec![("t".into(), 1)]),
        })
        .await
        .unwrap();
        drop(log);
        let log = OffsetLog::open(dir.path()).unwrap();
        let s = log.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!(s["g"].len(), 1);
        assert_eq!(s["g"][&("t".to_string(), 0)].offset, 7);
    }

    #[tokio::test]
    async fn pending_transactional_offsets_survive_reopen_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let log = OffsetLog::open(dir.path()).unwrap();
        let pending = |o| PendingTxnOffsets {
            producer_epoch: 2,
            offsets: vec![("t".into(), 0, off(o))],
        };
        for (group, pid) in [("g", 1), ("g", 2), ("h", 1)] {
            log.append(Entry::PutPending {
                group: group.into(),
                producer_id: pid,
                pending: pending(pid * 10),
            })
            .await
            .unwrap();
        }
        // Producer 1 commits in g, aborts in h; producer 2's stay pending.
        log.append(Entry::ResolvePending {
            group: "g".into(),
            producer_id: 1,
            commit: Some(pending(10).offsets),
        })
        .await
        .unwrap();
        log.append(Entry::ResolvePending {
            group: "h".into(),
            producer_id: 1,
            commit: None,
        })
        .await
        .unwrap();
        drop(log);
        let check = |log: &OffsetLog| {
            let s = log.snapshot();
            assert_eq!(s["g"][&("t".to_string(), 0)].offset, 10);
            assert!(!s.contains_key("h"));
            let p = log.pending();
            assert_eq!(p.len(), 1);
            assert_eq!(p[&("g".to_string(), 2)], pending(20));
        };
        let log = OffsetLog::open(dir.path()).unwrap();
        check(&log);
        // Compaction rewrites pending offsets too.
        let mut state = log.state.lock().unwrap().clone();
        drop(log);
        let mut w = Writer {
            dir: dir.path().to_path_buf(),
            path: dir.path().join(FILE),
            file: OpenOptions::new()
                .append(true)
                .open(dir.path().join(FILE))
                .unwrap(),
            len: COMPACT_MIN_BYTES,
            state: Arc::new(Mutex::new(std::mem::take(&mut state))),
        };
        w.maybe_compact().unwrap();
        drop(w);
        check(&OffsetLog::open(dir.path()).unwrap());
    }

    #[tokio::test]
    async fn concurrent_commits_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(OffsetLog::open(dir.path()).unwrap());
        let mut tasks = Vec::new();
        for p in 0..50 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append(commit("g", "t", p, p as i64)).await.unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(log.snapshot()["g"].len(), 50);
    }

    #[tokio::test]
    async fn torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let log = OffsetLog::open(dir.path()).unwrap();
        log.append(commit("g", "t", 0, 5)).await.unwrap();
        drop(log);
        // A crash mid-append: half of a second record, and a record with a bad checksum.
        let path = dir.path().join(FILE);
        let mut bytes = fs::read(&path).unwrap();
        let good_len = bytes.len();
        let mut rec = Vec::new();
        encode(&commit("g", "t", 0, 9), &mut rec);
        bytes.extend_from_slice(&rec[..rec.len() / 2]);
        fs::write(&path, &bytes).unwrap();
        let log = OffsetLog::open(dir.path()).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len() as usize, good_len);
        assert_eq!(log.snapshot()["g"][&("t".to_string(), 0)].offset, 5);
        log.append(commit("g", "t", 0, 6)).await.unwrap();
        drop(log);

        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let log = OffsetLog::open(dir.path()).unwrap();
        assert_eq!(log.snapshot()["g"][&("t".to_string(), 0)].offset, 5);
    }

    #[tokio::test]
    async fn compaction_keeps_live_offsets_and_leftover_tmp_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let log = OffsetLog::open(dir.path()).unwrap();
        // ~17 MiB of overwrites of the same few partitions triggers a compaction.
        let big = "x".repeat(60_000);
        for i in 0..300 {
            let mut o = off(i);
            o.metadata = big.clone();
            log.append(Entry::Commit {
                group: "g".into(),
                offsets: vec![("t".into(), (i % 3) as i32, o)],
            })
            .await
            .unwrap();
        }
        let size = fs::metadata(dir.path().join(FILE)).unwrap().len();
        assert!(
            size < COMPACT_MIN_BYTES,
            "log was not compacted: {size} bytes"
        );
        drop(log);
        fs::write(dir.path().join(format!("{FILE}.tmp")), b"partial").unwrap();
        let log = OffsetLog::open(dir.path()).unwrap();
        let s = log.snapshot();
        assert_eq!(s["g"].len(), 3);
        assert_eq!(s["g"][&("t".to_string(), 2)].offset, 299);
        assert!(!dir.path().join(format!("{FILE}.tmp")).exists());
    }
}
