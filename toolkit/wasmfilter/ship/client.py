"""The OCI distribution API client: `RegistryClient` (ping, blobs, manifests) on one `requests` session, with
Basic and Bearer-token auth (the GET token flow with a user and password, the OAuth2 refresh-token grant with an
identity token), bounded retries with backoff on 429/502/503/504, digest checks on what it reads, and one-line
`RegistryError`s naming the registry, the request and the status."""

from __future__ import annotations

import base64
import re
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlencode, urljoin

from wasmfilter.errors import RegistryError
from wasmfilter.ship.credentials import Credentials
from wasmfilter.ship.image import MANIFEST_ACCEPT, Image, sha256_digest, verified
from wasmfilter.ship.reference import DOCKER_HUB, Reference

# Retries: status codes that mean "try again later", how many retries (so RETRIES + 1 attempts at most), the backoff
# factor (urllib3: no sleep before the first retry, then BACKOFF * 2**(n-1) s), and a cap on a Retry-After header.
RETRY_STATUSES = (429, 502, 503, 504)
RETRIES = 4
BACKOFF = 0.25
MAX_RETRY_AFTER = 10.0
CLIENT_ID = "wasmfilter"  # the OAuth2 client_id of the refresh-token grant (Docker sends "docker")
LOGIN_FIX = "pass --username/--password, or `docker login` so ~/.docker/config.json holds credentials for it"


