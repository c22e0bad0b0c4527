"""sd_offload: the values nginx -t accepts and the one it refuses, named."""
import subprocess

from conftest import MODEL, NGINX, free_port


def check(module, tmp_path, value):
    prefix = tmp_path / value.replace(",", "_")
    (prefix / "logs").mkdir(parents=True)
    (prefix / "nginx.conf").write_text(
        f"load_module {module};\nerror_log stderr;\npid nginx.pid;\n"
        f"events {{}}\nhttp {{ sd_model tiny {MODEL} default;\n"
        f"sd_offload {value};\n"
        f"server {{ listen 127.0.0.1:{free_port()}; "
        f"location / {{ sd_api; }} }} }}\n")
    return subprocess.run([NGINX, "-t", "-p", str(prefix) + "/", "-c",
                           "nginx.conf", "-e", "stderr"],
                          capture_output=True, text=True)


def test_offload_values(module, tmp_path):
    for ok in ("t5", "clip", "text", "t5,clip", "none"):
        r = check(module, tmp_path, ok)
        assert r.returncode == 0, (ok, r.stderr)
    r = check(module, tmp_path, "vae")
    assert r.returncode != 0
    assert 'invalid value "vae" in "sd_offload"' in r.stderr, r.stderr
