//! WriteTxnMarkers (inter-broker, sent by transaction coordinators): writes each marker into
//! the partitions this broker leads (NOT_LEADER_OR_FOLLOWER for others), and for partitions of
//! `__consumer_offsets` ends the producer's pending offsets in that group slot (the group
//! coordinator's NOT_COORDINATOR if this broker does not hold the slot). Answered once every
//! marker is durable.

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::handlers::{HandlerResult, RequestContext};
use crate::txn::markers::{write_local, GROUP_SLOTS_TOPIC};

pub async fn handle(
    ctx: RequestContext,
    req: WriteTxnMarkersRequest,
) -> HandlerResult<WriteTxnMarkersResponse> {
    let b = &ctx.broker;
    let mut resp = WriteTxnMarkersResponse::default();
    for m in req.markers {
        let mut result = WritableTxnMarkerResult::default();
        result.producer_id = m.producer_id;
        for t in m.topics {
            let mut rt = WritableTxnMarkerTopicResult::default();
            let topic = t.name.0.to_string();
            let codes: Vec<i16> = if topic == GROUP_SLOTS_TOPIC {
                let mut codes = Vec::with_capacity(t.partition_indexes.len());
                for &slot in &t.partition_indexes {
                    let code = match u32::try_from(slot) {
                        Ok(slot) => b
                            .groups
                            .complete_transaction(slot, m.producer_id.0, m.transaction_result)
                            .await
                            .map_or_else(|e| e.code(), |()| 0),
                        Err(_) => kafka_protocol::ResponseError::UnknownTopicOrPartition.code(),
                    };
                    codes.push(code);
                }
                codes
            } else {
                let partitions: Vec<(String, i32)> = t
                    .partition_indexes
                    .iter()
                    .map(|&p| (topic.clone(), p))
                    .collect();
                write_local(
                    b,
                    m.producer_id.0,
                    m.producer_epoch,
                    m.transaction_result,
                    &partitions,
                )
                .await
            };
            for (&p, code) in t.partition_indexes.iter().zip(codes) {
                let mut rp = WritableTxnMarkerPartitionResult::default();
                rp.partition_index = p;
                rp.error_code = code;
                rt.partitions.push(rp);
            }
            rt.name = t.name;
            result.topics.push(rt);
        }
        resp.markers.push(result);
    }
    Ok(Some(resp))
}
