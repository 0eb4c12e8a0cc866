"""The emulator's `verify_signature` foreign function (emulator/foreign.py) answers as Envoy 1.40's does: the status,
the serialised VerifySignatureResult and its error strings for a good signature, a bad one, a bad key, an unknown
hash and arguments that do not parse. The P-256 vector is the auth filter's on_configure self-test; the last test
sends every case to a real Envoy and to the emulator through tests/emulator/verify.wat and compares the answers."""

from __future__ import annotations

from pathlib import Path

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



# --- the same arguments through a real Envoy and through the emulator (tests/emulator/verify.wat) ------------------

_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_RSA_KEY = spki(_RSA.public_key())
_RSA_SIG = _RSA.sign(b"hello", padding.PKCS1v15(), hashes.SHA256())
_RSA_PEM = _RSA.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
CASES = {
    "good p256": args(P256, DER_SIG), "flipped bit": args(P256, DER_SIG[:-1] + bytes([DER_SIG[-1] ^ 1])),
    "r||s": args(P256, SIG), "other text": args(P256, DER_SIG, TEXT + b"!"),
    "md5": args(P256, DER_SIG, hash_function=b"md5"), "SHA256 upper": args(P256, DER_SIG, hash_function=b"SHA256"),
    "empty hash": args(b"garbage", DER_SIG, hash_function=b""), "garbage key": args(b"garbage", DER_SIG),
    "cut key": args(P256[:-1], DER_SIG), "trailing bytes": args(P256 + b"trailing", DER_SIG),
    "ed25519": args(spki(ed25519.Ed25519PrivateKey.generate().public_key()), DER_SIG),
    "secp256k1": args(spki(ec.generate_private_key(ec.SECP256K1()).public_key()), DER_SIG),
    "rsa good": args(_RSA_KEY, _RSA_SIG, b"hello"), "rsa sha384": args(_RSA_KEY, _RSA_SIG, b"hello", b"sha384"),
    "rsa leading zero": args(_RSA_KEY, b"\x00" + _RSA_SIG, b"hello"),
    "rsa pem": args(b"", _RSA_SIG, b"hello", pem=_RSA_PEM), "both keys": args(_RSA_KEY, _RSA_SIG, pem=_RSA_PEM),
    "no key": args(b"", DER_SIG), "truncated": b"\xff", "not utf-8": field(1, b"\xff\xfe"),
    "unknown fields, last wins": b"\x30\x07" + field(9, b"x") + field(1, b"md5") + args(P256, DER_SIG),
}


def _post(port: int, body: bytes) -> tuple[int, bytes]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: " + str(len(body)).encode() +
                     b"\r\nconnection: close\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


def test_envoy_and_the_emulator_give_the_same_answers(tmp_path):
    """Status (200 + WasmResult) and VerifySignatureResult bytes, case by case, from Envoy 1.40 and the emulator."""
    import wasmtime

    from wasmfilter.emulator.host import FilterHost
    from wasmfilter.envoy.bootstrap import Bootstrap, Upstream, WasmFilter
    from wasmfilter.envoy.process import EnvoyProcess
    from wasmfilter.harness.upstream import EchoUpstream

    wasm = tmp_path / "verify.wasm"
    wasm.write_bytes(bytes(wasmtime.wat2wasm((Path(__file__).parent / "emulator" / "verify.wat").read_text())))
    host = FilterHost.load(wasm)
    emulated = {}
    for name, body in CASES.items():
        stream = host.http(method="POST", path="/", body=body)
        emulated[name] = (stream.status, stream.body)
    with EchoUpstream("default") as echo:
        text = Bootstrap(upstreams=[Upstream("default", echo.host, echo.port)],
                         http_filters=[WasmFilter("verify", str(wasm), "").fragment()]).render()
        with EnvoyProcess(text) as envoy:
            assert envoy.listener_port is not None
            real = {name: _post(envoy.listener_port, body) for name, body in CASES.items()}
    assert emulated == real
    assert real["good p256"] == (200, b"\x08\x01") and real["truncated"] == (202, b"")
