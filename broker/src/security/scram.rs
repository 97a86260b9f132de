//! SCRAM-SHA-256/512 (RFC 5802, RFC 7677) as Kafka speaks it, and the user store behind it.
//!
//! The store keeps, per user and mechanism, only the salt, the iteration count, StoredKey and
//! ServerKey: enough to verify a client proof and to sign the server's answer, never enough to
//! log in. Clients (kafka-configs, AdminClient) send the salted password they computed themselves
//! through AlterUserScramCredentials, so the broker never sees a clear password either.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use parking_lot::RwLock;
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

use super::{write_atomically, SecurityError};

/// Kafka's accepted iteration range for SCRAM credentials.
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }
    /// The code used by Alter/DescribeUserScramCredentials.
    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }
    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }
    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }
    fn pbkdf2_alg(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }
    fn len(self) -> usize {
        self.digest_alg().output_len()
    }
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_alg(), key), data).as_ref().to_vec()
    }
    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_alg(), data).as_ref().to_vec()
    }
}

/// What the broker keeps for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl ScramCredential {
    /// From the salted password a client computed (AlterUserScramCredentials).
    pub fn from_salted_password(mech: ScramMechanism, salt: &[u8], salted: &[u8], iterations: i32) -> Self {
        let client_key = mech.hmac(salted, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            stored_key: mech.hash(&client_key),
            server_key: mech.hmac(salted, b"Server Key"),
            iterations,
        }
    }

    /// From a clear password (the offline `rill user add`, tests).
    pub fn from_password(mech: ScramMechanism, password: &str, iterations: i32) -> Self {
        let mut salt = [0u8; 32];
        let _ = ring::rand::SystemRandom::new().fill(&mut salt);
        let salted = salted_password(mech, password, &salt, iterations);
        Self::from_salted_password(mech, &salt, &salted, iterations)
    }

    /// Checks a clear password (SASL/PLAIN against SCRAM credentials).
    pub fn verify_password(&self, mech: ScramMechanism, password: &str) -> bool {
        let salted = salted_password(mech, password, &self.salt, self.iterations);
        let candidate = Self::from_salted_password(mech, &self.salt, &salted, self.iterations);
        super::ct_eq(&candidate.stored_key, &self.stored_key)
    }
}

/// A fresh random salt for a new credential.
pub fn new_salt() -> Vec<u8> {
    let mut salt = vec![0u8; 32];
    let _ = ring::rand::SystemRandom::new().fill(&mut salt);
    salt
}

pub fn salted_password(mech: ScramMechanism, password: &str, salt: &[u8], iterations: i32) -> Vec<u8> {
    let mut out = vec![0u8; mech.len()];
    let n = NonZeroU32::new(iterations.max(1) as u32).expect("max(1) is non-zero");
    pbkdf2::derive(mech.pbkdf2_alg(), n, salt, password.as_bytes(), &mut out);
    out
}

mod b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct UsersFile {
    users: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
}

/// SCRAM users, persisted in `__rill_users.json` in the first log dir. Kept behind this small
/// API so the metadata quorum can take the data over without touching the mechanisms.
pub struct UserStore {
    path: PathBuf,
    // A std-style lock: held only for map lookups and the (rare) file write of an admin change.
    users: RwLock<BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>>,
}

pub const USERS_FILE: &str = "__rill_users.json";

impl UserStore {
    pub fn open(path: PathBuf) -> Result<Self, SecurityError> {
        let users = match std::fs::read(&path) {
            Ok(bytes) => {
                let f: UsersFile = serde_json::from_slice(&bytes)
                    .map_err(|e| SecurityError::Store(format!("{}: {e}", path.display())))?;
                f.users
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(SecurityError::Store(format!("{}: {e}", path.display()))),
        };
        Ok(UserStore { path, users: RwLock::new(users) })
    }

    pub fn get(&self, user: &str, mech: ScramMechanism) -> Option<ScramCredential> {
        self.users.read().get(user).and_then(|m| m.get(&mech)).cloned()
    }

    /// Every credential of a user, for PLAIN (any one mechanism's credential proves the password).
    pub fn all_of(&self, user: &str) -> Vec<(ScramMechanism, ScramCredential)> {
        self.users.read().get(user).map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect()).unwrap_or_default()
    }

    pub fn list(&self) -> Vec<(String, Vec<(ScramMechanism, i32)>)> {
        self.users
            .read()
            .iter()
            .map(|(u, m)| (u.clone(), m.iter().map(|(k, c)| (*k, c.iterations)).collect()))
            .collect()
    }

    pub fn contains(&self, user: &str) -> bool {
        self.users.read().contains_key(user)
    }

