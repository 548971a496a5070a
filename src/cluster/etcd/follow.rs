//! Reading and following the brokers, coordinator claims, partition states and controller
//! candidates (the watch of cluster mode; see the parent module's invariants).

use super::*;

pub(super) async fn list_brokers(client: &mut Client, shared: &Shared) -> Result<i64> {
    let resp = client
        .get(shared.keys.brokers(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(unavailable)?;
    let mut brokers = BTreeMap::new();
    for kv in resp.kvs() {
        let key = kv.key_str().unwrap_or_default();
        match decode::<BrokerRegistration>(key, kv.value()) {
            Ok(b) => {
                brokers.insert(b.node_id, b);
            }
            Err(e) => warn!("ignoring broker registration: {e}"),
        }
    }
    *shared.brokers.lock().unwrap_or_else(|p| p.into_inner()) = brokers;
    shared.tick();
    Ok(resp.header().map_or(0, |h| h.revision()))
}

/// Reads every coordinator slot claim; returns the revision of the read.
pub(super) async fn list_claims(client: &mut Client, shared: &Shared) -> Result<i64> {
    let resp = client
        .get(
            shared.keys.coordinators(),
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .map_err(unavailable)?;
    let mut holders = BTreeMap::new();
    for kv in resp.kvs() {
        let key = kv.key_str().unwrap_or_default();
        let Some(slot) = shared.keys.parse_coordinator(key) else {
            continue;
        };
        match decode::<SlotHolder>(key, kv.value()) {
            Ok(h) => {
                holders.insert(
                    slot,
                    SlotHolder {
                        node_id: h.node_id,
                        epoch: kv.create_revision(),
                    },
                );
            }
            Err(e) => warn!("ignoring coordinator claim: {e}"),
        }
    }
    *shared.holders() = holders;
    shared.tick();
    Ok(resp.header().map_or(0, |h| h.revision()))
}

/// Follows every change under `prefix` (the brokers, topics or coordinator claims) from `from`:
/// keeps the broker list, ticks `changes`. It resumes from the revision after the last event
/// it applied (never from a response header: catch-up responses carry the current revision
/// while older events are still to come); when etcd has compacted that away it re-lists.
pub(super) async fn watch_loop(
    mut client: Client,
    shared: Arc<Shared>,
    prefix: String,
    mut from: i64,
) {
    loop {
        let options = WatchOptions::new().with_prefix().with_start_revision(from);
        let mut stream = match client.watch(prefix.clone(), Some(options)).await {
            Ok(s) => s,
            Err(e) => {
                warn!("etcd watch failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    if resp.compact_revision() > 0 || resp.canceled() {
                        // History is gone: list again and watch from there.
                        warn!(
                            compact_revision = resp.compact_revision(),
                            "etcd watch lost its history, re-listing"
                        );
                        let listed = if prefix == shared.keys.coordinators() {
                            list_claims(&mut client, &shared).await
                        } else if prefix == shared.keys.partitions() {
                            partitions::list_states(&mut client, &shared).await
                        } else if prefix == shared.keys.controller_candidates() {
                            partitions::list_candidates(&mut client, &shared).await
                        } else {
                            list_brokers(&mut client, &shared).await
                        };
                        match listed {
                            // Topics are re-read by the reconcile this tick starts.
                            Ok(rev) => from = rev + 1,
                            Err(e) => {
                                warn!("re-listing brokers failed: {e}");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                        break;
                    }
                    let mut changed = false;
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        from = from.max(kv.mod_revision() + 1);
                        let key = kv.key_str().unwrap_or_default();
                        if let Some(node) = shared.keys.parse_broker(key) {
                            let mut brokers =
                                shared.brokers.lock().unwrap_or_else(|p| p.into_inner());
                            match ev.event_type() {
                                EventType::Put => {
                                    match decode::<BrokerRegistration>(key, kv.value()) {
                                        Ok(b) => {
                                            brokers.insert(node, b);
                                        }
                                        Err(e) => warn!("ignoring broker registration: {e}"),
                                    }
                                }
                                EventType::Delete => {
                                    brokers.remove(&node);
                                }
                            }
                            changed = true;
                        } else if let Some(slot) = shared.keys.parse_coordinator(key) {
                            let put = match ev.event_type() {
                                EventType::Put => match decode::<SlotHolder>(key, kv.value()) {
                                    Ok(h) => Some(SlotHolder {
                                        node_id: h.node_id,
                                        epoch: kv.create_revision(),
                                    }),
                                    Err(e) => {
                                        warn!("ignoring coordinator claim: {e}");
                                        continue;
                                    }
                                },
                                EventType::Delete => None,
                            };
                            shared.apply_claim(slot, put, kv.mod_revision());
                            changed = true;
                        } else if shared.keys.parse_topic(key).is_some() {
                            changed = true;
                        } else if let Some((topic, partition)) = shared.keys.parse_partition(key) {
                            let put = match ev.event_type() {
                                EventType::Put => match decode(key, kv.value()) {
                                    Ok(state) => Some(state),
                                    Err(e) => {
                                        warn!("ignoring partition state: {e}");
                                        continue;
                                    }
                                },
                                EventType::Delete => None,
                            };
                            shared.apply_state(topic, partition, put, kv.mod_revision());
                            changed = true;
                        } else if key.starts_with(&shared.keys.controller_candidates()) {
                            shared.apply_candidate(key, ev.event_type(), kv);
                            changed = true;
                        }
                    }
                    if changed {
                        shared.tick();
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    warn!("etcd watch broke, resuming from revision {from}: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
        }
    }
}
