//! Produce: append record batches to partition logs.
//!
//! Order of work: validate acks → for every partition, in this connection's request order
//! (the sequencer turn), validate and append its batches → release the turn → for acks=all, wait
//! until the appended offsets are fsynced (group commit shares one fdatasync between every
//! request waiting on a partition) → respond. Errors are per partition. With acks=0 no response
//! is sent, and any error closes the connection, as Kafka does, so the client learns of it.
//!
//! Records stay bytes from the socket to the disk: the request body is sliced, never decoded
//! record by record.

use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use super::{HandlerError, HandlerResult, RequestContext};
use crate::broker::{now_ms, Located, Partition};
use crate::cluster::BrokerRegistration;
use crate::storage::batch::BatchHeader;
use crate::storage::records::BatchRecords;

struct Outcome {
    error: Option<ResponseError>,
    base_offset: i64,
    log_append_time: i64,
    log_start_offset: i64,
    /// Exclusive end offset to wait for with acks=all.
    durable_until: Option<i64>,
    /// KIP-467: the records (index within the batch) that made the batch fail, with why.
    record_errors: Vec<(i32, String)>,
    /// KIP-951: the partition's leader (another broker) and its epoch, for a client that sent
    /// the batch to the wrong broker.
    leader: Option<(BrokerRegistration, i32)>,
}

/// `(partition index, the partition if it exists, what happened)`.
type PartitionResult = (i32, Option<std::sync::Arc<Partition>>, Outcome);

impl Outcome {
    fn error(error: ResponseError) -> Outcome {
        Outcome {
            error: Some(error),
            base_offset: -1,
            log_append_time: -1,
            log_start_offset: -1,
            durable_until: None,
            record_errors: vec![],
            leader: None,
        }
    }
}

