//! In-process integration tests: a real broker on 127.0.0.1:0 with a temp data dir, spoken to
//! over TCP with requests encoded by the kafka-protocol crate.

mod admin;
mod client;
mod cluster;
mod durability;
mod fuzz_smoke;
mod groups;
mod idempotence;
mod lifecycle;
mod limits;
mod offsets;
mod produce_fetch;
mod protocol_errors;
mod read_committed;
mod topics;
