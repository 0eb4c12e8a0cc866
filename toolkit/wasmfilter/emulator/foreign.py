"""Envoy's `verify_signature` foreign function (source/extensions/common/wasm/foreign.cc, crypto/utility_impl.cc),
answered as Envoy answers it, with `cryptography` standing in for BoringSSL.

The argument is `VerifySignatureArguments` (ext/verify_signature.proto: `hash_function` = 1, `public_key` = 2 as DER
SubjectPublicKeyInfo, `signature` = 3, `text` = 4, `public_key_pem` = 5). Envoy's answers:

- arguments that do not parse as that message, or no key, or both a DER and a PEM key: BadArgument, no result;
- otherwise Ok with `VerifySignatureResult` (`result` = 1, `error` = 2), proto3-encoded (a false `result` and an
  empty `error` are left out): `result: true` for a good signature; for anything else `result` false and one of
  `"<hash> is not supported."` (sha1/sha224/sha256/sha384/sha512, any case, are; checked before the key),
  `"Failed to initialize digest verify."` (the key does not parse, or cannot verify with a digest: Ed25519, X25519),
  `"Failed to verify digest. Error code: 0"` (a wrong signature, or one not in the key type's form).

BoringSSL's rules that OpenSSL does not share are applied here: `EVP_parse_public_key` reads one DER element and
ignores bytes after it, knows only rsaEncryption, id-ecPublicKey on P-224/P-256/P-384/P-521, DSA, Ed25519 and
X25519, refuses an RSA key with an even or one-bit exponent, an exponent over 33 bits or a modulus over 16384 bits;
an RSA signature must be exactly the modulus' length (PKCS#1 v1.5); an ECDSA signature is DER."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

from wasmfilter.emulator.codes import Result
from wasmfilter.varint import read as _varint

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.host import FilterHost

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512}
BORINGSSL_CURVES = (ec.SECP224R1, ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
OID_RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")
NOT_INITIALIZED = "Failed to initialize digest verify."
NOT_VERIFIED = "Failed to verify digest. Error code: 0"

# field number → (name, is a proto3 `string`, which must be UTF-8 for the message to parse)
_ARGUMENT_FIELDS = {1: ("hash_function", True), 2: ("public_key", False), 3: ("signature", False),
                    4: ("text", False), 5: ("public_key_pem", True)}


def parse_arguments(data: bytes) -> dict[str, bytes] | None:
    """`VerifySignatureArguments` as protobuf's ParseFromString reads it (last occurrence wins, unknown fields and
    known fields of another wire type skipped, strings must be UTF-8); None when it does not parse."""
    fields = {name: b"" for name, _ in _ARGUMENT_FIELDS.values()}
    pos = 0
    try:
        while pos < len(data):
            tag, pos = _varint(data, pos)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                return None
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            elif wire == 2:
                size, pos = _varint(data, pos)
                value = data[pos:pos + size]
                pos += size
                known = _ARGUMENT_FIELDS.get(number)
                if known is not None:
                    if known[1]:
                        value.decode("utf-8")
                    fields[known[0]] = value
            else:
                return None  # groups: not in this message; treated as a parse failure
            if pos > len(data):
                return None
    except (ValueError, UnicodeDecodeError):
        return None
    return fields


def encode_result(ok: bool, error: str) -> bytes:
    """`VerifySignatureResult` serialised by proto3 (default values left out)."""
    out = b"\x08\x01" if ok else b""
    raw = error.encode()
    if raw:
        size, length = len(raw), b""
        while size >= 0x80:
            length += bytes([size & 0x7F | 0x80])
            size >>= 7
        out += b"\x12" + length + bytes([size]) + raw
    return out


def _der_element(data: bytes) -> bytes | None:
    """The first DER element of DATA (BoringSSL's CBS parse reads one and leaves the rest), None when malformed."""
    if len(data) < 2:
        return None
    first = data[1]
    if first < 0x80:
        end = 2 + first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            return None
        end = 2 + count + int.from_bytes(data[2:2 + count], "big")
    return data[:end] if end <= len(data) else None


def _der_key(der: bytes) -> object | None:
    element = _der_element(der)
    if element is None or element[:1] != b"\x30":
        return None
    try:
        key = serialization.load_der_public_key(element)
    except (ValueError, UnsupportedAlgorithm):
        return None
    if isinstance(key, rsa.RSAPublicKey) and OID_RSA_ENCRYPTION not in element[:24]:
        return None  # RSA-PSS (or another RSA OID) SPKI: BoringSSL's parser knows only rsaEncryption
    return key


def _pem_key(pem: bytes) -> object | None:
    try:
        return serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        return None


def _boringssl_accepts(key: object) -> bool:
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return numbers.e % 2 == 1 and numbers.e.bit_length() >= 2 and numbers.e.bit_length() <= 33 and \
            key.key_size <= 16384
    if isinstance(key, ec.EllipticCurvePublicKey):
        return isinstance(key.curve, BORINGSSL_CURVES)
    return isinstance(key, dsa.DSAPublicKey) or type(key).__name__ in ("Ed25519PublicKey", "X25519PublicKey")


def verify(hash_function: str, key: object | None, signature: bytes, text: bytes) -> tuple[bool, str]:
    """Envoy's `UtilityImpl::verifySignature`: (verified, error message)."""
    algorithm = HASHES.get(hash_function.lower())
    if algorithm is None:
        return False, f"{hash_function} is not supported."
    if key is None or not _boringssl_accepts(key):
        return False, NOT_INITIALIZED
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if len(signature) != (key.key_size + 7) // 8:
                return False, NOT_VERIFIED
            key.verify(signature, text, padding.PKCS1v15(), algorithm())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, text, ec.ECDSA(algorithm()))
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, text, algorithm())
        else:
            return False, NOT_INITIALIZED  # Ed25519 / X25519: EVP_DigestVerifyInit refuses a digest
    except (InvalidSignature, ValueError):
        return False, NOT_VERIFIED
    return True, ""


def verify_signature(host: FilterHost | None, args: bytes) -> tuple[Result, bytes]:
    """The foreign function: (status, serialised VerifySignatureResult) as Envoy's registration returns them."""
    fields = parse_arguments(args)
    if fields is None:
        return Result.BAD_ARGUMENT, b""
    der, pem = fields["public_key"], fields["public_key_pem"]
    if bool(der) == bool(pem):
        return Result.BAD_ARGUMENT, b""
    key = _der_key(der) if der else _pem_key(pem)
    ok, error = verify(fields["hash_function"].decode(), key, fields["signature"], fields["text"])
    return Result.OK, encode_result(ok, error)