pub async fn handle(
    mut ctx: RequestContext,
    req: ProduceRequest,
) -> HandlerResult<ProduceResponse> {
    if ctx.api_version < 3 {
        return Err(HandlerError::Close(
            "Produce below v3 (message format v0/v1) is not supported".into(),
        ));
    }
    let acks = req.acks;
    let valid_acks = matches!(acks, -1..=1);
    if !valid_acks {
        return respond_all(&ctx, req, ResponseError::InvalidRequiredAcks, acks);
    }

    // The ordered part: appends happen in request order on this connection.
    let turn = match ctx.ticket.take() {
        Some(t) => Some(t.enter().await),
        None => None,
    };
    let now = now_ms();
    let mut results: Vec<(String, Vec<PartitionResult>)> = Vec::with_capacity(req.topic_data.len());
    // The appends (file writes, rolls) run on a blocking thread, all of a request in one go.
    let mut jobs: Vec<(std::sync::Arc<Partition>, Bytes)> = Vec::new();
    let mut job_slots: Vec<(usize, usize)> = Vec::new();
    for topic in &req.topic_data {
        let name = topic.name.0.to_string();
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for pd in &topic.partition_data {
            let partition = ctx.broker.partition(&name, pd.index);
            let outcome = match (&partition, &pd.records) {
                (None, _) => {
                    let mut o = Outcome::error(ctx.broker.not_hosted_error(&name, pd.index));
                    if let Located::Elsewhere {
                        leader: Some(leader),
                        leader_epoch,
                    } = ctx.broker.locate(&name, pd.index)
                    {
                        o.leader = Some((leader, leader_epoch));
                    }
                    o
                }
                // Its registration may have expired at etcd (unreachable): another broker may
                // lead now, so nothing is acknowledged.
                (Some(_), _) if !ctx.broker.is_live() => {
                    Outcome::error(ResponseError::NotLeaderOrFollower)
                }
                (Some(_), None) => Outcome::error(ResponseError::InvalidRecord),
                // acks=all needs min.insync.replicas in the ISR before anything is appended.
                (Some(p), _) if acks == -1 && !p.enough_in_sync() => {
                    Outcome::error(ResponseError::NotEnoughReplicas)
                }
                (Some(p), Some(records)) => {
                    let late = timestamp_bounds(&ctx, &name)
                        .map(|(before, after)| out_of_range_timestamps(records, now, before, after))
                        .filter(|bad| !bad.is_empty());
                    if let Err(e) = verify_transactional(&ctx, &name, pd.index, records) {
                        Outcome::error(e)
                    } else if let Some(bad) = late {
                        // Kafka: INVALID_TIMESTAMP, naming each record out of range (KIP-467).
                        let mut o = Outcome::error(ResponseError::InvalidTimestamp);
                        o.record_errors = bad;
                        o
                    } else if let Some(bad) = compacted(&ctx, &name)
                        .then(|| keyless_records(records))
                        .filter(|bad| !bad.is_empty())
                    {
                        // Kafka refuses records without a key on a compacted topic, naming them.
                        let mut o = Outcome::error(ResponseError::InvalidRecord);
                        o.record_errors = bad
                            .into_iter()
                            .map(|i| {
                                let why = format!(
                                    "Compacted topic cannot accept message without key in topic partition {name}-{}.",
                                    pd.index
                                );
                                (i, why)
                            })
                            .collect();
                        o
                    } else {
                        jobs.push((p.clone(), records.clone()));
                        job_slots.push((results.len(), parts.len()));
                        Outcome::error(ResponseError::UnknownServerError)
                    }
                }
            };
            parts.push((pd.index, partition, outcome));
        }
        results.push((name, parts));
    }
    if !jobs.is_empty() {
        // A plain append is a write into the page cache, done here: handing each request to
        // another thread costs more than the write (+2 ms p50 at acks=all, 10k msgs/s, see
        // docs/architecture.md). An append that could wait (it rolls a segment, which fsyncs;
        // page-cache mode; the disk is behind: `Partition::append_is_inline`), or one behind
        // queued work, goes to the connection's ordered blocking worker, which keeps this
        // connection's appends in request order; the turn is left once they are queued.
        let inline = turn.as_ref().is_some_and(|t| t.idle())
            && jobs.iter().all(|(p, r)| p.append_is_inline(r.len(), now));
        let append_all = move || {
            jobs.iter()
                .map(|(p, records)| append(p, records, now, acks))
                .collect::<Vec<_>>()
        };
        let appended = match &turn {
            Some(_) if inline => {
                let outcomes = append_all();
                drop(turn);
                Ok(outcomes)
            }
            Some(t) => {
                crate::metrics::offloaded(crate::metrics::Offloaded::ProduceAppend);
                let done = t.run_ordered(append_all);
                drop(turn);
                done.await.map_err(|e| e.to_string())
            }
            None => tokio::task::spawn_blocking(append_all)
                .await
                .map_err(|e| e.to_string()),
        };
        match appended {
            Ok(outcomes) => {
                for ((t, i), o) in job_slots.into_iter().zip(outcomes) {
                    results[t].1[i].2 = o;
                }
            }
            // The append panicked: those partitions keep UNKNOWN_SERVER_ERROR.
            Err(e) => tracing::error!("produce append task failed: {e}"),
        }
    } else {
        drop(turn);
    }

    if acks != 0 {
        let waits = results.iter_mut().flat_map(|(_, parts)| {
            parts.iter_mut().filter_map(|(_, p, o)| {
                let end = o.durable_until?;
                let p = p.clone()?;
                Some(async move {
                    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
                    // acks=all: durable here, then on every in-sync replica (the high
                    // watermark passes the batch).
                    let wait = async {
                        p.flush_until(end).await.map_err(|e| {
                            tracing::error!(topic = %p.topic, partition = p.index, "fsync failed: {e}");
                            e.error_code()
                        })?;
                        if acks == -1 {
                            p.wait_committed(end).await?;
                        }
                        Ok::<(), ResponseError>(())
                    };
                    match tokio::time::timeout(timeout, wait).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => o.error = Some(e),
                        Err(_) => o.error = Some(ResponseError::RequestTimedOut),
                    }
                })
            })
        });
        let _waiting = crate::metrics::Purgatory::Produce.enter();
        join_all(waits).await;
    }

    if acks == 0 {
        let failed = results
            .iter()
            .flat_map(|(_, parts)| parts.iter())
            .find_map(|(index, _, o)| o.error.map(|e| (index, e)));
        if let Some((index, e)) = failed {
            return Err(HandlerError::Close(format!(
                "acks=0 produce to partition {index} failed: {e}"
            )));
        }
        return Ok(None);
    }

    let mut resp = ProduceResponse::default();
    if ctx.api_version >= 10 {
        let mut leaders: Vec<&BrokerRegistration> = results
            .iter()
            .flat_map(|(_, parts)| parts.iter())
            .filter_map(|(_, _, o)| o.leader.as_ref().map(|(b, _)| b))
            .collect();
        leaders.sort_by_key(|b| b.node_id);
        leaders.dedup_by_key(|b| b.node_id);
        resp.node_endpoints = leaders
            .into_iter()
            .map(|b| {
                let mut e = NodeEndpoint::default();
                e.node_id = BrokerId(b.node_id);
                e.host = b.host.clone().into();
                e.port = i32::from(b.port);
                e.rack = b.rack.clone().map(Into::into);
                e
            })
            .collect();
    }
    for (name, parts) in results {
        let mut t = TopicProduceResponse::default();
        t.name = kafka_protocol::messages::TopicName(name.into());
        for (index, _, o) in parts {
            t.partition_responses
                .push(partition_response(&ctx, index, &o));
        }
        resp.responses.push(t);
    }
    Ok(Some(resp))
}

