//! ConsumerGroupDescribe (KIP-848): epochs, assignor, and each member's subscription, current
//! and target assignment.

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::group::consumer::{self, TopicsView};
use crate::handlers::{HandlerResult, RequestContext};

fn assignment(a: &consumer::Assignment, topics: &TopicsView) -> Assignment {
    let mut out = Assignment::default();
    for (name, ps) in a {
        let mut tp = TopicPartitions::default();
        tp.topic_id = topics.get(name).map(|(id, _)| *id).unwrap_or_default();
        tp.topic_name = TopicName(StrBytes::from_string(name.clone()));
        tp.partitions = ps.iter().copied().collect();
        out.topic_partitions.push(tp);
    }
    out
}

pub async fn handle(
    ctx: RequestContext,
    req: ConsumerGroupDescribeRequest,
) -> HandlerResult<ConsumerGroupDescribeResponse> {
    let topics = ctx.broker.topics_view();
    let mut resp = ConsumerGroupDescribeResponse::default();
    for id in req.group_ids {
        let mut d = DescribedGroup::default();
        d.group_id = id.clone();
        if let Err(e) = ctx.broker.groups.check_coordinator(&id.0) {
            d.error_code = e.code();
            resp.groups.push(d);
            continue;
        }
        let found = ctx.broker.groups.with_consumer_group(&id.0, |g| {
            d.group_state = StrBytes::from_static_str(g.state_name());
            d.group_epoch = g.group_epoch;
            d.assignment_epoch = g.assignment_epoch;
            d.assignor_name = StrBytes::from_string(g.assignor.clone());
            for m in g.members.values() {
                let mut dm = Member::default();
                dm.member_id = StrBytes::from_string(m.id.clone());
                dm.instance_id = m.instance_id.clone().map(StrBytes::from_string);
                dm.rack_id = m.rack_id.clone().map(StrBytes::from_string);
                dm.member_epoch = m.epoch;
                dm.client_id = StrBytes::from_string(m.client_id.clone());
                dm.client_host = StrBytes::from_string(m.client_host.clone());
                dm.subscribed_topic_names = m
                    .subscribed
                    .iter()
                    .map(|t| TopicName(StrBytes::from_string(t.clone())))
                    .collect();
                dm.subscribed_topic_regex = m.regex.clone().map(StrBytes::from_string);
                dm.assignment = assignment(&m.assigned, &topics);
                dm.target_assignment = assignment(&g.target_of(&m.id), &topics);
                d.members.push(dm);
            }
        });
        if found.is_none() {
            d.error_code = ResponseError::GroupIdNotFound.code();
            d.error_message = Some(StrBytes::from_string(format!(
                "Group {} not found.",
                id.0.as_str()
            )));
            d.group_state = StrBytes::from_static_str("Dead");
        }
        resp.groups.push(d);
    }
    Ok(Some(resp))
}
