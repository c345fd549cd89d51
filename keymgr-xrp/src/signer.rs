//! [`ClaimSigner`]: signs claims with a key held by any backend.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use keymgr_core::{
    Error, ErrorKind, IntegrityReason, KeyAlgorithm, KeyBackend, KeyRef, SignContext, SignPayload,
    Signature, xrpl,
};

use crate::{ChannelId, Drops, IntoChannelId, IntoDrops, XrpError, XrplPublicKey, encode_claim};

/// The highest amount signed per channel; each channel has its own async lock so that
/// claims on one channel are checked and signed one at a time.
#[derive(Default)]
struct MonotonicGuard {
    channels: Mutex<HashMap<ChannelId, Arc<tokio::sync::Mutex<Option<Drops>>>>>,
}

impl MonotonicGuard {
    fn slot(&self, channel: &ChannelId) -> Arc<tokio::sync::Mutex<Option<Drops>>> {
        // The map is only ever inserted into; a panic elsewhere cannot leave it inconsistent.
        let mut map = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(*channel).or_default().clone()
    }
}

/// Signs XRP Ledger payment-channel claims with one key of a [`KeyBackend`].
///
/// The key's algorithm comes from the public key the backend reports when the signer is
/// built: Ed25519 keys sign the encoded claim, secp256k1 keys sign its SHA-512Half and
/// the signature is returned DER-encoded with low s, as rippled requires. The backend
/// verified every signature once (a [`keymgr_core::VerifiedSignature`]); the signer checks
/// that it verified against this signer's public key and over this claim (equality, no
/// second verification), so a key that was rotated behind the signer's back is an error,
/// never a claim the channel rejects. Each claim is audited with its channel id and
/// amount ([`SignContext::XrpChannelClaim`]).
///
/// By default a monotonic guard refuses to sign a lower amount for a channel than one
/// this signer already signed (claims are cumulative; a lower one is a bookkeeping bug).
///
/// # Bound to one key version
///
/// Like `keymgr_evm::EvmSigner`, a signer built for an unversioned key pins the version
/// that is current then (`xrp` becomes e.g. `xrp@3`), because a payment channel is bound
/// to the public key it was opened with. After a rotation it keeps signing with that
/// version while the backend keeps it enabled (the overlap);
/// [`check_rotation`](Self::check_rotation) tells that the key moved on and
/// [`to_current_version`](Self::to_current_version) builds the signer for new channels.
/// Backends without versions bind to the name.
pub struct ClaimSigner<B = Arc<dyn KeyBackend>> {
    backend: B,
    key: KeyRef,
    public_key: XrplPublicKey,
    address: String,
    guard: Option<MonotonicGuard>,
}

/// Builds a [`ClaimSigner`]; see [`ClaimSigner::builder`].
pub struct ClaimSignerBuilder<B = Arc<dyn KeyBackend>> {
    backend: B,
    key: KeyRef,
    monotonic_guard: bool,
}

impl<B: KeyBackend> ClaimSignerBuilder<B> {
    /// Turns the monotonic amount guard on (the default) or off.
    pub fn monotonic_guard(mut self, enabled: bool) -> Self {
        self.monotonic_guard = enabled;
        self
    }

    /// Pins the key's current version (unless the key names one), fetches its public key
    /// from the backend and builds the signer.
    pub async fn build(self) -> Result<ClaimSigner<B>, XrpError> {
        let key = resolve_version(&self.backend, self.key).await?;
        let public_key = self.backend.public_key(&key).await?;
        match public_key.algorithm() {
            KeyAlgorithm::Ed25519 | KeyAlgorithm::Secp256k1 => {}
            other => {
                return Err(Error::unsupported(
                    self.backend.name(),
                    "sign_claim",
                    format!("key {key} is {other}; XRPL claims need an Ed25519 or secp256k1 key"),
                )
                .into());
            }
        }
        let public_key = XrplPublicKey::from(public_key);
        Ok(ClaimSigner {
            address: public_key.classic_address(),
            public_key,
            backend: self.backend,
            key,
            guard: self.monotonic_guard.then(MonotonicGuard::default),
        })
    }
}

/// What [`ClaimSigner::check_rotation`] found: the logical key now resolves to another
/// version, with another XRPL public key and account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// The version the signer is bound to (channels opened with it need it).
    pub bound: KeyRef,
    /// Its public key in XRPL form.
    pub bound_public_key: XrplPublicKey,
    /// The version the logical key resolves to now.
    pub current: KeyRef,
    /// Its public key in XRPL form: open new channels with it.
    pub current_public_key: XrplPublicKey,
    /// Its classic account address.
    pub current_account: String,
}

