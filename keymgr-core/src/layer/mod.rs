//! Behaviour as layers: each concern is a small type that implements [`KeyBackend`]
//! around an inner backend, as tower's middleware wraps a `Service`.
//!
//! [`KeyManagerBuilder`](crate::KeyManagerBuilder) stacks them in one place, outermost first:
//!
//! ```text
//! KeyManager (audit, verify)
//!   └ RateLimit       per key, e.g. 100 signatures / minute (opt-in; on via from_env)
//!     └ Cached        public keys, 1 h TTL, invalidated on rotation
//!       └ Retry       3 retries, 1 s / 2 s / 4 s ± 20 %, retryable errors only
//!         └ CircuitBreaker   open after 5 consecutive failures, trial after 60 s
//!           └ Timeout        per attempt, 10 s
//!             └ provider (env, aws-kms, hsm, ...) or a Failover over several,
//!               each member with its own CircuitBreaker
//! ```
//!
//! Every layer is usable on its own: `Retry::new(Timeout::new(backend, d), policy)`.

mod breaker;
mod cache;
mod failover;
mod rate_limit;
mod retry;
mod timeout;

pub use breaker::{BreakerPolicy, BreakerState, CircuitBreaker};
pub use cache::Cached;
pub use failover::Failover;
pub use rate_limit::{RateLimit, RateLimitPolicy};
pub use retry::{Retry, RetryPolicy};
pub use timeout::Timeout;
