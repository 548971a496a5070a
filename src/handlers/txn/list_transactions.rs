//! ListTransactions: transactional ids, filtered by state, producer id and (v1) running time.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::TxnState;
use crate::handlers::{HandlerResult, RequestContext};

const STATES: &[TxnState] = &[
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
];

pub async fn handle(
    ctx: RequestContext,
    req: ListTransactionsRequest,
) -> HandlerResult<ListTransactionsResponse> {
    let mut resp = ListTransactionsResponse::default();
    let known: Vec<String> = STATES.iter().map(|s| s.name().to_string()).collect();
    resp.unknown_state_filters = req
        .state_filters
        .iter()
        .filter(|f| !known.iter().any(|k| k.as_str() == f.as_str()))
        .cloned()
        .collect();
    let now = crate::broker::now_ms();
    for r in ctx.broker.txns.all() {
        if !req.state_filters.is_empty()
            && !req
                .state_filters
                .iter()
                .any(|f| f.as_str() == r.state.name())
        {
            continue;
        }
        if !req.producer_id_filters.is_empty()
            && !req.producer_id_filters.iter().any(|p| p.0 == r.producer_id)
        {
            continue;
        }
        if ctx.api_version >= 1
            && req.duration_filter >= 0
            && (r.state != TxnState::Ongoing || now - r.start_ms < req.duration_filter)
        {
            continue;
        }
        let mut s = TransactionState::default();
        s.transactional_id = TransactionalId(StrBytes::from_string(r.transactional_id));
        s.producer_id = ProducerId(r.producer_id);
        s.transaction_state = StrBytes::from_static_str(r.state.name());
        resp.transaction_states.push(s);
    }
    Ok(Some(resp))
}
