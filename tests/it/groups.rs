//! The classic group protocol and committed offsets, over the wire.

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as E;

use crate::client::*;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join_req(
    group: &str,
    member: &str,
    instance: Option<&str>,
    session_ms: i32,
    protocols: &[&str],
) -> JoinGroupRequest {
    let mut r = JoinGroupRequest::default();
    r.group_id = GroupId(s(group));
    r.session_timeout_ms = session_ms;
    r.rebalance_timeout_ms = 10_000;
    r.member_id = s(member);
    r.group_instance_id = instance.map(s);
    r.protocol_type = s("consumer");
    r.protocols = protocols
        .iter()
        .map(|p| {
            let mut jp = JoinGroupRequestProtocol::default();
            jp.name = s(p);
            jp.metadata = Bytes::from(format!("meta-{p}"));
            jp
        })
        .collect();
    r
}

async fn join(c: &mut Client, group: &str, member: &str, session_ms: i32) -> JoinGroupResponse {
    c.call(&join_req(group, member, None, session_ms, &["range"]), 7)
        .await
}

/// Joins as a new member (answering MEMBER_ID_REQUIRED) and returns the join response.
async fn join_new(c: &mut Client, group: &str, session_ms: i32) -> JoinGroupResponse {
    let r = join(c, group, "", session_ms).await;
    assert_eq!(r.error_code, E::MemberIdRequired.code());
    assert!(!r.member_id.is_empty());
    let id = r.member_id.to_string();
    join(c, group, &id, session_ms).await
}

async fn sync(
    c: &mut Client,
    group: &str,
    member: &str,
    generation: i32,
    assign: &[(&str, &str)],
) -> SyncGroupResponse {
    let mut r = SyncGroupRequest::default();
    r.group_id = GroupId(s(group));
    r.member_id = s(member);
    r.generation_id = generation;
    r.assignments = assign
        .iter()
        .map(|(m, a)| {
            let mut x = SyncGroupRequestAssignment::default();
            x.member_id = s(m);
            x.assignment = Bytes::from(a.to_string());
            x
        })
        .collect();
    c.call(&r, 5).await
}

async fn heartbeat(c: &mut Client, group: &str, member: &str, generation: i32) -> i16 {
    let mut r = HeartbeatRequest::default();
    r.group_id = GroupId(s(group));
    r.member_id = s(member);
    r.generation_id = generation;
    c.call(&r, 4).await.error_code
}

