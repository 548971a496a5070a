//! Bad input gets Kafka's answer: an error code in the response, or a clean close.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError as E;

use crate::client::*;

async fn still_serves(b: &TestBroker) {
    let mut c = b.client().await;
    let resp = c.call(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(resp.error_code, 0);
}

#[tokio::test]
async fn api_versions_lists_the_registry() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    for v in 0..=3 {
        let resp = c.call(&ApiVersionsRequest::default(), v).await;
        assert_eq!(resp.error_code, 0);
        let produce = resp.api_keys.iter().find(|k| k.api_key == 0).unwrap();
        assert_eq!(produce.min_version, 0);
        let fetch = resp.api_keys.iter().find(|k| k.api_key == 1).unwrap();
        assert!(fetch.min_version == 4 && fetch.max_version >= 11);
    }
    b.stop().await;
}

#[tokio::test]
async fn newer_api_versions_gets_unsupported_version_with_v0_body() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(18); // ApiVersions
    frame.put_i16(99);
    frame.put_i32(7);
    frame.put_i16(-1); // null client id
    c.send_raw(&frame).await;
    let mut resp = c.read_frame().await.unwrap();
    assert_eq!(&resp[..4], &7i32.to_be_bytes());
    let _ = resp.split_to(4);
    let body = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(body.error_code, E::UnsupportedVersion.code());
    assert!(body.api_keys.iter().any(|k| k.api_key == 18));
    b.stop().await;
}

#[tokio::test]
async fn malformed_frames_close_the_connection() {
    let b = TestBroker::start().await;
    let frames: Vec<Vec<u8>> = vec![
        vec![0, 0, 0, 3, 1, 2, 3],    // shorter than a header
        vec![0x7f, 0xff, 0xff, 0xff], // over socket.request.max.bytes
        vec![0xff, 0xff, 0xff, 0xfe], // negative length
        [
            &10i32.to_be_bytes()[..],
            &[0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0xff, 0xff],
        ]
        .concat(), // unknown api key
        [
            &10i32.to_be_bytes()[..],
            &[0, 1, 0, 99, 0, 0, 0, 1, 0xff, 0xff],
        ]
        .concat(), // Fetch v99
        [
            &12i32.to_be_bytes()[..],
            &[0, 3, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0x55],
        ]
        .concat(), // garbage Metadata v9
    ];
    for f in frames {
        let mut c = b.client().await;
        c.send_raw(&f).await;
        assert!(
            c.is_closed().await,
            "frame {f:?} did not close the connection"
        );
        still_serves(&b).await;
    }
    // A frame cut short by the client closing its side.
    let mut c = b.client().await;
    c.send_raw(&[0, 0, 0, 100, 0, 18]).await;
    drop(c);
    still_serves(&b).await;
    b.stop().await;
}

#[tokio::test]
async fn corrupt_batches_are_rejected_and_never_stored() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("bad", 1, &[]).await;
    let good = batch(&["a", "b"], 1, Compression::None);

    let mut crc = good.to_vec();
    let last = crc.len() - 1;
    crc[last] ^= 0xff;
    let mut magic = good.to_vec();
    magic[16] = 1;
    let mut lying = good.to_vec();
    lying[8..12].copy_from_slice(&(good.len() as i32 + 100 - 12).to_be_bytes());
    let truncated = good[..good.len() - 5].to_vec();

    for (bytes, allowed) in [
        (crc, vec![E::CorruptMessage]),
        (magic, vec![E::InvalidRecord, E::CorruptMessage]),
        (lying, vec![E::CorruptMessage, E::InvalidRecord]),
        (truncated, vec![E::CorruptMessage, E::InvalidRecord]),
    ] {
        let resp = c.produce("bad", 0, bytes.into(), 1).await;
        let code = resp.responses[0].partition_responses[0].error_code;
        assert!(
            allowed.iter().any(|e| e.code() == code),
            "got error code {code}"
        );
    }
    let resp = c.fetch("bad", 0, 0, 0, 0).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 0);
    // The log still takes good data at offset 0.
    let resp = c.produce("bad", 0, good, 1).await;
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 0);
    b.stop().await;
}

#[tokio::test]
async fn bad_acks_unknown_partitions_and_out_of_range_offsets() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("r", 1, &[]).await;
    let resp = c
        .produce("r", 0, batch(&["a"], 1, Compression::None), 2)
        .await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        E::InvalidRequiredAcks.code()
    );
    let resp = c
        .produce("r", 7, batch(&["a"], 1, Compression::None), 1)
        .await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        E::UnknownTopicOrPartition.code()
    );
    let resp = c.fetch("r", 0, 5, 0, 0).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        E::OffsetOutOfRange.code()
    );
    let resp = c.fetch("r", 0, -3, 0, 0).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        E::OffsetOutOfRange.code()
    );
    let resp = c.fetch("missing", 0, 0, 0, 0).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        E::UnknownTopicOrPartition.code()
    );
    b.stop().await;
}

/// Found by `fuzz/fuzz_targets/request.rs`: tiny requests whose array lengths claim billions of
/// elements (Metadata v2 topics 0x77777777 and i32::MAX, a compact array in Metadata v12) made
/// the decoder allocate ~150 GB up front, which aborted the broker. Now the connection closes
/// and the broker serves on.
#[tokio::test]
async fn array_lengths_claiming_billions_close_the_connection_only() {
    let b = TestBroker::start().await;
    let bodies: [&[u8]; 3] = [
        &[0, 3, 0, 2, 51, 51, 51, 51, 0, 0, 0x77, 0x77, 0x77, 0x77],
        &[0, 3, 0, 2, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff],
        // v12: flexible header (client id, empty tags), compact topics length 0xffffffff.
        &[
            0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ],
    ];
    for body in bodies {
        let mut c = b.client().await;
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.put_slice(body);
        c.send_raw(&frame).await;
        assert!(c.is_closed().await, "{body:?} got an answer");
        still_serves(&b).await;
    }
    b.stop().await;
}
