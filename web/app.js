/*
 * web/app.js: the page's behaviour. txt2img is one POST that answers when
 * the images are done; meanwhile /internal/progress, polled with the task
 * id that the request forces (A1111's own UI does the same), feeds the
 * bar. Every call carries the API key field, if any, as a Bearer token.
 * The history lives in this page only (object URLs), never on the server.
 */
"use strict";

const $ = (id) => document.getElementById(id);
let task = null;
let interrupting = false;

/* a fresh task id per Generate; tests may replace it */
window.sdNewTaskId = () =>
    "task(" + Math.random().toString(36).slice(2, 14) + ")";

function headers() {
    const h = { "Content-Type": "application/json" };
    const key = $("key").value.trim();
    if (key) {
        h["Authorization"] = "Bearer " + key;
    }
    return h;
}

async function api(method, path, body) {
    const r = await fetch(path, {
        method, headers: headers(),
        body: body === undefined ? undefined : JSON.stringify(body)
    });
    let data = null;
    try {
        data = await r.json();
    } catch (e) { /* an empty answer */ }
    if (!r.ok) {
        const d = data && data.detail;
        throw new Error(r.status + ": " +
            (typeof d === "string" ? d : JSON.stringify(d || data)));
    }
    return data;
}

function status(text) {
    $("status").textContent = text;
}

async function lists() {
    try {
        const models = await api("GET", "/sdapi/v1/sd-models");
        $("model").replaceChildren(...models.map((m) => new Option(m.title)));
        const samplers = await api("GET", "/sdapi/v1/samplers");
        $("sampler").replaceChildren(...samplers.map((s) => new Option(s.name)));
    } catch (e) {
        status("lists: " + e.message + " (an API key?)");
    }
}

async function poll(id) {
    while (task === id) {
        try {
            const p = await api("POST", "/internal/progress",
                                { id_task: id, live_preview: false });
            if (task !== id) {
                break;
            }
            if (p.active) {
                $("fill").style.width = Math.round((p.progress || 0) * 100) + "%";
                status((interrupting ? "interrupting: " : "") +
                       (p.textinfo || "running"));
            } else if (p.queued) {
                status(p.textinfo || "queued");
            }
        } catch (e) { /* the next poll may do better */ }
        await new Promise((ok) => setTimeout(ok, 250));
    }
}

function show(b64, info) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const url = URL.createObjectURL(new Blob([bytes], { type: "image/png" }));
    $("image").src = url;
    $("infotext").textContent = info;
    const thumb = new Image();
    thumb.src = url;
    thumb.title = info;
    thumb.onclick = () => { $("image").src = url; $("infotext").textContent = info; };
    $("history").prepend(thumb);
}

async function generate(ev) {
    ev.preventDefault();
    const id = window.sdNewTaskId();
    const body = {
        prompt: $("prompt").value,
        negative_prompt: $("negative").value,
        sampler_name: $("sampler").value,
        width: +$("width").value, height: +$("height").value,
        steps: +$("steps").value, cfg_scale: +$("cfg").value,
        seed: +$("seed").value, force_task_id: id
    };
    if ($("model").value) {
        body.override_settings = { sd_model_checkpoint: $("model").value };
    }
    task = id;
    interrupting = false;
    $("generate").disabled = true;
    $("interrupt").disabled = false;
    $("fill").style.width = "0";
    document.body.dataset.task = id;
    status("queued");
    poll(id);
    try {
        const out = await api("POST", "/sdapi/v1/txt2img", body);
        const info = JSON.parse(out.info);
        out.images.forEach((img, i) => show(img, info.infotexts[i] || ""));
        $("fill").style.width = "100%";
        status("done: " + id);
    } catch (e) {
        status("error: " + e.message);
    } finally {
        task = null;
        $("generate").disabled = false;
        $("interrupt").disabled = true;
    }
}

async function interrupt() {
    try {
        await api("POST", "/sdapi/v1/interrupt", {});
        interrupting = true;
        status("interrupting");
    } catch (e) {
        status("interrupt: " + e.message);
    }
}

$("key").value = sessionStorage.getItem("sd-key") || "";
$("key").addEventListener("change", () => {
    sessionStorage.setItem("sd-key", $("key").value);
    lists();
});
$("form").addEventListener("submit", generate);
$("interrupt").addEventListener("click", interrupt);
lists();
