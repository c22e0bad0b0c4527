"""The web page (web/) in headless Chromium (Debian's chromium and
chromium-driver, driven by python3-selenium), through conf/gateway.conf
with an API key: types a prompt, clicks Generate, waits for the image,
checks its size and infotext; then Interrupt, with the job held after its
first step by its gate so that nothing depends on the machine's speed."""

import re
import shutil

import pytest

from conftest import FAST, ROOT, free_port, wait_state
from test_conf import example

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("chromium and chromium-driver are not installed "
                    "(make deps)")
    webdriver = pytest.importorskip("selenium.webdriver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--window-size=1200,900"):
        opts.add_argument(a)
    service = webdriver.ChromeService(executable_path=DRIVER) \
        if hasattr(webdriver, "ChromeService") \
        else webdriver.chrome.service.Service(executable_path=DRIVER)
    d = webdriver.Chrome(options=opts, service=service)
    d.set_script_timeout(120)
    yield d
    d.quit()


def gateway_with_page(nginx_factory, module):
    ports = {7860: free_port(), 7861: free_port()}
    conf = example("gateway.conf", module, ports)
    conf = conf.replace("root   ../../web;", f"root   {ROOT / 'web'};")
    n = nginx_factory(conf=conf, port=ports[7860])
    n.metrics_url = f"http://127.0.0.1:{ports[7861]}/metrics"
    n.nworkers = 2
    n.wait_workers_ready(2)
    return n


def fill(d, **fields):
    for name, value in fields.items():
        e = d.find_element("id", name)
        e.clear()
        e.send_keys(str(value))


def wait_for(d, script, timeout=120):
    """Polls a JavaScript expression in the page until it is truthy."""
    return d.execute_async_script(
        "const [expr, ms, done] = arguments; const end = Date.now() + ms;"
        "(function check() { let v = null;"
        "  try { v = eval(expr); } catch (e) {}"
        "  if (v || Date.now() > end) done(v); else setTimeout(check, 20);"
        "})();", script, timeout * 1000)


def steps_run(n):
    import requests
    text = requests.get(n.metrics_url, timeout=30).text
    return int(re.search(r"(?m)^sd_step_seconds_count (\d+)$",
                         text).group(1))


def test_page_generates_and_interrupts(nginx_factory, module, browser):
    n = gateway_with_page(nginx_factory, module)
    d = browser
    d.get(n.url + "/")
    assert d.title == "sd-nginx"

    # without the key the API refuses the lists; with it they come
    fill(d, key="key-alice")
    d.execute_script("document.getElementById('key')"
                     ".dispatchEvent(new Event('change'))")
    assert wait_for(d, "document.getElementById('model').options.length"
                       " > 0 && document.getElementById('model').value")
    assert wait_for(d, "[...document.getElementById('sampler').options]"
                       ".some(o => o.value === 'Euler')")

    fill(d, prompt="a red cube in the browser", width=64, height=64,
         steps=2, cfg=1, seed=1)
    d.find_element("id", "generate").click()
    assert wait_for(d, "document.getElementById('image').naturalWidth")
    size = d.execute_script("const i = document.getElementById('image');"
                            "return [i.naturalWidth, i.naturalHeight];")
    assert size == [64, 64]
    info = d.find_element("id", "infotext").text
    assert info.startswith("a red cube in the browser")
    assert "Steps: 2" in info and "Seed: 1" in info and "Size: 64x64" in info
    assert len(d.find_elements("css selector", "#history img")) == 1
    assert d.find_element("id", "status").text.startswith("done")

    # Interrupt: the job is held after step 1 of 40; the progress bar
    # shows it; Interrupt; the job ends after that step with its image
    d.execute_script("window.sdNewTaskId = () => 'task(web1)'")
    n.gate("task(web1)", step=1)
    before = steps_run(n)
    fill(d, steps=40, seed=2)
    d.find_element("id", "generate").click()
    wait_state(n, "task(web1)", headers={"Authorization": "Bearer key-alice"})
    assert wait_for(d, "document.getElementById('status').textContent"
                       ".startsWith('Sampling step 1/40')")
    assert wait_for(d, "parseFloat(document.getElementById('fill')"
                       ".style.width) > 0")
    d.find_element("id", "interrupt").click()
    # the interrupt has reached the server once the page says so
    assert wait_for(d, "document.getElementById('status').textContent"
                       ".startsWith('interrupting')")
    n.release("task(web1)")
    assert wait_for(d, "document.querySelectorAll('#history img')"
                       ".length === 2")
    assert d.find_element("id", "status").text == "done: task(web1)"
    assert "Steps: 40" in d.find_element("id", "infotext").text
    assert steps_run(n) - before == 1
