package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// latRun is one line of http/ratelat.jsonl: one case at the fixed rate.
type latRun struct {
	Case     string  `json:"case"`
	Round    int     `json:"round"`
	Rate     float64 `json:"rate"`
	Achieved float64 `json:"achieved_rate"`
	OK       int     `json:"ok"`
	Errors   int     `json:"errors"`
	P50      float64 `json:"p50_ms"`
	P90      float64 `json:"p90_ms"`
	P99      float64 `json:"p99_ms"`
	P999     float64 `json:"p99_9_ms"`
	Max      float64 `json:"max_ms"`
}

// latRuns reads the equal-load latency runs, by case; none when the file
// is missing (a run made before it existed).
func (r *report) latRuns() map[string][]latRun {
	out := map[string][]latRun{}
	f, err := os.Open(filepath.Join(r.dir, "http", "ratelat.jsonl"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l latRun
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Case != "" {
			out[l.Case] = append(out[l.Case], l)
		}
	}
	return out
}

// latPairs returns, for each round both the beacon and respond ran, the
// beacon's p99 over respond's.
func latPairs(lat map[string][]latRun) (ratios []float64) {
	b := map[int]latRun{}
	for _, l := range lat["b_respond"] {
		b[l.Round] = l
	}
	for _, a := range lat["a_valid"] {
		if y, ok := b[a.Round]; ok && y.P99 > 0 && a.Errors == 0 && y.Errors == 0 {
			ratios = append(ratios, a.P99/y.P99)
		}
	}
	return ratios
}

// latVerdict judges the p99 target a second time, at equal load.
func (r *report) latVerdict(lat map[string][]latRun, rate string) (string, verdict) {
	pr := latPairs(lat)
	v := verdict{label: "at equal load"}
	if len(pr) == 0 {
		return "", v
	}
	m := medianOf(pr)
	met := m <= 1.2
	v.met = &met
	return fmt.Sprintf("; at %s req/s each (open loop), median of %d paired rounds %sx", rate, len(pr), f2(m)), v
}

func (r *report) latSection(b *bytes.Buffer, m map[string]string, lat map[string][]latRun) {
	if len(lat) == 0 {
		return
	}
	fmt.Fprintf(b, "### Latency at equal load\n\n")
	fmt.Fprintf(b, "wrk's closed loop above measures latency at saturation, where it follows throughput. Here the beacon (valid\n")
	fmt.Fprintf(b, "cookie) and `respond` each get the same fixed rate, %s req/s, from `bench/cmd/ratelat` (an open loop on the\n", m["lat_rate"])
	fmt.Fprintf(b, "load core, %s connections, %s after a %s warm-up, the same headers), which counts each request's latency\n", m["connections"], m["duration"], m["warmup"])
	fmt.Fprintf(b, "from its scheduled time, so a server that falls behind is charged for its queue. Alternating, one pair a round.\n\n")
	fmt.Fprintf(b, "| case | round | achieved req/s | errors | p50 | p90 | p99 | p99.9 | max |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	label := map[string]string{"a_valid": "(a) `b2s_collect` beacon, valid cookie", "b_respond": "(b) `respond`"}
	for _, c := range []string{"a_valid", "b_respond"} {
		for _, l := range lat[c] {
			ms := func(v float64) string {
				if math.IsNaN(v) {
					return "–"
				}
				return fmtF(v, 2) + " ms"
			}
			fmt.Fprintf(b, "| %s | %d | %s | %d | %s | %s | %s | %s | %s |\n", label[c], l.Round, fmtF(l.Achieved, 0), l.Errors,
				ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max))
		}
	}
	if pr := latPairs(lat); len(pr) > 0 {
		var s []string
		for _, v := range pr {
			s = append(s, f2(v))
		}
		fmt.Fprintf(b, "\np99 of the beacon over `respond`'s, round by round: %s (median %sx).\n", strings.Join(s, ", "), f2(medianOf(pr)))
	}
	b.WriteString("\n")
}
