#!/usr/bin/env python3
"""Writes the JWT test data of the auth filter: testdata/jwt_fixtures.json (Rust unit tests) and the scenario
files scenarios/jwt.yaml and scenarios/attacks.yaml (run through a real Envoy).

Everything is deterministic: fixed test-only keys below (never use them anywhere else), RSA PKCS#1 v1.5 and
RFC 6979 deterministic ECDSA signatures, fixed times. Valid tokens expire on 2100-01-01, so the scenario files are
static data. Needs the `cryptography` package (>= 44): `python3 filters/auth/scenarios/gen_fixtures.py`.
Edit this script, not the generated files.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = Path(__file__).resolve().parent
CRATE = HERE.parent

# --- fixed test keys -------------------------------------------------------------------------------------------
HS_SECRET = hashlib.sha256(b"wasmfilter auth HS256 test secret").digest()
RSA_PEM = """-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDhpB+/kvwo7fOz
zjGIiH67iB292BNOysMMUu1yBFAXv6/FllxCWX0ZGK0vnELGrqPC4RvZEdmbr0uY
Am8RcRJK2q48cb9P027T8WigdXBrpg9Wy+ZKodo5I+giuCqEt7uiwkwew1Z4zN/S
T4osGlByTpR6P1k5wyoM+UiPNmYP9yiR0RnRss8tYqqMZVgGaBmvW8vvuuZChpo4
hZyJz689n/EBE2zDLVTtCYBH4usr1NnJGfWUS+q+nyKFXUeRhWjCKcC2P2bPstFd
xoY3Ui+QZgWuNdlpek9+nt7rAM8IfGA+WhJGfTTAW+4+etVfrlge3c/zt78w+H7V
1cNgoxmXAgMBAAECggEAQj6FhaBZAIkvgYvZFf0Au/zPwoMT1A+KKO2VwWILw5Um
vQsSRfZw2DPa8H3fSuZNtLKTEuz/JopV1qhsREIefTRrb9pzMLPhtz6KGYWw/iGw
IirVjvaqkxj8F2lbLkCkyTli0KtHkUqQsXVhmuYU1SJFzAgaIW+vQkTTbRwq5ad8
eME8o3tjvkDDQ+awPbqMVm6thHQisaLTzMsaKVYWkl2zmUAFLOt4/SM82rKysV+k
zk5QnZHkNcMUaVFVCjloMh/CC6u3QDwbMkrq/Sw5ECg26LIQ3JRxgwTxD+BTudPe
vEbefyMc2Ro8aJnerWjOx6YL27W8fxpD7Mkef8k3vQKBgQD+u2Vk2M5PVyTMH75F
zSKRISTxKLuqUV9LETO/7pKl6MyHcwz/7CbSoblVkkj7g8Ar6JQSDXJi/tXGWdqG
kRZ0fJjYpYRZM/L9tUfRxKF5VvfTINWXEb/X0ur81qBIMTOvldUKgZrkdvA3EiS+
0uRMvWt4p2m2Q3OuoeJkbV2Y4wKBgQDiw6hTv2uLeiLJJam5RAuHOapudRgqj8xy
yJMC91/DsTNe0W2Rjn8W03nrOxXxVQLykqOWUVzKJ1nVPhu4Rc7LCBpcaFXyjYO8
BdEKcFGyHVbfWVUx73NxVoDFFUvtxmzF6wtqo/O5SE8EEroBxtce+tofO6AbDT3h
7nhQN0j+vQKBgG8CG12nXcEVqOOLsc+ZZcb5OrAdoCrI6047YOHzhdTnbrpYWQHu
V7zS3YF9DnENKWH5KQ307jRV+bNG1QRvlemNos5G0zZMfUgzB+lSV0wZqkZHuMzs
3z2enOkyXwcW6f9KvFynvmhxrJ1TOtAt92+53GvoCRl0q6Uexxoczv0hAoGBAISR
D5HOISgMAdQH4Z3+SqMGMj2a1MLlCAe+fDtKtMBpkneHBYAHhwKoJOlAxIYuRafb
1CinbhB8SscgJQJoRQlqtkZ5dG11D6NW3ys0GH6BKm0uA2FK8/k5MdSFq7rYunRG
AYmZSX1y6UafUACD5vUkf2ms6N+HsTqot8tlVpYdAoGAFZD1IsyC5S8rNfcK08oL
ke74nSFxB/aG0agIPXNN5xsnUy67ulykc4HeLroMkUwBkUH/awH23QPPY7M/R60F
KThwoAAeZxR28U/MeZ73jXoEjdUuyjlUfVR38egbydHrf5plYlVm2QPXLcQ6GVQp
8W7peZx4DL6Jy61G0QC0htQ=
-----END PRIVATE KEY-----
"""
# An attacker's key: signs tokens with the right kid but the wrong key.
ATTACKER_RSA_PEM = """-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDIqjDVVXabLPYq
bQN4JM2EN+YVbUFhR9j6dJQnedA8J+5yZlCUdows/bcDPciDvQxgfnPwTS6rGZaj
Z3EaVqu0FSUlzt1xKVKyKZr+ubdYDFnKnTeQKb/ZMad86LRaInVseevdFgKDuWBG
RoEWX9dOl2qMb5gDqDQ7IuDQGGgEqFNRLGJbU//4aTsN7B13jXQNtjg9Q6bFqDCr
Cn6/7grCCs2TM2Fx3XoUaQjy6eHz9x8SZro+v2R0EuFWBPl0AEsEzocfxuVEX2ho
TTxkhVE1TGhgt9hwenD5S17LLxgVG/DA9AMixkWINgNy/vXm6RxNzjUjZ/Ers1ry
djdPVlC3AgMBAAECggEAAvt0ilcg0iGS7wJ7wLdbTpG+G6dqB1YYBXDiGswWqi41
vwGCRRKV9r02kRfD+SFAI9b9Rh7/iI9yy67n4WpUVvLRgIRYiiwBDKDNqud7sBVO
6FH512yna0Tvpk2XEJfeguQ0+y4uj2Kb6a92j6yQ+JwLe1bVPYisbgyQpscWFKuc
/BM3qEKo8a6EjM3a7Ermg3yHmQM6zLZOTVbxMqBBtE+E4UUFmGVW9DVabuKkZK5o
zKz2BuyJng7HBSQ/1oHx43Ga+388NfZvh+qp1fzQkNE7wctFQ26cSHmldCF0p0Vg
arv5Ji3UCmmO/cNkfeLUY2mYQ7rPSpgZDgzxT/RiQQKBgQD6gTvxeIxI1f6BuMOU
KsJoiVu7sB+DN+sdK4gFRztNBBs11BhPyMePtMcu+OUQMh25jM+iu+BOdHypBMse
tAFn8mveveh7xlOF8iNTfNf0wuGYH2dQzFFPRDzoFQpBMABvFLvv8JHYcTcKH8G0
tpHImgu0MEk+TZDsEmmJWbTEUQKBgQDNERGg29zzfxNm+ymozRo1d/0okJp2n9ir
glYtXPsySn5C6CIzdMx+NHJfbvXDvfVktgO4ZUkg4YUdh4/Ode8DTFeBuAVjZSuO
ybGY1RubGRtJagvqSDO4SdbC/evcfH3jau8Jsa9f4ojbA8M7mJoDvLNYIAuBnJYs
E5DKHBWqhwKBgDsNJe1JRoCQ+Xro7CnMXqG354j5/qO3FdR9g4YDAaapFiT9R3Hf
WbO1oNKg15aWyc0ItZWeBkVYTl6lg6BMPJydV/JdACXVXbEQoGU448uN+RIcLQWt
9GjkJBttgkpVn3SQBbGNG0RTg+7+B3KrKviH38RtMYbfUA9mU7yOCf/RAoGBAISo
chr5oGn03vxTppOIe1fzk1XWldX/eg8Zdd5KtEXIYv2tZdKb0F4kV4jdIyfJjyHj
jWyQOUqIGbEMrT8Gk+QyUrmb7gBqxk7Ms5MG6aDgEQLhE2wv4SVqvv/Ne/NapaWk
25YN2EHTLm1gdb/r7FZWkD6GHGtwfMVuss/Mc0epAoGALrLrDVDL9BzILBLGLRS7
ijsOfgEtOzr3xqFC+q5m8Vhbdf/k8DQprvum4M5Id08ees1opsggmWtvjmn7Fv05
PLCARj7K6ynleetAV8bBHgReVuo+S7VLB5nj/DzuNxlWIVQk/U3+y9ePK0Mcqubz
NkRksDjfCo4NsegMTNrMR70=
-----END PRIVATE KEY-----
"""
EC_SCALAR = int.from_bytes(hashlib.sha256(b"wasmfilter auth ES256 test key").digest(), "big")

ISSUER = "https://issuer.example"
AUDIENCE = "wasmfilter"
NBF = 1735689600  # 2025-01-01
EXP = 4102444800  # 2100-01-01
PAST = 946684800  # 2000-01-01
FUTURE_NBF = 4070908800  # 2099-01-01

rsa_key = serialization.load_pem_private_key(RSA_PEM.encode(), password=None)
attacker_key = serialization.load_pem_private_key(ATTACKER_RSA_PEM.encode(), password=None)
ec_key = ec.derive_private_key(EC_SCALAR, ec.SECP256R1())


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def enc(obj: object) -> str:
    return b64u(json.dumps(obj, separators=(",", ":")).encode())


def sign_hs(secret: bytes, data: bytes) -> bytes:
    return hmac.new(secret, data, hashlib.sha256).digest()


def sign_rs(key, data: bytes) -> bytes:
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def sign_es_der(data: bytes) -> bytes:
    return ec_key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))


def sign_es(data: bytes) -> bytes:
    r, s = decode_dss_signature(sign_es_der(data))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def token(header: dict, claims: dict, signer) -> str:
    signing_input = f"{enc(header)}.{enc(claims)}"
    return f"{signing_input}.{b64u(signer(signing_input.encode()))}"


def claims(**overrides) -> dict:
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "scope": "orders:read", "nbf": NBF, "exp": EXP}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


rsa_pub = rsa_key.public_key().public_numbers()
ec_pub = ec_key.public_key().public_numbers()
JWKS = {"keys": [
    {"kty": "oct", "kid": "hs1", "alg": "HS256", "k": b64u(HS_SECRET)},
    {"kty": "RSA", "kid": "rs1", "alg": "RS256", "use": "sig", "n": b64u(uint(rsa_pub.n)), "e": b64u(uint(rsa_pub.e))},
    {"kty": "EC", "kid": "es1", "alg": "ES256", "crv": "P-256",
     "x": b64u(ec_pub.x.to_bytes(32, "big")), "y": b64u(ec_pub.y.to_bytes(32, "big"))},
]}
JWT_CONFIG = {
    "issuer": ISSUER, "audiences": [AUDIENCE], "clock_skew_s": 60, "max_token_bytes": 4096,
    "claims_to_headers": {"sub": "x-jwt-sub", "scope": "x-jwt-scope"}, "jwks": JWKS,
}

HS = {"alg": "HS256", "typ": "JWT", "kid": "hs1"}
RS = {"alg": "RS256", "typ": "JWT", "kid": "rs1"}
ES = {"alg": "ES256", "typ": "JWT", "kid": "es1"}
hs = lambda d: sign_hs(HS_SECRET, d)  # noqa: E731
rs = lambda d: sign_rs(rsa_key, d)  # noqa: E731

T: dict[str, str] = {}
T["hs256"] = token(HS, claims(), hs)
T["rs256"] = token(RS, claims(), rs)
T["es256"] = token(ES, claims(), sign_es)
T["es256_nokid"] = token({"alg": "ES256"}, claims(), sign_es)
T["admin_rs256"] = token(RS, claims(sub="admin", scope="admin"), rs)
T["aud_list_es256"] = token(ES, claims(aud=["other", AUDIENCE]), sign_es)

_rs_header, _rs_payload, _rs_sig = T["rs256"].split(".")
T["alg_none"] = f"{enc({'alg': 'none', 'typ': 'JWT'})}.{_rs_payload}.{_rs_sig}"
T["alg_none_unsigned"] = f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(claims(sub='admin'))}."
T["alg_none_mixed_case"] = f"{enc({'alg': 'nOnE', 'kid': 'rs1'})}.{enc(claims(sub='admin'))}."
# Algorithm confusion: HMAC keyed with the RSA public key (PEM text, or the modulus bytes).
rsa_pub_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
T["hs256_with_rsa_pem"] = token({"alg": "HS256", "kid": "rs1"}, claims(sub="admin"), lambda d: sign_hs(rsa_pub_pem, d))
T["hs256_with_rsa_n_nokid"] = token({"alg": "HS256"}, claims(sub="admin"), lambda d: sign_hs(uint(rsa_pub.n), d))
T["hs384"] = token({"alg": "HS384", "kid": "hs1"}, claims(),
                   lambda d: hmac.new(HS_SECRET, d, hashlib.sha384).digest())
T["crit_header"] = token({**RS, "crit": ["exp"], "exp": EXP}, claims(), rs)
T["tampered_payload"] = f"{_rs_header}.{enc(claims(sub='admin', scope='admin'))}.{_rs_sig}"
T["tampered_header"] = f"{enc({**RS, 'typ': 'at+jwt'})}.{_rs_payload}.{_rs_sig}"
T["wrong_rsa_key"] = token(RS, claims(sub="admin"), lambda d: sign_rs(attacker_key, d))
T["es256_der_signature"] = token(ES, claims(), sign_es_der)
T["truncated"] = T["rs256"][:-5]
T["two_parts"] = f"{_rs_header}.{_rs_payload}"
T["padded"] = T["rs256"] + "=="
T["bad_base64"] = f"{_rs_header}.{_rs_payload}.{_rs_sig[:10]}*{_rs_sig[11:]}"
T["header_not_json"] = f"{b64u(b'not json')}.{_rs_payload}.{_rs_sig}"
T["expired"] = token(RS, claims(nbf=PAST - 3600, exp=PAST), rs)
T["not_yet_valid"] = token(RS, claims(nbf=FUTURE_NBF), rs)
T["wrong_issuer"] = token(RS, claims(iss="https://evil.example"), rs)
T["wrong_audience"] = token(RS, claims(aud="someone-else"), rs)
T["unknown_kid"] = token({**RS, "kid": "rs9"}, claims(), rs)
T["no_exp"] = token(RS, claims(exp=None), rs)
T["exp_string"] = token(RS, claims(exp=str(EXP)), rs)
T["oversized"] = token(RS, claims(padding="x" * 5000), rs)

# What Envoy's verify_signature receives (src/host_crypto.rs builds the same bytes from the JWKs and tokens).
_spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
DER = {
    "rs1_spki": rsa_key.public_key().public_bytes(*_spki).hex(),
    "es1_spki": ec_key.public_key().public_bytes(*_spki).hex(),
    "es256_sig_der": sign_es_der(T["es256"].rsplit(".", 1)[0].encode()).hex(),
}

DIGESTS = {hashlib.sha256(k.encode()).hexdigest(): ident
           for k, ident in [("alice-secret", "alice"), ("bob-secret", "bob"), ("root-secret", "root")]}
SCENARIO_CONFIG = {
    "log_level": "info",
    "key_header": "x-api-key",
    "key_query_param": "api_key",
    "identity_header": "x-auth-identity",
    "keys": DIGESTS,
    "jwt": JWT_CONFIG,
    "rules": [
        {"prefix": "/healthz", "methods": ["GET", "HEAD"], "require": "public"},
        {"prefix": "/admin", "require": "any", "identities": ["admin", "root"]},
        {"prefix": "/keys-only", "require": "api_key"},
        {"prefix": "/jwt-only", "require": "jwt"},
        {"prefix": "/internal", "require": "deny"},
        {"prefix": "/", "methods": ["GET", "HEAD", "POST"], "require": "any"},
    ],
    "default_require": "deny",
}


def bearer(name: str) -> str:
    return f"Bearer {T[name]}"


STAT = "wasmcustom.wasmfilter_auth."
BOTH_CHALLENGES = 'ApiKey realm="wasmfilter", Bearer realm="wasmfilter"'
MISSING = {"error": "missing credentials"}
INVALID = {"error": "invalid credentials"}
FORBIDDEN = {"error": "forbidden"}
BAD_REQUEST = {"error": "bad request"}
NOT_REACHED = {"reached": False}


def case(name, path="/orders", headers=None, method="GET", **expect):
    request = {"path": path}
    if method != "GET":
        request["method"] = method
    if headers:
        request["headers"] = headers
    return {"name": name, "request": request, "expect": expect}


def denied(name, status, reason, path="/orders", headers=None, method="GET", **extra):
    body = {400: BAD_REQUEST, 401: MISSING}.get(status, FORBIDDEN if reason == "forbidden" else INVALID)
    expect = {"status": status, "json": body, "upstream": NOT_REACHED,
              "stats": {STAT + "denied": 1, STAT + "reason." + reason: 1, STAT + "allowed": 0}, **extra}
    return case(name, path, headers, method, **expect)


def envoy_refused(name, path="/orders", headers=None):
    """Refused by Envoy's request hardening (docs/security.md) before the filter runs: the filter counts nothing."""
    return case(name, path, headers, status=400, upstream=NOT_REACHED, stats={STAT + "denied": 0, STAT + "allowed": 0,
                                                                            STAT + "public": 0})


