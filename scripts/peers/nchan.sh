#!/usr/bin/env bash
# Starts or stops nchan (nginx pub/sub module) on loopback with its own config, as the fan-out
# reference for `roost bench fanout --peer nchan`. Installs Debian's package when missing.
#   scripts/peers/nchan.sh up [PORT]    -> prints the address and the nginx pid
#   scripts/peers/nchan.sh down
set -euo pipefail
dir="${NCHAN_DIR:-/tmp/roost-nchan}"
port="${2:-8089}"
case "${1:-}" in
  up)
    if [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
      apt-get update -qq && apt-get install -y -qq nginx libnginx-mod-nchan >/dev/null
    fi
    mkdir -p "$dir/tmp"
    cat > "$dir/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
worker_processes 2;
worker_rlimit_nofile 20000;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 19000; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  server {
    listen 127.0.0.1:$port;
    location = /pub {
      nchan_publisher;
      nchan_channel_id \$arg_id;
      nchan_message_buffer_length 16;
    }
    location = /sub {
      nchan_subscriber eventsource;
      nchan_channel_id \$arg_id;
    }
    location = /static.json {
      root $dir;
      default_type application/json;
    }
  }
}
CONF
    [ -e "$dir/static.json" ] || echo '68' > "$dir/static.json"
    nginx -c "$dir/nginx.conf" -p "$dir"
    for _ in $(seq 50); do [ -s "$dir/nginx.pid" ] && break; sleep 0.1; done
    echo "nchan: 127.0.0.1:$port pid $(cat "$dir/nginx.pid")"
    ;;
  down)
    if [ -s "$dir/nginx.pid" ]; then kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true; fi
    rm -f "$dir/nginx.pid"
    ;;
  *) echo "usage: $0 up [PORT] | down" >&2; exit 2 ;;
esac
