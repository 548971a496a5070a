//! Cluster mode in process: two brokers sharing a real etcd (Debian's `etcd`, started on free
//! 127.0.0.1 ports with a temp dir), spoken to with kafka-protocol requests.

use std::time::{Duration, Instant};

use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use kafka_protocol::records::Compression;

use crate::client::*;

#[path = "../support/etcd.rs"]
mod etcd;
use etcd::Etcd;

async fn metadata(c: &mut Client) -> MetadataResponse {
    let mut req = MetadataRequest::default();
    req.topics = None; // every topic
    c.call(&req, 12).await
}

/// A client that sends a partition's produce or fetch to a broker that does not host it is
/// told the leader (KIP-951: CurrentLeader, and NodeEndpoints in Produce v10+), so it can go
/// there without a metadata round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_broker_names_the_leader() {
    let etcd = Etcd::start();
    let settings = |node: &str| {
        [
            ("node.id", node.to_string()),
            ("etcd.endpoints", etcd.endpoint.clone()),
            ("etcd.prefix", "/it".to_string()),
        ]
    };
    let s1 = settings("1");
    let s2 = settings("2");
    let b1 =
        TestBroker::start_with(&s1.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    let b2 =
        TestBroker::start_with(&s2.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    let mut c1 = b1.client().await;
    let mut c2 = b2.client().await;
    assert_eq!(c1.create_topic("t", 4, &[]).await.topics[0].error_code, 0);
    // Broker 2 learns the topic from the etcd watch.
    let deadline = Instant::now() + Duration::from_secs(10);
    let leaders = loop {
        let md = metadata(&mut c2).await;
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "t"));
        if let Some(t) = t.filter(|t| t.error_code == 0 && md.brokers.len() == 2) {
            break t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect::<Vec<_>>();
        }
        assert!(Instant::now() < deadline, "broker 2 never saw the topic");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (on2, _) = *leaders
        .iter()
        .find(|(_, l)| *l == 2)
        .expect("a partition on broker 2");
    let (on1, _) = *leaders
        .iter()
        .find(|(_, l)| *l == 1)
        .expect("a partition on broker 1");

    let records = batch(&["x"], 1, Compression::None);
    let resp = c1
        .call(&produce_request("t", on2, records.clone(), -1), 11)
        .await;
    let pr = &resp.responses[0].partition_responses[0];
    assert_eq!(pr.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(pr.current_leader.leader_id.0, 2);
    assert_eq!(resp.node_endpoints.len(), 1);
    assert_eq!(resp.node_endpoints[0].node_id.0, 2);
    assert_eq!(resp.node_endpoints[0].port, i32::from(b2.addr().port()));
    // Below v10 there is no hint, only the error.
    let resp = c1
        .call(&produce_request("t", on2, records.clone(), -1), 9)
        .await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 6);
    // Fetch v12 carries the hint too.
    let f = c1.fetch("t", on2, 0, 0, 0).await;
    let pd = &f.responses[0].partitions[0];
    assert_eq!(pd.error_code, 6);
    assert_eq!(pd.current_leader.leader_id.0, 2);
    // The right broker takes it.
    let resp = c2
        .call(&produce_request("t", on2, records.clone(), -1), 11)
        .await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    let resp = c1.call(&produce_request("t", on1, records, -1), 11).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    drop((c1, c2));
    b1.stop().await;
    b2.stop().await;
}

const SLOTS: strand::cluster::SlotCounts = strand::cluster::SlotCounts { group: 50, txn: 50 };

fn registration(node_id: i32) -> strand::cluster::BrokerRegistration {
    strand::cluster::BrokerRegistration {
        node_id,
        host: "127.0.0.1".into(),
        port: 1,
        rack: None,
        epoch: 0,
    }
}