def reaches(name, path, upstream_path, **kw):
    """An anonymous request Envoy normalises to a public path: the filter decides on, and the upstream gets, the
    same path."""
    return case(name, path, status=200, upstream={"path": upstream_path, "headers_absent": ["x-auth-identity"]},
                stats={STAT + "public": 1, STAT + "denied": 0}, **kw)


def semicolon_dots(name, path, **kw):
    """`..;` is a dot-segment for Envoy's normalize_path from 1.39 on and a plain segment before (docs/portability.md):
    Envoy 1.39+ hands the filter the normalised path, older ones the raw one, which the filter refuses as ambiguous
    (400). The file runs on every Envoy of `all`, so the case asserts what holds on all of them: no anonymous request
    reaches the upstream at the raw path, and the filter allows nothing that needs a credential."""
    return case(name, path, body_not_contains=["/orders", "/admin"], stats={STAT + "allowed": 0}, **kw)


def token_attack(name, token_name, reason, **kw):
    return denied(name, 403, reason, headers={"authorization": bearer(token_name)},
                  body_not_contains=["alg", "signature", "expired", "kid"], **kw)


JWT_CASES = [
    case("HS256 token reaches upstream with claims as headers", headers={"authorization": bearer("hs256")},
         status=200, upstream={"path": "/orders", "headers": {
             "x-auth-identity": "alice", "x-jwt-sub": "alice", "x-jwt-scope": "orders:read"}},
         stats={STAT + "allowed": 1, STAT + "denied": 0}),
    case("RS256 token is accepted", headers={"authorization": bearer("rs256")},
         status=200, upstream={"headers": {"x-jwt-sub": "alice"}}),
    case("ES256 token is accepted", headers={"authorization": bearer("es256")},
         status=200, upstream={"headers": {"x-jwt-sub": "alice"}}),
    case("ES256 token without kid uses the only EC key", headers={"authorization": bearer("es256_nokid")},
         status=200),
    case("aud as a list containing ours is accepted", headers={"authorization": bearer("aud_list_es256")},
         status=200),
    case("bearer scheme and header name are case-insensitive",
         headers=[["AUTHORIZATION", "bEaReR " + T["rs256"]]], status=200),
    case("spoofed claim and identity headers are replaced",
         headers=[["authorization", bearer("rs256")], ["x-jwt-sub", "admin"], ["x-jwt-scope", "admin"],
                  ["x-auth-identity", "admin"]],
         status=200, upstream={"headers": {"x-jwt-sub": "alice", "x-jwt-scope": "orders:read",
                                           "x-auth-identity": "alice"}}),
    case("spoofed headers are stripped on public routes too", path="/healthz",
         headers={"x-jwt-sub": "admin", "x-auth-identity": "admin"},
         status=200, upstream={"headers_absent": ["x-jwt-sub", "x-auth-identity"]},
         stats={STAT + "public": 1, STAT + "allowed": 0}),
    case("HEAD on a public path", path="/healthz", method="HEAD", status=200),
    case("normalised public path /./healthz/ is public", path="/./healthz/", status=200),
    case("admin token reaches /admin", path="/admin/users", headers={"authorization": bearer("admin_rs256")},
         status=200, upstream={"path": "/admin/users", "headers": {"x-auth-identity": "admin"}}),
    case("root API key reaches /admin", path="/admin", headers={"x-api-key": "root-secret"},
         status=200, upstream={"headers": {"x-auth-identity": "root"}}),
    denied("valid but insufficient token on /admin is 403 forbidden", 403, "forbidden", path="/admin",
           headers={"authorization": bearer("rs256")}),
    case("API key from the query parameter", path="/orders?api_key=bob-secret",
         status=200, upstream={"headers": {"x-auth-identity": "bob"}}),
    case("no credential is 401 with both challenges",
         status=401, json=MISSING, headers={"www-authenticate": BOTH_CHALLENGES,
                                            "content-type": "application/json"}, upstream=NOT_REACHED),
    case("API key on a JWT-only path is 401 with the Bearer challenge", path="/jwt-only",
         headers={"x-api-key": "alice-secret"}, status=401,
         headers_absent=[], upstream=NOT_REACHED),
    case("token on a key-only path is 401", path="/keys-only", headers={"authorization": bearer("rs256")},
         status=401, upstream=NOT_REACHED),
    denied("a method no rule allows is 403", 403, "forbidden", path="/orders", method="DELETE",
           headers={"x-api-key": "alice-secret"}),
    denied("a deny rule refuses even the root key", 403, "forbidden", path="/internal/metrics",
           headers={"x-api-key": "root-secret"}),
]
JWT_CASES[15]["expect"]["headers"] = {"www-authenticate": 'Bearer realm="wasmfilter"'}
del JWT_CASES[15]["expect"]["headers_absent"]

