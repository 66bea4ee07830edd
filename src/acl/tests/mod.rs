//! ACL users against Redis 7.0.15: rule parsing and its errors, passwords,
//! key patterns, the `ACL LIST` line round trip (property-tested), the
//! permission check, ACL LOG grouping, and users from the metadata record.

pub(super) use std::time::{Duration, Instant};

pub(super) use bytes::Bytes;
pub(super) use proptest::prelude::*;

pub(super) use super::log::{AclLog, Event, Reason};
pub(super) use super::perm::universe;
pub(super) use super::user::{hash_password, valid_name, READ, WRITE};
pub(super) use super::{entry_name, Acl, Denied, Perms, User, Users};
pub(super) use crate::clock::Timestamp;
pub(super) use crate::metadata::Metadata;
pub(super) use crate::resp::codec::Reply;
pub(super) use crate::store::Version;

// Redis's reasons, spelled out here rather than taken from user.rs, so a
// change to them there shows up as a failure.
pub(super) const SYNTAX: &str = "Syntax error";
pub(super) const UNKNOWN: &str = "Unknown command or category name in ACL";
pub(super) const AFTER_ALLKEYS: &str = "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns";
pub(super) const AFTER_ALLCHANNELS: &str = "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels";
pub(super) const NO_SUCH_PASSWORD: &str =
    "The password you are trying to remove from the user does not exist";
pub(super) const BAD_HASH: &str = "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters";
pub(super) const SUB_FIRST_ARG: &str = "Allowing first-arg of a subcommand is not supported";

/// sha256("pw"), sha256(""), sha256("secret"), sha256("a").
pub(super) const HASH_PW: &str = "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4";
pub(super) const HASH_EMPTY: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
pub(super) const HASH_SECRET: &str =
    "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
pub(super) const HASH_A: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

pub(super) fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

/// A new user `u` with `rules` applied; panics if one is refused.
pub(super) fn user(rules: &[&str]) -> User {
    User::new(Bytes::from_static(b"u"))
        .with_rules(&args(rules))
        .unwrap_or_else(|e| panic!("{rules:?}: {e}"))
}

/// The error `rules` give on a new user.
pub(super) fn refused(rules: &[&str]) -> String {
    match User::new(Bytes::from_static(b"u")).with_rules(&args(rules)) {
        Ok(u) => panic!("{rules:?} accepted: {}", text(&u.line())),
        Err(e) => e,
    }
}

pub(super) fn modifier_error(rule: &str, reason: &str) -> String {
    format!("Error in ACL SETUSER modifier '{rule}': {reason}")
}

pub(super) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether `perms` allow the call `call` (command name first).
pub(super) fn check(perms: &Perms, call: &[&str]) -> Result<(), Denied> {
    let spec = crate::resp::cmd::lookup(call[0].as_bytes())
        .unwrap_or_else(|| panic!("no command {}", call[0]));
    let a = args(call);
    assert!(spec.arity_ok(a.len()), "bad arity in the test: {call:?}");
    perms.check(spec, &a)
}

pub(super) fn denied_command(name: &str) -> Result<(), Denied> {
    Err(Denied::Command(name.to_string()))
}

pub(super) fn denied_key(key: &str) -> Result<(), Denied> {
    Err(Denied::Key(Bytes::copy_from_slice(key.as_bytes())))
}

mod log_and_record;
mod perms;
mod round_trip;
mod rules;
