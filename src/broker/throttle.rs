//! Replication throttles (Kafka's replication quotas, used by reassignments): a leader's bytes
//! to followers and a follower's bytes from leaders, each bounded by a broker rate
//! (`leader.replication.throttled.rate`, `follower.replication.throttled.rate`, bytes/s) for
//! the replicas a topic lists (`leader.replication.throttled.replicas`,
//! `follower.replication.throttled.replicas`: `*` or `partition:broker,…`; the broker is the
//! one throttling: the leader's id in the leader list, the follower's in the follower list).
//!
//! As in Kafka, only replicas out of the ISR are throttled (a reassignment's added replicas, a
//! follower catching up), so acks=all writes never wait for a throttle; a throttled leader
//! answers such a follower's fetch without records for the partition while its rate is
//! exceeded, and a throttled follower waits before fetching it.
//!
//! The rate is a token bucket of one second: `rate` bytes may pass per second, in bursts of at
//! most `rate`; a transfer that overdraws it makes the next wait until it is paid back. No I/O.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// The value of an unset rate (Kafka's default, `Long.MAX_VALUE`): no throttle.
pub const UNLIMITED: u64 = i64::MAX as u64;

/// One direction's byte budget on this broker.
pub struct Quota {
    /// (bytes that may still pass, when that was computed)
    state: Mutex<(f64, Instant)>,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            state: Mutex::new((0.0, Instant::now())),
        }
    }
}

impl Quota {
    #[cfg(test)]
    fn starting_at(now: Instant) -> Quota {
        Quota {
            state: Mutex::new((0.0, now)),
        }
    }

    fn refill(state: &mut (f64, Instant), rate: u64, now: Instant) {
        let elapsed = now.saturating_duration_since(state.1).as_secs_f64();
        state.0 = (state.0 + elapsed * rate as f64).min(rate as f64);
        state.1 = now;
    }

    /// Whether `rate` bytes/s is used up now (no transfer of a throttled replica may start).
    pub fn exceeded(&self, rate: u64) -> bool {
        self.exceeded_at(rate, Instant::now())
    }

    fn exceeded_at(&self, rate: u64, now: Instant) -> bool {
        if rate >= UNLIMITED {
            return false;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Self::refill(&mut s, rate, now);
        s.0 <= 0.0
    }

    /// Counts `bytes` of throttled replicas moved.
    pub fn record(&self, rate: u64, bytes: u64) {
        self.record_at(rate, bytes, Instant::now());
    }

    fn record_at(&self, rate: u64, bytes: u64, now: Instant) {
        if rate >= UNLIMITED || bytes == 0 {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Self::refill(&mut s, rate, now);
        s.0 -= bytes as f64;
    }
}

/// Whether a throttled-replicas list (`*` or `partition:broker,…`) names `partition` on
/// `broker`.
pub fn lists(value: &str, partition: i32, broker: i32) -> bool {
    let value = value.trim();
    value == "*"
        || value.split(',').any(|entry| {
            let mut parts = entry.trim().split(':');
            matches!(
                (parts.next(), parts.next(), parts.next()),
                (Some(p), Some(b), None)
                    if p.trim().parse() == Ok(partition) && b.trim().parse() == Ok(broker)
            )
        })
}

/// Whether a throttled-replicas list is well formed (`*`, empty, or `partition:broker` pairs).
pub fn valid_list(value: &str) -> bool {
    let value = value.trim();
    value.is_empty()
        || value == "*"
        || value.split(',').all(|entry| {
            let mut parts = entry.trim().split(':');
            matches!(
                (parts.next(), parts.next(), parts.next()),
                (Some(p), Some(b), None)
                    if p.trim().parse::<i32>().is_ok_and(|p| p >= 0)
                        && b.trim().parse::<i32>().is_ok_and(|b| b >= 0)
            )
        })
}

/// Whether `topic_configs`' list `key` throttles `partition` on `broker`.
pub fn throttled(
    topic_configs: &BTreeMap<String, String>,
    key: &str,
    partition: i32,
    broker: i32,
) -> bool {
    topic_configs
        .get(key)
        .is_some_and(|v| lists(v, partition, broker))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_rate_passes_a_second_of_bytes_then_waits_for_the_refill() {
        let t0 = Instant::now();
        let q = Quota::starting_at(t0);
        assert!(!q.exceeded_at(UNLIMITED, t0));
        // Starts empty: the first second fills it.
        assert!(q.exceeded_at(1000, t0));
        let t1 = t0 + Duration::from_secs(1);
        assert!(!q.exceeded_at(1000, t1));
        q.record_at(1000, 1500, t1);
        assert!(q.exceeded_at(1000, t1));
        // 500 bytes overdrawn: paid back after half a second, then passing again.
        assert!(q.exceeded_at(1000, t1 + Duration::from_millis(400)));
        assert!(!q.exceeded_at(1000, t1 + Duration::from_millis(600)));
        // Idle time fills at most one second's worth.
        let t2 = t1 + Duration::from_secs(60);
        q.record_at(1000, 1000, t2);
        assert!(q.exceeded_at(1000, t2));
    }

    #[test]
    fn throttled_replica_lists_are_kafkas() {
        assert!(lists("*", 3, 7));
        assert!(lists("0:1, 3:7", 3, 7));
        assert!(!lists("0:1,3:7", 3, 1));
        assert!(!lists("", 0, 0));
        assert!(!lists("3:7:1", 3, 7));
        assert!(valid_list(""));
        assert!(valid_list("*"));
        assert!(valid_list("0:1,2:3"));
        assert!(!valid_list("0:x"));
        assert!(!valid_list("0"));
        assert!(!valid_list("-1:2"));
    }
}
