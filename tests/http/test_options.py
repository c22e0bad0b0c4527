"""A1111's options (ngx_module/ngx_http_sd_options.c): every option key
with its value, stored for every worker, round-tripped by clients; those
that apply here honoured: samples_format png/jpg/webp with jpeg_quality,
webp_lossless and the infotext where A1111 writes it for each format
(PNG text chunk, EXIF UserComment), enable_pnginfo."""

import base64
import json
import struct

from conftest import FAST


def png_chunks(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, []
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        out.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return out


def exif_user_comment(tiff):
    """piexif's UserComment of a TIFF (EXIF) block: the text, or None."""
    order = "<" if tiff[:2] == b"II" else ">"

    def ifd(off):
        n = struct.unpack(order + "H", tiff[off:off + 2])[0]
        for i in range(n):
            e = tiff[off + 2 + 12 * i:off + 14 + 12 * i]
            tag, typ, cnt = struct.unpack(order + "HHI", e[:8])
            yield tag, typ, cnt, e[8:]

    ifd0 = struct.unpack(order + "I", tiff[4:8])[0]
    for tag, _, _, val in ifd(ifd0):
        if tag == 0x8769:
            exif = struct.unpack(order + "I", val)[0]
            for t, typ, cnt, v in ifd(exif):
                if t == 0x9286 and typ == 7:
                    off = struct.unpack(order + "I", v)[0]
                    data = tiff[off:off + cnt]
                    assert data[:8] == b"UNICODE\0"
                    return data[8:].decode("utf-16-be")
    return None


def jpeg_exif(data):
    assert data[:3] == b"\xff\xd8\xff"
    pos = 2
    while pos < len(data) and data[pos] == 0xff:
        marker = data[pos + 1]
        n = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        seg = data[pos + 4:pos + 2 + n]
        if marker == 0xe1 and seg[:6] == b"Exif\0\0":
            return seg[6:]
        if marker == 0xda:
            break
        pos += 2 + n
    return None


def webp_chunks(data):
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    pos, out = 12, {}
    while pos + 8 <= len(data):
        tag = data[pos:pos + 4]
        n = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        out[tag] = data[pos + 8:pos + 8 + n]
        pos += 8 + n + (n & 1)
    return out


def generate(n, **kw):
    r = n.post("/sdapi/v1/txt2img", dict(FAST, prompt="a caf\u00e9 \u2615",
                                         **kw))
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    return base64.b64decode(r.json()["images"][0]), info["infotexts"][0]


def test_options_every_key_round_trip(nginx_factory):
    n = nginx_factory(workers=2)
    o = n.get("/sdapi/v1/options").json()
    # A1111's keys with its defaults, and the server's own
    assert len(o) > 200
    assert o["samples_save"] is True and o["jpeg_quality"] == 80
    assert o["samples_format"] == "png" and o["enable_pnginfo"] is True
    assert o["quicksettings_list"] == ["sd_model_checkpoint"]
    assert o["sd_model_checkpoint"].startswith("tiny")
    assert o["CLIP_stop_at_last_layers"] == 1

    # a client sends everything back, changed or not: accepted
    r = n.post("/sdapi/v1/options", dict(o, outdir_samples="/x",
                                         jpeg_quality=55, not_an_option=1))
    assert r.status_code == 200, r.text
    # every worker sees it (the connections go to either worker)
    for _ in range(6):
        o2 = n.get("/sdapi/v1/options").json()
        assert o2["outdir_samples"] == "/x" and o2["jpeg_quality"] == 55
        assert "not_an_option" not in o2
        assert {k: v for k, v in o2.items()
                if k not in ("outdir_samples", "jpeg_quality")} == \
            {k: v for k, v in o.items()
             if k not in ("outdir_samples", "jpeg_quality")}

    # what applies here is checked, naming the option
    for key, bad in (("samples_format", "gif"), ("jpeg_quality", 0),
                     ("webp_lossless", "yes"),
                     ("CLIP_stop_at_last_layers", 13)):
        r = n.post("/sdapi/v1/options", {key: bad})
        assert r.status_code == 422, key
        assert r.json()["detail"][0]["loc"] == ["body", key]
    assert n.get("/sdapi/v1/options").json()["jpeg_quality"] == 55


def test_samples_format(nginx):
    png, infotext = generate(nginx)
    text = [c for t, c in png_chunks(png) if t in (b"tEXt", b"iTXt")]
    assert any(c.startswith(b"parameters\0") for c in text)

    # enable_pnginfo off: no parameters chunk, the rest unchanged
    assert nginx.post("/sdapi/v1/options",
                      {"enable_pnginfo": False}).status_code == 200
    bare, _ = generate(nginx)
    assert not any(c.startswith(b"parameters\0")
                   for t, c in png_chunks(bare) if t in (b"tEXt", b"iTXt"))
    assert [c for c in png_chunks(bare) if c[0] == b"IDAT"] == \
        [c for c in png_chunks(png) if c[0] == b"IDAT"]

    # JPEG: the infotext in the EXIF UserComment (empty without pnginfo)
    nginx.post("/sdapi/v1/options", {"samples_format": "jpg",
                                     "jpeg_quality": 90})
    jpg, _ = generate(nginx)
    assert exif_user_comment(jpeg_exif(jpg)) == ""
    nginx.post("/sdapi/v1/options", {"enable_pnginfo": True})
    jpg, infotext = generate(nginx)
    assert exif_user_comment(jpeg_exif(jpg)) == infotext
    assert "caf\u00e9 \u2615" in infotext
    # a lower quality, a smaller file
    small, _ = generate(nginx, override_settings={"jpeg_quality": 10})
    assert len(small) < len(jpg)

    # WebP, lossy and lossless, with the same EXIF
    nginx.post("/sdapi/v1/options", {"samples_format": "webp"})
    webp, infotext = generate(nginx)
    chunks = webp_chunks(webp)
    assert b"VP8 " in chunks
    assert exif_user_comment(chunks[b"EXIF"]) == infotext
    nginx.post("/sdapi/v1/options", {"webp_lossless": True})
    chunks = webp_chunks(generate(nginx)[0])
    assert b"VP8L" in chunks

    # a request's override_settings chooses for itself alone
    png2, _ = generate(nginx, override_settings={"samples_format": "png"})
    assert png2[:8] == b"\x89PNG\r\n\x1a\n"
    r = nginx.post("/sdapi/v1/txt2img", dict(
        FAST, override_settings={"samples_format": "bmp"}))
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "override_settings"]