async fn commit(
    c: &mut Client,
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    offsets: &[(i32, i64)],
    metadata: &str,
) -> Vec<i16> {
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(s(group));
    r.member_id = s(member);
    r.generation_id_or_member_epoch = generation;
    let mut t = OffsetCommitRequestTopic::default();
    t.name = topic_name(topic);
    for (p, o) in offsets {
        let mut cp = OffsetCommitRequestPartition::default();
        cp.partition_index = *p;
        cp.committed_offset = *o;
        cp.committed_metadata = Some(s(metadata));
        t.partitions.push(cp);
    }
    r.topics = vec![t];
    let resp = c.call(&r, 8).await;
    resp.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

async fn fetch_offsets(c: &mut Client, group: &str, topic: &str, partitions: &[i32]) -> Vec<i64> {
    let mut r = OffsetFetchRequest::default();
    r.group_id = GroupId(s(group));
    let mut t = OffsetFetchRequestTopic::default();
    t.name = topic_name(topic);
    t.partition_indexes = partitions.to_vec();
    r.topics = Some(vec![t]);
    let resp = c.call(&r, 7).await;
    assert_eq!(resp.error_code, 0);
    resp.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}

fn fast_groups() -> Vec<(&'static str, &'static str)> {
    vec![
        ("group.initial.rebalance.delay.ms", "0"),
        ("group.min.session.timeout.ms", "100"),
    ]
}

#[tokio::test]
async fn join_sync_heartbeat_and_rebalance_on_second_member() {
    let b = TestBroker::start_with(&fast_groups()).await;
    let mut c1 = b.client().await;
    let mut c2 = b.client().await;

    let j1 = join_new(&mut c1, "g", 10_000).await;
    assert_eq!(j1.error_code, 0);
    assert_eq!(j1.generation_id, 1);
    let m1 = j1.member_id.to_string();
    assert_eq!(j1.leader.as_str(), m1);
    assert_eq!(j1.members.len(), 1);
    assert_eq!(j1.protocol_name.as_deref(), Some("range"));
    let s1 = sync(&mut c1, "g", &m1, 1, &[(&m1, "all")]).await;
    assert_eq!((s1.error_code, &s1.assignment[..]), (0, &b"all"[..]));
    assert_eq!(heartbeat(&mut c1, "g", &m1, 1).await, 0);

    // A second member joins: the first learns of the rebalance at its next heartbeat.
    let r = join(&mut c2, "g", "", 10_000).await;
    let m2 = r.member_id.to_string();
    let j2 = tokio::spawn(async move {
        let r = join(&mut c2, "g", &m2, 10_000).await;
        (c2, r)
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        heartbeat(&mut c1, "g", &m1, 1).await,
        E::RebalanceInProgress.code()
    );
    let j1 = join(&mut c1, "g", &m1, 10_000).await;
    let (mut c2, j2) = j2.await.unwrap();
    assert_eq!((j1.error_code, j2.error_code), (0, 0));
    assert_eq!((j1.generation_id, j2.generation_id), (2, 2));
    assert_eq!(j1.leader.as_str(), m1, "the leader stays the leader");
    assert_eq!(j1.members.len(), 2);
    assert!(j2.members.is_empty());
    let m2 = j2.member_id.to_string();

    // The follower's sync waits for the leader's assignment.
    let follower = tokio::spawn(async move {
        let r = sync(&mut c2, "g", &m2, 2, &[]).await;
        (c2, r)
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let m2 = j2.member_id.to_string();
    let s1 = sync(&mut c1, "g", &m1, 2, &[(&m1, "p0"), (&m2, "p1")]).await;
    assert_eq!(&s1.assignment[..], b"p0");
    let (mut c2, s2) = follower.await.unwrap();
    assert_eq!((s2.error_code, &s2.assignment[..]), (0, &b"p1"[..]));

    // Stale generation and unknown member.
    assert_eq!(
        heartbeat(&mut c2, "g", &m2, 1).await,
        E::IllegalGeneration.code()
    );
    assert_eq!(
        heartbeat(&mut c2, "g", "nobody", 2).await,
        E::UnknownMemberId.code()
    );
    b.stop().await;
}

#[tokio::test]
async fn a_silent_member_is_evicted_after_its_session_timeout() {
    let b = TestBroker::start_with(&fast_groups()).await;
    let mut c1 = b.client().await;
    let mut c2 = b.client().await;
    let j1 = join_new(&mut c1, "ev", 300).await;
    let m1 = j1.member_id.to_string();
    sync(&mut c1, "ev", &m1, 1, &[(&m1, "x")]).await;
    // c2 joins with a long session; c1 never heartbeats again.
    let r = join(&mut c2, "ev", "", 10_000).await;
    let j2 = join(&mut c2, "ev", r.member_id.as_str(), 10_000).await;
    assert_eq!(j2.error_code, 0);
    assert_eq!(j2.generation_id, 2);
    assert_eq!(j2.members.len(), 1, "the silent member was removed");
    assert_eq!(j2.leader, j2.member_id);
    b.stop().await;
}

#[tokio::test]
async fn bad_joins_get_kafka_errors() {
    let b = TestBroker::start_with(&fast_groups()).await;
    let mut c = b.client().await;
    let r = join(&mut c, "", "", 10_000).await;
    assert_eq!(r.error_code, E::InvalidGroupId.code());
    let r = join(&mut c, "g", "", 10).await;
    assert_eq!(r.error_code, E::InvalidSessionTimeout.code());
    let r = join(&mut c, "g", "made-up", 10_000).await;
    assert_eq!(r.error_code, E::UnknownMemberId.code());
    let j = join_new(&mut c, "g", 10_000).await;
    assert_eq!(j.error_code, 0);
    // A joiner with no protocol in common with the group.
    let mut other = b.client().await;
    let r = other
        .call(&join_req("g", "", None, 10_000, &["roundrobin"]), 7)
        .await;
    assert_eq!(r.error_code, E::InconsistentGroupProtocol.code());
    b.stop().await;
}

#[tokio::test]
async fn static_member_restart_keeps_its_assignment_without_rebalance() {
    let b = TestBroker::start_with(&fast_groups()).await;
    let mut c = b.client().await;
    let j = c
        .call(&join_req("st", "", Some("inst-1"), 10_000, &["range"]), 7)
        .await;
    assert_eq!(
        j.error_code, 0,
        "static members need no member id round trip"
    );
    let old = j.member_id.to_string();
    sync(&mut c, "st", &old, 1, &[(&old, "mine")]).await;

    // The same instance restarts (new connection, no member id).
    let mut c2 = b.client().await;
    let j2 = c2
        .call(&join_req("st", "", Some("inst-1"), 10_000, &["range"]), 7)
        .await;
    assert_eq!(j2.error_code, 0);
    assert_eq!(j2.generation_id, 1, "no rebalance");
    let new = j2.member_id.to_string();
    assert_ne!(new, old);
    let s2 = sync(&mut c2, "st", &new, 1, &[]).await;
    assert_eq!(&s2.assignment[..], b"mine");
    // The old incarnation is fenced.
    let mut hb = HeartbeatRequest::default();
    hb.group_id = GroupId(s("st"));
    hb.member_id = s(&old);
    hb.generation_id = 1;
    hb.group_instance_id = Some(s("inst-1"));
    assert_eq!(c.call(&hb, 4).await.error_code, E::FencedInstanceId.code());
    b.stop().await;
}

#[tokio::test]
async fn offsets_commit_fetch_and_survive_crash() {
    let mut b = TestBroker::start_with(&fast_groups()).await;
    let mut c = b.client().await;
    c.create_topic("ot", 3, &[]).await;
    // A standalone (generation -1) commit, as consumers using assign() make.
    assert_eq!(
        commit(&mut c, "solo", "", -1, "ot", &[(0, 5), (2, 9)], "m").await,
        vec![0, 0]
    );
    assert_eq!(
        fetch_offsets(&mut c, "solo", "ot", &[0, 1, 2]).await,
        vec![5, -1, 9]
    );
    // Unknown partition and oversized metadata are per-partition errors.
    assert_eq!(
        commit(&mut c, "solo", "", -1, "ot", &[(7, 1)], "m").await,
        vec![E::UnknownTopicOrPartition.code()]
    );
    assert_eq!(
        commit(&mut c, "solo", "", -1, "ot", &[(1, 1)], &"x".repeat(5000)).await,
        vec![E::OffsetMetadataTooLarge.code()]
    );
    drop(c);
    b.crash_and_restart().await;
    let mut c = b.client().await;
    assert_eq!(
        fetch_offsets(&mut c, "solo", "ot", &[0, 1, 2]).await,
        vec![5, -1, 9]
    );

    // A group-managed commit needs the right member and generation.
    let j = join_new(&mut c, "managed", 10_000).await;
    let m = j.member_id.to_string();
    sync(&mut c, "managed", &m, 1, &[(&m, "a")]).await;
    assert_eq!(
        commit(&mut c, "managed", &m, 1, "ot", &[(1, 3)], "").await,
        vec![0]
    );
    assert_eq!(
        commit(&mut c, "managed", &m, 7, "ot", &[(1, 4)], "").await,
        vec![E::IllegalGeneration.code()]
    );
    assert_eq!(
        commit(&mut c, "managed", "stranger", 1, "ot", &[(1, 4)], "").await,
        vec![E::UnknownMemberId.code()]
    );
    assert_eq!(fetch_offsets(&mut c, "managed", "ot", &[1]).await, vec![3]);
    b.stop().await;
}

#[tokio::test]
async fn list_describe_and_delete_groups() {
    let b = TestBroker::start_with(&fast_groups()).await;
    let mut c = b.client().await;
    c.create_topic("dt", 1, &[]).await;
    commit(&mut c, "empty-group", "", -1, "dt", &[(0, 1)], "").await;
    let j = join_new(&mut c, "busy", 10_000).await;
    let m = j.member_id.to_string();
    sync(&mut c, "busy", &m, 1, &[(&m, "a")]).await;

    let list = c.call(&ListGroupsRequest::default(), 4).await;
    let mut names: Vec<(String, String)> = list
        .groups
        .iter()
        .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("busy".into(), "Stable".into()),
            ("empty-group".into(), "Empty".into())
        ]
    );

    let mut d = DescribeGroupsRequest::default();
    d.groups = vec![GroupId(s("busy")), GroupId(s("nope"))];
    let desc = c.call(&d, 5).await;
    assert_eq!(desc.groups[0].group_state.as_str(), "Stable");
    assert_eq!(desc.groups[0].members.len(), 1);
    assert_eq!(&desc.groups[0].members[0].member_assignment[..], b"a");
    assert_eq!(desc.groups[1].group_state.as_str(), "Dead");

    let mut del = DeleteGroupsRequest::default();
    del.groups_names = vec![
        GroupId(s("busy")),
        GroupId(s("empty-group")),
        GroupId(s("nope")),
    ];
    let r = c.call(&del, 2).await;
    let codes: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        vec![E::NonEmptyGroup.code(), 0, E::GroupIdNotFound.code()]
    );
    assert_eq!(
        fetch_offsets(&mut c, "empty-group", "dt", &[0]).await,
        vec![-1]
    );
    b.stop().await;
}

#[tokio::test]
async fn find_coordinator_names_this_broker() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let mut r = FindCoordinatorRequest::default();
    r.key = s("any-group");
    let resp = c.call(&r, 2).await;
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.port as u16, b.addr().port());
    let mut r = FindCoordinatorRequest::default();
    r.coordinator_keys = vec![s("a"), s("b")];
    let resp = c.call(&r, 4).await;
    assert_eq!(resp.coordinators.len(), 2);
    assert!(resp
        .coordinators
        .iter()
        .all(|c| c.error_code == 0 && c.node_id.0 == 0));
    b.stop().await;
}

#[tokio::test]
async fn shutdown_answers_parked_joins_and_long_polls_at_once() {
    let b = TestBroker::start_with(&fast_groups()).await;
    let mut c1 = b.client().await;
    let j1 = join_new(&mut c1, "park", 10_000).await;
    let m1 = j1.member_id.to_string();
    sync(&mut c1, "park", &m1, 1, &[(&m1, "a")]).await;
    // A second member's join parks until the first rejoins, which it never does.
    let mut c2 = b.client().await;
    let r = join(&mut c2, "park", "", 10_000).await;
    let m2 = r.member_id.to_string();
    let parked = tokio::spawn(async move { join(&mut c2, "park", &m2, 10_000).await });
    // And a long poll that would wait 60 s.
    c1.create_topic("quiet", 1, &[]).await;
    let addr = b.addr();
    let poll = tokio::spawn(async move {
        let mut c = Client::connect(addr).await;
        c.fetch("quiet", 0, 0, 60_000, 1).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    b.stop().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "shutdown waited"
    );
    let j = parked.await.unwrap();
    assert_eq!(j.error_code, E::NotCoordinator.code());
    let f = poll.await.unwrap();
    assert_eq!(f.responses[0].partitions[0].error_code, 0);
}
