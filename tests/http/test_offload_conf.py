"""sd_offload: the values nginx -t accepts and the one it refuses, named."""
from conftest import nginx_t


def check(module, tmp_path, value):
    return nginx_t(module, tmp_path, value.replace(",", "_"),
                   http=f"sd_offload {value};")


def test_offload_values(module, tmp_path):
    for ok in ("t5", "clip", "text", "t5,clip", "none"):
        r = check(module, tmp_path, ok)
        assert r.returncode == 0, (ok, r.stderr)
    r = check(module, tmp_path, "vae")
    assert r.returncode != 0
    assert 'invalid value "vae" in "sd_offload"' in r.stderr, r.stderr
