"""Starts moto's AWS server for keymgr's KMS tests, optionally with KMS gaps closed.

Usage:  python kms_server.py [--plain] [--detached] [--demo-keys REGION]

Prints one line `KEYMGR_MOTO_READY http://127.0.0.1:<port>` on stdout once the server
answers (the port is chosen by the OS), then serves until killed or until its stdin is
closed (so it never outlives the process that started it). With `--detached` (used by
`cargo xtask provision`) it ignores stdin and serves until SIGTERM. `--demo-keys REGION`
creates the operators' demo keys in REGION before the ready line: `alias/keymgr-demo-evm`
(ECC_SECG_P256K1) and `alias/keymgr-demo-xrp` (ECC_NIST_EDWARDS25519).

`--plain` serves moto exactly as released: tests use it to prove that keymgr turns
moto's wrong-digest ECDSA signature into an integrity error.

Without `--plain`, moto's KMS model is patched at start-up so that it behaves like AWS
KMS where moto 5.2.5 does not (measured; see keymgr issue 8). Only these operations
change; everything else (keys, aliases, tags, enable/disable, symmetric encryption,
errors) is moto's own code:

- Sign/Verify honour `MessageType=DIGEST` as the AWS API reference describes: the
  message is the digest (its length must match the algorithm's hash) and is not hashed
  again. moto 5.2.5 ignores MessageType and signs SHA-256(digest).
- `CreateKey` accepts `KeySpec=ECC_NIST_EDWARDS25519` (with `KeyUsage=SIGN_VERIFY`), and
  such keys sign with `ED25519_SHA_512` on the raw message (RFC 8032 Ed25519).
- Disabled keys answer `DisabledException` and keys pending deletion answer
  `KMSInvalidStateException` for Sign, Verify, GetPublicKey, Encrypt, Decrypt and
  GenerateDataKey (moto 5.2.5 keeps using them).
- `GetPublicKey` on a symmetric key answers `UnsupportedOperationException`, and
  Encrypt/GenerateDataKey with a key that is not a symmetric ENCRYPT_DECRYPT key answer
  `InvalidKeyUsageException` (moto 5.2.5 invents an RSA key / encrypts anyway).

A self-check runs before the ready line: it verifies that moto's internals still look
like what this file patches (version, functions, signatures) and then exercises every
patched behaviour over HTTP with boto3, checking signatures with `cryptography`. If
anything differs it prints `KEYMGR MOTO SELF-CHECK FAILED: ...` and exits with status 3,
so a newer moto can never silently change what the tests rely on.
"""

import base64
import inspect
import json
import logging
import os
import sys
import threading

# The moto release this launcher was written and measured against. xtask pins it.
EXPECTED_MOTO_VERSION = "5.2.5"
ED25519_SPEC = "ECC_NIST_EDWARDS25519"
ED25519_ALGORITHMS = ["ED25519_SHA_512", "ED25519_PH_SHA_512"]
# Region used by the self-check; state is reset afterwards anyway.
SELF_CHECK_REGION = "eu-west-3"
# AWS limit for the Message parameter of Sign/Verify.
MAX_MESSAGE_BYTES = 4096


def fail(message):
    sys.stderr.write(f"KEYMGR MOTO SELF-CHECK FAILED: {message}\n")
    sys.stderr.write(
        "The keymgr KMS test launcher (keymgr-testkit/moto/kms_server.py) patches moto "
        f"{EXPECTED_MOTO_VERSION}; re-check the patches against the installed moto.\n"
    )
    sys.stderr.flush()
    os._exit(3)


def check(condition, message):
    if not condition:
        fail(message)


# ---------------------------------------------------------------------------------------
# Structural checks: what the patches below assume about moto's internals.
# ---------------------------------------------------------------------------------------


