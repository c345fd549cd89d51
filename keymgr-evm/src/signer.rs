//! [`EvmSigner`]: alloy's `Signer` and `TxSigner` over a keymgr backend.

use std::fmt;
use std::sync::Arc;

#[cfg(feature = "tx")]
use alloy_consensus::{SignableTransaction, TxEnvelope};
#[cfg(feature = "tx")]
use alloy_network::{Ethereum, Network, TxSigner, impl_into_wallet};
use alloy_primitives::{Address, B256, ChainId, Signature};
use alloy_signer::Signer;
#[cfg(feature = "tx")]
use alloy_signer::sign_transaction_with_chain_id;
use async_trait::async_trait;
use k256::ecdsa::VerifyingKey;
use keymgr_core::{
    Error, ErrorKind, IntegrityReason, KeyBackend, KeyRef, OutcomeContext, PublicKey, Result,
    SignContext, SignPayload,
};

/// An Ethereum signer whose key never leaves a keymgr backend (KMS, HSM, or the dev
/// `env` backend), usable wherever alloy takes a [`Signer`] or (with the `tx` feature) a
/// `TxSigner` (`EthereumWallet::from(signer)`, `ProviderBuilder::wallet(signer)`).
///
/// # Bound to one key version
///
/// A signer is bound to **one version** of a logical key, resolved when it is built:
/// [`EvmSigner::new`] asks the backend for the current version of an unversioned
/// [`KeyRef`] and pins it (`evm-settlement` becomes e.g. `evm-settlement@3`). Its
/// [`address`](Self::address) is derived once from that version's public key and never
/// changes. **Rotating the logical key gives it a new address**; this signer keeps
/// signing with (and reporting the address of) the version it is bound to, for as long
/// as the backend keeps that version enabled. To move to the new key, build a new signer
/// ([`to_current_version`](Self::to_current_version), or [`from_public_key`](Self::from_public_key)
/// with the new version of `keymgr_rotation::RotationResult`)
/// and fund or register its address first; [`check_rotation`](Self::check_rotation)
/// tells whether the logical key has moved on.
///
/// For backends without versions (`list_versions` unsupported) the signer is bound to
/// the name; should the key behind the name change, signing fails with
/// [`Error::Integrity`] instead of returning a signature for an address other than
/// [`address`](Self::address).
///
/// # Guarantees
///
/// - The hash goes to the backend as an ECDSA prehash; the backend returns a
///   [`keymgr_core::VerifiedSignature`]: low-s `(r, s)`, verified once, with the
///   recovery parity computed by that verification. The signer checks that it verified
///   against this signer's public key and over this hash (equality, no second
///   verification or recovery). A signature that does not recover to
///   [`address`](Self::address) is never returned: that is an [`Error::Integrity`].
/// - Chain id handling is alloy's own (`sign_transaction_with_chain_id!`, as
///   `PrivateKeySigner` does): with a chain id set, an unset transaction chain id is
///   filled in (EIP-155 for legacy transactions) and a different one is
///   [`alloy_signer::Error::TransactionChainIdMismatch`]; without one, transactions are
///   signed as given. Message and typed-data signing ignore the signer's chain id.
/// - Each signature is audited with what it authorized (a
///   [`SignContext`] passed to [`KeyBackend::sign_with_context`]): transactions with chain
///   id, type, recipient, value, nonce and signing hash, and on the success entry the
///   transaction hash (keccak-256 of the signed EIP-2718 envelope); typed data with its
///   primary type and domain; messages with their length; authorizations with chain id,
///   delegate and nonce; a bare hash ([`sign_hash`](Signer::sign_hash),
///   [`sign_prehash`](Self::sign_prehash)) as a raw digest with the signer's chain id.
/// - keymgr errors reach alloy callers as [`alloy_signer::Error::Other`]; get them back
///   with [`keymgr_error`](crate::keymgr_error) (to check `is_retryable`, say).
///
/// Only the asynchronous traits are implemented (as alloy's own KMS signers do): the
/// backends are remote and asynchronous, and blocking on them inside an async runtime
/// would stall or deadlock it.
pub struct EvmSigner<B = Arc<dyn KeyBackend>> {
    backend: B,
    key: KeyRef,
    public_key: VerifyingKey,
    address: Address,
    chain_id: Option<ChainId>,
}

