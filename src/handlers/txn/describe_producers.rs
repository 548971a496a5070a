//! DescribeProducers: the idempotent/transactional producers each partition knows.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: DescribeProducersRequest,
) -> HandlerResult<DescribeProducersResponse> {
    let mut resp = DescribeProducersResponse::default();
    for t in req.topics {
        let mut rt = TopicResponse::default();
        for p in t.partition_indexes {
            let mut rp = PartitionResponse::default();
            rp.partition_index = p;
            match ctx.broker.partition(&t.name.0, p) {
                None => rp.error_code = ctx.broker.not_hosted_error(&t.name.0, p).code(),
                Some(part) => match part.log() {
                    Err(e) => rp.error_code = e.error_code().code(),
                    Ok(log) => {
                        for a in log.active_producers() {
                            let mut s = ProducerState::default();
                            s.producer_id = ProducerId(a.producer_id);
                            s.producer_epoch = i32::from(a.epoch);
                            s.last_sequence = a.last_sequence;
                            s.last_timestamp = a.last_timestamp;
                            s.coordinator_epoch = 0;
                            s.current_txn_start_offset = a.ongoing_txn_first_offset.unwrap_or(-1);
                            rp.active_producers.push(s);
                        }
                    }
                },
            }
            rt.partitions.push(rp);
        }
        rt.name = t.name;
        resp.topics.push(rt);
    }
    Ok(Some(resp))
}
