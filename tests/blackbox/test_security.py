"""Security (issue 8) with real clients: named listeners, TLS (rustls), mTLS principals, SASL PLAIN and
SCRAM, SCRAM users through kafka-configs/AdminClient, ACLs through kafka-acls, audit-relevant failures.

One broker for the module with four listeners:
  PLAINTEXT       admin path (User:ANONYMOUS is a super user here, as an operator's localhost port would be)
  SASL_SSL        PLAIN (JAAS user admin) and SCRAM users
  MTLS (SSL)      client certificate required, principal from the subject via ssl.principal.mapping.rules
  SASL_PLAINTEXT  for raw-socket SASL tests
Certificates are made at test time with the openssl CLI into the broker's temp dir.
"""
import os
import socket
import ssl
import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

from broker import Broker, free_port, target
from kproto import W, R, recv_frame, closed_by_peer

pytestmark = pytest.mark.skipif(target() != "rill", reason="listener layout and files are Rill-specific")

JAVA_OPTS = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-Dlog4j.configuration=file:/dev/null", "-Djava.awt.headless=true"]
ACLS = "org.apache.kafka.tools.AclCommand"
CONFIGS = "kafka.admin.ConfigCommand"
PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
ADMIN_PW = "admin-secret"


def sh(*args):
    subprocess.run(args, check=True, capture_output=True, timeout=60)


