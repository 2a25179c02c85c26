"""Hostile input to the environment commands: run directory names and recorded paths that would
inject lines into an exported lock, lock files and index pages built to crash a parser, files
planted where a rebuild looks for its interpreter or its wheels."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalytic_hooks.core.canonical import canonical_bytes

from .helpers import catalytic, make_bundle

POLICY = 'durable_roots = ["outputs"]\nrun_roots = ["_runs"]\n'
TINY_HASH = "sha256:" + "a" * 64


def _environment(**source: str) -> dict[str, object]:
    """tinylib 1.0 (hashed), and with `source` a package built from the repository."""
    packages: list[object] = [{"name": "tinylib", "version": "1.0", "hashes": [TINY_HASH]}]
    if source:
        packages.append({"name": "mypkg", "version": "0.1", "hashes": [], "source": source})
    return {
        "environment_format": 2,
        "python": {"implementation": "cpython", "version": "3.11.7"},
        "packages": packages,
        "environment_hash": "sha256:" + "b" * 64,
    }


def _requirements(lock: Path) -> list[str]:
    """The requirement lines of a requirements file as pip reads it: comments dropped,
    backslash continuations joined."""
    text = lock.read_text().replace("\\\n", " ")
    return [ln.split()[0] for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_a_run_directory_name_cannot_add_a_requirement_to_the_export(
    make_repo, tmp_path: Path
) -> None:
    """A run directory's name is no part of what was signed; it is written into the export's
    header comment. With a newline in it, the line after would be a requirement of the
    attacker's choosing (with its own hash) that pip installs."""
    repo = make_repo({"README": "x\n"}, policy=POLICY)
    spec = {"task_id": "r", "command": ["true"], "cwd": ".", "environment": _environment()}
    name = "r\nevil==6.6.6 --hash=sha256:" + "e" * 64 + " #"
    run = make_bundle(
        repo / "_runs" / name, repo, {"outputs/a.txt": b"a"}, task_spec=canonical_bytes(spec)
    )
    lock = tmp_path / "lock.txt"
    proc = catalytic("env", "export", str(run), "--output", str(lock), cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _requirements(lock) == ["tinylib==1.0"]
    assert "r\\nevil==6.6.6" in lock.read_text().splitlines()[0]  # shown, escaped, inert
    # and pip, reading the file, asks for tinylib alone
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-index", "--require-hashes",
         "-d", str(tmp_path / "d"), "-r", str(lock)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert pip.returncode != 0 and "tinylib" in pip.stderr and "evil" not in pip.stderr


def test_a_recorded_source_path_with_a_newline_is_refused(make_repo, tmp_path: Path) -> None:
    repo = make_repo({"README": "x\n"}, policy=POLICY)
    hostile = _environment(kind="directory", repo_path="pkg\nevil==6.6.6 #")
    spec = {"task_id": "r", "command": ["true"], "cwd": ".", "environment": hostile}
    run = make_bundle(
        repo / "_runs" / "r1", repo, {"outputs/a.txt": b"a"}, task_spec=canonical_bytes(spec)
    )
    lock = tmp_path / "lock.txt"
    proc = catalytic("env", "export", str(run), "--output", str(lock), "--json", cwd=repo)
    assert proc.returncode != 0 and '"ENV_PIN_INVALID"' in proc.stdout, proc.stdout + proc.stderr
    assert not lock.exists()


_SEARCH = """
import json, sys
from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.environment.build import RebuildOptions, rebuild
doc = json.loads(sys.argv[1])
try:
    rebuild(doc, RebuildOptions(offline=True, find_links=[sys.argv[2]]))
except CatalyticError as exc:
    print(exc.code.value)
"""


def _search_for_another_python(cwd: Path, tmp_path: Path, **env: str) -> str:
    """A rebuild whose recorded interpreter is not this one, so it searches (and runs) the
    interpreters it can find; returns the error code it ends with."""
    import json
    import os

    doc = _environment()
    doc["python"] = {"implementation": "cpython", "version": "9.9.99"}  # nowhere to be found
    (tmp_path / "wheels").mkdir(exist_ok=True)
    full = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-c", _SEARCH, json.dumps(doc), str(tmp_path / "wheels")],
        cwd=cwd, env=full, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_interpreter_search_imports_nothing_from_a_shared_directory(tmp_path: Path) -> None:
    """Each candidate interpreter was asked `python -c QUERY` in the temporary directory, where
    `-c` puts the working directory first on the import path: another local user's
    /tmp/json.py ran as the caller. The stand-in for /tmp is a TMPDIR holding a json.py."""
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    (shared / "json.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('RAN').write_text('x')\n"
    )
    code = _search_for_another_python(tmp_path, tmp_path, TMPDIR=str(shared))
    assert code == "ENV_PYTHON_MISSING"
    assert not (shared / "RAN").exists()


def test_the_interpreter_search_runs_no_planted_virtual_environment(tmp_path: Path) -> None:
    """`uv python find` looks for a `.venv` in its working directory and every parent and runs
    the interpreter there to learn its version: git keeps the executable bit, so a cloned
    repository (the usual working directory of a replay) can carry one, and any local user can
    create /tmp/.venv above a private temporary directory (the stand-in for /tmp is TMPDIR)."""
    ran = tmp_path / "RAN"
    repo, shared = tmp_path / "cloned", tmp_path / "shared-tmp"
    for where in (repo, shared):
        (where / ".venv/bin").mkdir(parents=True)
        fake = where / ".venv/bin/python"
        fake.write_text(f"#!/bin/sh\necho {where.name} >> {ran}\nexit 1\n")
        fake.chmod(0o755)
        (where / ".venv/pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 9.9.99\n")
    code = _search_for_another_python(repo, tmp_path, TMPDIR=str(shared))
    assert code == "ENV_PYTHON_MISSING"
    assert not ran.exists(), ran.read_text()


HOSTILE_PAGES = {
    "json-files-null": ("application/vnd.pypi.simple.v1+json", b'{"files": null}'),
    "json-nested-deep": ("application/vnd.pypi.simple.v1+json", b"[" * 200_000 + b"]" * 200_000),
    "json-bad-url": (
        "application/vnd.pypi.simple.v1+json",
        b'{"files":[{"filename":"tinylib-1.0-py3-none-any.whl","url":"http://[x/"}]}',
    ),
    "html-bad-url": ("text/html", b'<a href="http://[::1/tinylib-1.0-py3-none-any.whl">x</a>'),
}


@contextlib.contextmanager
def _hostile_index() -> Iterator[str]:
    """A loopback index answering `/<case>/tinylib/` with HOSTILE_PAGES[case]."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            case = self.path.strip("/").split("/")[0]
            ctype, body = HOSTILE_PAGES.get(case, ("text/plain", b""))
            self.send_response(200 if case in HOSTILE_PAGES else 404)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("case", sorted(HOSTILE_PAGES))
def test_a_hostile_index_page_is_that_index_down_and_the_next_one_serves(
    case: str, tmp_path: Path
) -> None:
    """A page of the wrong type, nested past the recursion limit, or with a link no URL parser
    takes ended the whole rebuild with an internal error, and the next index was never asked."""
    from catalytic_hooks.environment.pins import Pin
    from catalytic_hooks.environment.sources import Index, serve

    from .wheels import make_wheel, sha256_file, simple_index
    from .wheels import serve as serve_dir

    wheel = make_wheel(tmp_path / "w", "tinylib", "1.0", {"tinylib.py": "X = 1\n"})
    good = simple_index(tmp_path / "good", [wheel])
    pin = Pin("tinylib", "1.0", (sha256_file(wheel),))
    (tmp_path / "into").mkdir()
    with _hostile_index() as bad, serve_dir(good.parent) as ok:
        sources = [Index("primary", f"{bad}/{case}"), Index("fallback", f"{ok}/simple")]
        got = serve(pin, sources, ["py3-none-any"], "test", tmp_path / "into")
    assert got.path.read_bytes() == wheel.read_bytes() and got.hash_checked
    assert [e["source"] for e in got.events] == ["primary"]
    # a page without a list of files lists nothing; every other page is unusable
    said = "does not have tinylib" if case == "json-files-null" else "not a usable simple-API page"
    assert said in got.events[0]["event"]


def _wheelhouse_serve(house: Path, pin_hash: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    from catalytic_hooks.environment.pins import Pin
    from catalytic_hooks.environment.sources import Wheelhouse, serve

    into = tmp_path / "into"
    into.mkdir(exist_ok=True)
    pin = Pin("tinylib", "1.0", (pin_hash,))
    return serve(pin, [Wheelhouse(str(house))], ["py3-none-any"], "test", into)


def test_a_link_in_a_wheelhouse_is_not_followed(tmp_path: Path) -> None:
    """Whoever can write a shared wheelhouse could name any file the caller can read as the
    pinned wheel; its SHA-256 was then quoted in the refusal (a hash oracle)."""
    import hashlib

    from catalytic_hooks.core.errors import CatalyticError

    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"the caller's private key\n")
    house = tmp_path / "house"
    house.mkdir()
    (house / "tinylib-1.0-py3-none-any.whl").symlink_to(secret)
    with pytest.raises(CatalyticError) as err:
        _wheelhouse_serve(house, "sha256:" + "a" * 64, tmp_path)
    said = json.dumps(err.value.to_dict())
    assert "a symbolic link" in said
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in said
    assert list((tmp_path / "into").iterdir()) == []


def test_a_wheelhouse_file_is_read_no_further_than_the_largest_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sparse file named like the pinned wheel costs its writer nothing and its reader a full
    read; the read stops at MAX_WHEEL (16 GiB, lowered to 1 MiB here so the test reads 1 MiB
    instead of 16 GiB: the limit, not the file system, is what is under test)."""
    from catalytic_hooks.core.errors import CatalyticError
    from catalytic_hooks.environment import sources

    monkeypatch.setattr(sources, "MAX_WHEEL", 1 << 20)
    house = tmp_path / "house"
    house.mkdir()
    with open(house / "tinylib-1.0-py3-none-any.whl", "wb") as fh:
        fh.truncate(1 << 40)  # 1 TiB, sparse
    with pytest.raises(CatalyticError) as err:
        _wheelhouse_serve(house, "sha256:" + "a" * 64, tmp_path)
    assert "larger than 1048576 bytes" in json.dumps(err.value.to_dict())


def test_a_lock_file_nested_past_the_parsers_depth_is_still_hashed(make_repo) -> None:
    repo = make_repo(
        {
            ".catalytic.toml": 'lock_files = ["uv.lock"]\n',
            "uv.lock": "x = " + "[" * 5000 + "]" * 5000,
        },
        policy=None,
    )
    proc = catalytic("env", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    locks = json.loads(proc.stdout)["details"]["fingerprint"]["lock_files"]
    assert list(locks) == ["uv.lock"]


def test_prune_leaves_what_the_cache_did_not_make(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    envs = cache / "catalytic/envs"
    (envs / ("0" * 32) / "venv").mkdir(parents=True)  # an entry of the cache's own
    (envs / "notes").write_text("someone's notes\n")
    (envs / "link").symlink_to(tmp_path)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    proc = catalytic("env", "prune", "--json", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    details = json.loads(proc.stdout)["details"]
    assert (details["removed"], details["ignored"]) == (["0" * 32], ["link", "notes"])
    assert sorted(p.name for p in envs.iterdir()) == ["0" * 32 + ".lock", "link", "notes"]
    assert tmp_path.is_dir() and (envs / "notes").read_text() == "someone's notes\n"


@pytest.mark.parametrize("where", ["--index", "policy"])
def test_an_index_url_with_credentials_is_refused_and_never_echoed(make_repo, where: str) -> None:
    """A password in an index URL went into the refusal's message and `details.sources` when
    no source offered a wheel (stderr, or stdout with --json), so into CI logs; urllib never
    sent it anyway. It is refused up front, the URL shown masked."""
    url = "https://alice:S3CRET-TOKEN@127.0.0.1:9/simple"
    policy = 'durable_roots = ["outputs"]\nrun_roots = ["_runs"]\n'
    if where == "policy":
        policy += f'env_index = "{url}"\n'
    repo = make_repo({"README": "x\n"}, policy=policy)
    env = {
        "environment_format": 2,
        "python": {"implementation": "cpython", "version": "3.11.7"},
        "packages": [{"name": "tinylib", "version": "1.0", "hashes": ["sha256:" + "a" * 64]}],
        "environment_hash": "sha256:" + "b" * 64,
    }
    spec = {"task_id": "r", "command": ["true"], "cwd": ".", "environment": env}
    run = make_bundle(
        repo / "_runs/r1", repo, {"outputs/a.txt": b"a"}, task_spec=canonical_bytes(spec)
    )
    args = ["env", "export", str(run), "--format", "pylock"]
    if where == "--index":
        args += ["--index", url]
    for mode in ((), ("--json",)):
        proc = catalytic(*args, *mode, cwd=repo)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        text = proc.stdout + proc.stderr
        assert "S3CRET" not in text and "alice" not in text
        assert "https://***@127.0.0.1:9/simple" in text
        assert "Traceback" not in text
