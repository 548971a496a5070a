//! Produce latency at a fixed rate, for the benches (scripts/bench-replication.sh):
//!
//! ```text
//! produce_latency BOOTSTRAP TOPIC RATE SECONDS [SIZE] [key=value ...]
//! ```
//!
//! One librdkafka producer (the `rdkafka` crate) sends SECONDS of SIZE-byte (default 1024)
//! messages at RATE msgs/s, `acks=all`, idempotent, `linger.ms=0` unless a `key=value` says
//! otherwise, and prints the enqueue -> delivery-report latency of every message enqueued
//! after the first second as one tab-separated line:
//!
//! ```text
//! p50_ms  p99_ms  p999_ms  max_ms  samples  achieved_msgs_s  failed
//! ```
//!
//! Delivery reports are handled as they come, by the producer's own polling thread
//! (`ThreadedProducer`). The pace is kept by sleeping to each millisecond tick and producing what is due by then: the
//! client idles between ticks instead of spinning (rdkafka_performance's `-r` busy-waits between
//! messages, and a Python client spends most of a core at 20,000 msgs/s; on a 2-core machine
//! either takes the CPU from the brokers being measured).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

struct Latencies {
    warm: Instant,
    samples: Mutex<Vec<Duration>>,
    failed: AtomicU64,
}

impl ClientContext for Latencies {}

impl ProducerContext for Latencies {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, enqueued: Box<Instant>) {
        let now = Instant::now();
        match result {
            Ok(_) if *enqueued >= self.warm => self
                .samples
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(now - *enqueued),
            Ok(_) => {}
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: produce_latency BOOTSTRAP TOPIC RATE SECONDS [SIZE] [key=value ...]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        usage();
    }
    let (bootstrap, topic) = (&args[0], &args[1]);
    let rate: f64 = args[2].parse().unwrap_or_else(|_| usage());
    let seconds: f64 = args[3].parse().unwrap_or_else(|_| usage());
    let mut rest = &args[4..];
    let size: usize = match rest.first().and_then(|s| s.parse().ok()) {
        Some(n) => {
            rest = &rest[1..];
            n
        }
        None => 1024,
    };
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .set("queue.buffering.max.messages", "1000000");
    for kv in rest {
        let Some((k, v)) = kv.split_once('=') else {
            usage()
        };
        config.set(k, v);
    }
    let start = Instant::now();
    let context = Latencies {
        warm: start + Duration::from_secs(1),
        samples: Mutex::new(Vec::new()),
        failed: AtomicU64::new(0),
    };
    let producer: ThreadedProducer<Latencies> = match config.create_with_context(context) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("produce_latency: {e}");
            std::process::exit(1);
        }
    };
    let payload = vec![b'x'; size];
    let total = (rate * seconds) as u64;
    let mut sent = 0u64;
    let mut tick = start;
    while sent < total {
        let due = total.min((start.elapsed().as_secs_f64() * rate) as u64 + 1);
        while sent < due {
            let record = BaseRecord::<(), [u8], _>::with_opaque_to(topic, Box::new(Instant::now()))
                .payload(&payload[..]);
            match producer.send(record) {
                Ok(()) => sent += 1,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    eprintln!("produce_latency: {e}");
                    std::process::exit(1);
                }
            }
        }
        tick += Duration::from_millis(1);
        if let Some(pause) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(pause);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let unflushed = producer.flush(Duration::from_secs(60)).is_err();
    let context = producer.context();
    let mut failed = context.failed.load(Ordering::Relaxed);
    if unflushed {
        failed += producer.in_flight_count().max(0) as u64;
    }
    let mut v = context
        .samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    v.sort();
    if v.is_empty() {
        println!("-\t-\t-\t-\t0\t0\t{failed}");
        std::process::exit(1);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let q = |f: f64| ms(v[((f * v.len() as f64) as usize).min(v.len() - 1)]);
    println!(
        "{:.2}\t{:.2}\t{:.2}\t{:.2}\t{}\t{}\t{}",
        q(0.5),
        q(0.99),
        q(0.999),
        ms(v[v.len() - 1]),
        v.len(),
        (sent as f64 / elapsed) as u64,
        failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
