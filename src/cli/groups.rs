//! `strand groups list|describe|reset-offsets|delete`: consumer groups over the Kafka protocol
//! (FindCoordinator, ListGroups, DescribeGroups, OffsetFetch, ListOffsets, OffsetCommit,
//! DeleteGroups), so they work against any Kafka broker too. Requests for one group go to its
//! coordinator, found with FindCoordinator.
//!
//! `reset-offsets` follows kafka-consumer-groups: it prints the plan, and changes the committed
//! offsets only with `--execute`, and only for a group without active members.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, ListGroupsRequest, ListOffsetsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde_json::json;

use super::client::{describe_error, Client};
use super::{table, Common};

/// Where `strand groups reset-offsets` moves the committed offsets.
#[derive(Clone, Debug)]
pub enum ResetTo {
    Earliest,
    Latest,
    /// The first offset with a timestamp at or after this (ms since the epoch).
    Timestamp(i64),
    Offset(i64),
}

fn gid(g: &str) -> GroupId {
    GroupId(StrBytes::from_string(g.to_string()))
}

/// A client connected to `group`'s coordinator.
async fn coordinator(c: &Common, group: &str) -> anyhow::Result<Client> {
    let mut client = c.connect().await?;
    let mut req = FindCoordinatorRequest::default();
    let key = StrBytes::from_string(group.to_string());
    // v0–3 take one key, v4+ a list: set only the field the negotiated version has.
    if client.version::<FindCoordinatorRequest>()? >= 4 {
        req.coordinator_keys = vec![key];
    } else {
        req.key = key;
    }
    let (resp, v) = client.call(&req).await?;
    let (code, host, port) = if v >= 4 {
        let co = resp
            .coordinators
            .first()
            .ok_or_else(|| anyhow::anyhow!("FindCoordinator returned no coordinator"))?;
        (co.error_code, co.host.to_string(), co.port)
    } else {
        (resp.error_code, resp.host.to_string(), resp.port)
    };
    if code != 0 {
        anyhow::bail!(
            "cannot find the coordinator of group {group}: {}",
            describe_error(code)
        );
    }
    let addr = format!("{host}:{port}");
    if addr == c.bootstrap {
        return Ok(client);
    }
    Client::connect(&addr, c.timeout()).await
}

pub async fn list(c: &Common) -> anyhow::Result<()> {
    let mut client = c.connect().await?;
    let (resp, _) = client.call(&ListGroupsRequest::default()).await?;
    if resp.error_code != 0 {
        anyhow::bail!("cannot list groups: {}", describe_error(resp.error_code));
    }
    let mut groups: Vec<(String, String, String, String)> = resp
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.0.to_string(),
                g.group_state.to_string(),
                g.protocol_type.to_string(),
                g.group_type.to_string(),
            )
        })
        .collect();
    groups.sort();
    if c.json {
        let v: Vec<_> = groups
            .iter()
            .map(|(g, s, p, t)| json!({"group": g, "state": s, "protocol_type": p, "type": t}))
            .collect();
        outln!("{}", serde_json::Value::Array(v));
    } else {
        let rows: Vec<Vec<String>> = groups
            .into_iter()
            .map(|(g, s, p, t)| vec![g, s, p, t])
            .collect();
        table::print(&["GROUP", "STATE", "PROTOCOL TYPE", "TYPE"], &rows);
    }
    Ok(())
}

/// `(topic, partition) → committed offset` of a group.
async fn committed(
    client: &mut Client,
    group: &str,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut req = OffsetFetchRequest::default();
    if client.version::<OffsetFetchRequest>()? >= 8 {
        let mut g =
            kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default();
        g.group_id = gid(group);
        g.topics = None;
        req.groups = vec![g];
    } else {
        req.group_id = gid(group);
        req.topics = None;
    }
    let (resp, v) = client.call(&req).await?;
    let mut out = BTreeMap::new();
    if v >= 8 {
        for g in &resp.groups {
            if g.error_code != 0 {
                anyhow::bail!(
                    "cannot fetch offsets of {group}: {}",
                    describe_error(g.error_code)
                );
            }
            for t in &g.topics {
                for p in &t.partitions {
                    if p.committed_offset >= 0 {
                        out.insert(
                            (t.name.0.to_string(), p.partition_index),
                            p.committed_offset,
                        );
                    }
                }
            }
        }
    } else {
        if resp.error_code != 0 {
            anyhow::bail!(
                "cannot fetch offsets of {group}: {}",
                describe_error(resp.error_code)
            );
        }
        for t in &resp.topics {
            for p in &t.partitions {
                if p.committed_offset >= 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
    }
    Ok(out)
}

/// ListOffsets for the given partitions at `timestamp` (-1 latest, -2 earliest).
async fn list_offsets(
    client: &mut Client,
    partitions: &[(String, i32)],
    timestamp: i64,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    for (t, ps) in by_topic {
        let mut lt = ListOffsetsTopic::default();
        lt.name = TopicName(StrBytes::from_string(t.to_string()));
        for p in ps {
            let mut lp = ListOffsetsPartition::default();
            lp.partition_index = p;
            lp.timestamp = timestamp;
            lp.current_leader_epoch = -1;
            lt.partitions.push(lp);
        }
        req.topics.push(lt);
    }
    let (resp, _) = client.call(&req).await?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                anyhow::bail!(
                    "cannot list offsets of {}-{}: {}",
                    t.name.0.as_str(),
                    p.partition_index,
                    describe_error(p.error_code)
                );
            }
            out.insert((t.name.0.to_string(), p.partition_index), p.offset);
        }
    }
    Ok(out)
}

