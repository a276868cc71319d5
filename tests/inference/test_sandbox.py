from __future__ import annotations

import json
import os
import sys
import time

import pytest

from inferx.kit.sandbox import (
    SandboxLimits,
    SandboxTimeout,
    build_env,
    is_secret_name,
    run_sandboxed,
)

PY = sys.executable


def probe(code: str, timeout_s: float = 20.0, **kwargs: object) -> dict:
    returncode, out, err = run_sandboxed([PY, "-c", code], timeout_s, **kwargs)  # type: ignore[arg-type]
    assert returncode == 0, err
    return json.loads(out)


REPORT = """
import json, os, resource, socket
print(json.dumps({
    "env": dict(os.environ),
    "as": resource.getrlimit(resource.RLIMIT_AS)[0],
    "core": resource.getrlimit(resource.RLIMIT_CORE)[0],
    "fsize": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
    "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0],
    "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
    "interfaces": [n for _, n in socket.if_nameindex()],
    "cwd": os.getcwd(),
    "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
}))
"""


def test_build_env_copies_nothing_from_the_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERX_SECRET_KEY", "s3cr3t-signing-key")
    monkeypatch.setenv("SOMETHING_HARMLESS", "1")
    env = build_env("/tmp/h", pythonpath=["/x"])
    assert "INFERX_SECRET_KEY" not in env and "SOMETHING_HARMLESS" not in env
    assert env["HOME"] == "/tmp/h" and env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["PYTHONPATH"].endswith(os.pathsep + "/x")


def test_build_env_refuses_secret_looking_extras() -> None:
    with pytest.raises(ValueError):
        build_env("/tmp/h", extra={"AWS_SECRET_ACCESS_KEY": "x"})
    assert build_env("/tmp/h", extra={"HF_HUB_OFFLINE": "1"})["HF_HUB_OFFLINE"] == "1"
    assert all(
        is_secret_name(n) for n in ["INFERX_DATABASE_URL", "DATABASE_URL", "REDIS_URL", "GH_TOKEN"]
    )


def test_child_sees_no_secret_and_runs_under_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERX_SECRET_KEY", "s3cr3t-signing-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-s3cr3t")
    limits = SandboxLimits(memory_bytes=1 << 30, cpu_seconds=7, max_processes=32)
    report = probe(REPORT, limits=limits)
    env_text = json.dumps(report["env"])
    assert "s3cr3t" not in env_text and "INFERX_" not in env_text and "AWS_" not in env_text
    assert report["as"] == 1 << 30
    assert report["core"] == 0
    assert report["cpu"] == 7
    assert report["nproc"] == 32
    assert report["fsize"] == limits.file_size_bytes
    assert report["cwd"] == report["env"]["HOME"]
    assert report["fds"] == [0, 1, 2, 3]  # stdio plus the listdir handle: nothing inherited


def test_network_is_isolated_where_the_kernel_allows() -> None:
    code = "import json, socket; print(json.dumps([n for _, n in socket.if_nameindex()]))"
    returncode, out, err = run_sandboxed([PY, "-c", code], 20)
    assert returncode == 0
    if "network namespace not permitted" in err:
        pytest.skip("this kernel/user may not create network namespaces")
    assert json.loads(out) == ["lo"]


def test_memory_limit_is_enforced() -> None:
    code = "import sys\ntry:\n    b = bytearray(2 << 30)\nexcept MemoryError:\n    sys.exit(42)"
    returncode, _, _ = run_sandboxed(
        [PY, "-c", code], 20, limits=SandboxLimits(memory_bytes=1 << 30)
    )
    assert returncode == 42


def test_timeout_kills_the_whole_process_group(tmp_path: object) -> None:
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    with pytest.raises(SandboxTimeout) as caught:
        run_sandboxed([PY, "-c", code], 1.5)
    grandchild = int(caught.value.stdout.split()[0])
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_output_is_bounded() -> None:
    code = "import sys; sys.stdout.write('x' * 5_000_000)"
    returncode, out, _ = run_sandboxed([PY, "-c", code], 20, max_output_bytes=1000)
    assert returncode == 0 and out == "x" * 1000


def test_file_size_limit_kills_a_writer() -> None:
    code = "open('big', 'wb').write(b'x' * (4 << 20))"
    returncode, _, _ = run_sandboxed(
        [PY, "-c", code], 20, limits=SandboxLimits(file_size_bytes=1 << 20)
    )
    assert returncode != 0  # SIGXFSZ (or EFBIG)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another uid needs root")
def test_can_drop_to_another_user(tmp_path: object) -> None:
    # The venv's interpreter may live under /root, unreadable by nobody: use the system one.
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        pytest.skip("no system python3 for the unprivileged child")
    secret = f"{tmp_path}/secret.key"
    with open(secret, "w") as f:
        f.write("s3cr3t")
    os.chmod(secret, 0o600)
    code = (
        "import json, os\n"
        "try:\n    open(os.environ['TARGET']).read(); readable = True\n"
        "except PermissionError:\n    readable = False\n"
        "print(json.dumps([os.getuid(), os.getgid(), readable]))"
    )
    limits = SandboxLimits(uid=65534, gid=65534)
    returncode, out, err = run_sandboxed(
        [python, "-c", code], 20, limits=limits, env_extra={"TARGET": secret}
    )
    assert returncode == 0, err
    assert json.loads(out) == [65534, 65534, False]
