//! `strand verify`: a Jepsen-style check of what a Kafka-compatible cluster (Strand or any
//! other) promises, run as a client.
//!
//! It drives a workload through librdkafka ([`workload`]): idempotent acks=all producers
//! (optionally transactional, with aborts), readers at both isolation levels during and after
//! the load, and a consumer group whose members come and go while committing. Everything they
//! were told and handed is recorded as a [`history::History`], which [`history::check`] judges
//! afterwards: lost acknowledged writes, lost reads, divergent and wrong offsets, duplicates,
//! reordering, offsets going backwards, aborted and uncommitted reads under read_committed,
//! committed group offsets going backwards, refused records that appeared, phantoms and
//! corrupt values (docs/verify.md has the rules and an example).
//!
//! Exit status: 0 when nothing was violated and every reader reached the end; 1 on any
//! violation; 3 when there was none but some reader could not read to the end in time (a
//! liveness stall: the verdict is incomplete); 2 when the run could not be made (bad usage, no
//! cluster).

pub mod history;
pub mod workload;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::Serialize;

use history::{Isolation, Report};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Bootstrap brokers (HOST:PORT,...).
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    /// Topic to use (created if missing; default: strand-verify-<run id>). Records of other
    /// runs already in it are skipped.
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Replication factor of a topic it creates (-1: the cluster's default).
    #[arg(long, default_value_t = -1)]
    pub replication_factor: i32,
    /// A config of a topic it creates, e.g. --config min.insync.replicas=2 (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Seconds of load.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds allowed after the load for outstanding acks, the final reads and the group to
    /// drain.
    #[arg(long, default_value_t = 120.0)]
    pub settle: f64,
    /// Seconds a producer keeps trying to deliver a record (message.timeout.ms; for a
    /// transactional producer also transaction.timeout.ms).
    #[arg(long, default_value_t = 60.0)]
    pub delivery_timeout: f64,
    /// Producers (each its own client; idempotent, acks=all).
    #[arg(long, default_value_t = 2)]
    pub producers: u32,
    /// Records per second over all producers (0: as fast as they go).
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 64)]
    pub record_size: usize,
    /// Produce in transactions.
    #[arg(long)]
    pub transactional: bool,
    /// With --transactional: the share of transactions aborted.
    #[arg(long, default_value_t = 0.1)]
    pub abort_rate: f64,
    /// With --transactional: records per transaction.
    #[arg(long, default_value_t = 10)]
    pub txn_records: u32,
    /// Consumer group members (0: no group).
    #[arg(long, default_value_t = 3)]
    pub group_members: u32,
    /// Seconds between one member leaving and another joining (0: no churn).
    #[arg(long, default_value_t = 5.0)]
    pub churn: f64,
    /// group.protocol of the members: classic or consumer (KIP-848).
    #[arg(long, default_value = "classic", value_parser = ["classic", "consumer"])]
    pub group_protocol: String,
    /// Isolation levels of the tail and final readers.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "read_uncommitted,read_committed",
        value_parser = ["read_uncommitted", "read_committed"]
    )]
    pub isolation: Vec<String>,
    /// Seed for the abort decisions (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// A librdkafka property for every client, e.g. --set security.protocol=ssl (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Also write the report as JSON to this file (- for stdout, instead of the table).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    run: &'a str,
    topic: &'a str,
    seed: u64,
    elapsed_s: f64,
    verdict: &'static str,
    ends: &'a std::collections::BTreeMap<i32, i64>,
    high_watermarks: &'a std::collections::BTreeMap<i32, i64>,
    foreign_records: u64,
    #[serde(flatten)]
    report: &'a Report,
}

fn verdict(r: &Report) -> (&'static str, i32) {
    if !r.safe() {
        ("violations", 1)
    } else if !r.stalls.is_empty() {
        ("incomplete", 3)
    } else {
        ("ok", 0)
    }
}