def check_structure():
    import moto
    from moto.kms import models, responses, utils

    allow_other = os.environ.get("KEYMGR_MOTO_ALLOW_OTHER_VERSION") == "1"
    check(
        moto.__version__ == EXPECTED_MOTO_VERSION or allow_other,
        f"installed moto is {moto.__version__}, the launcher was written for "
        f"{EXPECTED_MOTO_VERSION} (set KEYMGR_MOTO_ALLOW_OTHER_VERSION=1 to try anyway)",
    )
    backend = models.KmsBackend
    for name in ("sign", "verify", "encrypt", "decrypt", "get_public_key", "create_key",
                 "describe_key", "any_id_to_key_id"):
        check(callable(getattr(backend, name, None)), f"KmsBackend.{name} is missing")
    check(
        callable(getattr(backend, "_KmsBackend__ensure_valid_key_spec", None)),
        "KmsBackend.__ensure_valid_key_spec (KeySpec validation) is missing",
    )
    # The DIGEST gap: the backend's sign/verify take no message type at all.
    sign_params = list(inspect.signature(backend.sign).parameters)
    check(
        sign_params == ["self", "key_id", "message", "signing_algorithm"],
        f"KmsBackend.sign parameters changed to {sign_params}: moto may implement "
        "MessageType=DIGEST itself now (getmoto/moto#10202); drop the DIGEST patch",
    )
    verify_params = list(inspect.signature(backend.verify).parameters)
    check(
        verify_params == ["self", "key_id", "message", "signature", "signing_algorithm"],
        f"KmsBackend.verify parameters changed to {verify_params}",
    )
    enc_params = list(inspect.signature(backend.encrypt).parameters)
    check(
        enc_params == ["self", "key_id", "plaintext", "encryption_context"],
        f"KmsBackend.encrypt parameters changed to {enc_params}",
    )
    dec_params = list(inspect.signature(backend.decrypt).parameters)
    check(
        dec_params == ["self", "ciphertext_blob", "encryption_context", "key_id"],
        f"KmsBackend.decrypt parameters changed to {dec_params}",
    )
    for name in ("sign", "verify", "_get_param", "_validate_key_id"):
        check(callable(getattr(responses.KmsResponse, name, None)),
              f"KmsResponse.{name} is missing")
    check(
        isinstance(inspect.getattr_static(models.Key, "signing_algorithms"), property),
        "Key.signing_algorithms is no longer a property",
    )
    check(
        getattr(models, "generate_private_key", None) is utils.generate_private_key,
        "moto.kms.models no longer calls utils.generate_private_key for new keys",
    )
    check(ED25519_SPEC not in [s.value for s in utils.KeySpec],
          "moto now knows ECC_NIST_EDWARDS25519 itself; drop the Ed25519 patch")
    probe = utils.ECDSAPrivateKey("ECC_SECG_P256K1")
    from cryptography.hazmat.primitives.asymmetric import ec
    check(
        isinstance(getattr(probe, "private_key", None), ec.EllipticCurvePrivateKey),
        "ECDSAPrivateKey no longer keeps a cryptography private key in .private_key",
    )


# ---------------------------------------------------------------------------------------
# Patches.
# ---------------------------------------------------------------------------------------


