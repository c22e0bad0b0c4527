#!/bin/bash
# tests/gpu/run.sh: on the GPU machine, with .dev/gpu from pack.sh carried.
# Unpacks, then runs the stages named (default: check):
#   check   the backend's op tests (GPU against the CPU reference) and the
#           golden stage tests on the GPU in F32 and BF16
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
    "$@" > "$log" 2>&1
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
        -e "s#sd_device       cpu;#sd_device cuda; sd_precision bf16;#" \
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
