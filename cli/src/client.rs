//! A small async Kafka client for the admin subcommands: one connection per broker, API
//! version negotiation, requests matched to responses by correlation id.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::Request;
use rill_broker::security::scram::{ScramClient, ScramMechanism};
use rill_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use rill_protocol::{Decodable, Encodable, ResponseError, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENT_ID: &str = "rill-cli";
/// Refuse response frames larger than this (a garbage size prefix must not allocate gigabytes).
const MAX_RESPONSE: usize = 256 * 1024 * 1024;

/// A Kafka error code returned by the broker, with the context it was returned in.
#[derive(Debug)]
pub struct KafkaError {
    pub code: i16,
    pub message: Option<String>,
    pub context: String,
}

impl KafkaError {
    /// The Java-style name of the error code, e.g. `TOPIC_ALREADY_EXISTS`.
    pub fn name(&self) -> String {
        error_name(self.code)
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.name())?;
        match &self.message {
            Some(m) if !m.is_empty() => write!(f, ": {m}"),
            _ => {
                if let Some(e) = ResponseError::try_from_code(self.code) {
                    if let Some(desc) = error_description(e) {
                        return write!(f, " ({desc})");
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for KafkaError {}

fn error_description(e: ResponseError) -> Option<&'static str> {
    Some(match e {
        ResponseError::UnknownTopicOrPartition => "the topic or partition does not exist",
        ResponseError::TopicAlreadyExists => "the topic already exists",
        ResponseError::InvalidPartitions => "invalid partition count",
        ResponseError::InvalidReplicationFactor => "invalid replication factor",
        ResponseError::InvalidConfig => "invalid configuration",
        ResponseError::GroupIdNotFound => "the group does not exist",
        ResponseError::OffsetOutOfRange => "the offset is out of range",
        _ => return None,
    })
}

/// `TopicAlreadyExists` -> `TOPIC_ALREADY_EXISTS`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".into(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        Some(e) => {
            let camel = format!("{e:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

/// Fails with a [`KafkaError`] unless `code` is 0.
pub fn check(code: i16, message: Option<&StrBytes>, context: impl Into<String>) -> Result<(), KafkaError> {
    if code == 0 {
        return Ok(());
    }
    Err(KafkaError { code, message: message.map(|m| m.to_string()), context: context.into() })
}

/// Highest versions this client is willing to use, below what the codec can encode: newer
/// Produce/Fetch/OffsetFetch address topics by id or batch groups, which this client doesn't do.
fn client_cap(key: ApiKey) -> i16 {
    match key {
        ApiKey::Produce => 12,
        ApiKey::Fetch => 12,
        ApiKey::OffsetFetch => 7,
        ApiKey::OffsetCommit => 9,
        ApiKey::InitProducerId => 5,
        ApiKey::Metadata => 12,
        _ => i16::MAX,
    }
}

/// Client settings from --command-config, a profile or the defaults.
#[derive(Clone, Debug)]
pub struct ClientOpts {
    pub client_id: String,
    /// Per request (and per connection attempt).
    pub request_timeout: Duration,
    pub security: Security,
}

impl Default for ClientOpts {
    fn default() -> Self {
        ClientOpts {
            client_id: CLIENT_ID.to_string(),
            request_timeout: Duration::from_secs(30),
            security: Security::default(),
        }
    }
}

/// How connections are secured (`security.protocol` and the `ssl.*`/`sasl.*` client
/// properties): TLS when `tls` is set, SASL after the version exchange when `sasl` is.
#[derive(Clone, Debug, Default)]
pub struct Security {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<Sasl>,
}

/// SASL/PLAIN or SCRAM-SHA-256/512 credentials.
#[derive(Clone)]
pub struct Sasl {
    pub mechanism: String,
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password, not even in debug output.
        write!(f, "Sasl {{ mechanism: {:?}, user: {:?} }}", self.mechanism, self.user)
    }
}

/// TLS client settings: the broker certificate must chain to a CA of the PEM file `ca` (and
/// name the host connected to); `keystore`, a PEM file with a certificate chain and its
/// private key, is presented when the listener asks for a client certificate (mTLS).
pub fn client_tls(ca: &std::path::Path, keystore: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))? {
        roots.add(cert.with_context(|| format!("a certificate in {}", ca.display()))?)?;
    }
    if roots.is_empty() {
        bail!("{} holds no PEM certificate (ssl.truststore.location)", ca.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match keystore {
        None => builder.with_no_client_auth(),
        Some(ks) => {
            let chain = CertificateDer::pem_file_iter(ks)
                .with_context(|| format!("reading {}", ks.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("a certificate in {}", ks.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(ks).with_context(|| format!("the private key in {}", ks.display()))?;
            builder.with_client_auth_cert(chain, key).with_context(|| format!("the keystore {}", ks.display()))?
        }
    })
}

/// A plain or TLS connection.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A failed connection attempt, worded so the user knows what to try next.
fn connect_error(addr: &str, e: &std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind;
    const HINT: &str = "set --bootstrap-server or RILL_BOOTSTRAP_SERVER";
    match e.kind() {
        ErrorKind::ConnectionRefused => {
            anyhow!("cannot connect to {addr}: connection refused (is the broker running? {HINT})")
        }
        ErrorKind::AddrNotAvailable | ErrorKind::NotFound => {
            anyhow!("cannot connect to {addr}: address not available ({e}; check the host name, {HINT})")
        }
        _ if e.to_string().contains("failed to lookup address")
            || e.to_string().contains("Name or service not known") =>
        {
            anyhow!("cannot connect to {addr}: cannot resolve the host name ({e}; {HINT})")
        }
        _ if e.kind() == ErrorKind::InvalidInput => {
            anyhow!("cannot connect to {addr:?}: not a host:port address ({e}; {HINT})")
        }
        _ => anyhow!("cannot connect to {addr}: {e} (is the broker reachable from here? {HINT})"),
    }
}

/// One connection to one broker.
pub struct Client {
    pub addr: String,
    stream: Box<dyn Io>,
    correlation: i32,
    versions: HashMap<i16, (i16, i16)>,
    opts: ClientOpts,
}

impl Client {
    pub async fn connect(addr: &str, opts: &ClientOpts) -> anyhow::Result<Client> {
        let timeout = opts.request_timeout;
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                anyhow!(
                    "cannot connect to {addr}: timed out after {} ms (is the broker reachable from here? a \
                     firewall? set --bootstrap-server or RILL_BOOTSTRAP_SERVER)",
                    timeout.as_millis()
                )
            })?
            .map_err(|e| connect_error(addr, &e))?;
        stream.set_nodelay(true).ok();
        let stream: Box<dyn Io> = match &opts.security.tls {
            None => Box::new(stream),
            Some(tls) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']);
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| anyhow!("cannot use {host:?} as a TLS server name: {e}"))?;
                let handshake = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, stream);
                let tls = tokio::time::timeout(timeout, handshake)
                    .await
                    .map_err(|_| anyhow!("TLS handshake with {addr} timed out (is it a TLS listener?)"))?
                    .map_err(|e| {
                        anyhow!(
                            "TLS handshake with {addr} failed: {e} (check ssl.truststore.location and the listener)"
                        )
                    })?;
                Box::new(tls)
            }
        };
        let mut c =
            Client { addr: addr.to_string(), stream, correlation: 0, versions: HashMap::new(), opts: opts.clone() };
        c.negotiate().await.with_context(|| {
            format!("connected to {addr} but it did not answer ApiVersions (is it a Kafka-protocol broker?)")
        })?;
        if let Some(sasl) = &opts.security.sasl {
            c.authenticate(sasl).await?;
        }
        Ok(c)
    }

    /// SaslHandshake, then one (PLAIN) or two (SCRAM) SaslAuthenticate rounds.
    async fn authenticate(&mut self, sasl: &Sasl) -> anyhow::Result<()> {
        let addr = self.addr.clone();
        let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(sasl.mechanism.clone()));
        let resp: SaslHandshakeResponse = self.send(&hs).await?;
        if resp.error_code != 0 {
            let offered: Vec<String> = resp.mechanisms.iter().map(|m| m.to_string()).collect();
            bail!(
                "{addr} does not accept SASL mechanism {} on this listener (it offers: {}); set sasl.mechanism",
                sasl.mechanism,
                offered.join(", ")
            );
        }
        let mut scram = match sasl.mechanism.as_str() {
            "PLAIN" => None,
            m => match ScramMechanism::from_name(m) {
                Some(mech) => Some(ScramClient::new(mech, &sasl.user, &sasl.password)),
                None => bail!("SASL mechanism {m} is not supported by rill (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"),
            },
        };
        let first = match &scram {
            None => format!("\0{}\0{}", sasl.user, sasl.password).into_bytes(),
            Some(c) => c.client_first(),
        };
        let reply = self.sasl_round(first).await?;
        if let Some(c) = &mut scram {
            let fin = c.client_final(&reply).map_err(|e| anyhow!("SCRAM with {addr}: {e}"))?;
            let reply = self.sasl_round(fin).await?;
            c.verify_server_final(&reply).map_err(|e| anyhow!("SCRAM with {addr}: {e}"))?;
        }
        Ok(())
    }

    async fn sasl_round(&mut self, bytes: Vec<u8>) -> anyhow::Result<Bytes> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
        let resp: SaslAuthenticateResponse = self.send(&req).await?;
        if resp.error_code != 0 {
            let why = resp.error_message.map(|m| m.to_string()).unwrap_or_else(|| error_name(resp.error_code));
            bail!("authentication with {} failed: {why} (check the user and password)", self.addr);
        }
        Ok(resp.auth_bytes)
    }

    async fn negotiate(&mut self) -> anyhow::Result<()> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("rill-cli"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp: ApiVersionsResponse = self.send_at(ApiKey::ApiVersions, &req, 3).await?;
        check(resp.error_code, None, format!("ApiVersions from {}", self.addr))?;
        for k in resp.api_keys {
            let Ok(key) = ApiKey::try_from(k.api_key) else { continue };
            let Some((min, max)) = rill_protocol::supported_versions(key) else { continue };
            let lo = min.max(k.min_version);
            let hi = max.min(k.max_version).min(client_cap(key));
            if lo <= hi {
                self.versions.insert(k.api_key, (lo, hi));
            }
        }
        Ok(())
    }

    /// The version of `key` both sides support, highest first.
    pub fn version(&self, key: ApiKey) -> anyhow::Result<i16> {
        match self.versions.get(&(key as i16)) {
            Some(&(_, max)) => Ok(max),
            None => bail!("broker {} supports no version of {key:?} that rill-cli can speak", self.addr),
        }
    }

    pub fn supports(&self, key: ApiKey) -> bool {
        self.versions.contains_key(&(key as i16))
    }

    /// Sends `req` at the negotiated version and waits for its response.
    pub async fn send<R: Request>(&mut self, req: &R) -> anyhow::Result<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
        let version = self.version(key)?;
        self.send_at(key, req, version).await
    }

    /// Like [`Client::send`], but waits up to `timeout` instead of request.timeout.ms: a
    /// JoinGroup is answered only when the rebalance completes, which may take longer.
    pub async fn send_timeout<R: Request>(&mut self, req: &R, timeout: Duration) -> anyhow::Result<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
        let version = self.version(key)?;
        let timeout = timeout.max(self.opts.request_timeout);
        self.send_within(key, req, version, timeout).await
    }

    /// Sends `req` without waiting for a response (Produce with acks=0 gets none).
    pub async fn send_oneway<R: Request>(&mut self, req: &R) -> anyhow::Result<()> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
        let version = self.version(key)?;
        let buf = self.frame(key, req, version)?;
        self.stream.write_all(&buf).await.with_context(|| format!("{key:?} request to {}", self.addr))?;
        self.stream.flush().await?;
        Ok(())
    }

    fn frame<Req: Encodable>(&mut self, key: ApiKey, req: &Req, version: i16) -> anyhow::Result<BytesMut> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_string(self.opts.client_id.clone())));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 0]);
        header.encode(&mut buf, key.request_header_version(version))?;
        req.encode(&mut buf, version).with_context(|| format!("encoding {key:?} v{version}"))?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        Ok(buf)
    }

    async fn send_at<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        req: &Req,
        version: i16,
    ) -> anyhow::Result<Resp> {
        self.send_within(key, req, version, self.opts.request_timeout).await
    }

    async fn send_within<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        req: &Req,
        version: i16,
        timeout: Duration,
    ) -> anyhow::Result<Resp> {
        let addr = self.addr.clone();
        match tokio::time::timeout(timeout, self.send_at_inner(key, req, version)).await {
            Ok(r) => r,
            Err(_) => bail!(
                "{key:?} request to {addr} timed out after {} ms (raise request.timeout.ms in --command-config)",
                timeout.as_millis()
            ),
        }
    }

    async fn send_at_inner<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        req: &Req,
        version: i16,
    ) -> anyhow::Result<Resp> {
        let buf = self.frame(key, req, version)?;
        let correlation_id = self.correlation;
        let io = |e: std::io::Error| anyhow!("{key:?} request to {}: {e}", self.addr);
        self.stream.write_all(&buf).await.map_err(io)?;
        loop {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    anyhow!("broker {} closed the connection during {key:?} v{version}", self.addr)
                } else {
                    anyhow!("reading {key:?} response from {}: {e}", self.addr)
                }
            })?;
            let len = i32::from_be_bytes(len);
            if len < 0 || len as usize > MAX_RESPONSE {
                bail!("bad response frame size {len} from {}", self.addr);
            }
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).await.map_err(|e| anyhow!("reading from {}: {e}", self.addr))?;
            let mut payload = Bytes::from(payload);
            let header = ResponseHeader::decode(&mut payload, key.response_header_version(version))?;
            if header.correlation_id != correlation_id {
                // A stale response (e.g. of an earlier timed-out request): skip it.
                continue;
            }
            return Resp::decode(&mut payload, version)
                .with_context(|| format!("decoding {key:?} v{version} response"));
        }
    }
}

