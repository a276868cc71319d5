"""Start untrusted code in a child process: no secrets, resource limits, no network.

A sandboxed command runs as ``python -S -m inferx.kit.sandbox <limits JSON> -- argv...``: this
small launcher applies the limits to itself and then ``exec``s ``argv``, so the limits hold
for the real program from its first instruction. Nothing runs between fork and exec in the
parent (no ``preexec_fn``), which keeps spawning safe from a threaded API process.

What the launcher does, in order:

1. ``PR_SET_PDEATHSIG`` so the child dies with its parent.
2. A new network namespace (``unshare(CLONE_NEWNET)``): no interface but a downed loopback.
   Without CAP_SYS_ADMIN it retries inside a new user namespace; if the kernel forbids both,
   it carries on and the child reports ``network_isolated() == False``.
3. Optionally drops to another uid/gid (only when started as root).
4. rlimits: RLIMIT_AS (address space), RLIMIT_NPROC, RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NOFILE,
   RLIMIT_CORE=0. RLIMIT_NPROC counts *every* process and thread of the uid, not just the
   child's, and the kernel does not enforce it for root (or CAP_SYS_RESOURCE); run the API as
   a dedicated non-root user (or set ``uid``) for it to mean anything.
5. ``PR_SET_NO_NEW_PRIVS`` so set-uid binaries cannot raise privileges again.

The environment is built from scratch (``build_env``); nothing of the parent's is copied.
Same-uid processes can still read each other's ``/proc/<pid>/environ`` and files, so a
separate ``uid`` is what truly walls off the API's secrets.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

_SECRET_MARKERS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "API_KEY", "PRIVATE")
_SECRET_PREFIXES = ("INFERX_", "AWS_", "DATABASE", "REDIS", "POSTGRES", "PG", "AZURE_", "GOOGLE_")
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """What the launcher applies to itself before exec; ``None`` leaves a limit as inherited."""

    memory_bytes: int | None = 4 << 30
    max_processes: int | None = 64
    cpu_seconds: int | None = None
    file_size_bytes: int | None = 64 << 20
    open_files: int | None = 1024
    isolate_network: bool = True
    parent_death_signal: int | None = int(signal.SIGKILL)
    uid: int | None = None
    gid: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SandboxLimits:
        return cls(**json.loads(text))


class SandboxTimeout(TimeoutError):
    """The sandboxed command ran past its deadline; its process group was killed."""

    def __init__(self, timeout_s: float, stdout: str, stderr: str) -> None:
        super().__init__(f"sandboxed command timed out after {timeout_s:g} s")
        self.stdout = stdout
        self.stderr = stderr


def inferx_pythonpath() -> str:
    """The directory holding the ``inferx`` package, whether installed or a source checkout."""
    import inferx

    return str(Path(inferx.__file__).resolve().parent.parent)


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper.startswith(_SECRET_PREFIXES) or any(m in upper for m in _SECRET_MARKERS)


def build_env(
    home: str,
    *,
    pythonpath: Sequence[str] = (),
    threads: int = 1,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A minimal environment for a sandboxed child; nothing is copied from ``os.environ``."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join([inferx_pythonpath(), *pythonpath]),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        **{name: str(threads) for name in _THREAD_VARS},
    }
    for name, value in (extra or {}).items():
        if is_secret_name(name):
            raise ValueError(f"refusing to pass {name} into a sandbox")
        env[name] = value
    return env


def sandbox_command(argv: Sequence[str], limits: SandboxLimits) -> list[str]:
    """``argv`` wrapped in the launcher that applies ``limits`` and then execs it."""
    if not argv:
        raise ValueError("argv is empty")
    launcher = [sys.executable, "-S", "-m", "inferx.kit.sandbox", limits.to_json(), "--"]
    return [*launcher, *argv]


def run_sandboxed(
    argv: Sequence[str],
    timeout_s: float,
    *,
    limits: SandboxLimits | None = None,
    env_extra: Mapping[str, str] | None = None,
    pythonpath: Sequence[str] = (),
    max_output_bytes: int = 1 << 20,
) -> tuple[int, str, str]:
    """Run ``argv`` sandboxed in a fresh temporary HOME/cwd; returns (returncode, stdout, stderr).

    Blocking: call it through a thread (``asyncio.to_thread``) from async code. Output goes to
    files capped by RLIMIT_FSIZE, so a chatty child cannot exhaust the parent's memory; each
    stream is returned truncated to ``max_output_bytes``. On timeout the whole process group is
    SIGKILLed and ``SandboxTimeout`` raised.
    """
    limits = limits or SandboxLimits(cpu_seconds=max(1, int(timeout_s) + 1))
    with tempfile.TemporaryDirectory(prefix="inferx-sbx-") as home:
        _chown_for(home, limits)
        env = build_env(home, pythonpath=pythonpath, extra=env_extra)
        out_path, err_path = Path(home, ".stdout"), Path(home, ".stderr")
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                sandbox_command(argv, limits),
                env=env,
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            proc.wait()
            raise SandboxTimeout(
                timeout_s, _tail(out_path, max_output_bytes), _tail(err_path, max_output_bytes)
            ) from None
        finally:
            kill_group(proc.pid)  # anything the child left running in its group
        return returncode, _tail(out_path, max_output_bytes), _tail(err_path, max_output_bytes)


def _tail(path: Path, limit: int) -> str:
    with path.open("rb") as f:
        return f.read(limit).decode("utf-8", "replace")


def _chown_for(path: str, limits: SandboxLimits) -> None:
    if limits.uid is not None and os.geteuid() == 0:
        os.chown(path, limits.uid, limits.gid if limits.gid is not None else -1)


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (children started with a new session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def network_isolated() -> bool:
    """True when this process sees no network interface other than loopback."""
    try:
        names = {name for _, name in socket.if_nameindex()}
    except OSError:
        return False
    return names <= {"lo"}


# --- inside the child -----------------------------------------------------------------------


def apply_limits(limits: SandboxLimits) -> list[str]:
    """Apply ``limits`` to the calling process; returns what could not be applied."""
    problems: list[str] = []
    libc = ctypes.CDLL(None, use_errno=True)
    if limits.parent_death_signal is not None:
        libc.prctl(PR_SET_PDEATHSIG, limits.parent_death_signal, 0, 0, 0)
    if limits.isolate_network and not _unshare_network(libc):
        problems.append("network namespace not permitted")
    if limits.uid is not None and os.geteuid() == 0:
        _drop_privileges(limits.uid, limits.gid)
    for name, value in _rlimits(limits):
        try:
            _lower_rlimit(name, value)
        except (ValueError, OSError) as exc:
            problems.append(f"rlimit {name}: {exc}")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        problems.append("no_new_privs not set")
    return problems


def _rlimits(limits: SandboxLimits) -> list[tuple[str, int]]:
    wanted = {
        "RLIMIT_AS": limits.memory_bytes,
        "RLIMIT_NPROC": limits.max_processes,
        "RLIMIT_CPU": limits.cpu_seconds,
        "RLIMIT_FSIZE": limits.file_size_bytes,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_CORE": 0,
    }
    return [(name, value) for name, value in wanted.items() if value is not None]


def _lower_rlimit(name: str, value: int) -> None:
    which = getattr(resource, name)
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _unshare_network(libc: ctypes.CDLL) -> bool:
    if libc.unshare(CLONE_NEWNET) == 0:
        return True
    # Unprivileged: a user namespace grants CAP_SYS_ADMIN over a new network namespace.
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        return False
    with contextlib.suppress(OSError):
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    return True


def _drop_privileges(uid: int, gid: int | None) -> None:
    gid = uid if gid is None else gid
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _launch(args: list[str]) -> None:
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: python -m inferx.kit.sandbox LIMITS_JSON -- PROGRAM [ARGS...]\n")
        raise SystemExit(2)
    problems = apply_limits(SandboxLimits.from_json(args[0]))
    if problems:
        sys.stderr.write(f"inferx sandbox: {'; '.join(problems)}\n")
    program = args[2:]
    os.execv(program[0], program)  # noqa: S606 - argv comes from sandbox_command, not a user


if __name__ == "__main__":
    _launch(sys.argv[1:])
