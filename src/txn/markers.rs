//! Transaction markers: the COMMIT or ABORT control batches that end a transaction in each of
//! its partitions, and the markers for its groups' offsets.
//!
//! The transaction coordinator writes a marker directly into a partition this broker hosts and
//! sends WriteTxnMarkers (Kafka's inter-broker API) to the leader of any other partition. As in
//! Kafka, a marker for partition `s` of `__consumer_offsets` means "group slot `s`": its group
//! coordinator commits or drops the producer's pending transactional offsets
//! ([`crate::group::GroupCoordinator::complete_transaction`]). A marker is durable (fsynced)
//! before it is answered, so a transaction recorded complete never lacks one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::{now_ms, Broker};
use crate::client::Client;
use crate::cluster::BrokerRegistration;
use crate::storage::StorageError;

/// The topic name that addresses group coordinator slots in markers (as Kafka's offsets topic).
pub const GROUP_SLOTS_TOPIC: &str = "__consumer_offsets";

/// How long a marker request to another broker may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes markers into partitions hosted here; one error code per partition (0: written and
/// fsynced, or not needed because a newer producer epoch governs the partition).
pub async fn write_local(
    broker: &Broker,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    partitions: &[(String, i32)],
) -> Vec<i16> {
    let now = now_ms();
    let mut codes = vec![0i16; partitions.len()];
    let mut written = Vec::new();
    for (i, (topic, p)) in partitions.iter().enumerate() {
        let Some(partition) = broker.partition(topic, *p) else {
            codes[i] = broker.not_hosted_error(topic, *p).code();
            continue;
        };
        if !broker.is_live() {
            codes[i] = ResponseError::NotLeaderOrFollower.code();
            continue;
        }
        // The marker's write (and a roll it may cause) is file I/O: off the async workers.
        let writer = partition.clone();
        let appended = tokio::task::spawn_blocking(move || {
            writer.append_control(producer_id, producer_epoch, commit, now)
        })
        .await;
        match appended {
            Ok(Ok(info)) => written.push((i, partition, info.last_offset + 1)),
            // The partition has a newer epoch for this producer: a marker from us is stale and
            // the newer incarnation's markers govern; nothing to write.
            Ok(Err(StorageError::InvalidProducerEpoch { .. })) => {}
            Ok(Err(e)) => {
                tracing::error!(topic = %topic, partition = p, "cannot write transaction marker: {e}");
                codes[i] = ResponseError::KafkaStorageError.code();
            }
            Err(e) => {
                tracing::error!("marker task failed: {e}");
                codes[i] = ResponseError::UnknownServerError.code();
            }
        }
    }
    // Every marker must be durable before it counts: after a crash, a transaction recorded
    // complete whose marker was lost would leave the partition's last stable offset stuck.
    // With followers, it counts once every in-sync replica has it (acks=all, as Kafka
    // writes markers).
    let flushes = written.iter().map(|(_, p, end)| async move {
        if let Err(e) = p.flush_until(*end).await {
            tracing::error!(topic = %p.topic, partition = p.index, "cannot sync transaction marker: {e}");
            return Err(ResponseError::KafkaStorageError);
        }
        match tokio::time::timeout(MARKER_COMMIT_TIMEOUT, p.wait_committed(*end)).await {
            Ok(r) => r,
            Err(_) => Err(ResponseError::RequestTimedOut),
        }
    });
    for (r, (i, _, _)) in futures::future::join_all(flushes)
        .await
        .into_iter()
        .zip(&written)
    {
        if let Err(e) = r {
            codes[*i] = e.code();
        }
    }
    codes
}

/// How long a marker may wait for the partition's in-sync replicas (then it is retried).
const MARKER_COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One connection to a broker (None until connected, or after it broke).
type Conn = Arc<tokio::sync::Mutex<Option<Client>>>;

/// Connections to other brokers, one per broker address, reused across markers.
#[derive(Default)]
pub struct Peers {
    conns: std::sync::Mutex<HashMap<(String, u16), Conn>>,
}

impl Peers {
    fn slot(&self, to: &BrokerRegistration) -> Conn {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((to.host.clone(), to.port))
            .or_default()
            .clone()
    }

    /// Sends one transaction's markers to broker `to`: `topics` are `(topic, partitions)`, with
    /// [`GROUP_SLOTS_TOPIC`] for group slots. Returns the error code of every partition, in
    /// request order.
    pub async fn send_markers(
        &self,
        to: &BrokerRegistration,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        topics: &[(String, Vec<i32>)],
    ) -> anyhow::Result<Vec<((String, i32), i16)>> {
        let mut marker = WritableTxnMarker::default();
        marker.producer_id = ProducerId(producer_id);
        marker.producer_epoch = producer_epoch;
        marker.transaction_result = commit;
        marker.coordinator_epoch = coordinator_epoch;
        for (t, ps) in topics {
            let mut mt = WritableTxnMarkerTopic::default();
            mt.name = TopicName(StrBytes::from_string(t.clone()));
            mt.partition_indexes = ps.clone();
            marker.topics.push(mt);
        }
        let mut req = WriteTxnMarkersRequest::default();
        req.markers.push(marker);
        let slot = self.slot(to);
        let mut conn = slot.lock().await;
        if conn.is_none() {
            let addr = format!("{}:{}", to.host, to.port);
            *conn = Some(Client::connect_as(&addr, PEER_TIMEOUT, "strand-broker").await?);
        }
        let result = match conn.as_mut() {
            Some(c) => c.call(&req).await,
            None => unreachable!("connected above"),
        };
        let (resp, _) = match result {
            Ok(r) => r,
            Err(e) => {
                // A broken connection is opened again by the next marker.
                *conn = None;
                return Err(e);
            }
        };
        let mut out = Vec::new();
        for m in resp.markers {
            for t in m.topics {
                for p in t.partitions {
                    out.push(((t.name.0.to_string(), p.partition_index), p.error_code));
                }
            }
        }
        Ok(out)
    }
}
