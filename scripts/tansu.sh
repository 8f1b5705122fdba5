#!/usr/bin/env bash
# Makes sure a tansu broker (Kafka-compatible, in-memory storage) answers on 127.0.0.1:PORT.
#
#   scripts/tansu.sh            # port 9092 (or $TANSU_PORT)
#   TANSU_PORT=19092 scripts/tansu.sh
#
# Installs tansu 0.6.0 with cargo when the binary is missing, starts it in the background
# when nothing listens on the port (log: /tmp/tansu-PORT.log, pid: /tmp/tansu-PORT.pid), and
# waits until it answers a Kafka ApiVersions request. Memory storage is empty after a
# restart; onex creates its topics on first use (tansu does not auto-create them).
set -euo pipefail

PORT="${TANSU_PORT:-9092}"
HOST=127.0.0.1
VERSION=0.6.0
WAIT_SECS="${TANSU_WAIT_SECS:-30}"
LOG="/tmp/tansu-${PORT}.log"
PIDFILE="/tmp/tansu-${PORT}.pid"

find_tansu() {
  if [[ -n "${TANSU_BIN:-}" && -x "${TANSU_BIN}" ]]; then echo "${TANSU_BIN}"; return 0; fi
  if command -v tansu >/dev/null 2>&1; then command -v tansu; return 0; fi
  if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]]; then echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"; return 0; fi
  return 1
}

# Sends a Kafka ApiVersions v0 request and succeeds when a response frame comes back.
kafka_answers() {
  local reply
  reply=$(timeout 3 bash -c "
    exec 3<>/dev/tcp/${HOST}/${PORT} || exit 1
    # size=14 | api_key=18 | api_version=0 | correlation_id=1 | client_id='onex' (len 4)
    printf '\x00\x00\x00\x0e\x00\x12\x00\x00\x00\x00\x00\x01\x00\x04onex' >&3
    head -c 8 <&3 | od -An -tx1
  " 2>/dev/null) || return 1
  # The response echoes correlation id 1 in bytes 5-8.
  [[ "$(echo ${reply})" == *"00 00 00 01" ]]
}

listening() {
  timeout 2 bash -c "exec 3<>/dev/tcp/${HOST}/${PORT}" 2>/dev/null
}

if kafka_answers; then
  echo "tansu.sh: a Kafka broker already answers on ${HOST}:${PORT}"
  exit 0
fi
if listening; then
  echo "tansu.sh: something listens on ${HOST}:${PORT} but does not answer Kafka ApiVersions; stop it or pick another TANSU_PORT" >&2
  exit 1
fi

if ! BIN=$(find_tansu); then
  echo "tansu.sh: tansu not found; installing tansu ${VERSION} (memory storage needs the dynostore feature)"
  cargo install tansu --version "${VERSION}" --features dynostore --locked
  BIN=$(find_tansu) || { echo "tansu.sh: cargo install finished but no tansu binary found in PATH or ~/.cargo/bin" >&2; exit 1; }
fi

echo "tansu.sh: starting ${BIN} on ${HOST}:${PORT} (log ${LOG})"
nohup setsid "${BIN}" broker \
  --listener-url "tcp://${HOST}:${PORT}" \
  --advertised-listener-url "tcp://${HOST}:${PORT}" \
  --storage-engine memory://tansu/ >"${LOG}" 2>&1 </dev/null &
echo $! >"${PIDFILE}"

for _ in $(seq 1 $((WAIT_SECS * 5))); do
  if kafka_answers; then
    echo "tansu.sh: tansu answers on ${HOST}:${PORT} (pid $(cat "${PIDFILE}"))"
    exit 0
  fi
  if ! kill -0 "$(cat "${PIDFILE}")" 2>/dev/null; then
    echo "tansu.sh: tansu exited during start-up; last log lines:" >&2
    tail -n 20 "${LOG}" >&2
    exit 1
  fi
  sleep 0.2
done
echo "tansu.sh: tansu did not answer on ${HOST}:${PORT} within ${WAIT_SECS}s; see ${LOG}" >&2
exit 1
