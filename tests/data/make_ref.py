# Generates reference data for our own test cases (tokenizer ids, torch.randn
# noise, encoder outputs) with transformers/torch on the GPU machine.
import json, struct, os, sys, hashlib
import torch
out = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
from transformers import AutoTokenizer, CLIPTextModelWithProjection, T5EncoderModel
prompts = [
    "Hello world", "  leading and trailing spaces   ", "multiple    spaces\tand\ttabs\nand\nnewlines\r\nwindows",
    "Café déjà vu, naïve façade, crème brûlée", "e\u0301 combining accent and A\u030a", "日本語のテキスト、東京タワー", "中文提示词：一只猫",
    "한국어 프롬프트", "emoji 😀🎉👍🏽 and 👨‍👩‍👧 family", "digits 1234567890 and 3.14159 and $100,000", "punctuation!!! ??? ... --- *** ((()))",
    "Don't stop, I'm sure it's they've we'll you'd", "DON'T SHOUT IT'S LOUD", "rock'n'roll o'clock", "UPPER lower MiXeD",
    "ＡＢＣ１２３ full-width", "ﬁne ligature ß straße İstanbul ΣΊΣΥΦΟΣ", "Ⅻ roman ½ fraction ² superscript ™ ©", "zero\u200bwidth non\u00a0breaking",
    "<|endoftext|> literal special <|startoftext|>", "</s> and <pad> and <unk> and <extra_id_0> literal", "Привет мир, Ελληνικά, עברית, العربية, हिन्दी",
    "a,b;c:d/e\\f|g", "~`@#%^&_=+[]{}<>", "", "   ", "x" * 300, " ".join(["word%d" % i for i in range(300)]),
    "a photo of a cat, 8k, highly detailed, (masterpiece:1.2), [bad]", "tab\tseparated\tvalues", "ŉ ǅ ﬀ Ǆ ẞ", "ｶﾀｶﾅ half-width katakana",
]
res = {"_about": "ids from Hugging Face tokenizers (transformers %s) loaded from the tiny-sd35-large tokenizer folders, padding=max_length, truncation=True" % __import__("transformers").__version__, "prompts": prompts}
for name, d, L in [("clip_l", "tokenizer", 77), ("clip_g", "tokenizer_2", 77), ("t5", "tokenizer_3", 256)]:
    tok = AutoTokenizer.from_pretrained(os.path.join(here, d))
    print(name, type(tok).__name__)
    res[name] = [tok(p, padding="max_length", max_length=L, truncation=True, add_special_tokens=True).input_ids for p in prompts]
json.dump(res, open(os.path.join(out, "tok_ref.json"), "w"), ensure_ascii=False)

def bits(t):
    b = t.contiguous().view(torch.int32).cpu().numpy().astype("uint32")
    return b
cases = []
for seed in [0, 1, 42, 1234, 987654321, 4294967295, 4294967296 + 7]:
    for n in [1, 3, 8, 15, 16, 17, 31, 33, 100, 16*7*9, 16*8*12, 16*64*64, 16*128*128, 16*96*160, 16*1024*1024//64]:
        c = {"seed": seed, "n": n}
        for dev in ["cpu", "cuda"]:
            g = torch.Generator(device=dev).manual_seed(seed)
            x = torch.randn(n, generator=g, device=dev, dtype=torch.float32)
            b = bits(x)
            c[dev + "_head"] = ["%08x" % v for v in b[:8]]
            c[dev + "_tail"] = ["%08x" % v for v in b[-8:]]
            c[dev + "_bitsum"] = int(sum(int(v) for v in b.tolist()) % (1 << 64))
        cases.append(c)
json.dump({"_about": "torch %s torch.randn(n, generator=Generator(dev).manual_seed(seed)) float32; *_head/_tail: first/last 8 values as float32 bit patterns; *_bitsum: sum of all bit patterns as uint32, mod 2^64; GPU: %s" % (torch.__version__, torch.cuda.get_device_name()), "cases": cases}, open(os.path.join(out, "noise_ref.json"), "w"), indent=0)

# encoder outputs for prompts not in the fixtures
from safetensors.torch import save_file
enc_prompts = ["a red cube on a blue sphere, studio light", "Café 日本 😀 123"]
tl = AutoTokenizer.from_pretrained(os.path.join(here, "tokenizer")); tg = AutoTokenizer.from_pretrained(os.path.join(here, "tokenizer_2")); tt = AutoTokenizer.from_pretrained(os.path.join(here, "tokenizer_3"))
ml = CLIPTextModelWithProjection.from_pretrained(os.path.join(here, "text_encoder"), torch_dtype=torch.float32).eval()
mg = CLIPTextModelWithProjection.from_pretrained(os.path.join(here, "text_encoder_2"), torch_dtype=torch.float32).eval()
mt = T5EncoderModel.from_pretrained(os.path.join(here, "text_encoder_3"), torch_dtype=torch.float32).eval()
T = {}
with torch.no_grad():
    for i, p in enumerate(enc_prompts):
        for nm, tk, m in [("clip_l", tl, ml), ("clip_g", tg, mg)]:
            ids = tk(p, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
            o = m(ids, output_hidden_states=True)
            T["e%d.%s.ids" % (i, nm)] = ids.to(torch.int32); T["e%d.%s.penultimate" % (i, nm)] = o.hidden_states[-2].contiguous(); T["e%d.%s.text_embeds" % (i, nm)] = o.text_embeds.contiguous()
        ids = tt(p, padding="max_length", max_length=256, truncation=True, return_tensors="pt").input_ids
        T["e%d.t5.ids" % i] = ids.to(torch.int32); T["e%d.t5.hidden" % i] = mt(ids)[0].contiguous()
save_file(T, os.path.join(out, "enc_ref.safetensors"), metadata={"prompts": json.dumps(enc_prompts)})
try:
    import diffusers; print("diffusers", diffusers.__version__)
except Exception as e: print("no diffusers", e)
print("done")
