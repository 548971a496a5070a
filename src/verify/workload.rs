//! The workload `strand verify` drives, through librdkafka (the `rdkafka` crate), recording a
//! [`History`] for the checker.
//!
//! Threads, not tasks: librdkafka's calls block. Every client gets the user's `--set`
//! properties. What runs:
//! - producers (idempotent, acks=all; transactional with `--transactional`), each record's
//!   value naming the run, the producer session and a sequence number, its partition chosen
//!   round-robin, its delivery report recorded (acked at an offset, or librdkafka's persisted
//!   status for a failure: not persisted = refused, otherwise unknown);
//! - tail readers, one per isolation level, assigned every partition from the start for the
//!   whole load;
//! - a consumer group whose members come and go (`--churn`), committing their positions, and a
//!   sampler fetching the group's committed offsets;
//! - once the producers are done: the high watermarks as the end, final readers (one per
//!   isolation level) reading every partition to it, and the group left to drain to it.
//!
//! A transactional producer that hits a fatal error is replaced by a new one with the same
//! `transactional.id`, whose `init_transactions` fences the old one and resolves its open
//! transaction, so no transaction is left hanging (it would hold read_committed readers back).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use super::history::{
    CommitKind, CommitSample, History, Isolation, Outcome, Produced, Read, Reader, ReaderKind,
    RecordId, Txn, TxnOutcome,
};

/// What to run (from the command line).
#[derive(Clone, Debug)]
pub struct Plan {
    pub run: String,
    pub topic: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Configs of the topic, if it is created.
    pub topic_config: Vec<(String, String)>,
    pub load: Duration,
    pub settle: Duration,
    /// A producer's message.timeout.ms (and a transactional one's transaction.timeout.ms).
    pub delivery_timeout: Duration,
    pub producers: u32,
    /// Records per second over all producers; 0 = as fast as they go.
    pub rate: u64,
    pub record_size: usize,
    pub transactional: bool,
    pub abort_rate: f64,
    pub txn_records: u32,
    pub group_members: u32,
    /// Every this often one group member leaves and a new one joins (`None`: never).
    pub churn: Option<Duration>,
    pub group_protocol: String,
    pub isolations: Vec<Isolation>,
    pub seed: u64,
    /// librdkafka properties for every client.
    pub client: Vec<(String, String)>,
}

/// Where the history goes while the workload runs.
struct Recorder {
    t0: Instant,
    run: String,
    record_size: usize,
    state: Mutex<State>,
    next_session: AtomicU32,
    next_txn: AtomicU64,
}

#[derive(Default)]
struct State {
    produced: HashMap<RecordId, Produced>,
    txns: BTreeMap<u64, Txn>,
    readers: Vec<Reader>,
    reads: Vec<Read>,
    commits: Vec<CommitSample>,
    corrupt: Vec<String>,
    foreign: u64,
}

/// The value of record `seq` of producer session `producer`.
fn encode(run: &str, id: RecordId, txn: Option<u64>, size: usize) -> Vec<u8> {
    let txn = txn.map_or("-".to_string(), |t| t.to_string());
    let mut v = format!("strand-verify {run} {} {} {txn} ", id.producer, id.seq).into_bytes();
    while v.len() < size {
        v.push(b'.');
    }
    v
}

/// What a value says: `Ok(None)` for another run's (or anyone else's) record; an error for a
/// value with this run's mark that is not exactly what [`encode`] wrote.
fn decode(run: &str, value: &[u8], size: usize) -> Result<Option<RecordId>, String> {
    let text = String::from_utf8_lossy(value);
    let mut words = text.split(' ');
    if words.next() != Some("strand-verify") || words.next() != Some(run) {
        return Ok(None);
    }
    let num = |w: Option<&str>| w.and_then(|w| w.parse::<u64>().ok());
    let producer = num(words.next()).and_then(|p| u32::try_from(p).ok());
    let seq = num(words.next());
    let txn = match words.next() {
        Some("-") => Some(None),
        w => num(w).map(Some),
    };
    let (Some(producer), Some(seq), Some(txn)) = (producer, seq, txn) else {
        return Err(format!(
            "unparsable value {:?}",
            &text[..text.len().min(80)]
        ));
    };
    let id = RecordId { producer, seq };
    if encode(run, id, txn, size) != value {
        return Err(format!(
            "record {id}: value of {} bytes differs from what was sent",
            value.len()
        ));
    }
    Ok(Some(id))
}

