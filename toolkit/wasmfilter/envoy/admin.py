"""Envoy's admin API: readiness, stats, listeners, config dump."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Admin:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(self, method: str, path: str, timeout: float = 5.0) -> tuple[int, str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        return self.request("GET", path, timeout)

    def post(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        return self.request("POST", path, timeout)

    def is_ready(self) -> bool:
        try:
            status, body = self.get("/ready", timeout=1.0)
        except OSError:
            return False
        return status == 200 and body.strip() == "LIVE"

    def stats(self, filter_regex: str | None = None) -> dict[str, int]:
        """Counters and gauges by name."""
        path = "/stats?format=json" + (f"&filter={filter_regex}" if filter_regex else "")
        _, body = self.get(path)
        out: dict[str, int] = {}
        for entry in json.loads(body).get("stats", []):
            # Text readouts (e.g. control_plane.identifier once an xDS stream exists) are strings: not counted.
            if "name" in entry and "value" in entry and not isinstance(entry["value"], str):
                out[entry["name"]] = int(entry["value"])
        return out

    def listener_ports(self) -> dict[str, int]:
        _, body = self.get("/listeners?format=json")
        ports: dict[str, int] = {}
        for status in json.loads(body).get("listener_statuses", []):
            ports[status["name"]] = int(status["local_address"]["socket_address"]["port_value"])
        return ports

    def config_dump(self) -> dict:
        _, body = self.get("/config_dump")
        return json.loads(body)
