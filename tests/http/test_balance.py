"""Several workers (one per GPU in production): a worker with more jobs
than another stops taking connections, so a new job goes to the idle
worker and no engine idles while another has a backlog. Deterministic:
the jobs are held by their gates (sd_test_gate), not timed."""

import re
import time

from conftest import FAST, raw_post, read_response, wait_state


def per_worker(text, metric):
    return {int(w): int(v) for w, v in re.findall(
        r'(?m)^' + metric + r'\{worker="(\d+)"\} (\d+)$', text)}


def test_jobs_spread_over_workers(nginx_factory):
    n = nginx_factory(workers=2, parallel=1)

    socks = []
    for k in range(2):
        # each job waits before its first step until released; a second
        # job on the same worker would wait in its queue instead
        task = f"b{k}"
        n.gate(task)
        socks.append(raw_post(n, "/sdapi/v1/txt2img",
                              dict(FAST, seed=k, force_task_id=task)))
        wait_state(n, task, started=False)

    text = n.get("/metrics").text
    running = per_worker(text, "sd_jobs_running")
    queued = per_worker(text, "sd_queue_depth")
    assert sorted(running.values()) == [1, 1], text
    assert sum(queued.values()) == 0, text

    # both busy alike: both take connections again; a third job waits in
    # one of the queues, and a fourth in the other (the busier worker
    # refuses until they are even)
    for k in (2, 3):
        task = f"b{k}"
        socks.append(raw_post(n, "/sdapi/v1/txt2img",
                              dict(FAST, seed=k, force_task_id=task)))
        wait_state(n, task, state="queued")
    text = n.get("/metrics").text
    assert sorted(per_worker(text, "sd_queue_depth").values()) == [1, 1], \
        text
    assert sorted(per_worker(text, "sd_jobs_running").values()) == [1, 1]

    for k in range(2):
        n.release(f"b{k}")
    for s in socks:
        status, _, body = read_response(s)
        assert status == 200 and len(body["images"]) == 1

    text = n.get("/metrics").text
    assert "sd_images_generated_total 4" in text
    # idle again: every worker takes connections
    refusing = re.findall(r'(?m)^sd_worker_refusing\{worker="\d+",'
                          r'device="cpu"\} (\d+)$', text)
    assert refusing == ["0", "0"], text


def test_device_per_worker(nginx_factory):
    # sd_device cuda:N,M gives worker k the list's entry k; "cuda" gives
    # worker k GPU k. Without a GPU here the engines fail to load, but the
    # metrics name each worker's device
    for device, want in (("cuda:3,5", {"cuda:3", "cuda:5"}),
                         ("cuda", {"cuda:0", "cuda:1"})):
        n = nginx_factory(workers=2, http=f"sd_device {device};",
                          wait_ready=False)
        # a worker names its device once it has started: wait for both
        # (a slow machine may still show one as "cpu" for a while)
        deadline = time.monotonic() + 60
        while True:
            text = n.get("/metrics").text
            got = set(re.findall(
                r'(?m)^sd_gpu_memory_total_bytes\{worker="\d+",'
                r'device="([^"]+)"\} \d+$', text))
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got == want, text
        n.stop()
