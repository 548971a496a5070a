"""Wire encoders/decoders for the idempotence and transaction APIs (raw-socket tests).

Extends kwire.py (which stays as is) with: InitProducerId v1 (and v3, flexible), AddPartitionsToTxn
v1/v2, AddOffsetsToTxn v1/v2, EndTxn v1/v2, FindCoordinator v1, Produce v3 with a transactional id,
idempotent/transactional record batches, and Fetch v4 with an isolation level that parses the
aborted-transactions list. Only non-flexible versions except InitProducerId v3.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

import kwire
from kwire import (Reader, array, compact_string, i8, i16, i32, i64, nbytes, request, roundtrip,
                   string, uvarint)

API_FIND_COORDINATOR = 10
API_INIT_PRODUCER_ID = 22
API_ADD_PARTITIONS_TO_TXN = 24
API_ADD_OFFSETS_TO_TXN = 25
API_END_TXN = 26
API_TXN_OFFSET_COMMIT = 28

# error codes (Kafka's Errors)
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_REQUEST = 42
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
INVALID_PRODUCER_ID_MAPPING = 49
INVALID_TRANSACTION_TIMEOUT = 50
CONCURRENT_TRANSACTIONS = 51
OPERATION_NOT_ATTEMPTED = 55
UNKNOWN_PRODUCER_ID = 59
INVALID_RECORD = 87
PRODUCER_FENCED = 90

ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20

_corr = [1000]


def _next_corr() -> int:
    _corr[0] += 1
    return _corr[0]


def _call(sock_or_addr, api_key: int, version: int, body: bytes, header_version: int = 1) -> Reader:
    frame = request(api_key, version, _next_corr(), body, header_version=header_version)
    r = roundtrip(sock_or_addr, frame)
    if header_version >= 2:
        r.skip_tagged_fields()  # response header v1
    return r


# ---------------------------------------------------------------- FindCoordinator v1
def find_coordinator(sock_or_addr, key: str, key_type: int = 1) -> tuple[int, int, str, int]:
    """(error, node_id, host, port); key_type 0 = group, 1 = transaction."""
    r = _call(sock_or_addr, API_FIND_COORDINATOR, 1, string(key) + i8(key_type))
    r.i32()  # throttle
    err = r.i16()
    r.string()  # error message
    node = r.i32()
    host = r.string()
    port = r.i32()
    return err, node, host, port


# ---------------------------------------------------------------- InitProducerId
@dataclass
class InitPid:
    error: int
    producer_id: int
    epoch: int


def init_producer_id(sock_or_addr, transactional_id: str | None, timeout_ms: int = 60000,
                     version: int = 1, producer_id: int = -1, epoch: int = -1) -> InitPid:
    """v0/v1 (non-flexible) or v2-v4 (flexible; v3+ carry the KIP-360 producer id + epoch)."""
    if version <= 1:
        r = _call(sock_or_addr, API_INIT_PRODUCER_ID, version, string(transactional_id) + i32(timeout_ms))
        r.i32()  # throttle
        return InitPid(r.i16(), r.i64(), r.i16())
    body = compact_string(transactional_id) + i32(timeout_ms)
    if version >= 3:
        body += i64(producer_id) + i16(epoch)
    body += uvarint(0)
    r = _call(sock_or_addr, API_INIT_PRODUCER_ID, version, body, header_version=2)
    r.i32()
    return InitPid(r.i16(), r.i64(), r.i16())


# ---------------------------------------------------------------- AddPartitionsToTxn v0-v2
def add_partitions_to_txn(sock_or_addr, transactional_id: str, producer_id: int, epoch: int,
                          partitions: dict, version: int = 2) -> dict:
    """partitions: {topic: [partition, ...]} -> {(topic, partition): error}."""
    topics = [string(t) + array([i32(p) for p in ps]) for t, ps in partitions.items()]
    body = string(transactional_id) + i64(producer_id) + i16(epoch) + array(topics)
    r = _call(sock_or_addr, API_ADD_PARTITIONS_TO_TXN, version, body)
    r.i32()
    out = {}
    for _ in range(r.i32()):
        t = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            out[(t, p)] = r.i16()
    return out


# ---------------------------------------------------------------- AddOffsetsToTxn v0-v2
def add_offsets_to_txn(sock_or_addr, transactional_id: str, producer_id: int, epoch: int,
                       group: str, version: int = 2) -> int:
    body = string(transactional_id) + i64(producer_id) + i16(epoch) + string(group)
    r = _call(sock_or_addr, API_ADD_OFFSETS_TO_TXN, version, body)
    r.i32()
    return r.i16()


# ---------------------------------------------------------------- EndTxn v0-v2
def end_txn(sock_or_addr, transactional_id: str, producer_id: int, epoch: int, commit: bool,
            version: int = 2) -> int:
    body = string(transactional_id) + i64(producer_id) + i16(epoch) + i8(1 if commit else 0)
    r = _call(sock_or_addr, API_END_TXN, version, body)
    r.i32()
    return r.i16()


# ---------------------------------------------------------------- TxnOffsetCommit v0-v2
def txn_offset_commit(sock_or_addr, transactional_id: str, group: str, producer_id: int, epoch: int,
                      offsets: dict, version: int = 2) -> dict:
    """offsets: {(topic, partition): offset} -> {(topic, partition): error}."""
    by_topic: dict = {}
    for (t, p), o in offsets.items():
        by_topic.setdefault(t, []).append((p, o))
    topics = []
    for t, ps in by_topic.items():
        parts = []
        for p, o in ps:
            part = i32(p) + i64(o)
            if version >= 2:
                part += i32(-1)  # leader epoch
            parts.append(part + string(None))
        topics.append(string(t) + array(parts))
    body = string(transactional_id) + string(group) + i64(producer_id) + i16(epoch) + array(topics)
    r = _call(sock_or_addr, API_TXN_OFFSET_COMMIT, version, body)
    r.i32()
    out = {}
    for _ in range(r.i32()):
        t = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            out[(t, p)] = r.i16()
    return out


# ---------------------------------------------------------------- records
def batch(values: list, producer_id: int, epoch: int, base_sequence: int,
          transactional: bool = False, base_timestamp: int | None = None) -> bytes:
    """An idempotent (or transactional) RecordBatch v2 of values (bytes), keys None."""
    recs = [kwire.Record(key=None, value=v) for v in values]
    return kwire.record_batch(recs, base_timestamp, attributes=ATTR_TRANSACTIONAL if transactional else 0,
                              producer_id=producer_id, producer_epoch=epoch, base_sequence=base_sequence)


def produce(sock_or_addr, topic: str, partition: int, records: bytes,
            transactional_id: str | None = None, acks: int = -1) -> tuple[int, int]:
    """Produce v3; returns (error, base_offset)."""
    body = (string(transactional_id) + i16(acks) + i32(10000)
            + array([string(topic) + array([i32(partition) + nbytes(records)])]))
    r = _call(sock_or_addr, API_PRODUCE, 3, body)
    resp = kwire.parse_produce_response(r)
    return resp[(topic, partition)][:2]


API_PRODUCE = kwire.API_PRODUCE


# ---------------------------------------------------------------- Fetch v4 with isolation level
@dataclass
class FetchResult:
    error: int
    high_watermark: int
    last_stable_offset: int
    aborted: list  # [(producer_id, first_offset)] or None
    records: bytes

    def batches(self):
        return kwire.parse_batches(self.records or b"")

    def data_values(self):
        """(offset, value, producer_id, is_transactional) of every data record returned."""
        out = []
        for b, pid, attrs in _batches_with_pid(self.records or b""):
            if attrs & ATTR_CONTROL:
                continue
            for off, _ts, _k, v, _h in b.records:
                out.append((off, v, pid, bool(attrs & ATTR_TRANSACTIONAL)))
        return out

    def control_markers(self):
        """(offset, producer_id, commit?) of the control batches returned."""
        out = []
        for b, pid, attrs in _batches_with_pid(self.records or b""):
            if attrs & ATTR_CONTROL:
                key = b.records[0][2] if b.records else None
                commit = key is not None and len(key) >= 4 and struct.unpack(">h", key[2:4])[0] == 1
                out.append((b.base_offset, pid, commit))
        return out


def _batches_with_pid(data: bytes):
    out = []
    for b in kwire.parse_batches(data):
        out.append(b)
    # parse producer ids (kwire.Batch does not keep them)
    res = []
    pos = 0
    i = 0
    while len(data) - pos >= 12 and i < len(out):
        _base, blen = struct.unpack(">qi", data[pos:pos + 12])
        pid = struct.unpack(">q", data[pos + 43:pos + 51])[0]
        attrs = struct.unpack(">h", data[pos + 21:pos + 23])[0]
        res.append((out[i], pid, attrs))
        pos += 12 + blen
        i += 1
    return res


def fetch(sock_or_addr, topic: str, partition: int, offset: int, isolation_level: int = 1,
          max_wait_ms: int = 50, max_bytes: int = 4 * 1024 * 1024) -> FetchResult:
    body = (i32(-1) + i32(max_wait_ms) + i32(1) + i32(max_bytes) + i8(isolation_level)
            + array([string(topic) + array([i32(partition) + i64(offset) + i32(max_bytes)])]))
    r = _call(sock_or_addr, kwire.API_FETCH, 4, body)
    r.i32()
    out = {}
    for _ in range(r.i32()):
        t = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err = r.i16()
            hw = r.i64()
            lso = r.i64()
            n = r.i32()
            aborted = None if n < 0 else [(r.i64(), r.i64()) for _ in range(n)]
            recs = r.nbytes()
            out[(t, p)] = FetchResult(err, hw, lso, aborted, recs or b"")
    return out[(topic, partition)]


def read_all(sock_or_addr, topic: str, partition: int, isolation_level: int = 1, start: int = 0):
    """Every data record readable at `isolation_level` from `start`, with Kafka's client-side
    filtering of aborted transactions applied for read_committed (the aborted list + markers),
    as (offset, value). Stops at the last stable offset (read_committed) or the high watermark."""
    out = []
    offset = start
    aborted_pids: dict = {}
    pending_aborts: list = []
    for _ in range(1000):
        f = fetch(sock_or_addr, topic, partition, offset, isolation_level)
        assert f.error == 0, f"fetch error {f.error}"
        end = f.last_stable_offset if isolation_level == 1 else f.high_watermark
        if f.aborted:
            pending_aborts.extend(f.aborted)
        pending_aborts.sort(key=lambda a: a[1])
        got_any = False
        for b, pid, attrs in _batches_with_pid(f.records):
            last = b.base_offset + b.last_offset_delta
            if last < offset:
                continue
            got_any = True
            while pending_aborts and pending_aborts[0][1] <= b.base_offset:
                aborted_pids[pending_aborts[0][0]] = True
                pending_aborts.pop(0)
            if attrs & ATTR_CONTROL:
                aborted_pids.pop(pid, None)
            elif not (isolation_level == 1 and attrs & ATTR_TRANSACTIONAL and aborted_pids.get(pid)):
                out.extend((o, v) for o, _t, _k, v, _h in b.records if o >= offset)
            offset = last + 1
        if offset >= end or not got_any:
            return out, f
    raise AssertionError("read_all did not reach the end")


def connect(addr) -> socket.socket:
    return kwire.connect(addr)
