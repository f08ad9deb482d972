// Command ratelat measures HTTP/1.1 latency at a fixed request rate (an
// open loop), where wrk's closed loop measures it at saturation. Requests
// are scheduled at even intervals whatever the server does, and each
// latency is counted from the request's scheduled time, so a server that
// falls behind is charged for the queue it builds (no coordinated
// omission). Two servers compared at the same rate show what each adds to
// a request, rather than how their throughputs differ.
//
//	ratelat -url http://127.0.0.1:8080/b.gif -rate 10000 -c 64 -d 5s -H 'Cookie: b2sid=...'
//
// It prints one JSON object: the rate asked and achieved, the requests
// sent and answered 200, and latency percentiles in milliseconds.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

type result struct {
	URL       string  `json:"url"`
	Rate      float64 `json:"rate"`
	Achieved  float64 `json:"achieved_rate"`
	Sent      int     `json:"sent"`
	OK        int     `json:"ok"`
	Errors    int     `json:"errors"`
	P50       float64 `json:"p50_ms"`
	P90       float64 `json:"p90_ms"`
	P99       float64 `json:"p99_ms"`
	P999      float64 `json:"p99_9_ms"`
	Max       float64 `json:"max_ms"`
	Conns     int     `json:"connections"`
	Duration  string  `json:"duration"`
	WarmupFor string  `json:"warmup"`
}

func main() {
	var hs headers
	target := flag.String("url", "", "`URL` to request (http only)")
	rate := flag.Float64("rate", 10000, "requests per second")
	conns := flag.Int("c", 64, "keep-alive connections")
	dur := flag.Duration("d", 5*time.Second, "timed duration")
	warmup := flag.Duration("warmup", time.Second, "untimed run at the same rate first")
	flag.Var(&hs, "H", "request header `Name: value` (repeatable)")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil || u.Scheme != "http" || u.Host == "" || *rate <= 0 || *conns <= 0 {
		fmt.Fprintln(os.Stderr, "ratelat: need -url http://host:port/path, a positive -rate and -c")
		os.Exit(2)
	}
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", u.RequestURI(), u.Host)
	for _, h := range hs {
		req.WriteString(h + "\r\n")
	}
	req.WriteString("\r\n")
	raw := []byte(req.String())

	if _, _, err := run(u.Host, raw, *rate, *conns, *warmup); err != nil {
		fmt.Fprintf(os.Stderr, "ratelat: %v\n", err)
		os.Exit(1)
	}
	lat, errs, err := run(u.Host, raw, *rate, *conns, *dur)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ratelat: %v\n", err)
		os.Exit(1)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1e6
	}
	res := result{URL: *target, Rate: *rate, Sent: len(lat) + errs, OK: len(lat), Errors: errs,
		Achieved: float64(len(lat)) / dur.Seconds(), P50: pct(0.50), P90: pct(0.90), P99: pct(0.99),
		P999: pct(0.999), Conns: *conns, Duration: dur.String(), WarmupFor: warmup.String()}
	if len(lat) > 0 {
		res.Max = float64(lat[len(lat)-1]) / 1e6
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

// run sends requests at rate for d over conns connections and returns the
// latencies (ns) of the 200 answers and the number of failures.
func run(host string, raw []byte, rate float64, conns int, d time.Duration) ([]time.Duration, int, error) {
	n := int(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	due := make(chan time.Time, n) // every request's scheduled time, queued if all connections are busy
	var (
		mu   sync.Mutex
		lat  = make([]time.Duration, 0, n)
		errs int
		wg   sync.WaitGroup
	)
	dialErr := make(chan error, conns)
	for range conns {
		c, err := net.Dial("tcp", host)
		if err != nil {
			return nil, 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			br := bufio.NewReaderSize(c, 16<<10)
			mine := make([]time.Duration, 0, n/conns+16)
			bad := 0
			for t := range due {
				if w := time.Until(t); w > 0 {
					time.Sleep(w)
				}
				if _, err := c.Write(raw); err != nil {
					dialErr <- err
					bad++
					break
				}
				status, err := readResponse(br)
				if err != nil {
					dialErr <- err
					bad++
					break
				}
				if status != 200 {
					bad++
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	start := time.Now().Add(10 * time.Millisecond)
	for i := range n {
		t := start.Add(time.Duration(i) * interval)
		if w := time.Until(t); w > time.Millisecond {
			time.Sleep(w - time.Millisecond) // hand them out just ahead of time
		}
		due <- t
	}
	close(due)
	wg.Wait()
	select {
	case err := <-dialErr:
		return lat, errs, fmt.Errorf("connection failed: %w", err)
	default:
	}
	return lat, errs, nil
}

// readResponse reads one response with a Content-Length body and returns
// its status.
func readResponse(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, _ := strconv.Atoi(f[1])
	length := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		s := strings.TrimRight(string(line), "\r\n")
		if s == "" {
			break
		}
		if k, v, ok := strings.Cut(s, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if length < 0 {
		return 0, fmt.Errorf("response without Content-Length")
	}
	_, err = io.CopyN(io.Discard, br, int64(length))
	return status, err
}
