"""The Python environment a command runs in: which interpreter (DESIGN §13: the command's, not
this tool's) and what it holds, asked of that interpreter itself.

The query is a small script run by the interpreter (stdlib only: the interpreter may be any
CPython or PyPy from 3.8 on, with none of this tool's dependencies). It prints one JSON document:
the interpreter's identity and every distribution it can import, read from the metadata files
directly (parsing METADATA as an e-mail message costs about a millisecond per distribution)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalytic_hooks.core.canonical import loads_strict
from catalytic_hooks.core.errors import CatalyticError

# Runs in the queried interpreter. Keep it importable by Python 3.8 (no match, no 3.9+ APIs).
QUERY_SCRIPT = r'''
import json, os, platform, re, sys, sysconfig
here = os.getcwd()
# sys.path[0] is the working directory for `-c`: the command's script directory is not part of
# its environment, and a stray *.dist-info in the repository must not look like one.
sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
facts_only = sys.argv[1:2] == ["facts"]

def header(text):
    fields = {}
    for line in text.splitlines():
        if not line:
            break
        if line[:1] in (" ", "\t"):
            continue
        key, sep, value = line.partition(":")
        key = key.lower()
        if sep and key in ("name", "version") and key not in fields:
            fields[key] = value.strip()
    return fields

def read(dist, name):
    try:
        return dist.read_text(name)
    except Exception:
        return None

class Found:
    """A metadata directory (or egg-info file) found on sys.path, read like a Distribution."""
    def __init__(self, path, single):
        self._path = path
        self.single = single
    def read_text(self, name):
        if self.single:
            if name != "PKG-INFO":
                return None
            target = self._path
        else:
            target = os.path.join(self._path, name)
        try:
            with open(target, encoding="utf-8") as fh:
                return fh.read()
        except (OSError, UnicodeDecodeError):
            return None

def scan():
    """What importlib.metadata.distributions() finds on the usual sys.path, without importing
    it (the import alone costs over 100 ms: email, zipfile, csv); None when an entry is a zip
    archive or anything else only importlib.metadata knows how to read."""
    found = []
    for entry in sys.path:
        base = entry or "."
        if os.path.isfile(base):
            return None
        try:
            names = sorted(os.listdir(base))
        except OSError:
            continue
        for n in names:
            low = n.lower()
            if low.endswith(".dist-info") or low.endswith(".egg-info"):
                full = os.path.join(base, n)
                found.append(Found(full, os.path.isfile(full)))
    return found

dists = []
seen = set()
found = [] if facts_only else scan()
if found is None:
    import importlib.metadata as md
    found = list(md.distributions())
for dist in found:
    fields = header(read(dist, "METADATA") or read(dist, "PKG-INFO") or "")
    name = fields.get("name")
    if not name:
        continue
    norm = re.sub(r"[-_.]+", "-", name).lower()
    if norm in seen:
        continue  # shadowed: the first one on sys.path is the one imported
    seen.add(norm)
    path = getattr(dist, "_path", None)
    dists.append({
        "name": name, "version": fields.get("version", ""),
        "direct_url": read(dist, "direct_url.json"),
        "installer": (read(dist, "INSTALLER") or "").strip() or None,
        "wheel": read(dist, "WHEEL"),
        "location": None if path is None else str(path),
    })

try:
    libc = os.confstr("CS_GNU_LIBC_VERSION")
except (AttributeError, ValueError, OSError):
    libc = None
print(json.dumps({
    "executable": sys.executable,
    "implementation": sys.implementation.name,
    "version": platform.python_version(),
    "version_info": list(sys.version_info[:3]),
    "soabi": sysconfig.get_config_var("SOABI"),
    "abiflags": getattr(sys, "abiflags", ""),
    "platform": sysconfig.get_platform(),
    "libc": libc,
    "mac_ver": platform.mac_ver()[0] if sys.platform == "darwin" else None,
    "prefix": sys.prefix,
    "base_prefix": getattr(sys, "base_prefix", sys.prefix),
    "bits": 64 if sys.maxsize > 2 ** 32 else 32,
    "distributions": dists,
}))
'''

PYTHON_NAME = re.compile(r"^python(?:3(?:\.\d+)?)?\Z")
MAX_QUERY_OUTPUT = 32 * 1024 * 1024
QUERY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Interpreter:
    path: str
    found_by: str  # "env_python" | "command" | "VIRTUAL_ENV" | "PATH"


def _on_path(name: str, path_var: str) -> str | None:
    return shutil.which(name, path=path_var)


def find_interpreter(
    command: list[str], env: dict[str, str], cwd: Path, top: Path, env_python: str | None
) -> Interpreter | None:
    """The interpreter the command uses (DESIGN §13), or None when it has none:
    1. the policy's `env_python` (absolute, repository-relative, or a name on the PATH);
    2. the command itself when it starts a Python (`python3 train.py`, `.venv/bin/python ...`);
    3. `$VIRTUAL_ENV/bin/python` when the command's environment names a virtual environment;
    4. the first `python3` or `python` on the command's PATH."""
    path_var = env.get("PATH", os.defpath)
    if env_python:
        if "/" in env_python:
            p = Path(env_python)
            p = p if p.is_absolute() else top / p
            return Interpreter(str(p), "env_python")
        found = _on_path(env_python, path_var)
        return Interpreter(found or env_python, "env_python")
    if command:
        first = command[0]
        if PYTHON_NAME.match(os.path.basename(first)):
            if "/" in first:
                p = Path(first)
                return Interpreter(str(p if p.is_absolute() else cwd / p), "command")
            found = _on_path(first, path_var)
            if found:
                return Interpreter(found, "command")
    venv = env.get("VIRTUAL_ENV")
    if venv:
        for name in ("python", "python3"):
            in_venv = Path(venv) / "bin" / name
            if os.access(in_venv, os.X_OK):
                return Interpreter(str(in_venv), "VIRTUAL_ENV")
    for d in path_var.split(os.pathsep):
        for name in ("python3", "python"):
            cand = os.path.join(d or ".", name)
            if os.path.isfile(cand) and os.access(cand, os.X_OK):
                return Interpreter(cand, "PATH")
    return None


