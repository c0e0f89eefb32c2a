"""A real hub (the ``tickethub`` binary) for the client's tests, on SQLite in a fresh folder,
with the demo accounts; killed with SIGKILL and started again on the same port and database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[3]
SECRET = "python-client-test-secret-0123456789abcdef"
PATIENCE = 15.0 * float(os.environ.get("TICKETHUB_TEST_PATIENCE", "1"))


def binary() -> str:
    path = os.environ.get("TICKETHUB_BIN", str(ROOT / "target/debug/tickethub"))
    if not Path(path).exists():
        raise RuntimeError(f"no hub binary at {path}: run `cargo build` first, or set TICKETHUB_BIN")
    return path


class Hub:
    def __init__(self, *args: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="tickethub-py-")
        self.port = 0
        self.args = list(args)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Hub":
        proc = subprocess.Popen(
            [binary(), "serve", "--demo", "--bind", f"127.0.0.1:{self.port}",
             "--database-url", f"sqlite://{self.dir}/hub.db", "--jwt-secret", SECRET,
             "--mail-outbox-dir", f"{self.dir}/mail", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        self.proc = proc
        found: list[int] = []
        ready = threading.Event()

        def read() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                m = re.search(r"http://[0-9.]+:(\d+)", line)
                if m and not found:
                    found.append(int(m.group(1)))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(PATIENCE) or not found:
            raise RuntimeError("the hub did not start")
        self.port = found[0]
        deadline = time.time() + PATIENCE
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the hub does not answer")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def login(self, username: str) -> dict:
        res = httpx.post(f"{self.url}/api/auth/login/",
                         json={"username": username, "password": f"{username}-demo"})
        res.raise_for_status()
        return res.json()

    def api_key(self) -> str:
        admin = self.login("admin")["access"]
        res = httpx.post(f"{self.url}/api/admin/api-keys/",
                         json={"name": f"py{int(time.time() * 1000)}", "scopes": ["notifications:send"]},
                         headers={"authorization": f"Bearer {admin}"})
        res.raise_for_status()
        return res.json()["key"]

    def user_id(self, username: str) -> int:
        token = self.login(username)["access"]
        res = httpx.get(f"{self.url}/api/users/me/", headers={"authorization": f"Bearer {token}"})
        return res.json()["id"]


def lasting(token: str, seconds: int) -> str:
    """One of the hub's tokens signed again to run out ``seconds`` from now."""
    header, payload, _ = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] = int(time.time()) + seconds
    body = header + "." + base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    sig = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).digest()
    return body + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
