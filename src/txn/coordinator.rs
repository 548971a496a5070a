//! The transaction coordinator (KIP-98): transactional ids, their producer id and epoch, the
//! partitions and offsets of the open transaction, and commit/abort by writing markers.
//!
//! State machine per transactional id: Empty → Ongoing (first AddPartitionsToTxn /
//! AddOffsetsToTxn) → PrepareCommit | PrepareAbort (EndTxn, or a timeout / a new producer
//! incarnation for abort) → CompleteCommit | CompleteAbort → Ongoing again with the next
//! transaction. Every transition is durable in the metadata store before it is acted on or
//! acknowledged. Completing writes a COMMIT or ABORT control batch to every partition of the
//! transaction, then (on commit) makes its offsets visible, then records Complete*. A crash
//! between Prepare* and Complete* is finished at the next start (`recover`), so the decision,
//! once durable, always reaches every partition.
//!
//! Fencing: InitProducerId for an existing transactional id bumps the epoch (aborting an open
//! transaction with the new epoch), so the previous incarnation's requests fail with
//! PRODUCER_FENCED and its data batches with INVALID_PRODUCER_EPOCH in the partitions.
//! Requests for one transactional id are serialized by a per-id async lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;

use crate::broker::{now_ms, Broker};
use crate::cluster::{CommittedOffset, MetadataError, TxnRecord, TxnState};

/// Kafka's `transaction.max.timeout.ms` default.
pub const MAX_TIMEOUT_MS: i32 = 900_000;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum TxnError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("transaction timeout is larger than transaction.max.timeout.ms or not positive")]
    InvalidTransactionTimeout,
    #[error("the producer was fenced by a newer instance")]
    ProducerFenced,
    #[error("the producer id does not belong to this transactional id")]
    InvalidProducerIdMapping,
    #[error("the transaction is being completed; retry")]
    ConcurrentTransactions,
    #[error("the request is not valid in the transaction's current state")]
    InvalidTxnState,
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("coordinator store failure: {0}")]
    Store(String),
}

impl From<MetadataError> for TxnError {
    fn from(e: MetadataError) -> Self {
        TxnError::Store(e.to_string())
    }
}

impl TxnError {
    pub fn error_code(&self) -> kafka_protocol::ResponseError {
        use kafka_protocol::ResponseError as E;
        match self {
            TxnError::InvalidRequest(_) => E::InvalidRequest,
            TxnError::InvalidTransactionTimeout => E::InvalidTransactionTimeout,
            TxnError::ProducerFenced => E::ProducerFenced,
            TxnError::InvalidProducerIdMapping => E::InvalidProducerIdMapping,
            TxnError::ConcurrentTransactions => E::ConcurrentTransactions,
            TxnError::InvalidTxnState => E::InvalidTxnState,
            TxnError::UnknownTopicOrPartition => E::UnknownTopicOrPartition,
            TxnError::Store(_) => E::CoordinatorNotAvailable,
        }
    }

    pub fn code(&self) -> i16 {
        self.error_code().code()
    }

    /// The code for a request of `version`, where `fenced_since` is the first version that
    /// knows PRODUCER_FENCED: older clients get INVALID_PRODUCER_EPOCH instead (KIP-588).
    pub fn code_for(&self, version: i16, fenced_since: i16) -> i16 {
        match self {
            TxnError::ProducerFenced if version < fenced_since => {
                kafka_protocol::ResponseError::InvalidProducerEpoch.code()
            }
            e => e.code(),
        }
    }
}

pub type Result<T> = std::result::Result<T, TxnError>;