/// Coordinator writes are fenced by the slot claim: once a slot has changed hands, the old
/// holder's commits and transaction writes are refused, and the new holder loads everything
/// the old one wrote before. A broker with other slot counts than the cluster's is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_writes_are_fenced_by_the_slot_claim() {
    use strand::cluster::etcd::{EtcdStore, LeaseSettings};
    use strand::cluster::{
        CommittedOffset, CoordinatorKind, MetadataError, MetadataStore, PendingTxnOffsets,
        SlotCounts,
    };
    let etcd = Etcd::start();
    let lease = LeaseSettings {
        session_timeout: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(500),
    };
    let endpoints = std::slice::from_ref(&etcd.endpoint);
    let a = EtcdStore::open(endpoints, "/fence", lease, SLOTS)
        .await
        .unwrap();
    let b = EtcdStore::open(endpoints, "/fence", lease, SLOTS)
        .await
        .unwrap();
    a.register_broker(registration(1)).await.unwrap();
    b.register_broker(registration(2)).await.unwrap();
    let group = "g/1";
    let slot = strand::cluster::slots::slot_of(group, SLOTS.group);
    let off = |o| CommittedOffset {
        offset: o,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 1,
    };
    let claim = a
        .claim_slot(CoordinatorKind::Group, slot)
        .await
        .unwrap()
        .expect("free slot");
    assert_eq!(
        b.claim_slot(CoordinatorKind::Group, slot).await.unwrap(),
        None,
        "a held slot cannot be claimed twice"
    );
    a.commit_offsets(claim, group, vec![("t".into(), 0, off(5))])
        .await
        .unwrap();
    a.put_pending_offsets(
        claim,
        group,
        77,
        PendingTxnOffsets {
            producer_epoch: 0,
            offsets: vec![("t".into(), 1, off(9))],
        },
    )
    .await
    .unwrap();
    // Every broker sees who holds the slot (through the watch).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b
        .slot_holders(CoordinatorKind::Group)
        .get(&slot)
        .map(|h| h.node_id)
        != Some(1)
    {
        assert!(std::time::Instant::now() < deadline, "claim not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.release_slot(claim).await.unwrap();
    let taken = b
        .claim_slot(CoordinatorKind::Group, slot)
        .await
        .unwrap()
        .expect("released slot");
    assert!(taken.epoch > claim.epoch);
    // The deposed holder can no longer write, in a batch or alone.
    for r in [
        a.commit_offsets(claim, group, vec![("t".into(), 0, off(6))])
            .await,
        a.resolve_pending_offsets(claim, group, 77, None).await,
        a.delete_offsets(claim, group, None).await,
    ] {
        assert!(matches!(r, Err(MetadataError::Fenced(_))), "{r:?}");
    }
    let loaded = b.load_offsets(taken).await.unwrap();
    assert_eq!(loaded.committed[group][&("t".to_string(), 0)].offset, 5);
    assert_eq!(loaded.pending[&(group.to_string(), 77)].offsets.len(), 1);
    // The new holder commits the pending offsets in one step.
    b.resolve_pending_offsets(taken, group, 77, Some(vec![("t".into(), 1, off(9))]))
        .await
        .unwrap();
    let loaded = b.load_offsets(taken).await.unwrap();
    assert_eq!(loaded.committed[group][&("t".to_string(), 1)].offset, 9);
    assert!(loaded.pending.is_empty());
    // Transaction state is fenced the same way.
    let record = strand::cluster::TxnRecord {
        transactional_id: "t/x".into(),
        producer_id: 1,
        producer_epoch: 0,
        timeout_ms: 60_000,
        state: strand::cluster::TxnState::Empty,
        partitions: Default::default(),
        groups: Default::default(),
        start_ms: -1,
        last_update_ms: 0,
    };
    let tslot = strand::cluster::slots::slot_of("t/x", SLOTS.txn);
    let t1 = a
        .claim_slot(CoordinatorKind::Txn, tslot)
        .await
        .unwrap()
        .unwrap();
    a.put_transaction(t1, record.clone()).await.unwrap();
    a.release_slot(t1).await.unwrap();
    let t2 = b
        .claim_slot(CoordinatorKind::Txn, tslot)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        a.put_transaction(t1, record.clone()).await,
        Err(MetadataError::Fenced(_))
    ));
    assert!(matches!(
        a.delete_transaction(t1, "t/x").await,
        Err(MetadataError::Fenced(_))
    ));
    assert_eq!(b.load_transactions(t2).await.unwrap()["t/x"], record);
    // Other slot counts than the cluster's: refused at open.
    let other = SlotCounts { group: 10, txn: 50 };
    assert!(matches!(
        EtcdStore::open(endpoints, "/fence", lease, other).await,
        Err(MetadataError::Refused(_))
    ));
}