def apply_patches():
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils as asym_utils
    from moto.core.exceptions import JsonRESTError
    from moto.kms import models, responses, utils
    from moto.kms.exceptions import ValidationException

    def error(code, message):
        return JsonRESTError(code, message)

    class Ed25519PrivateKey(utils.AbstractPrivateKey):
        """An ECC_NIST_EDWARDS25519 key: pure Ed25519 on the raw message."""

        def __init__(self):
            self.private_key = ed25519.Ed25519PrivateKey.generate()

        def sign(self, message, signing_algorithm):
            if signing_algorithm != "ED25519_SHA_512":
                raise error(
                    "UnsupportedOperationException",
                    f"{signing_algorithm} is not emulated by the keymgr test launcher",
                )
            return self.private_key.sign(message)

        def verify(self, message, signature, signing_algorithm):
            try:
                self.private_key.public_key().verify(signature, message)
                return True
            except InvalidSignature:
                return False

        def public_key(self):
            return self.private_key.public_key().public_bytes(
                encoding=serialization.Encoding.DER,
                format=serialization.PublicFormat.SubjectPublicKeyInfo,
            )

    # --- Ed25519 keys --------------------------------------------------------------
    original_generate = models.generate_private_key

    def generate_private_key(key_spec):
        if key_spec == ED25519_SPEC:
            return Ed25519PrivateKey()
        return original_generate(key_spec)

    models.generate_private_key = generate_private_key

    original_valid_spec = models.KmsBackend._KmsBackend__ensure_valid_key_spec

    def ensure_valid_key_spec(self, key_spec):
        if key_spec == ED25519_SPEC:
            return None
        return original_valid_spec(self, key_spec)

    models.KmsBackend._KmsBackend__ensure_valid_key_spec = ensure_valid_key_spec

    original_create_key = models.KmsBackend.create_key

    def create_key(self, policy, key_usage, key_spec, description, tags,
                   multi_region=False, origin="AWS_KMS"):
        if key_spec == ED25519_SPEC and key_usage != "SIGN_VERIFY":
            raise ValidationException(
                f"KeyUsage {key_usage or 'ENCRYPT_DECRYPT'} is not compatible with "
                f"KeySpec {ED25519_SPEC}; use SIGN_VERIFY"
            )
        return original_create_key(self, policy, key_usage, key_spec, description, tags,
                                   multi_region, origin)

    models.KmsBackend.create_key = create_key

    original_signing_algorithms = models.Key.signing_algorithms

    def signing_algorithms(self):
        if self.key_spec == ED25519_SPEC and self.key_usage == "SIGN_VERIFY":
            return list(ED25519_ALGORITHMS)
        return original_signing_algorithms.fget(self)

    models.Key.signing_algorithms = property(signing_algorithms)

    # --- key state -----------------------------------------------------------------
    def ensure_usable(key):
        if key.key_state == "Disabled":
            raise error("DisabledException", f"{key.arn} is disabled.")
        if key.key_state != "Enabled":
            raise error("KMSInvalidStateException", f"{key.arn} is {key.key_state}.")

    def ensure_symmetric(key):
        # moto stores KeyUsage as given; AWS's default is ENCRYPT_DECRYPT.
        usage = key.key_usage or "ENCRYPT_DECRYPT"
        if usage != "ENCRYPT_DECRYPT" or key.key_spec != "SYMMETRIC_DEFAULT":
            raise error(
                "InvalidKeyUsageException",
                f"{key.arn} key usage is {usage} (key spec {key.key_spec}); "
                "this operation needs a symmetric ENCRYPT_DECRYPT key",
            )

    original_encrypt = models.KmsBackend.encrypt

    def encrypt(self, key_id, plaintext, encryption_context):
        key = self.describe_key(key_id)
        ensure_usable(key)
        ensure_symmetric(key)
        return original_encrypt(self, key_id, plaintext, encryption_context)

    models.KmsBackend.encrypt = encrypt

    original_decrypt = models.KmsBackend.decrypt

    def decrypt(self, ciphertext_blob, encryption_context, key_id=None):
        if key_id is not None:
            ensure_usable(self.describe_key(key_id))
        plaintext, arn = original_decrypt(self, ciphertext_blob, encryption_context, key_id)
        ensure_usable(self.describe_key(arn))
        return plaintext, arn

    models.KmsBackend.decrypt = decrypt

    original_get_public_key = models.KmsBackend.get_public_key

    def get_public_key(self, key_id):
        key = self.describe_key(key_id)
        ensure_usable(key)
        if key.key_spec == "SYMMETRIC_DEFAULT" or key.key_spec.startswith("HMAC"):
            raise error(
                "UnsupportedOperationException",
                f"{key.arn} key usage is {key.key_usage} with key spec {key.key_spec}; "
                "GetPublicKey needs an asymmetric key",
            )
        return original_get_public_key(self, key_id)

    models.KmsBackend.get_public_key = get_public_key

    # --- Sign / Verify with MessageType ----------------------------------------------
    digest_lengths = {"SHA_256": 32, "SHA_384": 48, "SHA_512": 64}
    hash_types = {"SHA_256": hashes.SHA256, "SHA_384": hashes.SHA384,
                  "SHA_512": hashes.SHA512}

    def as_bytes(value):
        if isinstance(value, str):
            return value.encode("utf-8")
        return value

    def prepare(response, want_signature):
        key_id = response._get_param("KeyId")
        message = as_bytes(response._get_param("Message"))
        message_type = response._get_param("MessageType") or "RAW"
        algorithm = response._get_param("SigningAlgorithm")
        response._validate_key_id(key_id)
        if not message:
            raise ValidationException(
                "1 validation error detected: Value at 'Message' failed to satisfy "
                "constraint: Member must have length greater than or equal to 1"
            )
        if len(message) > MAX_MESSAGE_BYTES:
            raise ValidationException(
                "1 validation error detected: Value at 'Message' failed to satisfy "
                f"constraint: Member must have length less than or equal to {MAX_MESSAGE_BYTES}"
            )
        key = response.kms_backend.describe_key(key_id)
        ensure_usable(key)
        if key.key_usage != "SIGN_VERIFY":
            raise error(
                "InvalidKeyUsageException",
                f"{key.arn} key usage is {key.key_usage}; Sign and Verify need SIGN_VERIFY",
            )
        if algorithm not in key.signing_algorithms:
            raise ValidationException(
                f"1 validation error detected: Value '{algorithm}' at 'SigningAlgorithm' "
                "failed to satisfy constraint: Member must satisfy enum value set: "
                f"{key.signing_algorithms}"
            )
        if message_type not in ("RAW", "DIGEST"):
            raise ValidationException(
                f"MessageType {message_type} is not emulated by the keymgr test launcher"
            )
        if key.key_spec == ED25519_SPEC:
            needed = "RAW" if algorithm == "ED25519_SHA_512" else "DIGEST"
            if message_type != needed:
                raise ValidationException(
                    f"{algorithm} signing algorithm requires MessageType {needed}"
                )
        elif message_type == "DIGEST":
            suffix = algorithm.rsplit("_", 2)
            hash_name = "_".join(suffix[-2:])
            want = digest_lengths.get(hash_name)
            if want is None or not isinstance(key.private_key, utils.ECDSAPrivateKey):
                raise ValidationException(
                    f"MessageType DIGEST with {algorithm} is not emulated by the keymgr "
                    "test launcher (ECDSA only)"
                )
            if len(message) != want:
                raise ValidationException(
                    f"Digest is invalid length for algorithm {algorithm}: expected "
                    f"{want} bytes, got {len(message)}"
                )
        signature = None
        if want_signature:
            signature = response._get_param("Signature")
            if isinstance(signature, str):
                # moto hands blobs over either decoded or still in base64
                signature = base64.b64decode(signature.encode("utf-8"))
            if not signature:
                raise ValidationException(
                    "1 validation error detected: Value at 'Signature' failed to satisfy "
                    "constraint: Member must have length greater than or equal to 1"
                )
        return key, message, message_type, algorithm, signature

    def ecdsa_prehashed(algorithm):
        hash_name = "_".join(algorithm.rsplit("_", 2)[-2:])
        return ec.ECDSA(asym_utils.Prehashed(hash_types[hash_name]()))

    def sign(self):
        key, message, message_type, algorithm, _ = prepare(self, want_signature=False)
        if message_type == "DIGEST" and key.key_spec != ED25519_SPEC:
            signature = key.private_key.private_key.sign(message, ecdsa_prehashed(algorithm))
        else:
            signature = key.private_key.sign(message, algorithm)
        return json.dumps({
            "KeyId": key.arn,
            "Signature": base64.b64encode(signature).decode("utf-8"),
            "SigningAlgorithm": algorithm,
        })

    def verify(self):
        key, message, message_type, algorithm, signature = prepare(self, want_signature=True)
        if message_type == "DIGEST" and key.key_spec != ED25519_SPEC:
            try:
                key.private_key.private_key.public_key().verify(
                    signature, message, ecdsa_prehashed(algorithm))
                valid = True
            except InvalidSignature:
                valid = False
        else:
            valid = key.private_key.verify(message, signature, algorithm)
        if not valid:
            raise error("KMSInvalidSignatureException", "")
        return json.dumps({
            "KeyId": key.arn,
            "SignatureValid": True,
            "SigningAlgorithm": algorithm,
        })

    responses.KmsResponse.sign = sign
    responses.KmsResponse.verify = verify


