#!/bin/bash
# tests/gpu/run.sh: on the GPU machine, with .dev/gpu from pack.sh carried.
# Unpacks, then runs the stages named (default: check):
#   check   the backend's op tests (GPU against the CPU reference) and the
#           golden stage tests on the GPU in F32 and BF16
#   fp8check  the golden stage tests with the FP8 policy
#   large, medium, nginx_large, lanes: the BF16 figures beside diffusers
#   fp8     FP8 bench of Large (and Large at 4 steps, cfg 1: Turbo's
#           shape) and Medium, Large through nginx in FP8
#   sweep   sd-cli fp8-sweep on the tiny and full-size models
#   demo    sd-cli bench on the demo model
#   scale   1 GPU against 2 GPUs under sustained load (scale_bench.py)
#   capacity  images per minute per GPU for each model and precision
#   graphs  steps as CUDA graphs against launched ops (FP8, BF16, nginx)
#   offload  the text encoders in host memory (goldens, memory, encode)
#   check2  the pipeline goldens, the prompt encoder, E4M3 norms on/off
#   final   our FP8 bench and server beside diffusers' e2e in one call
#   finalfirst  the same figures first, then test_backend and the
#           pipeline goldens (for a call the device's time may cut)
#   sameseed  one seed's 4-step Large FP8 image in two processes: the
#           same bytes (the kernels' picks do not depend on timing)
#   fattn   the own attention kernel alone (fattn_check: error, time),
#           BF16 and E4M3
#   vaeprof the VAE decoder's ops timed one by one (Medium, BF16, 1 step)
#   fattnncu  the E4M3 attention kernel under ncu, its SASS opcode counts
#   fattnvar  fattn_check against fattn_check_var (pack.sh PACK_VARIANT's
#           build, or one put there by hand) in turn, twice: the
#           kernel's time at the MMDiT's shapes and its output's hash
#   peelab  the attention's last K/V tile peeled from its main loop (no
#           masking branch in the other tiles) against fattn_check_xmaskall
#           (pack.sh PACK_FATTN_VARIANTS="maskall:-DFA_MASK_ALL=1") in turn,
#           its stall samples, test_backend, the pipeline tests, then
#           Large's and Medium's 8-step benches against sd-cli-var
#           (PACK_BASE=HEAD) in turn, one seed's image each way
#   fattnstall  the E4M3 attention kernel's warp stall samples by SASS
#           instruction (ncu's source page, ncu_sass.py), 38 heads
#   fattnpipes  the E4M3 attention kernel's pipe use under ncu, the
#           default build and each pack.sh PACK_FATTN_VARIANTS build
#   attn    fattn, test_backend, the GPU goldens in BF16, Large and Medium
#           benches in BF16 and FP8 (the attention kernel's effect)
#   stepcache  Large FP8 with step caching at a few thresholds: speed,
#           steps reused, the image against the uncached one
#   bf16    test_backend, the BF16 goldens, Large in BF16 beside diffusers'
#           step (one step's error, step, VAE) and through nginx
#   attn8   the FP8 attention (policy kind "attn"): fattn_check,
#           test_backend, the FP8 goldens, Large FP8 with and without it,
#           fp8-sweep --kinds attn on the tiny models and Large
#   verify  test_backend, the VAE and pipeline goldens in BF16 and FP8,
#           the offload stage's benches, Large FP8 through nginx
#   vaemem  the VAE and pipeline goldens in BF16 and FP8, Large FP8's
#           memory (the decoder sets the workspace's high-water mark)
#   nolanes Large FP8 with the text stream's work on the image stream's
#           queue, profiled: each op's own time
#   fp8err  one step beside diffusers (FP8, BF16) and fp8-sweep --kinds
#           attn on Large and Medium (the default policy's error)
#   s29a    the GroupNorm's merges as sums against PACK_BASE (tests, image,
#           VAE time, ncu), then norm_mod_fp8 and qkv_split_fp8 under ncu
#   nmprof  norm_mod_fp8 (the image rows' launch) under ncu's full set
#   s29b    unpack and norm_mod_fp8 diets against PACK_BASE: test_backend,
#           image, ncu, Large/Medium benches in turn
#   s29c    the QKV split's one-source tiles against PACK_BASE
#   final29 the table's figures (table_figures) alone
#   ktrace  Large's and Medium's FP8 benches with every kernel's device
#           start and end (CUPTI, ktrace.c): a step's idle time, its
#           streams' gaps and overlap, each kernel's time under load
#   mskt    the recordings' memset nodes as kernel nodes (default)
#           against memset nodes: graph_check, image, pipeline tests,
#           Medium traced, Large/Medium benches in turn
#   gpre    the tree against PACK_BASE, the same bits expected: tests,
#           images, Large/Medium benches in turn
#   s34ab   the tree against PACK_BASE: images, Large/Medium 28-step benches
#           in turn
#   fsweep  the E4M3 attention's time at 33 heads, B 2, 1920-7680 tokens
#           (whole waves of blocks): a block's fixed cost against its cost
#           a key tile
#   pers    the attention persistent (a block an SM) against a block a
#           unit (SD_CUDA_FATTN_UNITS=1): fattn_check, its sweep, images,
#           Large/Medium benches in turn
#   s35t    test_backend, its E4M3 hidden-layer lines
#   s37t    test_backend's gate and 3-block lines, the pipeline tests,
#           sameseed, then s37b
#   s37b    Medium's 28-step benches, then Large's, with the clock
#   s37i    FA_IDLE as a call of its own against -DFA_IDLE=0: SASS
#           counts, then xu with FA_VAR=idle0
#   s37g    gemm8's warp-uniform warpgroup index against -DG8_WGU=0
#   g8gate  the gated products through gemm8.cu (SD_CUDA_G8_GATE=1)
#           against cuBLASLt's: test_backend, images, pipeline tests,
#           Large/Medium benches in turn (Large with SD_CUDA_G8_QKV=1 too)
#   ggkt    the same traced each way (ktrace), then Large's benches in
#           turn
#   s39     (session 39) the patch embedding as one product against
#           cuDNN's (SD_CUDA_PATCH_CUDNN=1), then SD_CUDA_G8_QKV=1 again
#   s39n    the norm pass into E4M3 unpacking its row twice against
#           PACK_BASE: tests, images (the same bits), ncu, benches
#   g8qkv   (session 38) the QKV product through gemm8.cu
#           (SD_CUDA_G8_QKV=1) against cuBLASLt's; FA_CWU where built
#   gfork   lane 0's gated products' odd batch entries on a side stream
#           beside the even ones (session 36's SD_CUDA_GATE_FORK=1, now
#           the default: run it with GF_ENV=SD_CUDA_GATE_SERIAL=1) against
#           one after the other: images, FP8 pipeline tests, Large/Medium
#           28-step benches in turn, a Large step traced each way
#   xu      fattn_check against fattn_check_x$FA_VAR (default xu0; pack.sh
#           PACK_FATTN_VARIANTS="xu0:...") in turn; test_backend's
#           attention lines; the pipeline tests; the tree against
#           PACK_BASE (images, Large/Medium 28-step benches in turn).
#           Session 36 ran it with the tree's kernel overlapping units
#           (FA_XU, not kept: fattn.cu's notes) and xu0 -DFA_XU=0, then
#           with FA_VAR=idle0 ("idle0:-DFA_IDLE=0")
#   s35     the E4M3 GELU product with its bias's largest magnitude found
#           once a weight against by each launch (gemm8_check at the GELU
#           shapes, test_backend's hidden-layer checks), then the tree
#           against PACK_BASE as s34ab
#   nm2     MMDiT-X's two modulations of one norm in one pass against two
#           launches (SD_CUDA_NM_SPLIT=1), and against session 33's way
#   a2lane  Medium's attn2 beside the joint attention against after it
#           (SD_MMDIT_ATTN2_SERIAL=1): test_mmdit, pipeline tests, images,
#           benches in turn
#   ltsustain  cuBLASLt's algorithms for the image stream's products,
#           every configuration it accepts, the fastest in a burst then
#           under sustained load (gemm_sustain.cu: time, clock, power,
#           energy a call)
#   batchceil  Large and Medium FP8 at 1, 2 and 4 images a forward pass
#           (the ceiling of batching requests together: images per second;
#           CEIL_SIZE 1024, CEIL_MODELS "large medium")
#   batch   batching across requests through nginx: sd_batch 1 against 4,
#           1/4/8 clients, 1024^2 and 512^2 (scale_bench.py, target 1.15x)
#   last    a session's last call: gemm8_check, finalfirst, a bench of
#           pack.sh's PACK_BASE revision, sameseed, group
#   g8ncu   gemm8's kernel at the QKV shape under ncu: stalls, pipes and
#           each SASS instruction's stall samples
#   ffh8    the feed-forward's hidden layer as E4M3 rows (gemm8.cu)
#           against cuBLASLt's BF16 product and a row pass, in turn
#   gemm8   the own FP8 product (kernels/gemm8.cu) against cuBLASLt at
#           the MMDiT's shapes (gemm8_check: error, time)
#   g8sustain  gemm8_check at G8_SHAPES (default qkv ff-up ff-down out)
#           timed under sustained load (G8_SUSTAIN_MS, default 2000, of
#           both kernels in turn before each shape's rounds: the clock the
#           power limit holds, as in a step), SM clock and power logged
#   splitncu  the QKV split and attention kernels of a Large FP8 step
#           under ncu, the tree's and PACK_BASE's builds
#   gemmprobe  the FP8 products at the MMDiT's shapes, each way they could
#           be issued (tests/gpu/gemm_probe.cu), and Large and Medium FP8
#           profiled with every op on one stream
#   kernels Large and Medium FP8 under ncu (graphs off, 2 steps): each
#           kernel's own time without the profile's events (ncu_table.py;
#           NCU_MODELS, NCU_KERNELS: a regex of kernel names, NCU_ARGS:
#           more bench arguments, NCU_TOP: rows of the table)
#   benchfp8  sd-cli bench of Large and Medium in FP8 (as served)
#   turboprof  Large FP8 at 4 steps, cfg 1, with every op timed
#   encvae  what a new prompt's encode and the VAE decode cost: Large FP8
#           at 2 steps with timed picks (SD_CUDA_TIMED_PICK) and the
#           libraries' heuristic ones in turn (ab_short), then profiled
#   sattn   the text encoders' attention by sattn.cu against the GEMM
#           path (SD_CUDA_NO_SATTN=1): test_backend, the encoder goldens,
#           Large FP8 benches at 2 steps in turn (text encoding's rows)
#   convfused  the convolutions' bias and the resnets' sums in cuDNN's
#           fused call (conv.cu's rule) against none of them
#           (SD_CUDA_NO_CONV_FUSED=1): the VAE goldens each way, Large FP8
#           benches at 2 steps in turn (VAE decode), the default profiled
#   convadd the convolutions' bias and the VAE resnets' sums in cuDNN's
#           fused call: the op tests, the VAE, MMDiT and pipeline goldens,
#           then varbench (tree against PACK_BASE)
#   pipetests  test_pipeline in BF16 and FP8 on the GPU
#   setuptrace  a Large FP8 image's setup by part (sd-cli-var built with
#           PACK_VARIANT_CFLAGS=-DSD_PIPE_TRACE PACK_VARIANT_SRC=engine/pipeline.c:
#           pipeline.c's trace lines, compiled only with that flag)
#   subpixel  the VAE's upsamplers as sub-pixel 2x2 convs: test_backend,
#           test_vae on the GPU (FP8's and BF16's), test_pipeline in FP8,
#           Large FP8 at 2 steps, the tree and PACK_BASE in turn (VAE row)
#   attscratch  Medium FP8, 1 step, profiled, at several sizes of the
#           attention products path's chunk (SD_CUDA_ATT_SCRATCH_MB: the
#           VAE's head of 512): its time, the VAE's, the workspace
#   devnoise  torch's CUDA noise drawn on the device (sm_90) against the
#           host's emulation: test_backend (bit for bit), the pipeline
#           tests, Large FP8 2-step benches each way, nginx's phases
#   png     PNG encoding's time (tests/gpu/png_bench.c) on 1, 4, 8, 16 and
#           every CPU (taskset): noise, a gradient, a Large 1024^2 result
#   medclocks  Medium's and Large's FP8 bench with nvidia-smi sampling the
#           SM clock and power (whether the step runs at the power limit)
#   medab   Medium FP8 8-step benches with the engine's knobs in turn:
#           default, SD_CUDA_NO_LANES, SD_MMDIT_BLOCK_JOIN,
#           SD_CUDA_TIMED_PICK; Large's default and timed picks
#   largeprof  Large FP8, 2 steps, every op on one queue and timed
#           (bench --profile 1): where a step's time goes
#   nmab    Medium's norm_modulate into E4M3 on 6 vectors a lane against
#           8 (SD_CUDA_NM_WIDE=1): the same image's bytes, 8-step benches
#   lanesab Medium's and Large's FP8 step with the text lane's products
#           held to 16, 33 or 66 SMs (SD_CUDA_LANE1_SMS), in turn
#   final27 session 27's last call: the pipeline tests, Large's step against
#           PACK_BASE's in turn, the table's figures
#   s27c    the attention's ncu samples, then Large through nginx with
#           http_bench's http.client rows (to the answer's last byte)
#   devicefault  a GPU fault (a kernel that traps: the context's sticky
#           error) injected through nginx (sd_test_gate's device-fault)
#           on the tiny model and on Large FP8: the job answers 503, the
#           worker restarts, the next request answers (device_fault.py);
#           test_group's fault check on the GPU
#   gnab    GroupNorm's apply with each thread's channels fixed against
#           the one before (SD_CUDA_GN_OLD=1): test_backend, the VAE
#           goldens, one seed's image each way (the same bytes?), Large
#           FP8 2-step benches in turn (VAE decode), then gnncu
#   gnncu   the VAE's GroupNorm kernels (stats, merge, apply) under ncu at
#           Large's 1024^2 decode: time and DRAM throughput of each
#   sanitize  compute-sanitizer's memcheck, synccheck, racecheck and
#           initcheck over the GPU's stage tests on the tiny models (every
#           kernel of a txt2img in FP8 and BF16: our attention, products,
#           splits, norms, the VAE's, the libraries'), then memcheck over
#           test_backend (SAN_TOOLS, SAN_TESTS choose; SAN_BACKEND=0: not;
#           SAN_OPTS_<tool>: more options of that tool; SAN_BACKEND_TOOL)
#   final26 session 26's last call: the pipeline tests and the table's
#           figures (table_figures), nothing else
#   final25 session 25's last call: test_backend, pipeline and group
#           tests, nmab, then final24's figures without PACK_BASE's
#   final24 session 24's last call: the pipeline and group tests, the
#           figures of final23 without gemm8_check, test_backend and
#           sameseed (a session with little device time left)
#   nginxab the tree's module against PACK_BASE's through nginx, Large
#           FP8, twice in turn
#   final23 session 23's last call: last with nginx's error log at info
#           (each request's phases), then nginxab
#   nginxtime  Large FP8 through nginx, its error log at info: each
#           request's time by phase (text, setup, steps, VAE, PNG, answer)
#   medprof Medium FP8 at 2 steps with every op on one lane, profiled
#   encab   the text encoders' tests on the GPU, then Large FP8 at 2
#           steps, the tree and PACK_BASE in turn (text encoding's rows)
#   devsampler  Large (twice) and Medium FP8 with Euler's latents on the
#           device (the default) and on the host (SD_PIPE_HOST_SAMPLER=1)
#   final22 session 22's last call: the encoders' and pipeline tests on
#           the GPU, last, Euler's latents on the device against the host
#           (Large twice and Medium), tcachemem
#   tcachemem  the GPU's memory in use before and after 40 new prompts
#           fill the text cache (Large FP8 through nginx)
#   tcache  Large FP8 through nginx with the text cache off
#           (sd_text_cache 0) and on: a repeated prompt's and new prompts'
#           times (a new prompt's cached conditioning moves the workspace's
#           layout, so the step's recording would not apply)
#   latejoin  the lanes joined at each block's end against not (Large,
#           Medium, 4 steps), after test_pipeline and test_group in FP8
#   det     kernels chosen by the libraries' heuristics (the default)
#           against by timing (SD_CUDA_TIMED_PICK=1): txt2img twice in
#           separate processes each way (the same bytes?), Large and Medium
#           benches
#   o8      the FP8 attention writing E4M3 rows for the out projections
#           against BF16 and a quantizing pass (SD_MMDIT_O_BF16=1):
#           fattn_check, test_backend, the FP8 goldens, Large and Medium
#           benches in turn, one seed's image and fp8-sweep --kinds attn
#           each way (O8_SWEEP=0: no sweep)
#   ws512   512x512, batch 2, 28 steps in the workspace measured for it
#           (the transformer cache's steps), and the FP8 goldens
#   sweepattn  fp8-sweep --kinds attn on the random Large (the default
#           policy and the FP8 attention alone against BF16)
#   var     the variant build (pack.sh's PACK_VARIANT: sd-cli-var,
#           fattn_check_var) against the default, in turn: kernel, image,
#           Large and Medium benches
#   varsteps  the same, benches only: 28 steps, twice each, in turn
#   varbench  the same without the attention kernel's checks, with
#           both builds' test_backend (test_backend_var): a variant of
#           other kernels, or (pack.sh's PACK_BASE) the tree against an
#           earlier revision
#   group   test_group on the GPU (shared passes against requests alone)
#   comfy   Large's transformer as ComfyUI fp8_scaled files written by
#           tests/gpu/comfy_fp8.py (PyTorch), both forms: fp8-check, and
#           the image in FP8 from the file against quantize-at-load
# Logs go to $OUT (one file per stage); a summary prints last.
set -u
cd "$(dirname "$0")/../.."
G=$PWD/.dev/gpu
OUT=${OUT:-/tmp/out}
L=/tmp/sd/logs          # logs here, packed into $OUT/logs.tgz at the end
rm -rf $L
mkdir -p "$OUT" /tmp/sd $L
export LD_LIBRARY_PATH=$G/lib:${CUDNN_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cudnn/lib}:${LD_LIBRARY_PATH:-}
[ -f $G/lib/libopenblas.so.0.xz ] && xz -d -f $G/lib/libopenblas.so.0.xz
[ -f $G/bin.tar.xz ] && tar xJf $G/bin.tar.xz -C $G && rm $G/bin.tar.xz
[ -f $G/ref.tar.xz ] && tar xJf $G/ref.tar.xz -C $G && rm $G/ref.tar.xz
[ -d /tmp/sd/fixtures ] || tar xJf $G/fixtures.tar.xz -C /tmp/sd
export SD_FIXTURES=/tmp/sd/fixtures
export OPENBLAS_NUM_THREADS=16
summary=$L/summary.txt
: > "$summary"

