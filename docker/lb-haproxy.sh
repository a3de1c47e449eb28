#!/bin/sh
# An HAProxy LB host: HAProxy in master-worker mode plus disco-agent driving it.
set -eu
mkdir -p /run/haproxy
touch /etc/haproxy/disco.cfg
haproxy -W -S /run/haproxy-master.sock -f /etc/disco/haproxy.cfg -f /etc/haproxy/disco.cfg &
exec disco-agent --config /etc/disco/lb-haproxy.toml
