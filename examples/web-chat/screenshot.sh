#!/usr/bin/env bash
# Takes examples/web-chat/screenshot.png with headless Chromium: builds the
# broker, serves --app broadcast with its WebSocket listener, serves the
# page, has a TCP client (feed.js) say three lines, and lets Chromium take
# the picture once the page has them and has answered. Needs the broker's
# --ws-addr, node and chromium (Debian: apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/../.."

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

go build -o "$tmp/broker" ./cmd/broker
ws_port=$(free_port)
"$tmp/broker" serve --app broadcast --addr 127.0.0.1:0 --ws-addr "127.0.0.1:$ws_port" --log-format json 2>"$tmp/broker.log" &
pids+=($!)
for _ in $(seq 100); do
	grep -q '"msg":"listening"' "$tmp/broker.log" && break
	sleep 0.1
done
tcp_addr=$(grep -m1 '"msg":"listening"' "$tmp/broker.log" | sed 's/.*"addr":"\([^"]*\)".*/\1/')
[ -n "$tcp_addr" ] || { cat "$tmp/broker.log" >&2; exit 1; }

web_port=$(free_port)
node examples/web-chat/serve.js --port "$web_port" >/dev/null &
pids+=($!)
node examples/web-chat/feed.js "$tcp_addr" --for 20 >/dev/null &
pids+=($!)
sleep 0.5

timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
	--disable-component-update --disable-sync --no-first-run --user-data-dir="$tmp/profile" \
	--hide-scrollbars --window-size=900,560 --screenshot="$PWD/examples/web-chat/screenshot.png" \
	"http://127.0.0.1:$web_port/?ws=ws://127.0.0.1:$ws_port/&shot=3&name=browser" 2>/dev/null
echo "examples/web-chat/screenshot.png"
