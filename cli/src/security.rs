//! `rill acl` and `rill user`: ACLs (Create/Describe/DeleteAcls) and SCRAM users
//! (Alter/DescribeUserScramCredentials), over the Kafka protocol like every admin command.

use anyhow::bail;
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use rill_broker::security::acl::code;
use rill_broker::security::scram::{new_salt, salted_password, ScramMechanism};
use rill_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use rill_protocol::messages::create_acls_request::AclCreation;
use rill_protocol::messages::delete_acls_request::DeleteAclsFilter;
use rill_protocol::messages::describe_user_scram_credentials_request::UserName;
use rill_protocol::messages::*;
use rill_protocol::StrBytes;
use serde_json::{json, Value};

use crate::admin::{connect, usage, Conn, Output};
use crate::client::check;
use crate::output::{print_json, Table};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl Operation {
    fn code(self) -> i8 {
        match self {
            Operation::All => code::ALL,
            Operation::Read => code::READ,
            Operation::Write => code::WRITE,
            Operation::Create => code::CREATE,
            Operation::Delete => code::DELETE,
            Operation::Alter => code::ALTER,
            Operation::Describe => code::DESCRIBE,
            Operation::ClusterAction => code::CLUSTER_ACTION,
            Operation::DescribeConfigs => code::DESCRIBE_CONFIGS,
            Operation::AlterConfigs => code::ALTER_CONFIGS,
            Operation::IdempotentWrite => code::IDEMPOTENT_WRITE,
        }
    }
}

/// The resource an ACL is about.
#[derive(Args, Clone)]
#[group(required = false, multiple = false)]
pub struct Resource {
    /// A topic (or topic name prefix with --prefixed; * for every topic).
    #[arg(long)]
    topic: Option<String>,
    /// A consumer group (or prefix with --prefixed; * for every group).
    #[arg(long)]
    group: Option<String>,
    /// A transactional id (or prefix with --prefixed).
    #[arg(long)]
    transactional_id: Option<String>,
    /// The cluster itself.
    #[arg(long)]
    cluster: bool,
}

impl Resource {
    fn get(&self) -> Option<(i8, String)> {
        if let Some(t) = &self.topic {
            Some((code::TOPIC, t.clone()))
        } else if let Some(g) = &self.group {
            Some((code::GROUP, g.clone()))
        } else if let Some(t) = &self.transactional_id {
            Some((code::TRANSACTIONAL_ID, t.clone()))
        } else if self.cluster {
            Some((code::CLUSTER, "kafka-cluster".into()))
        } else {
            None
        }
    }
}

#[derive(Args, Clone)]
pub struct AclSpec {
    /// Principal, e.g. User:alice (User:* for everyone).
    #[arg(long)]
    principal: String,
    /// Client host the ACL applies to.
    #[arg(long, default_value = "*")]
    host: String,
    /// Operation(s), repeatable.
    #[arg(long = "operation", value_enum, required = true)]
    operations: Vec<Operation>,
    #[command(flatten)]
    resource: Resource,
    /// Match resource names by prefix instead of literally.
    #[arg(long)]
    prefixed: bool,
    /// A DENY rule instead of ALLOW.
    #[arg(long)]
    deny: bool,
}

