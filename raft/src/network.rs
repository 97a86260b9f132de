//! The inter-node transport: Raft RPCs of every group between two nodes share one TCP
//! connection, on each node's own Raft port (`raft.listener`), apart from the Kafka listeners.
//!
//! Wire format (big-endian), after a hello (`RILLRAFT`, version u16, sender node id u64)
//! answered by the same magic and version:
//! - request:  `[len u32][correlation u64][kind u8][group u64][postcard body]`
//! - response: `[len u32][correlation u64][status u8][postcard body or UTF-8 error]`
//!
//! Requests are served concurrently; responses carry the correlation id. A connection that
//! fails is dropped with every RPC waiting on it (they fail as unreachable and openraft backs
//! off and retries); the next RPC to that peer reconnects. Each RPC has a deadline.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, RPCTypes, RaftNetworkV2};
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::state_machine::SnapshotData;
use crate::{NodeId, Raft, SnapshotMeta, TypeConfig, Vote};

const MAGIC: &[u8; 8] = b"RILLRAFT";
pub const PROTOCOL_VERSION: u16 = 1;
/// Frames above this are refused (a snapshot or a batch of entries is far smaller).
const MAX_FRAME: usize = 256 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub mod kind {
    pub const APPEND: u8 = 1;
    pub const VOTE: u8 = 2;
    pub const SNAPSHOT: u8 = 3;
    pub const PRE_VOTE: u8 = 4;
    pub const TRANSFER_LEADER: u8 = 5;
    /// A node heartbeat: liveness, and the groups the sender leads and has quiesced.
    pub const QUIESCE: u8 = 6;
    /// Application RPCs (the broker's: metadata commands forwarded to the controller, ...).
    pub const APP: u8 = 16;
}

const STATUS_OK: u8 = 0;
const STATUS_ERR: u8 = 1;
/// The target has no such group (yet): retry later.
const STATUS_NO_GROUP: u8 = 2;

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The broker's side of application RPCs: `(kind, group, body) -> body or error text`.
pub type AppHandler = Arc<dyn Fn(u8, u64, Bytes) -> BoxFut<Result<Vec<u8>, String>> + Send + Sync>;

/// The Raft groups this node hosts, by group id, for the RPC server to route to.
#[derive(Default, Clone)]
pub struct Groups {
    inner: Arc<RwLock<HashMap<u64, crate::group::Group>>>,
}

