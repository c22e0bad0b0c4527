#!/bin/sh
# tests/gpu/pack.sh: build here (nvcc needed) and pack what the GPU machine
# needs into .dev/gpu (ignored by git; carried by the device call): the
# binaries, the module, the shared libraries they load that the GPU image
# lacks (cJSON, libpng, utf8proc, OpenBLAS), nginx's Debian packages, the
# fixtures, the reference scripts and the diffusers source when present.
# Usage: tests/gpu/pack.sh [DIFFUSERS_GIT_DIR]
set -eu
cd "$(dirname "$0")/../.."
fx=${SD_FIXTURES:-../shared/fixtures}
out=.dev/gpu
make -j"$(nproc)" all module >/dev/null
rm -rf "$out" && mkdir -p "$out/lib" "$out/bin" "$out/debs"
cp build/sd-cli build/ngx_http_sd_module.so "$out/bin/"
cp build/tests/test_* "$out/bin/"
# the own attention kernel alone (sm_90a), for tests/gpu/run.sh fattn;
# ptxas saying it serialized the kernel's wgmma (C7511: too few registers
# for the products to overlap the softmax) stops the pack
nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -Iengine \
    -o "$out/bin/fattn_check" tests/gpu/fattn_check.cu kernels/fattn.cu \
    2> "$out/fattn-ptxas.txt" || { cat "$out/fattn-ptxas.txt"; exit 1; }
if grep -q C7511 "$out/fattn-ptxas.txt"; then
    cat "$out/fattn-ptxas.txt" >&2
    echo "pack: ptxas serialized fattn_kernel's wgmma" >&2
    exit 1
fi
rm -f "$out/fattn-ptxas.txt"
# a variant with three E4M3 K/V stages (the kernel's are four)
nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -Iengine \
    -DFA_STAGES8=3 -o "$out/bin/fattn_check_s3" tests/gpu/fattn_check.cu \
    kernels/fattn.cu
# PACK_VARIANT="-DX=Y ...": sd-cli-var, test_backend_var and fattn_check_var
# built with those flags on the kernels of PACK_VARIANT_SRC (default
# kernels/fattn.cu), for run.sh var to time against the default in one call;
# PACK_VARIANT_CFLAGS="-DX=Y ...": the same for C sources of
# PACK_VARIANT_SRC (engine/pipeline.c ...)
if [ "${PACK_VARIANT:-}${PACK_VARIANT_CFLAGS:-}" ]; then
    v=.dev/build-var
    rm -rf $v && cp -a build $v && rm -f $v/libsd.a $v/sd-cli
    for f in ${PACK_VARIANT_SRC:-kernels/fattn.cu}; do
        rm -f "$v/${f%.*}.o"
    done
    rm -f $v/tests/test_backend
    CFLAGS="-O2 -g ${PACK_VARIANT_CFLAGS:-}" make BUILD=$v NVFLAGS="-O3 -std=c++17 \$(CUDA_ARCH) -Xcompiler \
-fPIC,-Wall,-Wextra -Iengine ${PACK_VARIANT:-}" $v/sd-cli $v/tests/test_backend \
        >/dev/null
    cp $v/sd-cli "$out/bin/sd-cli-var"
    cp $v/tests/test_backend "$out/bin/test_backend_var"
    nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -Iengine \
        ${PACK_VARIANT:-} -o "$out/bin/fattn_check_var" tests/gpu/fattn_check.cu \
        kernels/fattn.cu
fi
# PACK_BASE=REV: sd-cli-var, test_backend_var and ngx_http_sd_module_var.so
# built from revision REV instead (a worktree in .dev/base), for run.sh
# varbench and nginxab to time the tree against it in one call
if [ "${PACK_BASE:-}" ]; then
    b=.dev/base
    rm -rf $b && git worktree prune
    git worktree add -f --detach $b "$PACK_BASE" >/dev/null 2>&1
    make -C $b -j"$(nproc)" build/sd-cli build/tests/test_backend >/dev/null
    make -C $b module >/dev/null
    cp $b/build/sd-cli "$out/bin/sd-cli-var"
    cp $b/build/tests/test_backend "$out/bin/test_backend_var"
    cp $b/build/ngx_http_sd_module.so "$out/bin/ngx_http_sd_module_var.so"
    rm -rf $b && git worktree prune
