//! CreateAcls, DescribeAcls, DeleteAcls, DescribeUserScramCredentials and
//! AlterUserScramCredentials: the admin APIs of the security state.

use std::collections::{BTreeMap, HashSet};

use rill_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use rill_protocol::messages::create_acls_response::AclCreationResult;
use rill_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use rill_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use rill_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use rill_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, CreateAclsRequest, CreateAclsResponse,
    DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest, DescribeAclsResponse, DescribeClientQuotasResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use rill_protocol::ResponseError;

use super::acl::{AclBinding, AclFilter};
use super::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use super::{Security, SecurityChange};

/// Makes a [`SecurityChange`] durable: on this node alone, or through the metadata quorum.
pub type ApplyChange<'a> = &'a dyn Fn(SecurityChange) -> Result<(), String>;
use crate::handlers::s;

fn security_disabled() -> (i16, Option<String>) {
    (ResponseError::SecurityDisabled.code(), Some("No Authorizer is configured on the broker".into()))
}

pub fn create_acls(sec: &Security, apply: ApplyChange<'_>, req: CreateAclsRequest) -> CreateAclsResponse {
    let mut results = Vec::new();
    let mut valid = Vec::new();
    for c in req.creations {
        let b = AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission: c.permission_type,
        };
        let r = if !sec.authorizer_enabled {
            let (code, msg) = security_disabled();
            AclCreationResult::default().with_error_code(code).with_error_message(msg.map(s))
        } else {
            match b.validate() {
                Ok(()) => {
                    valid.push((results.len(), b));
                    AclCreationResult::default()
                }
                Err(e) => AclCreationResult::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(s(e.to_string()))),
            }
        };
        results.push(r);
    }
    if !valid.is_empty() {
        let bindings: Vec<AclBinding> = valid.iter().map(|(_, b)| b.clone()).collect();
        if let Err(e) = apply(SecurityChange::AddAcls(bindings)) {
            tracing::error!(error = %e, "cannot persist ACLs");
            for (i, _) in &valid {
                results[*i] = AclCreationResult::default()
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(Some(s(e.to_string())));
            }
        }
    }
    CreateAclsResponse::default().with_results(results)
}

fn filter_of(
    resource_type: i8,
    name: Option<String>,
    pattern_type: i8,
    principal: Option<String>,
    host: Option<String>,
    operation: i8,
    permission: i8,
) -> AclFilter {
    AclFilter { resource_type, resource_name: name, pattern_type, principal, host, operation, permission }
}

