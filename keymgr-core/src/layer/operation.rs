//! [`Operation`] and [`Reply`]: every [`KeyBackend`] call as one value, so a policy is
//! written once against [`Policy::call`] instead of once per trait method.

use crate::{
    DataKey, EncryptionContext, Error, KeyBackend, KeyRef, KeyVersion, PublicKey, Result,
    SecretBytes, SignPayload, VerifiedSignature,
};

/// One backend call with its arguments (borrowed from the caller).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Operation<'a> {
    /// [`KeyBackend::public_key`].
    PublicKey(&'a KeyRef),
    /// [`KeyBackend::sign`].
    Sign(&'a KeyRef, &'a SignPayload),
    /// [`KeyBackend::list_versions`].
    ListVersions(&'a str),
    /// [`KeyBackend::create_version`].
    CreateVersion(&'a str),
    /// [`KeyBackend::disable_version`].
    DisableVersion(&'a KeyRef),
    /// [`KeyBackend::delete_version`].
    DeleteVersion(&'a KeyRef),
    /// [`KeyBackend::encrypt`].
    Encrypt(&'a KeyRef, &'a [u8], &'a EncryptionContext),
    /// [`KeyBackend::decrypt`].
    Decrypt(&'a KeyRef, &'a [u8], &'a EncryptionContext),
    /// [`KeyBackend::generate_data_key`].
    GenerateDataKey(&'a KeyRef, &'a EncryptionContext),
}

impl Operation<'_> {
    /// The trait method's name (`sign`, `public_key`, ...), for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::PublicKey(..) => "public_key",
            Operation::Sign(..) => "sign",
            Operation::ListVersions(..) => "list_versions",
            Operation::CreateVersion(..) => "create_version",
            Operation::DisableVersion(..) => "disable_version",
            Operation::DeleteVersion(..) => "delete_version",
            Operation::Encrypt(..) => "encrypt",
            Operation::Decrypt(..) => "decrypt",
            Operation::GenerateDataKey(..) => "generate_data_key",
        }
    }

    /// Whether running it twice has the effect of running it once, so that a retry or an
    /// abandoned (timed-out) attempt is harmless. `create_version` is not (a retried or
    /// abandoned creation can leave an extra key version behind), nor is
    /// `delete_version` (an abandoned deletion can leave half a key pair behind, and a
    /// retried one that had succeeded reports `NotFound`).
    pub fn is_idempotent(&self) -> bool {
        !matches!(
            self,
            Operation::CreateVersion(..) | Operation::DeleteVersion(..)
        )
    }

    /// The logical key name it concerns.
    pub fn key_name(&self) -> &str {
        match self {
            Operation::ListVersions(name) | Operation::CreateVersion(name) => name,
            Operation::PublicKey(key)
            | Operation::Sign(key, _)
            | Operation::DisableVersion(key)
            | Operation::DeleteVersion(key)
            | Operation::Encrypt(key, ..)
            | Operation::Decrypt(key, ..)
            | Operation::GenerateDataKey(key, _) => key.name(),
        }
    }

    /// Runs this operation on `backend`.
    pub async fn call<B: KeyBackend + ?Sized>(self, backend: &B) -> Result<Reply> {
        Ok(match self {
            Operation::PublicKey(key) => Reply::PublicKey(backend.public_key(key).await?),
            Operation::Sign(key, payload) => Reply::Signature(backend.sign(key, payload).await?),
            Operation::ListVersions(name) => Reply::Versions(backend.list_versions(name).await?),
            Operation::CreateVersion(name) => Reply::Version(backend.create_version(name).await?),
            Operation::DisableVersion(key) => {
                backend.disable_version(key).await?;
                Reply::Done
            }
            Operation::DeleteVersion(key) => {
                backend.delete_version(key).await?;
                Reply::Done
            }
            Operation::Encrypt(key, data, context) => {
                Reply::Ciphertext(backend.encrypt(key, data, context).await?)
            }
            Operation::Decrypt(key, data, context) => {
                Reply::Plaintext(backend.decrypt(key, data, context).await?)
            }
            Operation::GenerateDataKey(key, context) => {
                Reply::DataKey(backend.generate_data_key(key, context).await?)
            }
        })
    }
}

/// What an [`Operation`] returned.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Reply {
    /// From `public_key`.
    PublicKey(PublicKey),
    /// From `sign`.
    Signature(VerifiedSignature),
    /// From `list_versions`.
    Versions(Vec<KeyVersion>),
    /// From `create_version`.
    Version(KeyVersion),
    /// From `disable_version` and `delete_version`.
    Done,
    /// From `encrypt`.
    Ciphertext(Vec<u8>),
    /// From `decrypt`.
    Plaintext(SecretBytes),
    /// From `generate_data_key`.
    DataKey(DataKey),
}

macro_rules! reply_into {
    ($($fn:ident: $variant:ident($ty:ty) for $op:literal;)*) => {
        impl Reply {
            $(
                #[doc = concat!("The result of `", $op, "`; an error if a policy answered another operation's reply.")]
                pub fn $fn(self) -> Result<$ty> {
                    match self {
                        Reply::$variant(v) => Ok(v),
                        other => Err(mismatch($op, &other)),
                    }
                }
            )*
        }
    };
}

reply_into! {
    into_public_key: PublicKey(PublicKey) for "public_key";
    into_signature: Signature(VerifiedSignature) for "sign";
    into_versions: Versions(Vec<KeyVersion>) for "list_versions";
    into_version: Version(KeyVersion) for "create_version";
    into_ciphertext: Ciphertext(Vec<u8>) for "encrypt";
    into_plaintext: Plaintext(SecretBytes) for "decrypt";
    into_data_key: DataKey(DataKey) for "generate_data_key";
}

impl Reply {
    /// The result of `disable_version` or `delete_version`; an error if a policy
    /// answered another reply.
    pub fn into_done(self) -> Result<()> {
        match self {
            Reply::Done => Ok(()),
            other => Err(mismatch("disable_version or delete_version", &other)),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Reply::PublicKey(_) => "a public key",
            Reply::Signature(_) => "a signature",
            Reply::Versions(_) => "a version list",
            Reply::Version(_) => "a version",
            Reply::Done => "nothing",
            Reply::Ciphertext(_) => "a ciphertext",
            Reply::Plaintext(_) => "a plaintext",
            Reply::DataKey(_) => "a data key",
        }
    }
}

fn mismatch(operation: &str, reply: &Reply) -> Error {
    Error::backend(
        "layer",
        format!(
            "a layer answered {operation} with {} (a bug in that layer's policy)",
            reply.kind()
        ),
        None,
    )
}
