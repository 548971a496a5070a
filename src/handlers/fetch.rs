//! Fetch: read record batches, long-polling until `min_bytes` are available or `max_wait_ms`
//! has passed.
//!
//! Limits follow KIP-74: each partition returns at most `partition_max_bytes` and the response
//! at most `max_bytes` (itself capped by the broker's `fetch.max.bytes`, or
//! `replica.fetch.response.max.bytes` for a replica), except that the first partition with data always returns at least one
//! whole batch, so a batch larger than the limits can never stall a consumer. Nothing is
//! decoded: the read finds which whole batches to return from their headers alone
//! (`PartitionLog::read_region`), and the response carries them as file regions
//! ([`FetchOutput`]) that the connection sends with `sendfile`, page cache to socket.
//!
//! read_committed (isolation level 1) reads stop at the last stable offset, and each partition
//! lists the aborted transactions overlapping the returned offsets (from the fetch offset to the
//! last offset of the last returned batch), so the consumer can drop their records.
//!
//! A replica's fetch (a follower: `replica_id >= 0`) is one of the partition's followers
//! reporting its durable log end (the fetch offset) to the leader, which counts it towards
//! the high watermark (`Partition::follower_fetched`); it reads up to the log end offset
//! rather than the high watermark, and long-polls on the leader's appends (not its durable
//! offset: the follower's copy and fsync overlap the leader's fsync; the high watermark
//! still counts only what every in-sync replica, the leader included, made durable). One whose
//! last fetched epoch diverges from the leader's log gets `diverging_epoch` instead of
//! records, and truncates (Fetch v12+). One out of the ISR that the topic lists in
//! `leader.replication.throttled.replicas` for this leader gets no records while
//! `leader.replication.throttled.rate` is used up (`broker::throttle`).
//!
//! Fetch sessions (KIP-227) are declined by answering session id 0, which clients treat as
//! "send full fetch requests"; that is always allowed by the protocol.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Frame, FramePart, HandlerResult, RequestContext, Respond};
use crate::broker::Broker;
use crate::storage::{Region, StorageError};

const READ_COMMITTED: i8 = 1;

pub async fn handle(ctx: RequestContext, req: FetchRequest) -> HandlerResult<FetchOutput> {
    let v = ctx.api_version;
    if v >= 7 && req.session_id != 0 {
        let mut resp = FetchResponse::default();
        resp.error_code = ResponseError::FetchSessionIdNotFound.code();
        return Ok(Some(FetchOutput::whole(resp)));
    }
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut req = req;
    if v >= 13 {
        name_topics(&ctx.broker, &mut req);
    }
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
            count_bytes_out(&ctx, &resp, replica_of(v, &req).is_some());
            return Ok(Some(resp));
        }
        let _waiting = crate::metrics::Purgatory::Fetch.enter();
        let changed = select_all(watches.iter_mut().map(|w| w.changed()));
        let mut stopping = ctx.broker.shutdown_signal();
        let woke = tokio::select! {
            r = tokio::time::timeout_at(deadline, changed) => r.is_ok(),
            // The broker is stopping: answer with what there is now.
            _ = stopping.wait_for(|s| *s) => false,
        };
        if !woke {
            let (resp, _, _) = read(&ctx, &req).await;
            count_bytes_out(&ctx, &resp, replica_of(v, &req).is_some());
            return Ok(Some(resp));
        }
    }
}

/// Fetch v13+ names topics by id: each gets its topic's name here, so the rest of the handler
/// works by name; an id no topic has gets the empty name, which [`read_all`] answers
/// UNKNOWN_TOPIC_ID (a topic deleted and created again under its name has another id).
fn name_topics(broker: &Broker, req: &mut FetchRequest) {
    let topics = broker.topics_view();
    for t in &mut req.topics {
        t.topic = topics
            .name_of(&t.topic_id)
            .filter(|_| !t.topic_id.is_nil())
            .map(|name| TopicName(name.to_string().into()))
            .unwrap_or_default();
    }
}

