"""Real wheels, wheelhouses and PEP 503 simple indexes for the environment tests: wheels written
as zip files with a correct RECORD (PEP 427), indexes as static trees behind a real HTTP server on
127.0.0.1 that a test starts and stops. No network."""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def make_wheel(
    out: Path,
    name: str,
    version: str,
    files: dict[str, str],
    tag: str = "py3-none-any",
    extra: str = "",
) -> Path:
    """A wheel of `name` holding `files`; `extra` changes its bytes (a rebuilt or tampered
    wheel of the same name and version)."""
    dist = name.replace("-", "_").replace(".", "_")
    info = f"{dist}-{version}.dist-info"
    content = {p: d.encode() for p, d in files.items()}
    content[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test {extra}\n\n"
    ).encode()
    tags = "".join(f"Tag: {t}\n" for t in tag.split("|"))
    content[f"{info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n{tags}\n"
    ).encode()
    record = "".join(f"{p},sha256={_b64(d)},{len(d)}\n" for p, d in content.items())
    content[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{dist}-{version}-{tag.split('|')[0]}.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for p, d in content.items():
            z.writestr(zipfile.ZipInfo(p, ZIP_TIME), d)
    return target


def simple_index(root: Path, wheels: list[Path]) -> Path:
    """A PEP 503 tree: root/simple/<name>/index.html linking ../../files/<wheel>#sha256=."""
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    by_name: dict[str, list[Path]] = {}
    for w in wheels:
        shutil.copyfile(w, files / w.name)
        name = w.name.split("-")[0].replace("_", "-").lower()
        by_name.setdefault(name, []).append(files / w.name)
    for name, ws in by_name.items():
        page = root / "simple" / name
        page.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="../../files/{w.name}#sha256={sha256_file(w)[7:]}">{w.name}</a><br>\n'
            for w in sorted(ws)
        )
        (page / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    return root / "simple"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    delay = 0.0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.delay:
            time.sleep(self.delay)
        super().do_GET()


@contextmanager
def serve(root: Path, delay: float = 0.0) -> Iterator[str]:
    """An HTTP server for `root` on a loopback port; yields its base URL."""
    handler = type("Handler", (_Quiet,), {"delay": delay})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (an index that is down)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/simple"


def uv_bin() -> str:
    import uv

    return str(uv.find_uv_bin())


def quiet_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "PYTHONPATH", "VIRTUAL_ENV"))
    }


def make_venv(path: Path, wheels: list[Path] | None = None, *, installer: str = "uv") -> Path:
    """A real venv (no seed packages) with `wheels` installed; returns its bin directory."""
    env = quiet_env()
    if installer == "uv":
        subprocess.run(
            [uv_bin(), "venv", "--no-config", "-q", "--python", sys.executable, str(path)],
            check=True,
            env=env,
        )
        if wheels:
            subprocess.run(
                [
                    uv_bin(),
                    "pip",
                    "install",
                    "--no-config",
                    "-q",
                    "--python",
                    str(path / "bin" / "python"),
                    "--offline",
                    "--no-deps",
                    *map(str, wheels),
                ],
                check=True,
                env=env,
            )
    else:
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, env=env
        )
        if wheels:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "--python",
                    str(path / "bin" / "python"),
                    "install",
                    "-q",
                    "--no-deps",
                    "--no-index",
                    *map(str, wheels),
                ],
                check=True,
                env={**env, "PIP_CONFIG_FILE": os.devnull},
            )
    return path / "bin"


def pip_freeze(venv_bin: Path) -> bytes:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv_bin / "python"), "freeze"],
        check=True,
        capture_output=True,
        env={**quiet_env(), "PIP_CONFIG_FILE": os.devnull},
    ).stdout
