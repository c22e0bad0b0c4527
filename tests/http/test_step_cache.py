"""Step caching, the module's half: the sd_step_cache directive (the values
nginx -t accepts and those it refuses, named), the request's step_cache
field (a number 0..1; anything else a 422 naming it) in txt2img and
img2img, parameters left as A1111's, the sd_steps_cached_total counter,
and step_cache in the result cache's key, from the body or the directive.
Nothing here looks at the pixels: what step caching does to them is the
engine's (sd.h) and its tests'."""

from conftest import FAST, nginx_t
from test_cache import cached_server, memcached, metric  # noqa
from test_cache_key import wait_items


def test_directive_values(module, tmp_path):
    i = 0
    for level in ("http", "server", "loc"):
        for ok in ("off", "0.1", "0.05", ".15", "1", "1.0"):
            i += 1
            r = nginx_t(module, tmp_path, f"ok{i}",
                        **{level: f"sd_step_cache {ok};"})
            assert r.returncode == 0, (level, ok, r.stderr)

    for bad in ("1.5", "abc", "0", "0.0", "-0.1", "1e-1", "nan", "0.1.2",
                "on", "2"):
        i += 1
        r = nginx_t(module, tmp_path, f"bad{i}",
                    loc=f"sd_step_cache {bad};")
        assert r.returncode != 0, (bad, r.stderr)
        assert f'invalid value "{bad}" in "sd_step_cache"' in r.stderr, \
            r.stderr

    r = nginx_t(module, tmp_path, "dup",
                loc="sd_step_cache 0.1; sd_step_cache off;")
    assert r.returncode != 0
    assert '"sd_step_cache" directive is duplicate' in r.stderr, r.stderr

    r = nginx_t(module, tmp_path, "args", loc="sd_step_cache 0.1 0.2;")
    assert r.returncode != 0
    assert '"sd_step_cache"' in r.stderr, r.stderr


def detail(r):
    assert r.status_code == 422, r.text
    d = r.json()["detail"]
    assert len(d) == 1, d
    return d[0]


def test_field(nginx_factory):
    n = nginx_factory()
    r = n.post("/sdapi/v1/txt2img", FAST)
    assert r.status_code == 200, r.text
    png = r.json()["images"][0]
    keys = set(r.json()["parameters"])

    for path, base in (("/sdapi/v1/txt2img", FAST),
                       ("/sdapi/v1/img2img",
                        dict(FAST, init_images=[png],
                             denoising_strength=0.5))):
        for value, kind, msg in (
                (2, "less_than_equal",
                 "Input should be less than or equal to 1.0"),
                (1.01, "less_than_equal",
                 "Input should be less than or equal to 1.0"),
                (-0.1, "greater_than_equal",
                 "Input should be greater than or equal to 0.0"),
                ("abc", "float_parsing", None),
                (True, "float_type", None),
                ([0.1], "float_type", None)):
            d = detail(n.post(path, dict(base, step_cache=value)))
            assert d["loc"] == ["body", "step_cache"], (path, value, d)
            assert d["type"] == kind, (path, value, d)
            if msg:
                assert d["msg"] == msg, (path, value, d)

    # in range: the request runs; parameters stay A1111's keys
    for value in (0.1, 0, 1, "0.05", None):
        r = n.post("/sdapi/v1/txt2img", dict(FAST, step_cache=value))
        assert r.status_code == 200, (value, r.text)
        assert len(r.json()["images"]) == 1
        assert set(r.json()["parameters"]) == keys, value

    r = n.post("/sdapi/v1/img2img",
               dict(FAST, init_images=[png], denoising_strength=0.5,
                    step_cache=0.1))
    assert r.status_code == 200, r.text
    assert "step_cache" not in r.json()["parameters"]

    # two steps: the engine never reuses the first two nor the last one
    assert metric(n, "sd_steps_cached_total") == 0
    text = n.get("/metrics").text
    assert "# TYPE sd_steps_cached_total counter\n" in text
    assert "\nsd_steps_cached_total 0\n" in text


def test_directive_serves(nginx_factory):
    # at the location: requests without the field take it, those with it
    # keep theirs; a 422 is the field's whatever the directive says
    n = nginx_factory(loc="sd_step_cache 0.1;")
    for body in (FAST, dict(FAST, step_cache=0), dict(FAST, step_cache=0.2)):
        r = n.post("/sdapi/v1/txt2img", body)
        assert r.status_code == 200, (body, r.text)
    d = detail(n.post("/sdapi/v1/txt2img", dict(FAST, step_cache=2)))
    assert d["loc"] == ["body", "step_cache"]


def test_cache_key(nginx_factory, memcached):
    base = dict(FAST, prompt="a cached step", seed=33)
    a = cached_server(nginx_factory, memcached)

    def post(n, body, want):
        r = n.post("/sdapi/v1/txt2img", body)
        assert r.status_code == 200, r.text
        assert r.headers["X-Cache"] == want, (body, r.headers["X-Cache"])

    # off, then on: two entries; 0 sent is off
    post(a, base, "MISS")
    wait_items(memcached, 1)
    post(a, dict(base, step_cache=0.1), "MISS")
    wait_items(memcached, 2)
    post(a, dict(base, step_cache=0), "HIT")
    post(a, dict(base, step_cache=0.1), "HIT")
    post(a, dict(base, step_cache=0.15), "MISS")
    wait_items(memcached, 3)

    # another server on the same memcached, with sd_step_cache 0.05 in
    # http: its requests without the field are a new entry (they would
    # hit the off one if the directive did not reach the key), with 0 the
    # off one, with their own value theirs
    b = cached_server(nginx_factory, memcached, "sd_step_cache 0.05;")
    post(b, base, "MISS")
    wait_items(memcached, 4)
    post(b, base, "HIT")
    post(b, dict(base, step_cache=0), "HIT")
    post(b, dict(base, step_cache=0.1), "HIT")
    assert metric(b, "sd_cache_hits_total") == 3
    # the entry b's directive made is the one a's field asks for
    post(a, dict(base, step_cache=0.05), "HIT")
    assert memcached.stats()["curr_items"] == 4
