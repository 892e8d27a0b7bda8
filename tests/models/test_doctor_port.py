"""doctor and serve's preflight: a bind address that is not on this machine is a failure
naming server.host, never "port free" (errno EADDRNOTAVAIL)."""

from __future__ import annotations

import errno
import socket

import pytest

from llmdeploy_cli import preflight
from llmdeploy_cli.errors import PreflightError
from llmdeploy_cli.models.doctor import run_doctor
from llmdeploy_cli.netutil import port_in_use
from llmdeploy_cli.resolve import resolve

NOT_HERE = "203.0.113.7"  # TEST-NET-3 (RFC 5737): on no machine's interfaces


def _not_here_is_refused() -> bool:
    with socket.socket() as s:
        try:
            s.bind((NOT_HERE, 0))
        except OSError as e:
            return e.errno == errno.EADDRNOTAVAIL
    return False


pytestmark = pytest.mark.skipif(
    not _not_here_is_refused(), reason=f"{NOT_HERE} is bindable on this machine"
)


def no_gpu():
    return [], "nvidia-smi not found"


def test_port_in_use_raises_for_an_address_not_here():
    with pytest.raises(OSError) as e:
        port_in_use(NOT_HERE, 8000)
    assert e.value.errno == errno.EADDRNOTAVAIL


def test_doctor_and_preflight_refuse_a_host_not_on_this_machine(write_profile, tiny_model):
    p = write_profile(
        f"""
        name: elsewhere
        backend: transformers
        model: {{source: {tiny_model}}}
        server: {{host: {NOT_HERE}, port: 18123}}
        """
    )
    port = {c.check: c for c in run_doctor(p, environ={}, gpu_query=no_gpu).checks}["port"]
    assert port.level == "fail"
    assert NOT_HERE in port.message and "not an address of this machine" in port.message
    assert "server.host" in port.fix
    with pytest.raises(PreflightError) as e:
        preflight.check(resolve(p, {}), environ={})
    bad = [d for d in e.value.details if d.check == "port"]
    assert bad and NOT_HERE in bad[0].message and "not an address" in bad[0].message