/// One partition's wake-up for a long poll.
enum Wake {
    HighWatermark(watch::Receiver<i64>),
    Appends(watch::Receiver<u64>),
}

impl Wake {
    fn changed(
        &mut self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), watch::error::RecvError>> + Send + '_>,
    > {
        match self {
            Wake::HighWatermark(w) => Box::pin(w.changed()),
            Wake::Appends(w) => Box::pin(w.changed()),
        }
    }
}

/// Adds the record bytes of the response being sent to each topic's bytes-out counter.
fn count_bytes_out(ctx: &RequestContext, out: &FetchOutput, replica: bool) {
    let mut regions = out.regions.iter();
    for t in &out.resp.responses {
        for pd in &t.partitions {
            let region = regions.next().and_then(Option::as_ref).map_or(0, |r| r.len);
            let n = pd.records.as_ref().map_or(0, |r| r.len() as u64) + region;
            if n > 0 {
                if let Some(p) = ctx.broker.hosted_partition(&t.topic.0, pd.partition_index) {
                    if replica {
                        p.metrics.replication_bytes_out.increment(n);
                    } else {
                        p.metrics.bytes_out.increment(n);
                    }
                }
            }
        }
    }
}

/// The replica of partition `index` of `topic` this fetch reads: the leader's for a
/// follower or an old consumer; for a consumer using v11+ (KIP-392) any replica hosted here,
/// a follower serving what is below its high watermark.
fn serving(
    broker: &Broker,
    v: i16,
    req: &FetchRequest,
    topic: &str,
    index: i32,
) -> Option<std::sync::Arc<crate::broker::Partition>> {
    if v >= 11 && replica_of(v, req).is_none() {
        broker.hosted_partition(topic, index)
    } else {
        broker.partition(topic, index)
    }
}

/// The follower a Fetch comes from, if it is a replica's.
fn replica_of(v: i16, req: &FetchRequest) -> Option<i32> {
    let id = if v >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    (id >= 0).then_some(id)
}

/// What a long poll waits on: the high watermark of each partition for a consumer, the
/// leader's appends for a replica (it reads up to the log end offset: a follower copies and
/// fsyncs new records while the leader's own fdatasync of them runs).
fn subscribe(ctx: &RequestContext, req: &FetchRequest) -> Vec<Wake> {
    let replica = replica_of(ctx.api_version, req).is_some();
    req.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter_map(|p| serving(&ctx.broker, ctx.api_version, req, &t.topic.0, p.partition))
        })
        .filter_map(|p| {
            if replica {
                p.opened_log().map(|l| Wake::Appends(l.subscribe_appends()))
            } else {
                Some(Wake::HighWatermark(p.subscribe()))
            }
        })
        .collect()
}

/// Reads every requested partition once. Returns the response, the record bytes in it, and
/// whether any partition had an error (errors are answered at once, without waiting).
///
/// Nothing here waits for the disk on an async worker: [`read_all`] first runs in the handler
/// reading only from the page cache (`read_region_nowait`: 61-byte header reads, hits for
/// recent data). If a header is not cached (or a segment file is not open), the whole read is
/// repeated on a blocking thread; if a region's data is not all cached, it is brought into the
/// page cache on a blocking thread before the response goes to the connection's writer, whose
/// `sendfile` then copies from memory. A `spawn_blocking` for every fetch cost ~15% of consume
/// throughput on this 2-core machine (docs/architecture.md), so only cold reads pay for one.
async fn read(
    ctx: &RequestContext,
    req: &std::sync::Arc<FetchRequest>,
) -> (FetchOutput, usize, bool) {
    let v = ctx.api_version;
    if let Some(out) = read_all(&ctx.broker, v, req, true) {
        let cold = cold_regions(&out.0);
        if !cold.is_empty() {
            let _ = tokio::task::spawn_blocking(move || prefetch(&cold)).await;
        }
        return out;
    }
    crate::metrics::offloaded(crate::metrics::Offloaded::FetchRead);
    let (broker, shared) = (ctx.broker.clone(), req.clone());
    let blocking = tokio::task::spawn_blocking(move || {
        let out = read_all(&broker, v, &shared, false);
        if let Some((o, _, _)) = &out {
            prefetch(&cold_regions(o));
        }
        out
    });
    match blocking.await {
        Ok(Some(out)) => out,
        // A blocking read never answers WouldBlock; a panic answers every partition
        // UNKNOWN_SERVER_ERROR.
        _ => {
            tracing::error!("fetch read task failed");
            (failed(req), 0, true)
        }
    }
}

