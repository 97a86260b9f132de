//! One module per request kind, each with the same shape: take the decoded request, apply it,
//! build the response.

pub mod api_versions;
pub mod configs;
pub mod elect;
pub mod fetch;
pub mod groups;
pub mod leader_hints;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod quorum;
pub mod reassign;
pub mod records;
pub mod topics;

use rill_protocol::StrBytes;

/// Shorthand for the protocol's string type.
pub(crate) fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}