/// `(member id, client id, host)` of a partition's owner.
type Owner = (String, String, String);
/// One line of `groups describe`: topic, partition, committed, end offset, owner.
type Row<'a> = (String, i32, Option<i64>, Option<i64>, Option<&'a Owner>);

pub async fn describe(c: &Common, group: &str) -> anyhow::Result<()> {
    let mut client = coordinator(c, group).await?;
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![gid(group)];
    let (resp, _) = client.call(&req).await?;
    let d = resp
        .groups
        .first()
        .ok_or_else(|| anyhow::anyhow!("DescribeGroups returned nothing for {group}"))?;
    let state = d.group_state.to_string();
    if d.error_code != 0 && state != "Dead" {
        anyhow::bail!(
            "cannot describe group {group}: {}",
            describe_error(d.error_code)
        );
    }
    // Which member owns which partition (consumer protocol assignments).
    let mut owner: BTreeMap<(String, i32), Owner> = BTreeMap::new();
    for m in &d.members {
        let mut bytes = m.member_assignment.clone();
        if bytes.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([bytes[0], bytes[1]]).clamp(0, 3);
        let _ = bytes::Buf::get_i16(&mut bytes);
        if let Ok(a) = ConsumerProtocolAssignment::decode(&mut bytes, version) {
            for tp in a.assigned_partitions {
                for p in tp.partitions {
                    owner.insert(
                        (tp.topic.0.to_string(), p),
                        (
                            m.member_id.to_string(),
                            m.client_id.to_string(),
                            m.client_host.to_string(),
                        ),
                    );
                }
            }
        }
    }
    let committed = committed(&mut client, group).await?;
    let mut partitions: Vec<(String, i32)> = committed.keys().cloned().collect();
    for k in owner.keys() {
        if !committed.contains_key(k) {
            partitions.push(k.clone());
        }
    }
    partitions.sort();
    let ends = if partitions.is_empty() {
        BTreeMap::new()
    } else {
        list_offsets(&mut client, &partitions, -1).await?
    };
    let rows: Vec<Row> = partitions
        .iter()
        .map(|k| {
            (
                k.0.clone(),
                k.1,
                committed.get(k).copied(),
                ends.get(k).copied(),
                owner.get(k),
            )
        })
        .collect();
    if c.json {
        let parts: Vec<_> = rows
            .iter()
            .map(|(t, p, off, end, who)| {
                json!({
                    "topic": t, "partition": p, "committed": off, "end": end,
                    "lag": off.zip(*end).map(|(o, e)| (e - o).max(0)),
                    "member": who.map(|w| &w.0), "client_id": who.map(|w| &w.1), "host": who.map(|w| &w.2),
                })
            })
            .collect();
        let members: Vec<_> = d
            .members
            .iter()
            .map(|m| json!({"member": m.member_id.as_str(), "client_id": m.client_id.as_str(), "host": m.client_host.as_str()}))
            .collect();
        outln!(
            "{}",
            json!({"group": group, "state": state, "protocol_type": d.protocol_type.as_str(),
                   "protocol": d.protocol_data.as_str(), "members": members, "partitions": parts})
        );
    } else {
        outln!(
            "Group {group}: state {state}, {} member(s), protocol {} {}",
            d.members.len(),
            d.protocol_type.as_str(),
            d.protocol_data.as_str()
        );
        let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        let table_rows: Vec<Vec<String>> = rows
            .iter()
            .map(|(t, p, off, end, who)| {
                vec![
                    t.clone(),
                    p.to_string(),
                    show(*off),
                    show(*end),
                    show(off.zip(*end).map(|(o, e)| (e - o).max(0))),
                    who.map_or("-".into(), |w| w.0.clone()),
                    who.map_or("-".into(), |w| w.2.clone()),
                ]
            })
            .collect();
        table::print(
            &[
                "TOPIC",
                "PARTITION",
                "COMMITTED",
                "END",
                "LAG",
                "MEMBER",
                "HOST",
            ],
            &table_rows,
        );
    }
    Ok(())
}

/// The partitions of `topics` (all partitions of each).
async fn partitions_of(
    client: &mut Client,
    topics: &[String],
) -> anyhow::Result<Vec<(String, i32)>> {
    let mut req = MetadataRequest::default();
    req.allow_auto_topic_creation = false;
    req.topics = Some(
        topics
            .iter()
            .map(|t| {
                let mut m =
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
                m.name = Some(TopicName(StrBytes::from_string(t.clone())));
                m
            })
            .collect(),
    );
    let (md, _) = client.call(&req).await?;
    let mut out = Vec::new();
    for t in md.topics {
        let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
        if t.error_code != 0 {
            anyhow::bail!("topic {name}: {}", describe_error(t.error_code));
        }
        for p in t.partitions {
            out.push((name.clone(), p.partition_index));
        }
    }
    out.sort();
    Ok(out)
}

