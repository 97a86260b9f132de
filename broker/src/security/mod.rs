//! Security: listener protocols (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), TLS, SASL
//! authentication, ACL authorization and the audit log.
//!
//! Everything is configured with Kafka's keys; a key can be set for one listener with the
//! `listener.name.<name>.` prefix (lower-case listener name), as in Kafka. The default
//! configuration (one PLAINTEXT listener, no authorizer) authenticates everyone as
//! `User:ANONYMOUS` and authorizes everything, exactly as before this module existed.

pub mod acl;
pub mod admin;
pub mod authorizer;
pub mod oauth;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use thiserror::Error;

use crate::config::BrokerConfig;
use acl::{AclStore, CLUSTER_NAME};
use scram::{ScramMechanism, UserStore};
use tls::{ClientAuth, PrincipalRules, TlsContext, TlsSettings};

#[derive(Debug, Error)]
pub enum SecurityError {
    #[error("security config: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("security store: {0}")]
    Store(String),
}

/// Security keys with their defaults (Kafka's names; `rill.*` where Kafka has none).
pub const DEFAULTS: &[(&str, &str)] = &[
    ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"),
    ("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"),
    ("sasl.jaas.config", ""),
    ("ssl.keystore.type", "PEM"),
    ("ssl.keystore.location", ""),
    ("ssl.key.password", ""),
    ("ssl.truststore.type", "PEM"),
    ("ssl.truststore.location", ""),
    ("ssl.client.auth", "none"),
    ("ssl.enabled.protocols", "TLSv1.2,TLSv1.3"),
    ("ssl.principal.mapping.rules", "DEFAULT"),
    ("rill.ssl.reload.interval.ms", "10000"),
    ("authorizer.class.name", ""),
    ("super.users", ""),
    ("allow.everyone.if.no.acl.found", "false"),
    ("connections.max.reauth.ms", "0"),
    ("connection.failed.authentication.delay.ms", "100"),
    ("sasl.oauthbearer.jwks.endpoint.url", ""),
    ("sasl.oauthbearer.expected.issuer", ""),
    ("sasl.oauthbearer.expected.audience", ""),
    ("sasl.oauthbearer.sub.claim.name", "sub"),
    ("sasl.oauthbearer.clock.skew.seconds", "30"),
];

/// Keys that may also be set per listener with `listener.name.<name>.`.
const PER_LISTENER: &[&str] = &[
    "sasl.enabled.mechanisms",
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.principal.mapping.rules",
    "connections.max.reauth.ms",
];

pub fn default_of(key: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Whether `key` is a security key this broker understands (including per-listener forms).
pub fn is_known(key: &str) -> bool {
    if default_of(key).is_some() {
        return true;
    }
    let Some(rest) = key.strip_prefix("listener.name.") else { return false };
    let Some((_, suffix)) = rest.split_once('.') else { return false };
    PER_LISTENER.contains(&suffix) || suffix.ends_with(".sasl.jaas.config")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "PLAIN" => Some(Mechanism::Plain),
            "OAUTHBEARER" => Some(Mechanism::OAuthBearer),
            other => ScramMechanism::from_name(other).map(Mechanism::Scram),
        }
    }
}

/// How one listener authenticates its clients.
pub struct ListenerSecurity {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub tls: Option<Arc<TlsContext>>,
    pub principal_rules: PrincipalRules,
    pub mechanisms: Vec<Mechanism>,
    /// PLAIN users from a JAAS `user_<name>="<password>"` config, checked before the SCRAM store.
    pub plain_users: HashMap<String, String>,
    /// KIP-368: a SASL session lasts this long before the client must re-authenticate (0: forever).
    pub max_reauth_ms: i64,
}

pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// A change to the cluster's users or ACLs. On a single node it is applied at once; in a
/// cluster it is a metadata command, applied in log order on every node, so every node
/// authenticates and authorizes alike.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum SecurityChange {
    AddAcls(Vec<acl::AclBinding>),
    DeleteAcls(Vec<acl::AclFilter>),
    AlterScram {
        upserts: Vec<(String, ScramMechanism, scram::ScramCredential)>,
        deletes: Vec<(String, ScramMechanism)>,
    },
}

/// The broker's security state: listeners, users, ACLs and the authorization switches.
pub struct Security {
    listeners: HashMap<String, Arc<ListenerSecurity>>,
    pub users: UserStore,
    pub acls: AclStore,
    /// OAUTHBEARER token validation, when a JWKS is configured.
    pub oauth: Option<oauth::OAuthValidator>,
    /// `authorizer.class.name` set: ACLs are enforced.
    pub authorizer_enabled: bool,
    super_users: Vec<String>,
    allow_if_no_acl: bool,
    failed_auth_delay: Duration,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    reload_every: Duration,
}

impl Security {
    /// Applies a change to this node's stores (persisted before it is visible).
    pub fn apply_change(&self, change: SecurityChange) -> Result<(), SecurityError> {
        match change {
            SecurityChange::AddAcls(b) => self.acls.add(&b),
            SecurityChange::DeleteAcls(f) => self.acls.delete(&f).map(|_| ()),
            SecurityChange::AlterScram { upserts, deletes } => self.users.apply(upserts, deletes),
        }
    }

    pub fn open(config: &BrokerConfig) -> Result<Arc<Self>, SecurityError> {
        let get = |key: &str| config.raw.get(key).cloned().unwrap_or_else(|| default_of(key).unwrap_or("").into());
        let for_listener = |listener: &str, key: &str| {
            config
                .raw
                .get(&format!("listener.name.{}.{key}", listener.to_ascii_lowercase()))
                .cloned()
                .unwrap_or_else(|| get(key))
        };
        let num = |key: &str, v: String| -> Result<i64, SecurityError> {
            v.trim().parse().map_err(|_| SecurityError::Config(format!("{key}: {v:?} is not a number")))
        };
        let map = parse_protocol_map(&get("listener.security.protocol.map"))?;
        let mut listeners = HashMap::new();
        for l in &config.listeners {
            let protocol = map.get(&l.name).copied().or_else(|| SecurityProtocol::parse(&l.name)).ok_or_else(|| {
                SecurityError::Config(format!("listener {} has no entry in listener.security.protocol.map", l.name))
            })?;
            let tls =
                if protocol.uses_tls() { Some(TlsContext::new(tls_settings(&l.name, &for_listener)?)?) } else { None };
            let mut mechanisms = Vec::new();
            for m in
                for_listener(&l.name, "sasl.enabled.mechanisms").split(',').map(str::trim).filter(|m| !m.is_empty())
            {
                mechanisms.push(Mechanism::parse(m).ok_or_else(|| {
                    SecurityError::Config(format!(
                        "sasl.enabled.mechanisms: {m} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)"
                    ))
                })?);
            }
            if protocol.uses_sasl() && mechanisms.is_empty() {
                return Err(SecurityError::Config(format!("listener {}: sasl.enabled.mechanisms is empty", l.name)));
            }
            let jaas = config
                .raw
                .get(&format!("listener.name.{}.plain.sasl.jaas.config", l.name.to_ascii_lowercase()))
                .cloned()
                .unwrap_or_else(|| get("sasl.jaas.config"));
            listeners.insert(
                l.name.clone(),
                Arc::new(ListenerSecurity {
                    name: l.name.clone(),
                    protocol,
                    tls,
                    principal_rules: PrincipalRules::parse(&for_listener(&l.name, "ssl.principal.mapping.rules"))?,
                    mechanisms,
                    plain_users: parse_jaas_users(&jaas),
                    max_reauth_ms: num(
                        "connections.max.reauth.ms",
                        for_listener(&l.name, "connections.max.reauth.ms"),
                    )?,
                }),
            );
        }
        let oauth = oauth::OAuthValidator::from_config(&get)?;
        if oauth.is_none()
            && listeners.values().any(|l| l.protocol.uses_sasl() && l.mechanisms.contains(&Mechanism::OAuthBearer))
        {
            return Err(SecurityError::Config(
                "OAUTHBEARER is enabled but sasl.oauthbearer.jwks.endpoint.url is not set".into(),
            ));
        }
        let dir = &config.log_dirs[0];
        std::fs::create_dir_all(dir).map_err(|e| SecurityError::Store(format!("{}: {e}", dir.display())))?;
        let allow = get("allow.everyone.if.no.acl.found");
        Ok(Arc::new(Security {
            listeners,
            users: UserStore::open(dir.join(scram::USERS_FILE))?,
            acls: AclStore::open(dir.join(acl::ACLS_FILE))?,
            oauth,
            authorizer_enabled: !get("authorizer.class.name").trim().is_empty(),
            super_users: get("super.users")
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            allow_if_no_acl: allow.trim().eq_ignore_ascii_case("true"),
            failed_auth_delay: Duration::from_millis(
                num("connection.failed.authentication.delay.ms", get("connection.failed.authentication.delay.ms"))?
                    .max(0) as u64,
            ),
            failures: Mutex::new(HashMap::new()),
            reload_every: Duration::from_millis(
                num("rill.ssl.reload.interval.ms", get("rill.ssl.reload.interval.ms"))?.max(100) as u64,
            ),
        }))
    }