/// alloy's JSON-RPC transaction request for Ethereum (`eth_sendTransaction` form).
#[cfg(feature = "tx")]
pub type TransactionRequest = <Ethereum as Network>::TransactionRequest;

/// What [`EvmSigner::check_rotation`] found: the logical key now resolves to another key
/// version, with a different address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressChange {
    /// The version the signer is bound to.
    pub bound: KeyRef,
    /// Its address (what the signer signs for).
    pub bound_address: Address,
    /// The version the logical key resolves to now.
    pub current: KeyRef,
    /// The address of the current version.
    pub current_address: Address,
}

impl<B: KeyBackend> EvmSigner<B> {
    /// Builds a signer for `key`, pinned to its current version when `key` names none
    /// (see [the type docs](Self#bound-to-one-key-version)).
    ///
    /// Fails with [`Error::InvalidInput`] for a key that is not secp256k1, and with the
    /// backend's error when the key cannot be found or read.
    pub async fn new(backend: B, key: impl Into<KeyRef>) -> Result<Self> {
        let key = resolve_version(&backend, key.into()).await?;
        let public_key = backend.public_key(&key).await?;
        Self::from_public_key(backend, key, &public_key)
    }

    /// Builds a signer from a public key the caller already has (no backend call).
    ///
    /// `key` is used exactly as given (pass a versioned [`KeyRef`] to pin a version).
    /// After a rotation, `keymgr_rotation::RotationResult::new` holds both: the new
    /// version's `key` and `public_key`.
    /// The public key is not trusted blindly: every signature must recover to it, so a
    /// wrong one makes signing fail with [`Error::Integrity`], never sign for the wrong
    /// address.
    pub fn from_public_key(backend: B, key: KeyRef, public_key: &PublicKey) -> Result<Self> {
        let vk = *public_key.as_secp256k1().ok_or_else(|| {
            Error::invalid_input(
                "key",
                format!(
                    "{key} is an {} key; EVM signing needs a secp256k1 key",
                    public_key.algorithm()
                ),
            )
        })?;
        Ok(Self {
            backend,
            key,
            public_key: vk,
            address: Address::from_public_key(&vk),
            chain_id: None,
        })
    }

    /// The address of the bound key version (keccak-256 of the uncompressed public key).
    #[inline]
    pub const fn address(&self) -> Address {
        self.address
    }

    /// The chain id used to fill or check transactions (see [`Signer::chain_id`]).
    #[inline]
    pub const fn chain_id(&self) -> Option<ChainId> {
        self.chain_id
    }

    /// The key version this signer is bound to.
    pub fn key(&self) -> &KeyRef {
        &self.key
    }

