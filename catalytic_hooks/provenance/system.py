"""The system manifest (seed §IV `system_manifest.json`): OS and release, libc, CPU, and GPU
model, driver and CUDA versions where `nvidia-smi` exists. Recorded and compared on replay, never
rebuilt: a replay on other hardware is told so, it is not refused."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.fs.files import atomic_write

SMI_TIMEOUT = 20.0
# Fields compared on replay (the rest, such as the CPU count, are informational).
COMPARED = (
    "os",
    "os_release",
    "distribution",
    "machine",
    "libc",
    "cpu_model",
    "gpus",
    "gpu_driver",
    "cuda_version",
)


PROC_NVIDIA = "/proc/driver/nvidia"


def proc_nvidia(root: str = PROC_NVIDIA) -> tuple[list[str], str | None] | None:
    """(GPU models, driver version) from the kernel module's /proc files, read in a millisecond
    (nvidia-smi takes a few hundred); None without them."""
    try:
        with open(os.path.join(root, "version"), encoding="utf-8", errors="replace") as fh:
            version = fh.read()
        names = sorted(os.listdir(os.path.join(root, "gpus")))
    except OSError:
        return None
    return [
        m for n in names for m in [_model(os.path.join(root, "gpus", n, "information"))] if m
    ], parse_proc_version(version)


def parse_proc_version(text: str) -> str | None:
    m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9][0-9.]*)", text)
    return m.group(1) if m else None


def _model(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "Model":
                    return value.strip()
    except OSError:
        pass
    return None


def _cuda_cache(driver: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "catalytic" / f"nvidia-{driver}-cuda"


class SystemProbe:
    """Started before the PRE phase, read after it. GPU models and the driver come from /proc;
    the CUDA version (the highest the driver supports, a property of the driver) from
    nvidia-smi once per driver version, then from a cache file named by that version, so a
    run on a GPU machine does not wait for nvidia-smi. Without /proc's files, nvidia-smi is
    asked for everything."""

    def __init__(self, env: dict[str, str]):
        self._smi: list[subprocess.Popen[bytes]] = []
        self._proc = proc_nvidia()
        self._cuda: str | None = None
        if self._proc is not None and self._proc[1] is not None:
            try:
                self._cuda = _cuda_cache(self._proc[1]).read_text().strip() or None
            except OSError:
                self._cuda = None
            if self._cuda is not None:
                return
        smi = shutil.which("nvidia-smi", path=env.get("PATH", os.defpath))
        if smi is None:
            return
        for args in (["--query-gpu=name,driver_version", "--format=csv,noheader"], []):
            try:
                self._smi.append(
                    subprocess.Popen(
                        [smi, *args],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            except OSError:
                return

    def close(self) -> None:
        for proc in self._smi:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        self._smi = []

    def finish(self) -> dict[str, Any]:
        doc = base_manifest()
        outs: list[str | None] = []
        for proc in self._smi:
            try:
                out, _ = proc.communicate(timeout=SMI_TIMEOUT)
                outs.append(out.decode(errors="replace") if proc.returncode == 0 else None)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                outs.append(None)
        self._smi = []
        smi = parse_smi(outs[0] if outs else None, outs[1] if len(outs) > 1 else None)
        if self._proc is not None and self._proc[0]:
            gpus, driver = self._proc
            cuda = self._cuda or smi["cuda_version"]
            if cuda and driver and self._cuda is None:
                with contextlib.suppress(OSError, CatalyticError):
                    _cuda_cache(driver).parent.mkdir(parents=True, exist_ok=True)
                    atomic_write(_cuda_cache(driver), cuda.encode())
            smi = {"gpus": gpus, "gpu_driver": driver, "cuda_version": cuda}
        doc.update(smi)
        return doc


def _os_release() -> str | None:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                fields = dict(line.rstrip("\n").split("=", 1) for line in fh if "=" in line)
        except OSError:
            continue
        name = fields.get("PRETTY_NAME") or fields.get("NAME")
        return name.strip().strip('"') if name else None
    return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() in ("model name", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _libc() -> str | None:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None


def base_manifest() -> dict[str, Any]:
    return {
        "os": platform.system(),
        "os_release": platform.release(),
        "distribution": _os_release(),
        "machine": platform.machine(),
        "libc": _libc(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": [],
        "gpu_driver": None,
        "cuda_version": None,
    }


def parse_smi(query: str | None, table: str | None) -> dict[str, Any]:
    """GPU names and driver from `nvidia-smi --query-gpu=name,driver_version
    --format=csv,noheader`, the CUDA version (the highest the driver supports) from the header
    of plain `nvidia-smi`."""
    gpus: list[str] = []
    driver = None
    for line in (query or "").splitlines():
        name, sep, drv = line.rpartition(",")
        if sep and name.strip():
            gpus.append(name.strip())
            driver = driver or drv.strip() or None
    cuda = None
    for part in (table or "").split("|"):
        _, sep, value = part.partition("CUDA Version:")
        if sep and value.strip():
            cuda = value.split()[0]
            break
    return {"gpus": gpus, "gpu_driver": driver, "cuda_version": cuda}


def compare_system(recorded: Any, current: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(recorded, dict):
        return []
    return [
        {"field": f"system {k}", "recorded": recorded.get(k), "current": current.get(k)}
        for k in COMPARED
        if k in recorded and recorded.get(k) != current.get(k)
    ]
