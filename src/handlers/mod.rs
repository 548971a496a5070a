//! The handler registry and the request/response plumbing around handlers.
//!
//! [`APIS`] is the one table of `(api key, min version, max version, handler)`. It drives both
//! dispatch and the ApiVersions response, so the broker never advertises an API or version it
//! cannot serve. Adding an API = one file under `handlers/` and one line here.
//!
//! A handler is `async fn handle(ctx, request) -> HandlerResult<Response>`, decoded and encoded
//! for it by [`run`] at the version the client asked for. Handlers stay thin: check input, call
//! the broker, map subsystem errors to Kafka error codes in the response body. Returning
//! `Ok(None)` sends no response (Produce with acks=0); `Err` closes the connection after the
//! responses already owed are written.

pub mod admin;
pub mod api_versions;
pub mod describe_topic_partitions;
pub mod fetch;
pub mod group;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod txn;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

use crate::broker::Broker;
use crate::server::connection::decode_guarded;
use crate::server::sequencer::Ticket;

/// Why a request ends the connection instead of getting a response.
#[derive(Debug, Error)]
pub enum HandlerError {
    #[error("undecodable {0}")]
    Decode(String),
    #[error("cannot encode response: {0}")]
    Encode(String),
    /// Kafka closes the connection where it cannot answer (e.g. a failed acks=0 produce).
    #[error("{0}")]
    Close(String),
}

pub type HandlerResult<T> = Result<Option<T>, HandlerError>;

/// A response frame as the connection sends it (length prefix and header included).
pub enum Frame {
    /// One buffer: every response but a Fetch that returns record data.
    Whole(Bytes),
    /// Buffers and segment-file regions, sent back to back in order: a Fetch's record data
    /// goes from the page cache to the socket with `sendfile`, never through user space.
    Parts(Vec<FramePart>),
}

/// One piece of a [`Frame::Parts`].
pub enum FramePart {
    Bytes(Bytes),
    /// `len` bytes of `file` from `position` (bytes that never change while the handle is
    /// held: see `PartitionLog::read_region`).
    File {
        file: Arc<std::fs::File>,
        position: u64,
        len: u64,
    },
}

impl FramePart {
    /// Bytes this part puts on the wire.
    pub fn wire_len(&self) -> u64 {
        match self {
            FramePart::Bytes(b) => b.len() as u64,
            FramePart::File { len, .. } => *len,
        }
    }
}

/// How a handler's response becomes a frame: encoded whole ([`Encodable`] responses), or in
/// parts (the Fetch response with file regions).
pub trait Respond: Send + 'static {
    /// What the metrics inspect (error codes).
    fn observed(&self) -> &dyn std::any::Any;
    /// Appends the body to `out` (which holds a 4-byte length placeholder and the response
    /// header) and returns the whole frame, its length prefix set.
    fn into_frame(self, out: BytesMut, version: i16) -> anyhow::Result<Frame>;
}

impl<T: Encodable + Send + 'static> Respond for T {
    fn observed(&self) -> &dyn std::any::Any {
        self
    }

    fn into_frame(self, mut out: BytesMut, version: i16) -> anyhow::Result<Frame> {
        out.reserve(self.compute_size(version)?);
        self.encode(&mut out, version)?;
        let len = i32::try_from(out.len() - 4)?;
        out[..4].copy_from_slice(&len.to_be_bytes());
        Ok(Frame::Whole(out.freeze()))
    }
}

/// What a handler knows about the request besides its body.
pub struct RequestContext {
    pub broker: Arc<Broker>,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub peer: SocketAddr,
    /// This request's place in its connection's order (see `server::sequencer`); only for
    /// APIs registered with [`Order::Handler`] (the handler enters its turn itself).
    pub ticket: Option<Ticket>,
}

/// How a request is ordered against the other requests of its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Runs concurrently with the rest (reads, long polls, group joins).
    Free,
    /// Takes effect strictly after every earlier ordered request and before every later one:
    /// the whole handler runs in its turn (commits, admin changes, transaction steps).
    Whole,
    /// The handler takes its turn for the part that must be ordered (Produce: the append, not
    /// the fsync wait).
    Handler,
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<Option<Frame>, HandlerError>> + Send>>;

/// One registry entry.
pub struct Api {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
    /// Whether (and how) the handler takes effect in request order on its connection.
    pub order: Order,
    pub handle: fn(RequestContext, Bytes) -> HandlerFuture,
    /// Decodes a body at a version without running the handler (fuzzing, tests): whether it
    /// decodes. Never panics (a decoder panic counts as "does not decode").
    pub decode: fn(Bytes, i16) -> bool,
}

