//! One log entry, its canonical encoding and the chain hash.
//!
//! A line is the compact JSON of an [`Entry`] with its fields in declaration order,
//! `details` sorted by name and absent options omitted; `hash` comes last. The hash
//! covers everything before it:
//!
//! ```text
//! hash = SHA-256("keymgr-audit/v1\n" ‖ body)            (plain mode)
//! hash = HMAC-SHA-256(key, "keymgr-audit/v1\n" ‖ body)  (keyed mode)
//! body = the line up to (excluding) `,"hash":"…"}`, closed with `}`
//! ```
//!
//! `body` contains `prev`, the previous entry's hash, so each entry commits to the whole
//! log before it. Verification re-encodes every parsed entry and requires the line to be
//! byte-for-byte that encoding, so even an edit that keeps the JSON meaning is detected.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac as _};
use keymgr_core::{Error, Result, SignContext};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Domain separation for entry hashes (bumped if the encoding ever changes).
pub(crate) const DOMAIN: &[u8] = b"keymgr-audit/v1\n";

/// `prev` of the first entry ever written (64 zeros).
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Event names the log itself writes (next to keymgr's [`keymgr_core::AuditEvent`]s).
pub mod events {
    /// A (possibly signed) statement of the chain head: see [`crate::Checkpoint`].
    pub const CHECKPOINT: &str = "AUDIT_CHECKPOINT";
    /// Older segments were removed by retention; details say which seq/hash the
    /// remaining chain continues from.
    pub const RETENTION: &str = "AUDIT_RETENTION";
    /// Entries were lost after an I/O error (fail-open or buffered mode).
    pub const GAP: &str = "AUDIT_GAP";
}

/// Backend name used for entries the log writes itself.
pub const LOG_BACKEND: &str = "keymgr-audit";

/// One audit log entry as stored (one JSON line).
///
/// `event`, `outcome` and `error_kind` are kept as strings so that a verifier built
/// before a new event type existed still verifies logs that contain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Sequence number: 1 for the first entry, +1 for each next.
    pub seq: u64,
    /// Milliseconds since the Unix epoch (UTC); never decreases along the chain.
    pub ts_ms: u64,
    /// `ts_ms` as RFC 3339 (for log shippers and people).
    pub time: String,
    /// Which node (host, pod) wrote it.
    pub node: String,
    /// Backend name (`env`, `aws-kms`, ...; `keymgr-audit` for the log's own entries).
    pub backend: String,
    /// `SIGN_REQUEST`, `SIGN_SUCCESS`, ..., or one of [`events`].
    pub event: String,
    /// Logical key name (empty when not about a key).
    pub key: String,
    /// Key version, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<String>,
    /// Hex SHA-256 of the signed payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
    /// Who asked, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// `pending`, `success`, `failure` or `denied`.
    pub outcome: String,
    /// Error category on failure (`not_found`, `unavailable`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// Extra context, already redacted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// What was signed, as typed fields (chain id, recipient, channel, amount, ...), when
    /// the adapter said; see [`SignContext`]. Absent in entries without it, so logs
    /// written before it existed keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<SignContext>,
    /// Hash of the previous entry ([`GENESIS_HASH`] for seq 1).
    pub prev: String,
    /// Hash of this entry (see the module docs).
    pub hash: String,
}

/// The hashed part of an entry: every field but `hash`, in the same order.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    ts_ms: u64,
    time: &'a str,
    node: &'a str,
    backend: &'a str,
    event: &'a str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<&'a str>,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_kind: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    details: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a SignContext>,
    prev: &'a str,
}

impl Entry {
    fn body(&self) -> Body<'_> {
        Body {
            seq: self.seq,
            ts_ms: self.ts_ms,
            time: &self.time,
            node: &self.node,
            backend: &self.backend,
            event: &self.event,
            key: &self.key,
            key_version: self.key_version.as_deref(),
            payload_sha256: self.payload_sha256.as_deref(),
            actor: self.actor.as_deref(),
            outcome: &self.outcome,
            error_kind: self.error_kind.as_deref(),
            details: &self.details,
            context: self.context.as_ref(),
            prev: &self.prev,
        }
    }

    /// The canonical encoding of everything but `hash` (what the hash covers).
    pub fn canonical_body(&self) -> Vec<u8> {
        // Serializing plain strings, integers and a string map cannot fail.
        serde_json::to_vec(&self.body()).unwrap_or_default()
    }

    /// Computes `hash` with `key` and returns the full line (with trailing `\n`).
    pub(crate) fn seal(&mut self, key: &ChainKey) -> Vec<u8> {
        let mut line = self.canonical_body();
        self.hash = hex::encode(key.digest(&line));
        finish_line(&mut line, &self.hash);
        line
    }

    /// The exact line this entry is stored as (without the trailing `\n`), given its
    /// current `hash`.
    pub fn canonical_line(&self) -> Vec<u8> {
        let mut line = self.canonical_body();
        finish_line(&mut line, &self.hash);
        line.pop();
        line
    }

    /// Parses one stored line (without its `\n`).
    pub fn parse(line: &[u8]) -> std::result::Result<Self, String> {
        serde_json::from_slice(line).map_err(|e| format!("not a valid entry: {e}"))
    }
}

fn finish_line(body: &mut Vec<u8>, hash: &str) {
    // body ends with '}': reopen it and append the hash as the last field.
    body.pop();
    body.extend_from_slice(b",\"hash\":\"");
    body.extend_from_slice(hash.as_bytes());
    body.extend_from_slice(b"\"}\n");
}

