//! CreatePartitions: grows topics to a new partition count, optionally with an explicit replica
//! assignment per new partition. Results are per topic; a topic named twice in one request
//! fails with INVALID_REQUEST, as in Kafka.

use std::collections::HashMap;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::TopicError;
use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: CreatePartitionsRequest,
) -> HandlerResult<CreatePartitionsResponse> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.0.as_str()).or_default() += 1;
    }
    let mut resp = CreatePartitionsResponse::default();
    for t in &req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        let name = t.name.0.as_str();
        let result = if counts.get(name).copied().unwrap_or(0) > 1 {
            Err(TopicError::InvalidRequest(
                "Duplicate topic in request.".into(),
            ))
        } else {
            let assignments = t.assignments.as_ref().map(|a| {
                a.iter()
                    .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                    .collect()
            });
            ctx.broker
                .create_partitions(name, t.count, assignments, req.validate_only)
                .await
        };
        if let Err(e) = result {
            r.error_code = e.error_code().code();
            r.error_message = Some(StrBytes::from_string(e.client_message()));
        }
        resp.results.push(r);
    }
    Ok(Some(resp))
}
