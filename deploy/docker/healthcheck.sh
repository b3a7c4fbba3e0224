#!/bin/bash
# Container health check without curl in the image: GET http://127.0.0.1:PORT/PATH with
# bash's /dev/tcp, healthy on a 2xx status line.   sagellm-healthcheck 9000 /metrics
set -euo pipefail
port=${1:?port} path=${2:-/}
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
read -r -t 3 _ status _ <&3
[[ $status == 2?? ]]
