//! DeleteRecords: moves partitions' log start offsets forward (offset -1 = the high watermark),
//! deleting the segments entirely below it. Results are per partition with the new low
//! watermark. An offset above the high watermark is OFFSET_OUT_OF_RANGE; a topic whose
//! `cleanup.policy` lacks `delete` is POLICY_VIOLATION, as in Kafka.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: DeleteRecordsRequest,
) -> HandlerResult<DeleteRecordsResponse> {
    let mut resp = DeleteRecordsResponse::default();
    for t in &req.topics {
        let mut out = DeleteRecordsTopicResult::default();
        out.name = t.name.clone();
        for p in &t.partitions {
            let mut r = DeleteRecordsPartitionResult::default();
            r.partition_index = p.partition_index;
            match ctx
                .broker
                .delete_records(&t.name.0, p.partition_index, p.offset)
                .await
            {
                Ok(low) => r.low_watermark = low,
                Err(e) => {
                    r.low_watermark = -1;
                    r.error_code = e.error_code().code();
                }
            }
            out.partitions.push(r);
        }
        resp.topics.push(out);
    }
    Ok(Some(resp))
}
