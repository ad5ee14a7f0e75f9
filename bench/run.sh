#!/usr/bin/env bash
# Benchmark our listener against a bare aiosmtpd sink with the shared harness (../shared/bench).
# Usage: bench/run.sh [smtp_bench.sh options], e.g. bench/run.sh -n 3 -m 2000 -S newconn20,reuse20
# Runs on a throw-away SQLite directory under /tmp; every message is really stored (jane@acme.test).
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS=${HARNESS:-../shared/bench/smtp_bench.sh}
PY=.venv/bin/python
DATA=$(mktemp -d /tmp/smtp-bench.XXXXXX)
export DATA_DIR=$DATA DEBUG=1 SMTP_LOG_LEVEL=WARNING
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REF=$(port); OURS=$(port); SSL=$(port)
$PY manage.py migrate -v 0
$PY manage.py loaddemo --smtp-port "$OURS" --ssl-port "$SSL" >/dev/null
$PY -m aiosmtpd -n -c aiosmtpd.handlers.Sink -l "127.0.0.1:$REF" & pids+=($!)
$PY manage.py runsmtp --server mail1/Acme >/dev/null & pids+=($!)
for p in "$REF" "$OURS"; do
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done
"$HARNESS" -f bench@example.org -T jane@acme.test "$@" "aiosmtpd=127.0.0.1:$REF" "product=127.0.0.1:$OURS"
echo "# stored messages: $($PY manage.py shell -v0 -c 'from smtpservice.models import MailboxEntry; print(MailboxEntry.objects.count())')"