def make_certs(d):
    """CA, server cert (SAN 127.0.0.1/localhost) and a client cert for CN=alice,OU=eng,O=Rill,C=US."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    sh("openssl", "req", "-x509", *ec, "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-days", "2",
       "-subj", "/CN=Rill Test CA")
    for name, subj, ext in [("server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"),
                            ("client", "/C=US/O=Rill/OU=eng/CN=alice", "extendedKeyUsage=clientAuth"),
                            ("stranger", "/CN=mallory", "extendedKeyUsage=clientAuth")]:
        sh("openssl", "req", *ec, "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr", "-subj", subj)
        with open(f"{d}/{name}.ext", "w") as f:
            f.write(ext + "\n")
        sh("openssl", "x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
           "-CAcreateserial", "-out", f"{d}/{name}.pem", "-days", "2", "-extfile", f"{d}/{name}.ext")
    with open(f"{d}/server-keystore.pem", "w") as out:
        out.write(open(f"{d}/server.key").read() + open(f"{d}/server.pem").read())


class Sec:
    pass


@pytest.fixture(scope="module")
def sec():
    import tempfile
    work = tempfile.mkdtemp(prefix="rill-sec-")
    certs = os.path.join(work, "certs")
    os.makedirs(certs)
    make_certs(certs)
    p0, p1, p2, p3 = free_port(), free_port(), free_port(), free_port()
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            f'username="admin" password="{ADMIN_PW}" user_admin="{ADMIN_PW}";')
    extra = {
        "listeners": f"PLAINTEXT://127.0.0.1:{p0},SASL_SSL://127.0.0.1:{p1},MTLS://127.0.0.1:{p2},SASL_PLAINTEXT://127.0.0.1:{p3}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "ssl.keystore.location": f"{certs}/server-keystore.pem",
        "ssl.truststore.location": f"{certs}/ca.pem",
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.principal.mapping.rules": "RULE:^CN=([^,]*),OU=.*$/$1/L,DEFAULT",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin;User:ANONYMOUS",
        "connection.failed.authentication.delay.ms": "50",
        "rill.ssl.reload.interval.ms": "200",
    }
    b = Broker.start(port=p0, workdir=work, extra=extra)
    s = Sec()
    s.b, s.certs, s.p0, s.p1, s.p2, s.p3 = b, certs, p0, p1, p2, p3
    s.plain = f"127.0.0.1:{p0}"
    s.sasl_ssl = f"127.0.0.1:{p1}"
    s.mtls = f"127.0.0.1:{p2}"
    s.admin = AdminClient({"bootstrap.servers": s.plain})
    try:
        yield s
    finally:
        s.admin = None
        import gc
        gc.collect()
        b.cleanup()
        import shutil
        shutil.rmtree(work, ignore_errors=True)


def broker_log(s):
    import re
    return re.sub(r"\x1b\[[0-9;]*m", "", open(s.b.log_path, errors="replace").read())


def sasl_conf(s, user, pw, mech="PLAIN", **extra):
    return {"bootstrap.servers": s.sasl_ssl, "security.protocol": "SASL_SSL", "sasl.mechanism": mech,
            "sasl.username": user, "sasl.password": pw, "ssl.ca.location": f"{s.certs}/ca.pem", **extra}


def new_topic(s, partitions=1):
    name = f"sec-{uuid.uuid4().hex[:10]}"
    s.admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def java(cp, main, *args, timeout=120, input=None, check=True):
    r = subprocess.run(["java", *JAVA_OPTS, "-cp", cp, main, *map(str, args)], input=input, capture_output=True,
                       text=True, timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    if check:
        assert r.returncode == 0, f"{main} {args} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def add_scram(s, user, pw, mech=ScramMechanism.SCRAM_SHA_256):
    fs = s.admin.alter_user_scram_credentials([UserScramCredentialUpsertion(user, ScramCredentialInfo(mech, 4096), pw.encode())])
    for f in fs.values():
        f.result(30)


def produce_consume(conf, topic, n=20, group=None):
    p = Producer({**conf, "enable.idempotence": False})
    for i in range(n):
        p.produce(topic, f"v{i}".encode())
    assert p.flush(30) == 0
    c = Consumer({**conf, "group.id": group or f"g-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append(m.value())
    c.close()
    assert got == [f"v{i}".encode() for i in range(n)]


# ------------------------------------------------------------------------------------- listeners + TLS


def test_sasl_ssl_plain_librdkafka_and_metadata_uses_listener_address(sec):
    topic = new_topic(sec)
    conf = sasl_conf(sec, "admin", ADMIN_PW)
    md = AdminClient(conf).list_topics(timeout=20)
    assert [(b.host, b.port) for b in md.brokers.values()] == [("127.0.0.1", sec.p1)]
    md = sec.admin.list_topics(timeout=20)
    assert [(b.host, b.port) for b in md.brokers.values()] == [("127.0.0.1", sec.p0)]
    produce_consume(conf, topic)


def test_scram_sha_256_and_512_librdkafka(sec):
    topic = new_topic(sec)
    add_scram(sec, "carol", "carol-pw", ScramMechanism.SCRAM_SHA_256)
    add_scram(sec, "dave", "dave-pw", ScramMechanism.SCRAM_SHA_512)
    for user, pw, mech in [("carol", "carol-pw", "SCRAM-SHA-256"), ("dave", "dave-pw", "SCRAM-SHA-512")]:
        for op in ("Write", "Read", "Describe"):
            java_free_acl(sec, user, op, "TOPIC", topic)
        java_free_acl(sec, user, "Read", "GROUP", f"grp-{user}")
        produce_consume(sasl_conf(sec, user, pw, mech), topic, group=f"grp-{user}")
    # PLAIN works against SCRAM-managed users too.
    md = AdminClient(sasl_conf(sec, "dave", "dave-pw", "PLAIN")).list_topics(topic=topic, timeout=20)
    assert md.topics[topic].error is None
    desc = sec.admin.describe_user_scram_credentials(["carol", "dave"])
    infos = {u: f.result(30) for u, f in desc.items()}
    assert infos["dave"].scram_credential_infos[0].mechanism == ScramMechanism.SCRAM_SHA_512
    # Stored salted: the password never appears in the users file.
    text = open(os.path.join(sec.b.data_dir, "__rill_users.json")).read()
    assert "carol-pw" not in text and "dave-pw" not in text and "carol" in text


def java_free_acl(s, user, op, rtype, name):
    """Adds an ALLOW ACL through the binary protocol with confluent's AdminClient (kafka-acls is
    exercised separately; this keeps the setup fast)."""
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType
    b = AclBinding(getattr(ResourceType, rtype), name, ResourcePatternType.LITERAL, f"User:{user}", "*",
                   getattr(AclOperation, op.upper()), AclPermissionType.ALLOW)
    for f in s.admin.create_acls([b]).values():
        f.result(30)


def test_bad_password_fails_cleanly_and_other_connections_carry_on(sec):
    topic = new_topic(sec)
    good = Producer({**sasl_conf(sec, "admin", ADMIN_PW), "enable.idempotence": False})
    good.produce(topic, b"before")
    assert good.flush(30) == 0
    errors = []
    bad = Producer({**sasl_conf(sec, "admin", "wrong"), "error_cb": lambda e: errors.append(e)})
    deadline = time.monotonic() + 20
    while not any(e.code() == KafkaError._AUTHENTICATION for e in errors) and time.monotonic() < deadline:
        bad.poll(0.2)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    assert "Authentication failed" in str([e.str() for e in errors])
    good.produce(topic, b"after")
    assert good.flush(30) == 0
    del bad


def test_plaintext_to_tls_port_and_tls_to_plaintext_port_fail_cleanly(sec):
    keep = socket.create_connection(("127.0.0.1", sec.p0), timeout=10)  # a healthy connection throughout
    # Plaintext Kafka request to the TLS port: the broker closes it.
    s = socket.create_connection(("127.0.0.1", sec.p1), timeout=10)
    s.sendall(_api_versions_req())
    assert closed_by_peer(s, 15)
    s.close()
    # TLS to the plaintext port: the handshake fails, no hang.
    ctx = ssl.create_default_context(cafile=f"{sec.certs}/ca.pem")
    raw = socket.create_connection(("127.0.0.1", sec.p0), timeout=10)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1").do_handshake()
    raw.close()
    keep.sendall(_api_versions_req())
    assert struct.unpack(">i", recv_frame(keep)[:4])[0] == 1
    keep.close()


def _api_versions_req(corr=1):
    h = W().i16(18).i16(0).i32(corr).string("raw")
    payload = bytes(h.b)
    return struct.pack(">i", len(payload)) + payload


def test_tls_rejects_tls_1_1(sec):
    ctx = ssl.create_default_context(cafile=f"{sec.certs}/ca.pem")
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, AttributeError):
        pytest.skip("local OpenSSL cannot offer TLS 1.1")
    raw = socket.create_connection(("127.0.0.1", sec.p1), timeout=10)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1").do_handshake()
    raw.close()


def test_certificate_reload_without_restart(sec):
    """A new certificate written over the keystore file is served to new connections."""
    def serial():
        ctx = ssl.create_default_context(cafile=f"{sec.certs}/ca.pem")
        with socket.create_connection(("127.0.0.1", sec.p1), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as t:
                return t.getpeercert()["serialNumber"]
    before = serial()
    d = sec.certs
    sh("openssl", "x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
       "-CAcreateserial", "-out", f"{d}/server2.pem", "-days", "3", "-extfile", f"{d}/server.ext")
    tmp = f"{d}/server-keystore.pem.new"
    with open(tmp, "w") as out:
        out.write(open(f"{d}/server.key").read() + open(f"{d}/server2.pem").read())
    os.replace(tmp, f"{d}/server-keystore.pem")
    deadline = time.monotonic() + 10
    while serial() == before:
        assert time.monotonic() < deadline, "certificate not reloaded"
        time.sleep(0.2)


# ------------------------------------------------------------------------------------- mTLS


def kcat(*args, timeout=30):
    return subprocess.run(["kcat", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_mtls_kcat_principal_from_certificate(sec):
    visible, hidden = new_topic(sec), new_topic(sec)
    # The mapping rule turns CN=alice,OU=eng,O=Rill,C=US into User:alice.
    java_free_acl(sec, "alice", "Describe", "TOPIC", visible)
    tls = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={sec.certs}/ca.pem"]
    me = ["-X", f"ssl.certificate.location={sec.certs}/client.pem", "-X", f"ssl.key.location={sec.certs}/client.key"]
    r = kcat("-b", sec.mtls, *tls, *me, "-L", "-J")
    assert r.returncode == 0, r.stderr
    assert visible in r.stdout and hidden not in r.stdout
    # Without a client certificate the handshake is refused.
    r = kcat("-b", sec.mtls, *tls, "-L", "-m", "5")
    assert r.returncode != 0
    # A certificate whose principal (User:CN=mallory) has no ACLs sees nothing.
    other = ["-X", f"ssl.certificate.location={sec.certs}/stranger.pem", "-X", f"ssl.key.location={sec.certs}/stranger.key"]
    r = kcat("-b", sec.mtls, *tls, *other, "-L", "-J")
    assert r.returncode == 0, r.stderr
    assert visible not in r.stdout
    assert "principal=User:alice" in broker_log(sec)


# ------------------------------------------------------------------------------------- ACLs


def test_principal_without_read_gets_topic_authorization_failed_and_no_metadata(sec):
    topic = new_topic(sec)
    sec.admin  # noqa: B018
    add_scram(sec, "bob", "bob-pw")
    conf = sasl_conf(sec, "bob", "bob-pw", "SCRAM-SHA-256")
    md = AdminClient(conf).list_topics(timeout=20)
    assert topic not in md.topics
    md = AdminClient(conf).list_topics(topic=topic, timeout=20)
    assert md.topics[topic].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    java_free_acl(sec, "bob", "Read", "GROUP", "bob-group")
    c = Consumer({**conf, "group.id": "bob-group", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    err = None
    deadline = time.monotonic() + 20
    while err is None and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error():
            err = m.error()
    c.close()
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    p = Producer({**conf, "enable.idempotence": False})
    results = []
    p.produce(topic, b"x", on_delivery=lambda e, m: results.append(e))
    p.flush(20)
    assert results and results[0] is not None and results[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # The idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
    errors = []
    p = Producer({**conf, "enable.idempotence": True, "error_cb": errors.append})
    p.produce(topic, b"x")
    deadline = time.monotonic() + 20
    while not any(e.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED for e in errors) and time.monotonic() < deadline:
        try:
            p.poll(0.2)
        except KafkaException as fatal:  # librdkafka raises the fatal error from poll()
            errors.append(fatal.args[0])
    assert any(e.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED for e in errors), errors
    # Groups: bob may read bob-group only; describing another group is refused and listing hides it.
    other = f"other-{uuid.uuid4().hex[:6]}"
    oc = Consumer({"bootstrap.servers": sec.plain, "group.id": other, "auto.offset.reset": "earliest"})
    oc.subscribe([topic])
    oc.poll(3)
    bob_admin = AdminClient(conf)
    d = bob_admin.describe_consumer_groups([other])[other]
    with pytest.raises(KafkaException) as e:
        d.result(20)
    assert e.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    listed = bob_admin.list_consumer_groups().result(20)
    assert other not in [g.group_id for g in listed.valid]
    assert other in [g.group_id for g in sec.admin.list_consumer_groups().result(20).valid]
    oc.close()
    log = broker_log(sec)
    assert f'result="denied" principal=User:bob' in log and f'resource="{topic}"' in log


def test_kafka_acls_and_kafka_configs_then_java_sasl_ssl_scram_512(sec, java_cp, tmp_path):
    topic = new_topic(sec)
    user, pw, group = f"alice{uuid.uuid4().hex[:6]}", "alice-Secret-1", f"jgroup-{uuid.uuid4().hex[:6]}"
    bs = ["--bootstrap-server", sec.plain]
    java(java_cp, CONFIGS, *bs, "--alter", "--add-config", f"SCRAM-SHA-512=[password={pw}]", "--entity-type", "users",
         "--entity-name", user)
    out = java(java_cp, CONFIGS, *bs, "--describe", "--entity-type", "users", "--entity-name", user).stdout
    assert "SCRAM-SHA-512" in out and "iterations=4096" in out
    java(java_cp, ACLS, *bs, "--add", "--allow-principal", f"User:{user}", "--operation", "Write", "--operation", "Read",
         "--operation", "Describe", "--topic", topic)
    java(java_cp, ACLS, *bs, "--add", "--allow-principal", f"User:{user}", "--operation", "Read", "--group", group)
    out = java(java_cp, ACLS, *bs, "--list", "--topic", topic).stdout
    assert f"principal=User:{user}" in out and "operation=WRITE" in out and "permissionType=ALLOW" in out
    props = tmp_path / "client.properties"
    props.write_text("\n".join([
        "security.protocol=SASL_SSL",
        "sasl.mechanism=SCRAM-SHA-512",
        f'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{pw}";',
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={sec.certs}/ca.pem",
    ]) + "\n")
    lines = "".join(f"java-{i}\n" for i in range(10))
    # Java's producer is idempotent by default: InitProducerId needs WRITE on a topic (KIP-679).
    java(java_cp, PRODUCER, "--bootstrap-server", sec.sasl_ssl, "--topic", topic, "--producer.config", props, input=lines)
    out = java(java_cp, CONSUMER, "--bootstrap-server", sec.sasl_ssl, "--topic", topic, "--from-beginning",
               "--max-messages", 10, "--timeout-ms", 30000, "--group", group, "--consumer.config", props).stdout
    assert out.split() == [f"java-{i}" for i in range(10)]
    # Removing the ACL takes the right away again.
    java(java_cp, ACLS, *bs, "--remove", "--force", "--allow-principal", f"User:{user}", "--operation", "Write",
         "--operation", "Read", "--operation", "Describe", "--topic", topic)
    out = java(java_cp, ACLS, *bs, "--list", "--topic", topic).stdout
    assert f"User:{user}" not in out
    p = Producer({**sasl_conf(sec, user, pw, "SCRAM-SHA-512"), "enable.idempotence": False})
    results = []
    p.produce(topic, b"x", on_delivery=lambda e, m: results.append(e))
    p.flush(20)
    assert results and results[0] is not None and results[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # A Java admin client over SASL_SSL: a normal user may not list ACLs; a wrong password fails to authenticate.
    r = java(java_cp, ACLS, "--bootstrap-server", sec.sasl_ssl, "--command-config", props, "--list", check=False)
    assert "ClusterAuthorizationException" in r.stdout + r.stderr, r.stdout + r.stderr
    props.write_text(props.read_text().replace(pw, "wrong"))
    r = java(java_cp, ACLS, "--bootstrap-server", sec.sasl_ssl, "--command-config", props, "--list", check=False)
    assert r.returncode != 0 and "SaslAuthenticationException" in r.stdout + r.stderr, r.stdout + r.stderr


# ------------------------------------------------------------------------------------- raw SASL


def _sasl_plain_login(port, user, pw):
    """SaslHandshake v1 + SaslAuthenticate v1 over a raw socket. Returns (error_code, seconds)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        body = W().string("PLAIN").b
        h = W().i16(17).i16(1).i32(1).string("raw").b
        s.sendall(struct.pack(">i", len(h) + len(body)) + h + body)
        r = R(recv_frame(s))
        assert r.i32() == 1 and r.i16() == 0
        token = b"\0" + user.encode() + b"\0" + pw.encode()
        body = W().bytes_(token).b
        h = W().i16(36).i16(1).i32(2).string("raw").b
        t0 = time.monotonic()
        s.sendall(struct.pack(">i", len(h) + len(body)) + h + body)
        r = R(recv_frame(s))
        elapsed = time.monotonic() - t0
        assert r.i32() == 2
        return r.i16(), elapsed
    finally:
        s.close()


