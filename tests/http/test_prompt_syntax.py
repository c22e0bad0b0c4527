"""A1111 prompt syntax through /sdapi/v1/txt2img: emphasis weights, long
prompts in chunks of 75 tokens, BREAK, prompt editing (the engine's C tests
check the rules themselves; here the API carries them to the engine)."""

import base64
import json

import sdutil
from conftest import FAST


def pixels(n, prompt, **kw):
    r = n.post("/sdapi/v1/txt2img", dict(FAST, prompt=prompt, steps=4, **kw))
    assert r.status_code == 200, r.text
    out = r.json()
    assert json.loads(out["info"])["prompt"] == prompt
    return sdutil.png_decode(base64.b64decode(out["images"][0]))[3]


def test_prompt_syntax(nginx):
    plain = pixels(nginx, "cat dog")
    # the weight multiplies cat's embedding: another image
    assert pixels(nginx, "(cat:1.5) dog") != plain
    # BREAK starts a second chunk: another image than the words run on
    assert pixels(nginx, "cat BREAK dog") != plain
    # [a:b:0] is b from the first step: the very image of b
    assert pixels(nginx, "[cat dog:red cube:0]") == pixels(nginx, "red cube")
    # past 75 tokens the words go on in a second chunk, not cut off
    words75 = " ".join(["cat"] * 75)
    assert pixels(nginx, words75 + " dog dog") != pixels(nginx, words75)
