"""A bare clone works: nothing reads ``../shared`` (the notes beside the project) at run or test
time.

The Atlas spec the tests check the sandbox against is vendored at
tests/fixtures/atlas-openapi.json. Here, the tracked code is searched for paths into
``../shared``, and a ``git clone`` of HEAD in a temporary folder with nothing beside it runs the
sandbox, a short pf_sync and pf_check, and the tests that read the spec. (The lead's full check,
``../shared/tools/bare-clone-check``, runs scripts/demo and scripts/test in such a clone.)
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

# How a path into the notes beside the project would be spelled in code.
SHARED_PATHS = ("../shared", "shared/atlas", "shared/HOST_SCHEMA", "shared/STYLE")
# The folder's bare name, as a path joined part by part would hold it.
SHARED_NAME = SHARED_PATHS[0].removeprefix("../")


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name and name != THIS]


def python_paths_into_shared(path: Path) -> list[str]:
    """String constants of ``path`` naming ../shared, docstrings left out (they may cite it)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and (node.value == SHARED_NAME or any(p in node.value for p in SHARED_PATHS))
    ]


def other_paths_into_shared(path: Path) -> list[str]:
    """Lines of a script or configuration file naming ../shared, comments left out."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return []  # images and other binary files
    return [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), start=1)
        if not line.lstrip().startswith("#") and any(p in line for p in SHARED_PATHS)
    ]


def test_no_tracked_code_reads_the_notes_beside_the_project():
    found = []
    for path in tracked_files():
        if path.suffix == ".md" or not path.is_file():
            continue  # prose may name the notes; it reads nothing
        if path.suffix == ".py":
            found += python_paths_into_shared(path)
        else:
            found += other_paths_into_shared(path)
    assert found == []


def test_the_spec_the_tests_read_is_vendored_in_the_repository():
    from tests.fixtures.sandbox import SPEC_PATH

    assert SPEC_PATH.is_relative_to(ROOT)
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", str(SPEC_PATH.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    assert tracked.returncode == 0, tracked.stderr


def clone_env(folder: Path, **extra: str) -> dict[str, str]:
    """A manage.py environment on an SQLite file and a media folder under ``folder``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PF_", "DATABASE_URL", "POSTGRES_DSN", "DJANGO_", "PYTEST_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="project_settings.settings",
        DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}",
        MEDIA_ROOT=str(folder / "media"),
        REPORT_FILE="",
        LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def run(clone: Path, args: list[str], env: dict[str, str], timeout: float = 60):
    return subprocess.run(
        [sys.executable, *args], cwd=clone, env=env, capture_output=True, text=True, timeout=timeout
    )


def read_sandbox_settings(sandbox: subprocess.Popen) -> dict[str, str]:
    """PF_API_URL, PF_API_KEY and PF_API_SECRET, the first three lines the sandbox prints."""
    values = {}
    deadline = time.monotonic() + 30
    while len(values) < 3 and time.monotonic() < deadline:
        line = sandbox.stdout.readline()
        if not line:
            break
        name, _, value = line.strip().partition("=")
        if name.startswith("PF_API_"):
            values[name] = value
    assert len(values) == 3, sandbox.stderr.read() if sandbox.poll() is not None else values
    return values


@pytest.mark.slow
def test_a_bare_clone_of_head_runs_the_sandbox_a_sync_and_the_spec_tests(tmp_path):
    if shutil.which("git") is None:
        pytest.fail("git is needed to clone the repository")
    clone = tmp_path / "pfsync"
    cloned = subprocess.run(
        ["git", "clone", "--quiet", str(ROOT), str(clone)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cloned.returncode == 0, cloned.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pfsync"]  # no shared/ beside it
    data = tmp_path / "data"
    data.mkdir()
    env = clone_env(data)

    # The clone's own code runs, not this working copy's (installed editable in the venv).
    where = run(clone, ["-c", "import pfsync_app; print(pfsync_app.__file__)"], env)
    assert Path(where.stdout.strip()).is_relative_to(clone), where.stderr

    migrated = run(clone, ["manage.py", "migrate", "--noinput", "-v", "0"], env, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    small = ["--port", "0", "--users", "3", "--listings", "4", "--images-per-listing", "1"]
    sandbox = subprocess.Popen(
        [sys.executable, "manage.py", "pf_sandbox", *small, "--image-bytes", "2000"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        api = read_sandbox_settings(sandbox)
        sync_env = {**env, **api, "PF_MEDIA_ALLOW_PRIVATE_HOSTS": "true"}
        synced = run(clone, ["manage.py", "pf_sync"], sync_env, timeout=120)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        checked = run(clone, ["manage.py", "pf_check"], sync_env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        sandbox.terminate()
        try:
            sandbox.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sandbox.kill()
            sandbox.wait()
        sandbox.stdout.close()
        sandbox.stderr.close()
    images = [p for p in (data / "media").rglob("*") if p.is_file()]
    assert images, "pf_sync saved no image"

    # The tests that read the vendored spec pass in the clone (SQLite: no database needed).
    pytest_args = ["-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'inner'}"]
    spec_tests = run(
        clone,
        ["-m", "pytest", *pytest_args, "tests/sandbox/test_api.py", "-k", "spec"],
        {**env, "DATABASE_URL": ""},
        timeout=120,
    )
    assert spec_tests.returncode == 0, spec_tests.stdout[-3000:] + spec_tests.stderr[-2000:]
    assert " passed" in spec_tests.stdout and " failed" not in spec_tests.stdout
