-- Prints wrk's summary as one JSON line after its usual report, for
-- bench/cmd/benchreport. Latencies are in microseconds. status_errors
-- counts responses with a status of 400 or more; run.sh checks every case
-- answers 200 before it is timed.
done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		'WRKJSON {"duration_us":%d,"requests":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
		'"write_errors":%d,"status_errors":%d,"timeouts":%d,"lat_mean_us":%.1f,"lat_p50_us":%d,' ..
		'"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
		summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
		latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
