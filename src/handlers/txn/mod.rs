//! Producer-id and transaction APIs.

pub mod init_producer_id;
