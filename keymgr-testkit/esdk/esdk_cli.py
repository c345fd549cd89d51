"""The Python AWS Encryption SDK as a command, for keymgr-envelope's interop tests.

    esdk_cli.py encrypt|decrypt [--kms ARN]... [--raw NAMESPACE:NAME:HEXKEY]...
                [--raw-aes-keyring NAMESPACE:NAME:HEXKEY]
                [--context JSON] [--frame-length N] [--algorithm HEX]

--kms and --raw use the SDK's master key providers; --raw-aes-keyring uses the raw AES
keyring of the AWS Cryptographic Material Providers Library (aws-cryptographic-material-
providers, the keyring interface every ESDK language shares) instead.

Reads the input from stdin and writes the output to stdout. `decrypt` also writes the
message's encryption context as JSON to the file named by --context-out. AWS KMS is
reached through botocore's usual variables (AWS_ENDPOINT_URL for moto). Exits 3 with the
exception's class and message on stderr when the SDK refuses a message.
"""

import argparse
import json
import sys

import aws_encryption_sdk
import botocore.session
from aws_encryption_sdk.identifiers import (
    Algorithm,
    CommitmentPolicy,
    EncryptionKeyType,
    WrappingAlgorithm,
)
from aws_encryption_sdk.key_providers.kms import StrictAwsKmsMasterKeyProvider
from aws_encryption_sdk.key_providers.raw import RawMasterKey, WrappingKey


def provider(args):
    providers = []
    if args.kms:
        providers.append(
            StrictAwsKmsMasterKeyProvider(key_ids=args.kms, botocore_session=botocore.session.Session())
        )
    for raw in args.raw:
        namespace, name, key = raw.split(":")
        providers.append(
            RawMasterKey(
                provider_id=namespace,
                key_id=name.encode(),
                wrapping_key=WrappingKey(
                    wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
                    wrapping_key=bytes.fromhex(key),
                    wrapping_key_type=EncryptionKeyType.SYMMETRIC,
                ),
            )
        )
    if not providers:
        sys.exit("give at least one --kms or --raw key")
    first = providers[0]
    for other in providers[1:]:
        first.add_master_key_provider(other)
    return first


def raw_aes_keyring(spec):
    """The MPL's RawAESKeyring for NAMESPACE:NAME:HEXKEY (AES-256-GCM, 12-byte IV, 16-byte tag)."""
    from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
    from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
    from aws_cryptographic_material_providers.mpl.models import (
        AesWrappingAlg,
        CreateRawAesKeyringInput,
    )

    namespace, name, key = spec.split(":")
    mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
    return mpl.create_raw_aes_keyring(
        input=CreateRawAesKeyringInput(
            key_namespace=namespace,
            key_name=name,
            wrapping_key=bytes.fromhex(key),
            wrapping_alg=AesWrappingAlg.ALG_AES256_GCM_IV12_TAG16,
        )
    )


def keys(args):
    """Keyword arguments naming the keys: a keyring or a master key provider."""
    if args.raw_aes_keyring:
        if args.kms or args.raw:
            sys.exit("--raw-aes-keyring cannot be combined with --kms or --raw")
        return {"keyring": raw_aes_keyring(args.raw_aes_keyring)}
    return {"key_provider": provider(args)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("operation", choices=["encrypt", "decrypt"])
    parser.add_argument("--kms", action="append", default=[])
    parser.add_argument("--raw", action="append", default=[])
    parser.add_argument("--raw-aes-keyring")
    parser.add_argument("--context", default="{}")
    parser.add_argument("--context-out")
    parser.add_argument("--frame-length", type=int, default=4096)
    parser.add_argument("--algorithm", default="0478")
    args = parser.parse_args()
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    data = sys.stdin.buffer.read()
    try:
        if args.operation == "encrypt":
            out, _ = client.encrypt(
                source=data,
                **keys(args),
                encryption_context=json.loads(args.context),
                algorithm=Algorithm.get_by_id(int(args.algorithm, 16)),
                frame_length=args.frame_length,
            )
        else:
            out, header = client.decrypt(source=data, **keys(args))
            if args.context_out:
                with open(args.context_out, "w") as f:
                    json.dump(header.encryption_context, f)
    except Exception as e:  # the test reads the refusal from stderr
        sys.stderr.write("{}: {}\n".format(type(e).__name__, e))
        sys.exit(3)
    sys.stdout.buffer.write(out)


if __name__ == "__main__":
    main()
