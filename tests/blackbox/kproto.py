"""Minimal hand-rolled Kafka wire protocol for socket-level tests (struct.pack only)."""
import socket
import struct
import time
import zlib  # noqa: F401  (kept for callers that want crc32)

# ---------------------------------------------------------------- CRC-32C (Castagnoli)
_T = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _T.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# ---------------------------------------------------------------- encoding
def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(n):
    return uvarint((n << 1) ^ (n >> 63))


class W:
    def __init__(self, flexible=False):
        self.b = bytearray()
        self.flex = flexible

    def i8(self, v): self.b += struct.pack(">b", v); return self
    def i16(self, v): self.b += struct.pack(">h", v); return self
    def i32(self, v): self.b += struct.pack(">i", v); return self
    def i64(self, v): self.b += struct.pack(">q", v); return self
    def raw(self, v): self.b += v; return self

    def string(self, s):
        if s is None:
            return self.raw(uvarint(0)) if self.flex else self.i16(-1)
        e = s.encode()
        return self.raw(uvarint(len(e) + 1) + e) if self.flex else self.i16(len(e)).raw(e)

    def bytes_(self, v):
        if v is None:
            return self.raw(uvarint(0)) if self.flex else self.i32(-1)
        return self.raw(uvarint(len(v) + 1) + v) if self.flex else self.i32(len(v)).raw(v)

    def array(self, items, fn):
        if items is None:
            return self.raw(uvarint(0)) if self.flex else self.i32(-1)
        self.raw(uvarint(len(items) + 1)) if self.flex else self.i32(len(items))
        for it in items:
            fn(self, it)
        return self

    def tags(self):
        if self.flex:
            self.raw(b"\x00")
        return self