macro_rules! api {
    ($key:ident, $min:expr, $max:expr, $($handler:ident)::+) => {
        api!($key, $min, $max, $($handler)::+, Order::Free)
    };
    ($key:ident, $min:expr, $max:expr, $($handler:ident)::+, $order:expr) => {
        Api {
            key: ApiKey::$key,
            min: $min,
            max: $max,
            order: $order,
            handle: |ctx, body| Box::pin(run(ctx, body, $($handler)::+)),
            decode: |body, version| decodes(&$($handler)::+, body, version),
        }
    };
}

/// Every API this broker serves, with the versions it advertises (see docs/compatibility.md for
/// why each range is what it is).
pub static APIS: LazyLock<Vec<Api>> = LazyLock::new(|| {
    vec![
        // Produce v0-2 are advertised only because librdkafka < 2.11 decides whether it may
        // compress by looking for v0; requests below v3 are refused (closed), as in Kafka 4.
        api!(Produce, 0, 11, produce::handle, Order::Handler),
        api!(Fetch, 4, 17, fetch::handle),
        api!(ListOffsets, 1, 10, list_offsets::handle),
        api!(Metadata, 0, 12, metadata::handle),
        api!(ApiVersions, 0, 3, api_versions::handle),
        api!(
            CreateTopics,
            2,
            7,
            admin::create_topics::handle,
            Order::Whole
        ),
        api!(
            DeleteTopics,
            1,
            6,
            admin::delete_topics::handle,
            Order::Whole
        ),
        api!(
            CreatePartitions,
            0,
            3,
            admin::create_partitions::handle,
            Order::Whole
        ),
        api!(DescribeConfigs, 1, 4, admin::describe_configs::handle),
        api!(
            AlterConfigs,
            0,
            2,
            admin::alter_configs::handle,
            Order::Whole
        ),
        api!(
            IncrementalAlterConfigs,
            0,
            1,
            admin::incremental_alter_configs::handle,
            Order::Whole
        ),
        api!(DescribeCluster, 0, 2, admin::describe_cluster::handle),
        api!(
            DeleteRecords,
            0,
            2,
            admin::delete_records::handle,
            Order::Whole
        ),
        api!(DescribeLogDirs, 1, 4, admin::describe_log_dirs::handle),
        // Operators move leaders and replicas (KIP-460, KIP-455, KIP-860).
        api!(
            ElectLeaders,
            0,
            2,
            admin::elect_leaders::handle,
            Order::Whole
        ),
        api!(
            AlterPartitionReassignments,
            0,
            1,
            admin::alter_partition_reassignments::handle,
            Order::Whole
        ),
        api!(
            ListPartitionReassignments,
            0,
            0,
            admin::list_partition_reassignments::handle
        ),
        api!(
            ListConfigResources,
            0,
            1,
            admin::list_config_resources::handle
        ),
        api!(OffsetForLeaderEpoch, 2, 4, offset_for_leader_epoch::handle),
        api!(
            DescribeTopicPartitions,
            0,
            0,
            describe_topic_partitions::handle
        ),
        api!(FindCoordinator, 0, 6, group::find_coordinator::handle),
        api!(JoinGroup, 0, 9, group::join_group::handle),
        api!(SyncGroup, 0, 5, group::sync_group::handle),
        api!(Heartbeat, 0, 4, group::heartbeat::handle),
        api!(LeaveGroup, 0, 5, group::leave_group::handle),
        api!(
            OffsetCommit,
            2,
            9,
            group::offset_commit::handle,
            Order::Whole
        ),
        api!(OffsetFetch, 1, 9, group::offset_fetch::handle),
        api!(ListGroups, 0, 5, group::list_groups::handle),
        api!(DescribeGroups, 0, 6, group::describe_groups::handle),
        api!(
            DeleteGroups,
            0,
            2,
            group::delete_groups::handle,
            Order::Whole
        ),
        api!(
            OffsetDelete,
            0,
            0,
            group::offset_delete::handle,
            Order::Whole
        ),
        api!(InitProducerId, 0, 5, txn::init_producer_id::handle),
        // Transactions (KIP-98, "transaction version 1": no KIP-890 server-side verification
        // API versions are advertised).
        api!(
            AddPartitionsToTxn,
            0,
            3,
            txn::add_partitions_to_txn::handle,
            Order::Whole
        ),
        api!(
            AddOffsetsToTxn,
            0,
            3,
            txn::add_offsets_to_txn::handle,
            Order::Whole
        ),
        api!(EndTxn, 0, 3, txn::end_txn::handle, Order::Whole),
        api!(
            TxnOffsetCommit,
            0,
            3,
            txn::txn_offset_commit::handle,
            Order::Whole
        ),
        api!(
            DescribeTransactions,
            0,
            0,
            txn::describe_transactions::handle
        ),
        api!(ListTransactions, 0, 1, txn::list_transactions::handle),
        // Inter-broker: transaction coordinators send markers to partition leaders.
        api!(
            WriteTxnMarkers,
            1,
            1,
            txn::write_txn_markers::handle,
            Order::Whole
        ),
        api!(DescribeProducers, 0, 0, txn::describe_producers::handle),
        // KIP-848. v1 (client-generated member ids) is what librdkafka 2.12 requires.
        api!(
            ConsumerGroupHeartbeat,
            0,
            1,
            group::consumer_group_heartbeat::handle
        ),
        api!(
            ConsumerGroupDescribe,
            0,
            1,
            group::consumer_group_describe::handle
        ),
    ]
});

