"""`python -m build` makes an sdist and a wheel that install and run.

The wheel is built the way a release is (``python -m build`` builds the
sdist, then the wheel from the unpacked sdist), installed into a fresh
virtualenv outside the repository, and run. Its file list is checked against
the source tree, so a new package directory or data file that packaging
would drop fails here rather than on a host.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.machine_lock import machine_lock

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("meshd", "raft", "registry", "connect")
# What a rollout needs from the sdist besides the Python packages.
SDIST_EXTRAS = (
    "systemd/meshd.service",
    "systemd/meshd-proxy.service",
    "ansible/site.yml",
    "ansible/upgrade.yml",
    "ansible/inventory.example.ini",
    "ansible/roles/meshd/tasks/main.yml",
    "ansible/roles/meshd/defaults/main.yml",
)


def _source_files() -> set[str]:
    """Every file of the packages in the tree (sources and data), repo-relative."""
    found = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                found.add(path.relative_to(REPO).as_posix())
    return found


BUILD_OUTPUT: list[str] = []


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    with machine_lock("build"):  # the sdist step writes REPO/meshd.egg-info
        proc = subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
            capture_output=True,
            text=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    BUILD_OUTPUT.append(proc.stdout + proc.stderr)
    (wheel,) = out.glob("meshd-*.whl")
    (sdist,) = out.glob("meshd-*.tar.gz")
    return wheel, sdist


def test_wheel_holds_every_package_file_of_the_tree(built: tuple[Path, Path]) -> None:
    wheel, _ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _source_files()
    assert {"meshd/__init__.py", "raft/__init__.py", "registry/__init__.py"} <= expected
    missing = sorted(expected - names)
    assert not missing, f"files of the tree missing from {wheel.name}: {missing}"
    # Directories of Python modules are packages; data-only ones (meshd/ui/static) are not.
    package_dirs = {str(Path(f).parent) for f in expected if f.endswith(".py")}
    assert all(f"{d}/__init__.py" in names for d in package_dirs), sorted(package_dirs)
    stray = sorted(
        n
        for n in names
        if not n.startswith(PACKAGES) and ".dist-info/" not in n and not n.startswith("meshd-")
    )
    assert stray == [], f"unexpected files in the wheel: {stray}"
    # Test and bench harnesses live in tools/, run from a checkout, not installed.
    assert not [n for n in names if n.startswith("tools/")]
    assert not {"meshd/local_cluster.py", "meshd/raft_cluster.py", "meshd/raft_demo.py"} & names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "meshd = meshd.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_licence_is_an_spdx_expression_and_the_build_does_not_warn(
    built: tuple[Path, Path],
) -> None:
    wheel, _ = built
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith("METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert "project.license` as a TOML table is deprecated" not in "".join(BUILD_OUTPUT)


def test_sdist_carries_the_units_and_the_ansible_role(built: tuple[Path, Path]) -> None:
    _, sdist = built
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing = [f for f in SDIST_EXTRAS if f not in names]
    assert missing == [], f"missing from {sdist.name}: {missing}"
    assert not any(n.startswith("ansible/meshd-secrets") for n in names)
    assert not any("__pycache__" in n for n in names)


def test_wheel_installs_into_a_fresh_venv_and_runs(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    wheel, _ = built
    venv = tmp_path / "venv"
    base = os.path.realpath(sys._base_executable)  # type: ignore[attr-defined]
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    meshd = str(venv / "bin" / "meshd")
    # Run from outside the repository so nothing is imported from the tree.
    version = subprocess.run(
        [meshd, "version"], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert version.returncode == 0, version.stderr
    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert version.stdout.splitlines()[0] == f"meshd v{expected}"
    usage = subprocess.run(
        [meshd, "--help"], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert usage.returncode == 0, usage.stderr
    for command in ("agent", "tls", "snapshot", "acl", "proxy"):
        assert f"  {command} " in usage.stdout, usage.stdout
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import connect.proxy.main, meshd.cli, raft, registry; print(meshd.cli.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(venv)), where.stdout
