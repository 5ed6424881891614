#!/usr/bin/env bash
# `make run`: start the whole stack on loopback under supervisord; Ctrl-C stops everything.
# A process that exits (receiver, a worker, beat, Flower, the sandbox, our own Redis) is started again,
# with a growing backoff when it keeps failing; every exit and restart is logged in $BDC_VAR_DIR/log/.
# With no Wedof configured, it runs in demo mode against the local Wedof sandbox.
#
# Ports and folders can be set from the environment (or .env), e.g. to run a second stack beside the first:
#   WEB_PORT (8000) FLOWER_PORT (5555) SANDBOX_PORT (8090) REDIS_URL (redis://127.0.0.1:6379/0)
#   WORKER_EVENTS_METRICS_PORT (9808) WORKER_SYNC_METRICS_PORT (9809) BEAT_METRICS_PORT (9810)
#   BDC_VAR_DIR (./var: database, logs, supervisord's socket) BDC_ENV_FILE (.env)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$PWD/.venv/bin/python}
env_file=${BDC_ENV_FILE:-.env}
[ -f "$env_file" ] && set -a && . "$env_file" && set +a

export BDC_VAR_DIR=${BDC_VAR_DIR:-$PWD/var}
mkdir -p "$BDC_VAR_DIR"
export WEB_PORT=${WEB_PORT:-8000} FLOWER_PORT=${FLOWER_PORT:-5555} SANDBOX_PORT=${SANDBOX_PORT:-8090}
if [ -z "${WEDOF_API_URL:-}" ]; then
  echo "No WEDOF_API_URL set: demo mode against the local Wedof sandbox on :$SANDBOX_PORT."
  export WEDOF_API_URL=http://127.0.0.1:$SANDBOX_PORT/api
  export WEDOF_API_KEY=${WEDOF_API_KEY:-sandbox-key}
  export WEDOF_WEBHOOK_SECRET=${WEDOF_WEBHOOK_SECRET:-sandbox-webhook-secret}
  export WEDOF_ORG_ID=${WEDOF_ORG_ID:-12345678900012}
  export DEMO=1
fi
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export FLOWER_BASIC_AUTH=${FLOWER_BASIC_AUTH:-admin:admin}
export FLOWER_URL=${FLOWER_URL:-http://127.0.0.1:$FLOWER_PORT}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://127.0.0.1:$WEB_PORT}
export GUNICORN_BIND=${GUNICORN_BIND:-127.0.0.1:$WEB_PORT}
export PY
# Each program gets its own metrics port and folder (scripts/stack_supervisor.py); none inherits one.
unset BDC_METRICS_PORT PROMETHEUS_MULTIPROC_DIR

# Our own Redis, supervised like the rest, only when nothing answers at REDIS_URL already.
if ! "$PY" -c "import redis,os; redis.Redis.from_url(os.environ['REDIS_URL'], socket_timeout=1).ping()" 2>/dev/null; then
  export START_REDIS=1
fi

conf=$BDC_VAR_DIR/supervisord.conf
"$PY" scripts/stack_supervisor.py "$conf"  # checks the ports first: a bad value stops here, named
"$PY" -m bdc.migrate upgrade
"$PY" -m webapp.cli bootstrap

cat <<INFO

  Receiver + admin API   http://127.0.0.1:$WEB_PORT   (integration page: /integrations/wedof)
  Flower                 http://127.0.0.1:$FLOWER_PORT   (user:password = $FLOWER_BASIC_AUTH)
${DEMO:+  Wedof sandbox          http://127.0.0.1:$SANDBOX_PORT/api  (key: $WEDOF_API_KEY)
}  Logs                   $BDC_VAR_DIR/log/<program>.log, restarts in $BDC_VAR_DIR/log/supervisord.log
  Status                 $PY -m supervisor.supervisorctl -c $conf status
  Stop                   Ctrl-C

INFO
exec "$PY" -m supervisor.supervisord -n -c "$conf"