class R:
    def __init__(self, data, flexible=False):
        self.d, self.p, self.flex = data, 0, flexible

    def take(self, n):
        v = self.d[self.p:self.p + n]
        if len(v) != n:
            raise ValueError("short read")
        self.p += n
        return v

    def i8(self): return struct.unpack(">b", self.take(1))[0]
    def i16(self): return struct.unpack(">h", self.take(2))[0]
    def i32(self): return struct.unpack(">i", self.take(4))[0]
    def i64(self): return struct.unpack(">q", self.take(8))[0]

    def uvarint(self):
        shift = n = 0
        while True:
            b = self.take(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7

    def string(self):
        if self.flex:
            n = self.uvarint() - 1
        else:
            n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def array_len(self):
        return self.uvarint() - 1 if self.flex else self.i32()

    def tags(self):
        if self.flex:
            for _ in range(self.uvarint()):
                self.uvarint()
                self.take(self.uvarint())

    def tagged(self):
        """Tagged fields as {tag: raw bytes} (flexible versions)."""
        out = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            out[tag] = self.take(self.uvarint())
        return out


# ---------------------------------------------------------------- framing
def request(api_key, version, corr, body, flexible_header, client_id="rill-raw-test"):
    h = W().i16(api_key).i16(version).i32(corr).string(client_id)
    if flexible_header:
        h.raw(b"\x00")
    payload = bytes(h.b) + body
    return struct.pack(">i", len(payload)) + payload


def connect(b, timeout=10):
    s = socket.create_connection(("127.0.0.1", b.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)}/{n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(s):
    (n,) = struct.unpack(">i", recv_exact(s, 4))
    return recv_exact(s, n)


def closed_by_peer(s, timeout=10):
    """True if the peer closes (EOF/reset) within timeout; any data received is discarded."""
    s.settimeout(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


# ---------------------------------------------------------------- APIs
API_PRODUCE, API_METADATA, API_API_VERSIONS, API_CREATE_TOPICS = 0, 3, 18, 19
API_OFFSET_FOR_LEADER_EPOCH = 23


def api_versions(s, version=0, corr=1):
    """Returns (error_code, {api_key: (min, max)}). v0..v2 non-flexible, v3+ flexible body."""
    flex = version >= 3
    body = W(flex)
    if flex:
        body.string("rill-tests").string("1.0").tags()
    s.sendall(request(API_API_VERSIONS, version, corr, bytes(body.b), flexible_header=flex))
    return parse_api_versions(recv_frame(s), corr, flex)


def parse_api_versions(frame, corr, flex):
    r = R(frame)  # ApiVersions responses always use response header v0 (no tagged fields)
    assert r.i32() == corr, "correlation id mismatch"
    r.flex = flex
    err = r.i16()
    apis = {}
    for _ in range(r.array_len()):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        r.tags()
        apis[k] = (lo, hi)
    return err, apis


def pick_version(apis, key, lo, hi):
    blo, bhi = apis[key]
    v = min(hi, bhi)
    if v < max(lo, blo):
        raise AssertionError(f"no common version for api {key}: broker {blo}-{bhi}, test {lo}-{hi}")
    return v


def create_topics(s, apis, name, partitions=1, configs=None, corr=7):
    """Returns the error code for the topic. Supports CreateTopics v2..v7."""
    v = pick_version(apis, API_CREATE_TOPICS, 2, 7)
    flex = v >= 5
    w = W(flex)

    def topic(w, t):
        w.string(t).i32(partitions).i16(1)
        w.array([], lambda w, x: None)  # assignments
        w.array(list((configs or {}).items()), lambda w, kv: (w.string(kv[0]).string(kv[1]).tags()))
        w.tags()

    w.array([name], topic).i32(30000).i8(0).tags()
    s.sendall(request(API_CREATE_TOPICS, v, corr, bytes(w.b), flexible_header=flex))
    r = R(recv_frame(s), flex)
    assert r.i32() == corr
    r.tags()  # response header v1 for flexible
    r.i32()  # throttle
    assert r.array_len() == 1
    assert r.string() == name
    if v >= 7:
        r.take(16)  # topic_id
    return r.i16()


def record_batch(records, base_ts=None, attributes=0, producer=(-1, -1, -1)):
    """RecordBatch v2 (magic 2) with records [(key, value)], correct CRC-32C. `producer` is
    (producer id, epoch, base sequence) for an idempotent producer's batch."""
    base_ts = base_ts if base_ts is not None else int(time.time() * 1000)
    recs = bytearray()
    for i, (k, v) in enumerate(records):
        body = bytearray(b"\x00")  # attributes
        body += varint(0) + varint(i)  # timestamp delta, offset delta
        body += varint(-1) if k is None else varint(len(k)) + k
        body += varint(-1) if v is None else varint(len(v)) + v
        body += varint(0)  # headers
        recs += varint(len(body)) + body
    pid, epoch, seq = producer
    after_crc = (struct.pack(">hiqqqhii", attributes, len(records) - 1, base_ts, base_ts, pid, epoch, seq, len(records))
                 + bytes(recs))
    crc = crc32c(after_crc)
    batch_len = 4 + 1 + 4 + len(after_crc)  # partition_leader_epoch + magic + crc + rest
    return struct.pack(">qiibI", 0, batch_len, -1, 2, crc) + after_crc


def produce(s, apis, topic, partition, records_bytes, acks=-1, corr=11):
    """Returns (error_code, base_offset) for the single partition. Supports Produce v3..v12 (by topic name)."""
    v = pick_version(apis, API_PRODUCE, 3, 12)
    flex = v >= 9
    w = W(flex)
    w.string(None).i16(acks).i32(30000)

    def part(w, p):
        w.i32(p).bytes_(records_bytes).tags()

    w.array([topic], lambda w, t: (w.string(t).array([partition], part).tags())).tags()
    s.sendall(request(API_PRODUCE, v, corr, bytes(w.b), flexible_header=flex))
    r = R(recv_frame(s), flex)
    assert r.i32() == corr
    r.tags()
    assert r.array_len() == 1
    assert r.string() == topic
    assert r.array_len() == 1
    assert r.i32() == partition
    err = r.i16()
    base = r.i64()
    return err, base


def produce_v10(s, topic, partition, records_bytes, version=10, corr=12):
    """Produce (v10-v12, flexible, by topic name) of one partition; returns (error_code,
    current_leader as (id, epoch) or None, node_endpoints as {id: (host, port)}): KIP-951."""
    w = W(True)
    w.string(None).i16(-1).i32(30000)
    w.array([topic], lambda w, t: (w.string(t).array(
        [partition], lambda w, p: w.i32(p).bytes_(records_bytes).tags()).tags())).tags()
    s.sendall(request(API_PRODUCE, version, corr, bytes(w.b), flexible_header=True))
    r = R(recv_frame(s), True)
    assert r.i32() == corr
    r.tags()
    assert r.array_len() == 1 and r.string() == topic and r.array_len() == 1
    assert r.i32() == partition
    err = r.i16()
    r.i64(), r.i64(), r.i64()  # base offset, log append time, log start offset
    for _ in range(r.array_len()):  # record errors
        r.i32(), r.string(), r.tags()
    r.string()  # error message
    leader = None
    for tag, raw in r.tagged().items():
        if tag == 0:
            leader = struct.unpack(">ii", raw[:8])
    r.tags()  # topic
    r.i32()  # throttle
    endpoints = {}
    for tag, raw in r.tagged().items():
        if tag == 0:
            e = R(raw, True)
            for _ in range(e.array_len()):
                node, host, port = e.i32(), e.string(), e.i32()
                e.string(), e.tags()
                endpoints[node] = (host, port)
    return err, leader, endpoints


def offset_for_leader_epoch(s, topic, partition, leader_epoch, current_leader_epoch=-1, corr=23):
    """OffsetForLeaderEpoch v3 (a consumer's, replica id -1) for one partition: returns
    (error_code, leader_epoch, end_offset)."""
    w = W()
    w.i32(-1).array([topic], lambda w, t: w.string(t).array(
        [partition], lambda w, p: w.i32(p).i32(current_leader_epoch).i32(leader_epoch)))
    s.sendall(request(API_OFFSET_FOR_LEADER_EPOCH, 3, corr, bytes(w.b), flexible_header=False))
    r = R(recv_frame(s))
    assert r.i32() == corr
    r.i32()  # throttle
    assert r.array_len() == 1 and r.string() == topic and r.array_len() == 1
    err = r.i16()
    assert r.i32() == partition
    return err, r.i32(), r.i64()


def metadata(s, topic, corr=3):
    """Metadata v1 for one topic, asked of the broker behind `s` alone (a client library may
    send its Metadata request to any broker it has learned of): returns
    {partition: (leader, replicas)}."""
    s.sendall(request(API_METADATA, 1, corr, bytes(W().array([topic], lambda w, t: w.string(t)).b),
                      flexible_header=False))
    r = R(recv_frame(s))
    assert r.i32() == corr
    for _ in range(r.array_len()):  # brokers: node id, host, port, rack
        r.i32(), r.string(), r.i32(), r.string()
    r.i32()  # controller id
    assert r.array_len() == 1
    r.i16()  # topic error
    assert r.string() == topic
    r.i8()  # is internal
    out = {}
    for _ in range(r.array_len()):
        r.i16()  # partition error (LEADER_NOT_AVAILABLE goes with leader -1)
        index, leader = r.i32(), r.i32()
        replicas = [r.i32() for _ in range(r.array_len())]
        [r.i32() for _ in range(r.array_len())]  # isr
        out[index] = (leader, replicas)
    return out