    /// Applies upserts and deletes as one change, persisted before it is visible.
    pub fn apply(
        &self,
        upserts: Vec<(String, ScramMechanism, ScramCredential)>,
        deletes: Vec<(String, ScramMechanism)>,
    ) -> Result<(), SecurityError> {
        let mut users = self.users.write();
        let mut next = users.clone();
        for (u, m) in deletes {
            if let Some(ms) = next.get_mut(&u) {
                ms.remove(&m);
                if ms.is_empty() {
                    next.remove(&u);
                }
            }
        }
        for (u, m, c) in upserts {
            next.entry(u).or_default().insert(m, c);
        }
        let body = serde_json::to_vec_pretty(&UsersFile { users: next.clone() }).expect("serializable");
        write_atomically(&self.path, &body)
            .map_err(|e| SecurityError::Store(format!("{}: {e}", self.path.display())))?;
        *users = next;
        Ok(())
    }
}

/// Client side of one SCRAM exchange (RFC 5802/7677, no channel binding), for the rill CLI:
/// [`ScramClient::client_first`], then [`ScramClient::client_final`] with the server's first
/// message, then [`ScramClient::verify_server_final`] so a server that does not know the
/// password cannot pass for the real one.
pub struct ScramClient {
    mech: ScramMechanism,
    password: String,
    nonce: String,
    client_first_bare: String,
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    pub fn new(mech: ScramMechanism, user: &str, password: &str) -> Self {
        let mut raw = [0u8; 18];
        let _ = ring::rand::SystemRandom::new().fill(&mut raw);
        let nonce = B64.encode(raw);
        let user = user.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={user},r={nonce}");
        ScramClient { mech, password: password.to_string(), nonce, client_first_bare, server_signature: None }
    }

    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The proof, from the server's first message (`r=...,s=...,i=...`).
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(server_first).map_err(|_| "server-first message is not UTF-8")?;
        let attr = |k: &str| text.split(',').find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')));
        let nonce = attr("r").ok_or("server-first message without a nonce")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("the server's nonce does not extend ours".into());
        }
        let salt = B64.decode(attr("s").ok_or("server-first message without a salt")?).map_err(|e| e.to_string())?;
        let iterations: i32 =
            attr("i").and_then(|i| i.parse().ok()).ok_or("server-first message without iterations")?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!("the server asks for {iterations} iterations"));
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let salted = salted_password(self.mech, &self.password, &salt, iterations);
        let client_key = self.mech.hmac(&salted, b"Client Key");
        let stored_key = self.mech.hash(&client_key);
        let signature = self.mech.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_key = self.mech.hmac(&salted, b"Server Key");
        self.server_signature = Some(self.mech.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server's final message (`v=...`, or `e=...` for a refusal).
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final).map_err(|_| "server-final message is not UTF-8")?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("the server refused: {e}"));
        }
        let v = text.strip_prefix("v=").ok_or("server-final message without a signature")?;
        let got = B64.decode(v).map_err(|e| e.to_string())?;
        match &self.server_signature {
            Some(want) if super::ct_eq(want, &got) => Ok(()),
            _ => Err("the server's signature is wrong: it does not know this user's credentials".into()),
        }
    }
}

/// Server side of one SCRAM exchange.
pub struct ScramServer {
    mech: ScramMechanism,
    state: ScramState,
}

enum ScramState {
    First,
    Final {
        user: String,
        /// `None` for an unknown user: the exchange goes on with a made-up salt so that a client
        /// cannot tell unknown users from wrong passwords.
        cred: Option<ScramCredential>,
        nonce: String,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
    },
    Done,
}

/// The outcome of one SCRAM step.
pub enum Step {
    Continue(Vec<u8>),
    Success { user: String, reply: Vec<u8> },
    Fail(&'static str),
}

impl ScramServer {
    pub fn new(mech: ScramMechanism) -> Self {
        ScramServer { mech, state: ScramState::First }
    }

    pub fn step(&mut self, input: &[u8], users: &UserStore) -> Step {
        let Ok(msg) = std::str::from_utf8(input) else { return Step::Fail("SCRAM message is not UTF-8") };
        match std::mem::replace(&mut self.state, ScramState::Done) {
            ScramState::First => self.first(msg, users),
            ScramState::Final { user, cred, nonce, gs2_header, client_first_bare, server_first } => {
                self.finish(msg, user, cred, nonce, gs2_header, client_first_bare, server_first)
            }
            ScramState::Done => Step::Fail("SCRAM exchange already finished"),
        }
    }