def test_brute_force_logins_are_throttled(sec):
    times = []
    for i in range(6):
        code, t = _sasl_plain_login(sec.p3, "admin", f"guess{i}")
        assert code == 58  # SASL_AUTHENTICATION_FAILED
        times.append(t)
    assert times[-1] >= 0.8, times  # the delay grows with repeated failures from one address
    assert sum(times) >= 1.5, times
    code, t = _sasl_plain_login(sec.p3, "admin", ADMIN_PW)
    assert code == 0 and t < 0.5, t


def test_request_before_authentication_closes_connection(sec):
    s = socket.create_connection(("127.0.0.1", sec.p3), timeout=10)
    # Metadata v1 without SASL on a SASL listener.
    body = W().i32(-1).b
    h = W().i16(3).i16(1).i32(5).string("raw").b
    s.sendall(struct.pack(">i", len(h) + len(body)) + h + body)
    assert closed_by_peer(s, 10)
    s.close()


# ------------------------------------------------------------------------------------- rill CLI


def rill(*args, input=None):
    from broker import rill_bin
    r = subprocess.run([rill_bin(), *map(str, args)], input=input, capture_output=True, text=True, timeout=60,
                       stdin=None if input is not None else subprocess.DEVNULL)
    assert r.returncode == 0, f"rill {args}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_rill_user_and_acl_commands(sec):
    import json
    topic = new_topic(sec)
    user = f"erin{uuid.uuid4().hex[:6]}"
    b = ["-b", sec.plain]
    rill("user", "add", user, "--mechanism", "SCRAM-SHA-512", "--password-stdin", *b, input="erin-pw\n")
    users = json.loads(rill("user", "list", "-o", "json", *b))
    assert {"user": user, "mechanisms": "SCRAM-SHA-512(iterations=8192)"} in users
    rill("acl", "add", "--principal", f"User:{user}", "--operation", "read", "--operation", "describe",
         "--operation", "write", "--topic", topic, *b)
    rill("acl", "add", "--principal", f"User:{user}", "--operation", "read", "--group", f"{user}-", "--prefixed", *b)
    acls = json.loads(rill("acl", "list", "--principal", f"User:{user}", "-o", "json", *b))
    assert {(a["operation"], a["resource"], a["pattern"]) for a in acls} == {
        ("Read", topic, "LITERAL"), ("Describe", topic, "LITERAL"), ("Write", topic, "LITERAL"), ("Read", f"{user}-", "PREFIXED")}
    produce_consume(sasl_conf(sec, user, "erin-pw", "SCRAM-SHA-512"), topic, group=f"{user}-g1")
    rill("acl", "remove", "--principal", f"User:{user}", "--operation", "read", "--group", f"{user}-", "--prefixed", *b)
    assert len(json.loads(rill("acl", "list", "--principal", f"User:{user}", "-o", "json", *b))) == 3
    rill("user", "remove", user, *b)
    assert user not in rill("user", "list", *b)


