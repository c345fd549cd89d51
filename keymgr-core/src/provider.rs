//! [`provider_backend!`](crate::provider_backend): the one place a provider's
//! [`KeyBackend`](crate::KeyBackend) impl forwards key versions and symmetric operations
//! to the provider's own methods.

/// Implements [`KeyBackend`](crate::KeyBackend) for a provider type from the methods
/// written in the block (`name`, `public_key`, `sign`, `health`, `invalidate`, and any
/// other trait method the provider overrides) plus six forwarded ones, each calling an
/// inherent `async fn` of the same name with `_inner` that the provider defines:
///
/// | trait method | calls |
/// |---|---|
/// | `list_versions(name)` | [`KeyRef::check_name`](crate::KeyRef::check_name), then `list_versions_inner(name)` |
/// | `create_version(name)` | [`KeyRef::check_name`](crate::KeyRef::check_name), then `create_version_inner(name)` |
/// | `disable_version(key)` | `disable_version_inner(key)` |
/// | `encrypt(key, plaintext, context)` | `encrypt_inner(key, plaintext, context)` |
/// | `decrypt(key, ciphertext, context)` | `decrypt_inner(key, ciphertext, context)` |
/// | `generate_data_key(key, context)` | `generate_data_key_inner(key, context)` |
///
/// The `_inner` methods take the trait method's arguments and return its result type;
/// they live in the provider's `rotation.rs` and `symmetric.rs`. So every provider
/// checks key names the same way, and a new provider copies one line instead of six
/// forwarding methods. `#[async_trait]` is applied by the macro (from
/// [`deps::async_trait`](crate::deps::async_trait)); write the methods in the block as
/// plain `async fn`s.
///
/// `keymgr-aws/src/backend.rs` shows the whole shape.
#[macro_export]
macro_rules! provider_backend {
    (impl KeyBackend for $ty:ty { $($items:tt)* }) => {
        #[$crate::deps::async_trait]
        impl $crate::KeyBackend for $ty {
            $($items)*

            async fn list_versions(
                &self,
                name: &str,
            ) -> $crate::Result<::std::vec::Vec<$crate::KeyVersion>> {
                $crate::KeyRef::check_name(name)?;
                self.list_versions_inner(name).await
            }

            async fn create_version(&self, name: &str) -> $crate::Result<$crate::KeyVersion> {
                $crate::KeyRef::check_name(name)?;
                self.create_version_inner(name).await
            }

            async fn disable_version(&self, key: &$crate::KeyRef) -> $crate::Result<()> {
                self.disable_version_inner(key).await
            }

            async fn encrypt(
                &self,
                key: &$crate::KeyRef,
                plaintext: &[u8],
                context: &$crate::EncryptionContext,
            ) -> $crate::Result<::std::vec::Vec<u8>> {
                self.encrypt_inner(key, plaintext, context).await
            }

            async fn decrypt(
                &self,
                key: &$crate::KeyRef,
                ciphertext: &[u8],
                context: &$crate::EncryptionContext,
            ) -> $crate::Result<$crate::SecretBytes> {
                self.decrypt_inner(key, ciphertext, context).await
            }

            async fn generate_data_key(
                &self,
                key: &$crate::KeyRef,
                context: &$crate::EncryptionContext,
            ) -> $crate::Result<$crate::DataKey> {
                self.generate_data_key_inner(key, context).await
            }
        }
    };
}