/// Connections by broker address, opened lazily; the first is the bootstrap broker.
pub struct Pool {
    pub bootstrap: String,
    conns: HashMap<String, Client>,
    /// node id -> "host:port", from the last Metadata response.
    pub nodes: HashMap<i32, String>,
    pub opts: ClientOpts,
}

impl Pool {
    /// Connects to the first answering address of a comma-separated bootstrap list.
    pub async fn connect(bootstrap: &str, opts: &ClientOpts) -> anyhow::Result<Pool> {
        let addrs: Vec<&str> = bootstrap.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
        if addrs.is_empty() {
            bail!("no bootstrap server given (set --bootstrap-server or RILL_BOOTSTRAP_SERVER)");
        }
        let mut last = None;
        for addr in addrs {
            match Client::connect(addr, opts).await {
                Ok(c) => {
                    let mut conns = HashMap::new();
                    conns.insert(addr.to_string(), c);
                    return Ok(Pool { bootstrap: addr.to_string(), conns, nodes: HashMap::new(), opts: opts.clone() });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one address"))
    }

    pub fn main(&mut self) -> &mut Client {
        self.conns.get_mut(&self.bootstrap).expect("bootstrap connection")
    }

    /// The connection to broker `node` (as named by Metadata), falling back to the bootstrap
    /// broker for unknown nodes.
    pub async fn node(&mut self, node: i32) -> anyhow::Result<&mut Client> {
        let Some(addr) = self.nodes.get(&node).cloned() else { return Ok(self.main()) };
        if !self.conns.contains_key(&addr) {
            match Client::connect(&addr, &self.opts).await {
                Ok(c) => {
                    self.conns.insert(addr.clone(), c);
                }
                // Advertised address unreachable from here (e.g. inside a container): use bootstrap.
                Err(_) if addr != self.bootstrap => return Ok(self.main()),
                Err(e) => return Err(e),
            }
        }
        Ok(self.conns.get_mut(&addr).expect("connected"))
    }
}
