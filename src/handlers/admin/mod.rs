//! Topic administration APIs.

pub mod create_topics;
pub mod delete_topics;