impl Recorder {
    fn ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    fn new_session(&self) -> u32 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    fn add_reader(&self, name: &str, kind: ReaderKind, isolation: Isolation) -> usize {
        let mut s = self.state.lock().unwrap();
        s.readers.push(Reader {
            name: name.into(),
            kind,
            isolation,
            complete: BTreeSet::new(),
            stalled: BTreeMap::new(),
        });
        s.readers.len() - 1
    }

    fn sent(&self, id: RecordId, partition: i32, txn: Option<u64>) {
        self.state.lock().unwrap().produced.insert(
            id,
            Produced {
                id,
                partition,
                txn,
                outcome: Outcome::Unknown {
                    error: "no delivery report".into(),
                },
            },
        );
    }

    fn delivered(&self, id: RecordId, outcome: Outcome) {
        if let Some(p) = self.state.lock().unwrap().produced.get_mut(&id) {
            p.outcome = outcome;
        }
    }

    fn new_txn(&self) -> u64 {
        let id = self.next_txn.fetch_add(1, Ordering::Relaxed);
        self.state.lock().unwrap().txns.insert(
            id,
            Txn {
                id,
                outcome: TxnOutcome::Unknown,
                commit_requested_ms: None,
            },
        );
        id
    }

    fn commit_requested(&self, txn: u64) {
        let ms = self.ms();
        if let Some(t) = self.state.lock().unwrap().txns.get_mut(&txn) {
            t.commit_requested_ms.get_or_insert(ms);
        }
    }

    fn txn_outcome(&self, txn: u64, outcome: TxnOutcome) {
        if let Some(t) = self.state.lock().unwrap().txns.get_mut(&txn) {
            t.outcome = outcome;
        }
    }

    fn read(&self, reader: usize, session: u32, m: &BorrowedMessage<'_>) {
        let at_ms = self.ms();
        let value = m.payload().unwrap_or_default();
        let mut s = self.state.lock().unwrap();
        match decode(&self.run, value, self.record_size) {
            Ok(Some(id)) => s.reads.push(Read {
                reader,
                session,
                partition: m.partition(),
                offset: m.offset(),
                id,
                at_ms,
            }),
            Ok(None) => s.foreign += 1,
            Err(e) => {
                let what = format!("partition {} offset {}: {e}", m.partition(), m.offset());
                s.corrupt.push(what);
            }
        }
    }

    fn commits(&self, tpl: &TopicPartitionList, kind: CommitKind, started_ms: u64) {
        let ended_ms = self.ms();
        let mut s = self.state.lock().unwrap();
        for e in tpl.elements() {
            if let Offset::Offset(offset) = e.offset() {
                s.commits.push(CommitSample {
                    partition: e.partition(),
                    offset,
                    kind,
                    started_ms,
                    ended_ms,
                });
            }
        }
    }

    fn finish(&self, reader: usize, complete: BTreeSet<i32>, stalled: BTreeMap<i32, (i64, i64)>) {
        let mut s = self.state.lock().unwrap();
        s.readers[reader].complete = complete;
        s.readers[reader].stalled = stalled;
    }
}

/// What the run produced besides the history proper.
pub struct Observed {
    pub history: History,
    /// Records of other runs (or other writers) the readers skipped.
    pub foreign: u64,
    /// Where the final reads had to get to (see [`read_ends`]).
    pub ends: BTreeMap<i32, i64>,
    /// The high watermarks after the load.
    pub high_watermarks: BTreeMap<i32, i64>,
    pub elapsed: Duration,
}

fn client_config(plan: &Plan) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in &plan.client {
        c.set(k, v);
    }
    c
}

