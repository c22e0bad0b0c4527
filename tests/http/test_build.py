"""The addon build file: it refuses clearly when nginx lacks threads or
the engine library is not built."""

import shutil
import subprocess

from conftest import ROOT

NGX_SRC = "/usr/share/nginx/src"


def configure(tmp_path, addon, *flags):
    src = tmp_path / "nginx"
    shutil.copytree(NGX_SRC, src, symlinks=True)
    return subprocess.run(["./configure", "--with-compat", *flags,
                           f"--add-dynamic-module={addon}"], cwd=src,
                          capture_output=True, text=True)


def addon_copy(tmp_path, with_lib):
    addon = tmp_path / "addon"
    addon.mkdir()
    shutil.copy(ROOT / "config", addon / "config")
    if with_lib:
        (addon / "build").mkdir()
        (addon / "build" / "libsd.a").write_bytes(b"!<arch>\n")
    return addon


def test_config_needs_threads(tmp_path):
    r = configure(tmp_path, addon_copy(tmp_path, True))
    assert r.returncode != 0
    assert "requires thread pools" in r.stdout + r.stderr
    assert "--with-threads" in r.stdout + r.stderr


def test_config_needs_engine_library(tmp_path):
    r = configure(tmp_path, addon_copy(tmp_path, False), "--with-threads")
    assert r.returncode != 0
    assert "libsd.a" in r.stdout + r.stderr
    assert "make lib" in r.stdout + r.stderr
