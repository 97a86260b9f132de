//! Kafka's ACL model (KIP-11, KIP-290 prefixed patterns) and the store that keeps the bindings.
//!
//! The codes are the wire codes of Create/Describe/DeleteAcls. The store is a small struct with
//! a JSON file in the data dir; the metadata quorum can take its place later behind the same API.

use std::path::PathBuf;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{write_atomically, SecurityError};

pub mod code {
    // Resource types.
    pub const RES_ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const DELEGATION_TOKEN: i8 = 6;
    pub const USER: i8 = 7;
    // Pattern types.
    pub const PAT_ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
    // Operations.
    pub const OP_ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
    pub const CREATE_TOKENS: i8 = 13;
    pub const DESCRIBE_TOKENS: i8 = 14;
    pub const TWO_PHASE_COMMIT: i8 = 15;
    // Permissions.
    pub const PERM_ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

use code::*;

/// The only cluster resource name Kafka uses.
pub const CLUSTER_NAME: &str = "kafka-cluster";
pub const WILDCARD: &str = "*";

/// One ACL: who may (or may not) do what from where on which resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AclError {
    #[error("{0}")]
    Invalid(String),
}

impl AclBinding {
    /// Kafka refuses bindings with ANY/MATCH/UNKNOWN values or malformed principals.
    pub fn validate(&self) -> Result<(), AclError> {
        let bad = |m: &str| Err(AclError::Invalid(m.to_string()));
        if !(TOPIC..=USER).contains(&self.resource_type) {
            return bad("Invalid resource type for an ACL binding");
        }
        if self.pattern_type != LITERAL && self.pattern_type != PREFIXED {
            return bad("Invalid pattern type for an ACL binding: must be LITERAL or PREFIXED");
        }
        if !(ALL..=TWO_PHASE_COMMIT).contains(&self.operation) {
            return bad("Invalid operation for an ACL binding");
        }
        if self.permission != ALLOW && self.permission != DENY {
            return bad("Invalid permission type for an ACL binding");
        }
        if self.resource_name.is_empty() {
            return bad("Resource name must not be empty");
        }
        if self.resource_type == CLUSTER && self.resource_name != CLUSTER_NAME {
            return bad("The only valid name for the CLUSTER resource is kafka-cluster");
        }
        if !self.principal.contains(':') || self.principal.starts_with(':') {
            return bad("Principal must be of the form Type:name, e.g. User:alice");
        }
        if self.host.is_empty() {
            return bad("Host must not be empty (use * for any host)");
        }
        Ok(())
    }
}

/// A Describe/DeleteAcls filter; `None` strings match anything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        let res_ok = self.resource_type == RES_ANY || self.resource_type == b.resource_type;
        let name_pat_ok = match self.pattern_type {
            PAT_ANY => self.resource_name.as_ref().is_none_or(|n| *n == b.resource_name),
            // MATCH: every binding that would apply to a resource of this exact name.
            MATCH => match &self.resource_name {
                None => true,
                Some(n) => match b.pattern_type {
                    LITERAL => b.resource_name == *n || b.resource_name == WILDCARD,
                    PREFIXED => n.starts_with(&b.resource_name),
                    _ => false,
                },
            },
            p => p == b.pattern_type && self.resource_name.as_ref().is_none_or(|n| *n == b.resource_name),
        };
        let principal_ok = self.principal.as_ref().is_none_or(|p| *p == b.principal);
        let host_ok = self.host.as_ref().is_none_or(|h| *h == b.host);
        let op_ok = self.operation == OP_ANY || self.operation == b.operation;
        let perm_ok = self.permission == PERM_ANY || self.permission == b.permission;
        res_ok && name_pat_ok && principal_ok && host_ok && op_ok && perm_ok
    }

    pub fn validate(&self) -> Result<(), AclError> {
        if self.resource_type < RES_ANY
            || self.pattern_type < PAT_ANY
            || self.operation < OP_ANY
            || self.permission < PERM_ANY
        {
            return Err(AclError::Invalid("Filter values must not be UNKNOWN".into()));
        }
        Ok(())
    }
}

#[derive(Default, Serialize, Deserialize)]
struct AclsFile {
    acls: Vec<AclBinding>,
}

pub const ACLS_FILE: &str = "__rill_acls.json";

/// The ACL bindings of the cluster.
pub struct AclStore {
    path: PathBuf,
    // Reads on every authorized request, writes only on admin changes.
    acls: RwLock<Vec<AclBinding>>,
}