#[derive(Subcommand)]
pub enum AclCmd {
    /// Add ACLs.
    ///
    /// Example: rill acl add --principal User:alice --operation read --operation describe --topic orders
    Add(AclSpec),
    /// List ACLs, optionally only those of a principal or resource.
    ///
    /// Example: rill acl list --topic orders
    List {
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        resource: Resource,
    },
    /// Remove ACLs matching exactly what is given.
    ///
    /// Example: rill acl remove --principal User:alice --operation read --topic orders
    Remove(AclSpec),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Mechanism {
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    fn scram(self) -> ScramMechanism {
        match self {
            Mechanism::ScramSha256 => ScramMechanism::Sha256,
            Mechanism::ScramSha512 => ScramMechanism::Sha512,
        }
    }
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Create a SCRAM user or change its password. The salted password is computed here; the
    /// clear password never travels.
    ///
    /// Example: echo s3cret | rill user add alice --mechanism SCRAM-SHA-512 --password-stdin
    Add {
        name: String,
        #[arg(long, value_enum, default_value = "SCRAM-SHA-512")]
        mechanism: Mechanism,
        /// The password (visible in the process list; prefer --password-stdin).
        #[arg(long, conflicts_with = "password_stdin", required_unless_present = "password_stdin")]
        password: Option<String>,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
    },
    /// List SCRAM users and their mechanisms.
    List,
    /// Remove a user's SCRAM credential (every mechanism unless one is given).
    Remove {
        name: String,
        #[arg(long, value_enum)]
        mechanism: Option<Mechanism>,
    },
}

fn op_name(op: i8) -> &'static str {
    rill_broker::security::acl::operation_name(op)
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub async fn acl(conn: &Conn, cmd: AclCmd) -> anyhow::Result<()> {
    let mut pool = connect(conn).await?;
    let json = conn.output == Output::Json;
    match cmd {
        AclCmd::Add(spec) => {
            let Some((rt, name)) = spec.resource.get() else {
                return Err(usage("give one of --topic, --group, --transactional-id, --cluster"));
            };
            let creations = spec
                .operations
                .iter()
                .map(|op| {
                    AclCreation::default()
                        .with_resource_type(rt)
                        .with_resource_name(s(name.clone()))
                        .with_resource_pattern_type(if spec.prefixed { code::PREFIXED } else { code::LITERAL })
                        .with_principal(s(spec.principal.clone()))
                        .with_host(s(spec.host.clone()))
                        .with_operation(op.code())
                        .with_permission_type(if spec.deny { code::DENY } else { code::ALLOW })
                })
                .collect();
            let r = pool.main().send(&CreateAclsRequest::default().with_creations(creations)).await?;
            for res in &r.results {
                check(res.error_code, res.error_message.as_ref(), "CreateAcls")?;
            }
            if !json {
                println!("Added {} ACL(s) for {} on {} {name}", r.results.len(), spec.principal, rt_name(rt));
            }
        }
        AclCmd::List { principal, resource } => {
            let (rt, name) = resource.get().map_or((code::RES_ANY, None), |(rt, n)| (rt, Some(n)));
            let req = DescribeAclsRequest::default()
                .with_resource_type_filter(rt)
                .with_resource_name_filter(name.map(s))
                .with_pattern_type_filter(code::PAT_ANY)
                .with_principal_filter(principal.map(s))
                .with_host_filter(None)
                .with_operation(code::OP_ANY)
                .with_permission_type(code::PERM_ANY);
            let r = pool.main().send(&req).await?;
            check(r.error_code, r.error_message.as_ref(), "DescribeAcls")?;
            let mut rows = Vec::new();
            for res in &r.resources {
                for a in &res.acls {
                    rows.push([
                        a.principal.to_string(),
                        a.host.to_string(),
                        op_name(a.operation).to_string(),
                        if a.permission_type == code::DENY { "DENY" } else { "ALLOW" }.to_string(),
                        rt_name(res.resource_type).to_string(),
                        res.resource_name.to_string(),
                        if res.pattern_type == code::PREFIXED { "PREFIXED" } else { "LITERAL" }.to_string(),
                    ]);
                }
            }
            rows.sort();
            if json {
                let v: Vec<Value> = rows
                    .iter()
                    .map(|r| {
                        json!({"principal": r[0], "host": r[1], "operation": r[2], "permission": r[3],
                               "resource_type": r[4], "resource": r[5], "pattern": r[6]})
                    })
                    .collect();
                print_json(&Value::Array(v))?;
            } else {
                let mut t =
                    Table::new(&["PRINCIPAL", "HOST", "OPERATION", "PERMISSION", "TYPE", "RESOURCE", "PATTERN"]);
                for r in rows {
                    t.row(r.to_vec());
                }
                t.print()?;
            }
        }
        AclCmd::Remove(spec) => {
            let Some((rt, name)) = spec.resource.get() else {
                return Err(usage("give one of --topic, --group, --transactional-id, --cluster"));
            };
            let filters = spec
                .operations
                .iter()
                .map(|op| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(rt)
                        .with_resource_name_filter(Some(s(name.clone())))
                        .with_pattern_type_filter(if spec.prefixed { code::PREFIXED } else { code::LITERAL })
                        .with_principal_filter(Some(s(spec.principal.clone())))
                        .with_host_filter(Some(s(spec.host.clone())))
                        .with_operation(op.code())
                        .with_permission_type(if spec.deny { code::DENY } else { code::ALLOW })
                })
                .collect();
            let r = pool.main().send(&DeleteAclsRequest::default().with_filters(filters)).await?;
            let mut n = 0;
            for f in &r.filter_results {
                check(f.error_code, f.error_message.as_ref(), "DeleteAcls")?;
                n += f.matching_acls.len();
            }
            if !json {
                println!("Removed {n} ACL(s)");
            }
        }
    }
    Ok(())
}

