//! EndTxn: commit or abort. Answered once every partition has its marker (and, on commit, the
//! transaction's offsets are visible).

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(ctx: RequestContext, req: EndTxnRequest) -> HandlerResult<EndTxnResponse> {
    let b = &ctx.broker;
    let mut resp = EndTxnResponse::default();
    if let Err(e) = b
        .txns
        .end(
            b,
            &req.transactional_id.0,
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
        )
        .await
    {
        resp.error_code = e.code_for(ctx.api_version, 2);
    }
    Ok(Some(resp))
}
