//! SASL/OAUTHBEARER (RFC 7628, KIP-255/KIP-768): a JWT checked against the configured JWKS keys,
//! issuer, audience and expiry. The principal is the `sub` claim (or
//! `sasl.oauthbearer.sub.claim.name`).
//!
//! The JWKS is read from a local file (`sasl.oauthbearer.jwks.endpoint.url` as `file:///path` or a
//! plain path) and re-read when the file changes, so keys can rotate without a restart. Fetching
//! JWKS over HTTPS is left to a sidecar that writes the file.

use std::path::PathBuf;
use std::time::SystemTime;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use parking_lot::RwLock;

use super::SecurityError;

pub struct OAuthValidator {
    jwks_path: PathBuf,
    keys: RwLock<(Option<SystemTime>, JwkSet)>,
    issuer: Option<String>,
    audience: Vec<String>,
    sub_claim: String,
    skew_secs: u64,
}

/// A validated token.
pub struct Token {
    pub subject: String,
    /// `exp` in milliseconds since the epoch.
    pub expires_ms: i64,
}

impl OAuthValidator {
    /// `None` when no JWKS is configured (OAUTHBEARER then cannot be enabled).
    pub fn from_config(get: &dyn Fn(&str) -> String) -> Result<Option<Self>, SecurityError> {
        let url = get("sasl.oauthbearer.jwks.endpoint.url");
        if url.trim().is_empty() {
            return Ok(None);
        }
        let path = match url.trim().strip_prefix("file://") {
            Some(p) => PathBuf::from(p),
            None if url.contains("://") => {
                return Err(SecurityError::Config(format!(
                    "sasl.oauthbearer.jwks.endpoint.url: only file:// URLs are supported, got {url}"
                )))
            }
            None => PathBuf::from(url.trim()),
        };
        let (stamp, set) = load(&path)?;
        let skew = get("sasl.oauthbearer.clock.skew.seconds");
        Ok(Some(OAuthValidator {
            jwks_path: path,
            keys: RwLock::new((stamp, set)),
            issuer: Some(get("sasl.oauthbearer.expected.issuer")).filter(|s| !s.trim().is_empty()),
            audience: get("sasl.oauthbearer.expected.audience")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            sub_claim: Some(get("sasl.oauthbearer.sub.claim.name")).filter(|s| !s.is_empty()).unwrap_or("sub".into()),
            skew_secs: skew.trim().parse().map_err(|_| {
                SecurityError::Config(format!("sasl.oauthbearer.clock.skew.seconds: {skew:?} is not a number"))
            })?,
        }))
    }

    fn refresh(&self) {
        let now = std::fs::metadata(&self.jwks_path).and_then(|m| m.modified()).ok();
        if now == self.keys.read().0 {
            return;
        }
        match load(&self.jwks_path) {
            Ok(fresh) => *self.keys.write() = fresh,
            Err(e) => tracing::warn!(error = %e, "JWKS changed but cannot be loaded; keeping the previous keys"),
        }
    }

    /// Checks the client's initial response: `gs2-header \x01 auth=Bearer <jwt> \x01 ... \x01\x01`.
    pub fn validate(&self, message: &[u8]) -> Result<Token, &'static str> {
        let msg = std::str::from_utf8(message).map_err(|_| "OAUTHBEARER message is not UTF-8")?;
        let (gs2, rest) = msg.split_once('\x01').ok_or("malformed OAUTHBEARER message")?;
        if !gs2.starts_with("n,") && !gs2.starts_with("y,") {
            return Err("malformed OAUTHBEARER gs2 header");
        }
        let token = rest
            .split('\x01')
            .find_map(|kv| kv.strip_prefix("auth="))
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or("OAUTHBEARER message lacks auth=Bearer")?
            .trim();
        self.refresh();
        let header = decode_header(token).map_err(|_| "malformed JWT")?;
        let keys = self.keys.read();
        let jwk = match &header.kid {
            Some(kid) => keys.1.find(kid),
            None if keys.1.keys.len() == 1 => keys.1.keys.first(),
            None => None,
        }
        .ok_or("JWT signed with an unknown key")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| "unusable JWKS key")?;
        let mut v = Validation::new(header.alg);
        v.leeway = self.skew_secs;
        v.set_required_spec_claims(&["exp"]);
        match &self.issuer {
            Some(iss) => v.set_issuer(&[iss]),
            None => v.iss = None,
        }
        if self.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audience);
        }
        let data = decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            match e.kind() {
                ExpiredSignature => "JWT expired",
                InvalidIssuer => "JWT issuer not accepted",
                InvalidAudience => "JWT audience not accepted",
                InvalidSignature => "JWT signature invalid",
                InvalidAlgorithm => "JWT algorithm does not match the key",
                _ => "JWT invalid",
            }
        })?;
        let subject = data
            .claims
            .get(&self.sub_claim)
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .ok_or("JWT lacks the subject claim")?
            .to_string();
        let expires_ms = data.claims.get("exp").and_then(|e| e.as_f64()).map(|e| (e * 1000.0) as i64).unwrap_or(0);
        Ok(Token { subject, expires_ms })
    }
}

fn load(path: &PathBuf) -> Result<(Option<SystemTime>, JwkSet), SecurityError> {
    let stamp = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read(path).map_err(|e| SecurityError::Config(format!("JWKS {}: {e}", path.display())))?;
    let set: JwkSet =
        serde_json::from_slice(&text).map_err(|e| SecurityError::Config(format!("JWKS {}: {e}", path.display())))?;
    Ok((stamp, set))
}
