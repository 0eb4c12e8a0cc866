"""The local Envoy backend: readiness via the admin API, free ports, several at once, clear failures."""

from __future__ import annotations

import socket

import pytest

from wasmfilter.envoy.bootstrap import Bootstrap, Upstream
from wasmfilter.envoy.process import EnvoyProcess
from wasmfilter.errors import EnvoyStartError, UsageError
from wasmfilter.harness.client import Client
from wasmfilter.harness.scenario import Request
from wasmfilter.harness.stack import ensure_port_free
from wasmfilter.harness.upstream import EchoUpstream


def plain_bootstrap(port: int) -> str:
    return Bootstrap(upstreams=[Upstream("default", "127.0.0.1", port)]).render()


def test_two_envoys_at_once_on_free_ports():
    with EchoUpstream() as up, EnvoyProcess(plain_bootstrap(up.port)) as a, EnvoyProcess(plain_bootstrap(up.port)) as b:
        assert a.listener_port != b.listener_port
        assert a.admin.is_ready() and b.admin.is_ready()
        for envoy in (a, b):
            resp = Client(envoy.listener_url).send(Request(path="/hello", headers={"x-probe": "1"}))
            assert resp.status == 200
            echo = resp.echo()
            assert echo["path"] == "/hello" and ["x-probe", "1"] in echo["headers"]
        assert a.start_seconds is not None and a.start_seconds < 20


def test_stop_leaves_nothing_running():
    with EchoUpstream() as up:
        envoy = EnvoyProcess(plain_bootstrap(up.port)).start()
        pid = envoy.proc.pid
        workdir = envoy.workdir
        envoy.stop()
    assert envoy.proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        import os
        os.kill(pid, 0)
    assert not workdir.exists()


def test_invalid_config_raises_with_envoy_log_tail():
    bad = plain_bootstrap(9).replace("stat_prefix: ingress", "stat_prefixx: ingress")
    with pytest.raises(EnvoyStartError) as info:
        EnvoyProcess(bad).start()
    assert "stat_prefixx" in str(info.value)
    assert info.value.detail  # the log tail travels with the error


def test_busy_port_is_named():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(UsageError, match=f"port {port} on 127.0.0.1 is already in use"):
            ensure_port_free("127.0.0.1", port)
        with EchoUpstream() as up:
            text = Bootstrap(upstreams=[Upstream("default", "127.0.0.1", up.port)], listener_port=port).render()
            with pytest.raises(EnvoyStartError, match="(?i)address already in use|cannot bind"):
                EnvoyProcess(text).start()