run() {     # name log command...
    local name=$1 log=$L/$2; shift 2
    local t0=$(date +%s.%N)
    timeout ${STAGE_TIMEOUT:-300} "$@" > "$log" 2>&1
    local rc=$? t1=$(date +%s.%N)
    printf '%-40s rc=%d %6.1fs  %s\n' "$name" $rc \
        "$(python3 -c "print($t1 - $t0)")" "$(grep -E '^[0-9]+ passed' "$log" | tail -1)" \
        | tee -a "$summary"
    tar czf "$OUT/logs.tgz" -C $L .     # what is done so far comes back
}

stage_check() {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv \
        > "$L/gpu.txt" 2>&1
    run "test_backend" backend.log $G/bin/test_backend
    for dev in cuda cuda-bf16; do
        for t in encoders mmdit vae pipeline; do
            run "test_$t ($dev)" "$t-$dev.log" env SD_TEST_DEVICE=$dev \
                $G/bin/test_$t
        done
    done
}

stage_fattn() {
    run "fattn_check" fattn.log $G/bin/fattn_check
    run "fattn_check, 3 E4M3 K/V stages" fattn-s3.log $G/bin/fattn_check_s3
    grep -E '^\|' $L/fattn.log $L/fattn-s3.log
}

# stage tests on the GPU in BF16: bf16_tests NAME...
bf16_tests() {
    for t in "$@"; do
        run "test_$t (cuda-bf16)" "$t-cuda-bf16.log" env \
            SD_TEST_DEVICE=cuda-bf16 $G/bin/test_$t
    done
}

# CLIP in F32 on the BF16 backend: the BF16 goldens and prompt encoder,
# FP8's unchanged, Large BF16's text encoding time and memory
stage_clipf32() {
    bf16_tests encoders pipeline promptenc
    run "test_pipeline (cuda-fp8)" pipeline-cuda-fp8.log env \
        SD_TEST_DEVICE=cuda-fp8 $G/bin/test_pipeline
    randmodel large
    bench large bench-large-bf16.log "bench large bf16" --precision bf16
    grep -E '^\|' $L/bench-large-bf16.log | head -20
    grep -E 'final_latents|t5.hidden|clip_g.penultimate' \
        $L/pipeline-cuda-bf16.log $L/encoders-cuda-bf16.log | head -30
}

# the VAE decoder's ops: Medium in BF16, one step, every op timed
stage_vaeprof() {
    randmodel medium
    bench medium bench-medium-vae.log "bench medium bf16, 1 step, profile" \
        --precision bf16 --steps 1 --profile 1
    grep -E '^\|' $L/bench-medium-vae.log
}

# the VAE decoder's kernels one by one under ncu (durations, memory and
# compute throughput): Medium in BF16, one step, one run
stage_vaencu() {
    randmodel medium
    run "ncu: VAE kernels" ncu-vae.log ncu --kernel-name \
        'regex:gn_|upsample|subpixel|softmax|rgb8|fprop|conv|implicit|nhwc|vae' \
        --launch-skip 0 --launch-count 400 --section SpeedOfLight \
        --csv --page raw --metrics gpu__time_duration.sum \
        $G/bin/sd-cli bench --model /dev/shm/sd-medium --precision bf16 \
        --steps 1 --runs 1
    python3 tests/gpu/ncu_raw.py $L/ncu-vae.log --title 'VAE kernel'
}

# the E4M3 attention kernel under ncu (B 2, 4429 tokens, 38 heads): where
# its time goes (pipes, stalls, instruction mix), and its SASS opcodes
stage_fattnncu() {
    run "ncu: fattn E4M3" ncu-fattn.log ncu --kernel-name regex:fattn_kernel \
        --launch-skip 1 --launch-count 1 --set full \
        $G/bin/fattn_check 38 e4m3
    cuobjdump -sass -fun fattn_kernel $G/bin/fattn_check > $L/fattn.sass \
        2>&1 || cuobjdump -sass $G/bin/fattn_check > $L/fattn.sass 2>&1
    grep -E "Duration|Throughput|Pipe|Issue|Stall|Executed Ipc|Warp Cycles|\
Eligible|Active Warps|Registers|Occupancy|Branch" $L/ncu-fattn.log | head -80
    python3 - $L/fattn.sass <<'PYEOF'
import re, sys, collections
fn, cnt = None, collections.OrderedDict()
for line in open(sys.argv[1], errors='replace'):
    m = re.search(r'Function : (\S+)', line)
    if m:
        fn = m.group(1); cnt[fn] = collections.Counter(); continue
    m = re.search(r'/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)', line)
    if fn and m:
        cnt[fn][m.group(1).split('.')[0]] += 1
for fn, c in cnt.items():
    if 'fattn_kernel' in fn:
        print(fn[:80], sum(c.values()), 'instructions')
        print('  ', ', '.join(f'{k} {v}' for k, v in c.most_common(30)))
PYEOF
}

# fattn_check and the build named OTHER in turn, twice: the MMDiT's rows
# BASE and OTHER (binaries in $G/bin) in turn, twice, with ARGS: logs
# BASE-1.log, OTHER-1.log, BASE-2.log, OTHER-2.log
bin_turns() {      # BASE OTHER [ARGS...]
    local r b base=$1 other=$2
    shift 2
    for r in 1 2; do
        for b in $base $other; do
            run "$b ($r)" $b-$r.log $G/bin/$b "$@"
        done
    done
}
fattn_turns() {    # OTHER
    bin_turns fattn_check $1
    grep -E '\| (4429|4096) ' $L/fattn_check*-[12].log | tee -a $summary
}
stage_fattnvar() {
    fattn_turns fattn_check_var
}
stage_peelab() {
    fattn_turns fattn_check_xmaskall
    stage_fattnstall
    run "test_backend" backend.log $G/bin/test_backend
    grep -E "attention" $L/backend.log | head -20
    pipeline_tests
    randmodel large
    SDCLI=$G/bin/sd-cli txt2img_dump peel
    SDCLI=$G/bin/sd-cli-var txt2img_dump base
    same_image base peel
    var_steps large peel
    randmodel medium
    var_steps medium peelm
    bench_lines '' $L/bench-peel*.log | tee -a $summary
}
# MODEL's 8-step FP8 bench by sd-cli and sd-cli-var in turn, twice
var_steps() {      # MODEL PREFIX [STEPS, default 8]
    local r b
    for r in 1 2; do
        for b in sd-cli sd-cli-var; do
            SDCLI=$G/bin/$b bench $1 bench-$2-$b-$r.log \
                "$1 fp8 ${3:-8} steps, $b ($r)" --precision fp8 \
                --steps ${3:-8}
        done
    done
}
# test_backend, and its lines matching REGEX (and any failure) in the
# summary
backend_grep() {   # REGEX
    run "test_backend" backend.log $G/bin/test_backend
    grep -E "$1|FAIL" $L/backend.log | head -20 | tee -a $summary
}
# one seed's Large and Medium images as they are and with VAR=VALUE in
# the environment, compared (the same bytes expected)
env_images() {      # PREFIX VAR=VALUE
    local m
    for m in large medium; do
        randmodel $m
        txt2img_dump $1-$m $m
        eval "$2 txt2img_dump $1-$m-env $m"
        same_image $1-$m $1-$m-env
    done
}
# one seed's image by sd-cli and by sd-cli-var (PACK_BASE's), compared
image_vs_var() {   # NAME [MODEL, default large]
    randmodel ${2:-large}
    txt2img_dump $1 ${2:-large}
    SDCLI=$G/bin/sd-cli-var txt2img_dump $1-base ${2:-large}
    same_image $1 $1-base
}
# the E4M3 attention kernel's warp stall samples per SASS instruction
# (ncu_sass.py: each reason's share, the instructions with the most
# samples, the samples between the warpgroup waits and barriers), 38 heads
stage_fattnstall() {
    ncu_full fa fattn_kernel 1 40 'WARPGROUP\.DEPBAR|SYNCS|BAR\.|EXIT' \
        $G/bin/fattn_check 38 e4m3
    head -150 $L/fa-sass.txt
    grep -E "Duration|Throughput|Pipe|Issue|Stall|Executed Ipc|Warp Cycles|\
Eligible|Active Warps|Registers|SM Frequency" $L/ncu-fa-details.log | head -60
}
# KERNEL-REGEX's launch SKIP under ncu's full set, run by COMMAND: the
# report /tmp/sd/NAME.ncu-rep, its details page (ncu-NAME-details.log),
# its SASS with stall samples (NAME-sass.csv) and ncu_sass.py's summary of
# them (NAME-sass.txt: its TOP instructions, samples between MARK's; ''
# MARK: ncu_sass.py's default)
ncu_full() {    # NAME KERNEL-REGEX SKIP TOP MARK COMMAND...
    local n=$1 re=$2 skip=$3 top=$4 mark=$5
    shift 5
    run "ncu: $n, full set" ncu-$n.log ncu --kernel-name "regex:$re" \
        --launch-skip $skip --launch-count 1 --set full --import-source no \
        -o /tmp/sd/$n -f "$@"
    ncu -i /tmp/sd/$n.ncu-rep --page details > $L/ncu-$n-details.log 2>&1
    ncu -i /tmp/sd/$n.ncu-rep --page source --csv --print-source sass \
        > $L/$n-sass.csv 2>&1
    python3 tests/gpu/ncu_sass.py $L/$n-sass.csv --top $top \
        ${mark:+--mark "$mark"} > $L/$n-sass.txt 2>&1
}

# the E4M3 attention kernel's pipes under ncu (each pipe's share of its
# peak, issue slots, eligible warps), the default build and each
# fattn_check_x* variant, 38 heads
stage_fattnpipes() {
    local b
    for b in $G/bin/fattn_check $G/bin/fattn_check_x*; do
        [ -x $b ] || continue
        run "ncu pipes: $(basename $b)" ncu-pipes-$(basename $b).log ncu \
            --kernel-name regex:fattn_kernel --launch-skip 1 --launch-count 1 \
            --metrics "regex:sm__inst_executed_pipe_.*\.avg\.pct_of_peak_sustained_active,regex:sm__pipe_.*_cycles_active\.avg\.pct_of_peak_sustained_active,sm__issue_active.avg.pct_of_peak_sustained_active,smsp__warps_eligible.avg.per_cycle_active,gpu__time_duration.sum" \
            $b 38 e4m3
        grep -E 'pipe|issue|eligible|duration' $L/ncu-pipes-$(basename $b).log \
            | awk '$NF != "0" && $NF != "0.00"' | tee -a $summary
    done
}

stage_attn() {
    stage_fattn
    stage_backend
    bf16_tests mmdit pipeline
    randmodel large
    bench large bench-large-bf16.log "bench large bf16"
    bench large bench-large-fp8.log "bench large fp8" --precision fp8
    randmodel medium
    bench medium bench-medium-bf16.log "bench medium bf16"
    bench medium bench-medium-fp8.log "bench medium fp8" --precision fp8
}

stage_stepcache() {
    randmodel large
    for t in ${STEP_CACHES:-0.1 0.3 0.6}; do
        bench large bench-large-fp8-sc$t.log "bench large fp8, step cache $t" \
            --precision fp8 --step-cache $t
    done
}

stage_bf16() {
    stage_backend
    bf16_tests vae pipeline
    full large
    stage_nginx_large
}

stage_backend() {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv \
        > "$L/gpu.txt" 2>&1
    run "test_backend" backend.log $G/bin/test_backend
}

stage_tinyref() {
    run "diffusers bf16 on the tiny fixtures" tinyref.log \
        env PYTHONPATH=$G/ref/src python3 tests/gpu/tiny_ref.py \
        "$SD_FIXTURES"
}

