//! Where the admin commands connect to, and as whom: `--bootstrap-server`, `--command-config`
//! (Kafka client properties), `RILL_BOOTSTRAP_SERVER`, and profiles in a TOML file.
//!
//! Precedence for the bootstrap servers: `--bootstrap-server` > `bootstrap.servers` in
//! `--command-config` > `RILL_BOOTSTRAP_SERVER` > the profile's `bootstrap_server` > 127.0.0.1:9092.
//! Client id and request timeout: `--command-config` > profile > defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::admin::{usage, Conn};
use crate::client::{ClientOpts, Sasl, Security};

pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// The resolved connection settings.
pub struct Settings {
    pub bootstrap: String,
    pub opts: ClientOpts,
}

/// Parses Java properties (`key=value`, `key: value` or `key value`; `#`/`!` comments;
/// backslash line continuations and escapes).
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        let trailing = line.chars().rev().take_while(|&c| c == '\\').count();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        let entry = std::mem::take(&mut logical);
        let (k, v) = split_property(&entry);
        out.insert(unescape(&k), unescape(v.trim_start()));
    }
    if !logical.is_empty() {
        let (k, v) = split_property(&logical);
        out.insert(unescape(&k), unescape(v.trim_start()));
    }
    out
}

fn split_property(entry: &str) -> (String, &str) {
    let mut key = String::new();
    let mut chars = entry.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                key.push('\\');
                if let Some((_, n)) = chars.next() {
                    key.push(n);
                }
            }
            '=' | ':' => return (key, &entry[i + 1..]),
            c if c.is_whitespace() => {
                let rest = entry[i..].trim_start();
                let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest);
                return (key, rest);
            }
            c => key.push(c),
        }
    }
    (key, "")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// Settings read from `--command-config`.
#[derive(Default)]
struct CommandConfig {
    bootstrap: Option<String>,
    client_id: Option<String>,
    request_timeout: Option<Duration>,
    security: Security,
}

/// `security.protocol` and its `ssl.*`/`sasl.*` properties, as the Kafka tools (and, for the
/// truststore and credentials, librdkafka's names) spell them. Truststores and keystores are
/// PEM files (`ssl.truststore.type=PEM`, Kafka's PEM support); JKS/PKCS12 are refused.
fn security_of(props: &BTreeMap<String, String>, shown: &str) -> anyhow::Result<Security> {
    let get = |k: &str| props.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let protocol = get("security.protocol").unwrap_or_else(|| "PLAINTEXT".into()).to_ascii_uppercase();
    let (tls, sasl) = match protocol.as_str() {
        "PLAINTEXT" => (false, false),
        "SSL" => (true, false),
        "SASL_PLAINTEXT" => (false, true),
        "SASL_SSL" => (true, true),
        other => {
            return Err(usage(format!(
                "security.protocol={other} in {shown}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            )))
        }
    };
    let mut out = Security::default();
    if tls {
        for k in ["ssl.truststore.type", "ssl.keystore.type"] {
            if let Some(t) = get(k).filter(|t| !t.eq_ignore_ascii_case("PEM")) {
                return Err(usage(format!("{k}={t} in {shown}: rill reads PEM files only (convert with openssl)")));
            }
        }
        if get("ssl.endpoint.identification.algorithm").is_none()
            && props.contains_key("ssl.endpoint.identification.algorithm")
        {
            return Err(usage(format!(
                "ssl.endpoint.identification.algorithm is empty in {shown}: rill always checks the broker's host name"
            )));
        }
        let ca = get("ssl.truststore.location").or_else(|| get("ssl.ca.location")).ok_or_else(|| {
            usage(format!("security.protocol={protocol} in {shown} needs ssl.truststore.location (a PEM CA file)"))
        })?;
        let keystore = get("ssl.keystore.location");
        out.tls =
            Some(std::sync::Arc::new(crate::client::client_tls(Path::new(&ca), keystore.as_deref().map(Path::new))?));
    }
    if sasl {
        let mechanism = get("sasl.mechanism").unwrap_or_else(|| "GSSAPI".into()).to_ascii_uppercase();
        let jaas = get("sasl.jaas.config").unwrap_or_default();
        let from_jaas = |key: &str| {
            let start = jaas.find(&format!("{key}=\""))? + key.len() + 2;
            let end = jaas[start..].find('"')?;
            Some(jaas[start..start + end].to_string())
        };
        let user = from_jaas("username").or_else(|| get("sasl.username"));
        let password = from_jaas("password").or_else(|| get("sasl.password"));
        let (Some(user), Some(password)) = (user, password) else {
            return Err(usage(format!(
                "security.protocol={protocol} in {shown} needs credentials: sasl.jaas.config with username=\"...\" \
                 password=\"...\" (or sasl.username and sasl.password)"
            )));
        };
        out.sasl = Some(Sasl { mechanism, user, password });
    }
    Ok(out)
}

fn timeout_ms(v: &str, what: &str) -> anyhow::Result<Duration> {
    match v.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(usage(format!("{what} must be a positive number of milliseconds, not {v:?}"))),
    }
}

fn read_command_config(path: &Path) -> anyhow::Result<CommandConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read --command-config {}: {e}", path.display())))?;
    let props = parse_properties(&text);
    let mut cc = CommandConfig::default();
    let shown = path.display();
    cc.security = security_of(&props, &shown.to_string())?;
    cc.bootstrap = props.get("bootstrap.servers").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    cc.client_id = props.get("client.id").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(v) = props.get("request.timeout.ms") {
        cc.request_timeout = Some(timeout_ms(v, &format!("request.timeout.ms in {shown}"))?);
    }
    Ok(cc)
}

/// A `[profile.NAME]` table of the config file.
#[derive(Default)]
struct Profile {
    bootstrap: Option<String>,
    client_id: Option<String>,
    request_timeout: Option<Duration>,
}

/// `$RILL_CONFIG`, else `$XDG_CONFIG_HOME/rill/config.toml`, else `~/.config/rill/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RILL_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(x).join("rill").join("config.toml"));
    }
    std::env::var_os("HOME").filter(|p| !p.is_empty()).map(|h| PathBuf::from(h).join(".config/rill/config.toml"))
}

