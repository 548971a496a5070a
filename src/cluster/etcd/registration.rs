//! Broker registration under an etcd lease and its keep-alive (see the parent module's
//! "Registration" and "Liveness" invariants).

use super::*;

/// Creates `brokers/<node id>` under a new lease if absent. Returns (lease id, epoch) or
/// `Conflict` naming the holder.
pub(super) async fn register_once(
    client: &mut Client,
    shared: &Shared,
    registration: &BrokerRegistration,
    ttl_secs: i64,
) -> Result<(i64, i64, u64)> {
    // The lease cannot expire at etcd before `granted + TTL`.
    let granted = shared.now_ms();
    let lease = client
        .lease_grant(ttl_secs, None)
        .await
        .map_err(unavailable)?;
    let key = shared.keys.broker(registration.node_id);
    // The epoch is the revision of this transaction; it is stored in the value by a second
    // write of the same key (same lease), before anyone may rely on it.
    let txn = Txn::new()
        .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.clone(),
            encode(registration)?,
            Some(PutOptions::new().with_lease(lease.id())),
        )])
        .or_else([TxnOp::get(key.clone(), None)]);
    let resp = client.txn(txn).await.map_err(unavailable)?;
    if !resp.succeeded() {
        let _ = client.lease_revoke(lease.id()).await;
        let holder = client
            .get(key.clone(), None)
            .await
            .ok()
            .and_then(|r| r.kvs().first().map(|kv| kv.value().to_vec()))
            .and_then(|v| serde_json::from_slice::<BrokerRegistration>(&v).ok());
        return Err(MetadataError::Refused(match holder {
            Some(h) => format!(
                "node.id {} is already registered by a live broker at {}:{} (etcd key {key}); \
                 refusing to start a second broker with the same node.id",
                h.node_id, h.host, h.port
            ),
            None => format!(
                "node.id {} is already registered (etcd key {key})",
                registration.node_id
            ),
        }));
    }
    let epoch = resp.header().map_or(0, |h| h.revision());
    let mut with_epoch = registration.clone();
    with_epoch.epoch = epoch;
    // This broker knows itself at once; its own watch event may come later (a client asking
    // it to place partitions right after start must not find no broker at all).
    let txn = Txn::new()
        .when([Compare::lease(key.clone(), CompareOp::Equal, lease.id())])
        .and_then([TxnOp::put(
            key.clone(),
            encode(&with_epoch)?,
            Some(PutOptions::new().with_lease(lease.id())),
        )]);
    let resp = client.txn(txn).await.map_err(unavailable)?;
    if !resp.succeeded() {
        return Err(MetadataError::Conflict(format!(
            "registration {key} vanished while being written"
        )));
    }
    shared
        .brokers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(with_epoch.node_id, with_epoch);
    shared.tick();
    Ok((lease.id(), epoch, granted))
}

/// The lease TTL in whole seconds for `broker.session.timeout.ms` (etcd's minimum is 2 s).
pub(super) fn ttl_secs(settings: &LeaseSettings) -> i64 {
    settings.session_timeout.as_millis().div_ceil(1000).max(2) as i64
}

/// Keeps the lease alive; when it is lost (etcd answers TTL 0 or no longer knows it, e.g. after
/// being unreachable for longer than the TTL), registers again (new lease, new epoch).
pub(super) async fn keep_registered(
    mut client: Client,
    shared: Arc<Shared>,
    registration: BrokerRegistration,
    settings: LeaseSettings,
    mut lease_id: i64,
    mut renewed_at: u64,
) {
    let ttl = ttl_secs(&settings);
    let ttl_ms = ttl as u64 * 1000;
    let live_ms = ttl_ms - (ttl_ms as f64 * SAFETY_MARGIN_FRACTION) as u64;
    let answer_timeout = settings.heartbeat_interval.max(REQUEST_TIMEOUT / 5);
    loop {
        // Whether the lease is known to be gone (so only a new registration helps).
        let mut lost = false;
        match client.lease_keep_alive(lease_id).await {
            Ok((mut keeper, mut stream)) => loop {
                let sent = shared.now_ms();
                let renewed = async {
                    keeper.keep_alive().await?;
                    stream.message().await
                };
                match tokio::time::timeout(answer_timeout, renewed).await {
                    Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                        renewed_at = sent;
                        shared
                            .live_until_ms
                            .store(sent + live_ms, Ordering::Release);
                        tokio::time::sleep(settings.heartbeat_interval).await;
                    }
                    Ok(Ok(Some(_))) => {
                        lost = true;
                        break;
                    }
                    // No answer: liveness runs out by itself at live_until_ms.
                    _ => break,
                }
            },
            Err(e) => {
                // etcd-client refuses to open the stream for a lease etcd no longer knows.
                if e.to_string().contains("not found") {
                    lost = true;
                } else {
                    warn!("etcd lease keep-alive failed: {e}");
                }
            }
        }
        if !lost && shared.now_ms() > renewed_at + ttl_ms {
            // Past the TTL without a renewal: ask etcd whether the lease still exists.
            match client.lease_time_to_live(lease_id, None).await {
                Ok(r) if r.ttl() <= 0 => lost = true,
                Ok(_) => {}
                Err(e) => warn!("etcd lease check failed: {e}"),
            }
        }
        if !lost {
            tokio::time::sleep(settings.heartbeat_interval / 2).await;
            continue;
        }
        warn!("etcd lease {lease_id:x} expired; registering again");
        shared.live_until_ms.store(0, Ordering::Release);
        shared.lease_id.store(0, Ordering::Release);
        loop {
            match register_once(&mut client, &shared, &registration, ttl).await {
                Ok((id, epoch, granted)) => {
                    info!(epoch, "broker registered again");
                    lease_id = id;
                    shared.lease_id.store(id, Ordering::Release);
                    renewed_at = granted;
                    shared
                        .live_until_ms
                        .store(granted + live_ms, Ordering::Release);
                    break;
                }
                Err(e) => {
                    warn!("re-registration failed, retrying: {e}");
                    tokio::time::sleep(settings.heartbeat_interval).await;
                }
            }
        }
    }
}
