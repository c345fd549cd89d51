"""Independent right values for keymgr's EVM and XRPL tests, computed with eth-account,
xrpl-py and coincurve (pinned in constraints.txt, installed by `cargo xtask provision`).

Usage: python verify.py COMMAND ARGS... ; prints one JSON object on stdout.

  sign-tx KEY REQUEST_JSON            eth-account's signed raw transaction and hash
  sign-message KEY text|hex MESSAGE   eth-account's EIP-191 signature (encode_defunct)
  sign-authorization KEY CHAIN ADDRESS NONCE
                                      eth-account's signed EIP-7702 authorization
  recover-digest DIGEST RSV           coincurve: the public key an r||s||v signature of a
                                      32-byte digest recovers to (v = 27/28)
  xrp-keypair SEED secp256k1|ed25519  xrpl-py: public key and classic address of a seed
"""

import json
import sys


def sign_tx(key, request):
    from eth_account import Account

    tx = json.loads(request)
    # eth-account takes integers for quantities and no `from`.
    for name in ("value", "nonce", "gas", "gasPrice", "maxFeePerGas",
                 "maxPriorityFeePerGas", "chainId", "type"):
        if isinstance(tx.get(name), str):
            tx[name] = int(tx[name], 16)
    tx.pop("from", None)
    # eth-account knows legacy transactions only by the absence of `type`.
    if tx.get("type") == 0:
        del tx["type"]
    if "input" in tx:
        tx["data"] = tx.pop("input")
    signed = Account.sign_transaction(tx, key)
    return {"raw": "0x" + signed.raw_transaction.hex(), "hash": "0x" + signed.hash.hex()}


def sign_message(key, reading, message):
    from eth_account import Account
    from eth_account.messages import encode_defunct

    encoded = encode_defunct(text=message) if reading == "text" else encode_defunct(hexstr=message)
    signed = Account.sign_message(encoded, key)
    return {"signature": "0x" + signed.signature.hex()}


def sign_authorization(key, chain, address, nonce):
    from eth_account import Account

    signed = Account.sign_authorization(
        {"chainId": int(chain, 0), "address": address, "nonce": int(nonce, 0)}, key)
    address = signed.address if isinstance(signed.address, str) else "0x" + signed.address.hex()
    return {"chainId": signed.chain_id, "address": address, "nonce": signed.nonce,
            "yParity": signed.y_parity, "r": hex(signed.r), "s": hex(signed.s)}


def recover_digest(digest, rsv):
    from coincurve import PublicKey

    sig = bytes.fromhex(rsv.removeprefix("0x"))
    v = sig[64]
    if v not in (27, 28):
        raise SystemExit(f"v must be 27 or 28, got {v}")
    recoverable = sig[:64] + bytes([v - 27])
    public = PublicKey.from_signature_and_message(
        recoverable, bytes.fromhex(digest.removeprefix("0x")), hasher=None)
    return {"public_key": public.format(compressed=False).hex()}


def xrp_keypair(seed, algorithm):
    from xrpl.constants import CryptoAlgorithm
    from xrpl.core.keypairs import derive_classic_address, derive_keypair

    public, _private = derive_keypair(seed, algorithm=CryptoAlgorithm(algorithm))
    return {"public_key": public, "address": derive_classic_address(public)}


COMMANDS = {
    "sign-tx": sign_tx,
    "sign-message": sign_message,
    "sign-authorization": sign_authorization,
    "recover-digest": recover_digest,
    "xrp-keypair": xrp_keypair,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        raise SystemExit(__doc__)
    print(json.dumps(COMMANDS[sys.argv[1]](*sys.argv[2:])))