# nginx from Debian's packages in a prefix, the module built with the
# engine (SD_MODULE: another build of it), serving MODEL on the GPU; the
# HTTP client times txt2img
serve() {       # model-dir name port (SERVE_EXTRA: http-level directives)
    local p=/tmp/sd/serve-$2
    mkdir -p /tmp/ngx $p/logs $p/tmp /var/lib/nginx
    for deb in $G/debs/*.deb; do dpkg -x "$deb" /tmp/ngx; done
    sed -e "s#^\( *sd_model  *\)[^ ]*  *[^ ;]*#\1$2 $1#" \
        -e "s#^load_module .*;#load_module ${SD_MODULE:-$G/bin/ngx_http_sd_module.so};#" \
        -e "s#sd_device       cpu;#sd_device cuda; sd_precision ${PREC:-bf16}; ${SERVE_EXTRA:-}#" \
        -e "s#127\.0\.0\.1:7860#127.0.0.1:$3#" \
        -e "s#^error_log .*;#error_log logs/error.log ${ERRLOG_LEVEL:-notice};\nenv LD_LIBRARY_PATH;#" \
        conf/nginx.conf > $p/nginx.conf
    /tmp/ngx/usr/sbin/nginx -p $p/ -c nginx.conf -e $p/logs/error.log \
        -g "daemon on;"
}

stage_nginx() {
    [ -d /tmp/sd/demo ] || $G/bin/sd-cli make-demo /tmp/sd/demo > /dev/null
    serve /tmp/sd/demo demo 7861
    run "nginx demo txt2img 1024" nginx-demo.log python3 \
        tests/gpu/http_bench.py http://127.0.0.1:7861 --steps 28
    cp /tmp/sd/serve-demo/logs/error.log "$L/nginx-demo-error.log"
    /tmp/ngx/usr/sbin/nginx -p /tmp/sd/serve-demo/ -c nginx.conf -s quit
}

# a full-size random model, the reference's step beside ours, our
# whole pipeline, and the same through nginx
full() {        # config
    local d=/dev/shm/sd-$1
    [ -f $d/model_index.json ] || run "make-random $1" random-$1.log \
        $G/bin/sd-cli make-random --config $1 $d
    run "diffusers step $1 (bf16, f32)" stepref-$1.log \
        env PYTHONPATH=$G/ref/src python3 $G/bench/step_ref.py --model $d \
        --out /tmp/sd/step-$1.safetensors
    run "ours step $1 (bf16)" step-$1.log $G/bin/sd-cli step --model $d \
        --ref /tmp/sd/step-$1.safetensors --ref-log $L/stepref-$1.log
    run "bench $1 bf16" bench-$1.log $G/bin/sd-cli bench --model $d \
        --runs 3 --profile 1 ${BENCH_ARGS:-}
}

stage_large() {
    full large
}

# the text stream's lane: off, and its products held to fewer SMs
stage_lanes() {
    local d=/dev/shm/sd-large
    run "bench large, one queue" bench-large-nolanes.log \
        env SD_CUDA_NO_LANES=1 $G/bin/sd-cli bench --model $d --runs 3
    for n in 16 32 66; do
        run "bench large, lane 1 on $n SMs" bench-large-sm$n.log \
            env SD_CUDA_LANE1_SMS=$n $G/bin/sd-cli bench --model $d --runs 3
    done
}

stage_medium() {
    full medium
}

stage_nginx_large() {
    serve /dev/shm/sd-large large 7862
    run "nginx large txt2img 1024" nginx-large.log python3 \
        tests/gpu/http_bench.py http://127.0.0.1:7862 --steps 28 --expect-oom
    cp /tmp/sd/serve-large/logs/error.log "$L/nginx-large-error.log"
    /tmp/ngx/usr/sbin/nginx -p /tmp/sd/serve-large/ -c nginx.conf -s quit
}

stage_fp8check() {
    for t in encoders mmdit vae pipeline; do
        run "test_$t (cuda-fp8)" "$t-cuda-fp8.log" env SD_TEST_DEVICE=cuda-fp8 \
            $G/bin/test_$t
    done
}

randmodel() {   # config
    local d=/dev/shm/sd-$1
    [ -f $d/model_index.json ] || run "make-random $1" random-$1.log \
        $G/bin/sd-cli make-random --config $1 $d
}

stage_fp8nginx() {
    randmodel large
    PREC=fp8 serve /dev/shm/sd-large large 7863
    run "nginx large fp8 txt2img 1024" nginx-large-fp8.log python3 \
        tests/gpu/http_bench.py http://127.0.0.1:7863 --steps 28
    cp /tmp/sd/serve-large/logs/error.log "$L/nginx-large-fp8-error.log"
    cp /tmp/sd/serve-large/logs/access.log "$L/nginx-large-fp8-access.log"
    /tmp/ngx/usr/sbin/nginx -p /tmp/sd/serve-large/ -c nginx.conf -s quit
    sleep 3
    run "txt2img large fp8 (sd-cli)" txt2img-large-fp8.log $G/bin/sd-cli \
        txt2img --model /dev/shm/sd-large --device cuda --precision fp8 \
        --prompt "a futuristic cityscape at sunset" --width 1024 \
        --height 1024 --steps 28 --cfg 4.5 --output /tmp/sd/fp8.png
}

stage_fp8() {
    randmodel large
    run "bench large fp8" bench-large-fp8.log $G/bin/sd-cli bench \
        --model /dev/shm/sd-large --precision fp8 --runs 3 --profile 1
    run "bench large fp8, 4 steps cfg 1 (turbo)" bench-turbo-fp8.log \
        $G/bin/sd-cli bench --model /dev/shm/sd-large --precision fp8 \
        --runs 3 --steps 4 --cfg 1
    PREC=fp8 serve /dev/shm/sd-large large 7863
    run "nginx large fp8 txt2img 1024" nginx-large-fp8.log python3 \
        tests/gpu/http_bench.py http://127.0.0.1:7863 --steps 28
    cp /tmp/sd/serve-large/logs/error.log "$L/nginx-large-fp8-error.log"
    /tmp/ngx/usr/sbin/nginx -p /tmp/sd/serve-large/ -c nginx.conf -s quit
    randmodel medium
    run "bench medium fp8" bench-medium-fp8.log $G/bin/sd-cli bench \
        --model /dev/shm/sd-medium --precision fp8 --runs 3
}

# sd-cli bench of the random model MODEL, 3 runs; environment set before
# the call reaches it (SD_CUDA_NO_GRAPHS=1 bench ...)
bench() {       # model log name [bench args]
    local m=$1 log=$2 name=$3
    shift 3
    run "$name" $log ${SDCLI:-$G/bin/sd-cli} bench --model /dev/shm/sd-$m \
        --runs 3 "$@"
}

# each bench log's step and end-to-end lines (and those matching $1) on one
# line: bench_lines EXTRA-REGEX LOG...
bench_lines() {
    local x=${1:+|$1} f
    shift
    for f in "$@"; do
        echo "$(basename $f): $(grep -E "denoising step, median|end to end$x" \
            $f | tr '\n' ' ')"
    done
}

# one seed's 4-step FP8 image of MODEL (default large) as /tmp/sd/NAME.png
# and its dump (the caller's environment chooses what to vary)
txt2img_dump() {    # name [model]
    run "txt2img ${2:-large} 4 steps, $1" txt2img-$1.log \
        ${SDCLI:-$G/bin/sd-cli} txt2img \
        --model /dev/shm/sd-${2:-large} --device cuda --precision fp8 \
        --prompt "a lighthouse at dusk" --steps 4 --seed 7 \
        --output /tmp/sd/$1.png --dump /tmp/sd/$1.safetensors
}

# whether two txt2img_dump results are the same bytes, and how far apart
same_image() {      # name-a name-b
    cmp -s /tmp/sd/$1.png /tmp/sd/$2.png \
        && cmp -s /tmp/sd/$1.safetensors /tmp/sd/$2.safetensors \
        && echo "png and dump $1 = $2: identical" | tee -a $summary \
        || echo "png or dump $1 vs $2: DIFFER" | tee -a $summary
    python3 tests/gpu/dump_cmp.py /tmp/sd/$1.safetensors \
        /tmp/sd/$2.safetensors 2>&1 | sed "s/^/$1 vs $2: /" | tee -a $summary
}

# the pipeline's golden tests on the GPU in BF16 and FP8 (they also check
# that recorded steps give the images launched ones do)
pipeline_tests() {
    for dev in cuda-bf16 cuda-fp8; do
        run "test_pipeline ($dev)" "pipeline-$dev.log" env \
            SD_TEST_DEVICE=$dev $G/bin/test_pipeline
    done
}

# Large FP8 through nginx from an HTTP client, with the server's own step
# histogram and error log
nginx_large_fp8() {    # [NAME: the logs' name, default nginx-large-fp8]
    local n=${1:-nginx-large-fp8}
    PREC=fp8 serve /dev/shm/sd-large large 7863
    run "${n//-/ } txt2img 1024" $n.log python3 \
        tests/gpu/http_bench.py http://127.0.0.1:7863 --steps 28
    curl -s http://127.0.0.1:7863/metrics \
        | grep -E "^sd_(step|request)_seconds_(sum|count)" \
        > "$L/$n-metrics.txt" 2>&1
    cp /tmp/sd/serve-large/logs/error.log "$L/$n-error.log"
    /tmp/ngx/usr/sbin/nginx -p /tmp/sd/serve-large/ -c nginx.conf -s quit
    sleep 3
}

# CUDA graphs per step: Large FP8 and BF16 with and without recorded
# steps, Turbo's shape, FP8 through nginx, Medium FP8
stage_graphs() {
    pipeline_tests
    randmodel large
    bench large bench-large-fp8.log "bench large fp8 (graphs)" \
        --precision fp8
    SD_CUDA_NO_GRAPHS=1 bench large bench-large-fp8-nograph.log \
        "bench large fp8 (no graphs)" --precision fp8
    bench large bench-large-bf16.log "bench large bf16 (graphs)"
    SD_CUDA_NO_GRAPHS=1 bench large bench-large-bf16-nograph.log \
        "bench large bf16 (no graphs)"
    bench large bench-turbo-fp8.log \
        "bench large fp8, 4 steps cfg 1 (turbo)" --precision fp8 --steps 4 \
        --cfg 1
    nginx_large_fp8
    randmodel medium
    bench medium bench-medium-fp8.log "bench medium fp8" --precision fp8
}

# text encoders in host memory: the goldens with offload, then Large FP8
# with them offloaded (memory, encode time)
stage_offload() {
    for t in encoders pipeline; do
        run "test_$t (cuda-fp8, offload text)" "$t-fp8-offload.log" env \
            SD_TEST_DEVICE=cuda-fp8 SD_TEST_OFFLOAD=text $G/bin/test_$t
    done
    randmodel large
    bench large bench-large-fp8.log "bench large fp8" --precision fp8
    bench large bench-large-fp8-offload.log "bench large fp8, offload text" \
        --precision fp8 --offload text
    bench large bench-large-fp8-offload-t5.log "bench large fp8, offload t5" \
        --precision fp8 --offload t5
}

# this session's checks: recorded steps, the prompt encoder on the GPU;
# Large FP8 with the norms' E4M3 rows on and off, the encoders offloaded
stage_check2() {
    pipeline_tests
    run "test_promptenc (cuda)" promptenc-cuda.log env SD_TEST_DEVICE=cuda \
        $G/bin/test_promptenc
    randmodel large
    bench large bench-large-fp8.log "bench large fp8" --precision fp8
    SD_CUDA_NO_FP8_ACT=1 bench large bench-large-fp8-noact.log \
        "bench large fp8, no E4M3 norms" --precision fp8
    bench large bench-large-fp8-offload.log "bench large fp8, offload text" \
        --precision fp8 --offload text
}

# diffusers' whole Large pipeline (BF16 eager, FP8 linears compiled)
ref_e2e_large() {
    STAGE_TIMEOUT=${REF_TIMEOUT:-330} run \
        "diffusers e2e large (bf16 eager, fp8 compiled)" e2e-ref-large.log \
        env PYTHONPATH=$G/ref/src:$G/bench python3 \
        $G/bench/e2e_peer.py $SD_FIXTURES/tiny-sd35-large --compile
}

# FP8 beside the reference's best in one call: the op and prompt-encoder
# checks, our bench (Large FP8, Medium FP8) and nginx, then diffusers'
# whole pipeline in BF16 eager and with FP8 linears + torch.compile
stage_final() {
    run "test_backend" backend.log $G/bin/test_backend
    run "test_promptenc (cuda)" promptenc-cuda.log env SD_TEST_DEVICE=cuda \
        $G/bin/test_promptenc
    run "test_promptenc (cuda-bf16)" promptenc-cuda-bf16.log env \
        SD_TEST_DEVICE=cuda-bf16 $G/bin/test_promptenc
    pipeline_tests
    randmodel large
    bench large bench-large-fp8.log "bench large fp8" --precision fp8
    bench large bench-large-fp8-keepattn.log \
        "bench large fp8, attention in bf16" --precision fp8 --fp8-keep attn
    bench large bench-turbo-fp8.log "bench large fp8, 4 steps cfg 1" \
        --precision fp8 --steps 4 --cfg 1
    nginx_large_fp8
    randmodel medium
    bench medium bench-medium-fp8.log "bench medium fp8" --precision fp8
    ref_e2e_large
}

stage_sameseed() {     # one seed in two processes, default picks: same bytes?
    randmodel large
    txt2img_dump seed-1
    txt2img_dump seed-2
    same_image seed-1 seed-2
}
# final's figures first, then its tests (a call cut short by the device's
# time still brings back what ran): Large FP8 bench and server, 4 steps,
# diffusers' e2e, Medium, test_backend, the pipeline goldens
stage_finalfirst() {
    randmodel large
    bench large bench-large-fp8.log "bench large fp8" --precision fp8
    nginx_large_fp8
    bench large bench-turbo-fp8.log "bench large fp8, 4 steps cfg 1" \
        --precision fp8 --steps 4 --cfg 1
    ref_e2e_large
    randmodel medium
    bench medium bench-medium-fp8.log "bench medium fp8" --precision fp8
    run "test_backend" backend.log $G/bin/test_backend
    pipeline_tests
}

# a session's last call: gemm8_check at the MMDiT's shapes, graph_check,
# finalfirst's figures and tests, one Large bench of sd-cli-var (pack.sh's
# PACK_BASE: the revision before) after the tree's, one seed in two
# processes, the group tests
stage_last() {
    run "gemm8_check" gemm8.log $G/bin/gemm8_check qkv ff-up ff-down out \
        m-qkv m-ff-up
    grep -E '^\| [a-z-]+(, [a-zE4M3 ]+)? \|' $L/gemm8.log
    run "graph_check" graph-check.log $G/bin/graph_check
    tail -2 $L/graph-check.log | tee -a $summary
    stage_finalfirst
    if [ -x $G/bin/sd-cli-var ]; then
        SDCLI=$G/bin/sd-cli-var bench large bench-large-fp8-base.log \
            "bench large fp8, base revision" --precision fp8
        SDCLI=$G/bin/sd-cli-var bench medium bench-medium-fp8-base.log \
            "bench medium fp8, base revision" --precision fp8
        bench medium bench-medium-fp8-2.log "bench medium fp8 (2)" \
            --precision fp8
        bench large bench-large-fp8-2.log "bench large fp8 (2)" \
            --precision fp8
        SDCLI=$G/bin/sd-cli-var bench large bench-large-fp8-base2.log \
            "bench large fp8, base revision (2)" --precision fp8
        bench_lines '' $L/bench-*-fp8*.log | tee -a $summary
    fi
    stage_sameseed
    stage_group
}

# the FP8 policy's error against our BF16 on the random Large (28 steps,
# the sweep's prompts): BF16, the default policy, all kinds, attention
# alone; the last call's error figures
stage_sweeplarge() {
    randmodel large
    run "fp8-sweep large attn" sweep-large-attn.log $G/bin/sd-cli fp8-sweep \
        --model /dev/shm/sd-large --prompts tests/gpu/sweep_prompts.txt \
        --kinds attn
    grep -E '^\|' $L/sweep-large-attn.log
}

# the path of GPUs without FP8 products (A100), forced on the H200
stage_widen() {
    randmodel large
    run "bench large fp8 widened (sm_80 path)" bench-large-widen.log \
        env SD_CUDA_FP8_WIDEN=1 $G/bin/sd-cli bench \
        --model /dev/shm/sd-large --precision fp8 --runs 2
}

# one transformer call and one VAE decode beside diffusers (BF16, F32):
# ours in FP8 and BF16
stage_stepfp8() {
    randmodel large
    run "diffusers step large (bf16, f32)" stepref-large.log \
        env PYTHONPATH=$G/ref/src python3 $G/bench/step_ref.py \
        --model /dev/shm/sd-large --out /tmp/sd/step-large.safetensors
    for p in fp8 bf16; do
        run "ours step large ($p)" step-large-$p.log $G/bin/sd-cli step \
            --model /dev/shm/sd-large --precision $p \
            --ref /tmp/sd/step-large.safetensors \
            --ref-log $L/stepref-large.log
    done
}

stage_attn8() {
    run "fattn_check" fattn.log $G/bin/fattn_check
    run "test_backend" backend.log $G/bin/test_backend
    stage_fp8check
    randmodel large
    bench large bench-large-fp8.log "bench large fp8 (attn e4m3)" \
        --precision fp8
    bench large bench-large-fp8-keepattn.log "bench large fp8 (attn bf16)" \
        --precision fp8 --fp8-keep attn
    for m in large medium; do
        run "fp8-sweep tiny $m attn" sweep-tiny-$m-attn.log $G/bin/sd-cli \
            fp8-sweep --model $SD_FIXTURES/tiny-sd35-$m --width 256 \
            --height 256 --kinds attn
    done
    run "fp8-sweep large attn" sweep-large-attn.log $G/bin/sd-cli fp8-sweep \
        --model /dev/shm/sd-large --prompts tests/gpu/sweep_prompts.txt \
        --kinds attn
}
stage_fp8err() {
    stage_stepfp8
    for m in large medium; do
        randmodel $m
        run "fp8-sweep $m attn" sweep-$m-attn.log $G/bin/sd-cli fp8-sweep \
            --model /dev/shm/sd-$m --prompts tests/gpu/sweep_prompts.txt \
            --kinds attn
    done
}
stage_nolanes() {      # every op on one stream, timed: their own costs
    randmodel large
    run "bench large fp8, one stream, profile" bench-large-nolanes.log \
        env SD_CUDA_NO_LANES=1 $G/bin/sd-cli bench \
        --model /dev/shm/sd-large --precision fp8 --runs 2 --profile 1
}
stage_gemm8() {
    run "gemm8_check" gemm8.log $G/bin/gemm8_check
    grep -E '^\|' $L/gemm8.log
}
stage_g8sustain() {
    with_clocks $L/clocks-g8.log 100 run "gemm8_check, sustained" \
        gemm8-sustained.log env G8_SUSTAIN_MS=${G8_SUSTAIN_MS:-2000} \
        $G/bin/gemm8_check ${G8_SHAPES:-qkv ff-up ff-down out}
    grep -E '^\|' $L/gemm8-sustained.log | cut -d'|' -f2-9
    clock_summary $L/clocks-g8.log
}
# the feed-forward's hidden layer as E4M3 rows from gemm8.cu's GELU product
# (default) against cuBLASLt's BF16 product and a pass quantizing its rows
# (SD_CUDA_NO_FFH8=1): the kernel, test_backend, the FP8 goldens, one
# seed's image, the benches in turn, and (FFH8_SWEEP=1) the default
# policy's error against BF16 each way
stage_g8gelu() {       # gemm8_check at the GELU products' shapes alone
    run "gemm8_check, GELU shapes" gemm8.log $G/bin/gemm8_check ff-up \
        m-ff-up txt-up
    grep -E '^\||gemm8_check' $L/gemm8.log
}
# gemm8's kernel under ncu (G8NCU_SHAPE's launch G8NCU_SKIP, default the
# first at the QKV shape; ff-up and 156: the E4M3 GELU product, after the
# BF16 products' 2 x 78 launches): where its time goes (pipes, stalls,
# issue) and each SASS instruction's stall samples (g8-sass.csv)
stage_g8ncu() {
    ncu_full g8 g8_kernel ${G8NCU_SKIP:-0} 25 '' $G/bin/gemm8_check \
        ${G8NCU_SHAPE:-qkv}
    head -50 $L/g8-sass.txt
    grep -E "Duration|Throughput|Pipe|Issue|Stall|Executed Ipc|Warp Cycles|\
Eligible|Active Warps|Registers|Grid Size|Block Size" \
        $L/ncu-g8-details.log | head -60
}
stage_ffh8() {
    local v
    stage_g8gelu
    run "test_backend" backend.log $G/bin/test_backend
    grep -E 'E4M3 hidden|passed' $L/backend.log
    run "test_pipeline (cuda-fp8)" pipeline-cuda-fp8.log env \
        SD_TEST_DEVICE=cuda-fp8 $G/bin/test_pipeline
    randmodel large
    randmodel medium
    ab_knob SD_CUDA_NO_FFH8 ffbf ffh8 ${FFH8_SWEEP:-0}
}
stage_gemmprobe() {
    run "gemm_probe" gemm-probe.log $G/bin/gemm_probe
    grep -E '^\|' $L/gemm-probe.log
    stage_nolanes
    randmodel medium
    run "bench medium fp8, one stream, profile" bench-medium-nolanes.log \
        env SD_CUDA_NO_LANES=1 $G/bin/sd-cli bench \
        --model /dev/shm/sd-medium --precision fp8 --runs 2 --profile 1
}
stage_kernels() {
    local m
    for m in ${NCU_MODELS:-large medium}; do
        randmodel $m
        run "ncu: kernel times, $m fp8" ncu-kernels-$m.log env \
            SD_CUDA_NO_GRAPHS=1 ncu --clock-control none \
            --metrics gpu__time_duration.sum --csv \
            --kernel-name regex:"${NCU_KERNELS:-quant|norm|qkv_split|fattn|gate|modul|xmma|gemm|cutlass|sm90|add|copy|elementwise|act}" \
            $G/bin/sd-cli bench --model /dev/shm/sd-$m --precision fp8 \
            --runs 1 --steps 2 ${NCU_ARGS:-}
        python3 tests/gpu/ncu_table.py $L/ncu-kernels-$m.log --top ${NCU_TOP:-30} \
            > $L/ncu-table-$m.log
        cat $L/ncu-table-$m.log
    done
}
# the QKV split and the attention's kernels of one Large FP8 step under ncu
# (graphs off), the tree's build and sd-cli-var's (pack.sh's PACK_BASE):
# the joint split writing V^T (2026-12-02) against the two splits and V's
# transposition pass before it
stage_splitncu() {
    local b
    randmodel large
    for b in sd-cli sd-cli-var; do
        [ -x $G/bin/$b ] || continue
        run "ncu: split and attention kernels, $b" ncu-split-$b.log env \
            SD_CUDA_NO_GRAPHS=1 ncu --clock-control none \
            --metrics gpu__time_duration.sum --csv \
            --kernel-name regex:"qkv_split|quant_vt|fattn_kernel" \
            $G/bin/$b bench --model /dev/shm/sd-large --precision fp8 \
            --runs 1 --steps 1
        python3 tests/gpu/ncu_table.py $L/ncu-split-$b.log \
            > $L/ncu-split-table-$b.log
        cat $L/ncu-split-table-$b.log
    done
}
# gemm_probe at PROBE_ROWS rows a batch (default the text stream's 333):
# which of the ways to issue the gated products cuBLASLt has algorithms for
stage_probe() {
    run "gemm_probe ${PROBE_ROWS:-333}" gemm-probe-${PROBE_ROWS:-333}.log \
        $G/bin/gemm_probe ${PROBE_ROWS:-333}
    grep -E '^\||rows' $L/gemm-probe-${PROBE_ROWS:-333}.log
}
# the E4M3 attention kernel's SASS in the tree's build and sd-cli-var's:
# instruction counts and the first lines that differ
stage_fattnsass() {
    local b
    for b in sd-cli sd-cli-var; do
        [ -x $G/bin/$b ] || continue
        cuobjdump -sass $G/bin/$b 2>/dev/null | awk '
            /Function : / { p = ($0 ~ /fattn_kernelILi1/) }
            p' | sed -n 's@^ *\/\*[0-9a-f]*\*\/ *@@p' | sed 's@ *;.*@@' \
            > $L/fattn-sass-$b.txt
        echo "$b: $(wc -l < $L/fattn-sass-$b.txt) instructions"
    done
    diff $L/fattn-sass-sd-cli-var.txt $L/fattn-sass-sd-cli.txt \
        > $L/fattn-sass.diff
    echo "diff lines: $(wc -l < $L/fattn-sass.diff)"
    head -40 $L/fattn-sass.diff
}
stage_benchfp8() {     # Large and Medium FP8 benches as served (lanes, graphs)
    randmodel large
    bench large bench-large-fp8.log "bench large fp8" --precision fp8
    randmodel medium
    bench medium bench-medium-fp8.log "bench medium fp8" --precision fp8
}
# the lanes joined at each block's end (SD_MMDIT_BLOCK_JOIN=1) against
# lane 1's tail running on into the next block, in turn (Large twice,
# Medium, 4 steps cfg 1), after the FP8 pipeline and group tests
stage_latejoin() {
    local r j
    run "test_pipeline (cuda-fp8)" pipeline-cuda-fp8.log env \
        SD_TEST_DEVICE=cuda-fp8 $G/bin/test_pipeline
    run "test_group (cuda-fp8)" group-cuda-fp8.log env \
        SD_TEST_DEVICE=cuda-fp8 $G/bin/test_group
    randmodel large
    randmodel medium
    for r in 1 2; do
        for j in 1 0; do
            SD_MMDIT_BLOCK_JOIN=$j bench large bench-large-j$j-$r.log \
                "large fp8, block join $j ($r)" --precision fp8
        done
    done
    for j in 1 0; do
        SD_MMDIT_BLOCK_JOIN=$j bench medium bench-medium-j$j.log \
            "medium fp8, block join $j" --precision fp8
        SD_MMDIT_BLOCK_JOIN=$j bench large bench-turbo-j$j.log \
            "4 steps cfg 1, block join $j" --precision fp8 --steps 4 --cfg 1
    done
    bench_lines '' $L/bench-*-j*.log
}

# Large FP8 twice and Medium once with a knob on and off, in turn:
# ab_benches VAR ON OFF [VALUE] (VAR=VALUE, default 1, for the runs named
# ON; logs bench-large-NAME-R.log, bench-medium-NAME.log)
ab_benches() {
    local var=$1 on=$2 off=$3 val=${4:-1} r v
    for r in 1 2 medium; do
        for v in $on $off; do
            (
                [ $v = $on ] && export $var="$val"
                if [ $r = medium ]; then
                    bench medium bench-medium-$v.log "medium fp8, $v" \
                        --precision fp8
                else
                    bench large bench-large-$v-$r.log "large fp8, $v ($r)" \
                        --precision fp8
                fi
            )
        done
    done
}

# a knob's A/B: one seed's 4-step image each way, the benches in turn
# (ab_benches) with VAR=1 for the runs named ON and unset for OFF, and
# with SWEEP 1 the FP8 policy's error each way (sweep_large_attn)
ab_knob() {     # VAR ON OFF [SWEEP]
    local var=$1 on=$2 off=$3 v
    for v in $off $on; do
        ( [ $v = $on ] && export $var=1; txt2img_dump $v )
    done
    same_image $off $on
    ab_benches $var $on $off
    bench_lines 'whole process' $L/bench-*.log
    [ "${4:-0}" = 1 ] || return 0
    for v in $off $on; do
        ( [ $v = $on ] && export $var=1; sweep_large_attn $v )
    done
}

stage_det() {          # kernels by heuristics against by timing
    local v
    randmodel large
    randmodel medium
    for v in heur-1 heur-2 timed-1 timed-2; do
        SD_CUDA_TIMED_PICK=$([ ${v%-*} = timed ] && echo 1) txt2img_dump $v
    done
    same_image heur-1 heur-2
    same_image timed-1 timed-2
    same_image heur-1 timed-1
    ab_benches SD_CUDA_TIMED_PICK timed heur
    bench_lines 'VAE decode' $L/bench-*.log
}

stage_o8() {           # attention output in E4M3 against BF16 + a pass
    local v
    run "fattn_check" fattn.log $G/bin/fattn_check
    grep -E '^\|' $L/fattn.log
    run "test_backend" backend.log $G/bin/test_backend
    run "test_pipeline (cuda-fp8)" pipeline-cuda-fp8.log env \
        SD_TEST_DEVICE=cuda-fp8 $G/bin/test_pipeline
    randmodel large
    randmodel medium
    ab_knob SD_MMDIT_O_BF16 obf o8 ${O8_SWEEP:-1}
}

# fp8-sweep --kinds attn on the random Large with the sweep prompts into
# sweep-large-NAME.log, its table printed (the caller's environment
# chooses what to vary)
sweep_large_attn() {    # name
    run "fp8-sweep large attn, $1" sweep-large-$1.log $G/bin/sd-cli \
        fp8-sweep --model /dev/shm/sd-large \
        --prompts tests/gpu/sweep_prompts.txt --kinds attn
    grep -E '^\|' $L/sweep-large-$1.log
}

# the FP8 policy's error against our BF16 on the random Large (28 steps,
# the sweep prompts): the default policy, and the attention (attn) alone
stage_sweepattn() {
    randmodel large
    sweep_large_attn default
}

# the variant build (pack.sh's PACK_VARIANT) against the default in turn:
# fattn_check twice each, one seed's 4-step image each, Large twice and
# Medium once each
stage_var() {
    local r v
    run "test_backend" backend.log $G/bin/test_backend
    run "test_backend, variant" backend-var.log $G/bin/test_backend_var
    for r in 1 2; do
        run "fattn_check ($r)" fattn-$r.log $G/bin/fattn_check
        run "fattn_check, variant ($r)" fattn-var-$r.log \
            $G/bin/fattn_check_var
    done
    for v in $G/bin/fattn_check_x*; do
        [ -x $v ] && run "$(basename $v)" $(basename $v).log $v
    done
    grep -E '^\||fattn:' $L/fattn*.log
    var_benches
}
# the variant build against the default, benches only: fattn_check once
# each, Large's and Medium's 28-step FP8 benches in turn, twice each
# (var_steps), the clocks logged beside
stage_varsteps() {
    run "fattn_check" fattn-1.log $G/bin/fattn_check
    run "fattn_check, variant" fattn-var-1.log $G/bin/fattn_check_var
    grep -E '^\| 2 \| 4429|fattn:' $L/fattn*.log | tee -a $summary
    randmodel large
    randmodel medium
    with_clocks $L/clocks.log 250 var_steps large vs 28
    with_clocks $L/clocks-m.log 250 var_steps medium vsm 28
    bench_lines '' $L/bench-vs*.log | tee -a $summary
    clock_summary $L/clocks.log
    clock_summary $L/clocks-m.log
}
# the variant build against the default without the attention kernel's
# checks (a variant of other kernels): both builds' test_backend, image,
# benches
stage_varbench() {
    run "test_backend" backend.log $G/bin/test_backend
    run "test_backend, variant" backend-var.log $G/bin/test_backend_var
    var_benches
}
var_benches() {
    randmodel large
    randmodel medium
    SDCLI=$G/bin/sd-cli txt2img_dump def
    SDCLI=$G/bin/sd-cli-var txt2img_dump var
    same_image def var
    with_clocks $L/clocks.log 250 ab_benches SDCLI var def $G/bin/sd-cli-var
    bench_lines 'whole process|VAE|text enc' $L/bench-*.log
    clock_summary $L/clocks.log
}

# "$@" with nvidia-smi logging the SM and memory clocks, power and
# temperature every MS ms into LOG (clock_summary reads it)
with_clocks() {     # LOG MS command...
    local log=$1 ms=$2 smi
    shift 2
    nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu \
        --format=csv,noheader,nounits -lms $ms > $log 2>&1 &
    smi=$!
    "$@"
    kill $smi 2>/dev/null
}

# the SM clock, power and temperature nvidia-smi logged (-lms) while the
# benches ran: of the samples over 150 W (under load), the 10th, 50th and
# 90th percentiles
clock_summary() {   # log
    python3 - "$1" <<'PYEOF' | tee -a $summary
import sys
rows = []
for line in open(sys.argv[1]):
    try:
        rows.append([float(x) for x in line.split(',')])
    except ValueError:
        pass
busy = [r for r in rows if len(r) == 4 and r[2] > 150]
def q(i):
    v = sorted(r[i] for r in busy)
    return '/'.join('%.0f' % v[int(f * (len(v) - 1))] for f in (0.1, 0.5, 0.9))
if busy:
    print('under load (%d of %d samples): SM MHz %s, memory MHz %s, W %s, C %s'
          % (len(busy), len(rows), q(0), q(1), q(2), q(3)))
PYEOF
}

# the workspace measured with the cache's 32 steps: session 7's shortfall
# (512x512, batch 2, 28 steps ran out of it) and the FP8 goldens
stage_ws512() {
    run "test_pipeline (cuda-fp8)" pipeline-cuda-fp8.log env \
        SD_TEST_DEVICE=cuda-fp8 $G/bin/test_pipeline
    randmodel large
    run "bench large fp8 512x512 batch 2" bench-512-b2.log $G/bin/sd-cli \
        bench --model /dev/shm/sd-large --precision fp8 --runs 1 \
        --width 512 --height 512 --batch 2
    grep -E 'denoising step|end to end|workspace|graphs|rror' \
        $L/bench-512-b2.log
}

stage_encvae() {       # text encoding and VAE: profile, picks
    ab_short SD_CUDA_TIMED_PICK timed heur ev
    bench large bench-ev-prof.log "large fp8 2 steps, profile" \
        --precision fp8 --steps 2 --cfg 4.5 --profile 1
    bench_lines 'VAE|text enc' $L/bench-ev-*.log
}
# Large FP8 at 2 steps, each way twice in turn, VAR=1 for the runs named
# ON: bench-PRE-{ON,OFF}-{1,2}.log
# MODEL's FP8 bench of STEPS steps with VAR=1 (ON) and without (OFF), in
# turn, twice: bench-PRE-{ON,OFF}-{1,2}.log
ab_bench() {    # MODEL VAR ON OFF PRE STEPS
    local m=$1 var=$2 on=$3 off=$4 pre=$5 steps=$6 r v
    randmodel $m
    for r in 1 2; do
        for v in $on $off; do
            (
                [ $v = $on ] && export $var=1
                bench $m bench-$pre-$v-$r.log \
                    "$m fp8 $steps steps, $v ($r)" --precision fp8 \
                    --steps $steps --cfg 4.5
            )
        done
    done
}
ab_short() {    # VAR ON OFF PRE: Large, 2 steps
    ab_bench large "$1" "$2" "$3" "$4" 2
}
# the text encoders' golden tests on the GPU in BF16 and FP8
encoder_tests() {
    local dev
    for dev in cuda cuda-fp8; do
        run "test_encoders ($dev)" encoders-$dev.log env \
            SD_TEST_DEVICE=$dev $G/bin/test_encoders
    done
}
stage_sattn() {        # text encoders' attention: sattn.cu or GEMM path
    run "test_backend" backend.log $G/bin/test_backend
    grep -E "attention (causal|bias)" $L/backend.log
    encoder_tests
    ab_short SD_CUDA_NO_SATTN gemm sattn sa
    bench_lines 'text enc|VAE' $L/bench-sa-*.log
}
stage_convfused() {    # conv + bias fused by cuDNN, or conv then bias
    local dev
    for dev in cuda cuda-bf16; do
        run "test_vae ($dev, not fused)" vae-$dev-plain.log env \
            SD_CUDA_NO_CONV_FUSED=1 SD_TEST_DEVICE=$dev $G/bin/test_vae
    done
    ab_short SD_CUDA_NO_CONV_FUSED plain fused cf
    bench large bench-cf-fused-prof.log "large fp8 2 steps, fused, profile" \
        --precision fp8 --steps 2 --profile 1
    bench_lines 'VAE' $L/bench-cf-*.log
    grep -E "^\| conv" $L/bench-cf-fused-prof.log
}
stage_convadd() {      # fused conv bias and residual
    local dev t
    run "test_backend" backend.log $G/bin/test_backend
    grep -E "conv" $L/backend.log
    for dev in cuda cuda-bf16; do
        for t in vae mmdit; do
            run "test_$t ($dev)" $t-$dev.log env SD_TEST_DEVICE=$dev \
                $G/bin/test_$t
        done
    done
    run "test_pipeline (cuda-fp8)" pipeline-cuda-fp8.log env \
        SD_TEST_DEVICE=cuda-fp8 $G/bin/test_pipeline
    var_benches
}
stage_tcache() {       # nginx with the text cache off and on
    local v
    randmodel large
    for v in off on; do
        SERVE_EXTRA=$([ $v = off ] && echo "sd_text_cache 0;") \
            nginx_large_fp8 nginx-tcache-$v
        grep -E "median|all runs" $L/nginx-tcache-$v.log
    done
}
# each request's phases from an nginx error log written at info
phase_lines() {        # ERROR-LOG
    grep -E "image\(s\), text|base64 in the thread" "$1" \
        | sed -e 's/.*sd task/sd task/' -e 's/, client:.*//'
}
stage_nginxtime() {    # where a request's time goes through nginx
    randmodel large
    ERRLOG_LEVEL=info nginx_large_fp8 nginx-time
    grep -E "median|all runs" $L/nginx-time.log
    phase_lines $L/nginx-time-error.log
    cat $L/nginx-time-metrics.txt
}
stage_subpixel() {     # the VAE's upsamplers as sub-pixel 2x2 convs
    local dev r v
    run "test_backend" backend.log $G/bin/test_backend
    grep -E "subpixel|upsample" $L/backend.log
    for dev in cuda cuda-bf16; do
        run "test_vae ($dev)" vae-$dev.log env SD_TEST_DEVICE=$dev \
            $G/bin/test_vae
        grep -E "decoded|image" $L/vae-$dev.log
    done
    run "test_pipeline (cuda-fp8)" pipeline-cuda-fp8.log env \
        SD_TEST_DEVICE=cuda-fp8 $G/bin/test_pipeline
    randmodel large
    for r in 1 2 3; do
        for v in tree base; do
            SDCLI=$G/bin/sd-cli$([ $v = base ] && echo -var) \
                bench large bench-sp-$v-$r.log "large fp8 2 steps, $v ($r)" \
                --precision fp8 --steps 2
        done
    done
    bench_lines 'VAE|whole process' $L/bench-sp-*.log
}
stage_nginxab() {      # through nginx: the tree's module and PACK_BASE's
    local r v
    randmodel large
    for r in 1 2; do
        for v in tree base; do
            SD_MODULE=$G/bin/ngx_http_sd_module$([ $v = base ] && echo _var).so \
                nginx_large_fp8 nginx-ab-$v-$r
            grep -E "median|all runs" $L/nginx-ab-$v-$r.log
        done
    done
}
stage_final23() {      # session 23's last call: last (nginx's error log at
                       # info: each request's phases), then nginxab
    ERRLOG_LEVEL=info stage_last
    phase_lines $L/nginx-large-fp8-error.log
    stage_nginxab
}
stage_attscratch() {   # the VAE's attention (head 512, the products path)
                       # by the bytes of S and P a chunk of queries keeps
    local mb
    randmodel medium
    for mb in 256 32 64 128 512 1024; do
        SD_CUDA_ATT_SCRATCH_MB=$mb bench medium bench-as-$mb.log \
            "medium fp8 1 step, attention scratch $mb MB, profile" \
            --precision fp8 --steps 1 --profile 1
    done
    for mb in 256 32 64 128 512 1024; do
        echo "$mb MB: $(grep -E 'attention 1x16384|VAE decode|activation workspace' \
            $L/bench-as-$mb.log | tr '\n' ' ')"
    done
}
stage_devnoise() {     # torch's CUDA noise drawn on the device against
                       # the host's emulation (SD_CUDA_HOST_NOISE=1)
    run "test_backend" backend.log $G/bin/test_backend
    grep -E "randn" $L/backend.log
    pipeline_tests
    ab_short SD_CUDA_HOST_NOISE host dev dn
    bench_lines 'whole process' $L/bench-dn-*.log
    randmodel large
    ERRLOG_LEVEL=info nginx_large_fp8 nginx-devnoise
    grep -E "median|all runs" $L/nginx-devnoise.log
    phase_lines $L/nginx-devnoise-error.log
}
stage_png() {          # PNG encoding by the cores it may use
    local cpus
    nproc | sed 's/^/nproc: /' | tee -a $summary
    grep -m1 "model name" /proc/cpuinfo | tee -a $summary
    randmodel large
    txt2img_dump png-large          # 1024x1024: sd-cli's default
    for cpus in 0 0-3 0-7 0-15 all; do
        if [ $cpus = all ]; then
            run "png_bench, every cpu" png-all.log $G/bin/png_bench \
                /tmp/sd/png-large.png
        else
            run "png_bench, cpus $cpus" png-$cpus.log taskset -c $cpus \
                $G/bin/png_bench /tmp/sd/png-large.png
        fi
        grep -E "^png" $L/png-$cpus.log | tee -a $summary
    done
}
stage_medclocks() {    # Medium FP8's bench with the SM clock and power
    randmodel medium
    with_clocks $L/clocks-medium.log 100 bench medium \
        bench-medium-clk.log "bench medium fp8, clocks" --precision fp8
    bench_lines '' $L/bench-medium-clk.log
    clock_summary $L/clocks-medium.log
    randmodel large
    with_clocks $L/clocks-large.log 100 bench large \
        bench-large-clk.log "bench large fp8, clocks" --precision fp8
    bench_lines '' $L/bench-large-clk.log
    clock_summary $L/clocks-large.log
}
stage_medab() {        # Medium FP8's step by the engine's knobs, in turn
    local r v
    randmodel medium
    for r in 1 2; do
        for v in def lanes0 join timed; do
            (
                case $v in
                lanes0) export SD_CUDA_NO_LANES=1 ;;
                join)   export SD_MMDIT_BLOCK_JOIN=1 ;;
                timed)  export SD_CUDA_TIMED_PICK=1 ;;
                esac
                bench medium bench-medab-$v-$r.log "medium fp8, $v ($r)" \
                    --precision fp8 --steps 8
            )
        done
    done
    bench_lines '' $L/bench-medab-*.log | tee -a $summary
    ab_bench large SD_CUDA_TIMED_PICK timed def largeab 8
    bench_lines '' $L/bench-largeab-*.log | tee -a $summary
}
stage_nmab() {         # Medium's norm_modulate into E4M3 on 6 vectors a
                       # lane (3 blocks an SM) against 8 (SD_CUDA_NM_WIDE)
    local v
    randmodel medium
    for v in nm6 nm8; do
        (
            [ $v = nm8 ] && export SD_CUDA_NM_WIDE=1
            txt2img_dump med-$v medium
        )
    done
    same_image med-nm6 med-nm8
    ab_bench medium SD_CUDA_NM_WIDE nm8 nm6 nm 8
    bench_lines '' $L/bench-nm-*.log | tee -a $summary
}
# the README table's figures: Large FP8's bench, nginx (its log at info:
# each request's phases), Turbo's shape, diffusers' two runs, Medium FP8
table_figures() {
    randmodel large
    bench large bench-large-fp8.log "bench large fp8" --precision fp8
    ERRLOG_LEVEL=info nginx_large_fp8
    phase_lines $L/nginx-large-fp8-error.log
    bench large bench-turbo-fp8.log "bench large fp8, 4 steps cfg 1" \
        --precision fp8 --steps 4 --cfg 1
    ref_e2e_large
    randmodel medium
    bench medium bench-medium-fp8.log "bench medium fp8" --precision fp8
}
stage_final27() {      # session 27's last call: the pipeline tests,
                       # Large's 8-step bench against PACK_BASE's in turn
                       # (var_steps), then the table's figures
    pipeline_tests
    randmodel large
    var_steps large f27
    bench_lines '' $L/bench-f27*.log | tee -a $summary
    table_figures
}
# compute-sanitizer over the GPU's tests: each tool a run, its errors'
# count in the summary (exit 99 on an error the tool reports)
san() {     # tool name log test-binary [env...]
    local tool=$1 name=$2 log=$3 bin=$4
    shift 4
    local extra
    eval "extra=\${SAN_OPTS_$tool:-}"
    run "$tool: $name" $log env "$@" $CS --tool $tool --error-exitcode 99 \
        --print-limit 30 $extra $G/bin/$bin
    grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|=+ (Invalid|Uninit|Race|Barrier|Error)' \
        $L/$log | sort | uniq -c | head -8 | tee -a $summary
}
stage_sanitize() {
    local tool t dev
    CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    $CS --version > $L/cs-version.txt 2>&1
    $CS --help > $L/cs-help.txt 2>&1
    head -3 $L/cs-version.txt | tee -a $summary
    for tool in ${SAN_TOOLS:-memcheck synccheck racecheck initcheck}; do
        for t in ${SAN_TESTS:-pipeline:cuda-fp8 pipeline:cuda-bf16 vae:cuda-bf16}; do
            dev=${t#*:}
            STAGE_TIMEOUT=${SAN_TIMEOUT:-150} san $tool "test_${t%%:*} ($dev)" \
                cs-$tool-${t%%:*}-$dev.log test_${t%%:*} SD_TEST_DEVICE=$dev
        done
    done
    if [ "${SAN_BACKEND:-1}" = 1 ]; then
        tool=${SAN_BACKEND_TOOL:-memcheck}
        STAGE_TIMEOUT=${SAN_BACKEND_TIMEOUT:-300} san $tool test_backend \
            cs-$tool-backend.log test_backend
    fi
}
stage_gnab() {
    backend_grep group_norm
    for dev in cuda-bf16 cuda-fp8; do
        run "test_vae ($dev)" vae-$dev.log env SD_TEST_DEVICE=$dev \
            $G/bin/test_vae
    done
    randmodel large
    txt2img_dump gnnew
    SD_CUDA_GN_OLD=1 txt2img_dump gnold
    same_image gnnew gnold
    ab_short SD_CUDA_GN_OLD old new gn
    bench_lines 'VAE' $L/bench-gn-*.log | tee -a $summary
    stage_gnncu
}
stage_gnncu() {
    randmodel large
    run "ncu: GroupNorm kernels" ncu-gn.log ncu --kernel-name regex:gn_ \
        --launch-count 100 --csv --page raw --metrics \
gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,\
dram__bytes.sum,launch__grid_size \
        $G/bin/sd-cli bench --model /dev/shm/sd-large --precision fp8 \
        --steps 1 --runs 1
    python3 tests/gpu/ncu_raw.py $L/ncu-gn.log --title 'GN kernel' \
        | tee -a $summary
}
# a pass of the step under ncu, every section, and its warp stalls by SASS
# instruction: ncu_pass KERNEL-REGEX NAME [GRID] (Large FP8, one step; the
# first launch whose grid is GRID blocks, else the seventh)
ncu_pass() {
    local skip=6
    randmodel large
    if [ "${3:-}" ]; then
        run "ncu: $2 launches" ncu-$2-list.log ncu --kernel-name "regex:$1" \
            --launch-count 16 --csv --page raw --metrics \
            gpu__time_duration.sum,launch__grid_size $G/bin/sd-cli bench \
            --model /dev/shm/sd-large --precision fp8 --steps 1 --runs 1
        skip=$(python3 tests/gpu/ncu_raw.py $L/ncu-$2-list.log \
            --first-grid $3 --default 6)
        echo "ncu: $2: launch $skip (the first of grid $3, else the seventh)" \
            | tee -a $summary
    fi
    ncu_full $2 "$1" $skip 30 'SHFL|BAR\.|EXIT' $G/bin/sd-cli bench \
        --model /dev/shm/sd-large --precision fp8 --steps 1 --runs 1
    grep -E 'Grid Size|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Issue Slots Busy|Eligible Warps|Warp Cycles Per Issued|Block Limit Reg|Executed Instructions  |SM Frequency' \
        $L/ncu-$2-details.log | head -20 | tee -a $summary
    head -48 $L/$2-sass.txt | tee -a $summary
}
# the LayerNorm + modulate pass into E4M3 of the image rows under ncu's full
# set (session 29 also timed 2 and 4 warps a row here: not kept, README)
stage_nmprof() {
    ncu_pass 'norm_mod_fp8' nm 1024
}
# session 29's first call: the GroupNorm's merges as sums (test_backend,
# test_vae, one seed's image and the VAE's time against PACK_BASE's in
# turn, the GN kernels under ncu), then the LayerNorm + modulate pass and
# the QKV split under ncu
stage_s29a() {
    backend_grep 'group_norm|passed'
    for dev in cuda-bf16 cuda-fp8; do
        run "test_vae ($dev)" vae-$dev.log env SD_TEST_DEVICE=$dev \
            $G/bin/test_vae
    done
    image_vs_var gnsum
    var_steps large gn 2
    bench_lines 'VAE' $L/bench-gn-*.log | tee -a $summary
    stage_gnncu
    ncu_pass 'norm_mod_fp8' nm
    ncu_pass 'qkv_split_fp8' qs
}
# norm_mod_fp8 and qkv_split_fp8 of a Large FP8 step under ncu (time and
# instructions a launch) for each of sd-cli and sd-cli-var
ncu_nmqs() {
    local b
    randmodel large
    for b in sd-cli sd-cli-var; do
        run "ncu: norm_mod, qkv_split ($b)" ncu-nmqs-$b.log ncu \
            --kernel-name 'regex:norm_mod_fp8|qkv_split_fp8' \
            --launch-count 12 --csv --page raw --metrics \
            gpu__time_duration.sum,smsp__inst_executed.sum,launch__grid_size \
            $G/bin/$b bench --model /dev/shm/sd-large --precision fp8 \
            --steps 1 --runs 1
        python3 tests/gpu/ncu_raw.py $L/ncu-nmqs-$b.log --title "$b" \
            --sort first | tee -a $summary
    done
}
# session 29: BF16 unpacked in two instructions a pair, norm_mod_fp8 with
# the MMDiTs' widths at compile time: test_backend, one seed's image
# against PACK_BASE's (the same bits expected), the kernels under ncu,
# Large's and Medium's 8-step benches against PACK_BASE's in turn, Medium
# with SD_CUDA_NM_GENERIC=1
stage_s29b() {
    local r
    backend_grep 'norm_modulate|qkv_split'
    image_vs_var nmfix
    ncu_nmqs
    var_steps large s29
    bench_lines '' $L/bench-s29*.log | tee -a $summary
    randmodel medium
    var_steps medium m29
    for r in 1 2; do
        SD_CUDA_NM_GENERIC=1 bench medium bench-m29gen-$r.log \
            "medium fp8 8 steps, NM_GENERIC ($r)" --precision fp8 --steps 8
    done
    bench_lines '' $L/bench-m29*.log | tee -a $summary
}
stage_ltsustain() {
    ENUM=1 run "gemm_sustain" gemm-sustain.log $G/bin/gemm_sustain
    grep -E '^\||candidates|cuBLASLt' $L/gemm-sustain.log | tee -a $summary
}
# where a step's time goes under its real load: every kernel's device
# start and end through CUPTI (tests/gpu/ktrace.c) in Large's and
# Medium's FP8 benches, untraced benches beside them (the tracing's own
# cost), ktrace.py's tables (graph replays: wall, idle, each stream's busy
# time and gaps; each kernel's time) and one replay kernel by kernel
# MODEL's FP8 bench traced (ktrace): the tables in kt-TAG.txt and
# kt-timeline-TAG.txt, the trace kept as kt-TAG.csv.xz, the tables' first
# HEAD lines in the summary
kt_bench() {       # MODEL TAG LOG NAME HEAD [BENCH ARGS...]
    local m=$1 tag=$2 log=$3 name=$4 n=$5
    shift 5
    CUDA_INJECTION64_PATH=$G/bin/libktrace.so \
        KTRACE_OUT=/tmp/sd/kt-$tag.csv bench $m $log "$name" \
        --precision fp8 "$@"
    python3 tests/gpu/ktrace.py /tmp/sd/kt-$tag.csv --skip 2 --top 45 \
        --timeline $L/kt-timeline-$tag.txt > $L/kt-$tag.txt 2>&1
    xz -T0 -1 -c /tmp/sd/kt-$tag.csv > $L/kt-$tag.csv.xz
    head -$n $L/kt-$tag.txt | tee -a $summary
}
stage_ktrace() {
    local m
    for m in ${KT_MODELS:-large medium}; do
        randmodel $m
        bench $m bench-kt0-$m.log "$m fp8, untraced" --precision fp8 \
            ${KT_ARGS:-}
        kt_bench $m $m bench-kt1-$m.log "$m fp8, traced" 8 ${KT_ARGS:-}
        bench_lines '' $L/bench-kt?-$m.log | tee -a $summary
    done
}
# session 33: the recordings' small memset nodes (cuBLASLt's counter
# before each product) as kernel nodes (the default, "ker") against
# SD_CUDA_MEMSET_NODES=1 ("node"): graph_check, one seed's image each way,
# the pipeline's tests, Medium traced (MS_TRACE, default "ker"), Large's
# and Medium's 28-step benches in turn, twice
ms_on() {          # node | ker: exports its knob
    [ $1 = node ] && export SD_CUDA_MEMSET_NODES=1
    return 0
}
stage_mskt() {
    local v r m
    run "graph_check" graph-check.log $G/bin/graph_check
    tail -3 $L/graph-check.log | tee -a $summary
    randmodel large
    randmodel medium
    for v in node ker; do
        ( ms_on $v; txt2img_dump ms-$v )
    done
    same_image ms-node ms-ker
    pipeline_tests
    tail -n 2 $L/pipeline-cuda-*.log | tee -a $summary
    for v in ${MS_TRACE-ker}; do
        ( ms_on $v
          kt_bench medium $v bench-kt-$v.log "medium fp8 traced, $v" 5 )
    done
    ms_benches() {
        for r in 1 2; do
            for m in large medium; do
                for v in ${MS_WAYS:-node ker}; do
                    ( ms_on $v; bench $m bench-$m-ms$v-$r.log \
                        "$m fp8, $v ($r)" --precision fp8 )
                done
            done
        done
    }
    with_clocks $L/clocks.log 250 ms_benches
    grep -h "memset nodes" $L/bench-*-ms*-1.log | sort | uniq -c \
        | tee -a $summary
    bench_lines '' $L/bench-*-ms*-?.log | tee -a $summary
    clock_summary $L/clocks.log
}
# session 33: a tree against PACK_BASE, the same bits expected:
# test_backend, the pipeline's tests, one seed's Large and Medium images
# each way, Large's and Medium's 28-step benches in turn, twice (it timed
# the gated products' scales made with the per-image table, not kept:
# docs/perf-history.md, session 33)
stage_gpre() {
    local m
    backend_grep "${GP_GREP:-gate scales made ahead}"
    pipeline_tests
    tail -n 1 $L/pipeline-cuda-*.log | tee -a $summary
    for m in large medium; do
        image_vs_var gp-$m $m
    done
    gp_benches() {
        var_steps large gp-large 28
        var_steps medium gp-medium 28
    }
    with_clocks $L/clocks.log 250 gp_benches
    grep -h "GPU memory in use" $L/bench-gp-*-1.log | tee -a $summary
    bench_lines '' $L/bench-gp-*.log | tee -a $summary
    clock_summary $L/clocks.log
}
# an environment variable's A/B of sd-cli's 28-step bench, in turn, twice:
# env_steps MODEL PREFIX VAR=VALUE (logs bench-PREFIX-{on,off}-R.log; "off"
# has VAR=VALUE set)
env_steps() {      # MODEL PREFIX VAR=VALUE
    local r
    for r in 1 2; do
        bench $1 bench-$2-on-$r.log "$1 fp8 28 steps ($r)" --precision fp8
        SDCLI="env $3 $G/bin/sd-cli" bench $1 bench-$2-off-$r.log \
            "$1 fp8 28 steps, $3 ($r)" --precision fp8
    done
}
# session 34: Medium's attn2 in its own buffers on lane 1 beside the joint
# attention, against SD_MMDIT_ATTN2_SERIAL=1 (after it on lane 0): the
# transformer's bytes both ways (test_mmdit on the GPU), the pipeline
# tests, one seed's Medium image both ways, Medium's benches in turn
stage_a2lane() {
    local dev
    for dev in cuda-fp8 cuda-bf16; do
        run "test_mmdit ($dev)" mmdit-$dev.log env SD_TEST_DEVICE=$dev \
            $G/bin/test_mmdit
        grep -E "passed|FAIL" $L/mmdit-$dev.log | tee -a $summary
    done
    pipeline_tests
    tail -n 1 $L/pipeline-cuda-*.log | tee -a $summary
    randmodel medium
    txt2img_dump a2-medium medium
    SD_MMDIT_ATTN2_SERIAL=1 txt2img_dump a2-medium-serial medium
    same_image a2-medium a2-medium-serial
    a2_benches() {
        env_steps medium a2-medium SD_MMDIT_ATTN2_SERIAL=1
    }
    with_clocks $L/clocks.log 250 a2_benches
    grep -h "GPU memory in use" $L/bench-a2-*-1.log | tee -a $summary
    bench_lines '' $L/bench-a2-*.log | tee -a $summary
    clock_summary $L/clocks.log
}
# session 34: MMDiT-X's two modulations of one norm in one pass
# (norm_modulate2) against two launches (SD_CUDA_NM_SPLIT=1): test_backend,
# test_mmdit, the pipeline tests, one seed's Medium image both ways, then
# Medium's 28-step benches in turn: the tree, two launches, and two
# launches with attn2 after the joint attention (session 33's way)
stage_nm2() {
    local dev r
    backend_grep "norm_modulate2|norm_modulate -> E4M3"
    for dev in cuda-fp8 cuda-bf16; do
        run "test_mmdit ($dev)" mmdit-$dev.log env SD_TEST_DEVICE=$dev \
            $G/bin/test_mmdit
    done
    pipeline_tests
    tail -n 1 $L/pipeline-cuda-*.log $L/mmdit-cuda-*.log | tee -a $summary
    randmodel medium
    txt2img_dump nm2-medium medium
    SD_CUDA_NM_SPLIT=1 txt2img_dump nm2-medium-split medium
    same_image nm2-medium nm2-medium-split
    nm2_benches() {
        for r in 1 2; do
            bench medium bench-nm2-tree-$r.log "medium fp8 28 steps ($r)" \
                --precision fp8
            SDCLI="env SD_CUDA_NM_SPLIT=1 $G/bin/sd-cli" bench medium \
                bench-nm2-split-$r.log "medium, NM_SPLIT ($r)" --precision fp8
            SDCLI="env SD_CUDA_NM_SPLIT=1 SD_MMDIT_ATTN2_SERIAL=1 \
                $G/bin/sd-cli" bench medium bench-nm2-s33-$r.log \
                "medium, NM_SPLIT, ATTN2_SERIAL ($r)" --precision fp8
        done
    }
    with_clocks $L/clocks.log 250 nm2_benches
    grep -h "GPU memory in use" $L/bench-nm2-*-1.log | tee -a $summary
    bench_lines '' $L/bench-nm2-*.log | tee -a $summary
    clock_summary $L/clocks.log
}
# session 34's tree against PACK_BASE (session 33's revision): one seed's
# Large and Medium images (the same bits expected), then both models'
# 28-step benches in turn, twice
stage_s34ab() {
    image_vs_var s34-large large
    image_vs_var s34-medium medium
    with_clocks $L/clocks.log 250 var_steps large s34l 28
    with_clocks $L/clocks-m.log 250 var_steps medium s34m 28
    bench_lines '' $L/bench-s34*.log | tee -a $summary
    clock_summary $L/clocks.log
    clock_summary $L/clocks-m.log
}
stage_fsweep() {
    run "fattn_check sweep" fattn-sweep.log $G/bin/fattn_check sweep
    grep -E '^\||fattn' $L/fattn-sweep.log | tee -a $summary
}
# session 35: the attention kernel persistent (one block an SM taking its
# units in turn) against one block a unit (SD_CUDA_FATTN_UNITS=1):
# fattn_check and its sweep both ways, one seed's Large and Medium images
# both ways (the same bits expected), Large's and Medium's 28-step benches
# in turn
stage_pers() {
    run "fattn_check" fattn.log $G/bin/fattn_check
    run "fattn_check, a block a unit" fattn-units.log \
        env SD_CUDA_FATTN_UNITS=1 $G/bin/fattn_check
    grep -E '^\||fattn' $L/fattn.log $L/fattn-units.log | tee -a $summary
    run "fattn_check sweep" fattn-sweep.log $G/bin/fattn_check sweep
    run "fattn_check sweep, a block a unit" fattn-sweep-units.log \
        env SD_CUDA_FATTN_UNITS=1 $G/bin/fattn_check sweep
    grep -E '^\| 2 |fattn' $L/fattn-sweep*.log | tee -a $summary
    env_images pe SD_CUDA_FATTN_UNITS=1
    pe_benches() {
        env_steps large pe-large SD_CUDA_FATTN_UNITS=1
        env_steps medium pe-medium SD_CUDA_FATTN_UNITS=1
    }
    with_clocks $L/clocks.log 250 pe_benches
    bench_lines '' $L/bench-pe-*.log | tee -a $summary
    clock_summary $L/clocks.log
}
# session 36: a kernel variant (FA_XU then: a consumer's next unit's tile
# 0 scores and softmax beside its last P V) against another build and
# against PACK_BASE; the same bits expected
stage_xu() {
    fattn_turns fattn_check_x${FA_VAR:-xu0}
    grep -E "FNV|fattn" $L/fattn_check-1.log | tee -a $summary
    backend_grep "attention|3 blocks"
    pipeline_tests
    image_vs_var xu-large large
    image_vs_var xu-medium medium
    xu_benches() {
        var_steps large xul 28
        var_steps medium xum 28
    }
    with_clocks $L/clocks.log 250 xu_benches
    bench_lines '' $L/bench-xu*.log | tee -a $summary
    clock_summary $L/clocks.log
}
# one traced Large or Medium FP8 bench (ktrace.c), its table's head
kt_one() {         # NAME MODEL
    CUDA_INJECTION64_PATH=$G/bin/libktrace.so \
        KTRACE_OUT=/tmp/sd/kt-$1.csv bench $2 bench-kt-$1.log \
        "$2 fp8, traced ($1)" --precision fp8
    python3 tests/gpu/ktrace.py /tmp/sd/kt-$1.csv --skip 2 --top 45 \
        --timeline $L/kt-timeline-$1.txt > $L/kt-$1.txt 2>&1
    xz -T0 -1 -c /tmp/sd/kt-$1.csv > $L/kt-$1.csv.xz
    head -8 $L/kt-$1.txt | tee -a $summary
}
# session 36: the gated products' batch entries beside each other
# (SD_CUDA_GATE_FORK=1 then; env_steps' "off" logs take GF_ENV) against
# in turn ("on")
stage_gfork() {
    local m v=${GF_ENV:-SD_CUDA_GATE_FORK=1}
    for m in large medium; do
        randmodel $m
        txt2img_dump gf-$m $m
        eval "$v txt2img_dump gf-$m-fork $m"
        same_image gf-$m gf-$m-fork
    done
    run "test_pipeline (cuda-fp8), $v" pipeline-fork.log env \
        $v SD_TEST_DEVICE=cuda-fp8 $G/bin/test_pipeline
    gf_benches() {
        env_steps large gfl $v
        env_steps medium gfm $v
    }
    with_clocks $L/clocks.log 250 gf_benches
    bench_lines '' $L/bench-gf*.log | tee -a $summary
    clock_summary $L/clocks.log
    kt_one serial large
    eval "$v kt_one fork large"
}
# session 37: the checks added after session 36's last call (test_backend's
# gated FP8 product at 3 and 4 batch entries, profiled against not; every
# attention shape on 3 blocks), the pipeline tests, one seed's image in
# two processes, then s37b's benches (the call that ran this at ee8881a
# had Large's twice and Medium's, which did not build Medium's model)
stage_s37t() {
    backend_grep "linear_gate_add fp8|3 blocks|passed"
    pipeline_tests
    stage_sameseed
    stage_s37b
}
# session 37's second call: Medium's 28-step bench (the first call's did
# not build its model), then Large's again, with the clock
stage_s37b() {
    s37b_benches() {
        local r
        randmodel medium
        for r in 1 2; do
            bench medium bench-s37b-medium-$r.log \
                "medium fp8 28 steps ($r)" --precision fp8
        done
        randmodel large
        bench large bench-s37b-large.log "large fp8 28 steps" \
            --precision fp8
    }
    with_clocks $L/clocks.log 250 s37b_benches
    bench_lines '' $L/bench-s37b*.log | tee -a $summary
    clock_summary $L/clocks.log
}
# session 37: FA_IDLE as a call of its own (pack.sh
# PACK_FATTN_VARIANTS="idle0:-DFA_IDLE=0", PACK_BASE the revision before):
# the E4M3 kernel's SASS instructions each way (cuobjdump, where the
# machine has it), then stage xu with FA_VAR=idle0
stage_s37i() {
    local f k=_Z12fattn_kernelILi1EEv14CUtensorMap_stS0_S0_P13__nv_bfloat16iifPKfS4_Pfii
    if command -v cuobjdump > /dev/null; then
        for f in fattn_check fattn_check_xidle0; do
            cuobjdump -sass -fun $k $G/bin/$f > $L/sass-$f.txt 2>&1
            echo "$f: E4M3 kernel $(grep -cE '/\*[0-9a-f]{4}\*/' \
                $L/sass-$f.txt) SASS instructions" | tee -a $summary
        done
    fi
    FA_VAR=idle0 stage_xu
}
# session 37: gemm8's warpgroup index made warp-uniform (G8_WGU) against
# -DG8_WGU=0 (pack.sh PACK_G8_VARIANTS="wgu0:-DG8_WGU=0", PACK_BASE the
# revision before): gemm8_check at the GELU shape in turn, test_backend's
# hidden-layer lines, one seed's Large image, Large's 28-step benches in
# turn
stage_s37g() {
    bin_turns gemm8_check gemm8_check_xwgu0 ff-up
    grep -E '^\| ff-up' $L/gemm8_check*-[12].log | cut -c1-160 \
        | tee -a $summary
    backend_grep "E4M3 hidden layer|passed"
    image_vs_var s37g large
    var_steps large s37g 28
    bench_lines '' $L/bench-s37g*.log | tee -a $summary
}
# session 38's first call (prepared in session 37): the image stream's QKV
# product through gemm8.cu (SD_CUDA_G8_QKV=1) against cuBLASLt's: images
# both ways, test_backend, the FP8 pipeline tests with it, gemm8_check at
# the QKV and gated shapes (and the SASS of both check tools),
# Large/Medium 28-step benches in turn; and, where pack.sh built it,
# fattn_check against a variant in turn (session 38:
# PACK_FATTN_VARIANTS="cwu1:-DFA_CWU=1", a switch since removed)
stage_g8qkv() {
    env_images gq SD_CUDA_G8_QKV=1
    run "test_pipeline (cuda-fp8), SD_CUDA_G8_QKV=1" pipeline-g8qkv.log \
        env SD_CUDA_G8_QKV=1 SD_TEST_DEVICE=cuda-fp8 $G/bin/test_pipeline
    backend_grep "SD_CUDA_G8_QKV|passed"
    run "gemm8_check qkv" gemm8-qkv.log $G/bin/gemm8_check qkv m-qkv \
        ff-down out m-ff-down
    grep -E '^\| (m-)?(qkv|out|ff-down)' $L/gemm8-qkv.log | cut -c1-160 \
        | tee -a $summary
    if command -v cuobjdump > /dev/null; then
        cuobjdump -sass $G/bin/gemm8_check > $L/gemm8_check.sass 2>&1
        cuobjdump -sass $G/bin/fattn_check > $L/fattn_check.sass 2>&1
    fi
    if [ -x $G/bin/fattn_check_xcwu1 ]; then
        fattn_turns fattn_check_xcwu1
    fi
    gq_benches() {
        env_steps large gql SD_CUDA_G8_QKV=1
        env_steps medium gqm SD_CUDA_G8_QKV=1
    }
    with_clocks $L/clocks.log 250 gq_benches
    bench_lines '' $L/bench-gq*.log | tee -a $summary
    clock_summary $L/clocks.log
}
# session 39: the MMDiT's patch embedding as a gather and one cuBLASLt
# product (conv.cu's patch_conv) against cuDNN's convolution and a bias
# pass (SD_CUDA_PATCH_CUDNN=1): test_backend's conv lines, images both
# ways, the FP8 pipeline tests, Large traced (the step's first kernels),
# Large's 28-step benches in turn; then the QKV product by gemm8.cu
# (SD_CUDA_G8_QKV=1) against cuBLASLt's again, Large and Medium in turn
stage_s39() {
    backend_grep "conv|passed"
    env_images pc SD_CUDA_PATCH_CUDNN=1
    run "test_pipeline (cuda-fp8)" pipeline-cuda-fp8.log env \
        SD_TEST_DEVICE=cuda-fp8 $G/bin/test_pipeline
    tail -n 1 $L/pipeline-cuda-fp8.log | tee -a $summary
    randmodel large
    kt_bench large s39 bench-kt-s39.log "large fp8, traced" 8
    grep -E "conv|cutlass|patch_rows|nvjet_sm90_tst|bias_bf16" \
        $L/kt-s39.txt | head -8 | tee -a $summary
    s39_benches() {
        env_steps large pcl SD_CUDA_PATCH_CUDNN=1
        env_steps large gql SD_CUDA_G8_QKV=1
        env_steps medium gqm SD_CUDA_G8_QKV=1
    }
    with_clocks $L/clocks.log 250 s39_benches
    bench_lines '' $L/bench-pcl*.log $L/bench-gq*.log | tee -a $summary
    clock_summary $L/clocks.log
}
# session 39's second: the LayerNorm + modulate pass into E4M3 unpacking
# the row twice, not three times (fp8.cu's NM_UNPACK1), against PACK_BASE
# (the same bits expected): test_backend's norm lines, one seed's Large
# and Medium images against the base's, both passes under ncu each way,
# Large's and Medium's 8-step benches in turn
stage_s39n() {
    backend_grep "norm_modulate|passed"
    image_vs_var nmu large
    image_vs_var nmum medium
    ncu_nmqs
    var_steps large s39n
    var_steps medium s39m
    bench_lines '' $L/bench-s39?-*.log | tee -a $summary
}
# session 38: the gated products of E4M3 rows by gemm8.cu, every batch
# entry in one launch with the residual loaded by TMA into the epilogue
# (SD_CUDA_G8_GATE=1) against cuBLASLt's a batch entry: test_backend's
# check (against the E4M3 reference and cuBLASLt's), images both ways,
# the FP8 pipeline tests with it, Large/Medium 28-step benches in turn;
# Large with SD_CUDA_G8_QKV=1 too
stage_g8gate() {
    backend_grep "SD_CUDA_G8_GATE|passed"
    env_images gg SD_CUDA_G8_GATE=1
    run "test_pipeline (cuda-fp8), SD_CUDA_G8_GATE=1" pipeline-g8gate.log \
        env SD_CUDA_G8_GATE=1 SD_TEST_DEVICE=cuda-fp8 $G/bin/test_pipeline
    gg_benches() {
        env_steps large ggl SD_CUDA_G8_GATE=1
        env_steps large ggq "SD_CUDA_G8_GATE=1 SD_CUDA_G8_QKV=1"
        env_steps medium ggm SD_CUDA_G8_GATE=1
    }
    with_clocks $L/clocks.log 250 gg_benches
    bench_lines '' $L/bench-gg*.log | tee -a $summary
    clock_summary $L/clocks.log
}
# the same, traced (ktrace: each kernel's time under load, lanes) each
# way, then Large's benches in turn. Session 38 also ran a third way, the
# gemm8 gated products' blocks capped at 122 SMs (a knob since removed:
# 62.59 / 62.70 ms against 62.49 / 62.19 uncapped, 61.13 / 60.80 for
# cuBLASLt's)
stage_ggkt() {
    local v
    randmodel large
    for v in off on; do
        ( [ $v = on ] && export SD_CUDA_G8_GATE=1
          kt_bench large $v bench-ggkt-$v.log "large fp8, traced, gate $v" 8 )
    done
    env_steps large ggs SD_CUDA_G8_GATE=1
    bench_lines '' $L/bench-ggkt-*.log $L/bench-ggs-*.log | tee -a $summary
}
stage_s35t() {     # test_backend's E4M3 hidden-layer checks
    backend_grep "E4M3 hidden layer"
}
stage_s35() {
    stage_g8gelu
    backend_grep "E4M3 hidden layer"
    stage_s34ab
}
# session 29's table: its figures alone (the kernels' checks ran in s29b)
stage_final29() {
    table_figures
}
# session 29: the QKV split's tiles from one source with one base and
# fixed strides: test_backend, one seed's image against PACK_BASE's (the
# same bits expected), the kernels under ncu, Large's 8-step benches in
# turn
stage_s29c() {
    backend_grep qkv_split
    image_vs_var qsone
    ncu_nmqs
    var_steps large s29c
    bench_lines '' $L/bench-s29c*.log | tee -a $summary
}
stage_devicefault() {
    local m port=7870
    run "test_group (cuda-fp8)" group-cuda-fp8.log env \
        SD_TEST_DEVICE=cuda-fp8 $G/bin/test_group
    grep -E "fault|FAIL" $L/group-cuda-fp8.log | head -5 | tee -a $summary
    randmodel large
    for m in tiny large; do
        local dir=/dev/shm/sd-large size=1024 steps=4
        [ $m = tiny ] && dir=/tmp/sd/fixtures/tiny-sd35-large size=256
        # the worker (nobody under a root master) takes the file away
        mkdir -p /tmp/sd/gates-$m && chmod 777 /tmp/sd/gates-$m
        PREC=fp8 SERVE_EXTRA="sd_test_gate /tmp/sd/gates-$m;" \
            serve $dir $m $port
        run "device fault through nginx ($m)" devfault-$m.log python3 \
            tests/gpu/device_fault.py http://127.0.0.1:$port \
            /tmp/sd/gates-$m /tmp/sd/serve-$m/logs/error.log \
            --size $size --steps $steps
        cp /tmp/sd/serve-$m/logs/error.log $L/devfault-$m-error.log
        /tmp/ngx/usr/sbin/nginx -p /tmp/sd/serve-$m/ -c nginx.conf -s quit
        grep -E '^\|' $L/devfault-$m.log | tee -a $summary
        port=$((port + 1))
    done
}
stage_s27c() {         # the attention's ncu samples (the tree's kernel),
                       # then Large through nginx with http_bench's
                       # http.client rows
    stage_fattnstall
    randmodel large
    ERRLOG_LEVEL=info nginx_large_fp8
    phase_lines $L/nginx-large-fp8-error.log
}
stage_lanesab() {      # Medium's and Large's 8-step FP8 benches with
                       # the text lane's products held to N SMs
                       # (SD_CUDA_LANE1_SMS; 0: all), in turn, twice
    local m r n
    for m in medium large; do
        randmodel $m
        for r in 1 2; do
            for n in 0 16 33 66; do
                SD_CUDA_LANE1_SMS=$n bench $m bench-lanes-$m-$n-$r.log \
                    "$m fp8 8 steps, lane 1 on ${n} SMs ($r)" \
                    --precision fp8 --steps 8
            done
        done
    done
    bench_lines '' $L/bench-lanes-*.log | tee -a $summary
}
stage_final26() {      # session 26's last call (little device time
                       # left): the pipeline tests, then the table's
                       # figures (table_figures)
    pipeline_tests
    table_figures
}
stage_final25() {      # session 25's last call: test_backend, the
                       # pipeline and group tests, nmab, Large FP8's bench,
                       # nginx (info log), Turbo, diffusers' two runs,
                       # Medium
    run "test_backend" backend.log $G/bin/test_backend
    grep -E "norm_modulate -> E4M3|randn" $L/backend.log | tee -a $summary
    pipeline_tests
    stage_group
    stage_nmab
    table_figures
}
stage_final24() {      # session 24's last call, slimmer than final23:
                       # the pipeline and group tests, Large FP8's bench,
                       # nginx (info log), Turbo, diffusers' two runs,
                       # Medium, PACK_BASE's bench, then nginxab
    pipeline_tests
    stage_group
    table_figures
    if [ -x $G/bin/sd-cli-var ]; then
        SDCLI=$G/bin/sd-cli-var bench large bench-large-fp8-base.log \
            "bench large fp8, base revision" --precision fp8
    fi
    stage_nginxab
}
stage_setuptrace() {   # a Large image's setup by part (sd-cli-var built
                       # with PACK_VARIANT_CFLAGS=-DSD_PIPE_TRACE)
    randmodel large
    SDCLI=$G/bin/sd-cli-var bench large bench-trace.log "large fp8 trace" \
        --precision fp8 --steps 4
    grep -E "^trace" $L/bench-trace.log
}
stage_pipetests() {    # the pipeline goldens in BF16 and FP8 (graphs too)
    pipeline_tests
}
stage_medprof() {      # Medium FP8, 2 steps, every op on one lane, timed
    randmodel medium
    SD_CUDA_NO_LANES=1 bench medium bench-medium-prof.log \
        "medium fp8 2 steps, one lane, profile" --precision fp8 --steps 2 \
        --profile 1
}
stage_largeprof() {    # Large FP8, 2 steps, every op on one lane, timed
    randmodel large
    SD_CUDA_NO_LANES=1 bench large bench-large-prof.log \
        "large fp8 2 steps, one lane, profile" --precision fp8 --steps 2 \
        --profile 1
}
stage_encab() {        # text encoding: the tree against PACK_BASE
    local r v
    if [ "${ENCAB_BACKEND:-1}" = 1 ]; then
        run "test_backend" backend.log $G/bin/test_backend
        grep -E "gated|embed" $L/backend.log
    fi
    encoder_tests
    pipeline_tests
    randmodel large
    for r in 1 2; do
        for v in tree base; do
            SDCLI=$G/bin/sd-cli$([ $v = base ] && echo -var) \
                bench large bench-enc-$v-$r.log \
                "large fp8 2 steps, $v ($r)" --precision fp8 --steps 2
        done
    done
    bench_lines 'text enc|whole process' $L/bench-enc-*.log
}
stage_devsampler() {   # Euler's latents on the device against the host
    randmodel large
    randmodel medium
    ab_benches SD_PIPE_HOST_SAMPLER host dev
    bench_lines 'VAE' $L/bench-large-host-*.log $L/bench-large-dev-*.log \
        $L/bench-medium-*.log
}
stage_final22() {      # session 22's last call: its checks, then last
    local v
    encoder_tests
    pipeline_tests
    grep -E "graphs|device sampler" $L/pipeline-*.log | head
    stage_last
    for v in host dev host dev; do
        (
            [ $v = host ] && export SD_PIPE_HOST_SAMPLER=1
            bench large bench-ds-large-$v.log "large fp8, sampler $v" \
                --precision fp8
        )
    done
    for v in host dev; do
        (
            [ $v = host ] && export SD_PIPE_HOST_SAMPLER=1
            bench medium bench-ds-medium-$v.log "medium fp8, sampler $v" \
                --precision fp8
        )
    done
    bench_lines 'text enc|VAE' $L/bench-ds-*.log
    stage_tcachemem
}
stage_tcachemem() {    # GPU memory before and after the text cache fills
    randmodel large
    PREC=fp8 serve /dev/shm/sd-large large 7863
    run "text cache filling: GPU memory" tcache-mem.log python3 - <<'PYEOF'
import re, time, requests
u = 'http://127.0.0.1:7863'
def body(p):
    return {'prompt': p, 'steps': 1, 'width': 64, 'height': 64}
for _ in range(600):
    try:
        if requests.post(u + '/sdapi/v1/txt2img', json=body('x'),
                         timeout=600).status_code == 200:
            break
    except requests.RequestException:
        pass
    time.sleep(1)
def used():
    m = requests.get(u + '/metrics').text
    return sum(float(x) for x in re.findall(
        r'^sd_gpu_memory_used_bytes\{[^}]*\} (\S+)', m, re.M))
time.sleep(2.5)
before = used()
for i in range(40):
    r = requests.post(u + '/sdapi/v1/txt2img', json=body(f'prompt {i}'),
                      timeout=600)
    assert r.status_code == 200, r.text[:300]
time.sleep(2.5)
after = used()
print(f'| GPU memory in use before / after 40 new prompts (text cache 32) '
      f'| {before / 2**30:.3f} / {after / 2**30:.3f} GiB |')
PYEOF
    grep -E "^\|" $L/tcache-mem.log | tee -a $summary
    /tmp/ngx/usr/sbin/nginx -p /tmp/sd/serve-large/ -c nginx.conf -s quit
    sleep 3
}
stage_turboprof() {    # Large FP8 at 4 steps, cfg 1, every op timed
    randmodel large
    bench large bench-turbo-prof.log "bench large fp8, 4 steps cfg 1, profile" \
        --precision fp8 --steps 4 --cfg 1 --profile 1
}
vae_goldens() {        # the VAE and pipeline goldens in BF16 and FP8
    for dev in cuda-bf16 cuda-fp8; do
        for t in vae pipeline; do
            run "test_$t ($dev)" "$t-$dev.log" env SD_TEST_DEVICE=$dev \
                $G/bin/test_$t
        done
    done
}
stage_verify() {       # the last call of a session: tests and figures
    run "test_backend" backend.log $G/bin/test_backend
    vae_goldens
    stage_offload
    nginx_large_fp8
}
# batching across requests through nginx: sd_batch 1 (each request
# alone) against sd_batch BATCH_N (4) at 1, 4 and 8 clients, for each size
# of BATCH_SIZES (1024 512); the report ($OUT/batch/SIZE/scale.md) gives
# images/min against one request at a time, and 4 clients with sd_batch
# over it against the 1.15x target. BATCH_MODEL (large), BATCH_PRECISION
# (fp8), BATCH_DURATION (s per level, 20), BATCH_LEVELS (1,4,8)
stage_batch() {
    local m=${BATCH_MODEL:-large} pr=${BATCH_PRECISION:-fp8} s b o
    local d=/dev/shm/sd-${BATCH_MODEL:-large} args
    randmodel $m
    for s in ${BATCH_SIZES:-1024 512}; do
        o=$OUT/batch/$s
        mkdir -p $o
        args="--duration ${BATCH_DURATION:-20} --steps ${BATCH_STEPS:-28}
              --width $s --height $s --levels ${BATCH_LEVELS:-1,4,8}"
        for b in 1 ${BATCH_N:-4}; do
            serve_workers $d b$b-$s 7874 1 cuda:0 $pr "sd_batch $b;"
            run "batch: $m $pr ${s}^2, sd_batch $b" batch-$s-$b.log \
                python3 tests/gpu/scale_bench.py run http://127.0.0.1:7874 \
                --label "sd_batch $b" $args --out $o/b$b.json
            stop_workers b$b-$s 7874
        done
        run "batch report ${s}^2" batch-report-$s.log python3 \
            tests/gpu/scale_bench.py report $o/b1.json $o/b${BATCH_N:-4}.json \
            --out $o --at 4 --target 1.15
        cat $L/batch-report-$s.log
    done
}

# the group test on the GPU: images of shared passes against alone
stage_group() {
    for dev in cuda-bf16 cuda-fp8; do
        run "test_group ($dev)" group-$dev.log env SD_TEST_DEVICE=$dev \
            $G/bin/test_group
    done
    grep -h "largest difference\|FAIL" $L/group-*.log
}

# what one forward pass of several images gains over one image a pass:
# the ceiling of batching requests (BATCH_STEPS steps, default 12)
stage_batchceil() {
    for m in ${CEIL_MODELS:-large medium}; do
        randmodel $m
        for b in 1 2 4; do
            bench $m bench-$m-fp8-b$b-${CEIL_SIZE:-1024}.log \
                "bench $m fp8 ${CEIL_SIZE:-1024}^2, batch $b" \
                --precision fp8 --steps ${CEIL_STEPS:-12} --batch $b \
                --width ${CEIL_SIZE:-1024} --height ${CEIL_SIZE:-1024}
        done
    done
}
stage_vaemem() {       # the decoder's goldens and the workspace it sets
    vae_goldens
    randmodel large
    run "bench large fp8" bench-large-fp8.log $G/bin/sd-cli bench \
        --model /dev/shm/sd-large --precision fp8 --runs 2
}
stage_sweeptiny() {
    run "fp8-sweep tiny large" sweep-tiny-large.log $G/bin/sd-cli fp8-sweep \
        --model $SD_FIXTURES/tiny-sd35-large --width 256 --height 256
    run "fp8-sweep tiny medium" sweep-tiny-medium.log $G/bin/sd-cli \
        fp8-sweep --model $SD_FIXTURES/tiny-sd35-medium --width 256 \
        --height 256
}

stage_sweep() {
    run "fp8-sweep tiny large" sweep-tiny-large.log $G/bin/sd-cli fp8-sweep \
        --model $SD_FIXTURES/tiny-sd35-large --width 256 --height 256
    run "fp8-sweep tiny medium" sweep-tiny-medium.log $G/bin/sd-cli \
        fp8-sweep --model $SD_FIXTURES/tiny-sd35-medium --width 256 \
        --height 256
    randmodel large
    run "fp8-sweep large" sweep-large.log $G/bin/sd-cli fp8-sweep \
        --model /dev/shm/sd-large --prompts tests/gpu/sweep_prompts.txt
    randmodel medium
    run "fp8-sweep medium" sweep-medium.log $G/bin/sd-cli fp8-sweep \
        --model /dev/shm/sd-medium --prompts tests/gpu/sweep_prompts.txt \
        --kinds mmdit
}

stage_demo() {
    $G/bin/sd-cli make-demo /tmp/sd/demo > /dev/null
    run "bench demo 1024 bf16" bench-demo.log $G/bin/sd-cli bench \
        --model /tmp/sd/demo --device cuda --width 1024 --height 1024 \
        --steps 10 --runs 2
}

# nginx serving MODEL with WORKERS workers on DEVICE (sd_device: "cuda"
# puts worker N on GPU N), the access log in the sd format of
# docker/nginx.conf.template
serve_workers() {   # model-dir name port workers device precision [http]
    local p=/tmp/sd/serve-$2
    mkdir -p /tmp/ngx $p/logs $p/tmp /var/lib/nginx
    for deb in $G/debs/*.deb; do dpkg -x "$deb" /tmp/ngx; done
    cat > $p/nginx.conf <<EOF
load_module $G/bin/ngx_http_sd_module.so;
worker_processes $4;
error_log logs/error.log notice;
pid nginx.pid;
thread_pool sd threads=4 max_queue=256;
events { worker_connections 1024; }
http {
    log_format sd '\$remote_addr [\$time_local] "\$request" \$status '
                  '\$request_time tenant=\$sd_tenant task=\$sd_task_id '
                  'size=\$sd_size steps=\$sd_steps images=\$sd_images '
                  'wait=\$sd_queue_wait gen=\$sd_gen_time worker=\$sd_worker';
    access_log logs/access.log sd;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    client_max_body_size 16m;
    sd_model $2 $1 default;
    sd_device $5;
    sd_precision $6;
    sd_thread_pool sd;
    sd_queue_size 64;
    ${7:-}
    server {
        listen 127.0.0.1:$3;
        location /sdapi/v1/ { sd_api; }
        location /internal/ { sd_api; }
        location = /metrics { sd_metrics; }
    }
}
EOF
    /tmp/ngx/usr/sbin/nginx -p $p/ -c nginx.conf -e $p/logs/error.log \
        -g "daemon on;"
}

# stops the server of serve_workers (its metrics and logs kept) and waits
# until it has exited, so that its GPUs are free
stop_workers() {    # name port
    local p=/tmp/sd/serve-$1 i
    curl -s "http://127.0.0.1:$2/metrics" > "$L/metrics-$1.txt"
    cp $p/logs/error.log "$L/nginx-$1-error.log"
    cp $p/logs/access.log "$L/nginx-$1-access.log"
    /tmp/ngx/usr/sbin/nginx -p $p/ -c nginx.conf -s quit
    for i in $(seq 120); do [ -f $p/nginx.pid ] || break; sleep 1; done
}

# several GPUs: the same model on 1 GPU, then one worker per GPU on 2,
# under sustained load at 1024x1024; the report, the plot (scale.svg, and
# scale.png where matplotlib is), the JSON, the 2-GPU metrics and access
# log go to $OUT/scale. Env: SCALE_MODEL (large), SCALE_PRECISION (bf16),
# SCALE_STEPS (28), SCALE_DURATION (s per level, 45), SCALE_LEVELS1
# (1,2,4), SCALE_LEVELS2 (1,2,4,8).
stage_scale() {
    local m=${SCALE_MODEL:-large} pr=${SCALE_PRECISION:-bf16}
    local d=/dev/shm/sd-${SCALE_MODEL:-large} o=$OUT/scale
    local args="--duration ${SCALE_DURATION:-45} --steps ${SCALE_STEPS:-28}"
    mkdir -p $o
    nvidia-smi -L > $o/gpus.txt 2>&1
    [ -f $d/model_index.json ] || run "make-random $m" random-$m.log \
        $G/bin/sd-cli make-random --config $m $d
    serve_workers $d s1 7871 1 cuda:0 $pr
    run "scale: $m $pr, 1 GPU" scale-1.log python3 tests/gpu/scale_bench.py \
        run http://127.0.0.1:7871 --label "1 GPU" \
        --levels ${SCALE_LEVELS1:-1,2,4} $args --out $o/scale-1.json
    stop_workers s1 7871
    serve_workers $d s2 7872 2 cuda $pr
    run "scale: $m $pr, 2 GPUs" scale-2.log python3 \
        tests/gpu/scale_bench.py run http://127.0.0.1:7872 --label "2 GPUs" \
        --levels ${SCALE_LEVELS2:-1,2,4,8} $args --out $o/scale-2.json
    stop_workers s2 7872
    cp $L/metrics-s2.txt $L/nginx-s2-access.log $L/nginx-s2-error.log $o/
    run "scale report (>= 1.9x)" scale-report.log python3 \
        tests/gpu/scale_bench.py report $o/scale-1.json $o/scale-2.json \
        --out $o
    cat $L/scale-report.log
}

# capacity planning: images per minute of one GPU at 1024x1024 for each
# model and precision (CAP_MODELS "large medium", CAP_PRECISIONS "bf16";
# add fp8 once the engine has it), 2 clients back to back; JSON and table
# in $OUT/capacity
stage_capacity() {
    local m pr d o=$OUT/capacity files=
    mkdir -p $o
    for m in ${CAP_MODELS:-large medium}; do
        d=/dev/shm/sd-$m
        [ -f $d/model_index.json ] || run "make-random $m" random-$m.log \
            $G/bin/sd-cli make-random --config $m $d
        for pr in ${CAP_PRECISIONS:-bf16}; do
            serve_workers $d cap-$m-$pr 7873 1 cuda:0 $pr
            run "capacity: $m $pr" cap-$m-$pr.log python3 \
                tests/gpu/scale_bench.py run http://127.0.0.1:7873 \
                --label "$m $pr" --levels 2 \
                --duration ${CAP_DURATION:-45} --steps ${CAP_STEPS:-28} \
                --out $o/$m-$pr.json
            stop_workers cap-$m-$pr 7873
            [ -f $o/$m-$pr.json ] && files="$files $o/$m-$pr.json"
        done
    done
    [ -n "$files" ] && python3 tests/gpu/scale_bench.py report $files \
        --out $o > /dev/null
    cat $o/scale.md
}

# ComfyUI's layout from a writer that is not ours, on the GPU: the issue's
# "an FP8 checkpoint in ComfyUI's layout written by a script that is not
# ours loads and matches quantize-at-load". tests/gpu/comfy_fp8.py writes
# the random Large's transformer in both forms (comfy_quant: its casts on
# the CPU, read and written by the script itself; scaled_fp8: casts on the
# GPU, the safetensors package), sd-cli fp8-check compares each with
# quantize-at-load (on the CPU, in the background), fp8-model makes a
# folder of the scaled_fp8 file, and one request (1024x1024, COMFY_STEPS
# steps (28), cfg 4.5, seed 7) runs from it in FP8 on the GPU, from the
# BF16 folder quantized at load (per channel, on the GPU), and in BF16;
# dump_cmp.py compares their final latents and images; once the checks are
# done, sd-cli bench times both FP8 folders alone. The table prints last
# (and goes to comfy.md), the two FP8 images go to $OUT. A random Large,
# two 8 GB files and two checks of them: run it alone in a device call.
stage_comfy() {
    local d=/dev/shm/sd-large c=/dev/shm/comfy-large s=${COMFY_STEPS:-28}
    local m form dev io name dir prec a b checks=
    randmodel large
    # COMFY_FORMS: form:device:flags of each file written (both by default)
    for m in ${COMFY_FORMS:-comfy_quant:cpu:--own-io scaled_fp8:cuda:}; do
        IFS=: read -r form dev io <<< "$m"
        STAGE_TIMEOUT=${COMFY_TIMEOUT:-400} run "comfy_fp8.py large ($form)" \
            comfy-write-$form.log python3 tests/gpu/comfy_fp8.py $d \
            $c-$form.safetensors --form $form --device $dev $io
        STAGE_TIMEOUT=${COMFY_TIMEOUT:-400} run "fp8-check large ($form)" \
            comfy-check-$form.log $G/bin/sd-cli fp8-check $d \
            $c-$form.safetensors &
        checks="$checks $!"
    done
    rm -rf $c-model
    run "fp8-model large (scaled_fp8 file)" comfy-model.log $G/bin/sd-cli \
        fp8-model $c-model --base $d --file $c-scaled_fp8.safetensors
    for m in file:$c-model:fp8 load:$d:fp8 bf16:$d:bf16; do
        IFS=: read -r name dir prec <<< "$m"
        run "txt2img large $prec ($name)" comfy-txt2img-$name.log \
            $G/bin/sd-cli txt2img --model $dir --device cuda \
            --precision $prec --prompt "a futuristic cityscape at sunset" \
            --width 1024 --height 1024 --steps $s --cfg 4.5 --seed 7 \
            --output /tmp/sd/comfy-$name.png \
            --dump /tmp/sd/comfy-$name.safetensors
    done
    for m in file:load file:bf16 load:bf16; do
        IFS=: read -r a b <<< "$m"
        run "dump_cmp $a vs $b" comfy-cmp-$a-$b.log python3 \
            tests/gpu/dump_cmp.py /tmp/sd/comfy-$a.safetensors \
            /tmp/sd/comfy-$b.safetensors
    done
    wait $checks
    rm -f $c-comfy_quant.safetensors        # /dev/shm is memory
    run "bench large fp8 (quantize-at-load)" comfy-bench-load.log \
        $G/bin/sd-cli bench --model $d --precision fp8 --runs 2 --steps $s
    run "bench large fp8 (scaled_fp8 file)" comfy-bench-file.log \
        $G/bin/sd-cli bench --model $c-model --precision fp8 --runs 2 \
        --steps $s
    cp /tmp/sd/comfy-file.png /tmp/sd/comfy-load.png "$OUT/" 2>/dev/null
    rm -rf $c-model $c-scaled_fp8.safetensors
    comfy_table $s | tee $L/comfy.md
}

# the comfy stage's logs as one table (a value missing reads empty)
comfy_table() {     # steps
    local r
    cell() {        # log row: the value of the bench row starting with row
        grep -F "| $2" "$L/$1" 2>/dev/null | head -1 \
            | awk -F'|' '{ gsub(/^ +| +$/, "", $3); print $3 }'
    }
    label() {       # log row: the whole label of that row, else row
        grep -F "| $2" "$L/$1" 2>/dev/null | head -1 \
            | awk -F'|' '{ gsub(/^ +| +$/, "", $2); print $2 }' | grep . \
            || echo "$2"
    }
    val() {         # log key: the value of a dump_cmp.py line
        awk -v k="$2" '$1 == k { print $2 }' "$L/$1" 2>/dev/null
    }
    check() {       # form: fp8-check's transformer row
        awk '$1 == "transformer" { printf "%s / %s / %s / %s / %s", $2, $3,
             $4, $5, $6 }' "$L/comfy-check-$1.log" 2>/dev/null
    }
    wrote() {       # form: size and time of comfy_fp8.py's file
        local f=$L/comfy-write-$1.log
        echo "$(grep -oE '[0-9.]+ GiB' $f 2>/dev/null) in" \
             "$(grep -oE '[0-9.]+ s$' $f 2>/dev/null)"
    }
    echo
    echo "| Large, 1024x1024, $1 steps, cfg 4.5, seed 7, FP8 on the GPU |" \
         "BF16 folder, quantize-at-load | ComfyUI scaled_fp8 file" \
         "(comfy_fp8.py) |"
    echo "| --- | --- | --- |"
    echo "| comfy_fp8.py: size, time (scaled_fp8: casts on cuda," \
         "safetensors; comfy_quant: cpu, own I/O) | |" \
         "$(wrote scaled_fp8); comfy_quant: $(wrote comfy_quant) |"
    echo "| fp8-check, transformer: tensors / missing / =load / vs BF16 /" \
         "vs load | | $(check scaled_fp8); comfy_quant:" \
         "$(check comfy_quant) |"
    echo "| final latents vs quantize-at-load, rel. L2 | 0 |" \
         "$(val comfy-cmp-file-load.log final_latents_rel_l2) |"
    echo "| latents after step 1 vs quantize-at-load, rel. L2 | 0 |" \
         "$(val comfy-cmp-file-load.log step0_rel_l2) |"
    echo "| image vs quantize-at-load, PSNR (dB) | |" \
         "$(val comfy-cmp-file-load.log image_psnr_db) |"
    echo "| final latents vs BF16, rel. L2 |" \
         "$(val comfy-cmp-load-bf16.log final_latents_rel_l2) |" \
         "$(val comfy-cmp-file-bf16.log final_latents_rel_l2) |"
    echo "| image vs BF16, PSNR (dB) |" \
         "$(val comfy-cmp-load-bf16.log image_psnr_db) |" \
         "$(val comfy-cmp-file-bf16.log image_psnr_db) |"
    for r in "load (weights" "denoising step, median" "end to end" \
             "weights: transformer" "weights: text encoders" \
             "activation workspace" "GPU memory in use" "backend memory"; do
        grep -qF "| $r" "$L/comfy-bench-load.log" \
                        "$L/comfy-bench-file.log" 2>/dev/null || continue
        echo "| bench: $(label comfy-bench-load.log "$r") |" \
             "$(cell comfy-bench-load.log "$r") |" \
             "$(cell comfy-bench-file.log "$r") |"
    done
}

for s in "${@:-check}"; do
    stage_$s
done
echo "== summary"
cat "$summary"
tar czf "$OUT/logs.tgz" -C $L .
for f in $L/*.log; do
    grep -E '^FAIL|^\| ' "$f" | head -40
done