/// The version `key` pins: itself when it names one, else the backend's current version
/// (or the bare name for backends without versions).
async fn resolve_version<B: KeyBackend + ?Sized>(
    backend: &B,
    key: KeyRef,
) -> Result<KeyRef, Error> {
    if key.version().is_some() {
        return Ok(key);
    }
    match backend.list_versions(key.name()).await {
        Ok(versions) => versions
            .into_iter()
            .find(|v| v.current)
            .map(|v| v.key)
            .ok_or_else(|| {
                Error::not_found(
                    key.to_string(),
                    format!(
                        "the {} backend lists no current version of this key",
                        backend.name()
                    ),
                )
            }),
        Err(e) if e.kind() == ErrorKind::Unsupported => Ok(key),
        Err(e) => Err(e),
    }
}

impl<B: KeyBackend> ClaimSigner<B> {
    /// A signer for `key` — the version it names, or the current version, pinned — with
    /// the monotonic guard on.
    pub async fn new(backend: B, key: impl Into<KeyRef>) -> Result<Self, XrpError> {
        Self::builder(backend, key).build().await
    }

    /// A builder, to configure the monotonic guard.
    pub fn builder(backend: B, key: impl Into<KeyRef>) -> ClaimSignerBuilder<B> {
        ClaimSignerBuilder {
            backend,
            key: key.into(),
            monotonic_guard: true,
        }
    }

    /// The key version this signer is bound to (`NAME@VERSION`, or the bare name on
    /// backends without versions).
    pub fn key(&self) -> &KeyRef {
        &self.key
    }

    /// The backend this signer signs through.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// `Some` when the logical key now resolves to another version than the one this
    /// signer is bound to (it was rotated): new channels should use the current one.
    /// `None` when it is unchanged, or the backend has no versions.
    pub async fn check_rotation(&self) -> Result<Option<KeyChange>, XrpError> {
        let current = resolve_version(&self.backend, self.key.unversioned()).await?;
        if current == self.key || current.version().is_none() {
            return Ok(None);
        }
        let current_public_key = XrplPublicKey::from(self.backend.public_key(&current).await?);
        Ok(Some(KeyChange {
            bound: self.key.clone(),
            bound_public_key: self.public_key.clone(),
            current_account: current_public_key.classic_address(),
            current,
            current_public_key,
        }))
    }

    /// A signer for the logical key's current version (same guard setting, a fresh
    /// guard: new channels), e.g. after [`check_rotation`](Self::check_rotation).
    pub async fn to_current_version(&self) -> Result<Self, XrpError>
    where
        B: Clone,
    {
        ClaimSigner::builder(self.backend.clone(), self.key.unversioned())
            .monotonic_guard(self.guard.is_some())
            .build()
            .await
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.public_key.algorithm()
    }

    /// The public key in XRPL form (`Display`: `ED…` or `02…`/`03…` uppercase hex): the
    /// `PublicKey` of the `PaymentChannelCreate` that opened the channel.
    pub fn public_key(&self) -> &XrplPublicKey {
        &self.public_key
    }

    /// The classic address (`r...`) of the key.
    pub fn account_address(&self) -> &str {
        &self.address
    }

    /// Whether the monotonic amount guard is on.
    pub fn monotonic_guard(&self) -> bool {
        self.guard.is_some()
    }

    /// Signs a claim for `amount` drops (cumulative) on `channel`; returns the signature
    /// as uppercase hex, as XRPL tools print it.
    ///
    /// Malformed inputs are [`XrpError`]s naming the field; with the monotonic guard on,
    /// an amount below one already signed for the channel is
    /// [`XrpError::AmountDecreased`]; re-signing the same amount is allowed.
    pub async fn sign_claim(
        &self,
        channel: impl IntoChannelId,
        amount: impl IntoDrops,
    ) -> Result<String, XrpError> {
        let channel = channel.into_channel_id()?;
        let amount = amount.into_drops()?;
        let Some(guard) = &self.guard else {
            return self.sign_unguarded(&channel, amount).await;
        };
        let slot = guard.slot(&channel);
        let mut highest = slot.lock().await;
        if let Some(previous) = *highest
            && amount < previous
        {
            return Err(XrpError::AmountDecreased {
                channel,
                previous,
                requested: amount,
            });
        }
        let signature = self.sign_unguarded(&channel, amount).await?;
        *highest = Some(highest.map_or(amount, |p| p.max(amount)));
        Ok(signature)
    }

    /// The highest amount this signer has signed (or was told about) for `channel`;
    /// `None` without the guard.
    pub async fn last_signed(&self, channel: &ChannelId) -> Option<Drops> {
        let guard = self.guard.as_ref()?;
        *guard.slot(channel).lock().await
    }

    /// Tells the guard that a claim for `amount` was already issued on `channel` (for
    /// example the last claim stored before a restart), so lower amounts are refused.
    /// Never lowers what the guard already knows; a no-op without the guard.
    pub async fn record_signed(&self, channel: &ChannelId, amount: Drops) {
        if let Some(guard) = &self.guard {
            let slot = guard.slot(channel);
            let mut highest = slot.lock().await;
            *highest = Some(highest.map_or(amount, |p| p.max(amount)));
        }
    }