/// True if any batch in `records` is a control batch (transaction marker). Only the broker
/// writes those; a client sending one gets INVALID_RECORD, as in Kafka.
fn has_control_batch(records: &[u8]) -> bool {
    let mut pos = 0;
    while let Some(h) = records.get(pos..).and_then(BatchHeader::parse) {
        if h.is_control() {
            return true;
        }
        match h.total_size() {
            Some(n) if n > 0 => pos += n,
            _ => return false,
        }
    }
    false
}

/// Transactional batches must be part of their producer's open transaction on this partition.
fn verify_transactional(
    ctx: &RequestContext,
    topic: &str,
    partition: i32,
    records: &[u8],
) -> Result<(), ResponseError> {
    let mut pos = 0;
    while let Some(h) = records.get(pos..).and_then(BatchHeader::parse) {
        if h.is_transactional() && !h.is_control() {
            ctx.broker
                .txns
                .verify_partition(h.producer_id, h.producer_epoch, topic, partition)?;
        }
        match h.total_size() {
            Some(n) if n > 0 => pos += n,
            _ => break,
        }
    }
    Ok(())
}

/// `(message.timestamp.before.max.ms, message.timestamp.after.max.ms)` of a CreateTime topic
/// when either is finite (`message.timestamp.difference.max.ms`, deprecated by KIP-937, stands
/// in for an unset one, as in Kafka 3.x); `None` when nothing is checked (the default, and
/// LogAppendTime topics, whose timestamps the broker sets).
fn timestamp_bounds(ctx: &RequestContext, topic: &str) -> Option<(i64, i64)> {
    let t = ctx.broker.topic(topic)?;
    let value = |name: &str| ctx.broker.topic_config(&t.record.configs, name);
    if value("message.timestamp.type").is_some_and(|v| v == "LogAppendTime") {
        return None;
    }
    let configured = |name: &str| value(name).and_then(|v| v.trim().parse::<i64>().ok());
    let difference = configured("message.timestamp.difference.max.ms");
    let before = configured("message.timestamp.before.max.ms")
        .or(difference)
        .unwrap_or(i64::MAX);
    let after = configured("message.timestamp.after.max.ms")
        .or(difference)
        .unwrap_or(i64::MAX);
    (before < i64::MAX || after < i64::MAX).then_some((before, after))
}

/// The records (index within the request's records, with why) whose timestamp lies more than
/// `before` ms before `now` or more than `after` ms after it. Decodes (and decompresses) the
/// records, so it runs only for topics with such bounds.
fn out_of_range_timestamps(
    records: &[u8],
    now: i64,
    before: i64,
    after: i64,
) -> Vec<(i32, String)> {
    let mut bad = Vec::new();
    for_each_record(records, |index, r| {
        let early = now.saturating_sub(r.timestamp) > before;
        let late = r.timestamp.saturating_sub(now) > after;
        if early || late {
            let (name, bound) = if early {
                ("message.timestamp.before.max.ms", before)
            } else {
                ("message.timestamp.after.max.ms", after)
            };
            bad.push((
                index,
                format!(
                    "Timestamp {} of message with offset {} is out of range. The timestamp should be within [{}, {}] ({name} = {bound})",
                    r.timestamp,
                    r.offset,
                    now.saturating_sub(before),
                    now.saturating_add(after)
                ),
            ));
        }
    });
    bad
}

