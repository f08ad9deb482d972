# The control of `make bench` (bench/run.sh): Caddy's `respond`, alone and
# after bench_spin, a handler that does nothing but burn CPU for a set
# time (bench/cmd/spincaddy). What that pure computation costs in place,
# against `respond` in the same process, is the yardstick for what any
# handler's work costs on this machine; b2s_collect's own work per beacon
# in its Go benchmark is about that long.
{
	admin 127.0.0.1:{$BENCH_ADMIN_PORT}
	auto_https off
	persist_config off
	default_bind 127.0.0.1
}

(pixel_headers) {
	header {
		Content-Type image/gif
		Cache-Control "no-store, no-cache, must-revalidate, max-age=0"
		Pragma no-cache
		Expires "Thu, 01 Jan 1970 00:00:00 GMT"
		X-Content-Type-Options nosniff
	}
}

http://:{$BENCH_PORT_B} {
	import pixel_headers
	respond "GIF89a 43-byte ASCII stand-in for the pixel" 200
}

http://:{$BENCH_PORT_SPIN} {
	bench_spin {$BENCH_SPIN}
	import pixel_headers
	respond "GIF89a 43-byte ASCII stand-in for the pixel" 200
}

# The same for the proxied page: reverse_proxy to the upstream as in (e),
# alone and after bench_spin.
http://:{$BENCH_PORT_E0} {
	reverse_proxy 127.0.0.1:{$BENCH_UPSTREAM_PORT} {
		transport http {
			keepalive_idle_conns_per_host 64
		}
	}
}

http://:{$BENCH_PORT_E1} {
	bench_spin {$BENCH_SPIN_PAGE}
	reverse_proxy 127.0.0.1:{$BENCH_UPSTREAM_PORT} {
		transport http {
			keepalive_idle_conns_per_host 64
		}
	}
}