/// Creates the topic unless it exists with the planned partition count.
fn ensure_topic(plan: &Plan) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(plan).create()?;
    // All topics: asking for this one could auto-create it with the broker's defaults.
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .context("fetching metadata")?;
    let existing = md
        .topics()
        .iter()
        .find(|t| t.name() == plan.topic && t.error().is_none())
        .map(|t| t.partitions().len() as i32);
    match existing {
        Some(n) if n == plan.partitions => return Ok(()),
        Some(n) => bail!(
            "topic {} exists with {n} partitions, not {}",
            plan.topic,
            plan.partitions
        ),
        None => {}
    }
    let mut topic = NewTopic::new(
        &plan.topic,
        plan.partitions,
        TopicReplication::Fixed(plan.replication_factor),
    );
    for (k, v) in &plan.topic_config {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics([&topic], &opts))?;
    for r in results {
        if let Err((name, code)) = r {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                bail!("creating topic {name}: {code}");
            }
        }
    }
    // Wait until the metadata shows every partition with a leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(&plan.topic), Duration::from_secs(5));
        if let Ok(md) = md {
            if let Some(t) = md.topics().iter().find(|t| t.name() == plan.topic) {
                if t.partitions().len() as i32 == plan.partitions
                    && t.partitions().iter().all(|p| p.leader() >= 0)
                {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "topic {} has no leader for every partition after 30 s",
                plan.topic
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

struct DeliveryCtx {
    rec: Arc<Recorder>,
}

impl ClientContext for DeliveryCtx {}

impl ProducerContext for DeliveryCtx {
    type DeliveryOpaque = Box<RecordId>;

    fn delivery(&self, result: &DeliveryResult<'_>, id: Box<RecordId>) {
        let outcome = match result {
            Ok(m) => Outcome::Acked { offset: m.offset() },
            Err((e, m)) => {
                // SAFETY: `m` is the message this delivery report is about; librdkafka keeps it
                // alive for the whole callback, and the call only reads its status field.
                let status = unsafe { rdkafka::bindings::rd_kafka_message_status(m.ptr()) };
                if status
                    == rdkafka::bindings::rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_NOT_PERSISTED
                {
                    Outcome::Refused {
                        error: e.to_string(),
                    }
                } else {
                    Outcome::Unknown {
                        error: e.to_string(),
                    }
                }
            }
        };
        self.rec.delivered(*id, outcome);
    }
}

type VerifyProducer = ThreadedProducer<DeliveryCtx>;

fn make_producer(
    plan: &Plan,
    rec: &Arc<Recorder>,
    transactional_id: Option<&str>,
) -> anyhow::Result<VerifyProducer> {
    let mut c = client_config(plan);
    let timeout_ms = plan.delivery_timeout.as_millis().to_string();
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", &timeout_ms);
    if let Some(t) = transactional_id {
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        c.set("transactional.id", t)
            .set("transaction.timeout.ms", &timeout_ms);
    }
    Ok(c.create_with_context(DeliveryCtx { rec: rec.clone() })?)
}

/// Paces sends to `rate` per second (0: no pacing).
struct Pacer {
    next: Instant,
    every: Option<Duration>,
}

impl Pacer {
    fn new(rate: f64) -> Pacer {
        Pacer {
            next: Instant::now(),
            every: (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate)),
        }
    }

    fn wait(&mut self) {
        if let Some(every) = self.every {
            let now = Instant::now();
            if self.next > now {
                thread::sleep(self.next - now);
            }
            // Never run ahead to catch up after a stall: a burst would only fill queues.
            self.next = self.next.max(now) + every;
        }
    }
}

/// Sends one record; a full local queue waits, any other local refusal is recorded.
fn send(
    p: &VerifyProducer,
    plan: &Plan,
    rec: &Recorder,
    id: RecordId,
    partition: i32,
    txn: Option<u64>,
) -> Result<(), KafkaError> {
    let value = encode(&plan.run, id, txn, plan.record_size);
    rec.sent(id, partition, txn);
    let mut record: BaseRecord<'_, (), [u8], Box<RecordId>> =
        BaseRecord::with_opaque_to(&plan.topic, Box::new(id))
            .partition(partition)
            .payload(&value);
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => {
                rec.delivered(
                    id,
                    Outcome::Refused {
                        error: e.to_string(),
                    },
                );
                return Err(e);
            }
        }
    }
}

