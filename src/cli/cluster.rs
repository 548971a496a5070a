//! `strand cluster status`: DescribeCluster (Metadata on brokers without it) for the cluster
//! id, controller and brokers, and Metadata for partition health: under-replicated partitions
//! (ISR smaller than the replica set) and offline ones (no leader). `strand cluster
//! under-replicated` lists those partitions (Kafka's `kafka-topics --describe
//! --under-replicated-partitions`).

use kafka_protocol::messages::{DescribeClusterRequest, MetadataRequest};
use serde_json::json;

use super::{table, Common};

/// Metadata of every topic.
async fn all_metadata(
    client: &mut super::client::Client,
) -> anyhow::Result<kafka_protocol::messages::MetadataResponse> {
    let mut req = MetadataRequest::default();
    req.topics = None;
    req.allow_auto_topic_creation = false;
    Ok(client.call(&req).await?.0)
}

pub async fn status(c: &Common) -> anyhow::Result<()> {
    let mut client = c.connect().await?;
    let md = all_metadata(&mut client).await?;
    let (cluster_id, controller, mut brokers) = if client.supports::<DescribeClusterRequest>() {
        let mut dreq = DescribeClusterRequest::default();
        dreq.endpoint_type = 1;
        let (d, v) = client.call(&dreq).await?;
        if v >= 1 && d.error_code != 0 {
            anyhow::bail!(
                "DescribeCluster failed: {}",
                super::client::describe_error(d.error_code)
            );
        }
        let brokers: Vec<(i32, String, i32, Option<String>)> = d
            .brokers
            .iter()
            .map(|b| {
                (
                    b.broker_id.0,
                    b.host.to_string(),
                    b.port,
                    b.rack.as_ref().map(|r| r.to_string()),
                )
            })
            .collect();
        (d.cluster_id.to_string(), d.controller_id.0, brokers)
    } else {
        let brokers = md
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    b.host.to_string(),
                    b.port,
                    b.rack.as_ref().map(|r| r.to_string()),
                )
            })
            .collect();
        (
            md.cluster_id
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            md.controller_id.0,
            brokers,
        )
    };
    brokers.sort();
    let topics = md.topics.iter().filter(|t| t.error_code == 0);
    let (mut partitions, mut under, mut offline, mut topic_count) = (0, 0, 0, 0);
    for t in topics {
        topic_count += 1;
        for p in &t.partitions {
            partitions += 1;
            if p.leader_id.0 < 0 {
                offline += 1;
            }
            if p.isr_nodes.len() < p.replica_nodes.len() {
                under += 1;
            }
        }
    }
    if c.json {
        let v = json!({
            "cluster_id": cluster_id,
            "controller_id": controller,
            "brokers": brokers.iter().map(|(id, host, port, rack)| json!({
                "id": id, "host": host, "port": port, "rack": rack,
            })).collect::<Vec<_>>(),
            "topics": topic_count,
            "partitions": partitions,
            "under_replicated_partitions": under,
            "offline_partitions": offline,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!("Cluster id:   {cluster_id}");
    outln!("Controller:   {controller}");
    outln!(
        "Topics:       {topic_count}  Partitions: {partitions}  Under-replicated: {under}  Offline: {offline}"
    );
    outln!();
    let rows: Vec<Vec<String>> = brokers
        .iter()
        .map(|(id, host, port, rack)| {
            vec![
                id.to_string(),
                format!("{host}:{port}"),
                rack.clone().unwrap_or_else(|| "-".into()),
                if *id == controller { "yes" } else { "" }.to_string(),
            ]
        })
        .collect();
    table::print(&["BROKER", "ADDRESS", "RACK", "CONTROLLER"], &rows);
    Ok(())
}

/// `strand cluster under-replicated`: every partition whose ISR is smaller than its replica
/// set or that has no leader, with its leader, replicas, ISR and offline replicas.
pub async fn under_replicated(c: &Common) -> anyhow::Result<()> {
    let md = all_metadata(&mut c.connect().await?).await?;
    let ids =
        |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
    let mut found = Vec::new();
    for t in md.topics.iter().filter(|t| t.error_code == 0) {
        let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        for p in &t.partitions {
            if p.leader_id.0 < 0 || p.isr_nodes.len() < p.replica_nodes.len() {
                found.push((
                    name.clone(),
                    p.partition_index,
                    p.leader_id.0,
                    ids(&p.replica_nodes),
                    ids(&p.isr_nodes),
                    ids(&p.offline_replicas),
                ));
            }
        }
    }
    found.sort();
    if c.json {
        let v: Vec<_> = found
            .iter()
            .map(|(t, p, l, r, i, o)| {
                json!({"topic": t, "partition": p, "leader": l, "replicas": r, "isr": i,
                       "offline": o})
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let list = |v: &[i32]| {
        v.iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|(t, p, l, r, i, o)| {
            vec![
                t.clone(),
                p.to_string(),
                if *l < 0 { "none".into() } else { l.to_string() },
                list(r),
                list(i),
                list(o),
            ]
        })
        .collect();
    table::print(
        &["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR", "OFFLINE"],
        &rows,
    );
    Ok(())
}
