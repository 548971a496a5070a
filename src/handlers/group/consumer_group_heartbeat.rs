//! ConsumerGroupHeartbeat (KIP-848): join, stay, reconcile and leave a consumer group whose
//! assignment the broker computes. Topic ids in the request are resolved to names here; the
//! assignment goes back with the topics' current ids.

use std::time::Duration;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;

use crate::group::consumer::{self, Heartbeat};
use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: ConsumerGroupHeartbeatRequest,
) -> HandlerResult<ConsumerGroupHeartbeatResponse> {
    let topics = ctx.broker.topics_view();
    let owned = req.topic_partitions.as_ref().map(|tps| {
        let mut a = consumer::Assignment::new();
        for tp in tps {
            // Partitions of a topic that no longer exists are simply no longer owned.
            if let Some(name) = topics.name_of(&tp.topic_id) {
                a.entry(name.to_string())
                    .or_default()
                    .extend(tp.partitions.iter().copied());
            }
        }
        a
    });
    // v0 lets the broker choose a joining member's id; v1 clients bring their own.
    let member_id = if req.member_id.is_empty() && req.member_epoch == 0 && ctx.api_version == 0 {
        uuid::Uuid::new_v4().to_string()
    } else {
        req.member_id.to_string()
    };
    let hb = Heartbeat {
        member_id,
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: format!("/{}", ctx.peer.ip()),
        // -1 = unchanged (only the joining heartbeat must carry it).
        rebalance_timeout: (req.rebalance_timeout_ms >= 0)
            .then(|| Duration::from_millis(req.rebalance_timeout_ms as u64)),
        subscribed: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.0.to_string()).collect()),
        regex: req
            .subscribed_topic_regex
            .as_ref()
            .filter(|r| !r.is_empty())
            .map(|r| r.to_string()),
        assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
    };
    let groups = &ctx.broker.groups;
    let mut resp = ConsumerGroupHeartbeatResponse::default();
    match groups.consumer_heartbeat(&req.group_id.0, hb, &topics) {
        Err(e) => {
            resp.error_code = e.code();
            resp.error_message = Some(StrBytes::from_string(e.to_string()));
            resp.member_epoch = -1;
        }
        Ok(r) => {
            resp.member_id = Some(StrBytes::from_string(r.member_id));
            resp.member_epoch = r.member_epoch;
            resp.heartbeat_interval_ms = groups.consumer_heartbeat_interval().as_millis() as i32;
            resp.assignment = r.assignment.map(|a| {
                let mut out = Assignment::default();
                for (name, ps) in a {
                    if let Some((id, _)) = topics.get(&name) {
                        let mut tp = TopicPartitions::default();
                        tp.topic_id = *id;
                        tp.partitions = ps.into_iter().collect();
                        out.topic_partitions.push(tp);
                    }
                }
                out
            });
        }
    }
    Ok(Some(resp))
}
