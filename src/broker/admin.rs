//! Topic administration beyond create and delete: adding partitions, changing topic configs,
//! deleting records, and the dynamic broker configs AlterConfigs may set.
//!
//! Invariants (as for create/delete, see the parent module):
//! - Every change is written to the metadata store before the broker acts on it; a change that
//!   fails validation touches nothing. Topic changes hold the broker's admin lock, so concurrent
//!   admin requests apply one after the other, each on the state the previous one left.
//! - The metadata cache holds `Arc<Topic>`s: a change replaces the topic's entry with a new
//!   `Topic` (new record; the existing `Arc<Partition>`s plus any new ones), so readers holding
//!   the old `Arc` keep a consistent snapshot.
//! - New configs are applied to the open partition logs right after the store write, and
//!   retention runs at once on the topic's partitions, so a lowered `retention.ms` or
//!   `retention.bytes` deletes old segments immediately rather than at the next periodic check.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::info;

use super::dynamic_config::{self, Layer, Refused};
use super::{now_ms, partition_dir, topic_config, Broker, Partition, Topic, TopicError};
use crate::cluster::TopicRecord;
use crate::storage::StorageError;

fn join_error(e: tokio::task::JoinError) -> TopicError {
    TopicError::Storage(StorageError::Io(std::io::Error::other(e)))
}

