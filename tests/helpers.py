"""Shared test helpers (one module): real git repositories, the real console entry point, run
bundles signed with fixed test-only keys, directory snapshots. Fixtures are in conftest.py."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from catalytic_hooks.bundle.keys import Signer, signer_from_seed
from catalytic_hooks.bundle.sign import sign_run_dir

ROOT = Path(__file__).resolve().parent.parent


def _vectors_copy() -> Path:
    """The golden vectors live inside the checkout (tests/vectors/README.md: a fresh clone alone
    must pass every test). Tests use a copy outside any repository, so that verifying or
    restoring them never writes into the checkout (its chronicle, for one)."""
    base = Path(tempfile.mkdtemp(prefix="catalytic-vectors-"))
    atexit.register(shutil.rmtree, base, True)
    shutil.copytree(ROOT / "tests" / "vectors", base / "vectors", symlinks=True)
    return base / "vectors"


CONFORMANCE = _vectors_copy()


def wait_blocked_in(pid: int, word: str) -> None:
    """Until the process sleeps in a kernel function whose name holds `word` (/proc/PID/wchan:
    "pipe" for a read of its stdin, "poll" for a wait on its children's output), so that a
    signal sent next finds it there; a fixed pause would signal a process still importing on a
    slow machine."""
    deadline = time.monotonic() + 60
    while word not in Path(f"/proc/{pid}/wchan").read_text():
        assert time.monotonic() < deadline, f"process {pid} never waited in {word!r}"
        time.sleep(0.01)


def settle_index(cwd: Path) -> None:
    """Wait until the index of the repository at `cwd` was written more than
    git.indexid.SETTLE_NS ago. A git status started sooner may have read another index, so the
    worktree's quick digest leaves such a case to the full path; a person's next command comes
    later than that, a test's within milliseconds (on a fast machine the quick path would then
    never answer, and a test of what it answers would hold vacuously)."""
    from catalytic_hooks.git.indexid import SETTLE_NS

    where = git(cwd, "rev-parse", "--git-path", "index").stdout.strip()
    try:
        age = time.time_ns() - (cwd / where).stat().st_ctime_ns
    except FileNotFoundError:
        return
    if age <= SETTLE_NS:
        # the file's time comes from the kernel's coarse clock: a tick more
        time.sleep((SETTLE_NS - age) / 1e9 + 0.02)


def git(
    cwd: Path,
    *args: str,
    check: bool = True,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, input=input, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args} failed: {proc.stdout}{proc.stderr}")
    return proc


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)


MakeRepo = Callable[..., Path]


def catalytic(
    *args: str, cwd: Path, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess. A command that hangs (the defect some
    tests guard against, a read of a FIFO say) fails its test after 10 minutes instead of
    holding the whole run."""
    return subprocess.run(
        [sys.executable, "-m", "catalytic_hooks", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        input=input,
        env=env if env is not None else dict(os.environ),
        timeout=600,
    )


def imported_by(*args: str, cwd: Path) -> set[str]:
    """Every module the real console entry point imports running `args` (`-X importtime`);
    the command must succeed."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "catalytic_hooks", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {
        line.split("|")[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }


def take_files(root: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of those of `names` that exist under `root`, each removed once read (so the
    next run of a command starts from the same directory)."""
    taken = {}
    for name in names:
        if (root / name).exists():
            taken[name] = (root / name).read_bytes()
            (root / name).unlink()
    return taken


# click's name of an option's type → the fast path's kind (an int with a `min` is a range)
_CLICK_KINDS = {"path": "path", "text": "str", "integer": "int", "int range": "int"}


def archive_command_table(name: str) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """`catalytic archive NAME` as Typer builds it: its options as the fast path's table
    (spelling → (field, kind)) and its positional arguments, in order."""
    import typer.main

    from catalytic_hooks.cli.app import app

    group = typer.main.get_command(app).commands["archive"]  # type: ignore[attr-defined]
    table, arguments = {}, []
    for param in group.commands[name].params:
        if param.param_type_name == "argument":
            arguments.append(param.name)
            continue
        kind = "flag" if param.is_flag else _CLICK_KINDS[param.type.name]
        for opt in (*param.opts, *param.secondary_opts):
            table[opt] = (param.name, kind)
    return table, arguments


class Done:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def inproc(*args: str, cwd: Path) -> Done:
    """The command line run in this process (the same Typer app and exit mapping as the
    console script, without paying an interpreter start per call on a loaded machine)."""
    import contextlib
    import io

    from catalytic_hooks.cli.app import run_app

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_app(list(args))
    finally:
        os.chdir(here)
    return Done(code, out.getvalue(), err.getvalue())


DEFAULT_POLICY = """\
durable_roots = ["outputs"]
tmp_roots = ["_tmp"]
run_roots = ["_runs"]
"""


def tree(root: Path) -> dict[str, bytes | str]:
    """Everything under root: file bytes, symlink targets, empty directories."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes()
        elif p.is_dir() and not any(p.iterdir()):
            out[rel + "/"] = "dir"
    return out


# -- run bundles -----------------------------------------------------------------------------

SEED_A = hashlib.sha256(b"catalytic_hooks/tests/validator-A").digest()
SEED_B = hashlib.sha256(b"catalytic_hooks/tests/validator-B").digest()


def signer(seed: bytes = SEED_A) -> Signer:
    return signer_from_seed(seed)


def make_bundle(
    run_dir: Path,
    project_root: Path,
    outputs: dict[str, bytes] | None = None,
    *,
    status: dict[str, Any] | None = None,
    proof: dict[str, Any] | None = None,
    task_spec: bytes | None = None,
    sign: bool = True,
    seed: bytes = SEED_A,
    hashes: dict[str, str] | None = None,
) -> Path:
    """Write a bundle (outputs under project_root) and sign it with the package's signer."""
    outputs = {"out/result.txt": b"hello\n"} if outputs is None else outputs
    run_dir.mkdir(parents=True)
    computed = {}
    for key, data in outputs.items():
        p = project_root / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        computed[key] = "sha256:" + hashlib.sha256(data).hexdigest()
    (run_dir / "TASK_SPEC.json").write_bytes(
        task_spec if task_spec is not None else json.dumps({"task_id": run_dir.name}).encode()
    )
    (run_dir / "STATUS.json").write_text(
        json.dumps(status if status is not None else {"status": "success", "cmp01": "pass"})
    )
    (run_dir / "OUTPUT_HASHES.json").write_text(
        json.dumps({"hashes": hashes if hashes is not None else computed})
    )
    (run_dir / "PROOF.json").write_text(
        json.dumps(proof if proof is not None else {"restoration_result": {"verified": True}})
    )
    if sign:
        sign_run_dir(run_dir, signer(seed))
    return run_dir


def rewrite(path: Path, mutate: Any) -> None:
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))


