"""Operations (docker/, docker/k8s/): the container's files, the rendering
of its nginx.conf (nginx -t, then served: keys, limits, the access log's
$sd_* variables), the Kubernetes manifests against their schemas, the alert
rules through promtool, every metric that the rules, the dashboard and the
ScaledObject name against a running server's /metrics, and a real
Prometheus scraping a running server."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import (FAST, MODEL, NGINX, ROOT, Nginx, free_port, nginx_t,
                      raw_post, read_response, wait_state)

DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
OPS = ROOT / "tests" / "ops"


def dockerfile_stages():
    """{stage name: [(INSTRUCTION, args)]}, continuation lines joined."""
    text = (DOCKER / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    stages, cur = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        ins, _, args = line.partition(" ")
        ins = ins.upper()
        if ins == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            cur = m.group(2) or m.group(1)
            stages[cur] = [("FROM", m.group(1))]
        elif cur:
            stages[cur].append((ins, " ".join(args.split())))
    return stages


def test_dockerfile():
    st = dockerfile_stages()
    assert set(st) >= {"build-gpu", "build-cpu", "cpu", "gpu"}
    # the default target (the last stage) is the GPU image
    assert list(st)[-1] == "gpu"
    assert re.fullmatch(r"nvidia/cuda:\$\{CUDA_VERSION\}-cudnn-devel-"
                        r"\$\{UBUNTU\}", st["build-gpu"][0][1])
    assert re.fullmatch(r"nvidia/cuda:\$\{CUDA_VERSION\}-cudnn-runtime-"
                        r"\$\{UBUNTU\}", st["gpu"][0][1])
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"(?m)^ARG CUDA_VERSION=13\.0\.\d+$", text)
    assert re.search(r"(?m)^ARG UBUNTU=ubuntu24\.04$", text)

    # the build stages run CI's own commands: ./make.sh deps, then make
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./make.sh deps" in ci
    for name in ("build-gpu", "build-cpu"):
        runs = " ".join(a for i, a in st[name] if i == "RUN")
        assert "./make.sh deps" in runs, name
        assert re.search(r"make -j\S+ .*\ball module\b", runs), name
    assert "NVCC=" in " ".join(a for i, a in st["build-cpu"] if i == "RUN")

    for name in ("cpu", "gpu"):
        ins = dict((i, a) for i, a in st[name])
        assert ins["USER"] not in ("root", "0")
        assert "sd-healthcheck" in ins["HEALTHCHECK"]
        assert "sd-entrypoint" in ins["ENTRYPOINT"]
        assert ins["EXPOSE"] == "7860"
        assert "/models" in ins["VOLUME"]
        assert ins["STOPSIGNAL"] == "SIGQUIT"
        copies = [a for i, a in st[name] if i == "COPY"]
        assert any("ngx_http_sd_module.so" in c for c in copies)
        # every file copied from the context exists
        for c in copies:
            if c.startswith("--from"):
                continue
            src = c.split()[0]
            assert (ROOT / src).is_file(), src

    # the health check asks /internal/ping for "ready"
    hc = (DOCKER / "healthcheck.sh").read_text()
    assert "/internal/ping" in hc and '"ready"' in hc
    assert os.access(DOCKER / "entrypoint.sh", os.X_OK)
    assert os.access(DOCKER / "healthcheck.sh", os.X_OK)


def test_compose():
    c = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert list(c["services"]) == ["sd"]
    s = c["services"]["sd"]
    assert s["runtime"] == "nvidia"
    assert s["build"]["dockerfile"] == "docker/Dockerfile"
    assert s["build"]["target"] == "gpu"
    assert "7860:7860" in s["ports"]
    assert any(re.search(r":/models(:ro)?$", v) for v in s["volumes"])
    env = s["environment"]
    for k in ("SD_MODEL", "MAX_RESOLUTION", "SD_WORKERS", "SD_DEVICE"):
        assert k in env, k
    dev = s["deploy"]["resources"]["reservations"]["devices"][0]
    assert dev["driver"] == "nvidia" and "gpu" in dev["capabilities"]


def render(tmp, env):
    out = tmp / "rendered"
    e = dict(os.environ)
    e.update({"SD_TEMPLATE": str(DOCKER / "nginx.conf.template"),
              "SD_MODULE": str(ROOT / "build" / "ngx_http_sd_module.so"),
              "SD_MODEL_PATH": str(MODEL), "SD_RUN_USER": "root",
              "SD_DEVICE": "cpu"})
    e.update(env)
    r = subprocess.run([str(DOCKER / "entrypoint.sh"), "render", str(out)],
                       env=e, capture_output=True, text=True)
    return r, out


def test_entrypoint_rejects_bad_values(tmp_path):
    for k, v in (("SD_PORT", "80; evil"), ("SD_DEVICE", "tpu"),
                 ("MAX_RESOLUTION", "big"), ("SD_PRECISION", "int4"),
                 ("SD_BATCH", "0"), ("SD_BATCH", "65")):
        r, _ = render(tmp_path, {k: v})
        assert r.returncode != 0 and k in r.stderr, (k, r.stderr)


def test_entrypoint_renders_a_config_nginx_serves(module, tmp_path):
    keys = tmp_path / "api-keys"
    keys.write_text("# tenants\nkey-alice-0123 alice\nkey-bob-45678 bob\n")
    port = free_port()
    r, out = render(tmp_path, {
        "SD_PORT": str(port),
        "SD_API_KEYS_FILE": str(keys), "MAX_RESOLUTION": "128",
        "SD_MAX_STEPS": "4", "SD_WORKERS": "auto", "SD_TENANT_QUEUE": "1",
        "SD_MODEL": "tiny", "SD_LOG_LEVEL": "info", "SD_BATCH": "4",
        "SD_ACCESS_LOG": str(tmp_path / "rendered" / "access.log")})
    assert r.returncode == 0, r.stderr
    conf = (out / "nginx.conf").read_text()
    assert "@" not in re.sub(r"(?m)#.*$", "", conf)
    assert "worker_processes  1;" in conf
    assert f"sd_max_pixels      {128 * 128};" in conf
    assert f"sd_model             tiny {MODEL} default;" in conf
    assert "sd_batch             4;" in conf

    t = subprocess.run([NGINX, "-t", "-p", str(out) + "/", "-c",
                        "nginx.conf", "-e", "stderr"],
                       capture_output=True, text=True)
    assert t.returncode == 0, t.stderr
    assert "test is successful" in t.stderr

    # served: the listen line is the port alone (all addresses); the test
    # reaches it on loopback
    n = Nginx(out, conf, port)
    try:
        n.start()
        alice = {"Authorization": "Bearer key-alice-0123"}
        assert n.post("/sdapi/v1/txt2img", FAST).status_code == 401
        assert n.post("/sdapi/v1/txt2img", FAST, headers={
            "Authorization": "Bearer key-alice-0124"}).status_code == 401
        big = n.post("/sdapi/v1/txt2img", dict(FAST, width=256, height=256),
                     headers=alice)
        assert big.status_code == 422
        steps = n.post("/sdapi/v1/txt2img", dict(FAST, steps=5),
                       headers=alice)
        assert steps.status_code == 422 and "steps" in steps.text
        ok = n.post("/sdapi/v1/txt2img", FAST, headers=alice)
        assert ok.status_code == 200, ok.text
        task = ok.headers["X-Task-Id"]
        m = n.get("/metrics").text
        assert 'sd_tenant_images_total{tenant="alice"} 1' in m
        # the access log: tenant, task, size, steps, images,
        # queue wait and generation time of the job
        line = None
        for _ in range(100):
            logs = (out / "access.log").read_text()
            found = [x for x in logs.splitlines() if f"task={task}" in x]
            if found:
                line = found[0]
                break
            time.sleep(0.05)
        assert line, logs
        assert '"POST /sdapi/v1/txt2img HTTP/1.1" 200' in line
        assert "tenant=alice" in line
        assert "size=64x64 steps=2 images=1" in line
        assert re.search(r" wait=\d+\.\d{3} gen=\d+\.\d{3} worker=\d+$",
                         line), line
        # a request that ran no job logs "-" for the job's fields
        four = [x for x in logs.splitlines() if '" 401 ' in x]
        assert four and "size=- steps=-" in four[0]
    finally:
        n.stop()
    n.check_log()


def test_entrypoint_runs_unprivileged(module):
    """As in the image (USER sd): no "user" directive, every path in the
    prefix, and the access log falls back to a file when /dev/stdout is
    not the user's to open."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the server as nobody")
    import pwd
    import tempfile
    nobody = pwd.getpwnam("nobody")
    d = Path(tempfile.mkdtemp(prefix="sd-unpriv-", dir="/tmp"))
    try:
        os.chmod(d, 0o777)
        for src in (DOCKER / "entrypoint.sh", DOCKER / "nginx.conf.template",
                    module):
            shutil.copy(src, d / src.name)
            os.chmod(d / src.name, 0o755)
        port = free_port()

        def drop():
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)

        # the fixtures may lie where nobody cannot read (under /root): a
        # copy for the test's run then
        model = MODEL
        if subprocess.run(["test", "-r", str(MODEL / "model_index.json")],
                          preexec_fn=drop).returncode != 0:
            model = d / "model"
            shutil.copytree(MODEL, model)
            for root, dirs, files in os.walk(d):
                for x in dirs + files:
                    os.chmod(os.path.join(root, x), 0o755)
        env = {"PATH": os.environ["PATH"], "SD_PREFIX": str(d / "p"),
               "SD_TEMPLATE": str(d / "nginx.conf.template"),
               "SD_MODULE": str(d / module.name), "SD_DEVICE": "cpu",
               "SD_MODEL_PATH": str(model), "SD_PORT": str(port)}

        log = open(d / "out.log", "w")
        p = subprocess.Popen([str(d / "entrypoint.sh")], env=env,
                             preexec_fn=drop, stdout=subprocess.PIPE,
                             stderr=log)
        try:
            url = f"http://127.0.0.1:{port}"
            status = None
            for _ in range(600):
                try:
                    status = requests.get(url + "/internal/ping",
                                          timeout=2).json()["status"]
                    if status == "ready":
                        break
                except (requests.ConnectionError, ValueError):
                    pass
                assert p.poll() is None, (d / "out.log").read_text()
                time.sleep(0.05)
            assert status == "ready", (d / "out.log").read_text()
            conf = (d / "p" / "nginx.conf").read_text()
            assert not re.search(r"(?m)^user ", conf)
            r = requests.post(url + "/sdapi/v1/txt2img", json=FAST,
                              timeout=120)
            assert r.status_code == 200, r.text
            assert os.stat(d / "p" / "nginx.pid").st_uid == nobody.pw_uid
        finally:
            p.send_signal(signal.SIGQUIT)
            p.wait(30)
        out = (d / "out.log").read_text()
        assert not re.search(r"\[(alert|emerg|crit)\]", out), out
        assert "cannot write /dev/stdout" in out
        access = (d / "p" / "logs" / "access.log").read_text()
        assert "size=64x64 steps=2 images=1" in access
    finally:
        shutil.rmtree(d, ignore_errors=True)


