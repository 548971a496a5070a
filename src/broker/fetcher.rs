//! Follower replicas: one fetcher task per partition this broker follows, pulling from its
//! leader with Fetch as Kafka's replica fetchers do (docs/cluster.md, "Replication").
//!
//! A fetcher runs for one `(leader, leader epoch)`; a new state replaces it
//! ([`Broker::follow`]). Each connection to the leader starts by finding where this replica's
//! log diverged from the leader's (OffsetForLeaderEpoch for this log's latest epoch: the
//! leader's end of that epoch) and truncating to it, so nothing the old leader wrote that
//! the new one lacks survives here (every fetch carries this log's latest epoch too, and a
//! leader that finds it diverged answers DivergingEpoch, truncated to the same way). Then it fetches from its log end offset, appends what
//! comes exactly as the leader wrote it (`append_replica`), makes it durable (fdatasync, in
//! the durable default) and only then fetches on: the next fetch offset tells the leader
//! what this replica holds durably, which is what the leader's high watermark counts. The
//! leader's high watermark in each response becomes this replica's (bounded by its own end).
//! A replica whose log ends below the leader's log start offset (out of range, the records it
//! lacks deleted there) empties its log and starts at the leader's log start; every replica
//! moves its log start up to the leader's (DeleteRecords reaches followers so).
//!
//! A replica out of the ISR that the topic lists in `follower.replication.throttled.replicas`
//! for this broker fetches only while `follower.replication.throttled.rate` allows
//! (`super::throttle`).
//!
//! Fetches use the highest version both brokers serve: from v13 the topic goes by its id (a
//! topic deleted and created again under its name is another topic), from v15 the request
//! carries this broker's epoch (KIP-903: the leader does not count a fetch from an earlier
//! incarnation of this broker, nor takes it into the ISR).
//!
//! Every request carries the leader epoch the fetcher follows: a leader at another epoch
//! refuses it (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH), and the fetcher waits for the
//! state that names the current leader. Errors end the connection; it is retried after a
//! pause while the fetcher lives. Blocking work (appends that may roll a segment,
//! truncation) runs on the blocking pool.

use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::ResponseError;
use tracing::{debug, info, warn};

use super::{Broker, Partition};
use crate::client::Client;
use crate::storage::PartitionLog;

/// How long a fetch waits at the leader for new data.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// How long a throttled replica waits before it looks at the follower rate again.
const THROTTLE_WAIT: Duration = Duration::from_millis(50);
/// The pause before a failed connection is tried again.
const RETRY: Duration = Duration::from_millis(200);

/// A running fetcher: stops when dropped.
pub(super) struct Follow {
    pub leader: i32,
    pub leader_epoch: i32,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Broker {
    /// Makes this broker follow `leader` at `leader_epoch` for `p` (replacing a fetcher for
    /// another leader or epoch), or stops following (`None`).
    pub(super) fn follow(&self, p: &Arc<Partition>, target: Option<(i32, i32)>) {
        let key = (p.topic.clone(), p.index);
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|e| e.into_inner());
        // A stopping broker starts no fetcher.
        let target = target.filter(|_| !*self.shutdown_signal().borrow());
        match target {
            None => {
                if fetchers.remove(&key).is_some() {
                    debug!(topic = %p.topic, partition = p.index, "stopped following");
                }
            }
            Some((leader, leader_epoch)) => {
                if fetchers
                    .get(&key)
                    .is_some_and(|f| f.leader == leader && f.leader_epoch == leader_epoch)
                {
                    return;
                }
                let Some(me) = self.self_ref() else { return };
                info!(topic = %p.topic, partition = p.index, leader, leader_epoch, "following");
                let task = tokio::spawn(fetch_loop(me, p.clone(), leader, leader_epoch));
                fetchers.insert(
                    key,
                    Follow {
                        leader,
                        leader_epoch,
                        task,
                    },
                );
            }
        }
    }

    /// Stops every fetcher of `topic` (deleted), or all of them (`None`: shutdown).
    pub(super) fn stop_following(&self, topic: Option<&str>) {
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|e| e.into_inner());
        fetchers.retain(|(t, _), _| topic.is_some_and(|name| name != t));
    }
}