    fn first(&mut self, msg: &str, users: &UserStore) -> Step {
        // gs2-header: "n,," or "y,," optionally with "a=authzid" between the commas.
        let mut parts = msg.splitn(3, ',');
        let (Some(cb), Some(authz), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
            return Step::Fail("malformed SCRAM client-first message");
        };
        if cb != "n" && cb != "y" {
            return Step::Fail("SCRAM channel binding is not supported");
        }
        let mut user = None;
        let mut cnonce = None;
        for attr in bare.split(',') {
            if let Some(v) = attr.strip_prefix("n=") {
                user = Some(v.replace("=2C", ",").replace("=3D", "="));
            } else if let Some(v) = attr.strip_prefix("r=") {
                cnonce = Some(v.to_string());
            } else if attr.starts_with("tokenauth=") {
                return Step::Fail("delegation tokens are not supported");
            }
        }
        let (Some(user), Some(cnonce)) = (user, cnonce) else {
            return Step::Fail("SCRAM client-first message lacks n= or r=");
        };
        if let Some(a) = authz.strip_prefix("a=") {
            if a != user {
                return Step::Fail("SCRAM authorization id differs from the user name");
            }
        }
        let cred = users.get(&user, self.mech);
        let (salt, iterations) = match &cred {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (self.mech.hash(format!("rill-unknown-user:{user}").as_bytes()), MIN_ITERATIONS),
        };
        let mut rnd = [0u8; 24];
        let _ = ring::rand::SystemRandom::new().fill(&mut rnd);
        let nonce = format!("{cnonce}{}", B64.encode(rnd));
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        self.state = ScramState::Final {
            user,
            cred,
            nonce,
            gs2_header: format!("{cb},{authz},"),
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
        };
        Step::Continue(server_first.into_bytes())
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        msg: &str,
        user: String,
        cred: Option<ScramCredential>,
        nonce: String,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
    ) -> Step {
        let Some((without_proof, proof)) = msg.rsplit_once(",p=") else {
            return Step::Fail("SCRAM client-final message lacks a proof");
        };
        let mut channel = None;
        let mut rnonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                channel = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                rnonce = Some(v);
            }
        }
        if channel != Some(B64.encode(gs2_header.as_bytes()).as_str()) || rnonce != Some(nonce.as_str()) {
            return Step::Fail("SCRAM nonce or channel binding mismatch");
        }
        let Ok(proof) = B64.decode(proof) else { return Step::Fail("SCRAM proof is not base64") };
        let Some(cred) = cred else { return Step::Fail("invalid credentials") };
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = self.mech.hmac(&cred.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Step::Fail("invalid credentials");
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        if !super::ct_eq(&self.mech.hash(&client_key), &cred.stored_key) {
            return Step::Fail("invalid credentials");
        }
        let server_signature = self.mech.hmac(&cred.server_key, auth_message.as_bytes());
        Step::Success { user, reply: format!("v={}", B64.encode(server_signature)).into_bytes() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_exchange_accepts_right_and_refuses_wrong_password() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::open(dir.path().join(USERS_FILE)).unwrap();
        for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            store
                .apply(vec![("alice".into(), mech, ScramCredential::from_password(mech, "s3cret", 4096))], vec![])
                .unwrap();
            for (pw, ok) in [("s3cret", true), ("wrong", false)] {
                // The client and the server of this module, against each other.
                let mut srv = ScramServer::new(mech);
                let mut cli = ScramClient::new(mech, "alice", pw);
                let Step::Continue(sfirst) = srv.step(&cli.client_first(), &store) else { panic!() };
                let fin = cli.client_final(&sfirst).unwrap();
                match srv.step(&fin, &store) {
                    Step::Success { user, reply } => {
                        assert!(ok && user == "alice");
                        cli.verify_server_final(&reply).unwrap();
                        // A server that does not know the credentials cannot pass for this one.
                        assert!(cli.verify_server_final(b"v=AAAA").is_err());
                    }
                    Step::Fail(_) => assert!(!ok),
                    Step::Continue(_) => panic!(),
                }
            }
        }
        let reopened = UserStore::open(dir.path().join(USERS_FILE)).unwrap();
        assert!(reopened
            .get("alice", ScramMechanism::Sha512)
            .unwrap()
            .verify_password(ScramMechanism::Sha512, "s3cret"));
        let text = std::fs::read_to_string(dir.path().join(USERS_FILE)).unwrap();
        assert!(!text.contains("s3cret"));
    }

    #[test]
    fn unknown_user_fails_only_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::open(dir.path().join(USERS_FILE)).unwrap();
        let mut srv = ScramServer::new(ScramMechanism::Sha256);
        let mut cli = ScramClient::new(ScramMechanism::Sha256, "bob", "pw");
        let Step::Continue(sfirst) = srv.step(&cli.client_first(), &store) else { panic!() };
        let fin = cli.client_final(&sfirst).unwrap();
        assert!(matches!(srv.step(&fin, &store), Step::Fail(_)));
    }
}
