//! AddPartitionsToTxn (client versions 0–3): the partitions a transactional producer is about to
//! write. Unknown partitions fail with UNKNOWN_TOPIC_OR_PARTITION and the rest of the request
//! with OPERATION_NOT_ATTEMPTED, as in Kafka.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use kafka_protocol::ResponseError;

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: AddPartitionsToTxnRequest,
) -> HandlerResult<AddPartitionsToTxnResponse> {
    let b = &ctx.broker;
    let mut wanted = Vec::new();
    let mut unknown = false;
    for t in &req.v3_and_below_topics {
        for p in &t.partitions {
            if !b.partition_exists(&t.name.0, *p) {
                unknown = true;
            }
            wanted.push((t.name.0.to_string(), *p));
        }
    }
    let result = if unknown {
        Err(None)
    } else {
        b.txns
            .add_partitions(
                b,
                &req.v3_and_below_transactional_id.0,
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
                wanted,
            )
            .await
            .map_err(Some)
    };
    let mut resp = AddPartitionsToTxnResponse::default();
    for t in &req.v3_and_below_topics {
        let mut rt = AddPartitionsToTxnTopicResult::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = AddPartitionsToTxnPartitionResult::default();
            rp.partition_index = *p;
            rp.partition_error_code = match &result {
                Ok(()) => 0,
                Err(Some(e)) => e.code_for(ctx.api_version, 2),
                Err(None) if !b.partition_exists(&t.name.0, *p) => {
                    ResponseError::UnknownTopicOrPartition.code()
                }
                Err(None) => ResponseError::OperationNotAttempted.code(),
            };
            rt.results_by_partition.push(rp);
        }
        resp.results_by_topic_v3_and_below.push(rt);
    }
    Ok(Some(resp))
}
