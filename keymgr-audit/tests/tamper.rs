//! Tamper detection: any single-byte edit, deleted, swapped or inserted line, or truncated
//! tail makes `verify` fail at the sequence number of the first damaged entry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::TestDir;
use keymgr_audit::{Anchor, AuditLog, BreakReason, ChainKey, Entry, Verifier, VerifyReport};
use keymgr_core::{AuditEvent, AuditRecord, AuditSink as _, Outcome};
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

const N: usize = 24;

struct Fixture {
    lines: Vec<Vec<u8>>,
    last_hash: String,
}

fn record(i: usize) -> AuditRecord {
    let mut r = AuditRecord::new(
        if i.is_multiple_of(2) {
            AuditEvent::SignRequest
        } else {
            AuditEvent::SignSuccess
        },
        "env",
        "evm",
        if i.is_multiple_of(2) {
            Outcome::Pending
        } else {
            Outcome::Success
        },
    )
    .detail("i", i.to_string())
    .detail("note", "ünïcode ✓ \"quoted\" \\ back\tslash");
    r.payload_sha256 = Some(hex::encode(Sha256::digest(i.to_le_bytes())));
    r
}

/// A real log of N entries written by the writer, as lines.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = TestDir::new("tamper-fixture");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let log = AuditLog::open_with(&dir.config(), ChainKey::sha256()).unwrap();
            for i in 0..N {
                log.record(record(i)).await.unwrap();
            }
        });
        let files = common::segment_files(dir.path());
        assert_eq!(files.len(), 1);
        let data = std::fs::read(&files[0]).unwrap();
        let lines: Vec<Vec<u8>> = data
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        assert_eq!(lines.len(), N);
        let last_hash = Entry::parse(&lines[N - 1]).unwrap().hash;
        Fixture { lines, last_hash }
    })
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

/// Verifies `bytes` as a segment file, anchored at the fixture's real head.
fn verify_bytes(bytes: &[u8]) -> VerifyReport {
    let dir = TestDir::new("tamper-case");
    let path: PathBuf = dir
        .path()
        .join(keymgr_audit::segment::file_name(1, 1_700_000_000_000));
    std::fs::write(&path, bytes).unwrap();
    Verifier::new(ChainKey::sha256())
        .anchor(Anchor {
            seq: N as u64,
            hash: Some(fixture().last_hash.clone()),
        })
        .verify_paths(&[dir.path()])
        .unwrap()
}

fn broken_seq(r: &VerifyReport) -> u64 {
    r.broken
        .as_ref()
        .unwrap_or_else(|| panic!("tampering not detected: {r:?}"))
        .seq
}

#[test]
fn untouched_fixture_verifies() {
    let r = verify_bytes(&join(&fixture().lines));
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.entries, N as u64);
    assert_eq!(r.last_seq, Some(N as u64));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn single_byte_edit(k in 0..N, pos in any::<prop::sample::Index>(), new in any::<u8>()) {
        let f = fixture();
        let mut lines = f.lines.clone();
        let mut bytes = join(&lines);
        // Position inside line k, its newline included.
        let start: usize = lines[..k].iter().map(|l| l.len() + 1).sum();
        let offset = start + pos.index(lines[k].len() + 1);
        prop_assume!(bytes[offset] != new);
        bytes[offset] = new;
        let r = verify_bytes(&bytes);
        prop_assert_eq!(broken_seq(&r), k as u64 + 1, "{:?}", r.broken);
        lines.clear();
    }

    #[test]
    fn deleted_line(k in 0..N) {
        let mut lines = fixture().lines.clone();
        lines.remove(k);
        let r = verify_bytes(&join(&lines));
        prop_assert_eq!(broken_seq(&r), k as u64 + 1, "{:?}", r.broken);
    }

    #[test]
    fn swapped_lines(a in 0..N, b in 0..N) {
        prop_assume!(a != b);
        let mut lines = fixture().lines.clone();
        lines.swap(a, b);
        let r = verify_bytes(&join(&lines));
        prop_assert_eq!(broken_seq(&r), a.min(b) as u64 + 1, "{:?}", r.broken);
        let reason = &r.broken.as_ref().unwrap().reason;
        let is_gap = matches!(reason, BreakReason::SeqGap { .. });
        prop_assert!(is_gap, "{:?}", reason);
    }

    #[test]
    fn duplicated_line(from in 0..N, at in 0..=N) {
        let mut lines = fixture().lines.clone();
        let copy = lines[from].clone();
        lines.insert(at, copy);
        // The first position whose entry is not the one that belongs there.
        let expected = lines
            .iter()
            .enumerate()
            .find(|(i, l)| Entry::parse(l).unwrap().seq != *i as u64 + 1)
            .map(|(i, _)| i as u64 + 1)
            .unwrap();
        let r = verify_bytes(&join(&lines));
        prop_assert_eq!(broken_seq(&r), expected, "{:?}", r.broken);
    }

    #[test]
    fn truncated_tail(cut in any::<prop::sample::Index>()) {
        let bytes = join(&fixture().lines);
        let cut = cut.index(bytes.len());
        // Seq of the first entry that is cut or missing.
        let complete = bytes[..cut].iter().filter(|b| **b == b'\n').count();
        let r = verify_bytes(&bytes[..cut]);
        prop_assert_eq!(broken_seq(&r), complete as u64 + 1, "{:?}", r.broken);
        let reason = &r.broken.as_ref().unwrap().reason;
        let at_boundary = cut == 0 || bytes[cut - 1] == b'\n';
        if at_boundary {
            let missing = matches!(reason, BreakReason::MissingTail { .. });
            prop_assert!(missing, "{:?}", reason);
        } else {
            prop_assert_eq!(reason, &BreakReason::TruncatedLine);
        }
    }
}

