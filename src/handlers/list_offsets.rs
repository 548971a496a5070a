//! ListOffsets: offsets by time. `-1` latest (the high watermark, or the last stable offset for
//! read_committed), `-2` earliest (the log start offset), `-3` the record with the largest
//! timestamp (KIP-734, v7+), `-4` earliest local (KIP-405, v8+: the log start offset, as every
//! segment is local), `-5` latest tiered (KIP-1005, v9+: no offset, -1, as Kafka answers without
//! tiered storage), and a timestamp `t >= 0` → the first record whose timestamp is `>= t`, or
//! offset -1 when there is none. v10 adds a timeout for remote lookups, which never wait here.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::{HandlerError, HandlerResult, RequestContext};
use crate::broker::{Broker, Partition};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
const READ_COMMITTED: i8 = 1;

pub async fn handle(
    ctx: RequestContext,
    req: ListOffsetsRequest,
) -> HandlerResult<ListOffsetsResponse> {
    let (broker, v) = (ctx.broker.clone(), ctx.api_version);
    // Timestamp lookups read segments (file I/O): off the async workers.
    let resp = tokio::task::spawn_blocking(move || answer(&broker, v, req))
        .await
        .map_err(|e| HandlerError::Close(format!("ListOffsets task failed: {e}")))?;
    Ok(Some(resp))
}

fn answer(broker: &Broker, v: i16, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut resp = ListOffsetsResponse::default();
    for topic in req.topics {
        let mut out = ListOffsetsTopicResponse::default();
        out.name = topic.name.clone();
        for lp in topic.partitions {
            let mut r = ListOffsetsPartitionResponse::default();
            r.partition_index = lp.partition_index;
            r.timestamp = -1;
            r.offset = -1;
            match broker.partition(&topic.name.0, lp.partition_index) {
                None => {
                    r.error_code = broker
                        .not_hosted_error(&topic.name.0, lp.partition_index)
                        .code()
                }
                Some(p) => {
                    let current = p.leader_epoch();
                    if v >= 4 && lp.current_leader_epoch >= 0 && lp.current_leader_epoch != current
                    {
                        r.error_code = if lp.current_leader_epoch < current {
                            ResponseError::FencedLeaderEpoch.code()
                        } else {
                            ResponseError::UnknownLeaderEpoch.code()
                        };
                    } else {
                        match lookup(&p, lp.timestamp, req.isolation_level, v) {
                            Ok((ts, off)) => {
                                r.timestamp = ts;
                                r.offset = off;
                                if v >= 4 && off >= 0 {
                                    r.leader_epoch = current;
                                }
                            }
                            Err(e) => r.error_code = e.code(),
                        }
                    }
                }
            }
            if v < 4 {
                r.leader_epoch = -1;
            }
            out.partitions.push(r);
        }
        resp.topics.push(out);
    }
    resp
}

/// Returns `(timestamp, offset)` for one partition.
fn lookup(p: &Partition, ts: i64, isolation: i8, v: i16) -> Result<(i64, i64), ResponseError> {
    let map = |e: crate::storage::StorageError| e.error_code();
    let log = p.log().map_err(map)?;
    match ts {
        LATEST => Ok((
            -1,
            if isolation == READ_COMMITTED {
                p.last_stable_offset()
            } else {
                p.high_watermark()
            },
        )),
        EARLIEST => Ok((-1, log.log_start_offset())),
        EARLIEST_LOCAL if v >= 8 => Ok((-1, log.log_start_offset())),
        LATEST_TIERED if v >= 9 => Ok((-1, -1)),
        MAX_TIMESTAMP if v >= 7 => Ok(log
            .max_timestamp()
            .map_err(map)?
            .map_or((-1, -1), |t| (t.timestamp, t.offset))),
        t if t >= 0 => {
            let found = log.offset_for_timestamp(t).map_err(map)?;
            // Never point past what readers may see (read_committed: the last stable offset).
            let visible = if isolation == READ_COMMITTED {
                p.last_stable_offset()
            } else {
                p.high_watermark()
            };
            Ok(found
                .filter(|f| f.offset < visible)
                .map_or((-1, -1), |f| (f.timestamp, f.offset)))
        }
        _ => Err(ResponseError::InvalidRequest),
    }
}
