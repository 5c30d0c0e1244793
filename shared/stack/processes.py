"""Starting, watching and stopping the stack's background processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path


class PrerequisiteMissing(SystemExit):
    """A tool the stack needs is not installed; the message says how to install it."""


class ServiceFailed(RuntimeError):
    """A service did not become healthy."""


def spawn(command: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start `command` in its own process group with output to `log_path`; return its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    return process.pid


def is_alive(pid: int | None) -> bool:
    """Whether a process with this pid exists (and is not a zombie we can reap)."""
    if not pid:
        return False
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pid: int | None, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL what is left after `timeout`."""
    stop_groups([pid], timeout)


def stop_groups(pids: Iterable[int | None], timeout: float = 10.0) -> None:
    """Stop several process groups at once: SIGTERM to all, then SIGKILL to what is left after `timeout`.

    (A function takes a couple of seconds to shut down; eleven of them one after another took 26 s.)
    """
    alive = [pid for pid in pids if is_alive(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if is_alive(pid)]
            if alive:
                time.sleep(0.1)
        if not alive:
            return


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0,
               log_path: Path | None = None, pid: int | None = None, poll_seconds: float = 0.2) -> None:
    """Poll `check` every `poll_seconds` until it holds; fail with the log's tail if it does not in time
    or `pid` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # not up yet: connection refused, half-started server, ...
            pass
        if pid is not None and not is_alive(pid):
            break
        time.sleep(poll_seconds)
    tail = ""
    if log_path and log_path.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    raise ServiceFailed(f"{what} did not become healthy within {timeout:.0f}s\n{tail}")
