//! Errors of the group coordinator and their Kafka error codes.

use kafka_protocol::ResponseError;
use thiserror::Error;

use crate::cluster::MetadataError;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum GroupError {
    #[error("the group id is empty or invalid")]
    InvalidGroupId,
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    /// The broker is shutting down: the client finds the coordinator again.
    #[error("not the coordinator")]
    NotCoordinator,
    /// This broker just took the group's slot over and is loading its state.
    #[error("the coordinator is loading the group's state")]
    CoordinatorLoadInProgress,
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("illegal generation")]
    IllegalGeneration,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("no protocol in common with the group")]
    InconsistentGroupProtocol,
    #[error("session timeout outside group.min/max.session.timeout.ms")]
    InvalidSessionTimeout,
    /// KIP-394: the member must rejoin with the member id it was given.
    #[error("a member id is required")]
    MemberIdRequired,
    #[error("the static member was replaced by a newer instance")]
    FencedInstanceId,
    #[error("the group does not exist")]
    GroupIdNotFound,
    #[error("the group is not empty")]
    NonEmptyGroup,
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic,
    #[error("offset metadata is larger than offset.metadata.max.bytes")]
    OffsetMetadataTooLarge,
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("the request is invalid: {0}")]
    InvalidRequest(String),
    #[error("the member epoch is fenced: rejoin")]
    FencedMemberEpoch,
    #[error("the member epoch is stale")]
    StaleMemberEpoch,
    #[error("unsupported server assignor")]
    UnsupportedAssignor,
    #[error("invalid regular expression")]
    InvalidRegularExpression,
    #[error("offset store failure: {0}")]
    Store(String),
}

impl From<MetadataError> for GroupError {
    fn from(e: MetadataError) -> Self {
        match e {
            // The slot moved to another broker while the write was on its way.
            MetadataError::Fenced(_) => GroupError::NotCoordinator,
            e => GroupError::Store(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, GroupError>;

impl GroupError {
    pub fn error_code(&self) -> ResponseError {
        match self {
            GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
            GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
            GroupError::NotCoordinator => ResponseError::NotCoordinator,
            GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
            GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
            GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
            GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
            GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
            GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
            GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
            GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
            GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
            GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
            GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
            GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
            GroupError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
            GroupError::InvalidRequest(_) => ResponseError::InvalidRequest,
            GroupError::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
            GroupError::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
            GroupError::UnsupportedAssignor => ResponseError::UnsupportedAssignor,
            GroupError::InvalidRegularExpression => ResponseError::InvalidRegularExpression,
            // The offsets could not be made durable: retriable for the client.
            GroupError::Store(_) => ResponseError::CoordinatorNotAvailable,
        }
    }

    pub fn code(&self) -> i16 {
        self.error_code().code()
    }
}
