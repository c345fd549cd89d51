//! keymgr-rotation: scheduled key rotation with overlap, notice and approval.
//!
//! This crate owns rotation: there is no other rotation path in keymgr.
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
//! key they were opened with: every [`RotationResult`] carries both public keys (with
//! their EVM address and XRPL public key / account) and says so. Old versions stay usable
//! (explicitly, `NAME@VERSION`) until their overlap ends and are then disabled in the
//! backend, never deleted — unless the operator opts in
//! ([`RotationPolicy::keep_versions`], `HSM_KEEP_VERSIONS`): then disabled versions
//! beyond the newest N are deleted after each rotation, each audited as `KEY_DELETED`.
//!
//! With approval on (`KEYMGR_ROTATION_APPROVAL=true` or `KEYMGR_PROFILE=production`) a
//! rotation is a recorded [`RotationRequest`] that an actor other than the requester
//! [approves](Rotator::approve) before it expires; requests, approvals, refusals and
//! expiries are audit events naming both actors.
//!
//! ```
//! use std::sync::Arc;
//! use keymgr_core::KeyManager;
//! use keymgr_rotation::{MemoryStateStore, RotationPolicy, Rotator, SystemClock};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> keymgr_core::Result<()> {
//! # let backend: Arc<dyn keymgr_core::KeyBackend> = Arc::new(keymgr_env::EnvBackend::generate());
//! let manager = KeyManager::builder(backend).actor("ops-alice").build();
//! // The rotator uses the manager's backend stack and audit sink, never a second copy.
//! let rotator = Rotator::from_manager(
//!     &manager,
//!     Arc::new(MemoryStateStore::default()),
//!     RotationPolicy::default(),
//!     Arc::new(SystemClock),
//! )?;
//! let events = rotator.tick("evm").await?; // nothing due yet for a fresh key
//! assert!(events.is_empty());
//! # Ok(()) }
//! ```

mod approval;
mod clock;
mod file_store;
mod policy;
mod process;
mod result;
mod rotator;
mod scheduler;
mod status;
mod store;

pub use approval::SCHEDULE_ACTOR;
pub use clock::{Clock, ManualClock, SystemClock};
pub use file_store::FileStateStore;
pub use policy::{
    HSM_KEEP_VERSIONS, KEYMGR_PROFILE, KEYMGR_ROTATION_APPROVAL,
    KEYMGR_ROTATION_APPROVAL_TTL_HOURS, KEYMGR_ROTATION_ENABLED, KEYMGR_ROTATION_INTERVAL_DAYS,
    KEYMGR_ROTATION_NOTICE_DAYS, KEYMGR_ROTATION_OVERLAP_DAYS, KEYMGR_ROTATION_STATE_PATH,
    RotationPolicy,
};
pub use process::ProcessId;
pub use result::{RotatedKey, RotationEvent, RotationResult, xrpl_channel_warning};
pub use rotator::{Rotator, deletable_versions};
pub use scheduler::{Scheduler, SchedulerHandle};
pub use status::{KeyStatus, Lifecycle, VersionStatus};
pub use store::{
    KeyState, LeaseInfo, LeaseOutcome, MemoryStateStore, Phase, RequestKind, RotationRequest,
    StateStore, Step,
};
