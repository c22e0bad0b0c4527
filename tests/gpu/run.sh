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
# engine, serving MODEL on the GPU; the HTTP client times txt2img
serve() {       # model-dir name port
    local p=/tmp/sd/serve-$2
    mkdir -p /tmp/ngx $p/logs $p/tmp /var/lib/nginx
    for d in $G/debs/*.deb; do dpkg -x "$d" /tmp/ngx; done
    sed -e "s#^\( *sd_model  *\)[^ ]*  *[^ ;]*#\1$2 $1#" \
        -e "s#^load_module .*;#load_module $G/bin/ngx_http_sd_module.so;#" \
        -e "s#sd_device       cpu;#sd_device cuda; sd_precision ${PREC:-bf16};#" \
        -e "s#127\.0\.0\.1:7860#127.0.0.1:$3#" \
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

for s in "${@:-check}"; do
    stage_$s
done
echo "== summary"
cat "$summary"
tar czf "$OUT/logs.tgz" -C $L .
for f in $L/*.log; do
    grep -E '^FAIL|^\| ' "$f" | head -40
done