/// Committed offsets are stored 16 partitions of a topic per etcd key, each written whole
/// from the holder's copy: a commit of some partitions keeps the others of its bucket,
/// deletes remove only theirs, and a holder whose copy predates another holder's writes
/// (the slot went away and came back) reads the group again instead of writing back its
/// stale copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_in_buckets_survive_partial_commits_deletes_and_moves() {
    use std::collections::BTreeMap;
    use strand::cluster::etcd::{EtcdStore, LeaseSettings};
    use strand::cluster::{CommittedOffset, CoordinatorKind, MetadataStore};
    let etcd = Etcd::start();
    let lease = LeaseSettings {
        session_timeout: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(500),
    };
    let endpoints = std::slice::from_ref(&etcd.endpoint);
    let a = EtcdStore::open(endpoints, "/buckets", lease, SLOTS)
        .await
        .unwrap();
    let b = EtcdStore::open(endpoints, "/buckets", lease, SLOTS)
        .await
        .unwrap();
    a.register_broker(registration(1)).await.unwrap();
    b.register_broker(registration(2)).await.unwrap();
    let group = "g";
    let slot = strand::cluster::slots::slot_of(group, SLOTS.group);
    let off = |o: i64| CommittedOffset {
        offset: o,
        leader_epoch: 3,
        metadata: format!("m{o}"),
        commit_timestamp: 1,
    };
    let mut want: BTreeMap<(String, i32), CommittedOffset> = BTreeMap::new();
    let claim = a
        .claim_slot(CoordinatorKind::Group, slot)
        .await
        .unwrap()
        .unwrap();
    assert!(a.load_offsets(claim).await.unwrap().committed.is_empty());
    // 40 partitions of t (buckets 0, 1, 2) and one of u, in one request.
    let mut first: Vec<(String, i32, CommittedOffset)> = (0..40)
        .map(|p| ("t".into(), p, off(100 + i64::from(p))))
        .collect();
    first.push(("u".into(), 5, off(7)));
    a.commit_offsets(claim, group, first.clone()).await.unwrap();
    for (t, p, o) in first {
        want.insert((t, p), o);
    }
    // One partition of bucket 1 again: the other 15 stay.
    a.commit_offsets(claim, group, vec![("t".into(), 17, off(1017))])
        .await
        .unwrap();
    want.insert(("t".into(), 17), off(1017));
    // Deletes: one of bucket 0, and every partition of bucket 2 (32..40).
    let mut gone: Vec<(String, i32)> = vec![("t".into(), 3)];
    gone.extend((32..40).map(|p| ("t".to_string(), p)));
    a.delete_offsets(claim, group, Some(gone.clone()))
        .await
        .unwrap();
    for k in &gone {
        want.remove(k);
    }
    a.release_slot(claim).await.unwrap();
    let taken = b
        .claim_slot(CoordinatorKind::Group, slot)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.load_offsets(taken).await.unwrap().committed[group], want);
    // b commits partition 0; then the slot goes back to a, whose copy is from before that.
    b.commit_offsets(taken, group, vec![("t".into(), 0, off(5000))])
        .await
        .unwrap();
    want.insert(("t".into(), 0), off(5000));
    b.release_slot(taken).await.unwrap();
    let again = a
        .claim_slot(CoordinatorKind::Group, slot)
        .await
        .unwrap()
        .unwrap();
    // A commit of partition 1 (bucket 0) without a load first must keep b's partition 0.
    a.commit_offsets(again, group, vec![("t".into(), 1, off(6001))])
        .await
        .unwrap();
    want.insert(("t".into(), 1), off(6001));
    assert_eq!(a.load_offsets(again).await.unwrap().committed[group], want);
    // Deleting the whole group leaves nothing to load, and commits start afresh.
    a.delete_offsets(again, group, None).await.unwrap();
    assert!(a.load_offsets(again).await.unwrap().committed.is_empty());
    a.commit_offsets(again, group, vec![("t".into(), 2, off(1))])
        .await
        .unwrap();
    let loaded = a.load_offsets(again).await.unwrap().committed;
    assert_eq!(loaded[group].len(), 1);
    assert_eq!(loaded[group][&("t".to_string(), 2)], off(1));
}

