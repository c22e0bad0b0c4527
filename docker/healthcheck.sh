#!/bin/sh
# docker/healthcheck.sh: exits 0 when /internal/ping answers "ready" (the
# model is loaded), 1 otherwise. Docker's HEALTHCHECK and the Kubernetes
# readiness probe run it; liveness needs only the HTTP answer.
ping=$(curl -fsS --max-time 3 "http://127.0.0.1:${SD_PORT:-7860}/internal/ping") ||
    exit 1
case "$ping" in
*'"ready"'*) exit 0 ;;
*) exit 1 ;;
esac
