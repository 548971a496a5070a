//! DescribeTransactions: state, producer, timeout and partitions of transactional ids.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: DescribeTransactionsRequest,
) -> HandlerResult<DescribeTransactionsResponse> {
    let mut resp = DescribeTransactionsResponse::default();
    for id in req.transactional_ids {
        let mut s = TransactionState::default();
        let served = ctx.broker.txns.check_coordinator(&ctx.broker, &id.0);
        match ctx.broker.txns.get(&id.0) {
            _ if served.is_err() => {
                s.error_code = served.err().map_or(0, |e| e.code());
            }
            None => s.error_code = ResponseError::TransactionalIdNotFound.code(),
            Some(r) => {
                s.transaction_state = StrBytes::from_static_str(r.state.name());
                s.transaction_timeout_ms = r.timeout_ms;
                s.transaction_start_time_ms = r.start_ms;
                s.producer_id = ProducerId(r.producer_id);
                s.producer_epoch = r.producer_epoch;
                let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                for (t, p) in r.partitions {
                    by_topic.entry(t).or_default().push(p);
                }
                for (t, ps) in by_topic {
                    let mut td = TopicData::default();
                    td.topic = TopicName(StrBytes::from_string(t));
                    td.partitions = ps;
                    s.topics.push(td);
                }
            }
        }
        s.transactional_id = id;
        resp.transaction_states.push(s);
    }
    Ok(Some(resp))
}