    /// The security of a listener (every configured listener has one).
    pub fn listener(&self, name: &str) -> Option<Arc<ListenerSecurity>> {
        self.listeners.get(name).cloned()
    }

    /// Starts the tasks that reload changed TLS files.
    pub fn spawn_reloaders(&self) {
        for l in self.listeners.values() {
            if let Some(t) = &l.tls {
                tokio::spawn(t.clone().watch(self.reload_every));
            }
        }
    }

    pub fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.iter().any(|s| s == principal)
    }

    /// Kafka's ACL decision: super users may do anything; a matching DENY wins; then a matching
    /// ALLOW (READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies
    /// DESCRIBE_CONFIGS); with no ACL on the resource at all, `allow.everyone.if.no.acl.found`.
    pub fn authorize(&self, principal: &str, host: &str, op: i8, rt: i8, name: &str) -> bool {
        use acl::code::*;
        if !self.authorizer_enabled || self.is_super_user(principal) {
            return true;
        }
        let acls = self.acls.for_resource(rt, name);
        let applies = |b: &acl::AclBinding| {
            (b.principal == principal || b.principal == "User:*") && (b.host == host || b.host == acl::WILDCARD)
        };
        let mine: Vec<&acl::AclBinding> = acls.iter().filter(|b| applies(b)).collect();
        if mine.iter().any(|b| b.permission == DENY && (b.operation == op || b.operation == ALL)) {
            return false;
        }
        let implied: &[i8] = match op {
            DESCRIBE => &[DESCRIBE, READ, WRITE, DELETE, ALTER, ALL],
            DESCRIBE_CONFIGS => &[DESCRIBE_CONFIGS, ALTER_CONFIGS, ALL],
            _ => &[op, ALL],
        };
        if mine.iter().any(|b| b.permission == ALLOW && implied.contains(&b.operation)) {
            return true;
        }
        acls.is_empty() && self.allow_if_no_acl
    }

    pub fn authorize_cluster(&self, principal: &str, host: &str, op: i8) -> bool {
        self.authorize(principal, host, op, acl::code::CLUSTER, CLUSTER_NAME)
    }

    /// How long to hold back the answer to a failed authentication from `ip`: Kafka's
    /// `connection.failed.authentication.delay.ms`, doubled for each recent failure from the same
    /// address up to 32x, so a password-guessing loop slows down while other clients are not
    /// touched (only failures wait, and only on their own connection).
    pub fn failure_delay(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut f = self.failures.lock();
        if f.len() > 10_000 {
            f.retain(|_, (_, last)| now.duration_since(*last) < Duration::from_secs(60));
        }
        let e = f.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) > Duration::from_secs(60) {
            e.0 = 0;
        }
        e.0 = e.0.saturating_add(1);
        e.1 = now;
        self.failed_auth_delay * (1u32 << (e.0 - 1).min(5))
    }
}

