//! Partition states and the controller election in etcd (keys in [`crate::cluster::keys`]).
//!
//! Invariants:
//! - A partition state is written only by one etcd transaction that compares the controller's
//!   election key (its create revision is the controller epoch: a deposed controller's write
//!   fails) and the state key's `mod_revision` with what the change was computed from (a
//!   state never written is compared absent, together with the topic key's create revision,
//!   so a topic deleted and re-created meanwhile gets no state of the old one).
//! - The cache of states and candidates is what the watch delivered, applied by revision: a
//!   late event never replaces a newer state, and a delete removes only what is older.
//! - The controller is the candidate with the lowest create revision under
//!   `<p>/controller/` (etcd's election API); holding that key proves nothing alone, which is
//!   why every write compares it.

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse,
};
use tracing::{info, warn};

use super::{decode, encode, unavailable, Shared};
use crate::cluster::{ControllerClaim, MetadataError, PartitionState, Result, StoredState};
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Shared {
    pub(super) fn state(&self, topic: &str, partition: i32) -> Option<StoredState> {
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)?
            .get(&partition)
            .cloned()
    }

    /// Applies a state key's put, or its delete at `revision` (see the module invariants).
    pub(super) fn apply_state(
        &self,
        topic: &str,
        partition: i32,
        put: Option<PartitionState>,
        revision: i64,
    ) {
        let mut all = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        match put {
            Some(state) => {
                let states = all.entry(topic.to_string()).or_default();
                if states.get(&partition).is_none_or(|s| s.revision < revision) {
                    states.insert(partition, StoredState { state, revision });
                }
            }
            None => {
                if let Some(states) = all.get_mut(topic) {
                    if states
                        .get(&partition)
                        .is_some_and(|s| s.revision < revision)
                    {
                        states.remove(&partition);
                    }
                    if states.is_empty() {
                        all.remove(topic);
                    }
                }
            }
        }
    }

    /// The controller: (election key, node id, epoch).
    pub(super) fn controller(&self) -> Option<(String, i32, i64)> {
        self.candidates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .min_by_key(|(_, (_, rev))| *rev)
            .map(|(key, (node, rev))| (key.clone(), *node, *rev))
    }

    pub(super) fn apply_candidate(&self, key: &str, event: EventType, kv: &KeyValue) {
        let mut candidates = self.candidates.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            EventType::Put => match candidate(kv) {
                Some(c) => {
                    candidates.insert(key.to_string(), c);
                }
                None => warn!(key, "ignoring a controller candidate that is not a node id"),
            },
            EventType::Delete => {
                if candidates
                    .get(key)
                    .is_some_and(|(_, rev)| *rev < kv.mod_revision())
                {
                    candidates.remove(key);
                }
            }
        }
    }
}

fn candidate(kv: &KeyValue) -> Option<(i32, i64)> {
    let node = kv.value_str().ok()?.parse().ok()?;
    Some((node, kv.create_revision()))
}