def resign(run_dir: Path, seed: bytes = SEED_A) -> None:
    sign_run_dir(run_dir, signer(seed), force=True)


def key_file(directory: Path, seed: bytes = SEED_A) -> Path:
    """The test key as a PKCS#8 PEM file (mode 0600), for `--sign` / `--key`."""
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    p = directory / f"key-{seed[:2].hex()}.pem"
    if not p.exists():
        p.write_bytes(
            signer(seed).key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        )
        os.chmod(p, 0o600)
    return p


def push_unchecked(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`git push` without the local hooks (the server's gate is what is under test)."""
    return git(repo, "push", "--no-verify", *args, check=False)


def commit_all(repo: Path, files: dict[str, str | bytes], message: str) -> str:
    """Write `files`, commit everything without the local hooks; the new commit's id."""
    write_files(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def gated_server(repo: Path, tmp_path: Path, head: str | None = None) -> Path:
    """A bare server holding `repo`'s main as `origin`, with the gate (pre-receive) installed;
    its HEAD on `head` (None: git's default, `master` here, naming no branch)."""
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", *(["-b", head] if head else []), str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    proc = catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return bare


def needs_tool(present: bool, reason: str) -> pytest.MarkDecorator:
    """Skip where a tool the tests drive (ssh-keygen, git-lfs, docker-registry, Chromium) is
    missing on a developer's machine; under `CI`, which .ci/run installs them for, never: a
    missing one there fails the tests instead of passing them unseen."""
    return pytest.mark.skipif(not present and not os.environ.get("CI"), reason=reason)


def extra_module(module: str) -> Any:
    """A module of the `test` extra (bagit, rocrate, roc-validator, securesystemslib, in-toto),
    imported; missing on a developer's machine, the test is skipped with the reason; under
    `CI`, which .ci/run installs `.[test]` for, the import error fails it instead."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"the test extra {module} is not installed")


HAVE_SSH_KEYGEN = shutil.which("ssh-keygen") is not None


@contextlib.contextmanager
def on_another_file_system(than: Path) -> Iterator[Path]:
    """A new directory on another file system than `than` (/dev/shm, a tmpfs), removed
    afterwards. Without one the test skips here, and fails under CI, which has one."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == than.stat().st_dev:
        if os.environ.get("CI"):
            pytest.fail("CI must have /dev/shm on its own file system for this test")
        pytest.skip("no second file system (/dev/shm) here")
    where = Path(tempfile.mkdtemp(dir=shm))
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)
