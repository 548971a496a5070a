//! The slot manager: decides which coordinator slots this broker claims, loads and gives up.
//!
//! Every pass, for groups and transactions alike:
//! - a slot served here whose claim is gone from the store (the lease expired, or this broker
//!   is not live) stops being served at once;
//! - an unclaimed slot whose preferred owner ([`preferred_owner`] over the live brokers) is
//!   this broker is claimed and loaded;
//! - a slot held here whose preferred owner is another live broker is unloaded, then
//!   released, so that broker claims it (a broker that joins takes its share);
//! - a slot held here but not served (a load failed) is loaded again.
//!
//! At a graceful stop every slot is released ([`Broker::release_slots`]).
//!
//! A pass runs at start (before the broker serves clients), on every change the store reports
//! (brokers and claims come and go) and every second. Safety never depends on these passes:
//! every coordinator write is fenced by its claim in the store.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::{info, warn};

use super::Broker;
use crate::cluster::slots::preferred_owner;
use crate::cluster::{CoordinatorKind, SlotClaim, SlotHolder};

impl Broker {
    fn served_slots(&self, kind: CoordinatorKind) -> Vec<(u32, i64)> {
        match kind {
            CoordinatorKind::Group => self.groups.served_slots(),
            CoordinatorKind::Txn => self.txns.served_slots(),
        }
    }

    fn unload_slot(&self, kind: CoordinatorKind, slot: u32) {
        match kind {
            CoordinatorKind::Group => self.groups.unload_slot(slot),
            CoordinatorKind::Txn => self.txns.unload_slot(slot),
        }
    }

    async fn load_slot(&self, claim: SlotClaim) {
        let r = match claim.kind {
            CoordinatorKind::Group => self
                .groups
                .load_slot(claim)
                .await
                .map_err(|e| e.to_string()),
            CoordinatorKind::Txn => self
                .txns
                .load_slot(self, claim)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = r {
            warn!(
                kind = claim.kind.name(),
                slot = claim.slot,
                "cannot load coordinator slot, retrying: {e}"
            );
        }
    }

    /// At a graceful stop, after the connections drained: gives every slot up at once, so
    /// other brokers take them over without waiting for this broker's lease to expire.
    pub async fn release_slots(&self) {
        let mut claims = Vec::new();
        for kind in CoordinatorKind::ALL {
            for (slot, epoch) in self.served_slots(kind) {
                self.unload_slot(kind, slot);
                claims.push(SlotClaim { kind, slot, epoch });
            }
        }
        let releases = claims.into_iter().map(|c| self.store.release_slot(c));
        for r in futures::future::join_all(releases).await {
            if let Err(e) = r {
                warn!("cannot release a coordinator slot at shutdown: {e}");
            }
        }
    }

    /// One pass of the slot manager (see the module docs).
    pub async fn balance_slots(&self) {
        if *self.shutdown_signal().borrow() {
            return;
        }
        let me = self.node_id();
        let live = self.is_live();
        let nodes: Vec<i32> = self.brokers().iter().map(|b| b.node_id).collect();
        let counts = self.store.coordinator_slots();
        let mut to_load = Vec::new();
        let mut to_claim = Vec::new();
        for kind in CoordinatorKind::ALL {
            let holders = self.store.slot_holders(kind);
            let served: BTreeMap<u32, i64> = self.served_slots(kind).into_iter().collect();
            for (&slot, &epoch) in &served {
                let mine = SlotHolder { node_id: me, epoch };
                if !live || holders.get(&slot) != Some(&mine) {
                    info!(kind = kind.name(), slot, "coordinator slot lost");
                    self.unload_slot(kind, slot);
                }
            }
            if !live {
                continue;
            }
            for slot in 0..counts.of(kind) {
                let preferred = preferred_owner(kind, slot, &nodes);
                match holders.get(&slot) {
                    None if preferred == Some(me) => to_claim.push((kind, slot)),
                    Some(h) if h.node_id == me && preferred.is_some_and(|p| p != me) => {
                        let claim = SlotClaim {
                            kind,
                            slot,
                            epoch: h.epoch,
                        };
                        self.unload_slot(kind, slot);
                        match self.store.release_slot(claim).await {
                            Ok(()) => info!(
                                kind = kind.name(),
                                slot,
                                to = preferred,
                                "coordinator slot handed over"
                            ),
                            Err(e) => warn!(
                                kind = kind.name(),
                                slot, "cannot release coordinator slot: {e}"
                            ),
                        }
                    }
                    Some(h) if h.node_id == me && !served.contains_key(&slot) => {
                        to_load.push(SlotClaim {
                            kind,
                            slot,
                            epoch: h.epoch,
                        });
                    }
                    _ => {}
                }
            }
        }
        let claims = to_claim.into_iter().map(|(kind, slot)| async move {
            (kind, slot, self.store.claim_slot(kind, slot).await)
        });
        for (kind, slot, r) in futures::future::join_all(claims).await {
            match r {
                Ok(Some(claim)) => to_load.push(claim),
                // Someone else was quicker (or still holds it from before).
                Ok(None) => {}
                Err(e) => warn!(
                    kind = kind.name(),
                    slot, "cannot claim coordinator slot: {e}"
                ),
            }
        }
        if !to_load.is_empty() {
            let n = to_load.len();
            futures::future::join_all(to_load.into_iter().map(|c| self.load_slot(c))).await;
            info!(slots = n, "coordinator slots claimed and loaded");
        }
    }
}

/// Runs [`Broker::balance_slots`] on every store change and every second, until the broker
/// is dropped.
pub(super) async fn slot_loop(broker: Weak<Broker>) {
    let Some(mut changes) = broker.upgrade().map(|b| b.store.changes()) else {
        return;
    };
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = every.tick() => {}
        }
        let Some(b) = broker.upgrade() else { return };
        if *b.shutdown_signal().borrow() {
            return;
        }
        b.balance_slots().await;
        drop::<Arc<Broker>>(b);
    }
}
