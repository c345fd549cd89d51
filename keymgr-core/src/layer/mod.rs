//! Behaviour as layers: each concern is a small type that implements [`KeyBackend`]
//! around an inner backend, as tower's middleware wraps a `Service`.
//!
//! [`KeyManagerBuilder`](crate::KeyManagerBuilder) stacks them in one place, outermost first:
//!
//! ```text
//! KeyManager (audit, policy)
//!   └ Cached        public keys, 1 h TTL, invalidated on rotation
//!     └ Retry       3 retries, 1 s / 2 s / 4 s + jitter, retryable errors only
//!       └ Timeout   per attempt
//!         └ provider (env, aws-kms, gcp-kms, azure-kv, hsm) or a failover set
//! ```
//!
//! Every layer is usable on its own: `Retry::new(Timeout::new(backend, d), policy)`.

mod cache;
mod retry;
mod timeout;

pub use cache::Cached;
pub use retry::{Retry, RetryPolicy};
pub use timeout::Timeout;
