# Sourced by the bench scripts: starts a private redis-server on 127.0.0.1:$port (nothing
# kept on disk), stops it when the script exits, and waits until it answers.
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir /tmp --logfile /tmp/psychiq-bench-redis.log --pidfile /tmp/psychiq-bench-redis.pid
trap 'redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