pub fn lookup(key: ApiKey) -> Option<&'static Api> {
    APIS.iter().find(|a| a.key == key)
}

/// Whether `body` decodes as the request type of `_handler` at `version` (exactly what [`run`]
/// does before calling the handler).
fn decodes<Req, Resp, F, Fut>(_handler: &F, mut body: Bytes, version: i16) -> bool
where
    Req: Decodable,
    F: FnOnce(RequestContext, Req) -> Fut,
    Fut: Future<Output = HandlerResult<Resp>>,
{
    decode_guarded(|| Req::decode(&mut body, version)).is_some()
}

/// Decodes the body, runs the handler and encodes its response into a whole frame
/// (length prefix, response header, body).
async fn run<Req, Resp, F, Fut>(
    ctx: RequestContext,
    mut body: Bytes,
    handler: F,
) -> Result<Option<Frame>, HandlerError>
where
    Req: Decodable,
    Resp: Respond,
    F: FnOnce(RequestContext, Req) -> Fut,
    Fut: Future<Output = HandlerResult<Resp>>,
{
    let version = ctx.api_version;
    let api_key = ctx.api_key;
    let correlation_id = ctx.correlation_id;
    let started = std::time::Instant::now();
    let req = decode_guarded(|| Req::decode(&mut body, version))
        .ok_or_else(|| HandlerError::Decode(format!("{api_key:?} v{version} request")))?;
    let mut ctx = ctx;
    // Order::Whole: hold this connection's turn for the whole handler.
    let turn = match lookup(api_key).map(|a| a.order) {
        Some(Order::Whole) => match ctx.ticket.take() {
            Some(t) => {
                let turn = t.enter().await;
                // Earlier Produce requests' appends may still be queued: take effect after them.
                turn.drained().await;
                Some(turn)
            }
            None => None,
        },
        _ => None,
    };
    let resp = handler(ctx, req).await;
    drop(turn);
    let observed = match &resp {
        Ok(Some(r)) => Some(r.observed()),
        _ => None,
    };
    crate::metrics::request(api_key, version, started.elapsed(), observed, resp.is_err());
    let Some(resp) = resp? else {
        return Ok(None);
    };
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut out, api_key.response_header_version(version))
        .map_err(|e| HandlerError::Encode(e.to_string()))?;
    let frame = resp
        .into_frame(out, version)
        .map_err(|e| HandlerError::Encode(format!("{api_key:?} v{version}: {e}")))?;
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/api-versions.md lists exactly the registry: every API with the versions advertised.
    #[test]
    fn api_versions_doc_matches_the_registry() {
        let doc = include_str!("../../docs/api-versions.md");
        let rows: Vec<String> = doc
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| API") && !l.starts_with("|--"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                format!("{} {} {}", cells[1], cells[2], cells[3])
            })
            .collect();
        let mut expected: Vec<String> = APIS
            .iter()
            .map(|a| format!("{:?} {} {}–{}", a.key, a.key as i16, a.min, a.max))
            .collect();
        expected.sort_by_key(|r| r.split(' ').nth(1).and_then(|k| k.parse::<i16>().ok()));
        assert_eq!(rows, expected, "docs/api-versions.md is out of date");
    }

    #[test]
    fn every_advertised_version_is_one_the_codec_knows() {
        for a in APIS.iter() {
            let known = a.key.valid_versions();
            assert!(a.min <= a.max, "{:?}", a.key);
            // Produce v0-2 are advertised but refused by the handler (see the registry).
            if a.key != ApiKey::Produce {
                assert!(
                    a.min >= known.min && a.max <= known.max,
                    "{:?} {}-{}",
                    a.key,
                    a.min,
                    a.max
                );
            }
        }
    }
}
