//! keymgr-rotation: scheduled key rotation with overlap, notice and approval.
//!
//! A logical key (`evm-settlement`) has versions in its backend. [`Rotator`] moves it
//! through `Idle → notice → [awaiting approval →] Creating → Overlapping → Disabling →
//! Idle` on a [`RotationPolicy`] (default: every 90 days, 7 days overlap, notice 14 days
//! before), persisting an intent in a [`StateStore`] before every side effect so a crash
//! at any step resumes without orphan keys and without a moment with no valid version.
//! [`Scheduler`] runs it on tokio; time comes from a [`Clock`] so tests run 90-day
//! schedules in milliseconds.
//!
//! **Rotating an EVM key changes its address**, and XRPL payment channels keep the public
//! key they were opened with: every [`RotationResult`] carries both public keys and says
//! so. Old versions stay usable (explicitly, `NAME@VERSION`) until their overlap ends and
//! are then disabled in the backend, never deleted.
//!
//! ```
//! use std::sync::Arc;
//! use keymgr_core::TracingAuditSink;
//! use keymgr_rotation::{MemoryStateStore, RotationPolicy, Rotator, SystemClock};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> keymgr_core::Result<()> {
//! # let backend: Arc<dyn keymgr_core::KeyBackend> = Arc::new(keymgr_env::EnvBackend::generate());
//! let rotator = Rotator::new(
//!     backend,
//!     Arc::new(MemoryStateStore::default()),
//!     Arc::new(TracingAuditSink),
//!     RotationPolicy::default(),
//!     Arc::new(SystemClock),
//!     "host-a:1234",
//! )?;
//! let events = rotator.tick("evm").await?; // nothing due yet for a fresh key
//! assert!(events.is_empty());
//! # Ok(()) }
//! ```

mod clock;
mod policy;
mod rotator;
mod scheduler;
mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use policy::{
    KEYMGR_PROFILE, KEYMGR_ROTATION_APPROVAL, KEYMGR_ROTATION_ENABLED,
    KEYMGR_ROTATION_INTERVAL_DAYS, KEYMGR_ROTATION_NOTICE_DAYS, KEYMGR_ROTATION_OVERLAP_DAYS,
    KEYMGR_ROTATION_STATE_PATH, RotationPolicy,
};
pub use rotator::{KeyStatus, Lifecycle, RotationEvent, RotationResult, Rotator, VersionLifecycle};
pub use scheduler::{Scheduler, SchedulerHandle};
pub use store::{FileStateStore, KeyState, MemoryStateStore, Phase, StateStore};
