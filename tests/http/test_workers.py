"""Two worker processes: each has its own engine and queue; task states,
options and metrics live in the shared zone, so progress for a task is
right whichever worker answers."""

import threading

import requests

from conftest import FAST, SLOW, raw_post, read_response, wait_state


def test_two_workers(nginx_factory):
    n = nginx_factory(workers=2)

    # ready on both workers
    for _ in range(100):
        m = n.get("/metrics").text
        if 'sd_engine_ready{worker="0"} 1' in m and \
                'sd_engine_ready{worker="1"} 1' in m:
            break
    assert 'sd_engine_ready{worker="1"} 1' in m

    n.gate("w1", step=1)
    s = raw_post(n, "/sdapi/v1/txt2img",
                 dict(SLOW, force_task_id="w1"))
    wait_state(n, "w1")

    # every new connection may land on either worker: all see the task
    for _ in range(12):
        with requests.Session() as c:
            p = c.post(n.url + "/internal/progress",
                       json={"id_task": "w1"}).json()
            assert p["active"] is True
            g = c.get(n.url + "/sdapi/v1/progress").json()
            assert g["state"]["job"] == "w1"

    # options set through one worker hold for both
    assert n.post("/sdapi/v1/options", {"randn_source": "CPU"}).ok
    for _ in range(6):
        with requests.Session() as c:
            assert c.get(n.url + "/sdapi/v1/options").json()[
                "randn_source"] == "CPU"

    # interrupt reaches the job on whichever worker runs it: it answers
    # with its latest denoised estimate
    assert n.post("/sdapi/v1/interrupt").ok
    n.release("w1")
    status, _, body = read_response(s)
    assert status == 200 and len(body["images"]) == 1

    # concurrent requests spread over the workers
    results = []

    def run(i):
        results.append(n.post("/sdapi/v1/txt2img", dict(FAST, seed=i))
                       .status_code)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 4

    m = n.get("/metrics").text
    assert 'sd_queue_depth{worker="0"}' in m
    assert 'sd_queue_depth{worker="1"}' in m
    assert "sd_images_generated_total 5" in m
