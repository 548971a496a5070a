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
//! Slots: a broker coordinates the transactional ids of the transaction slots it holds
//! ([`crate::cluster::slots`]); others answer NOT_COORDINATOR (COORDINATOR_LOAD_IN_PROGRESS
//! while the slot loads). Every record write is fenced by the slot's claim.
//!
//! Offsets: TxnOffsetCommit goes to the group coordinator, which keeps them pending; completing
//! a transaction tells the coordinator of every group slot in it (the transaction's marker
//! for that slot), which commits or drops them.
//!
//! Fencing: InitProducerId for an existing transactional id bumps the epoch (aborting an open
//! transaction with the new epoch), so the previous incarnation's requests fail with
//! PRODUCER_FENCED and its data batches with INVALID_PRODUCER_EPOCH in the partitions.
//! Requests for one transactional id are serialized by a per-id async lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;

use kafka_protocol::ResponseError;

use super::markers;
use crate::broker::{now_ms, Broker, Located};
use crate::cluster::slots::{NotServed, SlotTable};
use crate::cluster::{
    BrokerRegistration, CoordinatorKind, MetadataError, SlotClaim, SlotCounts, TxnRecord, TxnState,
};

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
    #[error("not the coordinator of this transactional id")]
    NotCoordinator,
    #[error("the coordinator is loading its transactions")]
    CoordinatorLoadInProgress,
    #[error("coordinator store failure: {0}")]
    Store(String),
}

