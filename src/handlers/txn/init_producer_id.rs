//! InitProducerId. Without a transactional id: a fresh producer id (epoch 0) for an idempotent
//! producer; one that already has an id and asks again (KIP-360) also gets a fresh id, as
//! Kafka does for producers without a transactional id. With one: the transaction
//! coordinator's producer id for it, at a new epoch that fences older incarnations.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: InitProducerIdRequest,
) -> HandlerResult<InitProducerIdResponse> {
    let b = &ctx.broker;
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if let Some(id) = &req.transactional_id {
        let expected = (ctx.api_version >= 3 && req.producer_id.0 >= 0)
            .then_some((req.producer_id.0, req.producer_epoch));
        match b
            .txns
            .init_producer(b, &id.0, req.transaction_timeout_ms, expected)
            .await
        {
            Ok((pid, epoch)) => {
                resp.producer_id = ProducerId(pid);
                resp.producer_epoch = epoch;
            }
            Err(e) => resp.error_code = e.code_for(ctx.api_version, 4),
        }
        return Ok(Some(resp));
    }
    match b.producer_ids.next_id().await {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!("cannot allocate producer ids: {e}");
            resp.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
    }
    Ok(Some(resp))
}
