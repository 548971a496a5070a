//! InitProducerId: a fresh producer id (epoch 0) for an idempotent producer. A producer that
//! already has an id and asks again (KIP-360, after UNKNOWN_PRODUCER_ID or a sequence problem)
//! also gets a fresh id, as Kafka does for producers without a transactional id.
//! Transactional producers are not served yet: they get TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
//! a fatal error, rather than a retriable one they would retry forever.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: InitProducerIdRequest,
) -> HandlerResult<InitProducerIdResponse> {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if req.transactional_id.is_some() {
        resp.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return Ok(Some(resp));
    }
    match ctx.broker.producer_ids.next_id().await {
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
