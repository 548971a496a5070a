//! AddOffsetsToTxn: the group whose offsets the transaction will commit.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: AddOffsetsToTxnRequest,
) -> HandlerResult<AddOffsetsToTxnResponse> {
    let b = &ctx.broker;
    let mut resp = AddOffsetsToTxnResponse::default();
    if let Err(e) = b
        .txns
        .add_offsets(
            b,
            &req.transactional_id.0,
            req.producer_id.0,
            req.producer_epoch,
            &req.group_id.0,
        )
        .await
    {
        resp.error_code = e.code_for(ctx.api_version, 2);
    }
    Ok(Some(resp))
}