pub struct TxnCoordinator {
    records: Mutex<HashMap<String, TxnRecord>>,
    /// producer id → transactional id, for produce-time checks.
    by_producer: Mutex<HashMap<i64, String>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TxnCoordinator {
    pub fn new(records: BTreeMap<String, TxnRecord>) -> TxnCoordinator {
        let by_producer = records
            .values()
            .map(|r| (r.producer_id, r.transactional_id.clone()))
            .collect();
        TxnCoordinator {
            records: Mutex::new(records.into_iter().collect()),
            by_producer: Mutex::new(by_producer),
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn id_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks).entry(id.to_string()).or_default().clone()
    }

    pub fn get(&self, id: &str) -> Option<TxnRecord> {
        lock(&self.records).get(id).cloned()
    }

    pub fn all(&self) -> Vec<TxnRecord> {
        let mut v: Vec<TxnRecord> = lock(&self.records).values().cloned().collect();
        v.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        v
    }

    /// Persists then publishes a record.
    async fn save(&self, broker: &Broker, mut record: TxnRecord) -> Result<()> {
        record.last_update_ms = now_ms();
        broker.store().put_transaction(record.clone()).await?;
        lock(&self.by_producer).insert(record.producer_id, record.transactional_id.clone());
        lock(&self.records).insert(record.transactional_id.clone(), record);
        Ok(())
    }

    /// Checks the producer id and epoch of a request against the record.
    fn check(record: &TxnRecord, producer_id: i64, epoch: i16) -> Result<()> {
        if record.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch != record.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(())
    }

    /// InitProducerId for a transactional id: a new producer id, or the next epoch of the
    /// existing one (aborting its open transaction).
    pub async fn init_producer(
        &self,
        broker: &Broker,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16)> {
        if id.is_empty() {
            return Err(TxnError::InvalidRequest("empty transactional id".into()));
        }
        if timeout_ms <= 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        let id_lock = self.id_lock(id);
        let _serial = id_lock.lock().await;
        let Some(mut record) = self.get(id) else {
            let pid = broker.producer_ids.next_id().await?;
            let record = TxnRecord {
                transactional_id: id.to_string(),
                producer_id: pid,
                producer_epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: Default::default(),
                pending_offsets: vec![],
                groups: Default::default(),
                start_ms: -1,
                last_update_ms: 0,
            };
            self.save(broker, record).await?;
            return Ok((pid, 0));
        };
        if let Some((pid, epoch)) = expected {
            // KIP-360: a producer that knows its id may bump only its own current epoch.
            if pid != record.producer_id || epoch != record.producer_epoch {
                return Err(TxnError::ProducerFenced);
            }
        }
        match record.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                // The previous incarnation left a transaction open: fence it and abort.
                self.bump_epoch(broker, &mut record).await?;
                record.state = TxnState::PrepareAbort;
                self.save(broker, record.clone()).await?;
                self.complete(broker, record.clone()).await?;
                record = self.get(id).unwrap_or(record);
            }
            _ => {
                self.bump_epoch(broker, &mut record).await?;
            }
        }
        record.timeout_ms = timeout_ms;
        record.state = TxnState::Empty;
        record.partitions.clear();
        record.groups.clear();
        record.pending_offsets.clear();
        self.save(broker, record.clone()).await?;
        Ok((record.producer_id, record.producer_epoch))
    }

    async fn bump_epoch(&self, broker: &Broker, record: &mut TxnRecord) -> Result<()> {
        if record.producer_epoch >= i16::MAX - 1 {
            record.producer_id = broker.producer_ids.next_id().await?;
            record.producer_epoch = 0;
        } else {
            record.producer_epoch += 1;
        }
        Ok(())
    }

    /// Starts (or continues) the transaction and adds work to it.
    async fn add(
        &self,
        broker: &Broker,
        id: &str,
        producer_id: i64,
        epoch: i16,
        change: impl FnOnce(&mut TxnRecord),
    ) -> Result<()> {
        let id_lock = self.id_lock(id);
        let _serial = id_lock.lock().await;
        let mut record = self.get(id).ok_or(TxnError::InvalidProducerIdMapping)?;
        Self::check(&record, producer_id, epoch)?;
        match record.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {}
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                record.state = TxnState::Ongoing;
                record.start_ms = now_ms();
                record.partitions.clear();
                record.groups.clear();
                record.pending_offsets.clear();
            }
        }
        change(&mut record);
        self.save(broker, record).await
    }

    /// AddPartitionsToTxn. The caller has checked that the partitions exist.
    pub async fn add_partitions(
        &self,
        broker: &Broker,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> Result<()> {
        self.add(broker, id, producer_id, epoch, |r| {
            r.partitions.extend(partitions);
        })
        .await
    }

    /// AddOffsetsToTxn.
    pub async fn add_offsets(
        &self,
        broker: &Broker,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<()> {
        self.add(broker, id, producer_id, epoch, |r| {
            r.groups.insert(group.to_string());
        })
        .await
    }

    /// TxnOffsetCommit: offsets become visible when the transaction commits.
    pub async fn commit_offsets(
        &self,
        broker: &Broker,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<()> {
        let id_lock = self.id_lock(id);
        let _serial = id_lock.lock().await;
        let mut record = self.get(id).ok_or(TxnError::InvalidProducerIdMapping)?;
        Self::check(&record, producer_id, epoch)?;
        if record.state != TxnState::Ongoing || !record.groups.contains(group) {
            return Err(TxnError::InvalidTxnState);
        }
        for (t, p, o) in offsets {
            record
                .pending_offsets
                .retain(|(g, t2, p2, _)| !(g == group && *t2 == t && *p2 == p));
            record.pending_offsets.push((group.to_string(), t, p, o));
        }
        self.save(broker, record).await
    }

    /// EndTxn.
    pub async fn end(
        &self,
        broker: &Broker,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<()> {
        let id_lock = self.id_lock(id);
        let _serial = id_lock.lock().await;
        let mut record = self.get(id).ok_or(TxnError::InvalidProducerIdMapping)?;
        Self::check(&record, producer_id, epoch)?;
        match (record.state, commit) {
            (TxnState::Ongoing, _) => {}
            // A retry of an EndTxn that already completed.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return Ok(()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                return Err(TxnError::ConcurrentTransactions)
            }
            _ => return Err(TxnError::InvalidTxnState),
        }
        record.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        self.save(broker, record.clone()).await?;
        self.complete(broker, record).await
    }

    /// Writes the markers of a prepared transaction, applies its offsets on commit and records
    /// the completion.
    async fn complete(&self, broker: &Broker, mut record: TxnRecord) -> Result<()> {
        let commit = match record.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return Ok(()),
        };
        let now = now_ms();
        let mut written = Vec::with_capacity(record.partitions.len());
        for (topic, p) in &record.partitions {
            let Some(partition) = broker.partition(topic, *p) else {
                continue; // deleted meanwhile: nothing to mark
            };
            // The marker's write (and a roll it may cause) is file I/O: off the async workers.
            let (writer, pid, epoch) =
                (partition.clone(), record.producer_id, record.producer_epoch);
            let appended =
                tokio::task::spawn_blocking(move || writer.append_control(pid, epoch, commit, now))
                    .await
                    .map_err(|e| TxnError::Store(format!("marker task failed: {e}")))?;
            match appended {
                Ok(info) => written.push((partition, info.last_offset + 1)),
                // The partition has a newer epoch for this producer: a marker from us is stale
                // and the newer incarnation's markers govern; nothing to write.
                Err(crate::storage::StorageError::InvalidProducerEpoch { .. }) => {}
                Err(e) => {
                    tracing::error!(txn = %record.transactional_id, topic = %topic, partition = p, "cannot write transaction marker: {e}");
                    return Err(TxnError::Store(e.to_string()));
                }
            }
        }
        // Every marker must be durable before the transaction is recorded complete: after a
        // crash, a Complete* record whose marker was lost would leave the partition's last
        // stable offset stuck behind a transaction no one will ever end.
        let flushes = written.iter().map(|(p, end)| p.flush_until(*end));
        for (r, (p, _)) in futures::future::join_all(flushes)
            .await
            .into_iter()
            .zip(&written)
        {
            if let Err(e) = r {
                tracing::error!(txn = %record.transactional_id, topic = %p.topic, partition = p.index, "cannot sync transaction marker: {e}");
                return Err(TxnError::Store(e.to_string()));
            }
        }
        if commit && !record.pending_offsets.is_empty() {
            let mut by_group: BTreeMap<String, Vec<(String, i32, CommittedOffset)>> =
                BTreeMap::new();
            for (g, t, p, o) in record.pending_offsets.drain(..) {
                by_group.entry(g).or_default().push((t, p, o));
            }
            for (g, offsets) in by_group {
                broker
                    .groups
                    .commit_transactional(&g, offsets)
                    .await
                    .map_err(|e| TxnError::Store(e.to_string()))?;
            }
        }
        record.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        record.partitions.clear();
        record.groups.clear();
        record.pending_offsets.clear();
        self.save(broker, record).await
    }

    /// Whether an open transaction has offsets pending for this group partition
    /// (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT then).
    pub fn has_pending_offsets(&self, group: &str, topic: &str, partition: i32) -> bool {
        lock(&self.records).values().any(|r| {
            r.pending_offsets
                .iter()
                .any(|(g, t, p, _)| g == group && t == topic && *p == partition)
        })
    }

    /// Produce-time check: a transactional batch must belong to an open transaction of its
    /// producer that includes the partition (what KIP-890 calls verification).
    pub fn verify_partition(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> std::result::Result<(), kafka_protocol::ResponseError> {
        use kafka_protocol::ResponseError as E;
        let Some(id) = lock(&self.by_producer).get(&producer_id).cloned() else {
            return Err(E::InvalidTxnState);
        };
        let records = lock(&self.records);
        let Some(r) = records.get(&id).filter(|r| r.producer_id == producer_id) else {
            return Err(E::InvalidTxnState);
        };
        if epoch < r.producer_epoch {
            return Err(E::InvalidProducerEpoch);
        }
        if epoch == r.producer_epoch
            && r.state == TxnState::Ongoing
            && r.partitions.contains(&(topic.to_string(), partition))
        {
            Ok(())
        } else {
            Err(E::InvalidTxnState)
        }
    }

    /// Finishes transactions left prepared by a crash, and aborts open ones that timed out
    /// (bumping the epoch, which fences the producer).
    pub async fn tick(&self, broker: &Broker) {
        let now = now_ms();
        for record in self.all() {
            let id = record.transactional_id.clone();
            let due = match record.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => true,
                TxnState::Ongoing => {
                    record.start_ms >= 0 && now - record.start_ms > i64::from(record.timeout_ms)
                }
                _ => false,
            };
            if !due {
                continue;
            }
            let id_lock = self.id_lock(&id);
            let _serial = id_lock.lock().await;
            let Some(mut record) = self.get(&id) else {
                continue;
            };
            let result = match record.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => {
                    self.complete(broker, record).await
                }
                TxnState::Ongoing if now - record.start_ms > i64::from(record.timeout_ms) => {
                    tracing::info!(txn = %id, "aborting transaction after transaction.timeout.ms");
                    let bumped = self.bump_epoch(broker, &mut record).await;
                    match bumped {
                        Ok(()) => {
                            record.state = TxnState::PrepareAbort;
                            match self.save(broker, record.clone()).await {
                                Ok(()) => self.complete(broker, record).await,
                                Err(e) => Err(e),
                            }
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => Ok(()),
            };
            if let Err(e) = result {
                tracing::warn!(txn = %id, "cannot complete transaction yet: {e}");
            }
        }
    }

    /// Forgets transactional ids without an open transaction (Empty, CompleteCommit,
    /// CompleteAbort) not updated for `expiration_ms` (`transactional.id.expiration.ms`):
    /// durably deleted from the store, then from memory with their lock. Returns how many.
    pub async fn expire(&self, broker: &Broker, now: i64, expiration_ms: i64) -> usize {
        let idle = |r: &TxnRecord| {
            matches!(
                r.state,
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
            ) && now.saturating_sub(r.last_update_ms) > expiration_ms
        };
        let candidates: Vec<String> = lock(&self.records)
            .values()
            .filter(|r| idle(r))
            .map(|r| r.transactional_id.clone())
            .collect();
        let mut expired = 0;
        for id in candidates {
            let id_lock = self.id_lock(&id);
            let _serial = id_lock.lock().await;
            // Re-checked under the id's lock: a request may have used it meanwhile.
            let Some(record) = self.get(&id).filter(|r| idle(r)) else {
                continue;
            };
            if let Err(e) = broker.store().delete_transaction(&id).await {
                tracing::warn!(txn = %id, "cannot expire transactional id: {e}");
                continue;
            }
            lock(&self.records).remove(&id);
            {
                let mut by_producer = lock(&self.by_producer);
                if by_producer.get(&record.producer_id) == Some(&id) {
                    by_producer.remove(&record.producer_id);
                }
            }
            tracing::info!(txn = %id, "transactional id expired (transactional.id.expiration.ms)");
            expired += 1;
        }
        // Locks of ids that have no state and that nobody holds go too.
        let records = lock(&self.records);
        lock(&self.locks).retain(|id, l| records.contains_key(id) || Arc::strong_count(l) > 1);
        expired
    }

    /// Runs [`tick`](Self::tick) every second and [`expire`](Self::expire) every
    /// `transaction.remove.expired.transaction.cleanup.interval.ms` until shutdown.
    pub async fn run_timers(broker: Arc<Broker>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(Duration::from_millis(1000));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cleanup = tokio::time::interval(Duration::from_millis(
            broker.config.transaction_cleanup_interval_ms,
        ));
        cleanup.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => broker.txns.tick(&broker).await,
                _ = cleanup.tick() => {
                    let expiration = broker.config.transactional_id_expiration_ms;
                    broker.txns.expire(&broker, now_ms(), expiration).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