fn parse_protocol_map(spec: &str) -> Result<BTreeMap<String, SecurityProtocol>, SecurityError> {
    let mut out = BTreeMap::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, proto) = entry
            .split_once(':')
            .ok_or_else(|| SecurityError::Config(format!("listener.security.protocol.map: bad entry {entry:?}")))?;
        let p = SecurityProtocol::parse(proto).ok_or_else(|| {
            SecurityError::Config(format!("listener.security.protocol.map: unknown security protocol {proto:?}"))
        })?;
        out.insert(name.trim().to_string(), p);
    }
    Ok(out)
}

fn tls_settings(listener: &str, get: &dyn Fn(&str, &str) -> String) -> Result<TlsSettings, SecurityError> {
    let need = |key: &str| {
        let v = get(listener, key);
        if v.trim().is_empty() {
            Err(SecurityError::Config(format!("listener {listener} uses TLS but {key} is not set")))
        } else {
            Ok(v)
        }
    };
    for key in ["ssl.keystore.type", "ssl.truststore.type"] {
        if !get(listener, key).eq_ignore_ascii_case("PEM") {
            return Err(SecurityError::Config(format!("{key}: only PEM is supported")));
        }
    }
    if !get(listener, "ssl.key.password").is_empty() {
        return Err(SecurityError::Config("ssl.key.password: encrypted private keys are not supported".into()));
    }
    let client_auth = match get(listener, "ssl.client.auth").trim().to_ascii_lowercase().as_str() {
        "none" | "" => ClientAuth::None,
        "requested" => ClientAuth::Requested,
        "required" => ClientAuth::Required,
        other => return Err(SecurityError::Config(format!("ssl.client.auth: {other:?} (none|requested|required)"))),
    };
    let mut protocols = Vec::new();
    for p in get(listener, "ssl.enabled.protocols").split(',').map(str::trim).filter(|p| !p.is_empty()) {
        protocols.push(match p {
            "TLSv1.2" => &rustls::version::TLS12,
            "TLSv1.3" => &rustls::version::TLS13,
            other => return Err(SecurityError::Config(format!("ssl.enabled.protocols: {other} (TLSv1.2, TLSv1.3)"))),
        });
    }
    let truststore = Some(get(listener, "ssl.truststore.location")).filter(|s| !s.trim().is_empty()).map(Into::into);
    Ok(TlsSettings { keystore: need("ssl.keystore.location")?.into(), truststore, client_auth, protocols })
}

/// `user_alice="pw"` entries of a JAAS PlainLoginModule config.
fn parse_jaas_users(jaas: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = jaas;
    while let Some(i) = rest.find("user_") {
        rest = &rest[i + 5..];
        let Some((name, after)) = rest.split_once('=') else { break };
        let after = after.trim_start();
        let Some(q) = after.strip_prefix('"') else { continue };
        let Some((pw, tail)) = q.split_once('"') else { break };
        out.insert(name.trim().to_string(), pw.to_string());
        rest = tail;
    }
    out
}

