#!/bin/sh
# make.sh: "make" on a Debian where it may not be installed yet (a minimal
# system has no make): installs it with apt-get (as root, or through sudo),
# then runs make with the arguments given, in this folder. The README's
# two set-up commands go through it: ./make.sh deps serve, ./make.sh deps
# test.
set -e
cd "$(dirname "$0")"

if ! command -v make >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends make
fi

exec make "$@"