# ---------------------------------------------------------------------------------------
# Functional self-check over HTTP, through botocore (the AWS wire protocol).
# ---------------------------------------------------------------------------------------


def functional_self_check(endpoint):
    import hashlib
    import urllib.request

    import boto3
    from botocore.exceptions import ClientError
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils as asym_utils

    kms = boto3.client(
        "kms",
        endpoint_url=endpoint,
        region_name=SELF_CHECK_REGION,
        aws_access_key_id="keymgr-self-check",
        aws_secret_access_key="keymgr-self-check",
    )

    def expect_error(code, what, call):
        try:
            call()
        except ClientError as e:
            got = e.response.get("Error", {}).get("Code")
            check(got == code, f"{what}: expected {code}, got {got}: {e}")
            return
        fail(f"{what}: expected {code}, but the call succeeded")

    # secp256k1 with MessageType=DIGEST signs the digest itself.
    key = kms.create_key(KeySpec="ECC_SECG_P256K1", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    public = serialization.load_der_public_key(kms.get_public_key(KeyId=key["KeyId"])["PublicKey"])
    digest = hashlib.sha256(b"keymgr self-check").digest()
    signature = kms.sign(KeyId=key["KeyId"], Message=digest, MessageType="DIGEST",
                         SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    try:
        public.verify(signature, digest, ec.ECDSA(asym_utils.Prehashed(hashes.SHA256())))
    except InvalidSignature:
        fail("Sign with MessageType=DIGEST does not sign the digest")
    try:
        public.verify(signature, digest, ec.ECDSA(hashes.SHA256()))
        fail("Sign with MessageType=DIGEST still signs SHA-256(digest)")
    except InvalidSignature:
        pass
    ok = kms.verify(KeyId=key["KeyId"], Message=digest, MessageType="DIGEST",
                    Signature=signature, SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"]
    check(ok is True, "Verify with MessageType=DIGEST rejects a correct signature")
    # RAW is moto's own path: it hashes the message.
    raw_signature = kms.sign(KeyId=key["KeyId"], Message=b"raw", MessageType="RAW",
                             SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    try:
        public.verify(raw_signature, b"raw", ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        fail("Sign with MessageType=RAW no longer signs SHA-256(message)")
    expect_error("ValidationException", "a 31-byte digest",
                 lambda: kms.sign(KeyId=key["KeyId"], Message=digest[:31],
                                  MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256"))

    # Ed25519 keys exist and sign the raw message.
    ed = kms.create_key(KeySpec=ED25519_SPEC, KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    check(ed.get("KeySpec") == ED25519_SPEC, f"Ed25519 key metadata: {ed}")
    check("ED25519_SHA_512" in (ed.get("SigningAlgorithms") or []),
          f"Ed25519 signing algorithms: {ed.get('SigningAlgorithms')}")
    ed_public = serialization.load_der_public_key(
        kms.get_public_key(KeyId=ed["KeyId"])["PublicKey"])
    check(isinstance(ed_public, ed25519.Ed25519PublicKey), "Ed25519 SPKI")
    ed_signature = kms.sign(KeyId=ed["KeyId"], Message=b"claim", MessageType="RAW",
                            SigningAlgorithm="ED25519_SHA_512")["Signature"]
    try:
        ed_public.verify(ed_signature, b"claim")
    except InvalidSignature:
        fail("Ed25519 signature does not verify")
    expect_error("ValidationException", "ED25519_SHA_512 with DIGEST",
                 lambda: kms.sign(KeyId=ed["KeyId"], Message=b"x" * 64,
                                  MessageType="DIGEST", SigningAlgorithm="ED25519_SHA_512"))

    # Disabled keys are unusable; enabling makes them usable again.
    kms.disable_key(KeyId=key["KeyId"])
    expect_error("DisabledException", "Sign with a disabled key",
                 lambda: kms.sign(KeyId=key["KeyId"], Message=digest, MessageType="DIGEST",
                                  SigningAlgorithm="ECDSA_SHA_256"))
    expect_error("DisabledException", "GetPublicKey of a disabled key",
                 lambda: kms.get_public_key(KeyId=key["KeyId"]))
    kms.enable_key(KeyId=key["KeyId"])
    kms.sign(KeyId=key["KeyId"], Message=digest, MessageType="DIGEST",
             SigningAlgorithm="ECDSA_SHA_256")

    # Symmetric: encryption context binds; state and usage are enforced.
    sym = kms.create_key()["KeyMetadata"]
    blob = kms.encrypt(KeyId=sym["KeyId"], Plaintext=b"secret",
                       EncryptionContext={"k": "v"})["CiphertextBlob"]
    plain = kms.decrypt(CiphertextBlob=blob, KeyId=sym["KeyId"],
                        EncryptionContext={"k": "v"})["Plaintext"]
    check(plain == b"secret", "Encrypt/Decrypt round trip")
    expect_error("InvalidCiphertextException", "Decrypt with the wrong context",
                 lambda: kms.decrypt(CiphertextBlob=blob, KeyId=sym["KeyId"],
                                     EncryptionContext={"k": "other"}))
    expect_error("InvalidKeyUsageException", "Encrypt with a signing key",
                 lambda: kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x"))
    expect_error("UnsupportedOperationException", "GetPublicKey of a symmetric key",
                 lambda: kms.get_public_key(KeyId=sym["KeyId"]))
    kms.schedule_key_deletion(KeyId=sym["KeyId"], PendingWindowInDays=7)
    expect_error("KMSInvalidStateException", "GenerateDataKey with a key pending deletion",
                 lambda: kms.generate_data_key(KeyId=sym["KeyId"], KeySpec="AES_256"))

    # Leave a clean server for the tests.
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as answer:
        check(answer.status == 200, f"moto-api reset answered {answer.status}")


# ---------------------------------------------------------------------------------------


def exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except Exception:  # noqa: BLE001 - any failure means the parent is gone
        pass
    os._exit(0)


def create_demo_keys(endpoint, region):
    import boto3

    kms = boto3.client(
        "kms",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="keymgr-test",
        aws_secret_access_key="keymgr-test",
    )
    for alias, spec in [
        ("alias/keymgr-demo-evm", "ECC_SECG_P256K1"),
        ("alias/keymgr-demo-xrp", ED25519_SPEC),
    ]:
        key = kms.create_key(
            KeySpec=spec, KeyUsage="SIGN_VERIFY", Description=f"keymgr demo key ({alias})"
        )
        kms.create_alias(AliasName=alias, TargetKeyId=key["KeyMetadata"]["KeyId"])


def main():
    args = sys.argv[1:]
    plain = "--plain" in args
    detached = "--detached" in args
    demo_region = args[args.index("--demo-keys") + 1] if "--demo-keys" in args else None
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if not plain:
        try:
            check_structure()
            apply_patches()
        except SystemExit:
            raise
        except Exception as e:  # noqa: BLE001 - any surprise is a failed self-check
            fail(f"{type(e).__name__}: {e}")

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    if not plain:
        try:
            functional_self_check(endpoint)
        except Exception as e:  # noqa: BLE001
            fail(f"{type(e).__name__}: {e}")
    if demo_region:
        create_demo_keys(endpoint, demo_region)
    print(f"KEYMGR_MOTO_READY {endpoint}", flush=True)
    if detached:
        # Serve until SIGTERM (the default action ends the process).
        threading.Event().wait()
        return
    watcher = threading.Thread(target=exit_when_stdin_closes, daemon=True)
    watcher.start()
    watcher.join()


if __name__ == "__main__":
    main()
