//! TLS for SSL and SASL_SSL listeners: rustls with TLS 1.2 and 1.3 only, certificate and key
//! from PEM files that are re-read when they change, optional or required client certificates
//! and the principal a client certificate maps to (`ssl.principal.mapping.rules`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::SecurityError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// The TLS settings of one listener.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM with the private key and the certificate chain (Kafka's `ssl.keystore.type=PEM`).
    pub keystore: PathBuf,
    /// PEM with the CA certificates client certificates must chain to.
    pub truststore: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub protocols: Vec<&'static rustls::SupportedProtocolVersion>,
}

/// A listener's TLS acceptor configuration, swapped in place when its files change.
pub struct TlsContext {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
    stamp: RwLock<Vec<Option<(SystemTime, u64)>>>,
}

impl TlsContext {
    pub fn new(settings: TlsSettings) -> Result<Arc<Self>, SecurityError> {
        let config = build(&settings)?;
        let stamp = stamps(&settings);
        Ok(Arc::new(TlsContext { settings, current: RwLock::new(config), stamp: RwLock::new(stamp) }))
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }

    /// Re-reads the PEM files if their modification time or size changed. A broken new file
    /// keeps the old configuration serving (and is retried on the next check).
    pub fn reload_if_changed(&self) {
        let now = stamps(&self.settings);
        if *self.stamp.read() == now {
            return;
        }
        match build(&self.settings) {
            Ok(config) => {
                *self.current.write() = config;
                *self.stamp.write() = now;
                tracing::info!(keystore = %self.settings.keystore.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::warn!(error = %e, "TLS files changed but cannot be loaded; keeping the previous ones"),
        }
    }

    /// Polls the files every `every` until the process ends.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }
}

fn stamps(s: &TlsSettings) -> Vec<Option<(SystemTime, u64)>> {
    std::iter::once(&s.keystore)
        .chain(s.truststore.as_ref())
        .map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
        .collect()
}

fn build(s: &TlsSettings) -> Result<Arc<ServerConfig>, SecurityError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| SecurityError::Tls(format!("{what}: {e}"));
    let ks = &s.keystore;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ks)
        .map_err(|e| bad(&ks.display().to_string(), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&ks.display().to_string(), &e))?;
    if certs.is_empty() {
        return Err(SecurityError::Tls(format!("{}: no certificate in the keystore PEM", ks.display())));
    }
    let key = PrivateKeyDer::from_pem_file(ks).map_err(|e| bad(&format!("{}: private key", ks.display()), &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&s.protocols)
        .map_err(|e| bad("ssl.enabled.protocols", &e))?;
    let builder = match (&s.truststore, s.client_auth) {
        (_, ClientAuth::None) => builder.with_no_client_auth(),
        (None, _) => {
            return Err(SecurityError::Tls("ssl.client.auth needs ssl.truststore.location".into()));
        }
        (Some(ts), mode) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ts).map_err(|e| bad(&ts.display().to_string(), &e))? {
                roots.add(c.map_err(|e| bad(&ts.display().to_string(), &e))?).map_err(|e| bad("truststore", &e))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if mode == ClientAuth::Requested { v.allow_unauthenticated() } else { v };
            builder.with_client_cert_verifier(v.build().map_err(|e| bad("client verifier", &e))?)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| bad("certificate/key", &e))?;
    Ok(Arc::new(config))
}

/// `ssl.principal.mapping.rules`: `DEFAULT` or `RULE:pattern/replacement/[LU]`, comma-separated,
/// first match wins.
#[derive(Debug, Clone)]
pub struct PrincipalRules(Vec<Rule>);

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace { re: regex::Regex, replacement: String, case: Option<char> },
}

impl PrincipalRules {
    pub fn parse(spec: &str) -> Result<Self, SecurityError> {
        let mut rules = Vec::new();
        let mut rest = spec.trim();
        while !rest.is_empty() {
            rest = rest.trim_start_matches([',', ' ', '\n', '\t']);
            if rest.is_empty() {
                break;
            }
            if let Some(r) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = r;
                continue;
            }
            let Some(r) = rest.strip_prefix("RULE:") else {
                return Err(SecurityError::Config(format!("ssl.principal.mapping.rules: cannot parse {rest:?}")));
            };
            // pattern/replacement/ then optional L or U; the pattern itself holds no '/'.
            let parts: Vec<&str> = r.splitn(3, '/').collect();
            if parts.len() != 3 {
                return Err(SecurityError::Config(format!("ssl.principal.mapping.rules: bad rule {r:?}")));
            }
            let re = regex::Regex::new(parts[0])
                .map_err(|e| SecurityError::Config(format!("ssl.principal.mapping.rules: {e}")))?;
            // Java's $1 becomes regex's ${1} so "$1," is not read as a group named "1,".
            let replacement = java_replacement(parts[1]);
            let tail = parts[2];
            let case = tail.chars().next().filter(|c| *c == 'L' || *c == 'U');
            rest = if case.is_some() { &tail[1..] } else { tail };
            rules.push(Rule::Replace { re, replacement, case });
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(PrincipalRules(rules))
    }

