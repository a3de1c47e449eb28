#!/bin/sh
# An nginx LB host: nginx (its master daemonizes) plus disco-agent driving it.
set -eu
touch /etc/nginx/disco.conf
nginx -c /etc/disco/nginx.conf
exec disco-agent --config /etc/disco/lb-nginx.toml
