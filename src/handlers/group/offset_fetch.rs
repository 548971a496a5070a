//! OffsetFetch: committed offsets of one group (v1–7) or several (v8+); -1 where none.
//! `require_stable` needs no waiting yet: without transactions no commit is ever pending.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::CommittedOffset;
use crate::group::{Result, TopicOffsets};
use crate::handlers::{HandlerResult, RequestContext};

type Fetched = Result<TopicOffsets>;

fn fields(o: &Option<CommittedOffset>) -> (i64, i32, Option<StrBytes>) {
    match o {
        Some(o) => (
            o.offset,
            o.leader_epoch,
            Some(StrBytes::from_string(o.metadata.clone())),
        ),
        None => (-1, -1, Some(StrBytes::default())),
    }
}

const UNSTABLE: i16 = kafka_protocol::ResponseError::UnstableOffsetCommit.code();

/// A transaction has uncommitted offsets for this partition (require_stable: the client must
/// wait and retry instead of reading an offset about to change).
fn unstable(ctx: &RequestContext, group: &str, topic: &str, partition: i32) -> bool {
    ctx.broker
        .groups
        .has_pending_offsets(group, topic, partition)
}

pub async fn handle(
    ctx: RequestContext,
    req: OffsetFetchRequest,
) -> HandlerResult<OffsetFetchResponse> {
    let v = ctx.api_version;
    let groups = &ctx.broker.groups;
    let mut resp = OffsetFetchResponse::default();
    if v >= 8 {
        for g in &req.groups {
            let wanted = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            // v9: a KIP-848 member says who it is; its epoch must be current.
            let member_check = match &g.member_id {
                Some(m) if v >= 9 && !m.is_empty() => {
                    groups.check_fetch_member(&g.group_id.0, m, g.member_epoch)
                }
                _ => Ok(()),
            };
            let fetched: Fetched =
                member_check.and_then(|_| groups.fetch_offsets(&g.group_id.0, wanted));
            let mut rg = OffsetFetchResponseGroup::default();
            rg.group_id = g.group_id.clone();
            match fetched {
                Err(e) => rg.error_code = e.code(),
                Ok(topics) => {
                    for (t, parts) in topics {
                        let mut rt = OffsetFetchResponseTopics::default();
                        rt.name =
                            kafka_protocol::messages::TopicName(StrBytes::from_string(t.clone()));
                        for (p, o) in parts {
                            let (offset, epoch, meta) = fields(&o);
                            let mut rp = OffsetFetchResponsePartitions::default();
                            rp.partition_index = p;
                            rp.committed_offset = offset;
                            rp.committed_leader_epoch = epoch;
                            rp.metadata = meta;
                            if req.require_stable && unstable(&ctx, &g.group_id.0, &t, p) {
                                rp.error_code = UNSTABLE;
                            }
                            rt.partitions.push(rp);
                        }
                        rg.topics.push(rt);
                    }
                }
            }
            resp.groups.push(rg);
        }
        return Ok(Some(resp));
    }
    let wanted = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    match groups.fetch_offsets(&req.group_id.0, wanted) {
        Err(e) => {
            if v >= 2 {
                resp.error_code = e.code();
            }
        }
        Ok(topics) => {
            for (t, parts) in topics {
                let mut rt = OffsetFetchResponseTopic::default();
                rt.name = kafka_protocol::messages::TopicName(StrBytes::from_string(t.clone()));
                for (p, o) in parts {
                    let (offset, epoch, meta) = fields(&o);
                    let mut rp = OffsetFetchResponsePartition::default();
                    rp.partition_index = p;
                    rp.committed_offset = offset;
                    if v >= 5 {
                        rp.committed_leader_epoch = epoch;
                    }
                    rp.metadata = meta;
                    if v >= 7 && req.require_stable && unstable(&ctx, &req.group_id.0, &t, p) {
                        rp.error_code = UNSTABLE;
                    }
                    rt.partitions.push(rp);
                }
                resp.topics.push(rt);
            }
        }
    }
    Ok(Some(resp))
}