/// How entry hashes are computed: plain SHA-256, or HMAC-SHA-256 with a secret key so
/// that someone with write access to the files cannot recompute a forged chain.
///
/// A verifier must be told the mode; it never guesses it from the log (a forger could
/// otherwise rewrite a keyed log as an unkeyed one).
#[derive(Clone)]
pub struct ChainKey(Option<Hmac<Sha256>>);

impl ChainKey {
    /// Plain SHA-256 chain.
    pub fn sha256() -> Self {
        Self(None)
    }

    /// Keyed chain: HMAC-SHA-256 with `key` (at least 16 bytes).
    pub fn hmac(key: &[u8]) -> Result<Self> {
        if key.len() < 16 {
            return Err(Error::invalid_input(
                "audit HMAC key",
                format!("must be at least 16 bytes, got {}", key.len()),
            ));
        }
        let mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(key)
            .map_err(|_| Error::invalid_input("audit HMAC key", "rejected by HMAC"))?;
        Ok(Self(Some(mac)))
    }

    /// Whether this is the keyed mode.
    pub fn is_keyed(&self) -> bool {
        self.0.is_some()
    }

    /// `sha256` or `hmac-sha256`.
    pub fn mode(&self) -> &'static str {
        if self.is_keyed() {
            "hmac-sha256"
        } else {
            "sha256"
        }
    }

    pub(crate) fn digest(&self, body: &[u8]) -> [u8; 32] {
        match &self.0 {
            None => {
                let mut h = Sha256::new();
                h.update(DOMAIN);
                h.update(body);
                h.finalize().into()
            }
            Some(mac) => {
                let mut m = mac.clone();
                m.update(DOMAIN);
                m.update(body);
                m.finalize().into_bytes().into()
            }
        }
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("ChainKey::Sha256"),
            Some(_) => f.write_str("ChainKey::HmacSha256([REDACTED])"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            seq: 1,
            ts_ms: 1_700_000_000_000,
            time: crate::time::format_rfc3339(1_700_000_000_000),
            node: "n1".into(),
            backend: "env".into(),
            event: "SIGN_REQUEST".into(),
            key: "evm".into(),
            key_version: None,
            payload_sha256: Some("ab".repeat(32)),
            actor: None,
            outcome: "pending".into(),
            error_kind: None,
            details: BTreeMap::from([("payload_kind".into(), "prehash".into())]),
            context: None,
            prev: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn sealed_line_round_trips_and_is_canonical() {
        let mut e = entry();
        let line = e.seal(&ChainKey::sha256());
        assert_eq!(line.last(), Some(&b'\n'));
        let parsed = Entry::parse(&line[..line.len() - 1]).unwrap();
        assert_eq!(parsed, e);
        assert_eq!(parsed.canonical_line(), &line[..line.len() - 1]);
        let expected = {
            let mut h = Sha256::new();
            h.update(DOMAIN);
            h.update(parsed.canonical_body());
            hex::encode(h.finalize())
        };
        assert_eq!(parsed.hash, expected);
        let text = String::from_utf8(line).unwrap();
        assert!(
            text.starts_with(
                "{\"seq\":1,\"ts_ms\":1700000000000,\"time\":\"2023-11-14T22:13:20.000Z\""
            ),
            "{text}"
        );
        assert!(text.ends_with(&format!(",\"hash\":\"{}\"}}\n", e.hash)));
    }

    #[test]
    fn keyed_hash_differs_and_key_is_redacted() {
        let mut a = entry();
        let mut b = entry();
        a.seal(&ChainKey::sha256());
        let key = ChainKey::hmac(&[0x5A; 32]).unwrap();
        b.seal(&key);
        assert_ne!(a.hash, b.hash);
        let dbg = format!("{key:?}");
        assert!(!dbg.contains("5a") && !dbg.contains("90") && dbg.contains("REDACTED"));
        assert!(ChainKey::hmac(&[1; 8]).is_err());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let mut e = entry();
        let line = e.seal(&ChainKey::sha256());
        let text = String::from_utf8(line).unwrap();
        let forged = text.replacen("{\"seq\"", "{\"x\":1,\"seq\"", 1);
        assert!(Entry::parse(forged.trim_end().as_bytes()).is_err());
    }

    #[test]
    fn context_is_canonical_and_covered_by_the_hash() {
        let mut e = entry();
        e.context = Some(SignContext::XrpChannelClaim {
            channel_id: "5D".repeat(32),
            amount_drops: 1_000_000,
        });
        let key = ChainKey::sha256();
        let line = e.seal(&key);
        let parsed = Entry::parse(&line[..line.len() - 1]).unwrap();
        assert_eq!(parsed, e);
        assert_eq!(parsed.canonical_line(), &line[..line.len() - 1]);
        // An edited amount still parses, but no longer hashes to the stored hash.
        let text = String::from_utf8(line).unwrap();
        let forged = text.replace("1000000", "9000000");
        let mut edited = Entry::parse(forged.trim_end().as_bytes()).unwrap();
        let stored = edited.hash.clone();
        edited.seal(&key);
        assert_ne!(edited.hash, stored);
        // Without a context the encoding is what it was before the field existed.
        let mut plain = entry();
        let text = String::from_utf8(plain.seal(&key)).unwrap();
        assert!(!text.contains("context"), "{text}");
    }
}
