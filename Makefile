# Top-level build: the engine as a position-independent static library,
# the command-line tool, the test programs, and the nginx module.
# CUDA parts build only where nvcc exists (NVCC= disables them).

CC       ?= cc
NVCC     ?= $(shell command -v nvcc 2>/dev/null)
BUILD    := build
PKGS     := libcjson libpng zlib openblas libutf8proc libjpeg libwebp \
            libwebpmux
# Recursively expanded on purpose: "make deps test" installs the packages
# before any recipe asks pkg-config for their flags.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# Debian packages the build, the tests and the server need.
DEB_PKGS := build-essential pkg-config libcjson-dev libpng-dev zlib1g-dev \
            libopenblas-dev libutf8proc-dev libjpeg62-turbo-dev libwebp-dev \
            nginx nginx-dev python3 \
            python3-pytest python3-requests python3-numpy openssl curl \
            memcached chromium chromium-driver python3-selenium
# and those the operations tests need (tests/http/test_ops.py; npm too,
# where node brings none); "make deps DEPS_OPS=0" leaves them out (the
# Docker build stages)
DEB_OPS_PKGS := prometheus python3-yaml nodejs
DEPS_OPS     ?= 1

CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -fPIC -Wall -Wextra -D_GNU_SOURCE -Iengine $(PKG_CFLAGS)
LDLIBS    = $(PKG_LIBS) -lpthread -lm

