//! The embedded metadata store: one file in the data dir.
//!
//! On-disk format: `<data_dir>/meta/metadata.json` holds one line `crc32c:<8 hex digits>` followed
//! by a JSON document `{"version":1,"cluster_id":…,"topics":{name: TopicRecord},"partitions":
//! {name: {partition: {"state": PartitionState, "revision": n}}}, …}` (a partition appears
//! only once its state changed); the checksum
//! covers the JSON bytes. Every change rewrites the whole file: write `metadata.json.tmp`,
//! `fsync` it, rename it over `metadata.json`, `fsync` the directory. A crash therefore leaves
//! either the old or the new file, never a torn one; a leftover `.tmp` is removed at open. A file
//! whose checksum does not match is refused (the broker will not start on corrupt metadata).
//!
//! Metadata is small (topics and configs), so rewriting it whole is cheap. Consumer-group
//! offsets change often and live in their own append-only log (`offset_log`).
//! Coordinator slots: the one broker claims every slot (epoch = its broker epoch); the slot
//! counts only decide how ids are grouped, so they may change between starts.
//! Writers are serialized by a mutex; readers see the last committed state.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::offset_log::{Entry, OffsetLog};
use super::slots::slot_of;
use super::{
    BrokerRegistration, CommittedOffset, ControllerClaim, CoordinatorKind, MetadataError,
    MetadataStore, PartitionState, PendingTxnOffsets, Result, SlotClaim, SlotCounts, SlotHolder,
    SlotOffsets, StoredState, TopicRecord, TxnRecord,
};

const FILE: &str = "metadata.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Document {
    version: u32,
    cluster_id: String,
    topics: BTreeMap<String, TopicRecord>,
    /// The first producer id not yet handed out in a block.
    #[serde(default)]
    next_producer_id: i64,
    /// Dynamic broker configs by resource name (`""` = cluster-wide defaults, else a node id).
    #[serde(default)]
    broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The last broker epoch handed out (one per start of the broker).
    #[serde(default)]
    broker_epoch: i64,
    /// Partition states ever changed, by topic and partition (see `PartitionState`).
    #[serde(default)]
    partitions: BTreeMap<String, BTreeMap<i32, StoredState>>,
    /// The last revision given to a partition state write.
    #[serde(default)]
    state_revision: i64,
}

pub struct LocalStore {
    dir: PathBuf,
    offsets: OffsetLog,
    state: std::sync::Mutex<Document>,
    /// Serializes writers across awaits (the file write runs on a blocking thread).
    write_lock: tokio::sync::Mutex<()>,
    /// This broker, once registered (the only one an embedded store knows).
    registered: std::sync::Mutex<Option<BrokerRegistration>>,
    /// Never ticks: nobody else changes this store.
    changes: tokio::sync::watch::Sender<u64>,
    slots: SlotCounts,
    /// The slots this broker claimed.
    claims: std::sync::Mutex<BTreeMap<(CoordinatorKind, u32), i64>>,
}

impl LocalStore {
    /// Writes a partition's state if the stored one is still at `expected` (0: never written,
    /// and the topic must still be `state.topic_id`).
    async fn write_state(
        &self,
        topic: &str,
        partition: i32,
        expected: i64,
        state: PartitionState,
    ) -> Result<i64> {
        let topic = topic.to_string();
        self.modify(move |doc| {
            if doc
                .topics
                .get(&topic)
                .is_none_or(|t| t.id != state.topic_id)
            {
                return Err(MetadataError::UnknownTopic(topic));
            }
            let states = doc.partitions.entry(topic.clone()).or_default();
            if states.get(&partition).map_or(0, |s| s.revision) != expected {
                return Err(MetadataError::Conflict(format!("{topic}-{partition}")));
            }
            doc.state_revision += 1;
            let revision = doc.state_revision;
            states.insert(partition, StoredState { state, revision });
            Ok(revision)
        })
        .await
    }