/// Calls `f` with every record of the request's data batches and its index counted across the
/// request (KIP-467's batch index). Decodes and decompresses: only for checks that need
/// records. Malformed batches are skipped here and fail validation later.
fn for_each_record(records: &[u8], mut f: impl FnMut(i32, &crate::storage::records::Record<'_>)) {
    let mut pos = 0;
    let mut index = 0i32;
    while let Some(h) = records.get(pos..).and_then(BatchHeader::parse) {
        let Some(n) = h.total_size().filter(|n| *n > 0) else {
            break;
        };
        let Some(batch) = records.get(pos..pos + n) else {
            break;
        };
        if !h.is_control() {
            if let Ok(decoded) = BatchRecords::decode(batch) {
                for r in decoded.iter().map_while(Result::ok) {
                    f(index, &r);
                    index += 1;
                }
            }
        }
        pos += n;
    }
}

/// Whether `topic` has `cleanup.policy` including `compact`.
fn compacted(ctx: &RequestContext, topic: &str) -> bool {
    ctx.broker.topic(topic).is_some_and(|t| {
        ctx.broker
            .topic_config(&t.record.configs, "cleanup.policy")
            .is_some_and(|p| p.split(',').any(|x| x.trim() == "compact"))
    })
}

/// The indexes (counted across the request's records) of records without a key; only for
/// compacted topics (it decodes the records).
fn keyless_records(records: &[u8]) -> Vec<i32> {
    let mut bad = Vec::new();
    for_each_record(records, |index, r| {
        if r.key.is_none() {
            bad.push(index);
        }
    });
    bad
}

fn append(p: &Partition, records: &Bytes, now: i64, acks: i16) -> Outcome {
    if has_control_batch(records) {
        return Outcome::error(ResponseError::InvalidRecord);
    }
    match p.append(records, now) {
        Ok(info) => Outcome {
            error: None,
            base_offset: info.base_offset,
            log_append_time: info.log_append_time,
            log_start_offset: info.log_start_offset,
            // acks=all, or `flush.messages` reached (Kafka fsyncs in the append path then).
            durable_until: (acks == -1 || p.flush_required()).then_some(info.last_offset + 1),
            record_errors: vec![],
            leader: None,
        },
        Err(e) => {
            tracing::debug!(topic = %p.topic, partition = p.index, "produce rejected: {e}");
            Outcome::error(e.error_code())
        }
    }
}

fn partition_response(ctx: &RequestContext, index: i32, o: &Outcome) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default();
    r.index = index;
    r.error_code = o.error.map_or(0, |e| e.code());
    r.base_offset = o.base_offset;
    if ctx.api_version >= 2 {
        r.log_append_time_ms = o.log_append_time;
    }
    if ctx.api_version >= 5 {
        r.log_start_offset = o.log_start_offset;
    }
    if ctx.api_version >= 10 {
        if let Some((leader, epoch)) = &o.leader {
            r.current_leader.leader_id = BrokerId(leader.node_id);
            r.current_leader.leader_epoch = *epoch;
        }
    }
    if ctx.api_version >= 8 && !o.record_errors.is_empty() {
        r.record_errors = o
            .record_errors
            .iter()
            .map(|(i, why)| {
                let mut e = BatchIndexAndErrorMessage::default();
                e.batch_index = *i;
                e.batch_index_error_message = Some(why.clone().into());
                e
            })
            .collect();
        r.error_message = Some("One or more records have been rejected".to_string().into());
    }
    r
}

/// Answers every partition of the request with one error.
fn respond_all(
    ctx: &RequestContext,
    req: ProduceRequest,
    error: ResponseError,
    acks: i16,
) -> HandlerResult<ProduceResponse> {
    if acks == 0 {
        return Err(HandlerError::Close(format!(
            "acks=0 produce failed: {error}"
        )));
    }
    let mut resp = ProduceResponse::default();
    for topic in req.topic_data {
        let mut t = TopicProduceResponse::default();
        t.name = topic.name;
        for pd in topic.partition_data {
            t.partition_responses
                .push(partition_response(ctx, pd.index, &Outcome::error(error)));
        }
        resp.responses.push(t);
    }
    Ok(Some(resp))
}