fn produce_plain(plan: &Plan, rec: &Arc<Recorder>, until: Instant) -> anyhow::Result<()> {
    let mut p = make_producer(plan, rec, None)?;
    let mut producer = rec.new_session();
    let mut pacer = Pacer::new(plan.rate as f64 / plan.producers as f64);
    let mut seq = 0u64;
    while Instant::now() < until {
        pacer.wait();
        let partition = (seq % plan.partitions as u64) as i32;
        let _ = send(&p, plan, rec, RecordId { producer, seq }, partition, None);
        seq += 1;
        // An idempotent producer that hit a fatal error sends nothing more: its outstanding
        // records get their reports as it is dropped, and a new producer (a new session, so
        // the ordering check does not span them) goes on.
        if seq.is_multiple_of(64) {
            if let Some((code, why)) = p.client().fatal_error() {
                tracing::warn!(%code, %why, "producer {producer}: fatal error; starting a new one");
                let _ = p.flush(plan.settle);
                p = make_producer(plan, rec, None)?;
                producer = rec.new_session();
                seq = 0;
            }
        }
    }
    let _ = p.flush(plan.settle);
    Ok(())
}

/// `(retriable, requires abort)` of a transactional call's error.
fn txn_error(e: &KafkaError) -> (bool, bool) {
    match e {
        KafkaError::Transaction(e) => (e.is_retriable(), e.txn_requires_abort()),
        _ => (false, false),
    }
}

/// Retries a transactional call while it fails retriably, until `until`.
fn retrying(
    until: Instant,
    mut call: impl FnMut() -> Result<(), KafkaError>,
) -> Result<(), KafkaError> {
    loop {
        match call() {
            Err(e) if txn_error(&e).0 && Instant::now() < until => {
                thread::sleep(Duration::from_millis(100))
            }
            r => return r,
        }
    }
}

fn produce_transactional(
    plan: &Plan,
    rec: &Arc<Recorder>,
    index: u32,
    until: Instant,
) -> anyhow::Result<()> {
    let tid = format!("strand-verify-{}-{index}", plan.run);
    let settle_by = until + plan.settle;
    let call_timeout = Duration::from_secs(30);
    let mut rng = rand::rngs::StdRng::seed_from_u64(plan.seed ^ u64::from(index));
    let mut pacer = Pacer::new(plan.rate as f64 / plan.producers as f64);
    // A producer session: a fresh producer that has completed init_transactions.
    let start = || -> Result<(VerifyProducer, u32), String> {
        let mut last = String::from("no attempt");
        while Instant::now() < settle_by {
            match make_producer(plan, rec, Some(&tid)) {
                Ok(p) => match retrying(settle_by, || p.init_transactions(call_timeout)) {
                    Ok(()) => return Ok((p, rec.new_session())),
                    Err(e) => last = format!("init_transactions: {e}"),
                },
                Err(e) => last = format!("creating the producer: {e}"),
            }
            thread::sleep(Duration::from_millis(500));
        }
        Err(last)
    };
    let (mut p, mut producer) = match start() {
        Ok(started) => started,
        Err(e) => bail!("producer {tid} could not start: {e}"),
    };
    let mut seq = 0u64;
    while Instant::now() < until {
        let txn = rec.new_txn();
        let mut ok = p.begin_transaction().is_ok();
        for _ in 0..plan.txn_records {
            if !ok || Instant::now() >= until {
                break;
            }
            pacer.wait();
            let partition = (seq % plan.partitions as u64) as i32;
            ok = send(
                &p,
                plan,
                rec,
                RecordId { producer, seq },
                partition,
                Some(txn),
            )
            .is_ok();
            seq += 1;
        }
        let abort = !ok || rng.random_bool(plan.abort_rate.clamp(0.0, 1.0));
        let result = if abort {
            retrying(settle_by, || p.abort_transaction(call_timeout)).map(|_| TxnOutcome::Aborted)
        } else {
            rec.commit_requested(txn);
            retrying(settle_by, || p.commit_transaction(call_timeout))
                .map(|_| TxnOutcome::Committed)
        };
        let outcome = match result {
            Ok(o) => Some(o),
            // A failed commit that requires an abort did not commit.
            Err(e) if txn_error(&e).1 => retrying(settle_by, || p.abort_transaction(call_timeout))
                .ok()
                .map(|_| TxnOutcome::Aborted),
            Err(_) => None,
        };
        match outcome {
            Some(o) => rec.txn_outcome(txn, o),
            None => {
                // Fatal (or out of time): a new producer fences this one and resolves its
                // transaction, whose outcome stays unknown to us.
                drop(p);
                (p, producer) = match start() {
                    Ok(next) => next,
                    Err(e) => bail!("producer {tid} could not start again after an error: {e}"),
                };
                seq = 0;
            }
        }
    }
    let _ = p.flush(plan.settle);
    Ok(())
}

