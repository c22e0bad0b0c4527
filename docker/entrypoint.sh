#!/bin/sh
# docker/entrypoint.sh: renders nginx.conf from docker/nginx.conf.template
# and the environment, then runs nginx in the foreground (or the command
# given). "entrypoint.sh render DIR" only renders into DIR (the tests do,
# then run nginx -t on it). Every variable has a default; README, "Deploy
# with Docker", lists them.
set -eu

: "${SD_MODEL:=sd35}"
: "${SD_MODEL_PATH:=/models/$SD_MODEL}"
: "${SD_PORT:=7860}"
: "${MAX_RESOLUTION:=1024}"        # the largest side; width*height <= it^2
: "${SD_MAX_STEPS:=150}"
: "${SD_MAX_BATCH:=4}"
: "${SD_WORKERS:=auto}"            # auto: one per GPU visible, else 1
: "${SD_DEVICE:=cuda}"             # cuda | cuda:N | cuda:N,M,... | cpu
: "${SD_PRECISION:=auto}"          # auto | fp32 | bf16 | fp8
: "${SD_QUEUE_SIZE:=16}"           # jobs waiting, per worker
: "${SD_BATCH:=1}"                 # sd_batch: images one forward pass takes
                                   # from several queued requests; 1 = off
: "${SD_TENANT_QUEUE:=4}"          # a tenant's jobs waiting or running
: "${SD_TENANT_RATE:=5r/s}"
: "${SD_TENANT_BURST:=10}"
: "${SD_API_KEYS_FILE:=/etc/sd/api-keys}"   # lines "KEY TENANT"
: "${SD_SHUTDOWN_TIMEOUT:=300s}"
: "${SD_THREADS:=4}"
: "${SD_LOG_LEVEL:=notice}"
: "${SD_ACCESS_LOG:=/dev/stdout}"
: "${SD_PREFIX:=/var/lib/sd}"
: "${SD_MODULE:=/usr/lib/nginx/modules/ngx_http_sd_module.so}"
: "${SD_TEMPLATE:=/etc/sd/nginx.conf.template}"

die() {
    echo "entrypoint: $*" >&2
    exit 1
}

# value NAME VALUE PATTERN: VALUE must match the extended regex PATTERN
check() {
    printf '%s\n' "$2" | grep -Eqx "$3" || die "$1=\"$2\" is not valid"
}

check SD_MODEL "$SD_MODEL" '[A-Za-z0-9._-]+'
check SD_MODEL_PATH "$SD_MODEL_PATH" '/[^ ;{}#"]*'
check SD_PORT "$SD_PORT" '[0-9]{1,5}'
check MAX_RESOLUTION "$MAX_RESOLUTION" '[0-9]{2,5}'
check SD_MAX_STEPS "$SD_MAX_STEPS" '[0-9]+'
check SD_MAX_BATCH "$SD_MAX_BATCH" '[0-9]+'
check SD_WORKERS "$SD_WORKERS" 'auto|[0-9]+'
check SD_DEVICE "$SD_DEVICE" 'cpu|cuda|cuda:[0-9]+(,[0-9]+)*'
check SD_PRECISION "$SD_PRECISION" 'auto|fp32|bf16|fp8'
check SD_QUEUE_SIZE "$SD_QUEUE_SIZE" '[0-9]+'
check SD_BATCH "$SD_BATCH" '[1-9]|[1-5][0-9]|6[0-4]'
check SD_TENANT_QUEUE "$SD_TENANT_QUEUE" '[0-9]+'
check SD_TENANT_RATE "$SD_TENANT_RATE" '[0-9]+r/[sm]'
check SD_TENANT_BURST "$SD_TENANT_BURST" '[0-9]+'
check SD_SHUTDOWN_TIMEOUT "$SD_SHUTDOWN_TIMEOUT" '[0-9]+(ms|s|m|h)?'
check SD_THREADS "$SD_THREADS" '[0-9]+'
check SD_LOG_LEVEL "$SD_LOG_LEVEL" 'debug|info|notice|warn|error|crit'
check SD_ACCESS_LOG "$SD_ACCESS_LOG" '/[^ ;{}#"]*|off'

if [ "$SD_WORKERS" = auto ]; then
    case "$SD_DEVICE" in
    cpu|cuda:[0-9]*)
        # one device: one worker (a list: one per entry)
        SD_WORKERS=$(printf '%s' "${SD_DEVICE#cuda:}" | tr ',' '\n' |
                     grep -c . || true)
        [ "$SD_DEVICE" = cpu ] && SD_WORKERS=1
        ;;
    *)
        SD_WORKERS=$(ls /dev 2>/dev/null | grep -Ec '^nvidia[0-9]+$' || true)
        ;;
    esac
    [ "${SD_WORKERS:-0}" -ge 1 ] || SD_WORKERS=1
