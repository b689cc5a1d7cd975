"""The cluster scripts check their prerequisites before touching anything."""

import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _stub(folder: Path, name: str, body: str = "exit 0") -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _run(script: str, path_dir: Path):
    return subprocess.run(["/bin/bash", str(SCRIPTS / script)], capture_output=True, text=True,
                          env={"PATH": str(path_dir)}, timeout=30)


@pytest.mark.parametrize("missing", ["docker", "kind", "kubectl"])
def test_cluster_up_names_the_missing_tool(tmp_path, missing):
    """Check that each missing prerequisite is named, and nothing runs."""
    for tool in ("docker", "kind", "kubectl"):
        if tool != missing:
            _stub(tmp_path, tool, f"echo {tool} >> {tmp_path}/called")
    completed = _run("cluster-up.sh", tmp_path)
    assert completed.returncode == 1
    assert f"'{missing}' is not installed" in completed.stderr
    assert not (tmp_path / "called").exists()


def test_cluster_up_needs_a_running_docker_engine(tmp_path):
    """Check that a docker client without an engine is reported as such."""
    _stub(tmp_path, "docker", "exit 1")
    _stub(tmp_path, "kind")
    _stub(tmp_path, "kubectl")
    completed = _run("cluster-up.sh", tmp_path)
    assert completed.returncode == 1
    assert "its engine is not running" in completed.stderr


def test_cluster_down_names_missing_kind(tmp_path):
    """Check that cluster-down without kind says so."""
    completed = _run("cluster-down.sh", tmp_path)
    assert completed.returncode == 1 and "'kind' is not installed" in completed.stderr
