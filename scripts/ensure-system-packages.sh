#!/usr/bin/env bash
# Make sure the system programs the stack needs are installed: redis-server always; PostgreSQL,
# Chromium and Prometheus (promtool for the alert rules, prometheus for the scrape test) for the test
# suite. As root we install what is missing with apt; otherwise we say exactly what to install and stop.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
{ command -v promtool >/dev/null 2>&1 || [ -x /usr/bin/promtool ]; } \
  && { command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ]; } || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ${missing[*]} with apt-get…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts a system redis on 6379 (and a system prometheus on 9090) after install; our stack and
  # tests start their own on free ports.
  exit 0
fi
echo "Missing system packages: ${missing[*]}" >&2
echo "Install them with:  sudo apt-get install -y ${missing[*]}" >&2
exit 1