fn consumer_config(plan: &Plan, group: &str, isolation: Isolation) -> ClientConfig {
    let mut c = client_config(plan);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation.to_string());
    c
}

fn assign_all(c: &BaseConsumer, plan: &Plan) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..plan.partitions {
        tpl.add_partition_offset(&plan.topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    Ok(())
}

/// Reads every partition from the start until `stop`.
fn tail(plan: &Plan, rec: &Recorder, reader: usize, isolation: Isolation, stop: &AtomicBool) {
    let group = format!("strand-verify-{}-tail", plan.run);
    let Ok(c) = consumer_config(plan, &group, isolation).create::<BaseConsumer>() else {
        return;
    };
    if assign_all(&c, plan).is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            rec.read(reader, 0, &m);
        }
    }
}

/// The high watermark of every partition.
fn high_watermarks(plan: &Plan, until: Instant) -> anyhow::Result<BTreeMap<i32, i64>> {
    let c: BaseConsumer =
        consumer_config(plan, "strand-verify-ends", Isolation::ReadUncommitted).create()?;
    let mut out = BTreeMap::new();
    for p in 0..plan.partitions {
        loop {
            match c.fetch_watermarks(&plan.topic, p, Duration::from_secs(5)) {
                Ok((_, high)) => {
                    out.insert(p, high);
                    break;
                }
                Err(e) if Instant::now() > until => {
                    bail!("high watermark of partition {p}: {e}")
                }
                Err(_) => thread::sleep(Duration::from_millis(500)),
            }
        }
    }
    Ok(out)
}

/// Where the final reads must get to in each partition: its high watermark, or past the
/// highest offset acknowledged in it when that is higher. A record acknowledged at or above
/// the high watermark (a new leader whose ISR is below `min.insync.replicas` keeps the high
/// watermark where it was, KIP-966) is not lost until shown to be: a reader that cannot reach
/// it reports a stall, not a loss.
fn read_ends<'a>(
    hwms: &BTreeMap<i32, i64>,
    produced: impl IntoIterator<Item = &'a Produced>,
) -> BTreeMap<i32, i64> {
    let mut ends = hwms.clone();
    for p in produced {
        if let (Outcome::Acked { offset }, Some(end)) = (&p.outcome, ends.get_mut(&p.partition)) {
            *end = (*end).max(offset + 1);
        }
    }
    ends
}

/// Reads every partition from the start to `ends`, or until `until`.
fn final_read(
    plan: &Plan,
    rec: &Recorder,
    reader: usize,
    isolation: Isolation,
    ends: &BTreeMap<i32, i64>,
    until: Instant,
) {
    let group = format!("strand-verify-{}-final", plan.run);
    let mut reached: BTreeMap<i32, i64> = ends.keys().map(|&p| (p, 0)).collect();
    let c = consumer_config(plan, &group, isolation).create::<BaseConsumer>();
    if let Ok(c) = &c {
        if assign_all(c, plan).is_ok() {
            let mut checked = Instant::now();
            loop {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                    rec.read(reader, 0, &m);
                }
                if checked.elapsed() >= Duration::from_millis(200) {
                    checked = Instant::now();
                    if let Ok(pos) = c.position() {
                        for e in pos.elements() {
                            if let Offset::Offset(o) = e.offset() {
                                reached.insert(e.partition(), o);
                            }
                        }
                    }
                    if ends.iter().all(|(p, end)| reached[p] >= *end) || Instant::now() > until {
                        break;
                    }
                }
            }
        }
    }
    let (complete, stalled) = split(ends, &reached);
    rec.finish(reader, complete, stalled);
}

