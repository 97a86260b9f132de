"""Socket-level checks with hand-built requests: bad input must not take the broker down."""
import os
import socket
import struct

from helpers import create_topic
from kproto import (API_API_VERSIONS, W, api_versions, closed_by_peer, connect, create_topics, parse_api_versions,
                    produce, record_batch, recv_frame, request)


def assert_serving(b):
    """A brand-new connection still gets a normal ApiVersions v0 answer."""
    with connect(b) as s:
        err, apis = api_versions(s, 0, corr=99)
        assert err == 0 and API_API_VERSIONS in apis and 0 in apis and 1 in apis and 3 in apis


def test_api_versions_v0_and_v3(broker):
    with connect(broker) as s:
        err, apis0 = api_versions(s, 0, corr=1)
        assert err == 0
        lo, hi = apis0[API_API_VERSIONS]
        assert lo == 0 and hi >= 3
        err, apis3 = api_versions(s, 3, corr=2)  # flexible request on the same connection
        assert err == 0 and apis3 == apis0


def test_unsupported_api_versions_version(broker):
    with connect(broker) as s:
        body = W(True).string("rill-tests").string("1.0").tags()
        s.sendall(request(API_API_VERSIONS, 127, 42, bytes(body.b), flexible_header=True))
        err, apis = parse_api_versions(recv_frame(s), 42, flex=False)  # answered as v0
        assert err == 35  # UNSUPPORTED_VERSION
        # Like Kafka (KIP-511): at least ApiVersions' own range, so the client can retry with it.
        assert API_API_VERSIONS in apis and apis[API_API_VERSIONS][0] == 0 and apis[API_API_VERSIONS][1] >= 3
    assert_serving(broker)


def test_unknown_api_key(broker):
    with connect(broker) as s:
        s.sendall(request(9999, 0, 5, b"\x00" * 8, flexible_header=False))
        # Kafka closes the connection; an error response is acceptable too. Either way: no hang, no crash.
        s.settimeout(10)
        try:
            data = s.recv(65536)
        except (socket.timeout, OSError):
            data = b""
        if data:
            assert struct.unpack(">i", data[4:8])[0] == 5
    assert_serving(broker)


def test_garbage_bytes(broker):
    with connect(broker) as s:
        s.sendall(struct.pack(">i", 64) + os.urandom(64))
        closed_by_peer(s, timeout=5)
    with connect(broker) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # 'GET ' = a 1.19 GB size prefix
        assert closed_by_peer(s, timeout=10)
    assert_serving(broker)


def test_truncated_frame_then_close(broker):
    with connect(broker) as s:
        full = request(API_API_VERSIONS, 0, 1, b"", flexible_header=False)
        s.sendall(struct.pack(">i", 1000) + full[4:])  # claims 1000 bytes, sends a few
    with connect(broker) as s:
        s.sendall(full[:6])  # cut inside the header
    assert_serving(broker)


def test_oversized_size_prefix(broker):
    with connect(broker) as s:
        s.sendall(struct.pack(">i", 200 * 1024 * 1024) + b"\x00\x12\x00\x00")
        assert closed_by_peer(s, timeout=10), "a >100 MiB frame must be refused by closing the connection"
    with connect(broker) as s:
        s.sendall(struct.pack(">i", -1))
        assert closed_by_peer(s, timeout=10)
    assert_serving(broker)


def test_invalid_topic_name(broker):
    with connect(broker) as s:
        _, apis = api_versions(s)
        for bad in ("bad/name", "..", "a" * 250, "sp ace"):
            assert create_topics(s, apis, bad) == 17, bad  # INVALID_TOPIC_EXCEPTION
    assert_serving(broker)


def test_raw_produce_ok_then_corrupt_crc(broker, topic_name):
    create_topic(broker, topic_name)
    with connect(broker) as s:
        _, apis = api_versions(s)
        err, base = produce(s, apis, topic_name, 0, record_batch([(b"k", b"hello"), (None, b"world")]))
        assert (err, base) == (0, 0)
        bad = bytearray(record_batch([(b"k", b"corrupt me")]))
        bad[-3] ^= 0xFF  # flip a byte covered by the CRC
        err, _ = produce(s, apis, topic_name, 0, bytes(bad), corr=12)
        assert err == 2  # CORRUPT_MESSAGE
        err, base = produce(s, apis, topic_name, 0, record_batch([(None, b"after")]), corr=13)
        assert (err, base) == (0, 2), "corrupt batch must not be appended"
    assert_serving(broker)


def test_message_too_large(broker, topic_name):
    create_topic(broker, topic_name, config={"max.message.bytes": "1024"})
    with connect(broker) as s:
        _, apis = api_versions(s)
        err, _ = produce(s, apis, topic_name, 0, record_batch([(None, b"x" * 4096)]))
        assert err == 10  # MESSAGE_TOO_LARGE
        err, base = produce(s, apis, topic_name, 0, record_batch([(None, b"small")]), corr=12)
        assert (err, base) == (0, 0)
    assert_serving(broker)


def test_pipelined_produce_beyond_the_inflight_byte_budget():
    """With a 4 KiB budget per connection, 20 pipelined 64 KiB produce requests (each larger
    than the whole budget) are all served, in order, and nothing else stalls."""
    from broker import Broker
    from kproto import API_PRODUCE, W, pick_version
    with Broker.start(extra={"rill.max.inflight.bytes.per.connection": "4096"}) as b:
        create_topic(b, "budget")
        with connect(b) as s:
            _, apis = api_versions(s)
            v = pick_version(apis, API_PRODUCE, 3, 8)  # non-flexible: the frame is built here
            batch = record_batch([(None, os.urandom(64 * 1024))])
            frames = []
            for corr in range(100, 120):
                w = W(False)
                w.string(None).i16(-1).i32(30000)
                w.array(["budget"], lambda w, t: w.string(t).array([0], lambda w, p: w.i32(p).bytes_(batch)))
                frames.append(request(API_PRODUCE, v, corr, bytes(w.b), flexible_header=False))
            s.sendall(b"".join(frames))
            for i, corr in enumerate(range(100, 120)):
                frame = recv_frame(s)
                got_corr, = struct.unpack(">i", frame[:4])
                assert got_corr == corr
                # topics[1]: name, partitions[1]: index, error, base offset
                n = struct.unpack(">h", frame[8:10])[0]
                err, base = struct.unpack(">hq", frame[10 + n + 8:10 + n + 18])
                assert (err, base) == (0, i)
        assert_serving(b)