/// The regions of `out` whose data is not all in the page cache.
fn cold_regions(out: &FetchOutput) -> Vec<Region> {
    out.regions
        .iter()
        .flatten()
        .filter(|r| !r.cached())
        .cloned()
        .collect()
}

/// Brings regions into the page cache (blocking); a failure is the `sendfile`'s to report.
fn prefetch(regions: &[Region]) {
    for r in regions {
        crate::metrics::offloaded(crate::metrics::Offloaded::FetchPrefetch);
        if let Err(e) = r.prefetch() {
            tracing::warn!("prefetch of fetched data failed: {e}");
        }
    }
}

/// A partition's answer before anything is known: no offsets, no records.
fn empty_partition(index: i32) -> PartitionData {
    let mut pd = PartitionData::default();
    pd.partition_index = index;
    pd.high_watermark = -1;
    pd.last_stable_offset = -1;
    pd.log_start_offset = -1;
    pd.records = Some(Bytes::new());
    pd
}

/// A response answering every requested partition UNKNOWN_SERVER_ERROR.
fn failed(req: &FetchRequest) -> FetchOutput {
    let mut resp = FetchResponse::default();
    for topic in &req.topics {
        let mut out = FetchableTopicResponse::default();
        out.topic = topic.topic.clone();
        out.topic_id = topic.topic_id;
        for fp in &topic.partitions {
            let mut pd = empty_partition(fp.partition);
            pd.error_code = ResponseError::UnknownServerError.code();
            out.partitions.push(pd);
        }
        resp.responses.push(out);
    }
    FetchOutput::whole(resp)
}