/// Topic changes through the etcd store are compare-and-swap on what they were computed from:
/// a change based on a stale record, or a delete of a re-created name, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_changes_from_a_stale_view_are_refused() {
    use strand::cluster::etcd::{EtcdStore, LeaseSettings};
    use strand::cluster::{MetadataError, MetadataStore, TopicRecord};
    let etcd = Etcd::start();
    let lease = LeaseSettings {
        session_timeout: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(500),
    };
    let a = EtcdStore::open(std::slice::from_ref(&etcd.endpoint), "/stale", lease, SLOTS)
        .await
        .unwrap();
    let b = EtcdStore::open(std::slice::from_ref(&etcd.endpoint), "/stale", lease, SLOTS)
        .await
        .unwrap();
    assert_eq!(a.cluster_id(), b.cluster_id());
    let t = TopicRecord {
        name: "t".into(),
        id: uuid::Uuid::new_v4(),
        assignments: vec![vec![1]; 3],
        configs: Default::default(),
    };
    a.create_topic(t.clone()).await.unwrap();
    // b grows the topic; a, still on the old record, changes a config: refused.
    let mut grown = t.clone();
    grown.assignments.push(vec![2]);
    b.update_topic(&t, grown.clone()).await.unwrap();
    let mut configured = t.clone();
    configured.configs.insert("retention.ms".into(), "1".into());
    assert!(matches!(
        a.update_topic(&t, configured).await,
        Err(MetadataError::Conflict(_))
    ));
    assert_eq!(a.topics().await.unwrap()["t"], grown);
    // Deleted and re-created: a delete meant for the old topic deletes nothing.
    b.delete_topic("t", t.id).await.unwrap();
    let again = TopicRecord {
        id: uuid::Uuid::new_v4(),
        ..t.clone()
    };
    b.create_topic(again.clone()).await.unwrap();
    assert!(matches!(
        a.delete_topic("t", t.id).await,
        Err(MetadataError::UnknownTopic(_))
    ));
    assert_eq!(a.topics().await.unwrap()["t"], again);
}