ATTACK_CASES = [
    # credentials: missing, empty, duplicated, confused
    denied("no credentials", 401, "missing"),
    denied("empty API key header", 401, "missing", headers={"x-api-key": ""}),
    denied("blank API key header", 401, "missing", headers={"x-api-key": "   "}),
    denied("wrong API key", 403, "bad_key", headers={"x-api-key": "alice-secre"}, body_not_contains=["alice"]),
    denied("API key with different case", 403, "bad_key", headers={"x-api-key": "ALICE-SECRET"}),
    denied("duplicated API key header", 403, "ambiguous",
           headers=[["x-api-key", "alice-secret"], ["X-Api-Key", "alice-secret"]]),
    denied("API key in header and query", 403, "ambiguous", path="/orders?api_key=alice-secret",
           headers={"x-api-key": "bob-secret"}),
    denied("API key twice in the query", 403, "ambiguous", path="/orders?api_key=alice-secret&api_key=bob-secret"),
    denied("API key and bearer token together", 403, "ambiguous",
           headers={"x-api-key": "alice-secret", "authorization": bearer("rs256")}),
    denied("spoofed identity without credentials", 401, "missing", headers={"X-Auth-Identity": "admin"}),
    denied("empty bearer token", 401, "missing", headers={"authorization": "Bearer "}),
    denied("Basic scheme is no credential", 401, "missing", headers={"authorization": "Basic YWxpY2U6c2VjcmV0"}),
    denied("duplicated authorization header", 403, "ambiguous",
           headers=[["authorization", bearer("rs256")], ["Authorization", bearer("rs256")]]),
    # malformed tokens
    token_attack("bad base64 in signature", "bad_base64", "malformed"),
    token_attack("padded base64", "padded", "malformed"),
    token_attack("truncated token", "truncated", "malformed"),
    token_attack("token with two parts", "two_parts", "malformed"),
    token_attack("header is not JSON", "header_not_json", "malformed"),
    token_attack("oversized token", "oversized", "oversized"),
    denied("garbage bearer value", 403, "malformed", headers={"authorization": "Bearer not.a.jwt"}),
    # signature attacks
    token_attack("tampered payload (sub=admin)", "tampered_payload", "bad_signature", path="/admin"),
    token_attack("tampered header", "tampered_header", "bad_signature"),
    token_attack("signed by an attacker's RSA key", "wrong_rsa_key", "bad_signature", path="/admin"),
    token_attack("ES256 signature in DER form", "es256_der_signature", "bad_signature"),
    token_attack("alg none with a copied signature", "alg_none", "unsupported_alg"),
    token_attack("alg none unsigned", "alg_none_unsigned", "unsupported_alg", path="/admin"),
    token_attack("alg nOnE unsigned", "alg_none_mixed_case", "unsupported_alg"),
    token_attack("HS256 keyed with the RSA public key PEM (kid rs1)", "hs256_with_rsa_pem", "alg_mismatch",
                 path="/admin"),
    token_attack("HS256 keyed with the RSA modulus, no kid", "hs256_with_rsa_n_nokid", "bad_signature"),
    token_attack("HS384 is not accepted", "hs384", "unsupported_alg"),
    token_attack("unknown crit header", "crit_header", "unsupported_alg"),
    # claims
    token_attack("expired token", "expired", "expired"),
    token_attack("token not yet valid", "not_yet_valid", "not_yet_valid"),
    token_attack("wrong issuer", "wrong_issuer", "wrong_issuer"),
    token_attack("wrong audience", "wrong_audience", "wrong_audience"),
    token_attack("unknown kid", "unknown_kid", "unknown_kid"),
    token_attack("no exp claim", "no_exp", "malformed"),
    token_attack("exp as a string", "exp_string", "malformed"),
    # encoded path tricks, through the generated Envoy config (normalize_path, merge_slashes, escaped slashes and
    # underscores refused; docs/security.md): a public prefix must not open /admin, undecodable paths are refused.
    # path_differentials.yaml and path_forward_canonical.yaml prove the filter alone, with Envoy's hardening off.
    denied("/healthz/../admin is /admin", 401, "missing", path="/healthz/../admin"),
    denied("/healthz/%2e%2e/admin is /admin", 401, "missing", path="/healthz/%2e%2e/admin"),
    denied("/healthz/%2E%2E/admin is /admin", 401, "missing", path="/healthz/%2E%2E/admin"),
    envoy_refused("/healthz%2f..%2fadmin: escaped slash refused by Envoy", path="/healthz%2f..%2fadmin"),
    semicolon_dots("/healthz/..;/admin never reaches the upstream", "/healthz/..;/admin", upstream=NOT_REACHED),
    envoy_refused("/healthz/..%5cadmin: escaped backslash refused by Envoy", path="/healthz/..%5cadmin"),
    denied("/healthz\\..\\admin is /admin", 401, "missing", path="/healthz\\..\\admin"),
    denied("//admin is /admin", 403, "forbidden", path="//admin", headers={"x-api-key": "alice-secret"}),
    denied("/./admin is /admin", 403, "forbidden", path="/./admin", headers={"x-api-key": "alice-secret"}),
    denied("/%61dmin is /admin", 403, "forbidden", path="/%61dmin", headers={"x-api-key": "alice-secret"}),
    denied("/%2e%2e/admin is clamped to /admin by Envoy", 401, "missing", path="/%2e%2e/admin"),
    denied("double-encoded dots", 400, "bad_path", path="/healthz/%252e%252e/admin"),
    denied("bad percent escape", 400, "bad_path", path="/healthz/%zz"),
    envoy_refused("encoded NUL: refused by Envoy", path="/healthz%00/admin"),
    denied("invalid UTF-8", 400, "bad_path", path="/healthz/%ff"),
    denied("overlong UTF-8 dots", 400, "bad_path", path="/orders/%c0%ae%c0%ae/healthz"),
    # issue 12's differentials: the filter decides on the path the upstream gets (never a raw /orders/... path
    # authorised as /healthz), or refuses what Envoy leaves ambiguous
    semicolon_dots("/orders/..;/healthz never reaches the upstream as a raw /orders path", "/orders/..;/healthz"),
    reaches("/orders/%2e%2e/healthz reaches the upstream as /healthz", "/orders/%2e%2e/healthz", "/healthz"),
    reaches("/orders/x\\..\\..\\healthz reaches the upstream as /healthz", "/orders/x\\..\\..\\healthz", "/healthz"),
    envoy_refused("/orders/..%2fhealthz: escaped slash refused by Envoy", path="/orders/..%2fhealthz"),
    denied("/orders/%2e%2e;/healthz (Envoy forwards ..;) is ambiguous", 400, "bad_path",
           path="/orders/%2e%2e;/healthz"),
    denied("/healthz;jsessionid=1 (a path parameter) is ambiguous", 400, "bad_path", path="/healthz;jsessionid=1"),
    denied("/admin. (a Windows server drops the dot) is ambiguous", 400, "bad_path", path="/admin./x",
           headers={"x-api-key": "alice-secret"}),
    denied("/admin%20 (a Windows server drops the space) is ambiguous", 400, "bad_path", path="/admin%20",
           headers={"x-api-key": "alice-secret"}),
    # owned headers and the cluster header: no spelling of them from a client reaches the upstream
    envoy_refused("x_auth_identity (underscore spelling): refused by Envoy", path="/healthz",
                  headers={"x_auth_identity": "root"}),
    case("a client-sent x-wasmfilter-cluster picks no cluster", path="/healthz",
         headers={"x-wasmfilter-cluster": "elsewhere"}, status=200,
         upstream={"name": "default", "headers_absent": ["x-wasmfilter-cluster"]}),
    denied("/healthz used with POST is not public", 401, "missing", path="/healthz", method="POST"),
]


