//! The etcd key schema of cluster mode: every key Strand reads or writes, in one place
//! (documented for operators in docs/etcd-keys.md; keep the two in step).
//!
//! All keys live under the cluster's prefix (`etcd.prefix`, default `/strand`), so several
//! clusters can share one etcd. Values are JSON unless noted.
//!
//! | key | value | written |
//! |---|---|---|
//! | `<p>/cluster/id` | the cluster id (plain text) | once, by the first broker (create-if-absent) |
//! | `<p>/brokers/<node id>` | [`BrokerRegistration`](super::BrokerRegistration) | by that broker, under its lease |
//! | `<p>/topics/<name>` | [`TopicRecord`](super::TopicRecord) | CreateTopics / CreatePartitions / AlterConfigs, compare-and-swap on the key's revision |
//! | `<p>/partitions/<topic>/<partition>` | [`PartitionState`](super::PartitionState); absent until its first change (the state is then the initial one of the topic record) | the controller, compare-and-swap on the key's revision, fenced by its election key; deleted with the topic (same transaction) |
//! | `<p>/controller/<lease id, hex>` | the campaigning broker's node id (plain text) | etcd's election API, under the broker's lease: the key with the lowest create revision is the controller, that revision its epoch |
//! | `<p>/configs/brokers/<resource>` | dynamic broker configs (`{name: value}`), resource `default` or a node id | AlterConfigs on a BROKER resource |
//! | `<p>/producer-ids` | the first producer id not yet handed out (decimal) | compare-and-swap on the key's revision |
//! | `<p>/cluster/slots` | [`SlotCounts`](super::SlotCounts) | once, by the first broker (create-if-absent) |
//! | `<p>/coordinators/<group\|txn>/<slot>` | [`SlotHolder`](super::SlotHolder) (epoch 0: the claim's create revision is the epoch) | the claiming broker, create-if-absent under its lease |
//! | `<p>/txns/<slot>/<transactional id>` | [`TxnRecord`](super::TxnRecord) | the transaction coordinator holding the slot, fenced by its claim |
//! | `<p>/offsets/<slot>/<group>/<topic>/b<n>` | partitions `16n..16n+15` of the topic: `{"<partition>": CommittedOffset}` ([`CommittedOffset`](super::CommittedOffset)) | the group coordinator holding the slot, fenced by its claim; written whole from its copy (`etcd/offsets.rs`); concurrent requests share transactions of at most [`MAX_TXN_OPS`] keys |
//! | `<p>/txn-offsets/<slot>/<group>/<producer id>` | [`PendingTxnOffsets`](super::PendingTxnOffsets) | TxnOffsetCommit; deleted by the transaction's marker |
//!
//! Group ids and transactional ids are arbitrary strings: in keys they are escaped
//! ([`escape`]): bytes other than ASCII letters, digits, `.`, `_` and `-` become `%XX`, so a
//! `/` in a group id can never reach into another key's space. Topic names need no escaping
//! (Kafka allows only those characters in them).

use super::CoordinatorKind;

/// etcd's default `--max-txn-ops`: a transaction with more operations is refused, so bigger
/// writes are split.
pub const MAX_TXN_OPS: usize = 128;