def test_rill_cli_connects_over_tls_sasl_and_mtls(sec, tmp_path):
    """The admin CLI takes Kafka client properties (--command-config): SASL_SSL with PLAIN,
    SASL_PLAINTEXT with SCRAM, SSL with a client certificate; a wrong password fails clearly."""
    from broker import rill_bin
    topic = new_topic(sec)
    user = f"frank{uuid.uuid4().hex[:6]}"
    rill("user", "add", user, "--mechanism", "SCRAM-SHA-256", "--password-stdin", "-b", sec.plain, input="frank-pw\n")
    ca = {"ssl.truststore.type": "PEM", "ssl.truststore.location": f"{sec.certs}/ca.pem"}

    def props(name, **kv):
        path = tmp_path / name
        path.write_text("".join(f"{k}={v}\n" for k, v in kv.items()))
        return str(path)

    admin = props("admin.properties", **{
        "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", **ca,
        "sasl.jaas.config": f'org.apache.kafka.common.security.plain.PlainLoginModule required '
                            f'username="admin" password="{ADMIN_PW}";'})
    assert topic in rill("topic", "list", "-b", sec.sasl_ssl, "--command-config", admin).split()
    scram = props("scram.properties", **{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
                                         "sasl.username": user, "sasl.password": "frank-pw"})
    rill("topic", "list", "-b", f"127.0.0.1:{sec.p3}", "--command-config", scram)
    keystore = tmp_path / "alice.pem"
    keystore.write_text(open(f"{sec.certs}/client.key").read() + open(f"{sec.certs}/client.pem").read())
    mtls = props("mtls.properties", **{"security.protocol": "SSL", **ca, "ssl.keystore.type": "PEM",
                                       "ssl.keystore.location": str(keystore)})
    rill("topic", "list", "-b", sec.mtls, "--command-config", mtls)
    bad = props("bad.properties", **{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256", **ca,
                                     "sasl.username": user, "sasl.password": "not-the-password"})
    r = subprocess.run([rill_bin(), "topic", "list", "-b", sec.sasl_ssl, "--command-config", bad],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and "authentication" in r.stderr and "failed" in r.stderr, r.stderr
    # TLS to the plaintext port is a clear handshake failure, not a hang.
    r = subprocess.run([rill_bin(), "topic", "list", "-b", sec.plain, "--command-config", mtls],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and "TLS handshake" in r.stderr, r.stderr


# ------------------------------------------------------------------------------------- KIP-368


def test_reauthentication_keeps_long_lived_connection_working(fresh_broker):
    """connections.max.reauth.ms: librdkafka re-authenticates on the same connection before the session
    ends; a connection that did not re-authenticate would be closed."""
    p0, p1 = free_port(), free_port()
    b = fresh_broker(port=p0, extra={
        "listeners": f"PLAINTEXT://127.0.0.1:{p0},SASL_PLAINTEXT://127.0.0.1:{p1}",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": f'x required user_admin="{ADMIN_PW}";',
        "connections.max.reauth.ms": "1500",
    })
    topic = f"reauth-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": f"127.0.0.1:{p1}", "security.protocol": "SASL_PLAINTEXT",
                  "sasl.mechanism": "PLAIN", "sasl.username": "admin", "sasl.password": ADMIN_PW,
                  "enable.idempotence": False})
    failed = []
    for i in range(30):
        p.produce(topic, f"{i}".encode(), on_delivery=lambda e, m: e and failed.append(e))
        p.flush(10)
        time.sleep(0.2)
    assert not failed, failed
    import re
    log = re.sub(r"\x1b\[[0-9;]*m", "", open(b.log_path, errors="replace").read())
    ok = [line for line in log.splitlines() if 'result="success"' in line and "mechanism=\"PLAIN\"" in line]
    ports = [re.search(r"client=127\.0\.0\.1:(\d+)", line).group(1) for line in ok]
    # More authentications than connections: sessions were renewed in place.
    assert len(ok) >= 4 and len(ok) > len(set(ports)), ok
    assert "SASL session expired" not in log