    /// The user name for a distinguished name (RFC 2253 form).
    pub fn apply(&self, dn: &str) -> String {
        for r in &self.0 {
            match r {
                Rule::Default => return dn.to_string(),
                Rule::Replace { re, replacement, case } => {
                    if re.is_match(dn) {
                        let out = re.replace(dn, replacement.as_str()).into_owned();
                        return match case {
                            Some('L') => out.to_lowercase(),
                            Some('U') => out.to_uppercase(),
                            _ => out,
                        };
                    }
                }
            }
        }
        dn.to_string()
    }
}

fn java_replacement(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push_str("${");
            while let Some(d) = chars.peek().copied().filter(|d| d.is_ascii_digit()) {
                out.push(d);
                chars.next();
            }
            out.push('}');
        } else {
            out.push(c);
        }
    }
    out
}

/// The subject of an X.509 certificate in RFC 2253 form, as Java's `X500Principal.getName()`
/// prints it (most specific RDN first). `None` if the DER cannot be read.
pub fn subject_dn(cert: &[u8]) -> Option<String> {
    let (cert_body, _) = der_take(cert, 0x30)?;
    let (tbs, _) = der_take(cert_body, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_skip(rest)?; // version
    }
    rest = der_skip(rest)?; // serial
    rest = der_skip(rest)?; // signature algorithm
    rest = der_skip(rest)?; // issuer
    rest = der_skip(rest)?; // validity
    let (subject, _) = der_take(rest, 0x30)?;
    let mut rdns = Vec::new();
    let mut set_rest = subject;
    while !set_rest.is_empty() {
        let (set, after) = der_take(set_rest, 0x31)?;
        set_rest = after;
        let mut avas = Vec::new();
        let mut ava_rest = set;
        while !ava_rest.is_empty() {
            let (ava, after) = der_take(ava_rest, 0x30)?;
            ava_rest = after;
            let (oid, value) = der_take(ava, 0x06)?;
            let (tag, body, _) = der_any(value)?;
            let name = oid_name(oid);
            let text = match tag {
                0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8_lossy(body).into_owned(),
                0x1e => {
                    let u16s: Vec<u16> =
                        body.chunks(2).map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])).collect();
                    String::from_utf16_lossy(&u16s)
                }
                _ => {
                    avas.push(format!("{name}=#{}", hex(value)));
                    continue;
                }
            };
            avas.push(format!("{name}={}", escape_rfc2253(&text)));
        }
        rdns.push(avas.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn oid_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x09] => "STREET".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".into(),
        _ => dotted_oid(oid),
    }
}

fn dotted_oid(oid: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut v: u64 = 0;
    for (i, b) in oid.iter().enumerate() {
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() && i < oid.len() {
                let first = (v / 40).min(2);
                parts.push(first);
                parts.push(v - first * 40);
            } else {
                parts.push(v);
            }
            v = 0;
        }
    }
    parts.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

fn escape_rfc2253(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i == s.chars().count() - 1 && c == ' ');
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || edge {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reads one DER TLV: (tag, contents, rest).
fn der_any(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    Some((tag, b.get(hdr..end)?, b.get(end..)?))
}

fn der_take(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, body, rest) = der_any(b)?;
    (t == tag).then_some((body, rest))
}

fn der_skip(b: &[u8]) -> Option<&[u8]> {
    der_any(b).map(|(_, _, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_rules_follow_kafka() {
        let r = PrincipalRules::parse("RULE:^CN=(.*?),OU=(.*?),O=.*$/$1@$2/L,DEFAULT").unwrap();
        assert_eq!(r.apply("CN=Alice,OU=Eng,O=Acme,C=US"), "alice@eng");
        assert_eq!(r.apply("CN=bob"), "CN=bob");
        assert_eq!(PrincipalRules::parse("DEFAULT").unwrap().apply("CN=x,O=y"), "CN=x,O=y");
    }

    #[test]
    fn escapes_special_characters() {
        assert_eq!(escape_rfc2253("a,b"), "a\\,b");
        assert_eq!(dotted_oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]), "1.2.840.113549");
    }
}
