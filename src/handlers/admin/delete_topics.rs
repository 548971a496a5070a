//! DeleteTopics: by name (all versions) or by topic id (v6+).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::broker::TopicError;
use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: DeleteTopicsRequest,
) -> HandlerResult<DeleteTopicsResponse> {
    let v = ctx.api_version;
    let targets: Vec<(Option<String>, Uuid)> = if v >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut resp = DeleteTopicsResponse::default();
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default();
        let resolved = match &name {
            Some(n) => Ok(n.clone()),
            None => ctx
                .broker
                .topic_by_id(id)
                .map(|t| t.record.name.clone())
                .ok_or(ResponseError::UnknownTopicId),
        };
        if v >= 6 {
            r.topic_id = id;
        }
        match resolved {
            Err(code) => r.error_code = code.code(),
            Ok(n) => {
                r.name = Some(TopicName(StrBytes::from_string(n.clone())));
                match ctx.broker.delete_topic(&n).await {
                    Ok(record) => {
                        if v >= 6 {
                            r.topic_id = record.id;
                        }
                    }
                    Err(e) => {
                        r.error_code = e.error_code().code();
                        if v >= 5 && !matches!(e, TopicError::UnknownTopic) {
                            r.error_message = Some(StrBytes::from_string(e.client_message()));
                        }
                    }
                }
            }
        }
        if v < 6 && r.name.is_none() {
            r.name = Some(TopicName::default());
        }
        resp.responses.push(r);
    }
    Ok(Some(resp))
}