impl Broker {
    /// CreatePartitions: grows `name` to `count` partitions. `assignments`, when given, has one
    /// replica list per new partition.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _admin = self.admin.lock().await;
        let topic = self.topic(name).ok_or(TopicError::UnknownTopic)?;
        let current = topic.record.partition_count();
        if count < current {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            )));
        }
        if count == current {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic already has {current} partitions."
            )));
        }
        let added = (count - current) as usize;
        let rf = topic.record.assignments.first().map_or(1, Vec::len);
        let node = self.node_id();
        let live: Vec<i32> = self.live_brokers().iter().map(|b| b.node_id).collect();
        if assignments.is_none() && rf > live.len() {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "Unable to replicate the partition {rf} time(s): only {} broker(s) are registered.",
                live.len()
            )));
        }
        let each = added.div_ceil(live.len().max(1));
        self.check_partition_budget(i32::try_from(each).unwrap_or(i32::MAX))?;
        let new_assignments = match assignments {
            None => super::cluster::place_replicas(&self.live_brokers(), added as i32, rf as i16),
            Some(a) => {
                if a.len() != added {
                    return Err(TopicError::InvalidReplicaAssignment(format!(
                        "Increasing the number of partitions by {added} but {} assignments provided.",
                        a.len()
                    )));
                }
                for (i, brokers) in a.iter().enumerate() {
                    let p = current as usize + i;
                    let unknown: Vec<String> = brokers
                        .iter()
                        .filter(|b| !live.contains(b))
                        .map(i32::to_string)
                        .collect();
                    if !unknown.is_empty() {
                        return Err(TopicError::InvalidReplicaAssignment(format!(
                            "Unknown broker(s) in replica assignment: {}.",
                            unknown.join(", ")
                        )));
                    }
                    if brokers.len() != rf {
                        return Err(TopicError::InvalidReplicaAssignment(format!(
                            "Inconsistent replication factor between partitions, partition 0 has {rf} while partition {p} has replication factor {}.",
                            brokers.len()
                        )));
                    }
                }
                a
            }
        };
        let mine = new_assignments.iter().filter(|r| r.contains(&node)).count();
        self.check_partition_budget(i32::try_from(mine).unwrap_or(i32::MAX))?;
        self.check_assignment_budget(&new_assignments)?;
        if validate_only {
            return Ok(());
        }
        let mut record = topic.record.clone();
        record.assignments.extend(new_assignments);
        self.store
            .update_topic(&topic.record, record.clone())
            .await?;

        let opened = self.open_partitions(&record, current..count).await?;
        let mut partitions = topic.partitions.clone();
        partitions.extend(opened);
        self.replace_topic(Topic { record, partitions });
        info!(topic = %name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides with what `change` makes of the current ones
    /// (AlterConfigs replaces them all; IncrementalAlterConfigs edits them), validates the
    /// result, stores it and applies it to the partition logs.
    pub async fn alter_topic_configs<F>(
        &self,
        name: &str,
        validate_only: bool,
        change: F,
    ) -> Result<(), TopicError>
    where
        F: FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, TopicError>,
    {
        let _admin = self.admin.lock().await;
        let topic = self.topic(name).ok_or(TopicError::UnknownTopic)?;
        let configs = change(&topic.record.configs)?;
        for (k, v) in &configs {
            topic_config::validate(k, Some(v)).map_err(TopicError::InvalidConfig)?;
        }
        if validate_only || configs == topic.record.configs {
            return Ok(());
        }
        let mut record = topic.record.clone();
        record.configs = configs;
        self.store
            .update_topic(&topic.record, record.clone())
            .await?;
        let log_config = self.log_config_of(&record.configs);
        for log in topic.hosted().filter_map(|p| p.opened_log()) {
            log.update_config(log_config);
        }
        let partitions = topic.partitions.clone();
        self.replace_topic(Topic {
            record,
            partitions: partitions.clone(),
        });
        info!(topic = %name, "altered topic configs");
        // A lowered retention takes effect now, not at the next periodic check.
        let now = now_ms();
        tokio::task::spawn_blocking(move || {
            for p in partitions.iter().flatten() {
                let Ok(log) = p.log() else { continue };
                if let Err(e) = log.enforce_retention(now) {
                    tracing::warn!(topic = %p.topic, partition = p.index, "retention failed: {e}");
                }
            }
        })
        .await
        .map_err(join_error)?;
        Ok(())
    }

    /// DeleteRecords: moves the log start offset of a partition to `offset` (`-1` = the high
    /// watermark) and returns the new low watermark.
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<i64, TopicError> {
        let t = self.topic(topic).ok_or(TopicError::UnknownTopic)?;
        // Only the leader moves the log start; its followers follow it (the fetcher).
        let p = match self.partition(topic, partition) {
            Some(p) => p,
            None if self.partition_exists(topic, partition) => return Err(TopicError::NotLeader),
            None => return Err(TopicError::UnknownTopic),
        };
        let policy = topic_config::effective(
            &self.config,
            &self.topic_configs(&t.record.configs),
            "cleanup.policy",
        )
        .unwrap_or_default();
        if !policy.split(',').any(|s| s.trim() == "delete") {
            return Err(TopicError::PolicyViolation(format!(
                "Records of partition {topic}-{partition} can not be deleted due to the configured policy"
            )));
        }
        let log = p.log().map_err(TopicError::Storage)?.clone();
        let hw = p.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(TopicError::Storage(StorageError::OffsetOutOfRange {
                offset: target,
                log_start_offset: log.log_start_offset(),
                log_end_offset: hw,
            }));
        }
        let moved = log.clone();
        tokio::task::spawn_blocking(move || moved.advance_log_start_offset(target))
            .await
            .map_err(join_error)??;
        Ok(log.log_start_offset())
    }

    /// AlterConfigs / IncrementalAlterConfigs on a broker resource (`layer`: this broker's own
    /// configs, or the cluster-wide defaults): `change` turns the layer's current dynamic
    /// configs into the wanted ones, which are checked (see [`dynamic_config::check`]: static
    /// Strand settings are INVALID_REQUEST, anything not dynamic or a bad value INVALID_CONFIG),
    /// stored durably, then applied to every topic's partitions (retention runs at once).
    pub async fn alter_broker_configs<F>(
        &self,
        layer: Layer,
        validate_only: bool,
        change: F,
    ) -> Result<(), TopicError>
    where
        F: FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, TopicError>,
    {
        let _admin = self.admin.lock().await;
        let current = self.dynamic_configs();
        let next = change(current.layer(layer))?;
        dynamic_config::check(&next, crate::config::KEYS.iter().map(|(k, _)| *k)).map_err(
            |r| match r {
                Refused::Static(keys) => TopicError::InvalidRequest(format!(
                    "Cannot update these configs dynamically: {}. Strand reads them from config.toml, STRAND_<KEY> variables and flags at start.",
                    keys.join(", ")
                )),
                Refused::Invalid(m) => TopicError::InvalidConfig(m),
            },
        )?;
        if validate_only || &next == current.layer(layer) {
            return Ok(());
        }
        let resource = match layer {
            Layer::Broker => self.config.node_id.to_string(),
            Layer::ClusterDefault => String::new(),
        };
        self.store
            .set_broker_configs(&resource, next.clone())
            .await?;
        *self
            .dynamic
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .layer_mut(layer) = next;
        info!(resource = %resource, "altered dynamic broker configs");
        let topics = self.topics();
        for t in &topics {
            let log_config = self.log_config_of(&t.record.configs);
            for log in t.hosted().filter_map(|p| p.opened_log()) {
                log.update_config(log_config);
            }
        }
        let now = now_ms();
        tokio::task::spawn_blocking(move || {
            for p in topics.iter().flat_map(|t| t.hosted()) {
                let Ok(log) = p.log() else { continue };
                if let Err(e) = log.enforce_retention(now) {
                    tracing::warn!(topic = %p.topic, partition = p.index, "retention failed: {e}");
                }
            }
        })
        .await
        .map_err(join_error)?;
        Ok(())
    }

    /// Opens (creating) partitions `range` of `record` that this broker hosts; `None` for the
    /// others.
    pub(super) async fn open_partitions(
        &self,
        record: &TopicRecord,
        range: std::ops::Range<i32>,
    ) -> Result<Vec<Option<Arc<Partition>>>, TopicError> {
        let config = self.config.clone();
        let log_config = self.log_config_of(&record.configs);
        let record = record.clone();
        let replicas = super::current_replicas(self.store.as_ref(), &record);
        let ctx = self.open_context();
        tokio::task::spawn_blocking(move || {
            range
                .map(|index| {
                    if !super::hosts(&replicas, index, config.node_id) {
                        return Ok(None);
                    }
                    let dir = partition_dir(&config.data_dir, &record.name, index);
                    Partition::open(&record.name, index, record.id, dir, log_config, &ctx).map(
                        |p| {
                            if super::replica_count(&replicas, index) > 1 {
                                p.start_as_replica();
                            }
                            Some(Arc::new(p))
                        },
                    )
                })
                .collect::<Result<Vec<_>, StorageError>>()
        })
        .await
        .map_err(join_error)?
        .map_err(TopicError::Storage)
    }

    pub(super) fn replace_topic(&self, topic: Topic) {
        self.apply_leadership(&topic);
        self.write_topics()
            .insert(topic.record.name.clone(), Arc::new(topic));
    }
}
