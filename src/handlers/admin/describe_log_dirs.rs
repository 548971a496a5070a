//! DescribeLogDirs: the one log dir (`log.dirs`) with every hosted partition's size on disk
//! (all topics when `topics` is null; only the named partitions otherwise; unknown ones are
//! left out, as in Kafka). Replicas are never "future" (no log dir moves) and have no lag on a
//! single broker. Volume totals (v4) are reported as unknown (-1).

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Partition;
use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: DescribeLogDirsRequest,
) -> HandlerResult<DescribeLogDirsResponse> {
    let broker = &ctx.broker;
    let mut dir = DescribeLogDirsResult::default();
    let path = std::path::absolute(&broker.config.data_dir)
        .unwrap_or_else(|_| broker.config.data_dir.clone());
    dir.log_dir = StrBytes::from_string(path.to_string_lossy().into_owned());
    match &req.topics {
        None => {
            for t in broker.topics() {
                let parts: Vec<_> = t.hosted().map(|p| describe(p)).collect();
                dir.topics.push(topic(&t.record.name, parts));
            }
        }
        Some(wanted) => {
            for w in wanted {
                let Some(t) = broker.topic(&w.topic.0) else {
                    continue;
                };
                let parts: Vec<_> = w
                    .partitions
                    .iter()
                    .filter_map(|i| {
                        usize::try_from(*i)
                            .ok()
                            .and_then(|i| t.partitions.get(i))
                            .and_then(Option::as_ref)
                    })
                    .map(|p| describe(p))
                    .collect();
                if !parts.is_empty() {
                    dir.topics.push(topic(&t.record.name, parts));
                }
            }
        }
    }
    let mut resp = DescribeLogDirsResponse::default();
    resp.results.push(dir);
    Ok(Some(resp))
}

fn topic(name: &str, partitions: Vec<DescribeLogDirsPartition>) -> DescribeLogDirsTopic {
    let mut t = DescribeLogDirsTopic::default();
    t.name = TopicName(StrBytes::from_string(name.to_string()));
    t.partitions = partitions;
    t
}

fn describe(p: &Partition) -> DescribeLogDirsPartition {
    let mut d = DescribeLogDirsPartition::default();
    d.partition_index = p.index;
    d.partition_size = p.opened_log().map_or(0, |log| log.size_bytes() as i64);
    d.offset_lag = 0;
    d.is_future_key = false;
    d
}