/// One read of every partition; with `nowait`, only from the page cache and open files, and
/// `None` as soon as a partition would have to wait (see [`read`]).
fn read_all(
    broker: &Broker,
    v: i16,
    req: &FetchRequest,
    nowait: bool,
) -> Option<(FetchOutput, usize, bool)> {
    let mut resp = FetchResponse::default();
    let mut regions: Vec<Option<Region>> = Vec::new();
    // The broker's own bound, whatever the client asks: nothing is allocated for more.
    let replica = replica_of(v, req);
    let cap = if replica.is_some() {
        broker.config.replica_fetch_response_max_bytes
    } else {
        broker.config.fetch_max_bytes
    };
    let mut remaining = req.max_bytes.clamp(0, cap) as usize;
    let mut total = 0usize;
    let mut any_error = false;
    let mut min_one = true;
    let mut leaders: Vec<crate::cluster::BrokerRegistration> = Vec::new();
    // KIP-903 (v15+): the follower's broker epoch, checked against its live registration.
    let broker_epoch = if v >= 15 {
        req.replica_state.replica_epoch
    } else {
        -1
    };
    let live = if replica.is_some() && broker_epoch >= 0 {
        broker.live_brokers()
    } else {
        Vec::new()
    };
    let registered = |id: i32| live.iter().find(|b| b.node_id == id).map(|b| b.epoch);
    for topic in &req.topics {
        let mut out = FetchableTopicResponse::default();
        out.topic = topic.topic.clone();
        out.topic_id = topic.topic_id;
        for fp in &topic.partitions {
            let mut pd = empty_partition(fp.partition);
            let mut region = None;
            // v13+: the id must still be the topic's (not one deleted and created again under
            // its name during a long poll).
            if v >= 13
                && (topic.topic.0.is_empty()
                    || broker.topic(&topic.topic.0).map(|t| t.record.id) != Some(topic.topic_id))
            {
                pd.error_code = ResponseError::UnknownTopicId.code();
                any_error = true;
                out.partitions.push(pd);
                regions.push(region);
                continue;
            }
            match serving(broker, v, req, &topic.topic.0, fp.partition) {
                None => {
                    pd.error_code = broker.not_hosted_error(&topic.topic.0, fp.partition).code();
                    // KIP-951 (v12+): where the partition is served now.
                    if let (
                        true,
                        crate::broker::Located::Elsewhere {
                            leader: Some(leader),
                            leader_epoch,
                        },
                    ) = (v >= 12, broker.locate(&topic.topic.0, fp.partition))
                    {
                        pd.current_leader.leader_id =
                            kafka_protocol::messages::BrokerId(leader.node_id);
                        pd.current_leader.leader_epoch = leader_epoch;
                        // v16+: the leaders named carry their endpoints.
                        if v >= 16 && !leaders.iter().any(|l| l.node_id == leader.node_id) {
                            leaders.push(leader);
                        }
                    }
                    any_error = true;
                }
                Some(p) => {
                    // A follower's fetch offset is its durable end: counted first (only at
                    // this leader's epoch; another is refused below), so the high watermark
                    // this answer carries includes it. A consumer's fetch skips all this.
                    // A follower whose last fetched epoch ends earlier here (or is unknown
                    // here) diverged: it gets the epoch and end offset to truncate to
                    // (KIP-595's DivergingEpoch, Fetch v12+), no records, and is not counted.
                    let diverging = replica
                        .filter(|_| v >= 12 && fp.last_fetched_epoch >= 0)
                        .filter(|_| fp.current_leader_epoch == p.leader_epoch())
                        .and_then(|_| p.opened_log())
                        .and_then(|log| {
                            let (epoch, end) = log.epoch_end_offset(fp.last_fetched_epoch);
                            (epoch != fp.last_fetched_epoch || end < fp.fetch_offset)
                                .then_some((epoch, end))
                        });
                    let mut not_replica = false;
                    let replica_end = replica.filter(|_| diverging.is_none()).map(|r| {
                        let end = p.opened_log().map_or(-1, |log| log.log_end_offset());
                        let same_epoch = fp.current_leader_epoch < 0
                            || fp.current_leader_epoch == p.leader_epoch();
                        not_replica = same_epoch
                            && fp.fetch_offset <= end
                            && p.follower_fetched(r, broker_epoch, registered(r), fp.fetch_offset)
                                != crate::broker::replication::Fetched::Counted;
                        end
                    });
                    let hw = p.high_watermark();
                    let lso = p.last_stable_offset();
                    pd.high_watermark = hw;
                    pd.last_stable_offset = lso;
                    pd.log_start_offset = p.opened_log().map_or(-1, |log| log.log_start_offset());
                    let upper = if let Some(end) = replica_end {
                        end
                    } else if req.isolation_level == READ_COMMITTED {
                        lso
                    } else {
                        hw
                    };
                    // Only read_committed answers carry the list (null otherwise, as Kafka;
                    // the message's default is an empty list).
                    pd.aborted_transactions =
                        (req.isolation_level == READ_COMMITTED).then(Vec::new);
                    let current = p.leader_epoch();
                    let throttle = replica
                        .filter(|_| diverging.is_none())
                        .and_then(|r| broker.leader_throttle(&p, r));
                    // KIP-392: a consumer in another rack than this leader's is sent to an
                    // in-sync replica in its rack (no records from here).
                    let preferred = (replica.is_none() && v >= 11 && p.is_leader())
                        .then(|| broker.preferred_read_replica(&p, &req.rack_id, fp.fetch_offset))
                        .flatten();
                    if let Some(id) = preferred {
                        pd.preferred_read_replica = kafka_protocol::messages::BrokerId(id);
                        any_error = true; // answered at once
                    } else if let Some((epoch, end)) = diverging {
                        pd.diverging_epoch.epoch = epoch;
                        pd.diverging_epoch.end_offset = end;
                        any_error = true; // answered at once
                    } else if not_replica {
                        // Not one of this partition's replicas, or (KIP-903) a fetch from an
                        // earlier incarnation of one.
                        pd.error_code = ResponseError::NotLeaderOrFollower.code();
                        any_error = true;
                    } else if v >= 9
                        && fp.current_leader_epoch >= 0
                        && fp.current_leader_epoch != current
                    {
                        pd.error_code = if fp.current_leader_epoch < current {
                            ResponseError::FencedLeaderEpoch.code()
                        } else {
                            ResponseError::UnknownLeaderEpoch.code()
                        };
                        any_error = true;
                    } else if throttle.is_some_and(|(used_up, _)| used_up) {
                        // A throttled follower while the leader rate is used up: no records
                        // from this partition this time (Kafka's leader replication quota).
                    } else {
                        let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
                        let read = p.log().and_then(|log| {
                            if nowait {
                                log.read_region_nowait(fp.fetch_offset, limit, upper, min_one)
                            } else {
                                log.read_region(fp.fetch_offset, limit, upper, min_one)
                            }
                        });
                        match read {
                            Ok(r) => {
                                pd.log_start_offset = r.log_start_offset;
                                let n = r.region.as_ref().map_or(0, |g| g.len as usize);
                                if n > 0 {
                                    min_one = false;
                                }
                                remaining = remaining.saturating_sub(n);
                                total += n;
                                if let Some((_, rate)) = throttle {
                                    broker.leader_throttled_bytes(rate, n as u64);
                                }
                                if req.isolation_level == READ_COMMITTED {
                                    if let Some(last) = r.region.as_ref().map(|g| g.last_offset) {
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
                                if r.region.is_some() {
                                    pd.records = None; // sent from the file (FetchOutput)
                                    region = r.region;
                                }
                            }
                            Err(StorageError::WouldBlock) => return None,
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
            regions.push(region);
        }
        resp.responses.push(out);
    }
    resp.node_endpoints = leaders
        .into_iter()
        .map(|b| {
            let mut e = NodeEndpoint::default();
            e.node_id = kafka_protocol::messages::BrokerId(b.node_id);
            e.host = b.host.into();
            e.port = i32::from(b.port);
            e.rack = b.rack.map(Into::into);
            e
        })
        .collect();
    Some((FetchOutput { resp, regions }, total, any_error))
}

/// A Fetch response whose record data stays in the segment files until the connection sends it
/// (`sendfile`): `regions` has one entry per partition of `resp`, in order; a partition with a
/// region has `records: None` in `resp` and its records are the region's bytes.
pub struct FetchOutput {
    pub resp: FetchResponse,
    pub regions: Vec<Option<Region>>,
}

impl FetchOutput {
    /// A response without file regions.
    fn whole(resp: FetchResponse) -> FetchOutput {
        let n = resp.responses.iter().map(|t| t.partitions.len()).sum();
        FetchOutput {
            resp,
            regions: vec![None; n],
        }
    }

    /// The response with every region read into its partition's records (the encoding of the
    /// spliced frame is checked against this in tests, and it is the fallback for anything
    /// the splice does not cover).
    fn into_inline(mut self) -> anyhow::Result<FetchResponse> {
        let mut regions = self.regions.into_iter();
        for t in &mut self.resp.responses {
            for pd in &mut t.partitions {
                if let Some(r) = regions.next().flatten() {
                    pd.records = Some(r.read()?);
                }
            }
        }
        Ok(self.resp)
    }

    /// Whether the splice in `into_frame` covers this response: versions 4–17 (the ones
    /// advertised) and no tagged field set anywhere (the records field is then the last one
    /// before a partition's empty tag buffer).
    fn spliceable(&self, version: i16) -> bool {
        (4..=17).contains(&version)
            && self.resp.unknown_tagged_fields.is_empty()
            && self.resp.node_endpoints.is_empty()
            && self.resp.responses.iter().all(|t| {
                t.unknown_tagged_fields.is_empty()
                    && t.partitions.iter().all(|p| {
                        p.unknown_tagged_fields.is_empty()
                            && p.diverging_epoch == Default::default()
                            && p.current_leader == Default::default()
                            && p.snapshot_id == Default::default()
                    })
            })
    }
}

fn put_uvarint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// An array length: compact (`n + 1`, unsigned varint) from v12, else `i32`.
fn put_len(out: &mut BytesMut, n: usize, flexible: bool) {
    if flexible {
        put_uvarint(out, n as u64 + 1);
    } else {
        out.put_i32(n as i32);
    }
}

impl Respond for FetchOutput {
    fn observed(&self) -> &dyn std::any::Any {
        &self.resp
    }

    /// Fetch's layout (v4–17): `throttle_time_ms i32 | [v7+] error_code i16, session_id i32 |
    /// responses [topic string, or (v13+) topic id uuid | partitions [PartitionData]] |
    /// [v12+] tags`, where PartitionData ends with `records` then (v12+) its tags. Each partition is encoded by kafka-protocol with
    /// `records: None`; for a partition with a region, that null (`i32 -1`, or v12 `0` plus the
    /// empty tag buffer `0`) is cut off and replaced by the region's length, the region itself
    /// (a file part) and (v12) the empty tag buffer.
    fn into_frame(self, mut out: BytesMut, version: i16) -> anyhow::Result<Frame> {
        if self.regions.iter().all(Option::is_none) || !self.spliceable(version) {
            return self.into_inline()?.into_frame(out, version);
        }
        let flexible = version >= 12;
        let resp = &self.resp;
        let mut parts: Vec<FramePart> = Vec::new();
        out.put_i32(resp.throttle_time_ms);
        if version >= 7 {
            out.put_i16(resp.error_code);
            out.put_i32(resp.session_id);
        }
        put_len(&mut out, resp.responses.len(), flexible);
        let mut regions = self.regions.iter();
        for t in &resp.responses {
            let name = t.topic.0.as_bytes();
            if version >= 13 {
                out.put_slice(t.topic_id.as_bytes());
            } else if flexible {
                put_uvarint(&mut out, name.len() as u64 + 1);
                out.put_slice(name);
            } else {
                out.put_i16(i16::try_from(name.len())?);
                out.put_slice(name);
            }
            put_len(&mut out, t.partitions.len(), flexible);
            for pd in &t.partitions {
                let Some(region) = regions.next().and_then(Option::as_ref) else {
                    pd.encode(&mut out, version)?;
                    continue;
                };
                let start = out.len();
                pd.encode(&mut out, version)?;
                let null: &[u8] = if flexible { &[0, 0] } else { &[0xff; 4] };
                anyhow::ensure!(
                    out.len() - start >= null.len() && out.ends_with(null),
                    "unexpected PartitionData encoding"
                );
                out.truncate(out.len() - null.len());
                let len = usize::try_from(region.len)?;
                if flexible {
                    put_uvarint(&mut out, len as u64 + 1);
                } else {
                    out.put_i32(i32::try_from(len)?);
                }
                parts.push(FramePart::Bytes(out.split().freeze()));
                parts.push(FramePart::File {
                    file: region.file.clone(),
                    position: region.position,
                    len: region.len,
                });
                if flexible {
                    put_uvarint(&mut out, 0);
                }
            }
            if flexible {
                put_uvarint(&mut out, 0);
            }
        }
        if flexible {
            put_uvarint(&mut out, 0);
        }
        parts.push(FramePart::Bytes(out.freeze()));
        let total: u64 = parts.iter().map(FramePart::wire_len).sum();
        let len = i32::try_from(total - 4)?;
        if let Some(FramePart::Bytes(first)) = parts.first_mut() {
            let mut head = BytesMut::from(&first[..]);
            head[..4].copy_from_slice(&len.to_be_bytes());
            *first = head.freeze();
        }
        Ok(Frame::Parts(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;
    use std::io::Write;
    use std::sync::Arc;

    fn frame_bytes(frame: Frame) -> Vec<u8> {
        match frame {
            Frame::Whole(b) => b.to_vec(),
            Frame::Parts(parts) => {
                let mut out = Vec::new();
                for p in parts {
                    match p {
                        FramePart::Bytes(b) => out.extend_from_slice(&b),
                        FramePart::File {
                            file,
                            position,
                            len,
                        } => {
                            let mut buf = vec![0u8; len as usize];
                            std::os::unix::fs::FileExt::read_exact_at(&*file, &mut buf, position)
                                .expect("read region");
                            out.extend_from_slice(&buf);
                        }
                    }
                }
                out
            }
        }
    }

    fn head() -> BytesMut {
        let mut out = BytesMut::new();
        out.put_i32(0);
        out.put_i32(7);
        out
    }

    /// The spliced frame (regions sent from the file) is byte for byte what kafka-protocol
    /// encodes for the same response with the records inline, at every advertised version.
    #[test]
    fn spliced_fetch_frames_equal_the_inline_encoding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seg");
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&data))
            .expect("write");
        let file = Arc::new(std::fs::File::open(&path).expect("open"));
        for version in 4..=17i16 {
            let mut resp = FetchResponse::default();
            resp.throttle_time_ms = 3;
            if version >= 7 {
                resp.error_code = 0;
                resp.session_id = 0;
            }
            let mut regions = Vec::new();
            for (t, name) in ["alpha", "b"].iter().enumerate() {
                let mut topic = FetchableTopicResponse::default();
                topic.topic = TopicName(StrBytes::from_static_str(name));
                topic.topic_id = uuid::Uuid::from_u128(0x1234_5678_9abc_def0 + t as u128);
                for i in 0..3i32 {
                    let mut pd = PartitionData::default();
                    pd.partition_index = i;
                    pd.high_watermark = 100 + i64::from(i);
                    pd.last_stable_offset = 90;
                    pd.log_start_offset = if version >= 5 { 1 } else { -1 };
                    if i == 1 {
                        let mut a = AbortedTransaction::default();
                        a.producer_id = ProducerId(9);
                        a.first_offset = 4;
                        pd.aborted_transactions = Some(vec![a]);
                    }
                    let with_data = (i + t as i32) % 2 == 0;
                    if with_data {
                        pd.records = None;
                        regions.push(Some(Region {
                            file: file.clone(),
                            position: 100 * i as u64 + t as u64,
                            len: 1000 + 300 * i as u64,
                            last_offset: 0,
                        }));
                    } else {
                        pd.records = Some(Bytes::new());
                        regions.push(None);
                    }
                    topic.partitions.push(pd);
                }
                resp.responses.push(topic);
            }
            let spliced = FetchOutput {
                resp: resp.clone(),
                regions: regions.clone(),
            };
            let inline = FetchOutput { resp, regions }.into_inline().expect("inline");
            let got = frame_bytes(spliced.into_frame(head(), version).expect("spliced"));
            let want = frame_bytes(inline.into_frame(head(), version).expect("inline"));
            assert_eq!(got, want, "v{version}");
            // And kafka-protocol decodes it back.
            let mut body = Bytes::from(got[8..].to_vec());
            let decoded =
                <FetchResponse as kafka_protocol::protocol::Decodable>::decode(&mut body, version)
                    .expect("decodes");
            assert_eq!(
                decoded.responses[1].partitions[1]
                    .records
                    .as_ref()
                    .map(|r| r.len()),
                Some(1300)
            );
        }
    }
}
