"""The emulator's `verify_signature` foreign function (emulator/foreign.py) answers as Envoy 1.40's does: the status,
the serialised VerifySignatureResult and its error strings for a good signature, a bad one, a bad key, an unknown
hash and arguments that do not parse. The P-256 vector is the auth filter's on_configure self-test, which the
process and docker backends run against a real Envoy in every auth scenario file."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from wasmfilter.emulator.codes import Result
from wasmfilter.emulator.foreign import encode_result, parse_arguments, verify_signature

# filters/auth/src/host_crypto.rs: SELF_TEST_X / _Y / _SIG / _TEXT
X = bytes.fromhex("8be2baddf99acb6b83ba90966146ef408493fbbad12c1f273b90d92e27f5a910")
Y = bytes.fromhex("a70cd392a235bbe5951c57378334e275419ad9d162404751ce1a9a150a07d584")
SIG = bytes.fromhex("2f7ae2b51400b6921fdf318427b4b0fd7eaa2ad8c9b17ccbcae0ae8cbaf66115"
                    "b3ca8ac44526152bd3c80442f2a2631e42f809329f63f9175220c83f69ba63f0")
TEXT = b"wasmfilter: is verify_signature there and right?"
FAILED = b"\x12&Failed to verify digest. Error code: 0"
NO_KEY = b"\x12#Failed to initialize digest verify."


def field(number: int, value: bytes) -> bytes:
    size, length = len(value), b""
    while size >= 0x80:
        length += bytes([size & 0x7F | 0x80])
        size >>= 7
    return bytes([number << 3 | 2]) + length + bytes([size]) + value


def args(key: bytes, sig: bytes, text: bytes = TEXT, hash_function: bytes = b"sha256", pem: bytes = b"") -> bytes:
    out = field(1, hash_function) + (field(2, key) if key else b"") + field(3, sig) + field(4, text)
    return out + (field(5, pem) if pem else b"")


def spki(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


P256 = spki(ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + X + Y))
DER_SIG = encode_dss_signature(int.from_bytes(SIG[:32], "big"), int.from_bytes(SIG[32:], "big"))


def test_the_auth_self_test_vector_verifies_and_a_flipped_bit_does_not():
    assert verify_signature(None, args(P256, DER_SIG)) == (Result.OK, b"\x08\x01")
    tampered = DER_SIG[:-1] + bytes([DER_SIG[-1] ^ 1])
    assert verify_signature(None, args(P256, tampered)) == (Result.OK, FAILED)
    assert verify_signature(None, args(P256, DER_SIG, TEXT + b"!")) == (Result.OK, FAILED)
    assert verify_signature(None, args(P256, SIG)) == (Result.OK, FAILED), "ECDSA wants DER, not r||s"


def test_rsa_pkcs1_any_supported_hash_and_exact_signature_length():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = spki(private.public_key())
    for name, algorithm in (("SHA256", hashes.SHA256()), ("sha512", hashes.SHA512()), ("sha1", hashes.SHA1())):
        sig = private.sign(b"hello", padding.PKCS1v15(), algorithm)
        assert verify_signature(None, args(key, sig, b"hello", name.encode())) == (Result.OK, b"\x08\x01")
    sig = private.sign(b"hello", padding.PKCS1v15(), hashes.SHA256())
    assert verify_signature(None, args(key, sig, b"hello", b"sha384")) == (Result.OK, FAILED)
    assert verify_signature(None, args(key, b"\x00" + sig, b"hello")) == (Result.OK, FAILED), "BoringSSL: length"
    pss = private.sign(b"hello", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    assert verify_signature(None, args(key, pss, b"hello")) == (Result.OK, FAILED), "PKCS#1 v1.5 only"
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert verify_signature(None, args(b"", sig, b"hello", pem=pem)) == (Result.OK, b"\x08\x01")


def test_unknown_hash_is_named_before_the_key_is_looked_at():
    assert verify_signature(None, args(P256, DER_SIG, hash_function=b"md5")) == \
        (Result.OK, b"\x12\x15md5 is not supported.")
    assert verify_signature(None, args(b"garbage", DER_SIG, hash_function=b"")) == \
        (Result.OK, b"\x12\x12 is not supported.")


@pytest.mark.parametrize("key", [
    b"garbage", P256[:-1], b"\x30\x03\x02\x01\x01",
    spki(ed25519.Ed25519PrivateKey.generate().public_key()),          # EVP_DigestVerifyInit refuses a digest
    spki(ec.generate_private_key(ec.SECP256K1()).public_key()),       # not a curve BoringSSL parses
])
def test_a_key_envoy_cannot_use_is_result_false_not_an_error_status(key: bytes):
    assert verify_signature(None, args(key, DER_SIG)) == (Result.OK, NO_KEY)


def test_bytes_after_the_der_key_are_ignored_as_boringssl_does():
    assert verify_signature(None, args(P256 + b"trailing", DER_SIG)) == (Result.OK, b"\x08\x01")


@pytest.mark.parametrize("raw", [
    b"\xff",                                   # truncated varint
    field(1, b"sha256")[:-2],                  # truncated field
    field(1, b"\xff\xfe"),                     # a proto3 string that is not UTF-8
    args(b"", DER_SIG),                        # no key
    args(P256, DER_SIG, pem=b"-----BEGIN PUBLIC KEY-----\n"),   # both DER and PEM
    b"\x00\x01",                               # field number 0
])
def test_arguments_envoy_cannot_parse_are_bad_argument(raw: bytes):
    assert verify_signature(None, raw) == (Result.BAD_ARGUMENT, b"")


def test_unknown_fields_are_skipped_and_the_last_value_wins():
    extra = b"\x30\x07" + b"\x3d\x01\x02\x03\x04" + field(9, b"x")
    assert parse_arguments(extra + field(1, b"md5") + args(P256, DER_SIG)) is not None
    assert verify_signature(None, extra + field(1, b"md5") + args(P256, DER_SIG)) == (Result.OK, b"\x08\x01")
    assert encode_result(False, "") == b"" and encode_result(True, "") == b"\x08\x01"
    assert encode_result(False, "x" * 200)[:3] == b"\x12\xc8\x01"

