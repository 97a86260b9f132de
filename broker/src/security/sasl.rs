//! The SASL state of one connection: SaslHandshake v1 and SaslAuthenticate (PLAIN, SCRAM), the
//! gate that keeps unauthenticated clients to ApiVersions, and KIP-368 re-authentication.
//!
//! SaslHandshake v0 (raw tokens outside Kafka framing) is not served: Kafka 4.0 removed it
//! (KIP-896) and every supported client uses v1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use rill_protocol::{Request, ResponseError};

use super::scram::{ScramServer, Step};
use super::{ListenerSecurity, Mechanism, Security};
use crate::broker::ConnContext;
use crate::handlers::s;

enum State {
    /// Waiting for SaslHandshake.
    Handshake,
    Authenticating(Mechanism, Option<Box<ScramServer>>),
    Authenticated,
}

/// What the connection does with a request.
pub enum Gate {
    /// Serve it normally.
    Pass(Request),
    /// Answer with this (after `delay`), then close the connection if `close`.
    Answer { body: ResponseKind, delay: Duration, close: bool },
    /// Close without answering (Kafka's behaviour for requests in the wrong SASL state).
    Close(&'static str),
}

pub struct Session {
    listener: Arc<ListenerSecurity>,
    state: State,
    /// When the current SASL session ends (KIP-368), if it does.
    expires_at: Option<Instant>,
    /// Set during re-authentication: the principal must not change.
    reauth_of: Option<String>,
}

impl Session {
    pub fn new(listener: Arc<ListenerSecurity>) -> Self {
        let state = if listener.protocol.uses_sasl() { State::Handshake } else { State::Authenticated };
        Session { listener, state, expires_at: None, reauth_of: None }
    }

    pub fn gate(&mut self, security: &Security, req: Request, ctx: &mut ConnContext) -> Gate {
        let version = req.version();
        match (&mut self.state, req.body) {
            (_, RequestKind::ApiVersions(r)) => Gate::Pass(Request { body: RequestKind::ApiVersions(r), ..req }),
            (State::Handshake, RequestKind::SaslHandshake(r)) => self.handshake(r),
            (State::Authenticated, RequestKind::SaslHandshake(r))
                if self.listener.protocol.uses_sasl() && self.listener.max_reauth_ms > 0 =>
            {
                // KIP-368 re-authentication on a live connection.
                self.reauth_of = Some(ctx.principal.clone());
                self.handshake(r)
            }
            (State::Authenticating(mech, scram), RequestKind::SaslAuthenticate(r)) => {
                let (mech, scram) = (*mech, scram.take());
                self.authenticate(security, mech, scram, r, version, ctx)
            }
            // Kafka answers SASL requests on a listener without SASL with ILLEGAL_SASL_STATE.
            (State::Authenticated, RequestKind::SaslHandshake(_)) if !self.listener.protocol.uses_sasl() => {
                let body = SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code());
                Gate::Answer { body: body.into(), delay: Duration::ZERO, close: false }
            }
            (State::Authenticated, RequestKind::SaslAuthenticate(_)) if !self.listener.protocol.uses_sasl() => {
                let body = SaslAuthenticateResponse::default().with_error_code(ResponseError::IllegalSaslState.code());
                Gate::Answer { body: body.into(), delay: Duration::ZERO, close: false }
            }
            (State::Authenticated, body) => {
                if matches!(body, RequestKind::SaslHandshake(_) | RequestKind::SaslAuthenticate(_)) {
                    return Gate::Close("SASL request on an authenticated connection");
                }
                if self.expires_at.is_some_and(|t| Instant::now() >= t) {
                    return Gate::Close("SASL session expired without re-authentication");
                }
                Gate::Pass(Request { body, ..req })
            }
            (_, _) => {
                tracing::info!(target: "rill::audit", event = "authentication", result = "failure",
                    principal = %ctx.principal, client = %ctx.peer, listener = %ctx.listener,
                    api = ?req.api_key, reason = "request before SASL authentication");
                Gate::Close("request in the wrong SASL state")
            }
        }
    }

    fn handshake(&mut self, r: SaslHandshakeRequest) -> Gate {
        let enabled: Vec<_> = self.listener.mechanisms.iter().map(|m| s(m.name())).collect();
        let resp = SaslHandshakeResponse::default().with_mechanisms(enabled);
        match self.listener.mechanisms.iter().find(|m| m.name() == r.mechanism.as_str()) {
            Some(m) => {
                let scram = match m {
                    Mechanism::Scram(sm) => Some(Box::new(ScramServer::new(*sm))),
                    Mechanism::Plain | Mechanism::OAuthBearer => None,
                };
                self.state = State::Authenticating(*m, scram);
                Gate::Answer { body: resp.into(), delay: Duration::ZERO, close: false }
            }
            None => Gate::Answer {
                body: resp.with_error_code(ResponseError::UnsupportedSaslMechanism.code()).into(),
                delay: Duration::ZERO,
                close: true,
            },
        }
    }

