//! The error a [`Failover`](super::Failover) returns when every member failed.

use std::fmt;

use crate::{Error, ErrorKind};

/// One member's failure.
#[derive(Debug)]
pub struct MemberFailure {
    member: String,
    error: Error,
}

impl MemberFailure {
    pub(super) fn new(member: String, error: Error) -> Self {
        Self { member, error }
    }

    /// The member's name (`hsm`, `hsm:2`, `aws-kms`, ...).
    pub fn member(&self) -> &str {
        &self.member
    }

    /// What it answered.
    pub fn error(&self) -> &Error {
        &self.error
    }
}

/// Every member's failure, in member order: the `source()` of the
/// [`Error::Unavailable`] a failover returns when no member could serve a call.
#[derive(Debug)]
pub struct MemberFailures {
    operation: &'static str,
    key: String,
    failures: Vec<MemberFailure>,
}

impl MemberFailures {
    pub(super) fn new(operation: &'static str, key: &str, failures: Vec<MemberFailure>) -> Self {
        Self {
            operation,
            key: key.to_owned(),
            failures,
        }
    }

    /// Each member's failure, in order of preference.
    pub fn failures(&self) -> &[MemberFailure] {
        &self.failures
    }

    /// The operation that failed (`sign`, `public_key`, ...).
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The logical key it was for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The failover's error: [`Error::Unavailable`] (or [`Error::Throttled`] when every
    /// member was throttled, so callers back off), listing each member's failure, with
    /// `self` as its source.
    pub(super) fn into_error(self) -> Error {
        let detail = format!(
            "every failover member failed to {} {}: {self}",
            self.operation, self.key
        );
        let throttled = !self.failures.is_empty()
            && self
                .failures
                .iter()
                .all(|f| f.error.kind() == ErrorKind::Throttled);
        if throttled {
            Error::throttled("failover", detail, Some(Box::new(self)))
        } else {
            Error::unavailable("failover", detail, Some(Box::new(self)))
        }
    }
}

impl fmt::Display for MemberFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            return f.write_str("no member was tried");
        }
        for (i, failure) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", failure.member, failure.error)?;
        }
        Ok(())
    }
}

impl std::error::Error for MemberFailures {}