def write_yaml(path: Path, description: str, cases: list, verifier: str = "auto") -> None:
    config = {**SCENARIO_CONFIG, "jwt": {**JWT_CONFIG, "verifier": verifier}}
    doc: dict = {"description": description, "config": config, "cases": cases}
    text = yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)
    path.write_text(f"# GENERATED by gen_fixtures.py: edit that script and re-run it, not this file.\n{text}")


def bench_definition() -> dict:
    """benchmarks/jwt.yaml: the JWT path against Envoy's jwt_authn with the same keys, issuer, audience and claim
    headers; RS256 and ES256, each with and without the verified-token caches, and with the in-module verifier."""
    jwt_only = {"identity_header": "x-auth-identity", "jwt": JWT_CONFIG, "jwt_cache": {"max_entries": 0}}
    native = {"issuer": ISSUER, "audiences": [AUDIENCE], "clock_skew_s": 60, "jwks": JWKS,
              "claims_to_headers": JWT_CONFIG["claims_to_headers"], "cache_size": 0}
    scenarios = []
    for alg in ("rs256", "es256"):
        request = {"path": "/orders", "headers": {"authorization": bearer(alg)}}
        scenarios += [
            {"name": alg, "description": f"{alg.upper()} token, no cache: every request verifies the signature "
                                         "(Wasm: Envoy's verify_signature)",
             "request": request, "expect": {"status": 200}},
            {"name": f"{alg}-cached", "description": f"{alg.upper()} token, verified-token caches on (Wasm "
                                                     "jwt_cache, jwt_authn jwt_cache_config)",
             "request": request, "config_patch": {"jwt_cache": {"max_entries": 1024}},
             "native_values": {"jwt_authn": {"cache_size": 1024}}, "expect": {"status": 200}},
            {"name": f"{alg}-module", "description": f"{alg.upper()} token, no cache, signature checked by the "
                                                     "in-module RSA/P-256 code (jwt.verifier: module)",
             "request": request, "config_patch": {"jwt": {"verifier": "module"}}, "expect": {"status": 200}},
        ]
    scenarios.append({"name": "missing", "description": "no token → 401 local reply",
                      "request": {"path": "/orders"}, "expect": {"status": 401}})
    return {
        "name": "jwt", "filter": "../filters/auth",
        "description": "The auth filter's JWT path (RS256/ES256, claims forwarded as headers) against Envoy's "
                       "jwt_authn with the same keys. GENERATED by filters/auth/scenarios/gen_fixtures.py.",
        "config": jwt_only,
        "features": ["rs256", "es256"],  # the *-module scenarios need the in-module verifier compiled in
        "settings": {"envoy_concurrency": 1, "latency_connections": 1, "connections": 16, "duration_s": 2,
                     "warmup_s": 1, "rounds": 3},
        "notes": "Per request without a cache: header fetch, base64 + JSON of header and payload, then the "
                 "signature: one verify_signature host call (Envoy parses the DER key and runs BoringSSL) or "
                 "RSA/P-256 inside V8. With the cache, a hit costs a SHA-256 of the token and a map lookup.",
        "natives": [{"name": "jwt_authn", "description": "Envoy jwt_authn: same JWKS, issuer, audience, "
                                                         "claim_to_headers",
                     "filters": [{"template": "native/jwt_authn.yaml.j2", "values": native}]}],
        "scenarios": scenarios,
    }