/// Partitions that reached their end, and the others with where they stopped.
fn split(
    ends: &BTreeMap<i32, i64>,
    reached: &BTreeMap<i32, i64>,
) -> (BTreeSet<i32>, BTreeMap<i32, (i64, i64)>) {
    let mut complete = BTreeSet::new();
    let mut stalled = BTreeMap::new();
    for (&p, &end) in ends {
        let at = reached.get(&p).copied().unwrap_or(0);
        if at >= end {
            complete.insert(p);
        } else {
            stalled.insert(p, (at, end));
        }
    }
    (complete, stalled)
}

/// Counts rebalances, so that reads after one start a new session.
struct MemberCtx {
    rebalances: AtomicU32,
}

impl ClientContext for MemberCtx {}

impl ConsumerContext for MemberCtx {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
    }
}

/// One group member: consumes and commits its position every 200 ms until `stop`.
fn member(plan: &Plan, rec: &Recorder, reader: usize, stop: &AtomicBool) {
    let group = format!("strand-verify-{}-group", plan.run);
    let mut cfg = consumer_config(plan, &group, Isolation::ReadCommitted);
    cfg.set("group.protocol", &plan.group_protocol);
    let ctx = MemberCtx {
        rebalances: AtomicU32::new(0),
    };
    let Ok(c) = cfg.create_with_context::<_, BaseConsumer<MemberCtx>>(ctx) else {
        return;
    };
    if c.subscribe(&[&plan.topic]).is_err() {
        return;
    }
    let base = rec.new_session() << 16;
    // Commits the position when it moved (it also moves past transaction markers, with no
    // record to show for it).
    let mut committed = TopicPartitionList::new();
    let mut commit = |c: &BaseConsumer<MemberCtx>| {
        let Ok(pos) = c.position() else { return };
        let mut tpl = TopicPartitionList::new();
        for e in pos.elements() {
            if let Offset::Offset(o) = e.offset() {
                let _ = tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o));
            }
        }
        if tpl.count() == 0 || tpl == committed {
            return;
        }
        let started = rec.ms();
        if c.commit(&tpl, CommitMode::Sync).is_ok() {
            rec.commits(&tpl, CommitKind::Acknowledged, started);
            committed = tpl;
        }
    };
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let session = base | (c.context().rebalances.load(Ordering::Relaxed) & 0xffff);
            rec.read(reader, session, &m);
        }
        if last_commit.elapsed() >= Duration::from_millis(200) {
            commit(&c);
            last_commit = Instant::now();
        }
    }
    commit(&c);
    // Dropping the consumer closes it: it leaves the group.
}

