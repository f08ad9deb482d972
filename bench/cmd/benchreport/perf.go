package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// perfBucket is where a perf sample's CPU went. A sample is put in exactly
// one bucket, from its call stack, so the buckets add up to the whole.
type perfBucket int

const (
	pbCollect     perfBucket = iota // b2s_collect's code on the request, user space
	pbCollectKern                   // the kernel under it: spool page faults, mostly
	pbHandler                       // the other handlers: reverse_proxy, header + respond
	pbHandlerWake                   // kernel: their socket writes waking the reader (the upstream)
	pbCoreUser                      // net/http and Caddy's core around the handlers, user space
	pbCoreWake                      // kernel: response writes waking the reader (wrk)
	pbCoreKern                      // kernel: the rest of the request's TCP/IP and syscalls
	pbShipping                      // off the request: the shipper, kafka-go, the spool's fsync
	pbGC                            // the garbage collector's background worker
	pbOther                         // the scheduler, netpoll, timers, anything else
	pbCount
)

var perfBucketLabels = [pbCount]string{
	pbCollect:     "`b2s_collect` on the request: its code and what it calls (HMAC, GeoIP, encoding, spool append)",
	pbCollectKern: "↳ kernel under it (page faults of spool writes)",
	pbHandler:     "the other handlers: `reverse_proxy` (its upstream connections included), `header` + `respond`",
	pbHandlerWake: "↳ kernel: their socket writes waking the reader (the upstream)",
	pbCoreUser:    "net/http and Caddy's core around the handlers (parsing, routing, allocation)",
	pbCoreWake:    "kernel: response writes waking the reader (wrk, on the other core)",
	pbCoreKern:    "kernel: the rest of the request's TCP/IP and system calls",
	pbShipping:    "off the request: shipping (the shipper, kafka-go) and the spool's fsync, user and kernel",
	pbGC:          "garbage collector, background worker",
	pbOther:       "scheduler, netpoll, timers, other",
}

// perfProfile is one case's samples, by bucket, in nanoseconds of CPU.
type perfProfile struct {
	ns      [pbCount]float64
	total   float64
	samples int
}

// readPerfStacks reads `perf script -F period,ip,sym,dso` output: a line with
// the sample's period (ns of cpu-clock) then its stack, leaf first, one
// frame a line, then a blank line.
func readPerfStacks(r io.Reader) (perfProfile, error) {
	var p perfProfile
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var period float64
	var stack []string
	flush := func() {
		if period > 0 && len(stack) > 0 {
			b := classifyStack(stack)
			p.ns[b] += period
			p.total += period
			p.samples++
		}
		period, stack = 0, stack[:0]
	}
	for sc.Scan() {
		line := sc.Text()
		t := strings.TrimSpace(line)
		switch {
		case t == "":
			flush()
		case !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " \t"):
			flush()
			if v, err := strconv.ParseFloat(strings.Fields(t)[0], 64); err == nil {
				period = v
			}
		default:
			// "ip symbol (dso)"; perf writes [unknown] for frames it
			// cannot name. Kernel frames are marked with a leading "[k]".
			_, sym, ok := strings.Cut(t, " ")
			if !ok {
				continue
			}
			if i := strings.LastIndex(sym, " ("); i >= 0 {
				if strings.Contains(sym[i:], "kernel.kallsyms") {
					sym = kernelMark + sym[:i]
				} else {
					sym = sym[:i]
				}
			}
			stack = append(stack, sym)
		}
	}
	flush()
	return p, sc.Err()
}

// kernelMark starts the name of a kernel frame in a parsed stack.
const kernelMark = "[k]"

func kernelFrame(sym string) bool { return strings.HasPrefix(sym, kernelMark) }

// classifyStack puts one sample in a bucket. The goroutine it ran on comes
// from the stack's root side (a request's net/http connection, the
// shipper, kafka-go, the collector); the owner within a request is the
// innermost of b2s-edge's frames and the other handlers' frames.
func classifyStack(stack []string) perfBucket {
	has := func(sub string) bool {
		for _, f := range stack {
			if strings.Contains(f, sub) {
				return true
			}
		}
		return false
	}
	leafKernel := kernelFrame(stack[0])
	wake := leafKernel && has(kernelMark+"sock_def_readable")
	switch {
	case has("net/http.(*conn).serve") || has("net/http.(*connReader).backgroundRead"):
	case has("net/http.(*persistConn)"):
		// reverse_proxy's upstream connections: net/http's Transport
		// reads and writes each on goroutines of its own.
		if wake {
			return pbHandlerWake
		}
		return pbHandler
	case has("github.com/b2scom/b2s-edge/") || has("segmentio/kafka-go"):
		// Off the request: the shipper, kafka-go's connections, the
		// spool's fsync and segment preparation.
		return pbShipping
	case has("runtime.gcBgMarkWorker"):
		return pbGC
	default:
		return pbOther
	}
	for _, f := range stack {
		switch {
		case strings.HasPrefix(f, "net/http.(*response).") || strings.HasPrefix(f, "net/http.(*chunkWriter).") ||
			strings.HasPrefix(f, "net/http.checkConnErrorWriter"):
			// Writing the response: net/http's work, whichever handler
			// (or wrapper, like b2s_collect's around a page) wrote.
			break
		case strings.Contains(f, "github.com/b2scom/b2s-edge/"):
			if leafKernel {
				return pbCollectKern
			}
			return pbCollect
		case strings.Contains(f, "caddyhttp/reverseproxy.") || strings.Contains(f, "caddyhttp/headers.") ||
			strings.Contains(f, "caddyhttp.StaticResponse"):
			if wake {
				return pbHandlerWake
			}
			return pbHandler
		default:
			continue
		}
		break
	}
	switch {
	case wake:
		return pbCoreWake
	case leafKernel:
		return pbCoreKern
	}
	return pbCoreUser
}

