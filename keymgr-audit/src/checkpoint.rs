//! Signed checkpoints: a statement "on node N the chain had entry `seq` with hash `hash`",
//! signed by a keymgr key so that a party that knows only the public key can check the
//! log up to that point without trusting the host that stores it.
//!
//! The signed bytes are
//!
//! ```text
//! keymgr-audit checkpoint v2\n
//! node=<node>\n
//! seq=<seq>\n
//! hash=<64 hex>\n
//! ts_ms=<ms>\n
//! prev_seq=<seq of the previous checkpoint, 0 for the first>\n
//! prev_hash=<its hash, 64 zeros for the first>\n
//! ```
//!
//! Naming the predecessor makes the checkpoints a chain of their own: a checkpoint
//! deleted from where they are published is detected like an entry deleted from the log.
//!
//! Ed25519 keys sign these bytes; secp256k1 keys sign their SHA-256 (a 32-byte prehash).

use std::collections::BTreeMap;

use keymgr_core::{
    Ed25519Signature, Error, KeyAlgorithm, KeyBackend, KeyRef, PublicKey, Result,
    Secp256k1Signature, SignPayload, Signature,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A signed statement of the chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Node that wrote the log.
    pub node: String,
    /// Sequence number of the entry vouched for.
    pub seq: u64,
    /// Its hash (hex).
    pub hash: String,
    /// When the checkpoint was made (ms since the epoch).
    pub ts_ms: u64,
    /// The signing key as `NAME` or `NAME@VERSION`.
    pub key: String,
    /// `secp256k1` or `ed25519`.
    pub algorithm: String,
    /// The public key (compressed SEC1 or 32-byte Ed25519), hex.
    pub public_key: String,
    /// The signature (`r ‖ s` or Ed25519), hex.
    pub signature: String,
    /// `seq` of the previous checkpoint of this log (0 for the first).
    pub prev_seq: u64,
    /// `hash` of the previous checkpoint ([`crate::GENESIS_HASH`] for the first).
    pub prev_hash: String,
}

const DETAIL_FIELDS: [&str; 8] = [
    "checkpoint_seq",
    "checkpoint_hash",
    "checkpoint_ts_ms",
    "algorithm",
    "public_key",
    "signature",
    "prev_checkpoint_seq",
    "prev_checkpoint_hash",
];

impl Checkpoint {
    /// The bytes whose signature the checkpoint carries (see the module docs).
    pub fn signed_message(&self) -> Vec<u8> {
        format!(
            "keymgr-audit checkpoint v2\nnode={}\nseq={}\nhash={}\nts_ms={}\nprev_seq={}\nprev_hash={}\n",
            self.node, self.seq, self.hash, self.ts_ms, self.prev_seq, self.prev_hash
        )
        .into_bytes()
    }

    fn payload(message: Vec<u8>, algorithm: KeyAlgorithm) -> SignPayload {
        match algorithm {
            KeyAlgorithm::Ed25519 => SignPayload::Message(message),
            _ => SignPayload::Prehash(Sha256::digest(&message).into()),
        }
    }

    /// Signs "on `node` the chain had `head` (seq, hash) at `ts_ms`, and the previous
    /// checkpoint was `prev`" with `key` in `backend`.
    ///
    /// Use the provider backend directly, not a `KeyManager` that audits into this log
    /// (its own SIGN_* entries would recurse into the log being checkpointed).
    pub async fn sign(
        backend: &dyn KeyBackend,
        key: &KeyRef,
        node: &str,
        head: (u64, &str),
        prev: (u64, &str),
        ts_ms: u64,
    ) -> Result<Self> {
        let public_key = backend.public_key(key).await?;
        let algorithm = public_key.algorithm();
        let mut cp = Self {
            node: node.to_owned(),
            seq: head.0,
            hash: head.1.to_owned(),
            ts_ms,
            key: key.to_string(),
            algorithm: algorithm.as_str().to_owned(),
            public_key: hex::encode(public_key.to_bytes()),
            signature: String::new(),
            prev_seq: prev.0,
            prev_hash: prev.1.to_owned(),
        };
        let payload = Self::payload(cp.signed_message(), algorithm);
        let signature = backend.sign(key, &payload).await?;
        // Never store a checkpoint that would not verify.
        public_key.verify(&payload, signature.signature())?;
        cp.signature = hex::encode(signature.to_bytes());
        Ok(cp)
    }