    /// The bound version's public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.public_key
    }

    /// The backend this signer signs through.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Signs a 32-byte hash exactly as given and returns the 65-byte Ethereum signature
    /// (low-s, y parity), with keymgr's error type.
    ///
    /// [`Signer::sign_hash`] calls this; use it directly to keep [`Error`]'s kinds.
    ///
    /// The audit log records it as a raw digest ([`SignContext::RawDigest`] with this
    /// signer's chain id): keymgr cannot tell what a bare hash commits to.
    pub async fn sign_prehash(&self, hash: &B256) -> Result<Signature> {
        let context = SignContext::RawDigest {
            chain_id: self.chain_id,
        };
        self.sign_prehash_in(hash, &context).await
    }

    /// [`sign_prehash`](Self::sign_prehash), telling the audit log what the hash is
    /// (see [`SignContext`]).
    pub async fn sign_prehash_in(&self, hash: &B256, context: &SignContext) -> Result<Signature> {
        self.sign_audited(hash, context, None).await
    }

    /// Signs `hash`; the request entry records `context`, the success entry `outcome`'s
    /// context for the signature when given.
    async fn sign_audited(
        &self,
        hash: &B256,
        context: &SignContext,
        outcome: Option<&dyn OutcomeContext>,
    ) -> Result<Signature> {
        let payload = SignPayload::Prehash(hash.0);
        let signature = match outcome {
            Some(o) => {
                self.backend
                    .sign_with_outcome_context(&self.key, &payload, context, o)
                    .await?
            }
            None => {
                self.backend
                    .sign_with_context(&self.key, &payload, context)
                    .await?
            }
        };
        // The backend verified the signature (VerifiedSignature is made only by
        // verifying) and computed its recovery id while doing so: checking that it
        // verified against *our* key, over *our* hash, is an equality test, not another
        // verification or recovery. A different key (rotated under an unpinned name, wrong
        // backend answer) is refused.
        if signature.public_key().as_secp256k1() != Some(&self.public_key) {
            return Err(self.not_our_key());
        }
        if !signature.is_over(&payload) {
            return Err(Error::integrity_failure(
                self.key.to_string(),
                IntegrityReason::PayloadMismatch,
                format!(
                    "the {} backend returned a signature over another hash than the one asked \
                     for; this signer ({}) refuses it",
                    self.backend.name(),
                    self.address
                ),
            ));
        }
        let (Some(secp), Some(recovery_id)) = (signature.as_secp256k1(), signature.recovery_id())
        else {
            return Err(Error::integrity_failure(
                self.key.to_string(),
                IntegrityReason::AlgorithmMismatch,
                format!(
                    "the {} backend returned an {} signature for a secp256k1 key",
                    self.backend.name(),
                    signature.algorithm()
                ),
            ));
        };
        if recovery_id.is_x_reduced() {
            // Ethereum signatures carry only the y parity; such a signature (probability
            // about 2^-127) could not be recovered by verifiers.
            return Err(Error::integrity(
                self.key.to_string(),
                "the signature needs an x-reduced recovery id, which an Ethereum signature cannot express",
            ));
        }
        Ok(Signature::from_signature_and_parity(
            *secp.as_k256(),
            recovery_id.is_y_odd(),
        ))
    }

    /// Checks and signs a JSON-RPC transaction request (the `eth_sendTransaction` form
    /// alloy's `TransactionRequest` deserializes), returning the signed envelope; its
    /// `encoded_2718()` is the raw transaction for `eth_sendRawTransaction`.
    ///
    /// The request is checked by [`CheckedRequest::new`](crate::CheckedRequest::new):
    /// contradictions (`data` ≠ `input`, an explicit `type` the fields do not fit, legacy
    /// and EIP-1559 fees together, ...), chain id 0 and missing fields are refused with a
    /// [`RequestError`](crate::RequestError) naming the JSON fields; no `to` with init
    /// code is a contract creation. Unlike alloy's builder, a request without `chainId`
    /// takes the signer's chain id. A `from` other than [`address`](Self::address) is
    /// refused. Parse JSON with [`CheckedRequest::from_json`](crate::CheckedRequest::from_json)
    /// to also refuse unknown and repeated fields.
    #[cfg(feature = "tx")]
    pub async fn sign_request(
        &self,
        request: TransactionRequest,
    ) -> alloy_signer::Result<TxEnvelope> {
        let checked = crate::CheckedRequest::new(request).map_err(alloy_signer::Error::other)?;
        self.sign_checked(checked).await
    }

    fn not_our_key(&self) -> Error {
        Error::integrity_failure(
            self.key.to_string(),
            IntegrityReason::KeyChanged,
            format!(
                "the {} backend's signature does not recover to this signer's address {}: the \
                 key behind {} is not the one the signer was built for (rotated?). Build a new \
                 EvmSigner for the new key version; its address differs",
                self.backend.name(),
                self.address,
                self.key
            ),
        )
    }

    /// Asks the backend which version the logical key resolves to now and returns
    /// `Some` when its address differs from this signer's (the key was rotated).
    pub async fn check_rotation(&self) -> Result<Option<AddressChange>> {
        let current = resolve_version(&self.backend, self.key.unversioned()).await?;
        let public_key = self.backend.public_key(&current).await?;
        let vk = public_key.as_secp256k1().ok_or_else(|| {
            Error::integrity(
                current.to_string(),
                format!(
                    "the current version is an {} key, not secp256k1",
                    public_key.algorithm()
                ),
            )
        })?;
        let current_address = Address::from_public_key(vk);
        Ok((current_address != self.address).then(|| AddressChange {
            bound: self.key.clone(),
            bound_address: self.address,
            current,
            current_address,
        }))
    }

    /// A new signer for the version the logical key resolves to now, with the same chain
    /// id. Its address differs from this one's if the key was rotated.
    pub async fn to_current_version(&self) -> Result<Self>
    where
        B: Clone,
    {
        let mut signer = Self::new(self.backend.clone(), self.key.unversioned()).await?;
        signer.chain_id = self.chain_id;
        Ok(signer)
    }
}