/// Partition states change only by the controller, fenced by its election: a second broker
/// is elected only when the first one's lease is gone, and from then on the first one's
/// writes fail, as do writes computed from an old state or for a deleted topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_states_are_fenced_by_the_controller_election() {
    use strand::cluster::etcd::{EtcdStore, LeaseSettings};
    use strand::cluster::{MetadataError, MetadataStore, PartitionState, TopicRecord};
    let etcd = Etcd::start();
    let lease = LeaseSettings {
        session_timeout: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(500),
    };
    let endpoints = std::slice::from_ref(&etcd.endpoint);
    let a = EtcdStore::open(endpoints, "/ctl", lease, SLOTS)
        .await
        .unwrap();
    let b = std::sync::Arc::new(
        EtcdStore::open(endpoints, "/ctl", lease, SLOTS)
            .await
            .unwrap(),
    );
    a.register_broker(registration(1)).await.unwrap();
    b.register_broker(registration(2)).await.unwrap();
    let first = a.campaign_controller().await.unwrap();
    assert!(a.holds_controller(&first));
    // Broker 2 waits in the election while broker 1 is the controller.
    let campaign = tokio::spawn({
        let b = b.clone();
        async move { b.campaign_controller().await }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.controller() != Some(1) {
        assert!(
            Instant::now() < deadline,
            "broker 2 never saw the controller"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let record = TopicRecord {
        name: "t".into(),
        id: uuid::Uuid::new_v4(),
        assignments: vec![vec![3], vec![2]],
        configs: Default::default(),
    };
    a.create_topic(record.clone()).await.unwrap();
    // Broker 3 is not registered: its partition goes offline. Broker 2 is: its partition
    // cannot be taken from it, whatever the controller believes.
    let initial = PartitionState::initial(record.id, &[3]);
    let offline = initial.elect(&|_| false, false).unwrap();
    let r = a
        .put_partition_state(
            &first,
            "t",
            1,
            0,
            Some(2),
            PartitionState {
                leader: -1,
                ..PartitionState::initial(record.id, &[2])
            },
        )
        .await;
    assert!(matches!(r, Err(MetadataError::Conflict(_))), "{r:?}");
    let rev = a
        .put_partition_state(&first, "t", 0, 0, Some(3), offline.clone())
        .await
        .unwrap();
    // A write computed from the state before (absent) now conflicts.
    let r = a
        .put_partition_state(&first, "t", 0, 0, Some(3), offline.clone())
        .await;
    assert!(matches!(r, Err(MetadataError::Conflict(_))), "{r:?}");
    // Every broker sees the state through the watch.
    while b.partition_state("t", 0).map(|s| s.revision) != Some(rev) {
        assert!(Instant::now() < deadline, "broker 2 never saw the state");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!campaign.is_finished(), "two controllers at once");
    // Broker 1 dies: its lease expires and broker 2 is elected.
    drop(a);
    let second = tokio::time::timeout(Duration::from_secs(10), campaign)
        .await
        .expect("broker 2 was never elected")
        .unwrap()
        .unwrap();
    assert!(second.epoch > first.epoch);
    assert!(!b.holds_controller(&first));
    let back = offline.elect(&|n| n == 3, false).unwrap();
    // Not registered: not elected.
    let r = b
        .put_partition_state(&second, "t", 0, rev, None, back.clone())
        .await;
    assert!(matches!(r, Err(MetadataError::Conflict(_))), "{r:?}");
    let c = EtcdStore::open(endpoints, "/ctl", lease, SLOTS)
        .await
        .unwrap();
    c.register_broker(registration(3)).await.unwrap();
    let r = b
        .put_partition_state(&first, "t", 0, rev, None, back.clone())
        .await;
    assert!(matches!(r, Err(MetadataError::NotController)), "{r:?}");
    let rev2 = b
        .put_partition_state(&second, "t", 0, rev, None, back.clone())
        .await
        .unwrap();
    assert_eq!(b.partition_state("t", 0).unwrap().state, back);
    // Deleting the topic deletes its states; the old topic's state is never written again.
    b.delete_topic("t", record.id).await.unwrap();
    let r = b
        .put_partition_state(&second, "t", 0, rev2, None, back.clone())
        .await;
    assert!(matches!(r, Err(MetadataError::Conflict(_))), "{r:?}");
    let recreated = TopicRecord {
        id: uuid::Uuid::new_v4(),
        ..record
    };
    b.create_topic(recreated).await.unwrap();
    let r = b
        .put_partition_state(
            &second,
            "t",
            1,
            0,
            None,
            PartitionState::initial(record.id, &[2]),
        )
        .await;
    assert!(matches!(r, Err(MetadataError::UnknownTopic(_))), "{r:?}");
    while b.partition_state("t", 0).is_some() {
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "state not deleted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A clustered broker whose data dir goes offline (here a failed fdatasync) leaves the cluster
/// as Kafka's broker halts when its last log dir fails: `Running::wait` ends with the reason,
/// its lease goes, and the other replica takes leadership and the writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_data_dir_goes_offline_leaves_and_leadership_moves() {
    use strand::storage::fault::{self, FaultOp};
    let etcd = Etcd::start();
    let mut brokers = Vec::new();
    for node in ["1", "2"] {
        let s = [
            ("node.id", node),
            ("etcd.endpoints", etcd.endpoint.as_str()),
            ("etcd.prefix", "/it-offline"),
            ("default.replication.factor", "2"),
        ];
        brokers.push(TestBroker::start_with(&s).await);
    }
    let mut c = brokers[0].client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metadata(&mut c).await.brokers.len() < 2 {
        assert!(Instant::now() < deadline, "broker 1 never saw broker 2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.create_topic("off", 1, &[]).await.topics[0].error_code, 0);
    let state = |md: &MetadataResponse| {
        md.topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "off"))
            .and_then(|t| t.partitions.first())
            .map(|p| (p.leader_id.0, p.isr_nodes.len()))
    };
    // A leader with both replicas in sync.
    let deadline = Instant::now() + Duration::from_secs(15);
    let leader = loop {
        if let Some((l @ 1..=2, 2)) = state(&metadata(&mut c).await) {
            break l;
        }
        assert!(Instant::now() < deadline, "no in-sync leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(c);
    let (failing, survivor) = ((leader - 1) as usize, (2 - leader) as usize);
    fault::inject(brokers[failing].dir.path(), FaultOp::Sync, 5);
    let mut c = brokers[failing].client().await;
    let r = c
        .produce("off", 0, batch(&["lost"], 1, Compression::None), -1)
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 56);
    drop(c);
    let running = brokers[failing].running.as_mut().unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), running.wait())
        .await
        .expect("the broker did not leave the cluster");
    let err = ended.expect_err("wait() ends with the reason");
    assert!(err.to_string().contains("data dir is offline"), "{err}");
    fault::clear(brokers[failing].dir.path());

    // The survivor leads and takes writes.
    let node = survivor as i32 + 1;
    let mut c = brokers[survivor].client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if state(&metadata(&mut c).await).is_some_and(|(l, _)| l == node) {
            let r = c
                .produce("off", 0, batch(&["kept"], 1, Compression::None), 1)
                .await;
            if r.responses[0].partition_responses[0].error_code == 0 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "leadership never moved to {node}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(c);
    brokers.remove(survivor).stop().await;
}