impl From<MetadataError> for TxnError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::Fenced(_) => TxnError::NotCoordinator,
            e => TxnError::Store(e.to_string()),
        }
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
            TxnError::NotCoordinator => E::NotCoordinator,
            TxnError::CoordinatorLoadInProgress => E::CoordinatorLoadInProgress,
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
    /// The transaction slots this broker serves.
    slots: SlotTable,
    /// Cluster mode: a partition leader may not coordinate its producers' transactions.
    cluster: bool,
    /// Connections to other brokers for markers.
    peers: markers::Peers,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TxnCoordinator {
    /// A coordinator serving no slot yet.
    pub fn new(slots: SlotCounts, cluster: bool) -> TxnCoordinator {
        TxnCoordinator {
            records: Mutex::new(HashMap::new()),
            by_producer: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            slots: SlotTable::new(CoordinatorKind::Txn, slots.txn),
            cluster,
            peers: markers::Peers::default(),
        }
    }

    /// The slots served (or loading) and their epochs.
    pub fn served_slots(&self) -> Vec<(u32, i64)> {
        self.slots.served()
    }

    /// The claim under which this broker coordinates `id` now, or why it does not.
    pub fn check_coordinator(&self, broker: &Broker, id: &str) -> Result<SlotClaim> {
        if !broker.is_live() {
            return Err(TxnError::NotCoordinator);
        }
        self.slots.check(id).map_err(|e| match e {
            NotServed::NotCoordinator => TxnError::NotCoordinator,
            NotServed::Loading => TxnError::CoordinatorLoadInProgress,
        })
    }

    /// Starts serving a claimed slot: loads its transactional ids (answering
    /// COORDINATOR_LOAD_IN_PROGRESS meanwhile). Transactions left prepared are completed by
    /// the next [`tick`](Self::tick).
    pub async fn load_slot(&self, broker: &Broker, claim: SlotClaim) -> Result<()> {
        self.slots.begin_load(&claim);
        let records = match broker.store().load_transactions(claim).await {
            Ok(r) => r,
            Err(e) => {
                self.slots.remove(claim.slot);
                return Err(e.into());
            }
        };
        {
            let mut by_producer = lock(&self.by_producer);
            let mut all = lock(&self.records);
            for (id, r) in records {
                by_producer.insert(r.producer_id, id.clone());
                all.insert(id, r);
            }
        }
        if !self.slots.finish_load(&claim) {
            self.forget_slot(claim.slot);
        }
        Ok(())
    }

    /// Stops serving a slot: its records leave memory (the next holder loads them).
    pub fn unload_slot(&self, slot: u32) {
        if self.slots.remove(slot).is_some() {
            self.forget_slot(slot);
        }
    }

    fn forget_slot(&self, slot: u32) {
        let in_slot = |id: &str| self.slots.slot_of(id) == slot;
        let gone: Vec<TxnRecord> = {
            let mut all = lock(&self.records);
            let ids: Vec<String> = all.keys().filter(|id| in_slot(id)).cloned().collect();
            ids.iter().filter_map(|id| all.remove(id)).collect()
        };
        let mut by_producer = lock(&self.by_producer);
        for r in gone {
            if by_producer.get(&r.producer_id) == Some(&r.transactional_id) {
                by_producer.remove(&r.producer_id);
            }
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

    /// Persists then publishes a record (fenced by the slot's claim).
    async fn save(&self, broker: &Broker, mut record: TxnRecord) -> Result<()> {
        let claim = self.check_coordinator(broker, &record.transactional_id)?;
        record.last_update_ms = now_ms();
        broker
            .store()
            .put_transaction(claim, record.clone())
            .await?;
        if !self.slots.is_current(&claim) {
            return Err(TxnError::NotCoordinator);
        }
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
        self.check_coordinator(broker, id)?;
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
        self.check_coordinator(broker, id)?;
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

    /// TxnOffsetCommit's check where this broker also coordinates the transactional id: the
    /// producer must be current and the group added to its open transaction. Where another
    /// broker coordinates it (cluster mode), the group coordinator takes the offsets as Kafka
    /// does before KIP-890's verification: the marker decides whether they count.
    pub fn check_offset_commit(
        &self,
        broker: &Broker,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<()> {
        match self.check_coordinator(broker, id) {
            Ok(_) => {}
            Err(TxnError::NotCoordinator) if self.cluster && broker.is_live() => return Ok(()),
            Err(e) => return Err(e),
        }
        let record = self.get(id).ok_or(TxnError::InvalidProducerIdMapping)?;
        Self::check(&record, producer_id, epoch)?;
        if record.state != TxnState::Ongoing || !record.groups.contains(group) {
            return Err(TxnError::InvalidTxnState);
        }
        Ok(())
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
        self.check_coordinator(broker, id)?;
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

    /// Writes the markers of a prepared transaction (into every partition, and to the
    /// coordinator of every group slot with its offsets), then records the completion. Any
    /// marker that cannot be written yet leaves the transaction prepared: [`tick`](Self::tick)
    /// tries again.
    async fn complete(&self, broker: &Broker, mut record: TxnRecord) -> Result<()> {
        let commit = match record.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return Ok(()),
        };
        let claim = self.check_coordinator(broker, &record.transactional_id)?;
        let (pid, epoch) = (record.producer_id, record.producer_epoch);
        let not_yet = |what: String| {
            tracing::warn!(txn = %record.transactional_id, "transaction marker not written yet: {what}");
            TxnError::Store(what)
        };
        // Where each marker goes: partitions hosted here, and per other broker its partitions
        // and group slots.
        let mut here = Vec::new();
        let mut remote: BTreeMap<i32, (BrokerRegistration, BTreeMap<String, Vec<i32>>)> =
            BTreeMap::new();
        for (topic, p) in &record.partitions {
            match broker.locate(topic, *p) {
                Located::Here(_) => here.push((topic.clone(), *p)),
                Located::Elsewhere {
                    leader: Some(l), ..
                } => {
                    let entry = remote
                        .entry(l.node_id)
                        .or_insert_with(|| (l, BTreeMap::new()));
                    entry.1.entry(topic.clone()).or_default().push(*p);
                }
                Located::Elsewhere { leader: None, .. } => {
                    return Err(not_yet(format!("{topic}-{p} has no live leader")))
                }
                // Deleted meanwhile: nothing to mark.
                Located::Unknown => {}
            }
        }
        let slots: BTreeSet<u32> = record
            .groups
            .iter()
            .map(|g| broker.groups.slot_of(g))
            .collect();
        let holders = broker.store().slot_holders(CoordinatorKind::Group);
        let live = broker.live_brokers();
        let mut local_slots = Vec::new();
        for slot in slots {
            let holder = holders.get(&slot).map(|h| h.node_id);
            match holder {
                Some(n) if n == broker.node_id() => local_slots.push(slot),
                Some(n) => {
                    let Some(l) = live.iter().find(|b| b.node_id == n) else {
                        return Err(not_yet(format!(
                            "group slot {slot}'s coordinator {n} is gone"
                        )));
                    };
                    let entry = remote
                        .entry(n)
                        .or_insert_with(|| (l.clone(), BTreeMap::new()));
                    entry
                        .1
                        .entry(markers::GROUP_SLOTS_TOPIC.to_string())
                        .or_default()
                        .push(slot as i32);
                }
                None => return Err(not_yet(format!("group slot {slot} has no coordinator"))),
            }
        }
        let codes = markers::write_local(broker, pid, epoch, commit, &here).await;
        for ((topic, p), code) in here.iter().zip(codes) {
            if code != 0 {
                return Err(not_yet(format!(
                    "{topic}-{p}: {}",
                    crate::metrics::error_name(code)
                )));
            }
        }
        for slot in local_slots {
            broker
                .groups
                .complete_transaction(slot, pid, commit)
                .await
                .map_err(|e| not_yet(format!("group slot {slot}: {e}")))?;
        }
        let coordinator_epoch = i32::try_from(claim.epoch).unwrap_or(i32::MAX);
        let sends = remote.values().map(|(to, topics)| {
            let topics: Vec<(String, Vec<i32>)> = topics
                .iter()
                .map(|(t, ps)| (t.clone(), ps.clone()))
                .collect();
            async move {
                let r = self
                    .peers
                    .send_markers(to, pid, epoch, commit, coordinator_epoch, &topics)
                    .await;
                (to.node_id, r)
            }
        });
        for (node, r) in futures::future::join_all(sends).await {
            let answers = r.map_err(|e| not_yet(format!("broker {node}: {e:#}")))?;
            for ((topic, p), code) in answers {
                // A partition deleted meanwhile needs no marker.
                if code != 0 && code != ResponseError::UnknownTopicOrPartition.code() {
                    return Err(not_yet(format!(
                        "{topic}-{p} at broker {node}: {}",
                        crate::metrics::error_name(code)
                    )));
                }
            }
        }
        record.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        record.partitions.clear();
        record.groups.clear();
        self.save(broker, record).await
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
            // Cluster mode: the producer's coordinator may be another broker. Without KIP-890's
            // verification request the batch is taken, as Kafka before 3.6 does; the
            // coordinator's marker ends the transaction in this partition.
            return if self.cluster {
                Ok(())
            } else {
                Err(E::InvalidTxnState)
            };
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
            let Ok(claim) = self.check_coordinator(broker, &id) else {
                continue;
            };
            if let Err(e) = broker.store().delete_transaction(claim, &id).await {
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
