//! ApiVersions: the table of APIs and versions this broker serves, straight from the registry.
//!
//! A client asking with a newer ApiVersions version than we know gets UNSUPPORTED_VERSION with a
//! v0-encoded body listing our ranges (KIP-511); that path is in `server::connection` because the
//! request body cannot be decoded at an unknown version.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::ResponseError;

use super::{HandlerResult, RequestContext, APIS};

fn api_keys() -> Vec<ApiVersion> {
    APIS.iter()
        .map(|a| {
            let mut v = ApiVersion::default();
            v.api_key = a.key as i16;
            v.min_version = a.min;
            v.max_version = a.max;
            v
        })
        .collect()
}

pub async fn handle(
    _ctx: RequestContext,
    _req: ApiVersionsRequest,
) -> HandlerResult<ApiVersionsResponse> {
    let mut resp = ApiVersionsResponse::default();
    resp.api_keys = api_keys();
    Ok(Some(resp))
}

/// The v0 body of an UNSUPPORTED_VERSION answer (KIP-511).
pub fn unsupported_version_body() -> Bytes {
    let mut resp = ApiVersionsResponse::default();
    resp.error_code = ResponseError::UnsupportedVersion.code();
    resp.api_keys = api_keys();
    let mut out = BytesMut::new();
    // v0 has only error_code and api_keys, both set: encoding cannot fail.
    let _ = resp.encode(&mut out, 0);
    out.freeze()
}