    async fn sign_unguarded(&self, channel: &ChannelId, amount: Drops) -> Result<String, XrpError> {
        let context = SignContext::XrpChannelClaim {
            channel_id: channel.to_string(),
            amount_drops: amount.get(),
        };
        let signature = self
            .sign_data(&encode_claim(channel, amount), &context)
            .await?;
        Ok(hex::encode_upper(signature))
    }

    /// Signs `data` the way XRPL signs (ripple-keypairs `sign`): Ed25519 over the data,
    /// secp256k1 over SHA-512Half(data) as low-s DER. Private: claims go through the
    /// guard, and nothing else should be signed with a claim key.
    async fn sign_data(&self, data: &[u8], context: &SignContext) -> Result<Vec<u8>, XrpError> {
        let payload = match self.algorithm() {
            KeyAlgorithm::Secp256k1 => SignPayload::Prehash(xrpl::sha512_half(data)),
            _ => SignPayload::message(data.to_vec()),
        };
        let verified = self
            .backend
            .sign_with_context(&self.key, &payload, context)
            .await?;
        // The backend verified the signature (VerifiedSignature is made only by
        // verifying): checking that it verified against the key this signer was built
        // with (a channel is bound to one public key), over this claim, is an equality
        // test, not a second verification.
        if verified.public_key() != self.public_key.as_public_key() {
            return Err(Error::integrity_failure(
                self.key.to_string(),
                IntegrityReason::KeyChanged,
                format!(
                    "the {} backend signed the claim with another key than public key {} this \
                     signer was built with (was the key rotated? bind the signer to an explicit \
                     version, NAME@VERSION)",
                    self.backend.name(),
                    self.public_key
                ),
            )
            .into());
        }
        if !verified.is_over(&payload) {
            return Err(Error::integrity_failure(
                self.key.to_string(),
                IntegrityReason::PayloadMismatch,
                format!(
                    "the {} backend returned a signature over another payload than this claim",
                    self.backend.name()
                ),
            )
            .into());
        }
        let signature = match verified.into_signature() {
            Signature::Ed25519(s) => s.to_bytes().to_vec(),
            // Backends return low-s signatures; DER is what XRPL carries.
            Signature::Secp256k1(s) => s.to_der(),
        };
        Ok(signature)
    }
}

impl<B: KeyBackend> fmt::Debug for ClaimSigner<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimSigner")
            .field("backend", &self.backend.name())
            .field("key", &self.key.to_string())
            .field("public_key", &self.public_key)
            .field("address", &self.address)
            .field("monotonic_guard", &self.guard.is_some())
            .finish()
    }
}

impl<B: KeyBackend> fmt::Debug for ClaimSignerBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimSignerBuilder")
            .field("backend", &self.backend.name())
            .field("key", &self.key.to_string())
            .field("monotonic_guard", &self.monotonic_guard)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymgr_env::EnvBackend;

    async fn signer(seed: &str) -> ClaimSigner {
        let backend = EnvBackend::new().with_xrpl_seed("xrp", seed).unwrap();
        let backend: Arc<dyn KeyBackend> = Arc::new(backend);
        ClaimSigner::new(backend, "xrp").await.unwrap()
    }

    /// ripple-keypairs fixtures (xrpl.js packages/ripple-keypairs/test/fixtures/api.json):
    /// `sign(hex("test message"), privateKey)` for both seeds. These pin the XRPL signing
    /// path byte for byte: SHA-512Half + RFC 6979 + low-s DER for secp256k1, pure Ed25519.
    #[tokio::test]
    async fn ripple_keypairs_message_signatures() {
        let raw = SignContext::RawMessage { message_len: 12 };
        let secp = signer("sp5fghtJtpUorTwvof1NpDXAzNwf5").await;
        assert_eq!(
            hex::encode_upper(secp.sign_data(b"test message", &raw).await.unwrap()),
            "30440220583A91C95E54E6A651C47BEC22744E0B101E2C4060E7B08F6341657DAD9BC3EE02207D1489C7395DB0188D3A56A977ECBA54B36FA9371B40319655B1B4429E33EF2D"
        );
        let ed = signer("sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r").await;
        assert_eq!(
            hex::encode_upper(ed.sign_data(b"test message", &raw).await.unwrap()),
            "CB199E1BFD4E3DAA105E4832EEDFA36413E1F44205E4EFB9E27E826044C21E3E2E848BBC8195E8959BADF887599B7310AD1B7047EF11B682E0D068F73749750E"
        );
    }

    #[tokio::test]
    async fn debug_shows_no_secret() {
        let seed = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";
        let s = signer(seed).await;
        let d = format!("{s:?}");
        assert!(!d.contains(seed), "{d}");
        // The Ed25519 private key is SHA-512Half of the seed entropy
        // (ripple-keypairs fixture privateKey ED‖B4C4E046…).
        assert!(
            !d.to_uppercase()
                .contains("B4C4E046826BD26190D09715FC31F4E6"),
            "{d}"
        );
        assert!(d.contains("rLUEXYuLiQptky37CqLcm9USQpPiz5rkpD"), "{d}");
    }
}
