package main

import (
	"strings"
	"testing"
)

// perfSample writes one sample as `perf script -F period,ip,sym,dso` does:
// frames leaf first, kernel ones in [kernel.kallsyms].
func perfSample(period string, frames ...string) string {
	var b strings.Builder
	b.WriteString("    " + period + " \n")
	for i, f := range frames {
		dso := "(/work/bin/caddy)"
		if k, ok := strings.CutPrefix(f, "k:"); ok {
			f, dso = k, "([kernel.kallsyms])"
		}
		b.WriteString("\t" + strings.Repeat("f", i+1) + " " + f + " " + dso + "\n")
	}
	return b.String() + "\n"
}

func TestPerfStacksGoToTheirBuckets(t *testing.T) {
	const conn = "net/http.(*conn).serve"
	cases := []struct {
		name   string
		frames []string
		want   perfBucket
	}{
		{"b2s code", []string{"github.com/b2scom/b2s-edge/beacon.appendString", "github.com/b2scom/b2s-edge/caddymodule.(*Collect).ServeHTTP", conn}, pbCollect},
		{"a library under b2s", []string{"crypto/internal/fips140/sha256.blockSHANI", "github.com/b2scom/b2s-edge/beacon.(*Signer).Verify", conn}, pbCollect},
		{"spool page fault", []string{"k:ext4_page_mkwrite", "k:exc_page_fault", "github.com/b2scom/b2s-edge/logship.(*Spool).Append", conn}, pbCollectKern},
		{"response write waking wrk", []string{"k:_raw_spin_unlock_irqrestore", "k:sock_def_readable", "k:tcp_sendmsg", "syscall.write",
			"net/http.(*response).finishRequest", conn}, pbCoreWake},
		{"a page's body through b2s_collect's writer is net/http's write", []string{"k:_raw_spin_unlock_irqrestore", "k:sock_def_readable",
			"net/http.(*response).Write", "github.com/b2scom/b2s-edge/caddymodule.(*pageWriter).Write",
			"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy.(*Handler).ServeHTTP",
			"github.com/b2scom/b2s-edge/caddymodule.(*Collect).ServeHTTP", conn}, pbCoreWake},
		{"reverse_proxy under b2s_collect", []string{"runtime.memmove", "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy.(*Handler).ServeHTTP",
			"github.com/b2scom/b2s-edge/caddymodule.(*Collect).ServeHTTP", conn}, pbHandler},
		{"b2s_collect's header hook inside reverse_proxy", []string{"github.com/b2scom/b2s-edge/caddymodule.(*pageWriter).WriteHeader",
			"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy.(*Handler).ServeHTTP", conn}, pbCollect},
		{"respond", []string{"runtime.mallocgc", "github.com/caddyserver/caddy/v2/modules/caddyhttp.StaticResponse.ServeHTTP", conn}, pbHandler},
		{"upstream connection waking nginx", []string{"k:_raw_spin_unlock_irqrestore", "k:sock_def_readable", "net/http.(*persistConn).writeLoop"}, pbHandlerWake},
		{"request parsing", []string{"net/textproto.readMIMEHeader", "net/http.readRequest", conn}, pbCoreUser},
		{"request read syscall", []string{"k:tcp_recvmsg", "syscall.read", conn}, pbCoreKern},
		{"asm without a dot is not kernel", []string{"aeshashbody", "runtime.mapaccess1_faststr", conn}, pbCoreUser},
		{"shipper", []string{"k:tcp_sendmsg", "github.com/segmentio/kafka-go.(*Transport).RoundTrip", "github.com/b2scom/b2s-edge/logship.(*Shipper).run"}, pbShipping},
		{"spool fsync", []string{"k:ext4_sync_file", "syscall.fsync", "github.com/b2scom/b2s-edge/logship.(*Spool).Sync"}, pbShipping},
		{"GC", []string{"runtime.scanobject", "runtime.gcBgMarkWorker"}, pbGC},
		{"scheduler", []string{"k:schedule", "runtime.findRunnable", "runtime.mcall"}, pbOther},
	}
	var in strings.Builder
	for _, c := range cases {
		in.WriteString(perfSample("1000", c.frames...))
	}
	in.WriteString("    250 \n\t1 [unknown] ([unknown])\n\n") // unnamed frames: other
	p, err := readPerfStacks(strings.NewReader(in.String()))
	if err != nil {
		t.Fatal(err)
	}
	if p.samples != len(cases)+1 || p.total != float64(1000*len(cases)+250) {
		t.Fatalf("read %d samples, %v ns; want %d, %d", p.samples, p.total, len(cases)+1, 1000*len(cases)+250)
	}
	for _, c := range cases {
		p, err := readPerfStacks(strings.NewReader(perfSample("1000", c.frames...)))
		if err != nil {
			t.Fatal(err)
		}
		if p.ns[c.want] != 1000 {
			got := perfBucket(-1)
			for b := range pbCount {
				if p.ns[b] != 0 {
					got = b
				}
			}
			t.Errorf("%s: in bucket %d (%s), want %d (%s)", c.name, got, label(got), c.want, label(c.want))
		}
	}
}

func label(b perfBucket) string {
	if b < 0 || b >= pbCount {
		return "none"
	}
	return perfBucketLabels[b]
}
