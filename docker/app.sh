#!/bin/sh
# An app host: the demo app plus disco-agent registering it (drains on SIGTERM).
# Environment: INSTANCE, VERSION, ADDRESS (host:port the proxies reach it at).
set -eu
disco-demo-app --listen 0.0.0.0:8080 --version "$VERSION" &
exec disco-agent --agent-id "app-$INSTANCE-$VERSION" register \
  --app app1 --instance "$INSTANCE" --version "$VERSION" --address "$ADDRESS" \
  --health /healthz --interval 1s --rise 1