/// Compares secrets in time independent of where they differ (length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) use crate::topics::write_atomically;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_users_and_protocol_map() {
        let u = parse_jaas_users(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="a" user_admin="a" user_bob="b b";"#,
        );
        assert_eq!(u.get("admin").map(String::as_str), Some("a"));
        assert_eq!(u.get("bob").map(String::as_str), Some("b b"));
        let m = parse_protocol_map("CLIENT:SASL_SSL,INTERNAL:PLAINTEXT").unwrap();
        assert_eq!(m["CLIENT"], SecurityProtocol::SaslSsl);
        assert!(is_known("listener.name.client.ssl.keystore.location"));
        assert!(is_known("listener.name.client.plain.sasl.jaas.config"));
        assert!(!is_known("listener.name.client.nonsense"));
    }

    fn security(extra: &[(&str, &str)]) -> (tempfile::TempDir, Arc<Security>) {
        let dir = tempfile::tempdir().unwrap();
        let mut m = BTreeMap::new();
        m.insert("log.dirs".to_string(), dir.path().display().to_string());
        m.insert("authorizer.class.name".to_string(), "rill".to_string());
        m.insert("super.users".to_string(), "User:root".to_string());
        for (k, v) in extra {
            m.insert(k.to_string(), v.to_string());
        }
        let config = BrokerConfig::from_map(m).unwrap();
        let sec = Security::open(&config).unwrap();
        (dir, sec)
    }

    fn allow(principal: &str, rt: i8, name: &str, pattern: i8, op: i8, perm: i8) -> acl::AclBinding {
        acl::AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    #[test]
    fn authorization_follows_kafka_rules() {
        use acl::code::*;
        let (_d, sec) = security(&[]);
        sec.acls
            .add(&[
                allow("User:alice", TOPIC, "orders", LITERAL, READ, ALLOW),
                allow("User:alice", TOPIC, "pay-", PREFIXED, WRITE, ALLOW),
                allow("User:*", TOPIC, "*", LITERAL, DESCRIBE, ALLOW),
                allow("User:bob", TOPIC, "*", LITERAL, ALL, ALLOW),
                allow("User:bob", TOPIC, "secret", LITERAL, READ, DENY),
            ])
            .unwrap();
        let h = "10.0.0.1";
        assert!(sec.authorize("User:alice", h, READ, TOPIC, "orders"));
        assert!(!sec.authorize("User:alice", h, WRITE, TOPIC, "orders"));
        assert!(sec.authorize("User:alice", h, WRITE, TOPIC, "pay-eu"));
        assert!(!sec.authorize("User:alice", h, WRITE, TOPIC, "payroll"));
        // READ implies DESCRIBE; the wildcard DESCRIBE applies to everyone.
        assert!(sec.authorize("User:carol", h, DESCRIBE, TOPIC, "anything"));
        assert!(!sec.authorize("User:carol", h, READ, TOPIC, "anything"));
        // DENY wins over ALL.
        assert!(sec.authorize("User:bob", h, READ, TOPIC, "public"));
        assert!(!sec.authorize("User:bob", h, READ, TOPIC, "secret"));
        assert!(sec.authorize("User:root", h, ALTER, CLUSTER, acl::CLUSTER_NAME));
        // No ACL on a group: denied unless allow.everyone.if.no.acl.found.
        assert!(!sec.authorize("User:alice", h, READ, GROUP, "g"));
        let (_d2, open) = security(&[("allow.everyone.if.no.acl.found", "true")]);
        assert!(open.authorize("User:alice", h, READ, GROUP, "g"));
        // The ACLs survive a restart.
        let again = Security::open(
            &BrokerConfig::from_map(BTreeMap::from([
                ("log.dirs".to_string(), _d.path().display().to_string()),
                ("authorizer.class.name".to_string(), "rill".to_string()),
            ]))
            .unwrap(),
        )
        .unwrap();
        assert!(again.authorize("User:alice", h, READ, TOPIC, "orders"));
    }

    #[test]
    fn failed_logins_back_off_per_address() {
        let (_d, sec) = security(&[("connection.failed.authentication.delay.ms", "10")]);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let delays: Vec<u128> = (0..8).map(|_| sec.failure_delay(a).as_millis()).collect();
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 320, 320, 320]);
        assert_eq!(sec.failure_delay(b).as_millis(), 10);
    }
}