impl Groups {
    pub fn insert(&self, group: &crate::group::Group) {
        self.inner.write().insert(group.id, group.clone());
    }
    pub fn remove(&self, group: u64) -> Option<Raft> {
        self.inner.write().remove(&group).map(|g| g.raft)
    }
    pub fn get(&self, group: u64) -> Option<Raft> {
        self.inner.read().get(&group).map(|g| g.raft.clone())
    }
    pub fn all(&self) -> Vec<(u64, Raft)> {
        self.inner.read().iter().map(|(g, r)| (*g, r.raft.clone())).collect()
    }
    pub fn group(&self, group: u64) -> Option<crate::group::Group> {
        self.inner.read().get(&group).cloned()
    }
    pub fn groups(&self) -> Vec<crate::group::Group> {
        self.inner.read().values().cloned().collect()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotWire {
    vote: Vote,
    meta: SnapshotMeta,
    data: Vec<u8>,
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("postcard encodes into a Vec")
}

/// Bytes of a request frame before its body: length, correlation id, kind, group.
const REQUEST_HEAD: usize = 4 + 8 + 1 + 8;

/// A request frame with room for its head (filled by [`Peers::send_frame`]) and `req` encoded
/// after it, in one allocation of the exact size. Encoding into a growing Vec re-copied an
/// AppendEntries of megabytes several times, and framing it copied it once more.
fn request_frame<T: Serialize>(req: &T) -> Vec<u8> {
    let size = postcard::experimental::serialized_size(req).unwrap_or(0);
    let mut frame = Vec::with_capacity(REQUEST_HEAD + size);
    frame.resize(REQUEST_HEAD, 0);
    postcard::to_extend(req, frame).expect("postcard encodes into a Vec")
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    postcard::from_bytes(b).map_err(|e| format!("undecodable body: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Server

/// Serves Raft RPCs for `groups` (and application RPCs through `app`). Runs until dropped,
/// which also closes every connection it accepted.
pub async fn serve(
    listener: TcpListener,
    node_id: NodeId,
    groups: Groups,
    app: AppHandler,
    liveness: Arc<crate::quiesce::Liveness>,
) -> io::Result<()> {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "raft accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (groups, app, liveness) = (groups.clone(), app.clone(), liveness.clone());
        conns.spawn(async move {
            if let Err(e) = serve_conn(stream, node_id, groups, app, liveness).await {
                tracing::debug!(%peer, error = %e, "raft connection closed");
            }
        });
    }
}

async fn serve_conn(
    stream: TcpStream,
    node_id: NodeId,
    groups: Groups,
    app: AppHandler,
    liveness: Arc<crate::quiesce::Liveness>,
) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    // Buffered: a frame is read as a length then a body, many frames per syscall.
    let mut rd = tokio::io::BufReader::with_capacity(64 << 10, rd);
    let mut hello = [0u8; 18];
    tokio::time::timeout(CONNECT_TIMEOUT, rd.read_exact(&mut hello)).await.map_err(|_| io::ErrorKind::TimedOut)??;
    if &hello[..8] != MAGIC {
        return Err(io::Error::other("not a Rill raft peer"));
    }
    let version = u16::from_be_bytes([hello[8], hello[9]]);
    let from = u64::from_be_bytes(hello[10..18].try_into().unwrap());
    let mut reply = Vec::with_capacity(18);
    reply.extend_from_slice(MAGIC);
    reply.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    reply.extend_from_slice(&node_id.to_be_bytes());
    wr.write_all(&reply).await?;
    if version != PROTOCOL_VERSION {
        return Err(io::Error::other(format!(
            "peer {from} speaks raft protocol v{version}, we speak v{PROTOCOL_VERSION}"
        )));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let writer = tokio::spawn(async move {
        let _ = write_frames(&mut wr, rx).await;
    });
    let result = loop {
        let frame = match read_frame(&mut rd).await {
            Ok(f) => f,
            Err(e) => break Err(e),
        };
        if frame.len() < 17 {
            break Err(io::Error::other("short raft request"));
        }
        let mut f = frame;
        let corr = f.get_u64();
        let k = f.get_u8();
        let group = f.get_u64();
        let (groups, app, tx) = (groups.clone(), app.clone(), tx.clone());
        if k == kind::QUIESCE {
            crate::quiesce::on_heartbeat(from, f, &groups, &liveness).await;
            let mut out = BytesMut::with_capacity(13);
            out.put_u32(9);
            out.put_u64(corr);
            out.put_u8(STATUS_OK);
            let _ = tx.send(out.freeze()).await;
            continue;
        }
        tokio::spawn(async move {
            let (status, body) = handle(k, group, f, &groups, &app).await;
            let mut out = BytesMut::with_capacity(13 + body.len());
            out.put_u32((9 + body.len()) as u32);
            out.put_u64(corr);
            out.put_u8(status);
            out.extend_from_slice(&body);
            let _ = tx.send(out.freeze()).await;
        });
    };
    drop(tx);
    let _ = writer.await;
    result
}

async fn handle(k: u8, group: u64, body: Bytes, groups: &Groups, app: &AppHandler) -> (u8, Vec<u8>) {
    if k >= kind::APP {
        return match app(k, group, body).await {
            Ok(b) => (STATUS_OK, b),
            Err(e) => (STATUS_ERR, e.into_bytes()),
        };
    }
    let Some(raft) = groups.get(group) else {
        return (STATUS_NO_GROUP, format!("no raft group {group} here").into_bytes());
    };
    let r: Result<Vec<u8>, String> = async {
        match k {
            kind::APPEND => {
                let req: AppendEntriesRequest<TypeConfig> = crate::decode_in(&body, dec)?;
                raft.append_entries(req).await.map(|r| enc(&r)).map_err(|e| e.to_string())
            }
            kind::VOTE => {
                let req: VoteRequest<TypeConfig> = dec(&body)?;
                raft.vote(req).await.map(|r| enc(&r)).map_err(|e| e.to_string())
            }
            kind::PRE_VOTE => {
                let req: VoteRequest<TypeConfig> = dec(&body)?;
                raft.pre_vote(req).await.map(|r| enc(&r)).map_err(|e| e.to_string())
            }
            kind::SNAPSHOT => {
                let w: SnapshotWire = dec(&body)?;
                let snap = openraft::Snapshot { meta: w.meta, snapshot: std::io::Cursor::new(w.data) };
                raft.install_full_snapshot(w.vote, snap).await.map(|r| enc(&r)).map_err(|e| e.to_string())
            }
            kind::TRANSFER_LEADER => {
                let req: openraft::raft::TransferLeaderRequest<TypeConfig> = dec(&body)?;
                raft.handle_transfer_leader(req).await.map(|r| enc(&r)).map_err(|e| e.to_string())
            }
            other => Err(format!("unknown raft rpc kind {other}")),
        }
    }
    .await;
    match r {
        Ok(b) => (STATUS_OK, b),
        Err(e) => (STATUS_ERR, e.into_bytes()),
    }
}

/// Writes queued frames, coalescing whatever is queued into one write: with many groups
/// between two nodes, heartbeats and appends of different groups share syscalls.
async fn write_frames(wr: &mut (impl AsyncWriteExt + Unpin), mut rx: mpsc::Receiver<Bytes>) -> io::Result<()> {
    let mut batch = Vec::with_capacity(64);
    let mut buf = BytesMut::new();
    while rx.recv_many(&mut batch, 64).await > 0 {
        for f in batch.drain(..) {
            // Large frames (appends of records) go out as they are: copying them to share a
            // syscall costs more than the syscall.
            if f.len() >= COALESCE_MAX {
                if !buf.is_empty() {
                    wr.write_all(&buf).await?;
                    buf.clear();
                }
                wr.write_all(&f).await?;
            } else {
                buf.extend_from_slice(&f);
            }
        }
        if !buf.is_empty() {
            wr.write_all(&buf).await?;
            buf.clear();
        }
    }
    Ok(())
}

/// Frames below this size are coalesced into one write.
const COALESCE_MAX: usize = 64 * 1024;

async fn read_frame(rd: &mut (impl AsyncReadExt + Unpin)) -> io::Result<Bytes> {
    let len = rd.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(io::Error::other(format!("raft frame of {len} bytes")));
    }
    // Not zero-filled first: frames carry megabytes of records.
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let want = len - buf.len();
        if rd.read_buf(&mut (&mut buf).limit(want)).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf.freeze())
}

// ---------------------------------------------------------------------------------------------
// Client

/// Why an RPC failed, before mapping to openraft's error types.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("peer {0} unreachable: {1}")]
    Unreachable(NodeId, String),
    #[error("rpc to peer {0} timed out")]
    Timeout(NodeId),
    #[error("peer {0} has no such group yet")]
    NoGroup(NodeId),
    #[error("peer {0} failed the rpc: {1}")]
    Remote(NodeId, String),
}

struct Conn {
    tx: mpsc::Sender<Bytes>,
    pending: Mutex<HashMap<u64, oneshot::Sender<(u8, Bytes)>>>,
    closed: std::sync::atomic::AtomicBool,
}

/// Connections to the other nodes, shared by every group of this node.
pub struct Peers {
    node_id: NodeId,
    addrs: RwLock<HashMap<NodeId, String>>,
    conns: Mutex<HashMap<NodeId, Arc<Conn>>>,
    connecting: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<()>>>>,
    next_corr: AtomicU64,
    /// Per group, the last term this node stood for election in (a candidate sends one vote
    /// request per peer; an election is counted once).
    candidacies: Mutex<HashMap<u64, u64>>,
    elections_started: AtomicU64,
    /// Node heartbeats sent and received (see `quiesce`).
    pub liveness: Arc<crate::quiesce::Liveness>,
}

impl Peers {
    pub fn new(node_id: NodeId) -> Arc<Self> {
        Arc::new(Peers {
            node_id,
            addrs: RwLock::default(),
            conns: Mutex::default(),
            connecting: Mutex::default(),
            next_corr: AtomicU64::new(1),
            candidacies: Mutex::default(),
            elections_started: AtomicU64::new(0),
            liveness: Arc::default(),
        })
    }

