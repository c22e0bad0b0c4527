"""tests/run.sh itself: it must fail whenever a test fails, whatever a
summary line says, and depend on nothing "make deps" does not install (it
used to add pytest's counts with bc, and passed without it)."""

import os
import shutil
import subprocess

from conftest import ROOT

RUN = ROOT / "tests" / "run.sh"


def program(folder, name, text, rc=0):
    p = folder / name
    p.write_text(f"#!/bin/sh\nprintf '%s\\n' '{text}'\nexit {rc}\n")
    p.chmod(0o755)


def run(tmp_path, http_tests, programs=None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    program(bin_dir, "test_ok", "3 passed, 0 failed, 1 skipped")
    for name, (text, rc) in (programs or {}).items():
        program(bin_dir, name, text, rc)
    http = tmp_path / "http"
    http.mkdir(exist_ok=True)
    for name, text in http_tests.items():
        (http / name).write_text(text)
    # a PATH with the tools of a minimal Debian and no bc
    tools = tmp_path / "path"
    tools.mkdir(exist_ok=True)
    for tool in ("grep", "sed", "tee", "cat", "basename", "dirname",
                 "mkdir", "tail", "sh"):
        if not (tools / tool).exists():
            (tools / tool).symlink_to(shutil.which(tool))
    # its pytest log beside the rest, not over the outer run's
    env = dict(os.environ, SD_TEST_BIN=str(bin_dir), SD_HTTP_TESTS=str(http),
               SD_TEST_OUT=str(tmp_path / "out"), PATH=str(tools))
    r = subprocess.run(["/bin/sh", str(RUN)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout.strip().splitlines()[-1], r.stdout


GOOD = "def test_a():\n    pass\n\ndef test_b():\n    pass\n"
BAD = GOOD + "\ndef test_c():\n    assert False\n"


def test_runner_passes(tmp_path):
    rc, last, out = run(tmp_path, {"test_x.py": GOOD})
    assert rc == 0, out
    assert last == "5 passed, 0 failed, 1 skipped"
    # SD_TEST_OUT: its log there, the outer run's build/pytest.log intact
    assert "2 passed" in (tmp_path / "out" / "pytest.log").read_text()


def test_runner_fails_on_a_pytest_failure(tmp_path):
    rc, last, out = run(tmp_path, {"test_x.py": BAD})
    assert rc != 0, out
    assert last == "5 passed, 1 failed, 1 skipped"


def test_runner_fails_on_a_collection_error(tmp_path):
    rc, last, out = run(tmp_path, {"test_x.py": "import nonexistent_mod\n"})
    assert rc != 0, out
    assert " 0 failed" not in last


def test_runner_fails_on_a_program(tmp_path):
    rc, _, out = run(tmp_path, {"test_x.py": GOOD},
                     {"test_bad": ("2 passed, 1 failed, 0 skipped", 1)})
    assert rc != 0, out
    rc, _, out = run(tmp_path, {"test_x.py": GOOD},
                     {"test_bad": ("Segmentation fault", 139)})
    assert rc != 0, out
    assert "without a result line" in out
    rc, _, out = run(tmp_path, {"test_x.py": GOOD},
                     {"test_bad": ("2 passed, 0 failed, 0 skipped", 1)})
    assert rc != 0, out