/// Without an anchor, a cut at a line boundary is a shorter valid chain: that is why
/// anchors (and signed checkpoints kept elsewhere) exist.
#[test]
fn boundary_truncation_needs_an_anchor() {
    let lines = &fixture().lines[..N - 3];
    let dir = TestDir::new("tamper-anchor");
    std::fs::write(
        dir.path()
            .join(keymgr_audit::segment::file_name(1, 1_700_000_000_000)),
        join(lines),
    )
    .unwrap();
    let plain = Verifier::default().verify_paths(&[dir.path()]).unwrap();
    assert!(plain.is_ok());
    let anchored = Verifier::default()
        .anchor(Anchor::parse(&format!("{N}")).unwrap())
        .verify_paths(&[dir.path()])
        .unwrap();
    assert_eq!(anchored.broken.unwrap().seq, N as u64 - 2);
}

/// In keyed mode, a forger who rewrites an entry and recomputes every later hash with
/// plain SHA-256 fools a plain verifier but not one holding the HMAC key.
#[test]
fn keyed_chain_resists_recomputation() {
    let key = ChainKey::hmac(&[0x42; 32]).unwrap();
    let dir = TestDir::new("tamper-keyed");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = AuditLog::open_with(&dir.config(), key.clone()).unwrap();
        for i in 0..6 {
            log.record(record(i)).await.unwrap();
        }
    });
    assert!(
        Verifier::new(key.clone())
            .verify_paths(&[dir.path()])
            .unwrap()
            .is_ok()
    );
    // The key is needed: the plain verifier rejects the genuine keyed log at seq 1.
    let plain = Verifier::default().verify_paths(&[dir.path()]).unwrap();
    assert_eq!(plain.broken.unwrap().seq, 1);

    // Forge: change entry 3's key name, re-hash 3..6 with plain SHA-256.
    let file = &common::segment_files(dir.path())[0];
    let mut entries = common::entries(dir.path());
    entries[2].key = "forged".into();
    let mut prev = entries[1].hash.clone();
    let mut out = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        if i >= 2 {
            e.prev = prev.clone();
            let mut h = Sha256::new();
            h.update(b"keymgr-audit/v1\n");
            h.update(e.canonical_body());
            e.hash = hex::encode(h.finalize());
        }
        prev = e.hash.clone();
        out.extend_from_slice(&e.canonical_line());
        out.push(b'\n');
    }
    std::fs::write(file, out).unwrap();
    let keyed = Verifier::new(key).verify_paths(&[dir.path()]).unwrap();
    let broken = keyed.broken.unwrap();
    assert_eq!(broken.seq, 3, "{broken}");
    assert!(matches!(broken.reason, BreakReason::HashMismatch { .. }));
}
