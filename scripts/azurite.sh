#!/usr/bin/env bash
# Install Azurite (pinned) into .tools/ and start its blob service on 127.0.0.1:10000,
# unless something already listens there. Prints the PID it started (or nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
AZURITE_VERSION=3.37.0
port_open() { (exec 3<>/dev/tcp/127.0.0.1/10000) 2>/dev/null; }
if port_open; then
  echo "azurite: already listening on 127.0.0.1:10000" >&2
  exit 0
fi
if [ ! -x .tools/node_modules/.bin/azurite-blob ]; then
  npm install --silent --no-audit --no-fund --prefix .tools "azurite@${AZURITE_VERSION}" >&2
fi
mkdir -p .azurite
nohup .tools/node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort 10000 \
  --skipApiVersionCheck --loose --location .azurite --silent > .azurite/azurite.log 2>&1 &
pid=$!
for _ in $(seq 1 50); do
  if port_open; then echo "$pid"; exit 0; fi
  sleep 0.2
done
echo "azurite: did not start; see .azurite/azurite.log" >&2
exit 1
