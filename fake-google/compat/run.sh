#!/usr/bin/env bash
# Runs Google's Python (oauth2client, google-auth, google-auth-oauthlib, google-api-python-client) and Node
# (google-auth-library) clients against the fake-google binary. Needs PyPI and npm on first run
# (kept out of the default test command); venv and node_modules stay under fake-google/compat/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cargo build -q -p fake-google --manifest-path "$root/Cargo.toml"
bin="$root/target/debug/fake-google"

if [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
  "$here/.venv/bin/pip" install -q oauth2client google-auth google-auth-oauthlib google-api-python-client pyjwt cryptography requests
fi
if [ ! -d "$here/node_modules/google-auth-library" ]; then
  (cd "$here" && npm install --silent --no-save google-auth-library >/dev/null)
fi

out="$(mktemp)"
"$bin" --listen 127.0.0.1:0 >"$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 1 100); do grep -q '^listening on ' "$out" && break; sleep 0.1; done
base="$(sed -n 's/^listening on //p' "$out")"

"$here/.venv/bin/python" "$here/compat.py" "$base"
node "$here/compat.mjs" "$base"
