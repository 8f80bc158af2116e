"""``make demo-ui`` (``scripts/demo.py --ui``) on a laptop: loopback only, a small executor, a clean stop.

Regression for issue 18 item 6: ``airflow standalone`` listened on every interface, ran a
LocalExecutor with 32 task processes on a 2-core laptop, and after Ctrl-C its scheduler and workers
kept running for more than a minute. The script is started in its own process group, as a shell
starts a foreground job; Ctrl-C is SIGINT to that group, ``kill`` is SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.airflow_stack import REPO_ROOT, free_port

START_TIMEOUT = 600  # seconds; the services start in about 1 minute on an idle 2-core machine
STOP_LIMIT = 30  # seconds from the signal until no process of the demo is left


def _stat(pid: str) -> list[str]:
    """Fields of /proc/<pid>/stat after the command: state ppid pgrp ..."""
    return (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()


def _service_groups(demo_pid: int) -> set[int]:
    """Process groups of the demo's children: one per service (each started in its own session)."""
    groups = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = _stat(entry.name)
                if int(fields[1]) == demo_pid:
                    groups.add(int(fields[2]))
    return groups


def _demo_pids(home: Path, groups: set[int] = frozenset()) -> list[int]:  # type: ignore[assignment]
    """Live processes in one of ``groups`` or started with this ``AIRFLOW_HOME``.

    Both: the API server rewrites its process title, which on Linux overwrites the environment
    block that /proc/<pid>/environ shows.
    """
    marker = f"AIRFLOW_HOME={home}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            fields = _stat(entry.name)
        except OSError:
            continue
        if fields[0] != "Z" and (marker in environ.split(b"\0") or int(fields[2]) in groups):
            pids.append(int(entry.name))
    return pids


def _listening(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by ``pids`` (IPv4 and IPv6)."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in (Path("/proc") / str(pid) / "fd").iterdir():
                with_target = os.readlink(fd)
                if with_target.startswith("socket:["):
                    inodes.add(with_target[8:-1])
        except OSError:
            continue
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:
                continue
            address_hex, port_hex = local.split(":")
            if width == 8:
                address = ".".join(str(int(address_hex[i : i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                address = (
                    "::1"
                    if address_hex == "0" * 24 + "01000000"
                    else ("::" if address_hex == "0" * 32 else address_hex)
                )
            found.add((address, int(port_hex, 16)))
    return found


def _environ(pid: int) -> dict[str, str]:
    raw = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def _cmdline(pid: int) -> str:
    try:
        return (
            (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_demo_ui_listens_on_loopback_with_a_small_executor_and_stops_completely(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    """Regression: standalone listened on 0.0.0.0, ran 32 workers and outlived Ctrl-C by a minute."""
    home = tmp_path / "airflow"
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW_", "AIRFLOW__", "TRAINING_GUARD_"))
    }
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "demo.py"),
            "--ui",
            "--home",
            str(home),
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        healthy = False
        while time.monotonic() < deadline and demo.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5
                ) as answer:
                    healthy = answer.status == 200
            except OSError:
                pass
            if healthy and "Airflow UI: http://127.0.0.1" in (tmp_path / "demo.log").read_text():
                break
            time.sleep(2)
        assert healthy, f"demo UI not up in {START_TIMEOUT}s:\n{(tmp_path / 'demo.log').read_text()[-3000:]}"
        time.sleep(5)  # let every service open what it listens on

        groups = _service_groups(demo.pid)
        assert len(groups) == 4, groups
        pids = _demo_pids(home, groups)
        listening = _listening(pids)
        assert (("127.0.0.1", port)) in listening, listening
        assert {address for address, _ in listening} <= {"127.0.0.1", "::1"}, listening
        scheduler = [pid for pid in pids if " scheduler" in _cmdline(pid)]
        assert scheduler, [_cmdline(pid) for pid in pids]
        parallelism = int(_environ(scheduler[0])["AIRFLOW__CORE__PARALLELISM"])
        assert 2 <= parallelism <= 4 and parallelism <= max(2, os.cpu_count() or 2)
        workers = [pid for pid in pids if "LocalExecutor" in _cmdline(pid)]
        assert len(workers) <= parallelism, [_cmdline(pid) for pid in workers]

        os.killpg(demo.pid, stop_signal)
        signalled = time.monotonic()
        demo.wait(timeout=STOP_LIMIT)
        while _demo_pids(home, groups) and time.monotonic() - signalled < STOP_LIMIT:
            time.sleep(0.2)
        left = {pid: _cmdline(pid) for pid in _demo_pids(home, groups)}
        assert not left, f"still running {STOP_LIMIT}s after {stop_signal.name}: {left}"
        assert "stopped" in (tmp_path / "demo.log").read_text()
    finally:
        log.close()
        for pid in _demo_pids(home, _service_groups(demo.pid) if demo.poll() is None else set()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