/// The profile `name` (explicitly selected: it must exist), or `default` if the file has one.
fn read_profile(name: Option<&str>) -> anyhow::Result<Profile> {
    let path = config_path();
    let explicit_file = std::env::var_os("RILL_CONFIG").is_some_and(|p| !p.is_empty());
    let text = match path.as_deref().map(std::fs::read_to_string) {
        Some(Ok(t)) => t,
        Some(Err(e)) if explicit_file || name.is_some() => {
            let shown = path.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
            let why =
                if name.is_some() { format!(" (looking for profile {:?})", name.unwrap_or("")) } else { "".into() };
            return Err(usage(format!("cannot read the rill config file {shown}{why}: {e}")));
        }
        _ => return Ok(Profile::default()),
    };
    let path = path.expect("read above");
    let shown = path.display();
    let doc: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {shown}"))?;
    let profiles = match doc.get("profile") {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => return Err(usage(format!("{shown}: `profile` must be a table ([profile.NAME])"))),
        None => toml::Table::new(),
    };
    let wanted = name.unwrap_or("default");
    let Some(p) = profiles.get(wanted) else {
        if name.is_none() {
            return Ok(Profile::default());
        }
        let mut known: Vec<&str> = profiles.keys().map(String::as_str).collect();
        known.sort();
        let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        return Err(usage(format!("no profile {wanted:?} in {shown} (profiles there: {known})")));
    };
    let Some(p) = p.as_table() else {
        return Err(usage(format!("{shown}: [profile.{wanted}] must be a table")));
    };
    let mut out = Profile::default();
    for (k, v) in p {
        let bad = || usage(format!("{shown}: [profile.{wanted}] {k} has the wrong type"));
        match k.as_str() {
            "bootstrap_server" | "bootstrap_servers" => {
                out.bootstrap = Some(match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
                        .collect::<anyhow::Result<Vec<_>>>()?
                        .join(","),
                    _ => return Err(bad()),
                })
            }
            "client_id" => out.client_id = Some(v.as_str().ok_or_else(bad)?.to_string()),
            "request_timeout_ms" => {
                let ms = v.as_integer().filter(|&ms| ms > 0).ok_or_else(bad)?;
                out.request_timeout = Some(Duration::from_millis(ms as u64));
            }
            other => {
                return Err(usage(format!(
                    "{shown}: unknown key {other:?} in [profile.{wanted}] (known: bootstrap_server, client_id, \
                     request_timeout_ms)"
                )))
            }
        }
    }
    Ok(out)
}

pub fn resolve(conn: &Conn) -> anyhow::Result<Settings> {
    let cc = match &conn.command_config {
        Some(p) => read_command_config(p)?,
        None => CommandConfig::default(),
    };
    let profile_name = conn.profile.clone().or_else(|| std::env::var("RILL_PROFILE").ok().filter(|p| !p.is_empty()));
    let profile = read_profile(profile_name.as_deref())?;
    let env = std::env::var("RILL_BOOTSTRAP_SERVER").ok().filter(|s| !s.trim().is_empty());
    let bootstrap = conn
        .bootstrap_server
        .clone()
        .or(cc.bootstrap)
        .or(env)
        .or(profile.bootstrap)
        .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_string());
    let mut opts = ClientOpts::default();
    if let Some(id) = cc.client_id.or(profile.client_id) {
        opts.client_id = id;
    }
    if let Some(t) = cc.request_timeout.or(profile.request_timeout) {
        opts.request_timeout = t;
    }
    opts.security = cc.security;
    Ok(Settings { bootstrap, opts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties() {
        let p = parse_properties(
            "# comment\n! also\nbootstrap.servers=a:1,\\\n  b:2\nclient.id : me\nrequest.timeout.ms 5000\nx\\=y=z\n",
        );
        assert_eq!(p["bootstrap.servers"], "a:1,b:2");
        assert_eq!(p["client.id"], "me");
        assert_eq!(p["request.timeout.ms"], "5000");
        assert_eq!(p["x=y"], "z");
    }
}
