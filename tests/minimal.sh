#!/bin/sh
# tests/minimal.sh ("make check-minimal"): the README's two set-up commands,
# exactly as written, as root on a minimal Debian 12: debootstrap
# --variant=minbase bookworm into build/minimal/root, this clone copied in
# (tracked and untracked files, not ignored ones: no build/), then
#
#     ./make.sh deps serve     in the background, until the demo server
#                              answers a txt2img with a PNG;
#     ./make.sh deps test      which must exit 0.
#
# The golden fixtures, when this machine has them (SD_FIXTURES, default
# ../shared/fixtures), are bind-mounted read-only where the clone looks for
# them, so the tests there are the real ones. Needs root (debootstrap,
# chroot, mount) and a Debian mirror (DEBIAN_MIRROR). Downloaded packages
# are kept in build/minimal/cache for the next run; nothing is written
# outside the tree. Every process started in the system is ended, and
# every mount undone, on exit.
set -eu
cd "$(dirname "$0")/.."

top=$(pwd)
M=$top/build/minimal
R=$M/root
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
fixtures=${SD_FIXTURES:-$top/../shared/fixtures}

if [ "$(id -u)" != 0 ]; then
    echo "check-minimal: needs root (debootstrap, chroot, mount)" >&2
    exit 1
fi

say() { echo "check-minimal: $*"; }

# the processes whose root is the minimal system, then its mounts
cleanup() {
    for p in /proc/[0-9]*; do
        if [ "$(readlink "$p/root" 2>/dev/null)" = "$R" ]; then
            kill -9 "${p#/proc/}" 2>/dev/null || true
        fi
    done
    for d in root/shared/fixtures var/cache/apt/archives dev/shm dev/pts \
             dev sys proc; do
        if mountpoint -q "$R/$d" 2>/dev/null; then
            umount -l "$R/$d" || true
        fi
    done
}

trap cleanup EXIT INT TERM

for tool in debootstrap curl; do
    if ! command -v $tool >/dev/null 2>&1; then
        say "installing $tool on this machine"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends $tool
    fi
done

cleanup
rm -rf "$R"
mkdir -p "$R" "$M/cache/debootstrap" "$M/cache/apt"

t0=$(date +%s)
say "debootstrap --variant=minbase bookworm ($mirror)"
debootstrap --variant=minbase --cache-dir="$M/cache/debootstrap" bookworm \
    "$R" "$mirror" > "$M/debootstrap.log" 2>&1 || {
    tail -n 30 "$M/debootstrap.log"; exit 1; }
t1=$(date +%s)

mount -t proc proc "$R/proc"
mount -t sysfs sys "$R/sys"
mount --bind /dev "$R/dev"
mount --bind /dev/pts "$R/dev/pts"
# a /dev/shm of its own: Chromium (the web page's test) needs one
mount -t tmpfs -o mode=1777 shm "$R/dev/shm"
mount --bind "$M/cache/apt" "$R/var/cache/apt/archives"
cp /etc/resolv.conf "$R/etc/resolv.conf"
# a Debian install has an /etc/hosts, debootstrap writes none: "localhost"
# (chromedriver's address for selenium) must resolve
if [ ! -s "$R/etc/hosts" ]; then
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        > "$R/etc/hosts"
fi
# this machine's trust store, for the npm registry behind a TLS proxy that
# signs with a local authority (NODE_EXTRA_CA_CERTS below)
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$R/root/host-ca.crt"
fi

# the clone: what git tracks or would track, as a fresh checkout has it
mkdir -p "$R/root/sd35-nginx"
git ls-files -z -c -o --exclude-standard |
    tar --null -T - -cf - | tar -xf - -C "$R/root/sd35-nginx"

if [ -f "$fixtures/golden-public.safetensors" ]; then
    mkdir -p "$R/root/shared/fixtures"
    mount --bind "$fixtures" "$R/root/shared/fixtures"
    mount -o remount,bind,ro "$R/root/shared/fixtures"
    say "fixtures from $fixtures, read-only"
else
    say "no fixtures at $fixtures: the tests that need them will skip"
fi

ca=
[ -f "$R/root/host-ca.crt" ] && ca=/root/host-ca.crt

in_root() {
    chroot "$R" /usr/bin/env -i HOME=/root TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        ${ca:+NODE_EXTRA_CA_CERTS=$ca} \
        "$@"
}

# the README's first command; its port if this machine has it free
port=7860
if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    port=17860
    say "port 7860 is taken here: PORT=$port"
fi

say "./make.sh deps serve"
in_root /bin/sh -c "cd /root/sd35-nginx && PORT=$port ./make.sh deps serve" \
    > "$M/serve.log" 2>&1 &
serve=$!

ready=
for _ in $(seq 1 1800); do
    if ! kill -0 "$serve" 2>/dev/null; then
        break
    fi
    status=$(curl -s "http://127.0.0.1:$port/internal/ping" 2>/dev/null ||
             true)
    case "$status" in
    *'"ready"'*) ready=1; break ;;
    *'"failed"'*) break ;;
    esac
    sleep 1
done

if [ -z "$ready" ]; then
    say "the demo server did not come up:"
    tail -n 40 "$M/serve.log"
    exit 1
fi
t2=$(date +%s)

code=$(curl -s -o "$M/txt2img.json" -w '%{http_code}' \
    -d '{"prompt": "a red cube", "width": 64, "height": 64, "steps": 2}' \
    "http://127.0.0.1:$port/sdapi/v1/txt2img")

# a PNG in base64 starts "iVBORw0KGgo"
if [ "$code" != 200 ] || ! grep -q '"images":\["iVBORw0KGgo' "$M/txt2img.json"
then
    say "txt2img answered $code:"
    head -c 600 "$M/txt2img.json"; echo
    tail -n 20 "$M/serve.log"
    exit 1
fi
say "the demo server answered a txt2img with a PNG"

kill -QUIT "$(cat "$R/root/sd35-nginx/build/serve/nginx.pid")"
wait "$serve" || true

say "./make.sh deps test"
if ! in_root /bin/sh -c "cd /root/sd35-nginx && ./make.sh deps test" \
    > "$M/test.log" 2>&1
then
    tail -n 60 "$M/test.log"
    say "FAILED: ./make.sh deps test exited non-zero"
    exit 1
fi
t3=$(date +%s)

tail -n 3 "$M/test.log"
say "passed: debootstrap $((t1 - t0)) s, deps + build + serve $((t2 - t1)) s,"
say "        test $((t3 - t2)) s"