fi
# variants LIST TOOL NVCC-ARGS...: for each "name:-DX=1,-DY=2" of LIST,
# bin/TOOL_x<name> built from NVCC-ARGS with those flags
variants() {
    local list=$1 tool=$2 nv
    shift 2
    for nv in $list; do
        nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -Iengine \
            $(echo "${nv#*:}" | tr , ' ') -o "$out/bin/${tool}_x${nv%%:*}" \
            "$@"
    done
}
# PACK_FATTN_VARIANTS="name:-DX=1,-DY=2 ...": fattn_check_x<name> each
variants "${PACK_FATTN_VARIANTS:-}" fattn_check tests/gpu/fattn_check.cu \
    kernels/fattn.cu
# the recordings' memset nodes as kernels (kernels/graph.cu)
nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a \
    -o "$out/bin/graph_check" tests/gpu/graph_check.cu kernels/graph.cu
# the own FP8 product against cuBLASLt (run.sh gemm8, g8gelu)
nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -Iengine \
    -DG8_STANDALONE -o "$out/bin/gemm8_check" tests/gpu/gemm8_check.cu \
    kernels/gemm8.cu -lcublasLt
# PACK_G8_VARIANTS="name:-DX=1,-DY=2 ...": gemm8_check_x<name> each
variants "${PACK_G8_VARIANTS:-}" gemm8_check -DG8_STANDALONE \
    tests/gpu/gemm8_check.cu kernels/gemm8.cu -lcublasLt
# the MMDiT's FP8 products through cuBLASLt, each way they could be issued
nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a \
    -o "$out/bin/gemm_probe" tests/gpu/gemm_probe.cu -lcublasLt
# cuBLASLt's algorithms for the image stream's products under sustained
# load (run.sh ltsustain)
nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a \
    -o "$out/bin/gemm_sustain" tests/gpu/gemm_sustain.cu -lcublasLt -ldl \
    -lpthread
# every kernel's start and end under CUPTI (run.sh ktrace), with the
# CUPTI library it was built against
cc -O2 -Wall -Wextra -shared -fPIC -I/usr/local/cuda/include \
    -o "$out/bin/libktrace.so" tests/gpu/ktrace.c \
    -L/usr/local/cuda/lib64 -lcupti
cp -L /usr/local/cuda/lib64/libcupti.so.13 "$out/lib/"
# PNG encoding's time by the cores it has (run.sh png)
cc -std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE -Iengine \
    -o "$out/bin/png_bench" tests/gpu/png_bench.c build/libsd.a \
    $(pkg-config --libs libcjson libpng zlib openblas libutf8proc libjpeg \
      libwebp libwebpmux) -lpthread -lm
for l in libcjson.so.1 libpng16.so.16 libutf8proc.so.2 libgfortran.so.5 \
         libjpeg.so.62 libwebp.so.7 libwebpmux.so.3 libsharpyuv.so.0 \
         libquadmath.so.0; do
    cp -L "/usr/lib/x86_64-linux-gnu/$l" "$out/lib/" 2>/dev/null || true
done
cp -L /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0 \
      "$out/lib/"
(cd "$out/debs" && apt-get download -q nginx nginx-common >/dev/null 2>&1) \
    || echo "pack: nginx packages not downloaded" >&2
tar cf - -C "$(dirname "$fx")" "$(basename "$fx")" | xz -6 -T0 \
    > "$out/fixtures.tar.xz"
if [ -d ../shared/bench ]; then
    cp -r ../shared/bench "$out/bench"
fi
if [ "${1:-}" ]; then
    mkdir -p "$out/ref"
    git --git-dir="$1" archive HEAD src/diffusers | tar x -C "$out/ref"
    (cd "$out/ref/src/diffusers/pipelines" && ls -d */ \
        | grep -v '^stable_diffusion_3/\|^stable_diffusion/' \
        | xargs rm -rf)
    rm -rf "$out/ref/src/diffusers/modular_pipelines"/*
fi
(cd "$out/lib" && xz -T0 -1 libopenblas.so.0)
if [ -d "$out/ref" ]; then
    tar cf - -C "$out" ref | xz -T0 -6 > "$out/ref.tar.xz" && rm -rf "$out/ref"
fi
# a dictionary larger than one binary (~9 MB each, mostly the same
# kernels): 7.5 MB where -6's 8 MiB made 36
tar cf - -C "$out" bin | xz -T0 --lzma2=preset=6,dict=64MiB > "$out/bin.tar.xz" && rm -rf "$out/bin"
du -sh "$out"
