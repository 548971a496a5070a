//! Fetch: read record batches, long-polling until `min_bytes` are available or `max_wait_ms`
//! has passed.
//!
//! Limits follow KIP-74: each partition returns at most `partition_max_bytes` and the response
//! at most `max_bytes` (itself capped by the broker's `fetch.max.bytes`, or
//! `replica.fetch.response.max.bytes` for a replica), except that the first partition with data always returns at least one
//! whole batch, so a batch larger than the limits can never stall a consumer. Batches go from
//! the page cache into the response as bytes; nothing is decoded.
//!
//! read_committed (isolation level 1) reads stop at the last stable offset, and each partition
//! lists the aborted transactions overlapping the returned offsets (from the fetch offset to the
//! last offset of the last returned batch), so the consumer can drop their records.
//!
//! Fetch sessions (KIP-227) are declined by answering session id 0, which clients treat as
//! "send full fetch requests"; that is always allowed by the protocol.

use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{HandlerResult, RequestContext};
use crate::broker::Broker;
use crate::storage::batch::BatchHeader;
use crate::storage::StorageError;

const READ_COMMITTED: i8 = 1;

pub async fn handle(ctx: RequestContext, req: FetchRequest) -> HandlerResult<FetchResponse> {
    let v = ctx.api_version;
    if v >= 7 && req.session_id != 0 {
        let mut resp = FetchResponse::default();
        resp.error_code = ResponseError::FetchSessionIdNotFound.code();
        return Ok(Some(resp));
    }
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let req = std::sync::Arc::new(req);
    loop {
        // Subscribe before reading so that an append between the read and the wait wakes us.
        let mut watches = subscribe(&ctx, &req);
        let (resp, bytes, errors) = read(&ctx, &req).await;
        let done = bytes >= req.min_bytes.max(0) as usize
            || errors
            || req.max_wait_ms <= 0
            || watches.is_empty()
            || Instant::now() >= deadline;
        if done {
            count_bytes_out(&ctx, &resp);
            return Ok(Some(resp));
        }
        let _waiting = crate::metrics::Purgatory::Fetch.enter();
        let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        let mut stopping = ctx.broker.shutdown_signal();
        let woke = tokio::select! {
            r = tokio::time::timeout_at(deadline, changed) => r.is_ok(),
            // The broker is stopping: answer with what there is now.
            _ = stopping.wait_for(|s| *s) => false,
        };
        if !woke {
            let (resp, _, _) = read(&ctx, &req).await;
            count_bytes_out(&ctx, &resp);
            return Ok(Some(resp));
        }
    }
}

/// Adds the record bytes of the response being sent to each topic's bytes-out counter.
fn count_bytes_out(ctx: &RequestContext, resp: &FetchResponse) {
    for t in &resp.responses {
        for pd in &t.partitions {
            let n = pd.records.as_ref().map_or(0, |r| r.len());
            if n > 0 {
                if let Some(p) = ctx.broker.partition(&t.topic.0, pd.partition_index) {
                    p.metrics.bytes_out.increment(n as u64);
                }
            }
        }
    }
}

fn subscribe(ctx: &RequestContext, req: &FetchRequest) -> Vec<watch::Receiver<i64>> {
    req.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter_map(|p| ctx.broker.partition(&t.topic.0, p.partition))
        })
        .map(|p| p.subscribe())
        .collect()
}

/// Reads every requested partition once. Returns the response, the record bytes in it, and
/// whether any partition had an error (errors are answered at once, without waiting).
/// [`read_all`] on a blocking thread (segment reads are file I/O).
async fn read(
    ctx: &RequestContext,
    req: &std::sync::Arc<FetchRequest>,
) -> (FetchResponse, usize, bool) {
    let (broker, v, req) = (ctx.broker.clone(), ctx.api_version, req.clone());
    match tokio::task::spawn_blocking(move || read_all(&broker, v, &req)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("fetch read task failed: {e}");
            let mut resp = FetchResponse::default();
            resp.error_code = ResponseError::UnknownServerError.code();
            (resp, 0, true)
        }
    }
}