// perfCase is a perf profile with the requests wrk completed meanwhile.
type perfCase struct {
	perfProfile
	requests, seconds float64
	runs              int
}

// perfCase adds up a case's perf runs (perf-NAME.r1, .r2, ...).
func (r *report) perfCase(name string) (perfCase, bool) {
	var c perfCase
	runs, _ := filepath.Glob(filepath.Join(r.dir, "perf-"+name+".r*.stacks.gz"))
	for _, path := range runs {
		run := strings.TrimSuffix(filepath.Base(path), ".stacks.gz")
		p, err := readPerfStacksFile(path)
		w, ok := r.wrk(run + ".wrk.txt")
		secs, _ := strconv.ParseFloat(r.env(run + ".env")["seconds"], 64)
		if err != nil || p.samples == 0 || !ok || secs <= 0 {
			r.fail("perf %s: no samples or no wrk result", run)
			return perfCase{}, false
		}
		for b := range pbCount {
			c.ns[b] += p.ns[b]
		}
		c.total += p.total
		c.samples += p.samples
		// wrk ran a second before and after perf's window at the same load.
		c.requests += w.rps() * secs
		c.seconds += secs
		c.runs++
	}
	return c, c.runs > 0
}

func readPerfStacksFile(path string) (perfProfile, error) {
	f, err := os.Open(path)
	if err != nil {
		return perfProfile{}, err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return perfProfile{}, err
	}
	return readPerfStacks(z)
}

func (c perfCase) usPerReq(b perfBucket) float64 { return c.ns[b] / 1000 / c.requests }
func (c perfCase) totalUS() float64              { return c.total / 1000 / c.requests }

func (r *report) perfSection(b *bytes.Buffer) {
	if why := strings.TrimSpace(readString(filepath.Join(r.dir, "perf-unavailable.txt"))); why != "" {
		fmt.Fprintf(b, "### Kernel included (perf)\n\nNot measured: %s.\n\n", why)
		return
	}
	names := []string{"beacon-valid", "respond", "page-valid", "page-plain"}
	cases := map[string]perfCase{}
	for _, n := range names {
		c, ok := r.perfCase(n)
		if !ok {
			return
		}
		cases[n] = c
	}
	a, rb, e1, e0 := cases["beacon-valid"], cases["respond"], cases["page-valid"], cases["page-plain"]
	fmt.Fprintf(b, "### Kernel included (perf)\n\n")
	fmt.Fprintf(b, "Go's profiler sees only user space. `perf record -e cpu-clock -g` samples Caddy's threads at 4999 Hz,\n")
	fmt.Fprintf(b, "kernel included, while wrk loads a case (round 1, not timed; %d runs of %ss each, the second time in\n", a.runs, fmtF(a.seconds/float64(a.runs), 0))
	fmt.Fprintf(b, "reverse order, added up): each sample goes to one row by its call stack, and the rows are µs of CPU\n")
	fmt.Fprintf(b, "per request (samples over the requests completed meanwhile).\n")
	fmt.Fprintf(b, "The kernel's loopback TCP work runs in the writer's context: a response write delivers the bytes to\n")
	fmt.Fprintf(b, "wrk's socket and wakes wrk, on the other core, from the server's time slice. Raw stacks:\n")
	fmt.Fprintf(b, "`bench/results/perf-*.stacks.gz` (`perf script` output).\n\n")
	fmt.Fprintf(b, "| µs per request | beacon, valid cookie | `respond` | difference | page with `b2s_collect` | page without | difference |\n")
	fmt.Fprintf(b, "|---|---:|---:|---:|---:|---:|---:|\n")
	diff := func(x, y float64) string {
		return strconv.FormatFloat(x-y, 'f', 1, 64)
	}
	for bk := range pbCount {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", perfBucketLabels[bk],
			fmtF(a.usPerReq(bk), 1), fmtF(rb.usPerReq(bk), 1), diff(a.usPerReq(bk), rb.usPerReq(bk)),
			fmtF(e1.usPerReq(bk), 1), fmtF(e0.usPerReq(bk), 1), diff(e1.usPerReq(bk), e0.usPerReq(bk)))
	}
	fmt.Fprintf(b, "| **all** | **%s** | **%s** | **%s** | **%s** | **%s** | **%s** |\n\n",
		fmtF(a.totalUS(), 1), fmtF(rb.totalUS(), 1), diff(a.totalUS(), rb.totalUS()),
		fmtF(e1.totalUS(), 1), fmtF(e0.totalUS(), 1), diff(e1.totalUS(), e0.totalUS()))
	fmt.Fprintf(b, "Requests/s meanwhile: beacon %s, `respond` %s, page with %s, without %s.\n\n",
		fmtF(a.requests/a.seconds, 0), fmtF(rb.requests/rb.seconds, 0), fmtF(e1.requests/e1.seconds, 0), fmtF(e0.requests/e0.seconds, 0))
}
