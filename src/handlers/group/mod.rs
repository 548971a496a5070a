//! Consumer group APIs (classic protocol). Each handler validates its input, calls the
//! [`GroupCoordinator`](crate::group::GroupCoordinator) and maps its errors to Kafka codes.

pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod delete_groups;
pub mod describe_groups;
pub mod find_coordinator;
pub mod heartbeat;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod sync_group;