def main() -> None:
    (CRATE / "testdata").mkdir(exist_ok=True)
    fixtures = {"_comment": "GENERATED by scenarios/gen_fixtures.py", "config": {"jwt": JWT_CONFIG}, "tokens": T,
                "der": DER}
    (CRATE / "testdata" / "jwt_fixtures.json").write_text(json.dumps(fixtures, indent=1) + "\n")
    write_yaml(HERE / "jwt.yaml", "JWT bearer tokens (HS256, RS256, ES256), claims forwarding, rules and identities. "
               "RS256/ES256 through Envoy's verify_signature (`verifier: envoy`: refused where Envoy lacks it).",
               JWT_CASES, verifier="envoy")
    write_yaml(HERE / "attacks.yaml", "Attack suite: every case must be refused and never reach the upstream "
               "(RS256/ES256 through Envoy's verify_signature).", ATTACK_CASES, verifier="envoy")
    # The in-module verifier (cargo features rs256/es256) meets the same attack suite in the crate's unit tests
    # (jwt::tests::refuses_attacks, no host) and through Envoy in benchmarks/jwt.yaml's *-module scenarios; an
    # Envoy scenario file for it would cost make test two extra builds (default and --opt) with the crypto crates.
    bench = yaml.safe_dump(bench_definition(), sort_keys=False, width=100, allow_unicode=True)
    (CRATE.parent.parent / "benchmarks" / "jwt.yaml").write_text(
        f"# GENERATED by filters/auth/scenarios/gen_fixtures.py: edit that script, not this file.\n{bench}")
    print(f"{len(T)} tokens, {len(JWT_CASES)} jwt cases, {len(ATTACK_CASES)} attack cases")


if __name__ == "__main__":
    main()
