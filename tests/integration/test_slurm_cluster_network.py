"""``scripts/slurm-cluster`` on a host whose only IPv4 address is loopback.

Slurm (22.05 and 24.11) resolves its addresses with getaddrinfo(AI_ADDRCONFIG), which finds
nothing there; the script must say so at once instead of waiting for daemons that never listen.
Each test runs the script in a new network namespace (``unshare --net``), so the host's cluster
and network are never touched; ``up`` also gets private pid and mount namespaces with empty
tmpfs over every directory it could write, in case the check ever let it through.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "scripts" / "slurm-cluster"
VETH_SETUP = (
    "ip link add zpt0 type veth peer name zpt1 && ip addr add 10.231.16.1/24 dev zpt0 && "
    "ip link set zpt0 up && ip link set zpt1 up"
)
# Everything `up` writes or starts from, were it to get past the check.
UP_PRIVATE_DIRS = (
    "/etc/slurm",
    "/etc/munge",
    "/run",
    "/var/lib/zoopipe-slurm",
    "/var/lib/mysql",
    "/var/lib/munge",
    "/var/log/munge",
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) to make a network namespace",
)


# Slurm's own lookup (src/common/util-net.c): no host name, IPv4 only, AI_ADDRCONFIG.
SLURM_LOOKUP = (
    "import socket\n"
    "try:\n"
    "    socket.getaddrinfo(None, '6819', socket.AF_INET, socket.SOCK_STREAM, 0,\n"
    "                       socket.AI_ADDRCONFIG | socket.AI_NUMERICSERV)\n"
    "except socket.gaierror:\n"
    "    print('slurm-lookup: fails')\n"
    "else:\n"
    "    print('slurm-lookup: resolves')\n"
)


def _in_new_netns(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "--net", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _check_network(setup: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    """Run check-network after SETUP in a new network namespace, and Slurm's lookup there."""
    lookup = f"{sys.executable} -c {shlex.quote(SLURM_LOOKUP)}"
    result = _in_new_netns(f"{setup}; {lookup}; exec {CLUSTER_SCRIPT} check-network")
    assert "slurm-lookup:" in result.stdout, result
    return result, "slurm-lookup: resolves" in result.stdout


def _assert_says_what_slurm_needs(text: str) -> None:
    assert "no IPv4 address outside 127.0.0.0/8" in text, text
    assert "AI_ADDRCONFIG" in text, text
    assert "ip link add" in text and "type veth" in text, text


def test_check_network_fails_with_only_loopback() -> None:
    result, slurm_resolves = _check_network("ip link set lo up 2>/dev/null")
    assert not slurm_resolves, "the premise: Slurm's lookup fails with only loopback"
    assert result.returncode == 1, result
    _assert_says_what_slurm_needs(result.stderr)


def test_check_network_accepts_a_veth_address() -> None:
    if shutil.which("ip") is None:
        pytest.skip("needs ip(8) (iproute2) to add a veth pair")
    result, slurm_resolves = _check_network(VETH_SETUP)
    assert slurm_resolves, "the premise: Slurm's lookup works with a veth address"
    assert result.returncode == 0, result
    assert "10.231.16.1" in result.stderr, result.stderr
    assert "127.0.0.1" not in result.stderr, result.stderr


def test_check_network_agrees_with_slurms_lookup_here() -> None:
    result = subprocess.run(
        [str(CLUSTER_SCRIPT), "check-network"], capture_output=True, text=True, check=False
    )
    lookup = subprocess.run(
        [sys.executable, "-c", SLURM_LOOKUP], capture_output=True, text=True, check=True
    )
    assert (result.returncode == 0) == ("resolves" in lookup.stdout), (lookup.stdout, result)


def test_status_says_why_at_once_with_only_loopback() -> None:
    if shutil.which("sinfo") is None:
        pytest.skip("Slurm is not installed (sinfo not on PATH)")
    started = time.monotonic()
    result = _in_new_netns(f"exec {CLUSTER_SCRIPT} status")
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("NOT usable: no IPv4 address outside 127.0.0.0/8"), result.stdout
    # no Slurm client was asked: each would have retried its failing lookup for about 10 s
    assert elapsed < 8, elapsed


def test_up_stops_before_changing_anything_with_only_loopback() -> None:
    if not Path("/etc/debian_version").exists():
        pytest.skip("scripts/slurm-cluster up needs Debian")
    mounts = " && ".join(f"mkdir -p {d} && mount -t tmpfs tmpfs {d}" for d in UP_PRIVATE_DIRS)
    script = f"{mounts} && mount -t proc proc /proc && exec {CLUSTER_SCRIPT} up"
    started = time.monotonic()
    result = subprocess.run(
        [
            "unshare",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result
    _assert_says_what_slurm_needs(result.stderr)
    assert "installing Debian packages" not in result.stderr, result.stderr
    assert "starting" not in result.stderr, result.stderr
    assert time.monotonic() - started < 30