fn read_all(broker: &Broker, v: i16, req: &FetchRequest) -> (FetchResponse, usize, bool) {
    let mut resp = FetchResponse::default();
    // The broker's own bound, whatever the client asks: nothing is allocated for more.
    let replica = if v >= 15 {
        req.replica_state.replica_id.0 >= 0
    } else {
        req.replica_id.0 >= 0
    };
    let cap = if replica {
        broker.config.replica_fetch_response_max_bytes
    } else {
        broker.config.fetch_max_bytes
    };
    let mut remaining = req.max_bytes.clamp(0, cap) as usize;
    let mut total = 0usize;
    let mut any_error = false;
    let mut min_one = true;
    for topic in &req.topics {
        let mut out = FetchableTopicResponse::default();
        out.topic = topic.topic.clone();
        for fp in &topic.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = fp.partition;
            pd.high_watermark = -1;
            pd.last_stable_offset = -1;
            pd.log_start_offset = -1;
            pd.records = Some(Bytes::new());
            match broker.partition(&topic.topic.0, fp.partition) {
                None => {
                    pd.error_code = ResponseError::UnknownTopicOrPartition.code();
                    any_error = true;
                }
                Some(p) => {
                    let hw = p.high_watermark();
                    let lso = p.last_stable_offset();
                    pd.high_watermark = hw;
                    pd.last_stable_offset = lso;
                    pd.log_start_offset = p.opened_log().map_or(-1, |log| log.log_start_offset());
                    let upper = if req.isolation_level == READ_COMMITTED {
                        lso
                    } else {
                        hw
                    };
                    // Only read_committed answers carry the list (null otherwise, as Kafka;
                    // the message's default is an empty list).
                    pd.aborted_transactions =
                        (req.isolation_level == READ_COMMITTED).then(Vec::new);
                    let current = p.leader_epoch();
                    if v >= 9 && fp.current_leader_epoch >= 0 && fp.current_leader_epoch != current
                    {
                        pd.error_code = if fp.current_leader_epoch < current {
                            ResponseError::FencedLeaderEpoch.code()
                        } else {
                            ResponseError::UnknownLeaderEpoch.code()
                        };
                        any_error = true;
                    } else {
                        let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
                        match p
                            .log()
                            .and_then(|log| log.read(fp.fetch_offset, limit, upper, min_one))
                        {
                            Ok(r) => {
                                pd.log_start_offset = r.log_start_offset;
                                let n = r.records.len();
                                if n > 0 {
                                    min_one = false;
                                }
                                remaining = remaining.saturating_sub(n);
                                total += n;
                                if req.isolation_level == READ_COMMITTED {
                                    if let Some(last) = last_offset(&r.records) {
                                        let aborted = p
                                            .opened_log()
                                            .map(|log| {
                                                log.aborted_transactions(fp.fetch_offset, last + 1)
                                            })
                                            .unwrap_or_default()
                                            .into_iter()
                                            .map(|(pid, first)| {
                                                let mut a = AbortedTransaction::default();
                                                a.producer_id = ProducerId(pid);
                                                a.first_offset = first;
                                                a
                                            })
                                            .collect();
                                        pd.aborted_transactions = Some(aborted);
                                    }
                                }
                                pd.records = Some(r.records);
                            }
                            Err(e) => {
                                let expected = matches!(
                                    e,
                                    StorageError::OffsetOutOfRange { .. }
                                        | StorageError::LogDirOffline
                                );
                                if !expected {
                                    tracing::error!(topic = %p.topic, partition = p.index, "read failed: {e}");
                                }
                                pd.error_code = e.error_code().code();
                                any_error = true;
                            }
                        }
                    }
                }
            }
            if v < 5 {
                pd.log_start_offset = -1;
            }
            out.partitions.push(pd);
        }
        resp.responses.push(out);
    }
    (resp, total, any_error)
}

/// The last offset (`baseOffset + lastOffsetDelta`) of the last whole batch in `records`.
fn last_offset(records: &[u8]) -> Option<i64> {
    let mut pos = 0usize;
    let mut last = None;
    while let Some(h) = records.get(pos..).and_then(BatchHeader::parse) {
        match h.total_size() {
            Some(n) if pos + n <= records.len() => {
                last = Some(h.last_offset());
                pos += n;
            }
            _ => break,
        }
    }
    last
}
