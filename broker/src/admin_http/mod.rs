//! The admin HTTP listener: `/metrics` (Prometheus text), `/health/live`, `/health/ready`, the
//! `/v1/...` JSON status endpoints and the web console that reads them.
//!
//! It has its own address (`admin.listener`, loopback by default, `off` to disable), apart
//! from the Kafka listeners, and is bound before storage recovery starts so that orchestrators
//! can tell "alive but recovering" (live 200, ready 503) from "dead". It only reads broker
//! state: nothing here changes topics, groups or records.

mod api;
mod console;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::RwLock;
use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::config::BrokerConfig;

/// The config key of the admin listener's address.
pub const CONFIG_KEY: &str = "admin.listener";

/// A readiness condition contributed by another subsystem (Raft: "joined the cluster, log
/// caught up, partitions led or followed").
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &str;
    /// `Err(why)` while not ready.
    fn check(&self, broker: &Broker) -> Result<(), String>;
}

/// What the admin listener knows about the broker's life cycle.
#[derive(Default)]
pub struct AdminState {
    broker: OnceLock<Arc<Broker>>,
    serving: AtomicBool,
    checks: RwLock<Vec<Arc<dyn ReadinessCheck>>>,
}

/// One line of `/health/ready`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl AdminState {
    pub fn new() -> Arc<Self> {
        Arc::new(AdminState::default())
    }

    /// Storage recovered, topic catalogue and consumer groups loaded.
    pub fn set_broker(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }

    /// The Kafka listeners are bound and accepting.
    pub fn set_serving(&self) {
        self.serving.store(true, Ordering::Release);
    }

    pub fn add_check(&self, check: Arc<dyn ReadinessCheck>) {
        self.checks.write().push(check);
    }

    pub fn broker(&self) -> Option<&Arc<Broker>> {
        self.broker.get()
    }

    /// Every readiness condition and whether it holds.
    pub fn readiness(&self) -> Vec<Check> {
        let check = |name: &str, ok: bool, detail: String| Check { name: name.to_string(), ok, detail };
        let mut out = Vec::new();
        let Some(broker) = self.broker.get() else {
            out.push(check("storage", false, "recovering partition logs".into()));
            return out;
        };
        let topics = broker.topics.list();
        let partitions: usize = topics.iter().map(|t| t.partitions.len()).sum();
        out.push(check("storage", true, format!("{partitions} partition logs open")));
        out.push(check("metadata", true, format!("{} topics in the catalogue", topics.len())));
        out.push(check("groups", true, format!("{} consumer groups loaded", broker.groups.list().len())));
        // A single node leads every partition it holds; Raft adds a check of its own.
        out.push(check("partitions", true, format!("{partitions} partitions led by node {}", broker.node_id())));
        let serving = self.serving.load(Ordering::Acquire);
        out.push(check(
            "listeners",
            serving,
            if serving { "Kafka listeners accepting".into() } else { "Kafka listeners not bound yet".into() },
        ));
        for c in self.checks.read().iter() {
            match c.check(broker) {
                Ok(()) => out.push(check(c.name(), true, String::new())),
                Err(why) => out.push(check(c.name(), false, why)),
            }
        }
        out
    }

    pub fn is_ready(&self) -> bool {
        self.readiness().iter().all(|c| c.ok)
    }
}

/// The admin listener's address from the config: `None` when it is `off`.
pub fn address(config: &BrokerConfig) -> anyhow::Result<Option<SocketAddr>> {
    let value = config.value(CONFIG_KEY).unwrap_or_default();
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let addr = value
        .strip_prefix("http://")
        .unwrap_or(value)
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid {CONFIG_KEY} {value:?} (expected host:port or off): {e}"))?;
    Ok(Some(addr))
}

/// Binds the admin listener. Failing to bind is fatal, as for the Kafka listeners: a broker
/// whose health endpoint silently went missing would be restarted by its orchestrator.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot bind {CONFIG_KEY} on {addr}: {e}"))?;
    tracing::info!(addr = %l.local_addr()?, "admin listener (metrics, health, console)");
    Ok(l)
}

/// Serves HTTP/1.1 until the process ends.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    tokio::spawn(crate::metrics::run_upkeep());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "admin listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(state, req).await) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    reply(status, "application/json", serde_json::to_vec(value).unwrap_or_default())
}

pub(crate) fn error(status: StatusCode, message: &str) -> Reply {
    json(status, &serde_json::json!({ "error": message }))
}

async fn route(state: Arc<AdminState>, req: Request<Incoming>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, "the admin listener is read-only: GET only");
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    match path.as_str() {
        "/health/live" => json(StatusCode::OK, &serde_json::json!({ "status": "live" })),
        "/health/ready" => {
            let checks = state.readiness();
            let ready = checks.iter().all(|c| c.ok);
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            json(status, &serde_json::json!({ "ready": ready, "checks": checks }))
        }
        "/metrics" => {
            // Reading every partition's offsets and sizes takes locks and a statvfs: keep it
            // off the async workers.
            let body = tokio::task::spawn_blocking(move || {
                let ready = state.is_ready();
                crate::metrics::render(state.broker().map(|b| &**b), ready)
            })
            .await
            .unwrap_or_default();
            reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body)
        }
        p if p.starts_with("/v1/") => {
            let Some(broker) = state.broker().cloned() else {
                return error(StatusCode::SERVICE_UNAVAILABLE, "storage is still recovering");
            };
            let ready = state.is_ready();
            tokio::task::spawn_blocking(move || api::handle(&broker, ready, &path, &query))
                .await
                .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
        }
        p => match console::asset(p) {
            Some((content_type, body)) => reply(StatusCode::OK, content_type, body),
            None => error(StatusCode::NOT_FOUND, "no such endpoint"),
        },
    }
}