    /// The public key the checkpoint names (not a reason to trust it: compare it with a
    /// key you obtained independently, or use [`verify`](Self::verify) with that key).
    pub fn embedded_public_key(&self) -> Result<PublicKey> {
        let bytes = hex::decode(&self.public_key)
            .map_err(|_| Error::invalid_input("checkpoint public_key", "not hex"))?;
        match self.algorithm.as_str() {
            "ed25519" => PublicKey::from_ed25519_bytes(&bytes),
            "secp256k1" => PublicKey::from_sec1(&bytes),
            other => Err(Error::invalid_input(
                "checkpoint algorithm",
                format!("unknown algorithm {other:?}"),
            )),
        }
    }

    /// Checks the signature with `public_key` (a key the verifier trusts).
    pub fn verify(&self, public_key: &PublicKey) -> Result<()> {
        let bytes = hex::decode(&self.signature)
            .map_err(|_| Error::invalid_input("checkpoint signature", "not hex"))?;
        let signature = match public_key.algorithm() {
            KeyAlgorithm::Ed25519 => Signature::Ed25519(Ed25519Signature::from_slice(&bytes)?),
            _ => Signature::Secp256k1(Secp256k1Signature::from_raw(&bytes)?),
        };
        let payload = Self::payload(self.signed_message(), public_key.algorithm());
        public_key.verify(&payload, &signature).map_err(|_| {
            Error::integrity(
                self.key.clone(),
                format!(
                    "checkpoint signature over seq {} does not verify with public key {}",
                    self.seq,
                    hex::encode(public_key.to_bytes())
                ),
            )
        })
    }

    /// Stored as the details of an `AUDIT_CHECKPOINT` entry.
    pub(crate) fn to_details(&self) -> BTreeMap<String, String> {
        let values = [
            self.seq.to_string(),
            self.hash.clone(),
            self.ts_ms.to_string(),
            self.algorithm.clone(),
            self.public_key.clone(),
            self.signature.clone(),
            self.prev_seq.to_string(),
            self.prev_hash.clone(),
        ];
        DETAIL_FIELDS
            .iter()
            .map(|f| (*f).to_owned())
            .zip(values)
            .collect()
    }

    /// Reads a checkpoint back from an `AUDIT_CHECKPOINT` entry.
    pub fn from_entry(entry: &crate::Entry) -> std::result::Result<Self, String> {
        let get = |f: &str| {
            entry
                .details
                .get(f)
                .cloned()
                .ok_or_else(|| format!("checkpoint detail {f:?} missing"))
        };
        let num = |f: &str| -> std::result::Result<u64, String> {
            get(f)?
                .parse()
                .map_err(|_| format!("checkpoint detail {f:?} is not a number"))
        };
        let key = match &entry.key_version {
            Some(v) => format!("{}@{v}", entry.key),
            None => entry.key.clone(),
        };
        Ok(Self {
            node: entry.node.clone(),
            seq: num("checkpoint_seq")?,
            hash: get("checkpoint_hash")?,
            ts_ms: num("checkpoint_ts_ms")?,
            key,
            algorithm: get("algorithm")?,
            public_key: get("public_key")?,
            signature: get("signature")?,
            prev_seq: num("prev_checkpoint_seq")?,
            prev_hash: get("prev_checkpoint_hash")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymgr_env::EnvBackend;

    #[tokio::test]
    async fn sign_and_verify_with_both_algorithms() {
        let backend = EnvBackend::generate();
        for name in ["evm", "xrp"] {
            let key = KeyRef::new(name);
            let genesis = crate::GENESIS_HASH;
            let cp = Checkpoint::sign(
                &backend,
                &key,
                "n1",
                (7, &"ab".repeat(32)),
                (0, genesis),
                1_000,
            )
            .await
            .unwrap();
            let pk = backend.public_key(&key).await.unwrap();
            cp.verify(&pk).unwrap();
            assert_eq!(cp.embedded_public_key().unwrap(), pk);
            for forge in [
                |c: &mut Checkpoint| c.seq = 8,
                |c: &mut Checkpoint| c.prev_seq = 1,
                |c: &mut Checkpoint| c.prev_hash = "cd".repeat(32),
            ] {
                let mut forged = cp.clone();
                forge(&mut forged);
                assert!(forged.verify(&pk).is_err());
            }
            let other = EnvBackend::generate().public_key(&key).await.unwrap();
            assert!(cp.verify(&other).is_err());
        }
    }
}