/// The keys of one cluster (one prefix).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` without a trailing `/`, e.g. `/strand`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Everything of this cluster (the watch covers it).
    pub fn all(&self) -> String {
        format!("{}/", self.prefix)
    }

    pub fn cluster_id(&self) -> String {
        format!("{}/cluster/id", self.prefix)
    }

    pub fn brokers(&self) -> String {
        format!("{}/brokers/", self.prefix)
    }

    pub fn broker(&self, node_id: i32) -> String {
        format!("{}{node_id}", self.brokers())
    }

    pub fn topics(&self) -> String {
        format!("{}/topics/", self.prefix)
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topics())
    }

    pub fn partitions(&self) -> String {
        format!("{}/partitions/", self.prefix)
    }

    /// Every partition state of one topic.
    pub fn topic_partitions(&self, topic: &str) -> String {
        format!("{}{topic}/", self.partitions())
    }

    pub fn partition(&self, topic: &str, partition: i32) -> String {
        format!("{}{partition}", self.topic_partitions(topic))
    }

    /// `(topic, partition)` of a key under [`Keys::partitions`].
    pub fn parse_partition<'a>(&self, key: &'a str) -> Option<(&'a str, i32)> {
        let (topic, p) = key
            .strip_prefix(self.partitions().as_str())?
            .rsplit_once('/')?;
        Some((topic, p.parse().ok()?))
    }

    /// The election's name (etcd's election API puts its keys under `<name>/`).
    pub fn controller_election(&self) -> String {
        format!("{}/controller", self.prefix)
    }

    /// Every candidate's election key.
    pub fn controller_candidates(&self) -> String {
        format!("{}/", self.controller_election())
    }

    pub fn broker_configs(&self) -> String {
        format!("{}/configs/brokers/", self.prefix)
    }

    /// `resource` `""` (the cluster-wide default) is stored as `default`.
    pub fn broker_config(&self, resource: &str) -> String {
        let name = if resource.is_empty() {
            "default"
        } else {
            resource
        };
        format!("{}{}", self.broker_configs(), escape(name))
    }

    pub fn producer_ids(&self) -> String {
        format!("{}/producer-ids", self.prefix)
    }

    pub fn slot_counts(&self) -> String {
        format!("{}/cluster/slots", self.prefix)
    }

    pub fn coordinators(&self) -> String {
        format!("{}/coordinators/", self.prefix)
    }

    pub fn coordinator(&self, kind: CoordinatorKind, slot: u32) -> String {
        format!("{}{}/{slot}", self.coordinators(), kind.name())
    }

    /// `(kind, slot)` of a key under [`Keys::coordinators`].
    pub fn parse_coordinator(&self, key: &str) -> Option<(CoordinatorKind, u32)> {
        let (kind, slot) = key.strip_prefix(&self.coordinators())?.split_once('/')?;
        Some((CoordinatorKind::parse(kind)?, slot.parse().ok()?))
    }

    pub fn txns(&self, slot: u32) -> String {
        format!("{}/txns/{slot}/", self.prefix)
    }

    pub fn txn(&self, slot: u32, transactional_id: &str) -> String {
        format!("{}{}", self.txns(slot), escape(transactional_id))
    }

    pub fn offsets(&self, slot: u32) -> String {
        format!("{}/offsets/{slot}/", self.prefix)
    }

    pub fn group_offsets(&self, slot: u32, group: &str) -> String {
        format!("{}{}/", self.offsets(slot), escape(group))
    }

    /// The key of bucket `n` (partitions `n*16 .. n*16+15`) of `topic`'s offsets in `group`.
    pub fn offset_bucket(&self, slot: u32, group: &str, topic: &str, n: i32) -> String {
        format!("{}{topic}/b{n}", self.group_offsets(slot, group))
    }

    pub fn pending_offsets_of_slot(&self, slot: u32) -> String {
        format!("{}/txn-offsets/{slot}/", self.prefix)
    }

    pub fn pending_offsets(&self, slot: u32, group: &str, producer_id: i64) -> String {
        format!(
            "{}{}/{producer_id}",
            self.pending_offsets_of_slot(slot),
            escape(group)
        )
    }

    /// `(group, producer id)` of a key under [`Keys::pending_offsets_of_slot`].
    pub fn parse_pending_offsets(&self, slot: u32, key: &str) -> Option<(String, i64)> {
        let rest = key.strip_prefix(&self.pending_offsets_of_slot(slot))?;
        let (group, pid) = rest.split_once('/')?;
        Some((unescape(group)?, pid.parse().ok()?))
    }

    /// The resource name of a key under [`Keys::broker_configs`].
    pub fn parse_broker_config(&self, key: &str) -> Option<String> {
        let name = unescape(key.strip_prefix(&self.broker_configs())?)?;
        Some(if name == "default" {
            String::new()
        } else {
            name
        })
    }

    /// `(group, topic, bucket)` of a key under [`Keys::offsets`] of `slot`.
    pub fn parse_offset_bucket(&self, slot: u32, key: &str) -> Option<(String, String, i32)> {
        let rest = key.strip_prefix(&self.offsets(slot))?;
        let (group, rest) = rest.split_once('/')?;
        let (topic, bucket) = rest.rsplit_once('/')?;
        let n: i32 = bucket.strip_prefix('b')?.parse().ok()?;
        if n < 0 {
            return None;
        }
        Some((unescape(group)?, topic.to_string(), n))
    }

    /// The node id of a key under [`Keys::brokers`].
    pub fn parse_broker(&self, key: &str) -> Option<i32> {
        key.strip_prefix(&self.brokers())?.parse().ok()
    }

    /// The topic name of a key under [`Keys::topics`].
    pub fn parse_topic<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.topics().as_str())
    }
}

/// Escapes an arbitrary id for use as one key segment (see the module docs).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`escape`]; `None` for malformed input.
pub fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_any_characters_round_trip_and_stay_in_their_segment() {
        let k = Keys::new("/strand/");
        for group in ["g", "a/b", "100%", "ünïcode group", "", "../x"] {
            let key = k.offset_bucket(3, group, "t.x_y-1", 7);
            assert!(key.starts_with("/strand/offsets/3/"));
            let segment = key["/strand/offsets/3/".len()..].split('/').next().unwrap();
            assert!(!segment.contains('/'));
            assert_eq!(
                k.parse_offset_bucket(3, &key),
                Some((group.to_string(), "t.x_y-1".to_string(), 7))
            );
            assert_eq!(k.parse_offset_bucket(4, &key), None);
            // Not a bucket key (the per-partition keys of earlier builds): ignored.
            let old = format!("{}{}", k.group_offsets(3, group), "t/7");
            assert_eq!(k.parse_offset_bucket(3, &old), None);
            let pending = k.pending_offsets(3, group, 42);
            assert_eq!(
                k.parse_pending_offsets(3, &pending),
                Some((group.to_string(), 42))
            );
        }
        assert_eq!(k.parse_broker_config(&k.broker_config("")), Some("".into()));
        assert_eq!(
            k.parse_broker_config(&k.broker_config("3")),
            Some("3".into())
        );
        assert_eq!(k.parse_broker(&k.broker(12)), Some(12));
        assert_eq!(k.parse_topic(&k.topic("orders")), Some("orders"));
        assert_eq!(
            k.parse_partition(&k.partition("a.b-c", 12)),
            Some(("a.b-c", 12))
        );
        assert!(!k.partition("ab", 0).starts_with(&k.topic_partitions("a")));
        assert_eq!(
            k.parse_coordinator(&k.coordinator(CoordinatorKind::Txn, 49)),
            Some((CoordinatorKind::Txn, 49))
        );
        assert_eq!(unescape("%zz"), None);
    }
}
