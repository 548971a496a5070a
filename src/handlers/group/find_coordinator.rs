//! FindCoordinator (v0–3 one key, v4+ batched): names the broker holding the key's coordinator
//! slot (`crate::cluster::slots`), from any broker; COORDINATOR_NOT_AVAILABLE while the slot
//! has no live holder (its broker died and no other has claimed it yet). Share-group keys get
//! COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::cluster::slots::slot_of;
use crate::cluster::CoordinatorKind;
use crate::handlers::{HandlerResult, RequestContext};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// `(error, node id, host, port)` for one key.
fn locate(
    ctx: &RequestContext,
    key: &str,
    key_type: i8,
) -> (Option<ResponseError>, i32, String, i32) {
    let b = &ctx.broker;
    if key_type != KEY_TYPE_GROUP && key_type != KEY_TYPE_TRANSACTION {
        // Share groups (2) are not served.
        let e = if key_type == 2 {
            ResponseError::CoordinatorNotAvailable
        } else {
            ResponseError::InvalidRequest
        };
        return (Some(e), -1, String::new(), -1);
    }
    // An empty group id is served too (Kafka keeps this for old clients' offset commits).
    if key.is_empty() && key_type != KEY_TYPE_GROUP {
        return (Some(ResponseError::InvalidRequest), -1, String::new(), -1);
    }
    let kind = if key_type == KEY_TYPE_GROUP {
        CoordinatorKind::Group
    } else {
        CoordinatorKind::Txn
    };
    let store = b.store();
    let slot = slot_of(key, store.coordinator_slots().of(kind));
    let holder = store.slot_holders(kind).get(&slot).map(|h| h.node_id);
    match holder.and_then(|n| b.brokers().into_iter().find(|r| r.node_id == n)) {
        Some(r) => (None, r.node_id, r.host, i32::from(r.port)),
        None => (
            Some(ResponseError::CoordinatorNotAvailable),
            -1,
            String::new(),
            -1,
        ),
    }
}

pub async fn handle(
    ctx: RequestContext,
    req: FindCoordinatorRequest,
) -> HandlerResult<FindCoordinatorResponse> {
    let v = ctx.api_version;
    let mut resp = FindCoordinatorResponse::default();
    if v >= 4 {
        for key in &req.coordinator_keys {
            let (err, node, host, port) = locate(&ctx, key, req.key_type);
            let mut c = Coordinator::default();
            c.key = key.clone();
            c.node_id = BrokerId(node);
            c.host = StrBytes::from_string(host);
            c.port = port;
            if let Some(e) = err {
                c.error_code = e.code();
                c.error_message = Some(StrBytes::from_string(e.to_string()));
            }
            resp.coordinators.push(c);
        }
    } else {
        let (err, node, host, port) = locate(&ctx, &req.key, if v >= 1 { req.key_type } else { 0 });
        resp.node_id = BrokerId(node);
        resp.host = StrBytes::from_string(host);
        resp.port = port;
        if let Some(e) = err {
            resp.error_code = e.code();
            if v >= 1 {
                resp.error_message = Some(StrBytes::from_string(e.to_string()));
            }
        }
    }
    Ok(Some(resp))
}