/// `KEY=VALUE` arguments of `flag` as pairs.
fn key_values(args: &[String], flag: &str) -> anyhow::Result<Vec<(String, String)>> {
    args.iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("{flag} expects KEY=VALUE, got `{kv}`"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn plan(args: &VerifyArgs) -> anyhow::Result<workload::Plan> {
    anyhow::ensure!(args.partitions > 0, "--partitions must be positive");
    anyhow::ensure!(args.producers > 0, "--producers must be positive");
    anyhow::ensure!(args.duration > 0.0, "--duration must be positive");
    anyhow::ensure!(args.settle > 0.0, "--settle must be positive");
    anyhow::ensure!(
        (1.0..=900.0).contains(&args.delivery_timeout),
        "--delivery-timeout must be within 1..900 seconds"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.abort_rate),
        "--abort-rate must be within 0..1"
    );
    anyhow::ensure!(args.txn_records > 0, "--txn-records must be positive");
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let run = format!("{:x}", now.as_millis() % (1 << 40));
    let mut client = vec![("bootstrap.servers".to_string(), args.bootstrap.clone())];
    client.extend(key_values(&args.set, "--set")?);
    let topic_config = key_values(&args.config, "--config")?;
    let mut isolations = vec![];
    for i in &args.isolation {
        let iso = if i == "read_committed" {
            Isolation::ReadCommitted
        } else {
            Isolation::ReadUncommitted
        };
        if !isolations.contains(&iso) {
            isolations.push(iso);
        }
    }
    Ok(workload::Plan {
        topic: args
            .topic
            .clone()
            .unwrap_or_else(|| format!("strand-verify-{run}")),
        run,
        partitions: args.partitions,
        replication_factor: args.replication_factor,
        topic_config,
        load: Duration::from_secs_f64(args.duration),
        settle: Duration::from_secs_f64(args.settle),
        delivery_timeout: Duration::from_secs_f64(args.delivery_timeout),
        producers: args.producers,
        rate: args.rate,
        record_size: args.record_size,
        transactional: args.transactional,
        abort_rate: args.abort_rate,
        txn_records: args.txn_records,
        group_members: args.group_members,
        churn: (args.churn > 0.0).then(|| Duration::from_secs_f64(args.churn)),
        group_protocol: args.group_protocol.clone(),
        isolations,
        seed: args.seed.unwrap_or(now.as_nanos() as u64),
        client,
    })
}

/// Runs `strand verify`; returns the exit status.
pub fn run(args: VerifyArgs) -> i32 {
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 2;
        }
    };
    let say = |s: &str| eprintln!("strand verify: {s}");
    say(&format!(
        "run {} on topic {} ({} partitions), seed {}, {:.0} s of load{}",
        plan.run,
        plan.topic,
        plan.partitions,
        plan.seed,
        plan.load.as_secs_f64(),
        if plan.transactional {
            " (transactional)"
        } else {
            ""
        }
    ));
    let observed = match workload::run(&plan, say) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 2;
        }
    };
    let report = history::check(&observed.history);
    let (verdict, status) = verdict(&report);
    let json = JsonReport {
        run: &plan.run,
        topic: &plan.topic,
        seed: plan.seed,
        elapsed_s: observed.elapsed.as_secs_f64(),
        verdict,
        ends: &observed.ends,
        high_watermarks: &observed.high_watermarks,
        foreign_records: observed.foreign,
        report: &report,
    };
    let text = serde_json::to_string_pretty(&json).expect("a report serializes");
    match args.json.as_deref() {
        Some("-") => {
            let _ = writeln!(std::io::stdout(), "{text}");
            return status;
        }
        Some(path) => {
            if let Err(e) = std::fs::write(path, format!("{text}\n")) {
                eprintln!("error: writing {path}: {e}");
                return 2;
            }
        }
        None => {}
    }
    let _ = std::io::stdout().write_all(table(&plan, &observed, &report, verdict).as_bytes());
    status
}

/// The human-readable report.
fn table(plan: &workload::Plan, o: &workload::Observed, r: &Report, verdict: &str) -> String {
    use std::fmt::Write as _;
    let t = &r.totals;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run {} topic {} ({} partitions, {} records at the end) in {:.1} s",
        plan.run,
        plan.topic,
        plan.partitions,
        o.ends.values().sum::<i64>(),
        o.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "produced {} records: {} acknowledged, {} refused, {} unknown",
        t.sent, t.acked, t.refused, t.unknown
    );
    if plan.transactional {
        let _ = writeln!(
            s,
            "transactions: {} committed, {} aborted, {} unknown",
            t.txns_committed, t.txns_aborted, t.txns_unknown
        );
    }
    let _ = writeln!(
        s,
        "read {} records ({} of other runs skipped); {} committed-offset observations",
        t.reads, o.foreign, t.commit_samples
    );
    for (idx, rd) in o.history.readers.iter().enumerate() {
        let reads = o.history.reads.iter().filter(|r| r.reader == idx).count();
        let to_end = match rd.kind {
            history::ReaderKind::Tail => String::new(),
            _ => format!(
                ", {} of {} partitions to the end",
                rd.complete.len(),
                o.ends.len()
            ),
        };
        let _ = writeln!(
            s,
            "  {} ({}): {reads} records{to_end}",
            rd.name, rd.isolation
        );
    }
    let _ = writeln!(s, "\n{:<38} {:>8}", "CHECK", "COUNT");
    for (name, f) in r.violations.each() {
        let _ = writeln!(s, "{name:<38} {:>8}", f.count);
        for e in &f.examples {
            let _ = writeln!(s, "    {e}");
        }
    }
    for st in &r.stalls {
        let hwm = o
            .high_watermarks
            .get(&st.partition)
            .copied()
            .unwrap_or(st.end);
        let above = if st.end > hwm {
            format!(" (high watermark {hwm}: records acknowledged at or above it are unreadable)")
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "stalled: {} partition {} reached offset {} of {}{above}",
            st.reader, st.partition, st.reached, st.end
        );
    }
    let _ = writeln!(s, "\nverdict: {verdict}");
    s
}
