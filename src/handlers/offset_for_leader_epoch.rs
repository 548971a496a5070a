//! OffsetForLeaderEpoch: the end offset of a leader epoch, used by consumers after a leader
//! change (KIP-320) and by followers to find where to truncate.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use super::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: OffsetForLeaderEpochRequest,
) -> HandlerResult<OffsetForLeaderEpochResponse> {
    let mut resp = OffsetForLeaderEpochResponse::default();
    for topic in req.topics {
        let mut out = OffsetForLeaderTopicResult::default();
        out.topic = topic.topic.clone();
        for p in topic.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            match ctx.broker.partition(&topic.topic.0, p.partition) {
                None => {
                    e.error_code = ctx
                        .broker
                        .not_hosted_error(&topic.topic.0, p.partition)
                        .code()
                }
                Some(part) => {
                    let current = part.leader_epoch();
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < current {
                        e.error_code = ResponseError::FencedLeaderEpoch.code();
                    } else if p.current_leader_epoch > current {
                        e.error_code = ResponseError::UnknownLeaderEpoch.code();
                    } else {
                        match part.log() {
                            Ok(log) => {
                                let (epoch, end) = if part.is_leader() {
                                    log.leader_epoch_end_offset(p.leader_epoch, current)
                                } else {
                                    log.epoch_end_offset(p.leader_epoch)
                                };
                                e.leader_epoch = epoch;
                                e.end_offset = end;
                            }
                            Err(err) => e.error_code = err.error_code().code(),
                        }
                    }
                }
            }
            out.partitions.push(e);
        }
        resp.topics.push(out);
    }
    Ok(Some(resp))
}
