"""A 1 GB model upload over the limit: 413, no file or row left behind, flat server memory.

    .venv/bin/python bench/upload_memory.py [--size-mb 1024]

Starts `inferx serve` (embedded defaults, limit INFERX_MAX_UPLOAD_MB=512) on loopback, then
sends the upload twice over a raw socket: once with a Content-Length (refused before the body
is read) and once chunked without a length (refused once 512 MB have streamed through). The
server's RSS is sampled every 20 ms; the script exits 1 if it grew by 50 MB or more.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

CHUNK = b"\0" * (1 << 20)
BOUNDARY = "inferxbench"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERX_")}
    env.update(INFERX_DATA_DIR=data_dir, INFERX_PORT=str(port), INFERX_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "inferx.cli", "serve"], env=env)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def api_key(base: str) -> str:
    creds = {"email": "bench@example.com", "password": "bench password 1"}
    httpx.post(f"{base}/api/v1/auth/register", json=creds).raise_for_status()
    token = httpx.post(f"{base}/api/v1/auth/login", json=creds).json()["access_token"]
    r = httpx.post(
        f"{base}/api/v1/api-keys",
        json={"name": "bench"},
        headers={"Authorization": f"Bearer {token}"},
    )
    return str(r.json()["key"])


def send_upload(port: int, key: str, size_mb: int, chunked: bool) -> tuple[str, int]:
    """Stream the upload; stop as soon as the server answers. Returns (status line, MB sent)."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\nbig\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.pkl"\r\n\r\n'
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    length = len(head) + size_mb * len(CHUNK) + len(tail)
    headers = [
        "POST /api/v1/models/upload HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"X-API-Key: {key}",
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}",
    ]
    sock = socket.create_connection(("127.0.0.1", port))
    answer: list[bytes] = []

    def read() -> None:
        try:
            answer.append(sock.recv(65536))
        except OSError:
            answer.append(b"")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent = 0

    def put(data: bytes) -> None:
        sock.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

    try:
        sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        put(head)
        for _ in range(size_mb):
            if answer:
                break
            put(CHUNK)
            sent += 1
        else:
            put(tail)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    reader.join(timeout=30)
    sock.close()
    status = answer[0].split(b"\r\n", 1)[0].decode() if answer and answer[0] else "(no answer)"
    return status, sent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        proc = start_server(data_dir, port)
        try:
            key = api_key(f"http://127.0.0.1:{port}")
            results = []
            for chunked in (False, True):
                base = rss_mb(proc.pid)
                peak = [base]
                stop = threading.Event()

                def sample(peak: list[float] = peak, stop: threading.Event = stop) -> None:
                    while not stop.is_set():
                        peak[0] = max(peak[0], rss_mb(proc.pid))
                        time.sleep(0.02)

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                start = time.perf_counter()
                status, sent = send_upload(port, key, args.size_mb, chunked)
                stop.set()
                sampler.join()
                leftovers = [str(p) for p in Path(data_dir).rglob("upload-*")]
                results.append(
                    {
                        "mode": "chunked (no length)" if chunked else "Content-Length",
                        "status": status,
                        "mb_sent_before_refusal": sent,
                        "seconds": round(time.perf_counter() - start, 2),
                        "rss_before_mb": round(base, 1),
                        "rss_peak_mb": round(peak[0], 1),
                        "rss_growth_mb": round(peak[0] - base, 1),
                        "temp_files_left": leftovers,
                    }
                )
            models = (
                list(Path(data_dir, "models").rglob("*"))
                if Path(data_dir, "models").exists()
                else []
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps({"results": results, "model_files_left": [str(m) for m in models]}, indent=2))
    ok = (
        all(
            "413" in r["status"] and r["rss_growth_mb"] < 50 and not r["temp_files_left"]
            for r in results
        )
        and not models
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
