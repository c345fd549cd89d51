#![doc = include_str!("../README.md")]

mod checkpoint;
pub mod config;
mod entry;
mod export;
mod files;
mod lock;
mod log;
pub mod publish;
pub mod recovery;
pub mod redact;
mod report;
pub mod segment;
pub mod time;
mod verify;
mod writer;

pub use checkpoint::Checkpoint;
pub use config::{AuditConfig, Durability, FailurePolicy, HmacKeySource};
pub use entry::{ChainKey, Entry, GENESIS_HASH, LOG_BACKEND, events};
pub use export::{ExportReport, TimeRange, export, export_file};
pub use lock::{LOCK_FILE, LogLocked};
pub use log::{AuditLog, AuditStatus, Head, sink_from_source, sink_from_vars};
pub use recovery::{RecoveryPlan, Refusal};
pub use verify::{
    Anchor, BreakReason, BrokenLink, CHECKPOINT_WINDOW, Verifier, VerifyReport, VerifyWarning,
};