def test_samples_format_iterations(nginx):
    # the engine runs the n_iter loop; every iteration's images come back
    # re-encoded as asked, each with its own seed's infotext in its EXIF
    r = nginx.post("/sdapi/v1/txt2img", dict(
        FAST, n_iter=2, batch_size=2, seed=200,
        override_settings={"samples_format": "jpg"}))
    assert r.status_code == 200, r.text
    out = r.json()
    info = json.loads(out["info"])
    assert info["all_seeds"] == [200, 201, 202, 203]
    assert len(out["images"]) == 4 and len(info["infotexts"]) == 4
    seeds = []
    for img, text in zip(out["images"], info["infotexts"]):
        jpg = base64.b64decode(img)
        assert jpg[:3] == b"\xff\xd8\xff"
        assert exif_user_comment(jpeg_exif(jpg)) == text
        seeds.append(int(text.split("Seed: ")[1].split(",")[0]))
    assert seeds == [200, 201, 202, 203]
    assert len(set(out["images"])) == 4

    # iteration 1 is the same as a request that starts at its seed
    r = nginx.post("/sdapi/v1/txt2img", dict(
        FAST, batch_size=2, seed=202,
        override_settings={"samples_format": "jpg"}))
    assert r.json()["images"] == out["images"][2:]


def test_eta_noise_seed_delta(nginx):
    # ENSD seeds the ancestral samplers' per-step noise (sd.h): it changes
    # an "Euler a" image, not an "Euler" one; the option and a request's
    # override_settings both reach the engine
    def image(sampler, **kw):
        r = nginx.post("/sdapi/v1/txt2img", dict(FAST, sampler_name=sampler,
                                                 steps=3, **kw))
        assert r.status_code == 200, r.text
        return r.json()["images"][0]

    base = image("Euler a")
    ensd = {"override_settings": {"eta_noise_seed_delta": 31337}}
    assert image("Euler a", **ensd) != base
    assert image("Euler", **ensd) == image("Euler")
    assert nginx.post("/sdapi/v1/options",
                      {"eta_noise_seed_delta": 31337}).status_code == 200
    assert image("Euler a") == image("Euler a", **ensd)