/// Fetches from `leader` for as long as the task lives (see the module docs).
async fn fetch_loop(broker: Weak<Broker>, p: Arc<Partition>, leader: i32, leader_epoch: i32) {
    let mut last_error = String::new();
    let mut refused = 0;
    // Whether the leader's listener ever took this fetcher's connection: only a listener that
    // did and then refuses is taken for a process gone (never a wrong advertised address).
    let mut reached = false;
    loop {
        let Some(b) = broker.upgrade() else { return };
        if *b.shutdown_signal().borrow() {
            return;
        }
        let registration = b.live_brokers().into_iter().find(|r| r.node_id == leader);
        let addr = registration
            .as_ref()
            .map(|r| format!("{}:{}", r.host, r.port));
        let me = b.node_id();
        let max_bytes = b.config.replica_fetch_max_bytes;
        drop(b);
        let r = match addr {
            Some(addr) => {
                follow_once(
                    &broker,
                    &p,
                    &addr,
                    me,
                    leader_epoch,
                    max_bytes,
                    &mut reached,
                )
                .await
            }
            None => Err(anyhow!("leader {leader} is not registered")),
        };
        // A registered broker listens (it binds before it registers, and closes its listener
        // only when it stops, ending its registration then): a listener that took this
        // fetcher's connections and now refuses them twice in a row means its process is gone
        // or going, so its registration is ended now rather than when its lease expires, and
        // the controller moves its partitions at once.
        refused = if r.as_ref().err().is_some_and(connection_refused) {
            refused + 1
        } else {
            0
        };
        if refused >= 2 && reached {
            refused = 0;
            if let (Some(reg), Some(b)) = (registration.as_ref(), broker.upgrade()) {
                match b.store.expire_registration(reg.node_id, reg.epoch).await {
                    Ok(true) => warn!(
                        leader,
                        epoch = reg.epoch,
                        "the leader's listener refuses connections: its registration is ended"
                    ),
                    Ok(false) => {}
                    Err(e) => debug!(leader, "cannot end the leader's registration: {e}"),
                }
            }
        }
        if let Err(e) = r {
            let e = format!("{e:#}");
            if e != last_error {
                debug!(topic = %p.topic, partition = p.index, leader, leader_epoch, "replica fetcher: {e}");
                last_error = e;
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Whether connecting was refused (nothing listens at the address).
fn connection_refused(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

/// One connection to the leader: truncate to the divergence point, then fetch until an error.
async fn follow_once(
    broker: &Weak<Broker>,
    p: &Arc<Partition>,
    addr: &str,
    me: i32,
    leader_epoch: i32,
    max_bytes: i32,
    reached: &mut bool,
) -> anyhow::Result<()> {
    let mut client = Client::connect_as(addr, Duration::from_secs(10), "strand-replica").await?;
    *reached = true;
    // Fetch v13+ names the topic by id, v15+ carries this broker's epoch (KIP-903).
    let version = client.version::<FetchRequest>()?;
    let topic_id = broker
        .upgrade()
        .and_then(|b| b.topic(&p.topic).map(|t| t.record.id))
        .context("the topic is gone")?;
    truncate_to_leader(&mut client, p, me, leader_epoch).await?;
    loop {
        if broker
            .upgrade()
            .is_none_or(|b| *b.shutdown_signal().borrow())
        {
            return Ok(());
        }
        // A throttled replica (out of the ISR) waits while the follower rate is used up.
        let throttle = broker.upgrade().and_then(|b| b.follower_throttle(p));
        if let Some(rate) = throttle {
            if broker
                .upgrade()
                .is_some_and(|b| b.follower_quota.exceeded(rate))
            {
                tokio::time::sleep(THROTTLE_WAIT).await;
                continue;
            }
        }
        let log = p.log()?.clone();
        let offset = log.log_end_offset();
        let mut fp = FetchPartition::default();
        fp.partition = p.index;
        fp.current_leader_epoch = leader_epoch;
        fp.fetch_offset = offset;
        fp.partition_max_bytes = max_bytes;
        fp.log_start_offset = log.log_start_offset();
        fp.last_fetched_epoch = log.latest_epoch().unwrap_or(-1);
        let mut topic = FetchTopic::default();
        topic.topic = TopicName(p.topic.clone().into());
        topic.topic_id = topic_id;
        topic.partitions = vec![fp];
        let mut req = FetchRequest::default();
        if version >= 15 {
            // Read for every request: a broker that lost its lease registers again with a
            // new epoch, and the leader refuses fetches carrying the old one.
            let broker_epoch = broker.upgrade().context("the broker stopped")?.epoch();
            req.replica_state.replica_id = BrokerId(me);
            req.replica_state.replica_epoch = broker_epoch;
        } else {
            req.replica_id = BrokerId(me);
        }
        req.max_wait_ms = FETCH_MAX_WAIT_MS;
        req.min_bytes = 1;
        req.max_bytes = max_bytes;
        req.topics = vec![topic];
        let (resp, _) = client.call(&req).await?;
        if resp.error_code != 0 {
            bail!(
                "fetch refused: {:?}",
                ResponseError::try_from_code(resp.error_code)
            );
        }
        let pd = resp
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|d| d.partition_index == p.index)
            .context("the fetch response lacks the partition")?;
        if pd.diverging_epoch.epoch >= 0 || pd.diverging_epoch.end_offset >= 0 {
            let (epoch, end) = (pd.diverging_epoch.epoch, pd.diverging_epoch.end_offset);
            let latest = log.latest_epoch().unwrap_or(-1);
            truncate_to(
                p,
                &log,
                divergence_point(p, &log, latest, epoch, end),
                leader_epoch,
            )
            .await?;
            continue;
        }
        if pd.error_code == ResponseError::OffsetOutOfRange.code() && pd.log_start_offset > offset {
            // What this replica lacks is gone at the leader (retention, DeleteRecords): start
            // over at the leader's log start.
            let (cut, start) = (log.clone(), pd.log_start_offset);
            let end = tokio::task::spawn_blocking(move || cut.truncate_fully_and_start_at(start))
                .await??;
            p.truncated(end);
            continue;
        }
        if pd.error_code != 0 {
            let e = ResponseError::try_from_code(pd.error_code);
            // Out of range: this log ends past the leader's (it diverged): truncate again.
            bail!("fetch from {offset}: {e:?}");
        }
        let records = pd.records.unwrap_or_default();
        // The leader's log start may fall inside a batch, which comes whole: an empty replica
        // (one that started over at the leader's log start) starts at the batch's first
        // offset instead.
        let first = records
            .get(..8)
            .map(|b| i64::from_be_bytes(b.try_into().unwrap_or_default()));
        if let Some(first) = first.filter(|f| *f < offset && log.log_start_offset() == offset) {
            let cut = log.clone();
            tokio::task::spawn_blocking(move || cut.truncate_fully_and_start_at(first)).await??;
        }
        if let (Some(rate), Some(b)) = (throttle, broker.upgrade()) {
            b.follower_quota.record(rate, records.len() as u64);
        }
        if !records.is_empty() {
            let part = p.clone();
            let now = super::now_ms();
            let appended =
                tokio::task::spawn_blocking(move || part.append_replica(&records, now)).await?;
            let info = appended.with_context(|| format!("replica append at {offset}"))?;
            if p.durable_visibility() {
                log.flush_until(info.last_offset + 1).await?;
            }
        }
        p.follow_high_watermark(pd.high_watermark);
        // The leader's log start (DeleteRecords, retention) moves this replica's too, as far
        // as this replica's log reaches.
        let leader_start = pd.log_start_offset;
        if leader_start > log.log_start_offset() && leader_start <= log.log_end_offset() {
            let moved = log.clone();
            tokio::task::spawn_blocking(move || moved.advance_log_start_offset(leader_start))
                .await??;
        }
    }
}

/// Cuts this replica's log back to where it diverged from the leader's (see the module docs).
async fn truncate_to_leader(
    client: &mut Client,
    p: &Arc<Partition>,
    me: i32,
    leader_epoch: i32,
) -> anyhow::Result<()> {
    let log = p.log()?.clone();
    let Some(latest) = log.latest_epoch() else {
        return Ok(()); // an empty log has nothing to cut
    };
    let mut part = OffsetForLeaderPartition::default();
    part.partition = p.index;
    part.current_leader_epoch = leader_epoch;
    part.leader_epoch = latest;
    let mut topic = OffsetForLeaderTopic::default();
    topic.topic = TopicName(p.topic.clone().into());
    topic.partitions = vec![part];
    let mut req = OffsetForLeaderEpochRequest::default();
    req.replica_id = BrokerId(me);
    req.topics = vec![topic];
    let (resp, _) = client.call(&req).await?;
    let e = resp
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|e| e.partition == p.index)
        .context("the OffsetForLeaderEpoch response lacks the partition")?;
    if e.error_code != 0 {
        bail!(
            "OffsetForLeaderEpoch refused: {:?}",
            ResponseError::try_from_code(e.error_code)
        );
    }
    let target = divergence_point(p, &log, latest, e.leader_epoch, e.end_offset);
    truncate_to(p, &log, target, leader_epoch).await
}

/// Where this replica's log must end, given the leader's answer for this log's `latest`
/// epoch: the leader's largest epoch at or below it (`epoch`) ends at `end`.
fn divergence_point(p: &Partition, log: &PartitionLog, latest: i32, epoch: i32, end: i64) -> i64 {
    if end < 0 {
        // The leader knows no epoch this old: keep what is committed (below the high
        // watermark every in-sync replica holds the same records).
        p.high_watermark()
    } else if epoch == latest {
        end
    } else {
        // The leader's latest epoch at or below ours ends there; ours may end earlier.
        let (_, mine) = log.epoch_end_offset(epoch);
        if mine < 0 {
            end
        } else {
            end.min(mine)
        }
    }
}

/// Truncates this replica's log to `target` if it ends past it (on the blocking pool).
async fn truncate_to(
    p: &Arc<Partition>,
    log: &Arc<PartitionLog>,
    target: i64,
    leader_epoch: i32,
) -> anyhow::Result<()> {
    let end = log.log_end_offset();
    if target < end {
        let cut = log.clone();
        let new_end = tokio::task::spawn_blocking(move || cut.truncate_to(target)).await??;
        p.truncated(new_end);
        warn!(topic = %p.topic, partition = p.index, from = end, to = new_end, leader_epoch, "truncated to the leader's log");
    }
    Ok(())
}
