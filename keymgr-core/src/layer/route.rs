//! Which [`Failover`](super::Failover) member served a call, and why earlier members
//! were skipped: recorded while a future runs inside [`traced`], so the
//! [`KeyManager`](crate::KeyManager) can write it into the audit entry of that call.
//!
//! The record is task-local: concurrent calls never see each other's route, and a
//! call outside [`traced`] records nothing (and costs one task-local lookup).

use std::cell::RefCell;
use std::future::Future;

use crate::Error;

/// The route one call took through failover members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// The member that served the call, if one did.
    pub served_by: Option<String>,
    /// Members skipped before it, with why (availability failures only).
    pub skipped: Vec<Skipped>,
    /// The member whose non-availability error ended the call, if one did.
    pub failed_at: Option<String>,
}

/// A member that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Member name.
    pub member: String,
    /// The error kind (`unavailable`, `timeout`, `throttled`).
    pub kind: &'static str,
    /// The error message.
    pub reason: String,
}

impl Route {
    /// Whether any failover member was involved.
    pub fn is_empty(&self) -> bool {
        self.served_by.is_none() && self.skipped.is_empty() && self.failed_at.is_none()
    }

    /// The skipped members as one line: `hsm: unavailable (...); hsm:2: timeout (...)`.
    pub fn skipped_summary(&self) -> String {
        self.skipped
            .iter()
            .map(|s| format!("{}: {} ({})", s.member, s.kind, s.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

tokio::task_local! {
    static ROUTE: RefCell<Route>;
}

/// Runs `fut`, returning its output and the failover route it took.
pub async fn traced<F: Future>(fut: F) -> (F::Output, Route) {
    ROUTE
        .scope(RefCell::new(Route::default()), async move {
            let out = fut.await;
            let route = ROUTE.with(|r| std::mem::take(&mut *r.borrow_mut()));
            (out, route)
        })
        .await
}

fn with(f: impl FnOnce(&mut Route)) {
    let _ = ROUTE.try_with(|r| f(&mut r.borrow_mut()));
}

pub(crate) fn served(member: &str) {
    with(|r| r.served_by = Some(member.to_owned()));
}

pub(crate) fn skipped(member: &str, error: &Error) {
    with(|r| {
        r.skipped.push(Skipped {
            member: member.to_owned(),
            kind: error.kind().as_str(),
            reason: error.to_string(),
        })
    });
}

pub(crate) fn failed(member: &str, _error: &Error) {
    with(|r| r.failed_at = Some(member.to_owned()));
}