    /// The store's file, `<data_dir>/meta/metadata.json`.
    pub fn file_path(data_dir: &Path) -> PathBuf {
        data_dir.join("meta").join(FILE)
    }

    /// Opens the store under `<data_dir>/meta`, creating it (with a new cluster id) if absent.
    pub fn open(data_dir: &Path) -> Result<LocalStore> {
        let dir = data_dir.join("meta");
        if !dir.exists() {
            fs::create_dir_all(&dir)?;
            fs::File::open(data_dir)?.sync_all()?;
        }
        let _ = fs::remove_file(dir.join(format!("{FILE}.tmp")));
        let path = dir.join(FILE);
        let doc = match fs::read(&path) {
            Ok(bytes) => decode(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = Document {
                    version: 1,
                    cluster_id: new_cluster_id(),
                    topics: BTreeMap::new(),
                    next_producer_id: 0,
                    broker_configs: BTreeMap::new(),
                    broker_epoch: 0,
                    partitions: BTreeMap::new(),
                    state_revision: 0,
                };
                write_atomically(&dir, &doc)?;
                doc
            }
            Err(e) => return Err(e.into()),
        };
        let offsets = OffsetLog::open(&dir)?;
        Ok(LocalStore {
            offsets,
            dir,
            state: std::sync::Mutex::new(doc),
            write_lock: tokio::sync::Mutex::new(()),
            registered: std::sync::Mutex::new(None),
            changes: tokio::sync::watch::channel(0).0,
            slots: SlotCounts { group: 50, txn: 50 },
            claims: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// Sets the coordinator slot counts (`offsets.topic.num.partitions`,
    /// `transaction.state.log.num.partitions`; 50 each by default).
    pub fn with_slot_counts(mut self, slots: SlotCounts) -> LocalStore {
        self.slots = slots;
        self
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, BTreeMap<(CoordinatorKind, u32), i64>> {
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Fenced` unless `claim` is held (a coordinator bug would show here, not corrupt state).
    fn check_claim(&self, claim: &SlotClaim) -> Result<()> {
        match self.claims().get(&(claim.kind, claim.slot)) {
            Some(e) if *e == claim.epoch => Ok(()),
            _ => Err(MetadataError::Fenced(format!(
                "{} {}",
                claim.kind.name(),
                claim.slot
            ))),
        }
    }

    fn snapshot(&self) -> Document {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies `change` to a copy of the document, persists it, then publishes it.
    async fn modify<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Document) -> Result<T> + Send,
    ) -> Result<T> {
        let _guard = self.write_lock.lock().await;
        let mut doc = self.snapshot();
        let out = change(&mut doc)?;
        let dir = self.dir.clone();
        let to_write = doc.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &to_write))
            .await
            .map_err(|e| MetadataError::Io(std::io::Error::other(e)))??;
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = doc;
        Ok(out)
    }
}

pub(crate) fn new_cluster_id() -> String {
    // Kafka cluster ids are 16 random bytes in URL-safe base64 without padding (22 chars).
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let id = uuid::Uuid::new_v4();
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

fn encode(doc: &Document) -> Result<Vec<u8>> {
    let json = serde_json::to_vec_pretty(doc)
        .map_err(|e| MetadataError::Corrupt(format!("cannot encode: {e}")))?;
    let mut out = format!("crc32c:{:08x}\n", crc32c::crc32c(&json)).into_bytes();
    out.extend_from_slice(&json);
    Ok(out)
}

fn decode(bytes: &[u8]) -> Result<Document> {
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| MetadataError::Corrupt("missing checksum line".into()))?;
    let header = std::str::from_utf8(&bytes[..nl])
        .map_err(|_| MetadataError::Corrupt("bad checksum line".into()))?;
    let want = header
        .strip_prefix("crc32c:")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| MetadataError::Corrupt("bad checksum line".into()))?;
    let json = &bytes[nl + 1..];
    if crc32c::crc32c(json) != want {
        return Err(MetadataError::Corrupt("checksum mismatch".into()));
    }
    let doc: Document =
        serde_json::from_slice(json).map_err(|e| MetadataError::Corrupt(e.to_string()))?;
    if doc.version != 1 {
        return Err(MetadataError::Corrupt(format!(
            "unsupported version {}",
            doc.version
        )));
    }
    Ok(doc)
}

fn write_atomically(dir: &Path, doc: &Document) -> Result<()> {
    let bytes = encode(doc)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(FILE))?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[async_trait]
impl MetadataStore for LocalStore {
    fn cluster_id(&self) -> String {
        self.snapshot().cluster_id
    }

    fn is_cluster(&self) -> bool {
        false
    }

    async fn register_broker(&self, mut registration: BrokerRegistration) -> Result<i64> {
        let epoch = self
            .modify(|doc| {
                doc.broker_epoch += 1;
                Ok(doc.broker_epoch)
            })
            .await?;
        registration.epoch = epoch;
        *self.registered.lock().unwrap_or_else(|p| p.into_inner()) = Some(registration);
        Ok(epoch)
    }

    fn live_brokers(&self) -> Vec<BrokerRegistration> {
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn is_live(&self) -> bool {
        true
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    async fn topics(&self) -> Result<BTreeMap<String, TopicRecord>> {
        Ok(self.snapshot().topics)
    }

    async fn create_topic(&self, topic: TopicRecord) -> Result<()> {
        self.modify(move |doc| {
            if doc.topics.contains_key(&topic.name) {
                return Err(MetadataError::TopicAlreadyExists(topic.name));
            }
            doc.topics.insert(topic.name.clone(), topic);
            Ok(())
        })
        .await
    }

    async fn update_topic(&self, expected: &TopicRecord, topic: TopicRecord) -> Result<()> {
        let expected = expected.clone();
        self.modify(move |doc| match doc.topics.get_mut(&topic.name) {
            Some(t) if *t == expected => {
                *t = topic;
                Ok(())
            }
            Some(_) => Err(MetadataError::Conflict(topic.name)),
            None => Err(MetadataError::UnknownTopic(topic.name)),
        })
        .await
    }

    fn partition_state(&self, topic: &str, partition: i32) -> Option<StoredState> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .partitions
            .get(topic)?
            .get(&partition)
            .cloned()
    }

    fn controller(&self) -> Option<i32> {
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.node_id)
    }

    /// The one broker is the controller from its registration on (epoch: its broker epoch).
    async fn campaign_controller(&self) -> Result<ControllerClaim> {
        loop {
            let epoch = self
                .registered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|r| r.epoch);
            if let Some(epoch) = epoch {
                return Ok(ControllerClaim {
                    epoch,
                    key: String::new(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    fn holds_controller(&self, claim: &ControllerClaim) -> bool {
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|r| r.epoch == claim.epoch)
    }

    async fn put_partition_state(
        &self,
        claim: &ControllerClaim,
        topic: &str,
        partition: i32,
        expected: i64,
        replaced: Option<i32>,
        state: PartitionState,
    ) -> Result<i64> {
        if !self.holds_controller(claim) {
            return Err(MetadataError::NotController);
        }
        // The one registered broker is the only live one.
        let me = self.controller();
        if (state.leader >= 0 && Some(state.leader) != me)
            || replaced.is_some_and(|r| Some(r) == me)
        {
            return Err(MetadataError::Conflict(format!("{topic}-{partition}")));
        }
        self.write_state(topic, partition, expected, state).await
    }

    async fn deregister(&self) -> Result<()> {
        Ok(())
    }

    async fn expire_registration(&self, _node_id: i32, _epoch: i64) -> Result<bool> {
        Ok(false)
    }

    async fn alter_isr(
        &self,
        topic: &str,
        partition: i32,
        expected: i64,
        state: PartitionState,
    ) -> Result<i64> {
        // The one broker is the only possible leader.
        if Some(state.leader) != self.controller() {
            return Err(MetadataError::Conflict(format!("{topic}-{partition}")));
        }
        self.write_state(topic, partition, expected, state).await
    }

    async fn change_partition_state(
        &self,
        topic: &str,
        partition: i32,
        expected: i64,
        state: PartitionState,
    ) -> Result<i64> {
        self.alter_isr(topic, partition, expected, state).await
    }

    fn coordinator_slots(&self) -> SlotCounts {
        self.slots
    }

    async fn claim_slot(&self, kind: CoordinatorKind, slot: u32) -> Result<Option<SlotClaim>> {
        let epoch = self
            .registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.epoch)
            .ok_or_else(|| MetadataError::Unavailable("not registered".into()))?;
        let mut claims = self.claims();
        if claims.contains_key(&(kind, slot)) {
            return Ok(None);
        }
        claims.insert((kind, slot), epoch);
        Ok(Some(SlotClaim { kind, slot, epoch }))
    }

    async fn release_slot(&self, claim: SlotClaim) -> Result<()> {
        let mut claims = self.claims();
        if claims.get(&(claim.kind, claim.slot)) == Some(&claim.epoch) {
            claims.remove(&(claim.kind, claim.slot));
        }
        Ok(())
    }

    fn slot_holders(&self, kind: CoordinatorKind) -> BTreeMap<u32, SlotHolder> {
        let node_id = self
            .registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(-1, |r| r.node_id);
        self.claims()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, slot), epoch)| {
                (
                    *slot,
                    SlotHolder {
                        node_id,
                        epoch: *epoch,
                    },
                )
            })
            .collect()
    }

    async fn load_transactions(&self, claim: SlotClaim) -> Result<BTreeMap<String, TxnRecord>> {
        self.check_claim(&claim)?;
        let mut all = self.offsets.transactions();
        all.retain(|id, _| slot_of(id, self.slots.txn) == claim.slot);
        Ok(all)
    }

    async fn put_transaction(&self, claim: SlotClaim, record: TxnRecord) -> Result<()> {
        self.check_claim(&claim)?;
        Ok(self.offsets.append(Entry::PutTxn { record }).await?)
    }

    async fn delete_transaction(&self, claim: SlotClaim, transactional_id: &str) -> Result<()> {
        self.check_claim(&claim)?;
        let transactional_id = transactional_id.to_string();
        Ok(self
            .offsets
            .append(Entry::DeleteTxn { transactional_id })
            .await?)
    }

    async fn broker_configs(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        Ok(self.snapshot().broker_configs)
    }

    async fn set_broker_configs(
        &self,
        resource: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<()> {
        let resource = resource.to_string();
        self.modify(move |doc| {
            if configs.is_empty() {
                doc.broker_configs.remove(&resource);
            } else {
                doc.broker_configs.insert(resource, configs);
            }
            Ok(())
        })
        .await
    }

    async fn allocate_producer_ids(&self, count: i64) -> Result<i64> {
        self.modify(move |doc| {
            let start = doc.next_producer_id;
            doc.next_producer_id = start.saturating_add(count);
            Ok(start)
        })
        .await
    }

    async fn load_offsets(&self, claim: SlotClaim) -> Result<SlotOffsets> {
        self.check_claim(&claim)?;
        let n = self.slots.group;
        let mut committed = self.offsets.snapshot();
        committed.retain(|g, _| slot_of(g, n) == claim.slot);
        let mut pending = self.offsets.pending();
        pending.retain(|(g, _), _| slot_of(g, n) == claim.slot);
        Ok(SlotOffsets { committed, pending })
    }

    async fn commit_offsets(
        &self,
        claim: SlotClaim,
        group: &str,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<()> {
        self.check_claim(&claim)?;
        Ok(self
            .offsets
            .append(Entry::Commit {
                group: group.to_string(),
                offsets,
            })
            .await?)
    }

    async fn delete_offsets(
        &self,
        claim: SlotClaim,
        group: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<()> {
        self.check_claim(&claim)?;
        Ok(self
            .offsets
            .append(Entry::Delete {
                group: group.to_string(),
                partitions,
            })
            .await?)
    }

    async fn put_pending_offsets(
        &self,
        claim: SlotClaim,
        group: &str,
        producer_id: i64,
        pending: PendingTxnOffsets,
    ) -> Result<()> {
        self.check_claim(&claim)?;
        Ok(self
            .offsets
            .append(Entry::PutPending {
                group: group.to_string(),
                producer_id,
                pending,
            })
            .await?)
    }

    async fn resolve_pending_offsets(
        &self,
        claim: SlotClaim,
        group: &str,
        producer_id: i64,
        commit: Option<Vec<(String, i32, CommittedOffset)>>,
    ) -> Result<()> {
        self.check_claim(&claim)?;
        Ok(self
            .offsets
            .append(Entry::ResolvePending {
                group: group.to_string(),
                producer_id,
                commit,
            })
            .await?)
    }

    async fn delete_topic(&self, name: &str, id: uuid::Uuid) -> Result<TopicRecord> {
        let name = name.to_string();
        self.modify(move |doc| match doc.topics.get(&name) {
            Some(t) if t.id == id => {
                doc.partitions.remove(&name);
                doc.topics
                    .remove(&name)
                    .ok_or(MetadataError::UnknownTopic(name))
            }
            _ => Err(MetadataError::UnknownTopic(name)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicRecord {
        TopicRecord {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            assignments: vec![vec![0]; 3],
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
        }
    }

    #[tokio::test]
    async fn survives_reopen_and_keeps_cluster_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let id = store.cluster_id();
        assert_eq!(id.len(), 22);
        let t = topic("a");
        store.create_topic(t.clone()).await.unwrap();
        let b = topic("b");
        store.create_topic(b.clone()).await.unwrap();
        // Another topic's id (the name re-created meanwhile) deletes nothing.
        assert!(matches!(
            store.delete_topic("b", uuid::Uuid::new_v4()).await,
            Err(MetadataError::UnknownTopic(_))
        ));
        store.delete_topic("b", b.id).await.unwrap();
        drop(store);
        let store = LocalStore::open(dir.path()).unwrap();
        assert_eq!(store.cluster_id(), id);
        let topics = store.topics().await.unwrap();
        assert_eq!(topics.len(), 1);
        assert_eq!(topics["a"], t);
    }

    #[tokio::test]
    async fn duplicate_and_missing_topics_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.create_topic(topic("a")).await.unwrap();
        assert!(matches!(
            store.create_topic(topic("a")).await,
            Err(MetadataError::TopicAlreadyExists(_))
        ));
        assert!(matches!(
            store.delete_topic("zz", uuid::Uuid::new_v4()).await,
            Err(MetadataError::UnknownTopic(_))
        ));
    }

    #[tokio::test]
    async fn crash_before_rename_keeps_old_state() {
        // A crash after writing the temp file but before the rename leaves the old file and a
        // stray .tmp: reopening must ignore (and remove) the .tmp and see the old state.
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.create_topic(topic("a")).await.unwrap();
        drop(store);
        let tmp = dir.path().join("meta").join("metadata.json.tmp");
        std::fs::write(&tmp, b"crc32c:00000000\n{\"torn").unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        assert!(!tmp.exists());
        assert_eq!(store.topics().await.unwrap().len(), 1);
    }

    #[test]
    fn corrupt_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(LocalStore::open(dir.path()).unwrap());
        let path = dir.path().join("meta").join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            LocalStore::open(dir.path()),
            Err(MetadataError::Corrupt(_))
        ));
    }
}