class RegistryClient(AbstractContextManager["RegistryClient"]):
    """A small OCI distribution API client (blobs, manifests) with Basic and Bearer-token auth. Every request,
    the token service's included, is retried on 429/502/503/504 (RETRIES times, with backoff and Retry-After);
    a connection error is not retried."""

    def __init__(self, registry: str, *, insecure: bool = False, credentials: Credentials | None = None,
                 timeout: float = 30.0, retries: int = RETRIES, backoff: float = BACKOFF):
        import requests
        from requests.adapters import HTTPAdapter

        self.registry = registry
        self.insecure = insecure
        self.credentials = credentials
        self.timeout = timeout
        host = "registry-1.docker.io" if registry == DOCKER_HUB else registry
        self.base = f"{'http' if insecure else 'https'}://{host}"
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=_retry_policy(retries, backoff))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._auth: dict[str, str] = {}  # scope -> Authorization header

    def close(self) -> None:
        self.session.close()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport

    def _request(self, method: str, url: str, *, scope: str, expect: tuple[int, ...], what: str,
                 **kwargs: Any) -> Any:
        import requests

        if not url.startswith("http"):
            url = urljoin(self.base + "/", url.lstrip("/"))
        headers = dict(kwargs.pop("headers", {}) or {})
        for attempt in range(2):
            if scope in self._auth:
                headers["Authorization"] = self._auth[scope]
            try:
                resp = self.session.request(method, url, headers=headers, timeout=self.timeout,
                                            allow_redirects=True, **kwargs)
            except requests.exceptions.SSLError as e:
                raise RegistryError(f"TLS to {self.registry} failed ({_short(e)})",
                                    fix="for a plain-HTTP registry pass --insecure") from e
            except requests.exceptions.ConnectionError as e:
                raise RegistryError(f"cannot connect to registry {self.registry} ({_short(e)})",
                                    fix="check the registry address and that it is running") from e
            except requests.exceptions.RequestException as e:
                raise RegistryError(f"request to registry {self.registry} failed ({_short(e)})",
                                    fix="check the registry address and network") from e
            if resp.status_code == 401 and attempt == 0:
                self._authenticate(resp, scope)
                continue
            break
        if resp.status_code in expect:
            return resp
        raise self._error(resp, what)

    def _authenticate(self, resp: Any, scope: str) -> None:
        challenge = resp.headers.get("WWW-Authenticate", "")
        scheme, _, params_text = challenge.partition(" ")
        params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
        creds = self.credentials
        if scheme.lower() == "basic":
            if creds is None:
                raise RegistryError(f"registry {self.registry} requires authentication (401)", fix=LOGIN_FIX)
            if creds.identity_token:
                raise RegistryError(f"registry {self.registry} wants Basic auth, but its credentials are an identity "
                                    f"token ({creds.source})", fix="pass --username/--password for this registry")
            token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            self._auth[scope] = f"Basic {token}"
            return
        if scheme.lower() == "bearer" and params.get("realm"):
            self._auth[scope] = f"Bearer {self._bearer_token(params, scope)}"
            return
        raise RegistryError(f"registry {self.registry} requires authentication with an unsupported scheme "
                            f"('{challenge[:60]}')", fix="use a registry with Basic or Bearer token auth")

    def _bearer_token(self, params: dict[str, str], scope: str) -> str:
        """A token from the realm of a Bearer challenge: with an identity token the OAuth2 refresh-token grant
        (POST, as Docker and distribution do), else GET with the user and password as Basic auth (or none)."""
        import requests

        realm, creds = params["realm"], self.credentials
        query = {"service": params.get("service", "")}
        if scope:
            query["scope"] = scope
        try:
            if creds is not None and creds.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "client_id": CLIENT_ID, **query}
                tok = self.session.post(realm, data=form, timeout=self.timeout)
            else:
                auth = (creds.username, creds.password) if creds else None
                tok = self.session.get(realm + "?" + urlencode(query), auth=auth, timeout=self.timeout)
        except requests.exceptions.RequestException as e:
            raise RegistryError(f"cannot reach the token service of {self.registry} ({_short(e)})",
                                fix="check network access to " + realm) from e
        if creds is not None and creds.identity_token and tok.status_code in (400, 401):
            raise RegistryError(f"registry {self.registry} rejected {creds.who} ({tok.status_code}"
                                f"{_oauth_error(tok)} from its token service)",
                                fix="run `docker login` again, or pass --username/--password")
        if tok.status_code == 401 and creds is None:
            raise RegistryError(f"registry {self.registry} requires authentication (401 from its token service)",
                                fix=LOGIN_FIX)
        if tok.status_code == 401:
            raise RegistryError(f"registry {self.registry} rejected the credentials (401 from its token service)",
                                fix="check --username/--password or the Docker config entry")
        if tok.status_code != 200:
            raise RegistryError(f"token service of {self.registry} answered {tok.status_code}",
                                fix="check the credentials and repository name")
        try:
            body = tok.json()
        except ValueError:
            body = {}
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not token:
            raise RegistryError(f"token service of {self.registry} returned no token", fix="check credentials")
        return str(token)

    def _error(self, resp: Any, what: str) -> RegistryError:
        code = ""
        message = ""
        try:
            errs = resp.json().get("errors") or []
            if errs:
                code = errs[0].get("code", "")
                message = errs[0].get("message", "")
        except ValueError:
            pass
        reason = f"{resp.status_code}{' ' + code if code else ''}{': ' + message if message else ''}"
        if resp.status_code == 401:
            who = f" for {self.credentials.who}" if self.credentials else ""
            return RegistryError(f"registry {self.registry} rejected the credentials{who} ({reason}) on {what}",
                                 fix="check --username/--password or the Docker config entry for " + self.registry)
        if resp.status_code == 403:
            return RegistryError(f"registry {self.registry} denied {what} ({reason})",
                                 fix="the account needs push/pull rights on that repository")
        if resp.status_code == 404:
            return RegistryError(f"{what}: not found on {self.registry} ({reason})",
                                 fix="check the repository name and tag (push it first?)")
        return RegistryError(f"registry {self.registry} failed {what} ({reason})",
                             fix="see the registry's logs", detail=resp.text[:2000] or None)

    # -- API

    def ping(self) -> None:
        self._request("GET", "/v2/", scope="", expect=(200,), what="the API check GET /v2/")

    def blob_exists(self, repo: str, desc: dict[str, Any]) -> bool:
        resp = self._request("HEAD", f"/v2/{repo}/blobs/{desc['digest']}", scope=f"repository:{repo}:pull,push",
                             expect=(200, 404), what=f"HEAD blob {desc['digest']}")
        return resp.status_code == 200 and int(resp.headers.get("Content-Length", -1)) == desc["size"]

    def upload_blob(self, repo: str, data: bytes, digest: str) -> None:
        scope = f"repository:{repo}:pull,push"
        start = self._request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, expect=(202,),
                              what=f"starting the upload of {digest}")
        location = start.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.registry} gave no upload location", fix="use another registry")
        url = urljoin(self.base + "/", location)
        url += ("&" if "?" in url else "?") + urlencode({"digest": digest})
        done = self._request("PUT", url, scope=scope, expect=(201,), what=f"uploading blob {digest}", data=data,
                             headers={"Content-Type": "application/octet-stream"})
        echoed = done.headers.get("Docker-Content-Digest")
        if echoed and echoed != digest:
            raise RegistryError(f"registry stored blob {digest} as {echoed}", fix="the upload was corrupted; retry")

    def put_manifest(self, repo: str, reference: str, image: Image) -> str:
        resp = self._request("PUT", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull,push",
                             expect=(201,), what=f"putting the manifest {repo}:{reference}", data=image.manifest,
                             headers={"Content-Type": image.media_type})
        echoed = resp.headers.get("Docker-Content-Digest")
        if echoed and echoed != image.digest:
            raise RegistryError(f"registry stored the manifest as {echoed}, expected {image.digest}",
                                fix="the upload was corrupted; retry")
        return image.digest

    def get_manifest(self, ref: Reference) -> tuple[bytes, str]:
        resp = self._request("GET", f"/v2/{ref.repository}/manifests/{ref.reference}",
                             scope=f"repository:{ref.repository}:pull", expect=(200,),
                             what=f"manifest {ref}", headers={"Accept": MANIFEST_ACCEPT})
        body = resp.content
        actual = sha256_digest(body)
        echoed = resp.headers.get("Docker-Content-Digest")
        if ref.digest and actual != ref.digest:
            raise RegistryError(f"digest mismatch: manifest of {ref} has digest {actual}",
                                fix="the registry served other content than requested; do not use it")
        if echoed and echoed != actual:
            raise RegistryError(f"digest mismatch: registry says manifest {echoed}, content is {actual}",
                                fix="the manifest was altered in transit or storage")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return body, media_type

    def head_manifest(self, ref: Reference) -> str:
        body, _ = self.get_manifest(ref)
        return sha256_digest(body)

    def get_blob(self, repo: str, desc: dict[str, Any]) -> bytes:
        resp = self._request("GET", f"/v2/{repo}/blobs/{desc['digest']}", scope=f"repository:{repo}:pull",
                             expect=(200,), what=f"blob {desc['digest']} of {repo}")
        return verified(resp.content, desc, f"registry {self.registry} ({repo})")