/// Fetches the group's committed offsets every 250 ms until `stop`; keeps the latest.
fn sampler(plan: &Plan, rec: &Recorder, latest: &Mutex<BTreeMap<i32, i64>>, stop: &AtomicBool) {
    let group = format!("strand-verify-{}-group", plan.run);
    let Ok(c) = consumer_config(plan, &group, Isolation::ReadCommitted).create::<BaseConsumer>()
    else {
        return;
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..plan.partitions {
        let _ = tpl.add_partition(&plan.topic, p);
    }
    while !stop.load(Ordering::Relaxed) {
        let started = rec.ms();
        if let Ok(got) = c.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
            rec.commits(&got, CommitKind::Fetched, started);
            let mut l = latest.lock().unwrap();
            for e in got.elements() {
                if let Offset::Offset(o) = e.offset() {
                    l.insert(e.partition(), o);
                }
            }
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// Runs the plan; returns what it saw.
pub fn run(plan: &Plan, say: impl Fn(&str) + Sync) -> anyhow::Result<Observed> {
    ensure_topic(plan)?;
    let rec = Arc::new(Recorder {
        t0: Instant::now(),
        run: plan.run.clone(),
        record_size: plan.record_size,
        state: Mutex::new(State::default()),
        next_session: AtomicU32::new(1),
        next_txn: AtomicU64::new(1),
    });
    let load_until = Instant::now() + plan.load;
    let settle_until = load_until + plan.settle;
    let stop_tails = AtomicBool::new(false);
    let stop_group = AtomicBool::new(false);
    let group_ends: Mutex<Option<BTreeMap<i32, i64>>> = Mutex::new(None);
    let latest: Mutex<BTreeMap<i32, i64>> = Mutex::new(BTreeMap::new());
    let group_reader = (plan.group_members > 0)
        .then(|| rec.add_reader("group", ReaderKind::Group, Isolation::ReadCommitted));
    let ends_seen: std::sync::OnceLock<BTreeMap<i32, i64>> = std::sync::OnceLock::new();
    let hwms_seen: std::sync::OnceLock<BTreeMap<i32, i64>> = std::sync::OnceLock::new();
    thread::scope(|s| -> anyhow::Result<()> {
        for &iso in &plan.isolations {
            let reader = rec.add_reader(&format!("tail-{iso}"), ReaderKind::Tail, iso);
            let (rec, stop) = (&rec, &stop_tails);
            s.spawn(move || tail(plan, rec, reader, iso, stop));
        }
        if let Some(reader) = group_reader {
            let (rec, stop, latest, group_ends) = (&rec, &stop_group, &latest, &group_ends);
            s.spawn(move || sampler(plan, rec, latest, stop));
            s.spawn(move || {
                group(plan, rec, reader, stop, latest, group_ends, settle_until);
            });
        }
        let producers: Vec<_> = (0..plan.producers)
            .map(|i| {
                let rec = &rec;
                s.spawn(move || {
                    if plan.transactional {
                        produce_transactional(plan, rec, i, load_until)
                    } else {
                        produce_plain(plan, rec, load_until)
                    }
                })
            })
            .collect();
        let mut failed = None;
        for p in producers {
            if let Err(e) = p.join().expect("producer thread") {
                failed.get_or_insert(e);
            }
        }
        stop_tails.store(true, Ordering::Relaxed);
        if let Some(e) = failed {
            stop_group.store(true, Ordering::Relaxed);
            return Err(e);
        }
        say("load done; reading back");
        let hwms = match high_watermarks(plan, settle_until) {
            Ok(e) => e,
            Err(e) => {
                stop_group.store(true, Ordering::Relaxed);
                return Err(e);
            }
        };
        let ends = read_ends(&hwms, rec.state.lock().unwrap().produced.values());
        let _ = hwms_seen.set(hwms);
        *group_ends.lock().unwrap() = Some(ends.clone());
        let ends = ends_seen.get_or_init(|| ends);
        for &iso in &plan.isolations {
            let reader = rec.add_reader(&format!("final-{iso}"), ReaderKind::Final, iso);
            let rec = &rec;
            s.spawn(move || final_read(plan, rec, reader, iso, ends, settle_until));
        }
        Ok(())
    })?;
    let elapsed = rec.t0.elapsed();
    let s = std::mem::take(&mut *rec.state.lock().unwrap());
    let mut produced: Vec<Produced> = s.produced.into_values().collect();
    produced.sort_by_key(|p| p.id);
    Ok(Observed {
        history: History {
            produced,
            txns: s.txns.into_values().collect(),
            readers: s.readers,
            reads: s.reads,
            commits: s.commits,
            corrupt: s.corrupt,
        },
        foreign: s.foreign,
        ends: ends_seen.into_inner().unwrap_or_default(),
        high_watermarks: hwms_seen.into_inner().unwrap_or_default(),
        elapsed,
    })
}

/// Starts a group member on `s`; setting the flag makes it commit, leave and end.
fn spawn_member<'scope, 'env>(
    s: &'scope thread::Scope<'scope, 'env>,
    plan: &'env Plan,
    rec: &'env Recorder,
    reader: usize,
) -> (Arc<AtomicBool>, thread::ScopedJoinHandle<'scope, ()>) {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    (flag, s.spawn(move || member(plan, rec, reader, &f)))
}

/// Keeps `group_members` members running, replacing one every `churn`, until the group's
/// committed offsets reach the ends (once known) or `until`; then records what it reached.
fn group(
    plan: &Plan,
    rec: &Recorder,
    reader: usize,
    stop: &AtomicBool,
    latest: &Mutex<BTreeMap<i32, i64>>,
    group_ends: &Mutex<Option<BTreeMap<i32, i64>>>,
    until: Instant,
) {
    thread::scope(|s| {
        let mut members: std::collections::VecDeque<(
            Arc<AtomicBool>,
            thread::ScopedJoinHandle<'_, ()>,
        )> = Default::default();
        for _ in 0..plan.group_members {
            members.push_back(spawn_member(s, plan, rec, reader));
        }
        let mut last_churn = Instant::now();
        let drained = || {
            let ends = group_ends.lock().unwrap().clone();
            ends.is_some_and(|ends| {
                let l = latest.lock().unwrap();
                ends.iter().all(|(p, e)| l.get(p).is_some_and(|o| o >= e))
            })
        };
        while !stop.load(Ordering::Relaxed) && !drained() && Instant::now() < until {
            thread::sleep(Duration::from_millis(100));
            let loading = group_ends.lock().unwrap().is_none();
            if let Some(churn) = plan.churn {
                if loading && last_churn.elapsed() >= churn {
                    last_churn = Instant::now();
                    if let Some((flag, h)) = members.pop_front() {
                        flag.store(true, Ordering::Relaxed);
                        let _ = h.join();
                    }
                    members.push_back(spawn_member(s, plan, rec, reader));
                }
            }
        }
        for (flag, _) in &members {
            flag.store(true, Ordering::Relaxed);
        }
    });
    stop.store(true, Ordering::Relaxed);
    let ends = group_ends.lock().unwrap().clone().unwrap_or_default();
    let reached = latest.lock().unwrap().clone();
    let (complete, stalled) = split(&ends, &reached);
    rec.finish(reader, complete, stalled);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_decode_to_what_was_encoded_and_nothing_else() {
        let id = RecordId {
            producer: 3,
            seq: 41,
        };
        for txn in [None, Some(7)] {
            let v = encode("r1", id, txn, 64);
            assert_eq!(v.len(), 64);
            assert_eq!(decode("r1", &v, 64), Ok(Some(id)));
            // Another run's record, or anybody else's, is skipped.
            assert_eq!(decode("r2", &v, 64), Ok(None));
            assert_eq!(decode("r1", b"hello", 64), Ok(None));
            // A changed byte, a cut or a longer value is corrupt.
            let mut bad = v.clone();
            bad[60] = b'x';
            assert!(decode("r1", &bad, 64).is_err());
            assert!(decode("r1", &v[..50], 64).is_err());
            let mut long = v.clone();
            long.push(b'.');
            assert!(decode("r1", &long, 64).is_err());
        }
        // A header longer than the record size is kept whole.
        let v = encode("r1", id, None, 4);
        assert_eq!(decode("r1", &v, 4), Ok(Some(id)));
    }

    #[test]
    fn the_end_of_a_partition_is_past_its_last_acknowledged_record() {
        let produced = |partition, seq, outcome| Produced {
            id: RecordId { producer: 0, seq },
            partition,
            txn: None,
            outcome,
        };
        let hwms = BTreeMap::from([(0, 10), (1, 5), (2, 0)]);
        let history = [
            // Partition 0: acknowledged below its high watermark.
            produced(0, 0, Outcome::Acked { offset: 9 }),
            // Partition 1: the last acknowledged record sits at the (frozen) high watermark.
            produced(1, 1, Outcome::Acked { offset: 4 }),
            produced(1, 2, Outcome::Acked { offset: 5 }),
            produced(
                1,
                3,
                Outcome::Unknown {
                    error: "timed out".into(),
                },
            ),
            // Partition 2: nothing acknowledged; a refusal moves nothing.
            produced(2, 4, Outcome::Refused { error: "no".into() }),
            // A partition the high watermarks do not name is not made up.
            produced(7, 5, Outcome::Acked { offset: 3 }),
        ];
        let ends = read_ends(&hwms, &history);
        assert_eq!(ends, BTreeMap::from([(0, 10), (1, 6), (2, 0)]));
        // So a reader stopped at the high watermark of partition 1 stalls there.
        let (complete, stalled) = split(&ends, &hwms);
        assert_eq!(complete, BTreeSet::from([0, 2]));
        assert_eq!(stalled, BTreeMap::from([(1, (5, 6))]));
    }
}
