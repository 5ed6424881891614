#!/usr/bin/env bash
# `make run`: start the whole stack on loopback, stop everything on Ctrl-C.
# With no Wedof configured, it runs in demo mode against the local Wedof sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p var
[ -f .env ] && set -a && . ./.env && set +a

if [ -z "${WEDOF_API_URL:-}" ]; then
  echo "No WEDOF_API_URL set: demo mode against the local Wedof sandbox on :8090."
  export WEDOF_API_URL=http://127.0.0.1:8090/api
  export WEDOF_API_KEY=${WEDOF_API_KEY:-sandbox-key}
  export WEDOF_WEBHOOK_SECRET=${WEDOF_WEBHOOK_SECRET:-sandbox-webhook-secret}
  export WEDOF_ORG_ID=${WEDOF_ORG_ID:-12345678900012}
  DEMO=1
fi
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export FLOWER_BASIC_AUTH=${FLOWER_BASIC_AUTH:-admin:admin}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://127.0.0.1:8000}

procfile=var/Procfile.run
: > "$procfile"
# Start our own Redis only when nothing answers at REDIS_URL already.
if ! $PY -c "import redis,os; redis.Redis.from_url(os.environ['REDIS_URL'], socket_timeout=1).ping()" 2>/dev/null; then
  redis_port=$($PY -c "from urllib.parse import urlparse; import os; print(urlparse(os.environ['REDIS_URL']).port or 6379)")
  mkdir -p var/redis
  echo "redis: redis-server --port $redis_port --bind 127.0.0.1 --dir var/redis --appendonly yes --maxmemory-policy noeviction" >> "$procfile"
fi

$PY -m bdc.migrate upgrade
$PY -m webapp.cli bootstrap

cat >> "$procfile" <<PROCS
web: $PY -m gunicorn --config webapp/gunicorn_conf.py webapp.wsgi:app
worker_events: $PY -m celery -A worker.celery_app worker -Q events -n events@%h --concurrency 2 --without-gossip --without-mingle --loglevel INFO
worker_sync: $PY -m celery -A worker.celery_app worker -Q sync -n sync@%h --concurrency 1 --without-gossip --without-mingle --loglevel INFO
beat: $PY -m celery -A worker.celery_app beat --schedule var/celerybeat-schedule --loglevel INFO
flower: $PY -m celery -A worker.celery_app flower --address=127.0.0.1 --port=5555 --basic-auth=$FLOWER_BASIC_AUTH
PROCS
if [ -n "${DEMO:-}" ]; then
  echo "sandbox: $PY -m wedof_sandbox --host 127.0.0.1 --port 8090 --folders 500 --seed 42 --api-key $WEDOF_API_KEY" >> "$procfile"
  # Prints the page URL with a token once the receiver answers; then stays up (honcho stops all when one exits).
  echo "demo: $PY -m webapp.cli demo && exec sleep infinity" >> "$procfile"
fi

cat <<INFO

  Receiver + admin API   http://127.0.0.1:8000   (integration page: /integrations/wedof)
  Flower                 http://127.0.0.1:5555   (user:password = $FLOWER_BASIC_AUTH)
${DEMO:+  Wedof sandbox          http://127.0.0.1:8090/api  (key: $WEDOF_API_KEY)}

INFO
exec .venv/bin/honcho -f "$procfile" -d . start