# ------------------------------------------------------------------------------------- OAUTHBEARER


def _b64url(b):
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _jwt(claims, *, alg, kid, key):
    """A signed JWT: HS256 with a shared secret (bytes) or RS256 with an RSA key file (openssl CLI)."""
    import hashlib
    import hmac
    import json
    head = _b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    body = _b64url(json.dumps(claims).encode())
    signing = f"{head}.{body}".encode()
    if alg == "HS256":
        sig = hmac.new(key, signing, hashlib.sha256).digest()
    else:
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing, capture_output=True,
                             check=True).stdout
    return f"{head}.{body}.{_b64url(sig)}"


def test_oauthbearer_jwt_validation_with_librdkafka_and_java(fresh_broker, tmp_path, java_cp):
    import json
    rsa = str(tmp_path / "rsa.key")
    sh("openssl", "genrsa", "-out", rsa, "2048")
    modulus = subprocess.run(["openssl", "rsa", "-in", rsa, "-noout", "-modulus"], capture_output=True, text=True,
                             check=True).stdout.strip().split("=", 1)[1]
    secret = os.urandom(32)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [
        {"kty": "RSA", "kid": "rk1", "alg": "RS256", "use": "sig", "n": _b64url(bytes.fromhex(modulus)), "e": "AQAB"},
        {"kty": "oct", "kid": "hk1", "alg": "HS256", "k": _b64url(secret)},
    ]}))
    p0, p1 = free_port(), free_port()
    b = fresh_broker(port=p0, extra={
        "listeners": f"PLAINTEXT://127.0.0.1:{p0},SASL_PLAINTEXT://127.0.0.1:{p1}",
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "sasl.oauthbearer.jwks.endpoint.url": f"file://{jwks}",
        "sasl.oauthbearer.expected.issuer": "https://idp.test",
        "sasl.oauthbearer.expected.audience": "rill",
        "sasl.oauthbearer.clock.skew.seconds": "0",
        "authorizer.class.name": "rill",
        "super.users": "User:ANONYMOUS",
    })
    topic = f"oauth-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType
    for op in (AclOperation.WRITE, AclOperation.DESCRIBE):
        for f in admin.create_acls([AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                                               "User:svc-orders", "*", op, AclPermissionType.ALLOW)]).values():
            f.result(30)
    now = int(time.time())
    good = {"sub": "svc-orders", "iss": "https://idp.test", "aud": "rill", "iat": now, "exp": now + 300}

    def attempt(token):
        """Produces one record with `token`; returns None on success or the error seen."""
        errors = []
        p = Producer({"bootstrap.servers": f"127.0.0.1:{p1}", "security.protocol": "SASL_PLAINTEXT",
                      "sasl.mechanisms": "OAUTHBEARER", "enable.idempotence": False,
                      "oauth_cb": lambda _cfg: (token, time.time() + 300), "error_cb": errors.append,
                      "message.timeout.ms": 8000})
        delivered = []
        p.produce(topic, b"x", on_delivery=lambda e, m: delivered.append(e))
        deadline = time.monotonic() + 12
        while not delivered and time.monotonic() < deadline:
            p.poll(0.2)
            if any(e.code() == KafkaError._AUTHENTICATION for e in errors):
                return "auth"
        return delivered[0] if delivered else "timeout"

    assert attempt(_jwt(good, alg="RS256", kid="rk1", key=rsa)) is None
    assert attempt(_jwt(good, alg="HS256", kid="hk1", key=secret)) is None
    assert attempt(_jwt({**good, "exp": now - 60}, alg="RS256", kid="rk1", key=rsa)) == "auth"
    assert attempt(_jwt({**good, "aud": "other"}, alg="RS256", kid="rk1", key=rsa)) == "auth"
    assert attempt(_jwt({**good, "iss": "https://evil.test"}, alg="RS256", kid="rk1", key=rsa)) == "auth"
    assert attempt(_jwt(good, alg="HS256", kid="hk1", key=b"not-the-secret")) == "auth"
    # A valid token for a principal without ACLs authenticates but may not write.
    err = attempt(_jwt({**good, "sub": "intruder"}, alg="RS256", kid="rk1", key=rsa))
    assert isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # Java: the token comes from a login callback handler (tests/java/src/OAuthFileLoginHandler.java).
    token_file = tmp_path / "token"
    token_file.write_text(_jwt(good, alg="RS256", kid="rk1", key=rsa))
    props = tmp_path / "oauth.properties"
    props.write_text("\n".join([
        "security.protocol=SASL_PLAINTEXT",
        "sasl.mechanism=OAUTHBEARER",
        "sasl.login.callback.handler.class=OAuthFileLoginHandler",
        f'sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required tokenFile="{token_file}";',
        "enable.idempotence=false",
    ]) + "\n")
    java(java_cp, PRODUCER, "--bootstrap-server", f"127.0.0.1:{p1}", "--topic", topic, "--producer.config", props,
         input="".join(f"java-oauth-{i}\n" for i in range(5)))
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "oauth-check", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len([v for v in got if v.startswith(b"java-oauth-")]) < 5 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert [v for v in got if v.startswith(b"java-oauth-")] == [f"java-oauth-{i}".encode() for i in range(5)]
    token_file.write_text(_jwt({**good, "exp": now - 60}, alg="RS256", kid="rk1", key=rsa))
    r = java(java_cp, ACLS, "--bootstrap-server", f"127.0.0.1:{p1}", "--command-config", props, "--list", check=False)
    assert r.returncode != 0 and "SaslAuthenticationException" in r.stdout + r.stderr, r.stdout + r.stderr


