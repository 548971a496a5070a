//! TxnOffsetCommit (sent to the group coordinator): offsets committed inside a transaction,
//! kept pending by the group coordinator and visible once the transaction's marker commits
//! them. From v3 the group membership (generation, member id) is checked like OffsetCommit;
//! where this broker also coordinates the transactional id, the producer and its open
//! transaction are checked too.
//! Partitions that do not exist get UNKNOWN_TOPIC_OR_PARTITION; the others are committed.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;

use crate::cluster::CommittedOffset;
use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: TxnOffsetCommitRequest,
) -> HandlerResult<TxnOffsetCommitResponse> {
    let b = &ctx.broker;
    let v = ctx.api_version;
    let now = crate::broker::now_ms();
    let mut offsets = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            if b.partition_exists(&t.name.0, p.partition_index) {
                offsets.push((
                    t.name.0.to_string(),
                    p.partition_index,
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if v >= 2 { p.committed_leader_epoch } else { -1 },
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        commit_timestamp: now,
                    },
                ));
            }
        }
    }
    let group = req.group_id.0.to_string();
    let member_check = if v >= 3 && req.generation_id >= 0 {
        b.groups
            .check_txn_member(
                &group,
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id,
            )
            .map_err(|e| e.code())
    } else {
        b.groups
            .check_coordinator(&group)
            .map(|_| ())
            .map_err(|e| e.code())
    };
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    let result: Result<(), i16> = match member_check {
        Ok(()) => match b
            .txns
            .check_offset_commit(b, &req.transactional_id.0, pid, epoch, &group)
            // KIP-588: PRODUCER_FENCED from v2 on.
            .map_err(|e| e.code_for(v, 2))
        {
            Ok(()) if offsets.is_empty() => Ok(()),
            Ok(()) => b
                .groups
                .commit_transactional(&group, pid, epoch, offsets)
                .await
                .map_err(|e| e.code()),
            Err(code) => Err(code),
        },
        Err(code) => Err(code),
    };
    let mut resp = TxnOffsetCommitResponse::default();
    for t in &req.topics {
        let mut rt = TxnOffsetCommitResponseTopic::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = TxnOffsetCommitResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = if !b.partition_exists(&t.name.0, p.partition_index) {
                ResponseError::UnknownTopicOrPartition.code()
            } else {
                result.err().unwrap_or(0)
            };
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    Ok(Some(resp))
}
