#!/bin/sh
# One-off: app1 listens on :8080 on every LB host, its three slots on v1.
set -eu
discoctl app set app1 --listen 0.0.0.0:8080
for i in 1 2 3; do
  until discoctl route set app1 "instance$i" v1; do sleep 1; done
done
discoctl status app1