def test_sasl_handshake_on_plaintext_listener_is_illegal_state(sec):
    s = socket.create_connection(("127.0.0.1", sec.p0), timeout=10)
    body = W().string("PLAIN").b
    h = W().i16(17).i16(1).i32(9).string("raw").b
    s.sendall(struct.pack(">i", len(h) + len(body)) + h + body)
    r = R(recv_frame(s))
    assert r.i32() == 9 and r.i16() == 34  # ILLEGAL_SASL_STATE
    s.sendall(_api_versions_req(10))  # the connection is still usable
    assert struct.unpack(">i", recv_frame(s)[:4])[0] == 10
    s.close()


def test_kip848_regex_only_assigns_topics_the_principal_may_describe(sec, java_cp, tmp_path):
    """KIP-848 SubscribedTopicRegex resolves, as in Kafka, only to topics the member's principal may
    DESCRIBE: a SCRAM user with READ on <prefix>-a but no ACL on <prefix>-b (both match the regex) reads
    all of <prefix>-a and is never assigned a partition of <prefix>-b."""
    prefix = f"rx{uuid.uuid4().hex[:8]}"
    user, pw, group = f"rita{uuid.uuid4().hex[:6]}", "rita-Secret-1", f"rxgroup-{uuid.uuid4().hex[:6]}"
    n = 40
    for t in (f"{prefix}-a", f"{prefix}-b"):
        sec.admin.create_topics([NewTopic(t, 2, 1)])[t].result(30)
        p = Producer({"bootstrap.servers": sec.plain})
        for i in range(n):
            p.produce(t, key=str(i).encode(), value=f"v{i}".encode(), partition=i % 2)
        assert p.flush(30) == 0
    add_scram(sec, user, pw, ScramMechanism.SCRAM_SHA_256)
    java_free_acl(sec, user, "Read", "TOPIC", f"{prefix}-a")
    java_free_acl(sec, user, "Read", "GROUP", group)
    props = tmp_path / "client.properties"
    props.write_text("\n".join([
        "security.protocol=SASL_SSL",
        "sasl.mechanism=SCRAM-SHA-256",
        f'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{pw}";',
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={sec.certs}/ca.pem",
    ]) + "\n")
    r = java(java_cp, "Kip848Check", "regexacl", sec.sasl_ssl, prefix, 2, group, "uniform", n, props,
             timeout=180, check=False)
    denied = [line for line in broker_log(sec).splitlines() if "denied" in line and user in line]
    assert r.returncode == 0 and "OK kip848 regexacl" in r.stdout, r.stdout + r.stderr[-3000:] + "\n".join(denied[-20:])