/// The current version of `key` when it names none and the backend has versions.
async fn resolve_version<B: KeyBackend + ?Sized>(backend: &B, key: KeyRef) -> Result<KeyRef> {
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
        // No versions in this backend: bind to the name (sign_prehash still refuses
        // signatures from any other key).
        Err(e) if e.kind() == ErrorKind::Unsupported => Ok(key),
        Err(e) => Err(e),
    }
}

impl<B: Clone> Clone for EvmSigner<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            key: self.key.clone(),
            public_key: self.public_key,
            address: self.address,
            chain_id: self.chain_id,
        }
    }
}

impl<B: KeyBackend> fmt::Debug for EvmSigner<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvmSigner")
            .field("backend", &self.backend.name())
            .field("key", &self.key)
            .field("address", &self.address)
            .field("chain_id", &self.chain_id)
            .finish()
    }
}

#[async_trait]
impl<B: KeyBackend> Signer for EvmSigner<B> {
    async fn sign_hash(&self, hash: &B256) -> alloy_signer::Result<Signature> {
        self.sign_prehash(hash)
            .await
            .map_err(alloy_signer::Error::other)
    }

    async fn sign_message(&self, message: &[u8]) -> alloy_signer::Result<Signature> {
        let context = SignContext::EvmMessage {
            message_len: message.len() as u64,
        };
        self.sign_prehash_in(&alloy_primitives::eip191_hash_message(message), &context)
            .await
            .map_err(alloy_signer::Error::other)
    }

    #[cfg(feature = "eip712")]
    async fn sign_typed_data<T: alloy_sol_types::SolStruct + Send + Sync>(
        &self,
        payload: &T,
        domain: &alloy_sol_types::Eip712Domain,
    ) -> alloy_signer::Result<Signature>
    where
        Self: Sized,
    {
        let context = crate::context::typed_data(T::NAME, domain);
        self.sign_prehash_in(&payload.eip712_signing_hash(domain), &context)
            .await
            .map_err(alloy_signer::Error::other)
    }

    #[cfg(feature = "eip712")]
    async fn sign_dynamic_typed_data(
        &self,
        payload: &alloy_dyn_abi::TypedData,
    ) -> alloy_signer::Result<Signature> {
        let context = crate::context::typed_data(&payload.primary_type, &payload.domain);
        self.sign_prehash_in(&payload.eip712_signing_hash()?, &context)
            .await
            .map_err(alloy_signer::Error::other)
    }

    fn address(&self) -> Address {
        self.address
    }

    fn chain_id(&self) -> Option<ChainId> {
        self.chain_id
    }

    fn set_chain_id(&mut self, chain_id: Option<ChainId>) {
        self.chain_id = chain_id;
    }
}

#[cfg(feature = "tx")]
#[async_trait]
impl<B: KeyBackend> TxSigner<Signature> for EvmSigner<B> {
    fn address(&self) -> Address {
        self.address
    }

    async fn sign_transaction(
        &self,
        tx: &mut dyn SignableTransaction<Signature>,
    ) -> alloy_signer::Result<Signature> {
        sign_transaction_with_chain_id!(self, tx, {
            let context = crate::context::transaction(tx);
            let hash = tx.signature_hash();
            match crate::context::SignedTxHash::new(tx, context.clone()) {
                Ok(outcome) => self.sign_audited(&hash, &context, Some(&outcome)).await,
                // Refused before any signature is asked for; the audit log records it.
                Err(e) => Err(self
                    .backend
                    .refuse_sign(&self.key, &SignPayload::Prehash(hash.0), &context, e)
                    .await),
            }
        })
    }
}

#[cfg(feature = "tx")]
impl_into_wallet!(@[B: KeyBackend + 'static] EvmSigner<B>);