    /// Elections this node has started (as a candidate, after a successful pre-vote), over
    /// every group since the process started. A steady rise means leaders keep being lost.
    pub fn elections_started(&self) -> u64 {
        self.elections_started.load(Ordering::Relaxed)
    }

    fn count_candidacy(&self, group: u64, term: u64) {
        let mut last = self.candidacies.lock();
        if last.insert(group, term) != Some(term) {
            self.elections_started.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Records (or changes) a peer's Raft address.
    pub fn set_addr(&self, node: NodeId, addr: String) {
        let mut addrs = self.addrs.write();
        if addrs.get(&node) != Some(&addr) {
            addrs.insert(node, addr);
            self.conns.lock().remove(&node);
        }
    }

    pub fn addr(&self, node: NodeId) -> Option<String> {
        self.addrs.read().get(&node).cloned()
    }

    async fn conn(&self, target: NodeId) -> Result<Arc<Conn>, CallError> {
        if let Some(c) = self.conns.lock().get(&target).filter(|c| !c.closed.load(Ordering::Acquire)) {
            return Ok(c.clone());
        }
        // One dialer per peer at a time; the others wait for its result.
        let gate = self.connecting.lock().entry(target).or_default().clone();
        let _g = gate.lock().await;
        if let Some(c) = self.conns.lock().get(&target).filter(|c| !c.closed.load(Ordering::Acquire)) {
            return Ok(c.clone());
        }
        let addr = self.addr(target).ok_or_else(|| CallError::Unreachable(target, "address unknown".into()))?;
        let unreachable = |e: String| CallError::Unreachable(target, e);
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
            .await
            .map_err(|_| unreachable(format!("connect to {addr} timed out")))?
            .map_err(|e| unreachable(format!("connect to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let mut hello = Vec::with_capacity(18);
        hello.extend_from_slice(MAGIC);
        hello.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        hello.extend_from_slice(&self.node_id.to_be_bytes());
        let mut reply = [0u8; 18];
        tokio::time::timeout(CONNECT_TIMEOUT, async {
            stream.write_all(&hello).await?;
            stream.read_exact(&mut reply).await
        })
        .await
        .map_err(|_| unreachable("handshake timed out".into()))?
        .map_err(|e| unreachable(format!("handshake: {e}")))?;
        if &reply[..8] != MAGIC || u16::from_be_bytes([reply[8], reply[9]]) != PROTOCOL_VERSION {
            return Err(unreachable("peer speaks another raft protocol".into()));
        }
        let (rd, mut wr) = stream.into_split();
        let mut rd = tokio::io::BufReader::with_capacity(64 << 10, rd);
        let (tx, rx) = mpsc::channel::<Bytes>(1024);
        let conn = Arc::new(Conn { tx, pending: Mutex::default(), closed: Default::default() });
        let c2 = conn.clone();
        tokio::spawn(async move {
            let _ = write_frames(&mut wr, rx).await;
            c2.closed.store(true, Ordering::Release);
        });
        let c3 = conn.clone();
        tokio::spawn(async move {
            while let Ok(mut f) = read_frame(&mut rd).await {
                if f.len() < 9 {
                    break;
                }
                let corr = f.get_u64();
                let status = f.get_u8();
                if let Some(w) = c3.pending.lock().remove(&corr) {
                    let _ = w.send((status, f));
                }
            }
            c3.closed.store(true, Ordering::Release);
            // Dropping the senders fails every RPC still waiting on this connection.
            c3.pending.lock().clear();
        });
        self.conns.lock().insert(target, conn.clone());
        Ok(conn)
    }

    /// One RPC: sends `body` for `group` to `target`, waits up to `timeout` for the answer.
    pub async fn call(
        &self,
        target: NodeId,
        k: u8,
        group: u64,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let mut frame = Vec::with_capacity(REQUEST_HEAD + body.len());
        frame.resize(REQUEST_HEAD, 0);
        frame.extend_from_slice(body);
        self.send_frame(target, k, group, frame, timeout).await
    }

    /// Like [`Peers::call`], with the body already in `frame` after [`REQUEST_HEAD`] bytes
    /// of room for the head, which is filled here.
    async fn send_frame(
        &self,
        target: NodeId,
        k: u8,
        group: u64,
        mut frame: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let fut = async {
            let conn = self.conn(target).await?;
            let corr = self.next_corr.fetch_add(1, Ordering::Relaxed);
            let (wtx, wrx) = oneshot::channel();
            conn.pending.lock().insert(corr, wtx);
            let len = (frame.len() - 4) as u32;
            let mut head = &mut frame[..REQUEST_HEAD];
            head.put_u32(len);
            head.put_u64(corr);
            head.put_u8(k);
            head.put_u64(group);
            if conn.tx.send(Bytes::from(frame)).await.is_err() {
                conn.pending.lock().remove(&corr);
                return Err(CallError::Unreachable(target, "connection closed".into()));
            }
            let (status, body) = wrx.await.map_err(|_| CallError::Unreachable(target, "connection lost".into()))?;
            match status {
                STATUS_OK => Ok(body),
                STATUS_NO_GROUP => Err(CallError::NoGroup(target)),
                _ => Err(CallError::Remote(target, String::from_utf8_lossy(&body).into_owned())),
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(target)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// openraft glue

/// The network of one Raft group on this node.
#[derive(Clone)]
pub struct GroupNetwork {
    pub group: u64,
    pub peers: Arc<Peers>,
}

pub struct GroupClient {
    group: u64,
    target: NodeId,
    peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = GroupClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        if !node.addr.is_empty() {
            self.peers.set_addr(target, node.addr.clone());
        }
        GroupClient { group: self.group, target, peers: self.peers.clone() }
    }
}

impl GroupClient {
    fn rpc_error<E: std::error::Error>(
        &self,
        e: CallError,
        action: RPCTypes,
        ttl: Duration,
    ) -> RPCError<TypeConfig, E> {
        match e {
            CallError::Timeout(_) => {
                RPCError::Timeout(Timeout { action, id: self.peers.node_id(), target: self.target, timeout: ttl })
            }
            CallError::Unreachable(..) | CallError::NoGroup(_) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Remote(..) => RPCError::Network(NetworkError::new(&e)),
        }
    }

    async fn rpc<Req: Serialize, Resp: DeserializeOwned, E: std::error::Error>(
        &self,
        k: u8,
        req: Req,
        action: RPCTypes,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig, E>> {
        let ttl = option.soft_ttl();
        let frame = request_frame(&req);
        // An AppendEntries' records are in the frame now: not held twice until the answer.
        drop(req);
        let body = self.peers.send_frame(self.target, k, self.group, frame, ttl).await;
        let body = body.map_err(|e| self.rpc_error(e, action, ttl))?;
        dec(&body).map_err(|e| RPCError::Network(NetworkError::from_string(e)))
    }
}

impl RaftNetworkV2<TypeConfig> for GroupClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(kind::APPEND, rpc, RPCTypes::AppendEntries, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        use openraft::vote::RaftLeaderId;
        self.peers.count_candidacy(self.group, rpc.vote.leader_id.term());
        self.rpc(kind::VOTE, rpc, RPCTypes::Vote, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(kind::PRE_VOTE, rpc, RPCTypes::Vote, &option).await
    }

    async fn transfer_leader(
        &mut self,
        req: openraft::raft::TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<openraft::raft::TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(kind::TRANSFER_LEADER, req, RPCTypes::TransferLeader, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let wire = SnapshotWire { vote, meta: snapshot.meta, data: snapshot.snapshot.into_inner() };
        let ttl = option.hard_ttl();
        let body = enc(&wire);
        let call = self.peers.call(self.target, kind::SNAPSHOT, self.group, &body, ttl);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = call => {
                let body = r.map_err(|e| match e {
                    CallError::Timeout(_) => StreamingError::Timeout(Timeout { action: RPCTypes::InstallSnapshot, id: self.peers.node_id(), target: self.target, timeout: ttl }),
                    other => StreamingError::Unreachable(Unreachable::new(&other)),
                })?;
                dec(&body).map_err(|e| StreamingError::Network(NetworkError::from_string(e)))
            }
        }
    }
}