CLI_SRC    := $(wildcard engine/sd_cli*.c)
ENGINE_SRC := $(filter-out $(CLI_SRC),$(wildcard engine/*.c))
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
KERNEL_SRC := $(wildcard kernels/*.cu)
comma      := ,

# CUDA_ARCH: the GPUs the kernels are compiled for (sm_80: A100, sm_89:
# L4/L40/RTX 4090, sm_90: H100/H200; FP8 products need sm_90, the others
# keep FP8 weights and widen them per layer).
# CUDNN_HOME: a cuDNN 9 outside the toolkit and the system paths (for
# example the one inside PyTorch's environment); empty: the toolkit's or
# the system's.
ifneq ($(strip $(NVCC)),)
ifneq ($(strip $(KERNEL_SRC)),)
CUDA_HOME  ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH  ?= -gencode arch=compute_80,code=sm_80 \
              -gencode arch=compute_89,code=sm_89 \
              -gencode arch=compute_90,code=sm_90
ifneq ($(strip $(CUDNN_HOME)),)
CUDNN_INC  := -I$(CUDNN_HOME)/include
CUDNN_LIB  := -L$(CUDNN_HOME)/lib -Wl,-rpath,$(CUDNN_HOME)/lib
endif
KERNEL_OBJ := $(KERNEL_SRC:%.cu=$(BUILD)/%.o)
CFLAGS     += -DSD_HAVE_CUDA -I$(CUDA_HOME)/include $(CUDNN_INC)
LDLIBS     += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 \
              $(CUDNN_LIB) -lcublasLt -l:libcudnn.so.9 -lcudart -lstdc++
NVFLAGS    ?= -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -fPIC,-Wall,-Wextra \
              -Iengine $(CUDNN_INC)
endif
endif

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIB      := $(BUILD)/libsd.a

# The module's parsers that need no nginx: unit-tested and fuzzed as they are.
PARSE_SRC := ngx_module/ngx_http_sd_json.c ngx_module/ngx_http_sd_parse.c \
             ngx_module/ngx_http_sd_styles.c ngx_module/ngx_http_sd_format.c \
             ngx_module/ngx_http_sd_options.c ngx_module/ngx_http_sd_extras.c \
             ngx_module/ngx_http_sd_img2img.c
PARSE_OBJ := $(PARSE_SRC:%.c=$(BUILD)/%.o)
.SECONDARY: $(PARSE_OBJ)

.PHONY: all lib test clean deps
all: $(LIB) $(BUILD)/sd-cli $(TEST_BIN)

lib: $(LIB)

$(BUILD)/%.o: %.c $(wildcard engine/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/ngx_module/%.o: ngx_module/%.c ngx_module/ngx_http_sd_parse.h \
                         engine/sd.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu $(wildcard kernels/*.h engine/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

# The own attention kernel and FP8 product need Hopper's arch-specific
# code (wgmma, setmaxnreg): sm_90a replaces sm_90 for these files alone,
# so an H100/H200 loads that code and no plain sm_90 stand-in.
$(BUILD)/kernels/fattn.o: CUDA_ARCH := $(subst compute_90$(comma)code=sm_90,compute_90a$(comma)code=sm_90a,$(CUDA_ARCH))
$(BUILD)/kernels/gemm8.o: CUDA_ARCH := $(subst compute_90$(comma)code=sm_90,compute_90a$(comma)code=sm_90a,$(CUDA_ARCH))

$(LIB): $(ENGINE_OBJ) $(KERNEL_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/sd-cli: $(CLI_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/t.h $(LIB) $(PARSE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -Ingx_module -o $@ $< $(PARSE_OBJ) $(LIB) \
	    $(LDLIBS)

# The README's test command: everything that needs no GPU.
test: all
	tests/run.sh

clean:
	rm -rf $(BUILD)

# Install the Debian packages above (as root, or through sudo).
deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$SUDO apt-get update -qq && \
	$$SUDO apt-get install -y -qq --no-install-recommends $(DEB_PKGS) \
	    $(if $(filter 1,$(DEPS_OPS)),$(DEB_OPS_PKGS)) && \
	{ [ "$(DEPS_OPS)" != 1 ] || command -v npm >/dev/null || \
	  $$SUDO apt-get install -y -qq --no-install-recommends npm; }

# The nginx dynamic module (ngx_module/, ./config): a copy of Debian's nginx
# source tree (package nginx-dev) configured --with-compat, so the module
# loads into the stock nginx, and linked with the engine library.
NGX_SRC    ?= /usr/share/nginx/src
NGX_BUILD  := $(BUILD)/nginx
MODULE     := $(BUILD)/ngx_http_sd_module.so
MODULE_DEP := config $(wildcard ngx_module/*.c ngx_module/*.h) engine/sd.h

.PHONY: module serve
module: $(MODULE)

$(NGX_BUILD)/objs/Makefile: config Makefile $(NGX_SRC)/configure | $(LIB)
	rm -rf $(NGX_BUILD) && mkdir -p $(NGX_BUILD)
	cp -a $(NGX_SRC)/. $(NGX_BUILD)/
	cd $(NGX_BUILD) && SD_LIBS="$(LDLIBS)" ./configure --with-compat \
	    --with-threads --add-dynamic-module=$(CURDIR) \
	    --with-cc-opt="$(PKG_CFLAGS)"

$(MODULE): $(NGX_BUILD)/objs/Makefile $(MODULE_DEP) $(LIB)
	rm -f $(NGX_BUILD)/objs/ngx_http_sd_module.so
	$(MAKE) -C $(NGX_BUILD) -f objs/Makefile modules
	@# a new file, not rewritten in place: running nginx maps the old one
	cp $(NGX_BUILD)/objs/ngx_http_sd_module.so $@.tmp && mv -f $@.tmp $@

# make serve [MODEL=dir] [PORT=n] [HOST=addr]: nginx in the foreground,
# prefix build/serve.
MODEL ?= $(BUILD)/demo-model
DEVICE ?=
PORT  ?= 7860
HOST  ?= 127.0.0.1
SERVE := $(BUILD)/serve
SERVE_NAME = $(notdir $(abspath $(MODEL)))

serve: all $(MODULE)
	@if [ ! -d "$(MODEL)" ] && [ "$(MODEL)" = "$(BUILD)/demo-model" ]; then \
	    $(BUILD)/sd-cli make-demo $(MODEL); fi
	@test -d "$(MODEL)" || { echo "serve: no model folder $(MODEL)"; exit 1; }
	mkdir -p $(SERVE)/logs $(SERVE)/tmp
	@# the GPU when this build has CUDA and the machine a GPU (DEVICE=cpu
	@# or DEVICE=cuda:N to choose)
	dev="$(DEVICE)"; [ -n "$$dev" ] || dev=$$($(BUILD)/sd-cli gpus \
	    >/dev/null 2>&1 && echo cuda || echo cpu); \
	sed -e 's#^\( *sd_model  *\)[^ ]*  *[^ ;]*#\1$(SERVE_NAME) $(abspath $(MODEL))#' \
	    -e 's#127\.0\.0\.1:7860#$(HOST):$(PORT)#' \
	    -e 's#^load_module .*;#load_module $(abspath $(MODULE));#' \
	    -e "s#^\( *sd_device  *\)cpu;#\1$$dev;#" \
	    conf/nginx.conf > $(SERVE)/nginx.conf; \
	echo "serving $(MODEL) at http://$(HOST):$(PORT)/sdapi/v1/ on $$dev"
	exec nginx -p $(abspath $(SERVE))/ -c nginx.conf -e stderr \
	    -g 'daemon off;$(SERVE_USER)'

# Started by root (as on a fresh system), nginx's workers would run as its
# unprivileged default user and could not read a tree under /root: they
# run as root then, for this demo server only.
SERVE_USER = $(if $(filter 0,$(shell id -u)), user root;)


# ---------------------------------------------------------------------------
# Reliability: the C tests under sanitizers, fuzzing, the README's commands
# on a minimal Debian, load. Their outputs live in build/ like the rest.

.PHONY: test-asan fuzz fuzz-build check-minimal loadtest

# make test-asan: the C tests and sd-cli built again with ASan and UBSan
# (build/asan; any report fails the test) and run as "make test" runs them,
# without the HTTP tests (nginx loads the module of the plain build).
ASAN       := $(BUILD)/asan
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=all
ASAN_OBJ   := $(ENGINE_SRC:%.c=$(ASAN)/%.o) $(PARSE_SRC:%.c=$(ASAN)/%.o)
ASAN_TESTS := $(TEST_SRC:tests/%.c=$(ASAN)/tests/%)
ASAN_CLI   := $(CLI_SRC:%.c=$(ASAN)/%.o)
.SECONDARY: $(ASAN_OBJ) $(ASAN_CLI)
# the CPU engine alone: the sanitizers do not see into the GPU's kernels
ASAN_CFLAGS = $(filter-out -DSD_HAVE_CUDA,$(CFLAGS)) $(ASAN_FLAGS)

$(ASAN)/%.o: %.c $(wildcard engine/*.h) ngx_module/ngx_http_sd_parse.h
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -c $< -o $@

$(ASAN)/sd-cli: $(ASAN_CLI) $(ASAN_OBJ)
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(LDLIBS)

$(ASAN)/tests/%: tests/%.c tests/t.h $(ASAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -Itests -Ingx_module -o $@ $< \
	    $(ASAN_OBJ) $(LDLIBS)

test-asan: $(ASAN_TESTS) $(ASAN)/sd-cli
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	SD_CLI=$(ASAN)/sd-cli SD_TEST_BIN=$(ASAN)/tests SD_SKIP_HTTP=1 \
	    tests/run.sh

# make fuzz [T=600]: each libFuzzer harness (tests/fuzz/fuzz_*.c; Debian's
# clang, ASan and UBSan) for T seconds, from its committed seeds
# (tests/fuzz/corpus/NAME) and what earlier runs found (build/fuzz/corpus/
# NAME); a finding stops the run, its input saved in build/fuzz/findings/.
# "make -j2 fuzz" runs two harnesses at once.
T          ?= 60
FUZZ_CC    ?= clang
FUZZ       := $(BUILD)/fuzz
FUZZ_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=all
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN   := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ)/%)
FUZZ_OBJ   := $(ENGINE_SRC:%.c=$(FUZZ)/%.o) $(PARSE_SRC:%.c=$(FUZZ)/%.o)
.SECONDARY: $(FUZZ_OBJ) $(FUZZ_BIN)
FUZZ_CFLAGS = -std=c11 -fPIC -D_GNU_SOURCE -Iengine -Ingx_module \
              $(PKG_CFLAGS) $(FUZZ_FLAGS)

$(FUZZ)/%.o: %.c $(wildcard engine/*.h) ngx_module/ngx_http_sd_parse.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) \
	    $(LDLIBS)

$(BUILD)/demo-model/model_index.json: | $(BUILD)/sd-cli
	$(BUILD)/sd-cli make-demo $(BUILD)/demo-model

fuzz-build: $(FUZZ_BIN) $(BUILD)/demo-model/model_index.json

fuzz: $(FUZZ_SRC:tests/fuzz/%.c=fuzz-run-%)

fuzz-run-fuzz_%: $(FUZZ)/fuzz_% $(BUILD)/demo-model/model_index.json
	@mkdir -p $(FUZZ)/corpus/$* $(FUZZ)/findings/$*
	SD_FUZZ_MODEL=$(BUILD)/demo-model $(FUZZ)/fuzz_$* -max_total_time=$(T) \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ)/findings/$*/ \
	    -rss_limit_mb=4096 $(FUZZ)/corpus/$* tests/fuzz/corpus/$*

# make check-minimal: the README's two commands, as written, as root on a
# minimal Debian 12 (debootstrap --variant=minbase bookworm, nothing else):
# builds that system in build/minimal, copies this clone in, runs
# "./make.sh deps serve" and checks that the demo server answers a
# txt2img, then "./make.sh deps test". Needs root and the network (the
# Debian mirror; DEBIAN_MIRROR to choose one). CI runs it.
check-minimal:
	tests/minimal.sh

# make loadtest: 200 clients for 60 s on the tiny model, with 10 reloads
# and a worker killed under load (not part of CI; the README has figures,
# build/loadtest.json the last run's).
loadtest: all $(MODULE)
	/usr/bin/python3 tests/load/loadtest.py
