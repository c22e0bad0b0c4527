#!/bin/sh
# tests/gpu/sampler_ref.sh: the sampler reference data (sampler_ref.py)
# and the img2img / inpainting one (img2img_ref.py).
#   pack DIFFUSERS_GIT_DIR [KDIFFUSION_GIT_DIR]  here: fixtures, diffusers'
#        source (schedulers, SD3 pipelines) and k_diffusion (needed by run
#        only) into .dev/sref
#   run                                          on the GPU machine (CPU
#        work, PyTorch from /opt/torch/.venv): writes
#        $OUT/sampler_ref.safetensors
#   img2img                                      the same way: writes
#        $OUT/img2img_ref.safetensors (tests/data/ takes it)
set -eu
cd "$(dirname "$0")/../.."
d=.dev/sref
case "${1:-}" in
pack)
    fx=${SD_FIXTURES:-../shared/fixtures}
    rm -rf "$d" && mkdir -p "$d/ref" "$d/kd"
    git --git-dir="$2" archive HEAD src/diffusers | tar x -C "$d/ref"
    (cd "$d/ref/src/diffusers/pipelines" && ls -d */ \
        | grep -v '^stable_diffusion_3/\|^stable_diffusion/' \
        | xargs rm -rf)
    rm -rf "$d/ref/src/diffusers/modular_pipelines"/*
    if [ -n "${3:-}" ]; then
        git --git-dir="$3" archive HEAD k_diffusion | tar x -C "$d/kd"
    fi
    tar cf - -C "$(dirname "$fx")" "$(basename "$fx")" | xz -1 -T0 \
        > "$d/fixtures.tar.xz"
    tar cf - -C "$d" ref kd | xz -T0 -6 > "$d/src.tar.xz"
    rm -rf "$d/ref" "$d/kd"
    du -sh "$d"
    ;;
run|img2img)
    t=/tmp/sref
    mkdir -p $t "${OUT:-/tmp/out}"
    # the fixtures from here or from pack.sh's folder (one copy carried)
    if [ -f "$d/fixtures.tar.xz" ]; then
        tar xJf "$d/fixtures.tar.xz" -C $t
    else
        tar xJf .dev/gpu/fixtures.tar.xz -C $t
    fi
    tar xJf "$d/src.tar.xz" -C $t
    py=/opt/torch/.venv/bin/python3
    [ -x $py ] || py=python3
    if [ "$1" = img2img ]; then
        PYTHONPATH=$t/ref/src OMP_NUM_THREADS=8 $py tests/gpu/img2img_ref.py \
            $t/fixtures "${OUT:-/tmp/out}/img2img_ref.safetensors"
    else
        PYTHONPATH=$t/ref/src OMP_NUM_THREADS=8 $py \
            tests/gpu/sampler_ref.py $t/fixtures $t/kd \
            "${OUT:-/tmp/out}/sampler_ref.safetensors"
    fi
    ;;
*)
    echo "usage: $0 pack DIFFUSERS_GIT_DIR [KDIFFUSION_GIT_DIR]" \
         "| run | img2img" >&2
    exit 2
    ;;
esac