def k8s_docs():
    docs = []
    for f in sorted(glob.glob(str(K8S / "*.yaml"))):
        if f.endswith("alerts.rules.yaml"):
            continue
        docs += [(Path(f).name, d)
                 for d in yaml.safe_load_all(Path(f).read_text()) if d]
    return docs


def npm_ready():
    """tests/ops/node_modules from package-lock.json (npm ci, pinned)."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.fail("node and npm are needed (make deps installs them)")
    stamp = OPS / "node_modules" / ".package-lock.json"
    lock = OPS / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund",
                            "--loglevel=error"], cwd=OPS,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr


def validate(docs):
    return subprocess.run(["node", str(OPS / "validate.mjs")],
                          input=json.dumps(docs), capture_output=True,
                          text=True, timeout=120)


def test_manifests_validate():
    docs = k8s_docs()
    kinds = sorted(d["kind"] for _, d in docs)
    assert kinds == sorted(["ConfigMap", "ConfigMap", "Deployment",
                            "PrometheusRule", "ScaledObject", "Secret",
                            "Service", "ServiceMonitor"])
    npm_ready()
    r = validate([d for _, d in docs])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("\nok ") + r.stdout.startswith("ok ") == len(docs)

    # the validator does fail: a wrong type, a missing required field
    bad = json.loads(json.dumps([d for _, d in docs
                                 if d["kind"] == "Deployment"]))
    bad[0]["spec"]["replicas"] = "two"
    so = json.loads(json.dumps([d for _, d in docs
                                if d["kind"] == "ScaledObject"]))
    del so[0]["spec"]["scaleTargetRef"]
    r = validate(bad + so)
    assert r.returncode == 1
    assert "replicas" in r.stdout and "scaleTargetRef" in r.stdout


def test_manifests_agree():
    docs = dict((d["kind"] + "/" + d["metadata"]["name"], d)
                for _, d in k8s_docs())
    dep = docs["Deployment/sd35-nginx"]["spec"]
    pod = dep["template"]["spec"]
    c = pod["containers"][0]
    # one GPU per pod; ready on the model, alive on ping; jobs may finish
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "sd-healthcheck" in c["readinessProbe"]["exec"]["command"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/internal/ping"
    stop = " ".join(c["lifecycle"]["preStop"]["exec"]["command"])
    assert "-s quit" in stop and "/var/lib/sd/nginx.pid" in stop
    env = docs["ConfigMap/sd35-env"]["data"]
    shutdown = int(env["SD_SHUTDOWN_TIMEOUT"].rstrip("s"))
    assert pod["terminationGracePeriodSeconds"] > shutdown + 10
    assert pod["securityContext"]["runAsNonRoot"] is True
    # the ConfigMap's template is the image's, byte for byte
    assert (docs["ConfigMap/sd35-nginx-conf"]["data"]["nginx.conf.template"]
            == (DOCKER / "nginx.conf.template").read_text())
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert env["SD_TEMPLATE"].startswith(mounts["nginx-conf"] + "/")
    assert env["SD_API_KEYS_FILE"] == mounts["api-keys"] + "/api-keys"
    assert "api-keys" in docs["Secret/sd35-api-keys"]["stringData"]
    assert env["SD_MODEL_PATH"].startswith(mounts["models"] + "/")
    # the Service, ServiceMonitor and ScaledObject point at it
    sel = dep["selector"]["matchLabels"]
    assert docs["Service/sd35-nginx"]["spec"]["selector"] == sel
    sm = docs["ServiceMonitor/sd35-nginx"]["spec"]
    assert sm["endpoints"][0]["port"] == "http"
    assert sm["endpoints"][0]["path"] == "/metrics"
    so = docs["ScaledObject/sd35-nginx"]["spec"]
    assert so["scaleTargetRef"]["name"] == "sd35-nginx"
    assert so["minReplicaCount"] >= 0
    assert so["triggers"][0]["type"] == "prometheus"
    # the PrometheusRule carries the rules file's groups
    rules = yaml.safe_load((K8S / "alerts.rules.yaml").read_text())
    assert docs["PrometheusRule/sd35-nginx"]["spec"] == rules


def test_promtool_check_rules():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (make deps: prometheus)"
    r = subprocess.run([promtool, "check", "rules",
                        str(K8S / "alerts.rules.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 6 rules found" in r.stdout
    alerts = {a["alert"] for a in yaml.safe_load(
        (K8S / "alerts.rules.yaml").read_text())["groups"][0]["rules"]}
    assert alerts >= {"SDQueueGrowing", "SDErrorRate", "SDLatencyP99OverSLO",
                      "SDEngineNotReady", "SDGPUMemoryNearFull"}


def named_metrics():
    """{metric name: where} for every sd_* metric that the rules, the
    dashboard and the ScaledObject name."""
    names = {}

    def scan(text, where):
        for m in re.findall(r"\bsd_[a-z0-9_]+\b", text):
            names.setdefault(m, where)

    for g in yaml.safe_load((K8S / "alerts.rules.yaml").read_text())[
            "groups"]:
        for rule in g["rules"]:
            scan(rule["expr"], "rules " + rule["alert"])
    dash = json.loads((K8S / "grafana-dashboard.json").read_text())
    for p in dash["panels"]:
        for t in p["targets"]:
            scan(t["expr"], "dashboard " + p["title"])
    for v in dash["templating"]["list"]:
        scan(v.get("query", "") if isinstance(v.get("query"), str) else "",
             "dashboard variable " + v["name"])
    so = yaml.safe_load((K8S / "scaledobject.yaml").read_text())
    for t in so["spec"]["triggers"]:
        scan(t["metadata"]["query"], "ScaledObject")
    return names


def exposed(text):
    return set(re.findall(r"(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )", text))


def test_named_metrics_exist(nginx_factory):
    names = named_metrics()
    for must in ("sd_queue_depth", "sd_jobs_running", "sd_engine_ready",
                 "sd_request_seconds_bucket", "sd_step_seconds_bucket",
                 "sd_images_generated_total", "sd_gpu_memory_used_bytes",
                 "sd_gpu_memory_total_bytes", "sd_tenant_rejected_total",
                 "sd_requests_total"):
        assert must in names, must

    n = nginx_factory(loc="sd_tenant $http_x_tenant;")
    r = n.post("/sdapi/v1/txt2img", FAST, headers={"X-Tenant": "t1"})
    assert r.status_code == 200
    text = n.get("/metrics").text
    have = exposed(text)
    missing = {k: v for k, v in names.items() if k not in have}
    assert not missing, f"named but not on /metrics: {missing}"

    # the CPU backend reports its GPU gauges as 0, device "cpu"
    assert 'sd_gpu_memory_total_bytes{worker="0",device="cpu"} 0' in text
    assert 'sd_gpu_memory_used_bytes{worker="0",device="cpu"} 0' in text
    load = re.search(r'(?m)^sd_engine_load_seconds\{worker="0",'
                     r'device="cpu"\} (\S+)$', text)
    assert load and float(load.group(1)) > 0
    ips = re.search(r'(?m)^sd_images_per_second\{worker="0",'
                    r'device="cpu"\} (\S+)$', text)
    assert ips and float(ips.group(1)) > 0
    assert "sd_queue_wait_seconds_count 1" in text
    gen = re.search(r"(?m)^sd_generation_seconds_total (\S+)$", text)
    assert gen and float(gen.group(1)) > 0


def test_prometheus_scrapes_queue_depth(nginx_factory, tmp_path):
    prom = shutil.which("prometheus")
    assert prom, "prometheus is needed (make deps)"
    n = nginx_factory(parallel=1)

    # one job held in the engine, one waiting behind it
    n.gate("p1")
    s1 = raw_post(n, "/sdapi/v1/txt2img", dict(FAST, force_task_id="p1"))
    wait_state(n, "p1", started=False)
    s2 = raw_post(n, "/sdapi/v1/txt2img", dict(FAST, force_task_id="p2"))
    wait_state(n, "p2", state="queued")

    pport = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(K8S / "alerts.rules.yaml")],
        "scrape_configs": [{
            "job_name": "sd", "metrics_path": "/metrics",
            "static_configs": [{"targets": [f"127.0.0.1:{n.port}"],
                                "labels": {"service": "sd35-nginx"}}]}]}))
    log = open(tmp_path / "prometheus.log", "w")
    p = subprocess.Popen([prom, f"--config.file={cfg}",
                          f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{pport}"],
                         stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{pport}/api/v1"
    try:
        # the ScaledObject's query, as KEDA sends it
        so = yaml.safe_load((K8S / "scaledobject.yaml").read_text())
        query = so["spec"]["triggers"][0]["metadata"]["query"]
        value = None
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                r = requests.get(api + "/query",
                                 params={"query": query}, timeout=5).json()
                res = r["data"]["result"]
                if res:
                    value = float(res[0]["value"][1])
                    break
            except (requests.ConnectionError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        assert value == 2.0, (value, (tmp_path / "prometheus.log")
                              .read_text()[-2000:])
        r = requests.get(api + "/query", params={
            "query": 'sum(sd_queue_depth{service="sd35-nginx"})'},
            timeout=5).json()
        assert float(r["data"]["result"][0]["value"][1]) == 1.0

        # it loaded the alert rules and evaluates them without error
        deadline = time.time() + 30
        while time.time() < deadline:
            groups = requests.get(api + "/rules", timeout=5).json()[
                "data"]["groups"]
            rules = [x for g in groups for x in g["rules"]]
            if rules and all(x["health"] != "unknown" for x in rules):
                break
            time.sleep(0.2)
        assert len(rules) == 6
        assert all(x["health"] == "ok" for x in rules), rules
    finally:
        p.terminate()
        p.wait(10)
        n.release("p1")
        assert read_response(s1)[0] == 200
        assert read_response(s2)[0] == 200


def test_device_list_directive(module, tmp_path):
    def check(device):
        return nginx_t(module, tmp_path,
                       device.replace(":", "_").replace(",", "_"),
                       http=f"sd_device {device};")

    for ok in ("cuda:0,1", "cuda:1,0,3", "cuda:2", "cuda", "cpu"):
        r = check(ok)
        assert r.returncode == 0, (ok, r.stderr)
    for bad in ("cuda:0,", "cuda:0,x", "cuda:,1", "gpu"):
        r = check(bad)
        assert r.returncode != 0 and "invalid device" in r.stderr, bad
