//! Producer ids for idempotent (and later transactional) producers.
//!
//! Ids are handed out from blocks reserved in the metadata store, so an id is never given twice,
//! even across restarts: a block is durable before its first id is used, and the ids left in a
//! block when the broker stops are simply never used.

pub mod coordinator;
pub mod markers;

use std::sync::Arc;

use crate::cluster::{MetadataError, MetadataStore};

/// Producer ids reserved per metadata-store write.
pub const BLOCK_SIZE: i64 = 1000;

pub struct ProducerIdManager {
    store: Arc<dyn MetadataStore>,
    /// `[next, end)` of the current block.
    block: tokio::sync::Mutex<(i64, i64)>,
}

impl ProducerIdManager {
    pub fn new(store: Arc<dyn MetadataStore>) -> ProducerIdManager {
        ProducerIdManager {
            store,
            block: tokio::sync::Mutex::new((0, 0)),
        }
    }

    /// A producer id never handed out before.
    pub async fn next_id(&self) -> Result<i64, MetadataError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let start = self.store.allocate_producer_ids(BLOCK_SIZE).await?;
            *block = (start, start + BLOCK_SIZE);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::local::LocalStore;

    #[tokio::test]
    async fn ids_are_unique_across_blocks_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2 {
            let store: Arc<dyn MetadataStore> = Arc::new(LocalStore::open(dir.path()).unwrap());
            let ids = ProducerIdManager::new(store);
            for _ in 0..(BLOCK_SIZE + 5) {
                assert!(
                    seen.insert(ids.next_id().await.unwrap()),
                    "id handed out twice"
                );
            }
        }
    }
}
