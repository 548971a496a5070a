//! A minimal Kafka client: one connection to one broker, versions negotiated through
//! ApiVersions (the highest version both sides support), requests and responses encoded by
//! kafka-protocol. The admin CLI uses it (standard Kafka APIs only, so the CLI works against
//! Kafka as well as Strand), and so do brokers talking to each other (transaction markers).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Message, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response accepted (a guard against a garbage length prefix).
const MAX_RESPONSE: usize = 256 * 1024 * 1024;

pub struct Client {
    addr: String,
    stream: TcpStream,
    next_id: i32,
    timeout: Duration,
    /// The broker's `(min, max)` per API key.
    versions: HashMap<i16, (i16, i16)>,
    client_id: &'static str,
}

impl Client {
    pub async fn connect(addr: &str, timeout: Duration) -> anyhow::Result<Client> {
        Client::connect_as(addr, timeout, "strand-cli").await
    }

    /// Connects with `client_id` in every request header.
    pub async fn connect_as(
        addr: &str,
        timeout: Duration,
        client_id: &'static str,
    ) -> anyhow::Result<Client> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("cannot connect to {addr}: timed out"))?
            .with_context(|| format!("cannot connect to {addr}"))?;
        let _ = stream.set_nodelay(true);
        let mut c = Client {
            addr: addr.to_string(),
            stream,
            next_id: 1,
            timeout,
            versions: HashMap::new(),
            client_id,
        };
        // ApiVersions v0 is understood by every broker and needs no client software name.
        let resp = c.send(&ApiVersionsRequest::default(), 0).await?;
        if resp.error_code != 0 {
            bail!(
                "{addr} refused ApiVersions (error {}): is it a Kafka broker?",
                resp.error_code
            );
        }
        c.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(c)
    }

    /// Whether the broker serves `R` at some version this client can speak.
    pub fn supports<R: Request + Message>(&self) -> bool {
        self.version::<R>().is_ok()
    }

    /// The version of `R` this client would use with the broker.
    pub fn version<R: Request + Message>(&self) -> anyhow::Result<i16> {
        let name =
            ApiKey::try_from(R::KEY).map_or_else(|_| R::KEY.to_string(), |k| format!("{k:?}"));
        let (min, max) = self
            .versions
            .get(&R::KEY)
            .copied()
            .ok_or_else(|| anyhow!("the broker at {} does not support {name}", self.addr))?;
        let v = max.min(R::VERSIONS.max);
        if v < min.max(R::VERSIONS.min) {
            bail!(
                "no {name} version in common with the broker at {}",
                self.addr
            );
        }
        Ok(v)
    }

    /// Sends `req` at the highest common version; returns the response and that version.
    pub async fn call<R: Request + Message>(
        &mut self,
        req: &R,
    ) -> anyhow::Result<(R::Response, i16)> {
        let v = self.version::<R>()?;
        Ok((self.send(req, v).await?, v))
    }

    async fn send<R: Request>(&mut self, req: &R, version: i16) -> anyhow::Result<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
        let id = self.next_id;
        self.next_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = id;
        header.client_id = Some(StrBytes::from_static_str(self.client_id));
        let mut body = BytesMut::new();
        header.encode(&mut body, key.request_header_version(version))?;
        req.encode(&mut body, version)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        let addr = self.addr.clone();
        let io = async {
            self.stream.write_all(&frame).await?;
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await?;
            let len = i32::from_be_bytes(len);
            if len < 0 || len as usize > MAX_RESPONSE {
                return Err(std::io::Error::other(format!("bad response length {len}")));
            }
            let mut buf = vec![0u8; len as usize];
            self.stream.read_exact(&mut buf).await?;
            Ok(bytes::Bytes::from(buf))
        };
        let mut buf = tokio::time::timeout(self.timeout, io)
            .await
            .map_err(|_| anyhow!("{key:?} to {addr} timed out"))?
            .with_context(|| format!("{key:?} to {addr} failed (connection closed?)"))?;
        let h = ResponseHeader::decode(&mut buf, key.response_header_version(version))?;
        if h.correlation_id != id {
            bail!("response out of order from {addr}");
        }
        R::Response::decode(&mut buf, version)
            .map_err(|e| anyhow!("cannot decode {key:?} v{version} response: {e}"))
    }
}

/// Kafka's name for an error code, for messages a person reads (`TOPIC_ALREADY_EXISTS`).
pub fn describe_error(code: i16) -> String {
    crate::metrics::error_name(code)
}
