//! Reading a Rill broker's admin HTTP listener (`/health/ready`) for `rill cluster health
//! --admin HOST:PORT`. Plain HTTP/1.0 over a TCP stream: one GET, read to EOF.

use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Readiness of one broker as its admin listener reports it.
pub struct Readiness {
    pub ready: bool,
    /// (check, ok, detail)
    pub checks: Vec<(String, bool, String)>,
}

/// GET `/health/ready` of the admin listener at `addr` (`host:port`, `http://` optional).
pub async fn readiness(addr: &str) -> anyhow::Result<Readiness> {
    let host = addr.trim_start_matches("http://").trim_end_matches('/').to_string();
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), get(&host, "/health/ready"))
        .await
        .map_err(|_| anyhow!("{host}: no answer within 10 s"))??;
    let v: Value = serde_json::from_slice(&body).with_context(|| format!("{host}: /health/ready is not JSON"))?;
    let checks = v["checks"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
                    (s("name"), c["ok"].as_bool().unwrap_or(false), s("detail"))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Readiness { ready: status == 200 && v["ready"].as_bool() == Some(true), checks })
}

async fn get(host: &str, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = tokio::net::TcpStream::connect(host).await.with_context(|| format!("cannot connect to {host}"))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let split =
        buf.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow!("{host}: truncated HTTP response"))?;
    let head = std::str::from_utf8(&buf[..split]).map_err(|_| anyhow!("{host}: bad HTTP header"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{host}: bad HTTP status line"))?;
    Ok((status, buf[split + 4..].to_vec()))
}