pub async fn reset_offsets(
    c: &Common,
    group: &str,
    topics: &[String],
    to: ResetTo,
    execute: bool,
) -> anyhow::Result<()> {
    let mut client = coordinator(c, group).await?;
    let mut dreq = DescribeGroupsRequest::default();
    dreq.groups = vec![gid(group)];
    let (resp, _) = client.call(&dreq).await?;
    if let Some(d) = resp.groups.first() {
        let state = d.group_state.as_str();
        if !(state == "Empty" || state == "Dead") {
            anyhow::bail!(
                "group {group} is {state} with {} active member(s): stop its consumers before resetting offsets",
                d.members.len()
            );
        }
    }
    let partitions = if topics.is_empty() {
        let mut v: Vec<(String, i32)> = committed(&mut client, group).await?.into_keys().collect();
        v.sort();
        if v.is_empty() {
            anyhow::bail!("group {group} has no committed offsets: name the topics with --topic");
        }
        v
    } else {
        partitions_of(&mut client, topics).await?
    };
    let earliest = list_offsets(&mut client, &partitions, -2).await?;
    let latest = list_offsets(&mut client, &partitions, -1).await?;
    let by_time = match to {
        ResetTo::Timestamp(ts) => Some(list_offsets(&mut client, &partitions, ts).await?),
        _ => None,
    };
    let current = committed(&mut client, group).await?;
    let mut plan = Vec::new();
    for k in &partitions {
        let lo = earliest.get(k).copied().unwrap_or(0);
        let hi = latest.get(k).copied().unwrap_or(lo);
        let target = match &to {
            ResetTo::Earliest => lo,
            ResetTo::Latest => hi,
            ResetTo::Offset(o) => (*o).clamp(lo, hi),
            ResetTo::Timestamp(_) => by_time
                .as_ref()
                .and_then(|m| m.get(k).copied())
                .filter(|o| *o >= 0)
                .unwrap_or(hi),
        };
        plan.push((k.0.clone(), k.1, current.get(k).copied(), target));
    }
    if execute {
        let mut req = OffsetCommitRequest::default();
        req.group_id = gid(group);
        req.generation_id_or_member_epoch = -1;
        req.member_id = StrBytes::default();
        let mut by_topic: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
        for (t, p, _, target) in &plan {
            by_topic.entry(t.clone()).or_default().push((*p, *target));
        }
        for (t, ps) in by_topic {
            let mut rt = OffsetCommitRequestTopic::default();
            rt.name = TopicName(StrBytes::from_string(t));
            for (p, o) in ps {
                let mut rp = OffsetCommitRequestPartition::default();
                rp.partition_index = p;
                rp.committed_offset = o;
                rp.committed_leader_epoch = -1;
                rp.committed_metadata = Some(StrBytes::default());
                rt.partitions.push(rp);
            }
            req.topics.push(rt);
        }
        let (resp, _) = client.call(&req).await?;
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    anyhow::bail!(
                        "cannot commit the offset of {}-{}: {}",
                        t.name.0.as_str(),
                        p.partition_index,
                        describe_error(p.error_code)
                    );
                }
            }
        }
    }
    if c.json {
        let v: Vec<_> = plan
            .iter()
            .map(|(t, p, cur, new)| json!({"topic": t, "partition": p, "current": cur, "new": new}))
            .collect();
        outln!(
            "{}",
            json!({"group": group, "executed": execute, "offsets": v})
        );
    } else {
        let rows: Vec<Vec<String>> = plan
            .iter()
            .map(|(t, p, cur, new)| {
                vec![
                    t.clone(),
                    p.to_string(),
                    cur.map_or("-".into(), |c| c.to_string()),
                    new.to_string(),
                ]
            })
            .collect();
        table::print(&["TOPIC", "PARTITION", "CURRENT", "NEW"], &rows);
        if !execute {
            outln!("(dry run: add --execute to commit these offsets)");
        }
    }
    Ok(())
}

pub async fn delete(c: &Common, groups: &[String]) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for g in groups {
        let mut client = coordinator(c, g).await?;
        let mut req = DeleteGroupsRequest::default();
        req.groups_names = vec![gid(g)];
        let (resp, _) = client.call(&req).await?;
        for r in resp.results {
            if r.error_code == 0 {
                if !c.json {
                    outln!("Deleted group {}.", r.group_id.0.as_str());
                }
            } else {
                failed.push(format!(
                    "cannot delete group {}: {}",
                    r.group_id.0.as_str(),
                    describe_error(r.error_code)
                ));
            }
        }
    }
    if c.json {
        outln!(
            "{}",
            json!({"deleted": groups.len() - failed.len(), "errors": failed})
        );
    }
    if !failed.is_empty() {
        anyhow::bail!("{}", failed.join("; "));
    }
    Ok(())
}
