"""A1111's listing routes (ngx_module/ngx_http_sd_lists.c): the shapes
A1111 1.10 answers, LoRA files from sd_lora_dir, styles from
sd_styles_file (listed, and applied by "styles" in a request), empty lists
where this server has nothing, and interrogate's 501."""

import json
import struct

from conftest import FAST


def write_safetensors(path, metadata=None):
    """A minimal safetensors file: one F32 scalar tensor, and the
    __metadata__ the Lora extension shows."""
    header = {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"\0\0\0\0")


def test_lists_shapes(nginx_factory, tmp_path):
    loras = tmp_path / "loras"
    (loras / "sub").mkdir(parents=True)
    write_safetensors(loras / "detail.safetensors",
                      {"ss_output_name": "detail", "ss_network_dim": "16"})
    write_safetensors(loras / "sub" / "style.safetensors")
    (loras / "notes.txt").write_text("not a LoRA")
    (loras / ".hidden.safetensors").write_bytes(b"")
    n = nginx_factory(http=f"sd_lora_dir {loras};")

    got = n.get("/sdapi/v1/loras").json()
    by_name = {x["name"]: x for x in got}
    assert sorted(by_name) == ["detail", "style"]
    assert by_name["detail"] == {
        "name": "detail", "alias": "detail",
        "path": str(loras / "detail.safetensors"),
        "metadata": {"ss_output_name": "detail", "ss_network_dim": "16"}}
    assert by_name["style"]["path"] == str(loras / "sub" / "style.safetensors")
    assert by_name["style"]["metadata"] == {}
    assert n.post("/sdapi/v1/refresh-loras").json() is None

    ups = n.get("/sdapi/v1/upscalers").json()
    assert [u["name"] for u in ups] == ["None", "Lanczos", "Nearest"]
    assert set(ups[0]) == {"name", "model_name", "model_path", "model_url",
                           "scale"}

    modes = n.get("/sdapi/v1/latent-upscale-modes").json()
    assert modes[0] == {"name": "Latent"}
    assert {"name": "Latent (nearest-exact)"} in modes

    assert [v["model_name"] for v in n.get("/sdapi/v1/sd-vae").json()] == \
        ["Automatic", "None"]
    assert n.get("/sdapi/v1/embeddings").json() == {"loaded": {},
                                                    "skipped": {}}
    assert n.get("/sdapi/v1/scripts").json() == {"txt2img": [],
                                                 "img2img": []}
    for path in ("script-info", "hypernetworks", "face-restorers",
                 "realesrgan-models", "extensions", "prompt-styles"):
        r = n.get("/sdapi/v1/" + path)
        assert r.status_code == 200 and r.json() == [], path

    flags = n.get("/sdapi/v1/cmd-flags").json()
    assert flags["api"] is True and flags["lora_dir"] == str(loras)

    r = n.post("/sdapi/v1/interrogate", {"image": "", "model": "clip"})
    assert r.status_code == 501
    assert "interrogator" in r.json()["detail"]


def test_styles(nginx_factory, tmp_path):
    styles = tmp_path / "styles.csv"
    styles.write_text('name,prompt,negative_prompt\n'
                      'Film,"{prompt}, film grain",blurry\n'
                      'Sharp,sharp focus,\n')
    n = nginx_factory(http=f"sd_styles_file {styles};")

    assert n.get("/sdapi/v1/prompt-styles").json() == [
        {"name": "Film", "prompt": "{prompt}, film grain",
         "negative_prompt": "blurry"},
        {"name": "Sharp", "prompt": "sharp focus", "negative_prompt": ""}]

    # A1111: styles apply in order; unknown names are ignored
    body = dict(FAST, prompt="a cat", negative_prompt="ugly",
                styles=["Film", "Sharp", "Nope"])
    r = n.post("/sdapi/v1/txt2img", body)
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["prompt"] == "a cat, film grain, sharp focus"
    assert info["negative_prompt"] == "ugly, blurry"
    assert info["styles"] == ["Film", "Sharp", "Nope"]
    assert info["infotexts"][0].startswith("a cat, film grain, sharp focus\n"
                                           "Negative prompt: ugly, blurry\n")
    # "parameters" echoes the request as it came
    assert r.json()["parameters"]["prompt"] == "a cat"