/// Reads every partition state; returns the revision of the read.
pub(super) async fn list_states(client: &mut Client, shared: &Shared) -> Result<i64> {
    let resp = client
        .get(
            shared.keys.partitions(),
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .map_err(unavailable)?;
    let mut all: std::collections::HashMap<String, std::collections::BTreeMap<i32, StoredState>> =
        Default::default();
    for kv in resp.kvs() {
        let key = kv.key_str().unwrap_or_default();
        let Some((topic, partition)) = shared.keys.parse_partition(key) else {
            continue;
        };
        match decode::<PartitionState>(key, kv.value()) {
            Ok(state) => {
                all.entry(topic.to_string()).or_default().insert(
                    partition,
                    StoredState {
                        state,
                        revision: kv.mod_revision(),
                    },
                );
            }
            Err(e) => warn!("ignoring partition state: {e}"),
        }
    }
    *shared.partitions.lock().unwrap_or_else(|p| p.into_inner()) = all;
    shared.tick();
    Ok(resp.header().map_or(0, |h| h.revision()))
}

/// Reads every controller candidate; returns the revision of the read.
pub(super) async fn list_candidates(client: &mut Client, shared: &Shared) -> Result<i64> {
    let resp = client
        .get(
            shared.keys.controller_candidates(),
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .map_err(unavailable)?;
    let mut all = std::collections::BTreeMap::new();
    for kv in resp.kvs() {
        if let (Ok(key), Some(c)) = (kv.key_str(), candidate(kv)) {
            all.insert(key.to_string(), c);
        }
    }
    *shared.candidates.lock().unwrap_or_else(|p| p.into_inner()) = all;
    shared.tick();
    Ok(resp.header().map_or(0, |h| h.revision()))
}

/// Campaigns under this broker's current lease until elected. A campaign is abandoned when
/// the lease changes (it was lost: the key under it is gone) and started again under the new
/// one.
pub(super) async fn campaign(election: &Client, shared: &Shared) -> Result<ControllerClaim> {
    loop {
        let lease = shared.lease_id.load(Ordering::Acquire);
        let node = shared.node_id.load(Ordering::Acquire);
        if lease == 0 || node < 0 {
            // Not registered (yet, or again).
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let mut client = election.election_client();
        let name = shared.keys.controller_election();
        let lease_changed = async {
            while shared.lease_id.load(Ordering::Acquire) == lease {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let won = tokio::select! {
            r = client.campaign(name, node.to_string(), lease) => r,
            () = lease_changed => continue,
        };
        match won {
            Ok(resp) => {
                let Some(leader) = resp.leader() else {
                    warn!("etcd answered a campaign without a leader key; campaigning again");
                    continue;
                };
                let key = leader
                    .key_str()
                    .map_err(|e| MetadataError::Corrupt(e.to_string()))?
                    .to_string();
                info!(
                    epoch = leader.rev(),
                    "this broker is elected the controller"
                );
                {
                    // etcd elected this key once every older candidate was gone; the watch
                    // may not have said so yet.
                    let mut candidates =
                        shared.candidates.lock().unwrap_or_else(|p| p.into_inner());
                    candidates.retain(|_, (_, rev)| *rev > leader.rev());
                    candidates.insert(key.clone(), (node as i32, leader.rev()));
                }
                shared.tick();
                return Ok(ControllerClaim {
                    epoch: leader.rev(),
                    key,
                });
            }
            Err(e) => {
                warn!("controller campaign failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// See [`crate::cluster::MetadataStore::put_partition_state`] (with the controller's `claim`)
/// and [`crate::cluster::MetadataStore::alter_isr`] (without: the partition's leader, whose
/// registration the write compares present, since `state.leader` is itself).
pub(super) async fn put_state(
    client: &mut Client,
    shared: &Shared,
    claim: Option<&ControllerClaim>,
    (topic, partition): (&str, i32),
    expected: i64,
    replaced: Option<i32>,
    state: PartitionState,
) -> Result<i64> {
    let key = shared.keys.partition(topic, partition);
    let mut compares = Vec::new();
    if let Some(claim) = claim {
        compares.push(Compare::create_revision(
            claim.key.clone(),
            CompareOp::Equal,
            claim.epoch,
        ));
    }
    // The controller's broker list comes from its watch and may lag: etcd itself checks
    // that the replaced leader's registration is gone and the new one's is there.
    if let Some(old) = replaced.filter(|l| *l >= 0) {
        compares.push(Compare::version(
            shared.keys.broker(old),
            CompareOp::Equal,
            0,
        ));
    }
    if state.leader >= 0 {
        compares.push(Compare::version(
            shared.keys.broker(state.leader),
            CompareOp::Greater,
            0,
        ));
    }
    if expected == 0 {
        // Never written: the topic must still be the one the state is for.
        let topic_key = shared.keys.topic(topic);
        let got = client
            .get(topic_key.clone(), None)
            .await
            .map_err(unavailable)?;
        let kv = got
            .kvs()
            .first()
            .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))?;
        let record: crate::cluster::TopicRecord = decode(&topic_key, kv.value())?;
        if record.id != state.topic_id {
            return Err(MetadataError::UnknownTopic(topic.to_string()));
        }
        compares.push(Compare::create_revision(
            topic_key,
            CompareOp::Equal,
            kv.create_revision(),
        ));
        compares.push(Compare::version(key.clone(), CompareOp::Equal, 0));
    } else {
        compares.push(Compare::mod_revision(
            key.clone(),
            CompareOp::Equal,
            expected,
        ));
    }
    let mut txn =
        Txn::new()
            .when(compares)
            .and_then([TxnOp::put(key.clone(), encode(&state)?, None)]);
    if let Some(claim) = claim {
        txn = txn.or_else([TxnOp::get(claim.key.clone(), None)]);
    }
    let resp = client.txn(txn).await.map_err(unavailable)?;
    if !resp.succeeded() {
        let Some(claim) = claim else {
            return Err(MetadataError::Conflict(key));
        };
        let still_controller = resp.op_responses().into_iter().any(|r| match r {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .is_some_and(|kv| kv.create_revision() == claim.epoch),
            _ => false,
        });
        return Err(if still_controller {
            MetadataError::Conflict(key)
        } else {
            MetadataError::NotController
        });
    }
    let revision = resp.header().map_or(0, |h| h.revision());
    shared.apply_state(topic, partition, Some(state), revision);
    shared.tick();
    Ok(revision)
}