def start_query(
    interp: Interpreter, env: dict[str, str], cwd: Path, *, facts_only: bool = False
) -> subprocess.Popen[bytes] | str:
    """Start the query (collected by `finish_query`), or why it could not start. It runs in the
    command's environment and directory, so it sees what the command will see. `facts_only`:
    the interpreter's identity without its distributions."""
    # The identity alone (a rebuild's search for an interpreter) is asked in isolated mode:
    # neither the working directory nor PYTHON* variables can put a module of someone else's
    # (a json.py) in front of the script's first import. A full query must see the command's
    # environment, PYTHONPATH included, and runs where the command runs.
    isolated = ["-I"] if facts_only else []
    try:
        return subprocess.Popen(
            [interp.path, *isolated, "-c", QUERY_SCRIPT, *(["facts"] if facts_only else [])],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return f"cannot start {interp.path}: {exc.strerror or exc}"


def finish_query(proc: subprocess.Popen[bytes] | str) -> dict[str, Any]:
    """The interpreter's answer, or `{"error": why}`: recording never fails a run."""
    if isinstance(proc, str):
        return {"error": proc}
    try:
        out, err = proc.communicate(timeout=QUERY_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"the interpreter did not answer within {QUERY_TIMEOUT:.0f} s"}
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return {"error": f"the interpreter exited {proc.returncode}: {tail[0]}"}
    if len(out) > MAX_QUERY_OUTPUT:
        return {"error": "the interpreter's answer is too large"}
    try:
        doc = loads_strict(out, what="interpreter query")
    except CatalyticError as exc:
        return {"error": exc.message}
    if not isinstance(doc, dict) or not isinstance(doc.get("distributions"), list):
        return {"error": "the interpreter's answer is not the expected document"}
    return doc


def own_facts() -> dict[str, Any]:
    """What QUERY_SCRIPT's facts-only run would print for this very interpreter, without
    starting one (a rebuild for the interpreter the tool runs on needs no search)."""
    import platform
    import sys
    import sysconfig

    try:
        libc: str | None = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        libc = None
    return {
        "executable": sys.executable,
        "implementation": sys.implementation.name,
        "version": platform.python_version(),
        "version_info": list(sys.version_info[:3]),
        "soabi": sysconfig.get_config_var("SOABI"),
        "abiflags": getattr(sys, "abiflags", ""),
        "platform": sysconfig.get_platform(),
        "libc": libc,
        "mac_ver": platform.mac_ver()[0] if sys.platform == "darwin" else None,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "bits": 64 if sys.maxsize > 2**32 else 32,
        "distributions": [],
    }


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def query(
    interp: Interpreter, env: dict[str, str], cwd: Path, *, facts_only: bool = False
) -> dict[str, Any]:
    return finish_query(start_query(interp, env, cwd, facts_only=facts_only))