fi

SD_MAX_PIXELS=$((MAX_RESOLUTION * MAX_RESOLUTION))

# root runs the workers as SD_RUN_USER (nobody); a non-root user (the
# image's "sd") runs them as itself
SD_USER=""
if [ "$(id -u)" = 0 ]; then
    check SD_RUN_USER "${SD_RUN_USER:=nobody}" '[a-z_][a-z0-9_-]*'
    SD_USER="user ${SD_RUN_USER};"
fi

render() {
    out=$1
    mkdir -p "$out/tmp" "$out/logs"

    # the API keys: "KEY TENANT" lines -> map entries, matched exactly
    : > "$out/keys.conf"
    if [ -f "$SD_API_KEYS_FILE" ]; then
        while read -r key tenant rest; do
            case "$key" in ''|'#'*) continue ;; esac
            check "api key" "$key" '[A-Za-z0-9._~+/=-]{8,}'
            check "tenant" "${tenant:-}" '[A-Za-z0-9._-]+'
            key=$(printf '%s' "$key" | sed 's/[.+/=~]/\\&/g')
            printf '    "~^Bearer %s$"  %s;\n' "$key" "$tenant" \
                >> "$out/keys.conf"
        done < "$SD_API_KEYS_FILE"
    fi

    # /dev/stdout can be unopenable for a non-root user (a pipe owned by
    # root): then a file in the prefix
    access_log=$SD_ACCESS_LOG
    if [ "$access_log" != off ] && ! (: >> "$access_log") 2>/dev/null; then
        access_log=$out/logs/access.log
        echo "entrypoint: cannot write $SD_ACCESS_LOG, access log in" \
            "$access_log" >&2
    fi

    if [ -s "$out/keys.conf" ]; then
        SD_AUTH='if ($sd_key_tenant = "") { return 401; }'
        SD_TENANT_VAR='$sd_key_tenant'
    else
        SD_AUTH=''
        SD_TENANT_VAR='-'
    fi

    sed -e "s#@SD_MODULE@#$SD_MODULE#g" \
        -e "s#@SD_WORKERS@#$SD_WORKERS#g" \
        -e "s#@SD_LOG_LEVEL@#$SD_LOG_LEVEL#g" \
        -e "s#@SD_ACCESS_LOG@#$access_log#g" \
        -e "s#@SD_USER@#$SD_USER#g" \
        -e "s#@SD_THREADS@#$SD_THREADS#g" \
        -e "s#@SD_MODEL@#$SD_MODEL#g" \
        -e "s#@SD_MODEL_PATH@#$SD_MODEL_PATH#g" \
        -e "s#@SD_DEVICE@#$SD_DEVICE#g" \
        -e "s#@SD_PRECISION@#$SD_PRECISION#g" \
        -e "s#@SD_QUEUE_SIZE@#$SD_QUEUE_SIZE#g" \
        -e "s#@SD_BATCH@#$SD_BATCH#g" \
        -e "s#@SD_SHUTDOWN_TIMEOUT@#$SD_SHUTDOWN_TIMEOUT#g" \
        -e "s#@SD_TENANT_RATE@#$SD_TENANT_RATE#g" \
        -e "s#@SD_TENANT_BURST@#$SD_TENANT_BURST#g" \
        -e "s#@SD_PORT@#$SD_PORT#g" \
        -e "s#@SD_AUTH@#$SD_AUTH#g" \
        -e "s#@SD_TENANT_VAR@#$SD_TENANT_VAR#g" \
        -e "s#@SD_TENANT_QUEUE@#$SD_TENANT_QUEUE#g" \
        -e "s#@SD_MAX_PIXELS@#$SD_MAX_PIXELS#g" \
        -e "s#@SD_MAX_STEPS@#$SD_MAX_STEPS#g" \
        -e "s#@SD_MAX_BATCH@#$SD_MAX_BATCH#g" \
        -e "s#@SD_PREFIX@#$out#g" \
        "$SD_TEMPLATE" > "$out/nginx.conf"

    if grep -n '@[A-Z_]*@' "$out/nginx.conf" >&2; then
        die "unrendered placeholders in $out/nginx.conf"
    fi
}

if [ "${1:-}" = render ]; then
    [ $# -eq 2 ] || die "usage: entrypoint.sh render DIR"
    render "$2"
    exit 0
fi

render "$SD_PREFIX"

if [ $# -gt 0 ]; then
    exec "$@"
fi

[ -d "$SD_MODEL_PATH" ] || echo "entrypoint: warning: no model folder" \
    "$SD_MODEL_PATH (mount the models volume)" >&2

exec nginx -p "$SD_PREFIX/" -c nginx.conf -e stderr -g 'daemon off;'
