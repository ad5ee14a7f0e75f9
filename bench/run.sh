#!/usr/bin/env bash
# Throughput of our listener against a bare aiosmtpd that discards, with the shared harness, in one
# interleaved run; then checks that every message the harness got a 250 for was stored, and prints
# the ratios. Usage: bench/run.sh [smtp_bench.sh options], e.g.
#   bench/run.sh -n 3 -m 2000 -S newconn20,reuse20
# Runs the listener `make run` starts (loaddemo's directory, default settings, its INFO log of every
# session written to a file) on a throw-away
# SQLite directory under /tmp (DATABASE_URL to use PostgreSQL instead). WORKERS sets runsmtp --workers.
# Runs are 3 s apart (-p 3, the harness's default is 0.5): the listener writes its session log every
# 2 s, and the log of one run must not be written during the next run, the reference's.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/bench}
PY=.venv/bin/python
DATA=$(mktemp -d /tmp/smtp-bench.XXXXXX)
export DATA_DIR=$DATA DEBUG=0 SECRET_KEY=bench-only ALLOWED_HOSTS=127.0.0.1
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REF=$(port); OURS=$(port); SSL=$(port)
$PY manage.py migrate -v 0
$PY manage.py loaddemo --smtp-port "$OURS" --ssl-port "$SSL" >/dev/null
$PY "$SHARED/bench_servers.py" discard --port "$REF" >/dev/null & pids+=($!)
$PY manage.py runsmtp --server mail1/Acme ${WORKERS:+--workers "$WORKERS"} >/dev/null 2>"$DATA/runsmtp.log" & pids+=($!)
for p in "$REF" "$OURS"; do
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done
"$SHARED/smtp_bench.sh" -p 3 -f bench@example.org -T jane@acme.test "$@" "aiosmtpd=127.0.0.1:$REF" "product=127.0.0.1:$OURS" \
  | tee "$DATA/bench.out"
sent=$(awk '/^RUN / && / target=product / && !/ FAIL/ { for (i = 1; i <= NF; i++) if ($i ~ /^msgs=/) { sub("msgs=", "", $i); n += $i } } END { print n + 0 }' "$DATA/bench.out")
sleep 3  # the last heartbeat writes the last sessions
read -r stored sessions < <($PY manage.py shell -v0 -c 'from smtpservice.models import MailboxEntry, SessionLog; print(MailboxEntry.objects.count(), SessionLog.objects.count())')
echo "# messages acknowledged by successful runs: $sent; stored: $stored; sessions logged: $sessions"
if [ "$stored" -lt "$sent" ]; then echo "FAIL: $((sent - stored)) acknowledged messages were not stored" >&2; exit 1; fi
grep '^RESULT' "$DATA/bench.out" | grep 'target=product'