impl AclStore {
    pub fn open(path: PathBuf) -> Result<Self, SecurityError> {
        let acls = match std::fs::read(&path) {
            Ok(b) => {
                let f: AclsFile =
                    serde_json::from_slice(&b).map_err(|e| SecurityError::Store(format!("{}: {e}", path.display())))?;
                f.acls
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(SecurityError::Store(format!("{}: {e}", path.display()))),
        };
        Ok(AclStore { path, acls: RwLock::new(acls) })
    }

    fn persist(&self, acls: &[AclBinding]) -> Result<(), SecurityError> {
        let body = serde_json::to_vec_pretty(&AclsFile { acls: acls.to_vec() }).expect("serializable");
        write_atomically(&self.path, &body).map_err(|e| SecurityError::Store(format!("{}: {e}", self.path.display())))
    }

    /// Adds bindings (already validated); an existing identical binding is not duplicated.
    pub fn add(&self, new: &[AclBinding]) -> Result<(), SecurityError> {
        let mut acls = self.acls.write();
        let mut next = acls.clone();
        for b in new {
            if !next.contains(b) {
                next.push(b.clone());
            }
        }
        self.persist(&next)?;
        *acls = next;
        Ok(())
    }

    pub fn describe(&self, f: &AclFilter) -> Vec<AclBinding> {
        self.acls.read().iter().filter(|b| f.matches(b)).cloned().collect()
    }

    /// Removes what each filter matches; returns the removed bindings per filter.
    pub fn delete(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, SecurityError> {
        let mut acls = self.acls.write();
        let out: Vec<Vec<AclBinding>> =
            filters.iter().map(|f| acls.iter().filter(|b| f.matches(b)).cloned().collect()).collect();
        let next: Vec<AclBinding> = acls.iter().filter(|b| !filters.iter().any(|f| f.matches(b))).cloned().collect();
        if next.len() != acls.len() {
            self.persist(&next)?;
            *acls = next;
        }
        Ok(out)
    }

    /// The bindings that apply to a resource of type `rt` named `name`.
    pub fn for_resource(&self, rt: i8, name: &str) -> Vec<AclBinding> {
        self.acls
            .read()
            .iter()
            .filter(|b| {
                b.resource_type == rt
                    && match b.pattern_type {
                        LITERAL => b.resource_name == name || b.resource_name == WILDCARD,
                        PREFIXED => name.starts_with(&b.resource_name),
                        _ => false,
                    }
            })
            .cloned()
            .collect()
    }

    /// Whether any ALLOW binding for `principal` grants `op` on some resource of type `rt`
    /// (Kafka's authorizeByResourceType, used for the idempotent producer).
    pub fn any_allow_of_type(&self, rt: i8, principal: &str, host: &str, op: i8) -> bool {
        let acls = self.acls.read();
        acls.iter().any(|b| {
            b.resource_type == rt
                && b.permission == ALLOW
                && (b.operation == op || b.operation == ALL)
                && (b.principal == principal || b.principal == "User:*")
                && (b.host == host || b.host == WILDCARD)
        }) && !acls.iter().any(|b| {
            b.resource_type == rt
                && b.permission == DENY
                && b.pattern_type == LITERAL
                && b.resource_name == WILDCARD
                && (b.operation == op || b.operation == ALL)
                && (b.principal == principal || b.principal == "User:*")
                && (b.host == host || b.host == WILDCARD)
        })
    }
}

pub fn resource_type_name(rt: i8) -> &'static str {
    match rt {
        TOPIC => "Topic",
        GROUP => "Group",
        CLUSTER => "Cluster",
        TRANSACTIONAL_ID => "TransactionalId",
        DELEGATION_TOKEN => "DelegationToken",
        USER => "User",
        _ => "Unknown",
    }
}

pub fn operation_name(op: i8) -> &'static str {
    match op {
        ALL => "All",
        READ => "Read",
        WRITE => "Write",
        CREATE => "Create",
        DELETE => "Delete",
        ALTER => "Alter",
        DESCRIBE => "Describe",
        CLUSTER_ACTION => "ClusterAction",
        DESCRIBE_CONFIGS => "DescribeConfigs",
        ALTER_CONFIGS => "AlterConfigs",
        IDEMPOTENT_WRITE => "IdempotentWrite",
        CREATE_TOKENS => "CreateTokens",
        DESCRIBE_TOKENS => "DescribeTokens",
        TWO_PHASE_COMMIT => "TwoPhaseCommit",
        _ => "Unknown",
    }
}