def _short(e: Exception) -> str:
    text = str(e)
    m = re.search(r"\[Errno -?\d+\] [^'\")]+|Connection refused|Name or service not known|timed out", text)
    return m.group(0) if m else text.splitlines()[0][:160]


def _oauth_error(resp: Any) -> str:
    """' <error>' from an OAuth2 error body ({"error": "invalid_grant", ...}), or ''."""
    try:
        error = resp.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return f" {error}" if isinstance(error, str) and error else ""


def _retry_policy(retries: int, backoff: float) -> Any:
    """urllib3 retries for the session: only on RETRY_STATUSES, for every method (a retried PUT or POST re-sends
    its bytes body), honouring Retry-After up to MAX_RETRY_AFTER; the last response is returned, not raised, so
    the caller reports its status. Connection and read errors are not retried (a registry that is down fails at
    once)."""
    from urllib3.response import BaseHTTPResponse
    from urllib3.util.retry import Retry

    class CappedRetry(Retry):
        def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
            seconds = super().get_retry_after(response)
            return None if seconds is None else min(seconds, MAX_RETRY_AFTER)

    return CappedRetry(total=retries, connect=0, read=False, other=0, backoff_factor=backoff,
                       status_forcelist=RETRY_STATUSES, allowed_methods=None, respect_retry_after_header=True,
                       raise_on_status=False)