pub fn describe_acls(sec: &Security, req: DescribeAclsRequest) -> DescribeAclsResponse {
    if !sec.authorizer_enabled {
        let (code, msg) = security_disabled();
        return DescribeAclsResponse::default().with_error_code(code).with_error_message(msg.map(s));
    }
    let f = filter_of(
        req.resource_type_filter,
        req.resource_name_filter.map(|n| n.to_string()),
        req.pattern_type_filter,
        req.principal_filter.map(|n| n.to_string()),
        req.host_filter.map(|n| n.to_string()),
        req.operation,
        req.permission_type,
    );
    if let Err(e) = f.validate() {
        return DescribeAclsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(s(e.to_string())));
    }
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in sec.acls.describe(&f) {
        by_resource.entry((b.resource_type, b.resource_name.clone(), b.pattern_type)).or_default().push(
            AclDescription::default()
                .with_principal(s(b.principal))
                .with_host(s(b.host))
                .with_operation(b.operation)
                .with_permission_type(b.permission),
        );
    }
    let resources = by_resource
        .into_iter()
        .map(|((rt, name, pt), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt)
                .with_resource_name(s(name))
                .with_pattern_type(pt)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

pub fn delete_acls(sec: &Security, apply: ApplyChange<'_>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    if !sec.authorizer_enabled {
        let (code, msg) = security_disabled();
        let results = req
            .filters
            .iter()
            .map(|_| DeleteAclsFilterResult::default().with_error_code(code).with_error_message(msg.clone().map(s)))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let filters: Vec<AclFilter> = req
        .filters
        .into_iter()
        .map(|f| {
            filter_of(
                f.resource_type_filter,
                f.resource_name_filter.map(|n| n.to_string()),
                f.pattern_type_filter,
                f.principal_filter.map(|n| n.to_string()),
                f.host_filter.map(|n| n.to_string()),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let invalid: Vec<Option<String>> = filters.iter().map(|f| f.validate().err().map(|e| e.to_string())).collect();
    let ok_filters: Vec<AclFilter> =
        filters.iter().zip(&invalid).filter(|(_, e)| e.is_none()).map(|(f, _)| f.clone()).collect();
    // What each filter matches now is what the change removes (admin changes are rare; a
    // concurrent one may make this answer slightly stale, never the stored state wrong).
    let matched: Vec<Vec<AclBinding>> = ok_filters.iter().map(|f| sec.acls.describe(f)).collect();
    let deleted = match apply(SecurityChange::DeleteAcls(ok_filters)) {
        Ok(()) => matched,
        Err(e) => {
            let results = filters
                .iter()
                .map(|_| {
                    DeleteAclsFilterResult::default()
                        .with_error_code(ResponseError::UnknownServerError.code())
                        .with_error_message(Some(s(e.to_string())))
                })
                .collect();
            return DeleteAclsResponse::default().with_filter_results(results);
        }
    };
    let mut deleted = deleted.into_iter();
    let results = invalid
        .into_iter()
        .map(|err| match err {
            Some(msg) => DeleteAclsFilterResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(s(msg))),
            None => DeleteAclsFilterResult::default().with_matching_acls(
                deleted
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type)
                            .with_resource_name(s(b.resource_name))
                            .with_pattern_type(b.pattern_type)
                            .with_principal(s(b.principal))
                            .with_host(s(b.host))
                            .with_operation(b.operation)
                            .with_permission_type(b.permission)
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

pub fn describe_scram(
    sec: &Security,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let all = sec.users.list();
    let info = |mechs: &[(ScramMechanism, i32)]| -> Vec<CredentialInfo> {
        mechs.iter().map(|(m, i)| CredentialInfo::default().with_mechanism(m.code()).with_iterations(*i)).collect()
    };
    // Kafka describes every user for a null or an empty list (librdkafka sends empty).
    let results = match req.users.filter(|u| !u.is_empty()) {
        None => all
            .iter()
            .map(|(u, m)| {
                DescribeUserScramCredentialsResult::default().with_user(s(u.clone())).with_credential_infos(info(m))
            })
            .collect(),
        Some(users) => {
            let mut seen = HashSet::new();
            let dups: HashSet<String> =
                users.iter().map(|u| u.name.to_string()).filter(|n| !seen.insert(n.clone())).collect();
            let mut done = HashSet::new();
            users
                .into_iter()
                .filter(|u| done.insert(u.name.to_string()))
                .map(|u| {
                    let name = u.name.to_string();
                    let r = DescribeUserScramCredentialsResult::default().with_user(s(name.clone()));
                    if dups.contains(&name) {
                        return r.with_error_code(ResponseError::DuplicateResource.code()).with_error_message(Some(s(
                            format!(
                                "Cannot describe SCRAM credentials for the same user twice in a single request: {name}"
                            ),
                        )));
                    }
                    match all.iter().find(|(n, _)| *n == name) {
                        Some((_, m)) => r.with_credential_infos(info(m)),
                        None => r.with_error_code(ResponseError::ResourceNotFound.code()).with_error_message(Some(s(
                            format!("Attempt to describe a user credential that does not exist: {name}"),
                        ))),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// Rill enforces no client quotas, so every quota filter matches nothing.
pub fn describe_client_quotas() -> DescribeClientQuotasResponse {
    DescribeClientQuotasResponse::default().with_entries(Some(Vec::new()))
}

pub fn alter_scram(
    sec: &Security,
    apply: ApplyChange<'_>,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Kafka refuses a request that names the same user twice (in either list) for that user.
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for n in req.deletions.iter().map(|d| d.name.to_string()).chain(req.upsertions.iter().map(|u| u.name.to_string())) {
        *count.entry(n).or_default() += 1;
    }
    let mut errors: BTreeMap<String, (ResponseError, String)> = BTreeMap::new();
    let mut deletes = Vec::new();
    let mut upserts = Vec::new();
    for d in &req.deletions {
        let name = d.name.to_string();
        let Some(mech) = ScramMechanism::from_code(d.mechanism) else {
            errors.insert(name, (ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism".into()));
            continue;
        };
        if sec.users.get(&name, mech).is_none() {
            errors.insert(
                name.clone(),
                (
                    ResponseError::ResourceNotFound,
                    format!("Attempt to delete a user credential that does not exist: {name}"),
                ),
            );
            continue;
        }
        deletes.push((name, mech));
    }
    for u in &req.upsertions {
        let name = u.name.to_string();
        let Some(mech) = ScramMechanism::from_code(u.mechanism) else {
            errors.insert(name, (ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism".into()));
            continue;
        };
        if name.is_empty() {
            errors.insert(name, (ResponseError::UnacceptableCredential, "Username must not be empty".into()));
            continue;
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&u.iterations) {
            errors.insert(
                name,
                (
                    ResponseError::UnacceptableCredential,
                    format!("Iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"),
                ),
            );
            continue;
        }
        if u.salt.is_empty() || u.salted_password.is_empty() {
            errors.insert(
                name,
                (ResponseError::UnacceptableCredential, "Salt and salted password must not be empty".into()),
            );
            continue;
        }
        upserts.push((
            name,
            mech,
            ScramCredential::from_salted_password(mech, &u.salt, &u.salted_password, u.iterations),
        ));
    }
    for (n, c) in &count {
        if *c > 1 {
            errors.insert(
                n.clone(),
                (
                    ResponseError::DuplicateResource,
                    "A user credential cannot be altered twice in the same request".into(),
                ),
            );
        }
    }
    deletes.retain(|(n, _)| !errors.contains_key(n));
    upserts.retain(|(n, _, _)| !errors.contains_key(n));
    let touched: Vec<String> =
        deletes.iter().map(|(n, _)| n.clone()).chain(upserts.iter().map(|(n, _, _)| n.clone())).collect();
    if let Err(e) = apply(SecurityChange::AlterScram { upserts, deletes }) {
        tracing::error!(error = %e, "cannot persist SCRAM credentials");
        for n in touched {
            errors.insert(n, (ResponseError::UnknownServerError, e.to_string()));
        }
    }
    let results = count
        .keys()
        .map(|n| {
            let r = AlterUserScramCredentialsResult::default().with_user(s(n.clone()));
            match errors.get(n) {
                Some((e, msg)) => r.with_error_code(e.code()).with_error_message(Some(s(msg.clone()))),
                None => r,
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
