from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import PathClass, load_policy

from .helpers import catalytic


def test_defaults(tmp_path: Path) -> None:
    p = load_policy(tmp_path)
    assert p.durable_roots == () and p.tmp_roots == () and p.protected_roots == (".",)
    assert p.run_roots == ("_runs",) and p.metrics_tolerance == 1e-8


def test_pyproject_and_dotfile(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname="x"\n[tool.catalytic]\ndurable_roots=["outputs/"]\ntmp_roots=["./_tmp"]\n')
    p = load_policy(tmp_path)
    assert p.durable_roots == ("outputs",) and p.tmp_roots == ("_tmp",)
    (tmp_path / ".catalytic.toml").write_text('durable_roots=["x"]\n')
    with pytest.raises(CatalyticError) as err:
        load_policy(tmp_path)
    assert err.value.code is ErrorCode.CONFIG_INVALID and "both" in err.value.message


def test_dotfile_alone(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname="x"\n')
    (tmp_path / ".catalytic.toml").write_text('exclusions=["vendor"]\n')
    assert load_policy(tmp_path).exclusions == ("vendor",)


def test_classification_precedence(tmp_path: Path) -> None:
    (tmp_path / ".catalytic.toml").write_text(
        'exclusions=["data/cache"]\ntmp_roots=["data/tmp","_tmp"]\n'
        'durable_roots=["data","out"]\nprotected_roots=["data","src"]\n')
    p = load_policy(tmp_path)
    assert p.classify("data/cache/x") is PathClass.EXCLUDED
    assert p.classify("data/tmp/x") is PathClass.TMP
    assert p.classify("data/raw.csv") is PathClass.DURABLE
    assert p.classify("out/r.txt") is PathClass.DURABLE
    assert p.classify("outputs/r.txt") is PathClass.UNPROTECTED
    assert p.classify("src/a.py") is PathClass.PROTECTED
    assert p.classify("README") is PathClass.UNPROTECTED
    assert p.classify(".git/config") is PathClass.EXCLUDED
    assert p.classify("_runs/r1/STATUS.json") is PathClass.DURABLE  # run roots are durable


BAD_CONFIGS = {
    "absolute": ('durable_roots=["/etc"]', "durable_roots"),
    "dotdot": ('tmp_roots=["a/../../b"]', "tmp_roots"),
    "empty": ('exclusions=[""]', "exclusions"),
    "unknown-key": ('durable_root=["x"]', "durable_root"),
    "wrong-type": ('durable_roots="outputs"', "durable_roots"),
    "wrong-item": ("tmp_roots=[1]", "tmp_roots"),
    "bad-validator": ('trusted_validators=["ABC"]', "trusted_validators"),
    "bad-tolerance": ('metrics_tolerance="x"', "metrics_tolerance"),
    "bad-toml": ("durable_roots=[", "TOML"),
}


@pytest.mark.parametrize(("text", "key"), list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS))
def test_bad_config_exits_2_naming_the_key(make_repo, text: str, key: str) -> None:
    repo = make_repo({"a.txt": "x"}, policy=text + "\n")
    proc = catalytic("digest", "--json", cwd=repo)
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["code"] == "CONFIG_INVALID"
    assert key in doc["message"]
    assert "Traceback" not in proc.stderr