fn rt_name(rt: i8) -> &'static str {
    rill_broker::security::acl::resource_type_name(rt)
}

pub async fn user(conn: &Conn, cmd: UserCmd) -> anyhow::Result<()> {
    let mut pool = connect(conn).await?;
    let json = conn.output == Output::Json;
    match cmd {
        UserCmd::Add { name, mechanism, password, password_stdin, iterations } => {
            let password = match password {
                Some(p) => p,
                None if password_stdin => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\n', '\r']).to_string()
                }
                None => return Err(usage("give --password or --password-stdin")),
            };
            if password.is_empty() {
                bail!("the password must not be empty");
            }
            let mech = mechanism.scram();
            let salt = new_salt();
            let salted = salted_password(mech, &password, &salt, iterations);
            let up = ScramCredentialUpsertion::default()
                .with_name(s(name.clone()))
                .with_mechanism(mech.code())
                .with_iterations(iterations)
                .with_salt(Bytes::from(salt))
                .with_salted_password(Bytes::from(salted));
            let r = pool.main().send(&AlterUserScramCredentialsRequest::default().with_upsertions(vec![up])).await?;
            for res in &r.results {
                check(res.error_code, res.error_message.as_ref(), format!("user {name}"))?;
            }
            if !json {
                println!("User {name}: {} credential set", mech.name());
            }
        }
        UserCmd::List => {
            let r = pool.main().send(&DescribeUserScramCredentialsRequest::default().with_users(None)).await?;
            check(r.error_code, r.error_message.as_ref(), "DescribeUserScramCredentials")?;
            let mut rows: Vec<(String, String)> = r
                .results
                .iter()
                .map(|u| {
                    let mechs: Vec<String> = u
                        .credential_infos
                        .iter()
                        .filter_map(|c| {
                            ScramMechanism::from_code(c.mechanism)
                                .map(|m| format!("{}(iterations={})", m.name(), c.iterations))
                        })
                        .collect();
                    (u.user.to_string(), mechs.join(","))
                })
                .collect();
            rows.sort();
            if json {
                let v: Vec<Value> = rows.iter().map(|(u, m)| json!({"user": u, "mechanisms": m})).collect();
                print_json(&Value::Array(v))?;
            } else {
                let mut t = Table::new(&["USER", "MECHANISMS"]);
                for (u, m) in rows {
                    t.row(vec![u, m]);
                }
                t.print()?;
            }
        }
        UserCmd::Remove { name, mechanism } => {
            let mechs = match mechanism {
                Some(m) => vec![m.scram()],
                None => {
                    let r = pool
                        .main()
                        .send(
                            &DescribeUserScramCredentialsRequest::default()
                                .with_users(Some(vec![UserName::default().with_name(s(name.clone()))])),
                        )
                        .await?;
                    let u = r.results.first();
                    if let Some(u) = u {
                        check(u.error_code, u.error_message.as_ref(), format!("user {name}"))?;
                    }
                    u.map(|u| {
                        u.credential_infos.iter().filter_map(|c| ScramMechanism::from_code(c.mechanism)).collect()
                    })
                    .unwrap_or_default()
                }
            };
            let deletions = mechs
                .iter()
                .map(|m| ScramCredentialDeletion::default().with_name(s(name.clone())).with_mechanism(m.code()))
                .collect();
            let r = pool.main().send(&AlterUserScramCredentialsRequest::default().with_deletions(deletions)).await?;
            for res in &r.results {
                check(res.error_code, res.error_message.as_ref(), format!("user {name}"))?;
            }
            if !json {
                println!("User {name}: removed");
            }
        }
    }
    Ok(())
}