    fn authenticate(
        &mut self,
        security: &Security,
        mech: Mechanism,
        scram: Option<Box<ScramServer>>,
        r: SaslAuthenticateRequest,
        version: i16,
        ctx: &mut ConnContext,
    ) -> Gate {
        let mut token_expires_ms = None;
        let outcome = match (mech, scram) {
            (Mechanism::OAuthBearer, _) => match security.oauth.as_ref().map(|o| o.validate(&r.auth_bytes)) {
                Some(Ok(t)) => {
                    token_expires_ms = Some(t.expires_ms);
                    Step::Success { user: t.subject, reply: Vec::new() }
                }
                Some(Err(reason)) => Step::Fail(reason),
                None => Step::Fail("OAUTHBEARER is not configured"),
            },
            (Mechanism::Plain, _) => match self.plain(security, &r.auth_bytes) {
                Ok(user) => Step::Success { user, reply: Vec::new() },
                Err(reason) => Step::Fail(reason),
            },
            (Mechanism::Scram(_), Some(mut server)) => {
                let step = server.step(&r.auth_bytes, &security.users);
                if let Step::Continue(_) = step {
                    self.state = State::Authenticating(mech, Some(server));
                }
                step
            }
            (Mechanism::Scram(_), None) => Step::Fail("SCRAM state lost"),
        };
        match outcome {
            Step::Continue(bytes) => Gate::Answer {
                body: SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes)).into(),
                delay: Duration::ZERO,
                close: false,
            },
            Step::Success { user, reply } => {
                let principal = format!("User:{user}");
                if let Some(prev) = self.reauth_of.take() {
                    if prev != principal {
                        return self.fail(security, ctx, mech, "re-authentication changed the principal");
                    }
                }
                self.state = State::Authenticated;
                ctx.principal = principal;
                tracing::info!(target: "rill::audit", event = "authentication", result = "success",
                    principal = %ctx.principal, client = %ctx.peer, listener = %ctx.listener, mechanism = mech.name());
                let mut resp = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply));
                // Only v1+ can tell the client its session lifetime; older clients cannot re-authenticate.
                if self.listener.max_reauth_ms > 0 && version >= 1 {
                    // KIP-368: an OAUTHBEARER session also ends when its token does.
                    let mut lifetime = self.listener.max_reauth_ms;
                    if let Some(exp) = token_expires_ms {
                        lifetime = lifetime.min((exp - crate::broker::now_ms()).max(0));
                    }
                    resp = resp.with_session_lifetime_ms(lifetime);
                    self.expires_at = Some(Instant::now() + Duration::from_millis(lifetime as u64));
                }
                Gate::Answer { body: resp.into(), delay: Duration::ZERO, close: false }
            }
            Step::Fail(reason) => self.fail(security, ctx, mech, reason),
        }
    }

    fn fail(&mut self, security: &Security, ctx: &ConnContext, mech: Mechanism, reason: &str) -> Gate {
        let delay = security.failure_delay(ctx.peer.ip());
        tracing::warn!(target: "rill::audit", event = "authentication", result = "failure",
            principal = %ctx.principal, client = %ctx.peer, listener = %ctx.listener, mechanism = mech.name(),
            reason, delay_ms = delay.as_millis() as u64);
        let msg = format!(
            "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
            mech.name()
        );
        Gate::Answer {
            body: SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                .with_error_message(Some(s(msg)))
                .into(),
            delay,
            close: true,
        }
    }

    /// PLAIN (RFC 4616): `authzid NUL user NUL password`.
    fn plain(&self, security: &Security, bytes: &[u8]) -> Result<String, &'static str> {
        let mut parts = bytes.split(|b| *b == 0);
        let (Some(authz), Some(user), Some(pw), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("malformed PLAIN message");
        };
        let (Ok(authz), Ok(user), Ok(pw)) =
            (std::str::from_utf8(authz), std::str::from_utf8(user), std::str::from_utf8(pw))
        else {
            return Err("PLAIN message is not UTF-8");
        };
        if user.is_empty() {
            return Err("empty user name");
        }
        if !authz.is_empty() && authz != user {
            return Err("PLAIN authorization id differs from the user name");
        }
        if let Some(expected) = self.listener.plain_users.get(user) {
            return if super::ct_eq(expected.as_bytes(), pw.as_bytes()) {
                Ok(user.to_string())
            } else {
                Err("invalid credentials")
            };
        }
        // Users managed with AlterUserScramCredentials can log in with PLAIN too.
        let creds = security.users.all_of(user);
        if creds.iter().any(|(m, c)| c.verify_password(*m, pw)) {
            Ok(user.to_string())
        } else {
            Err("invalid credentials")
        }
    }
}

/// Whether `api` is part of authentication (served by the session, not the broker).
pub fn is_sasl_api(api: ApiKey) -> bool {
    matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
}
