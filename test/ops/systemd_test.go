package ops

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// systemd-analyze verify checks the unit's syntax, its directives and that
// its commands exist. It reports unknown keys and bad values as warnings
// with exit status 0, so any line naming the unit fails the test. The unit
// runs /usr/bin/caddy; the copy verified runs the binary built here.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: package systemd)")
	}
	caddy := caddyBinary(t)
	unit := readRepoFile(t, prodUnit)
	if strings.Count(unit, "/usr/bin/caddy ") != 2 {
		t.Fatalf("%s: want ExecStart and ExecReload to run /usr/bin/caddy, to point them at the test binary", prodUnit)
	}
	unit = strings.ReplaceAll(unit, "/usr/bin/caddy ", caddy+" ")
	file := filepath.Join(t.TempDir(), "b2s-edge.service")
	if err := os.WriteFile(file, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), analyze, "verify", file).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", prodUnit, err, out)
	}
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "b2s-edge.service") {
			t.Errorf("systemd-analyze verify %s: %s", prodUnit, strings.TrimSpace(line))
		} else if strings.TrimSpace(line) != "" {
			t.Logf("systemd-analyze verify (not about this unit): %s", strings.TrimSpace(line))
		}
	}
}

// systemd kills the service once TimeoutStopSec has passed. A stop first
// waits up to grace_period for open connections, then ships what it can to
// Kafka for up to flush_timeout: the unit must allow for both, or the
// shutdown flush is cut short (records stay in the spool, but ship late).
func TestSystemdUnitWaitsForGracePeriodAndFlush(t *testing.T) {
	cfg, _ := adaptProduction(t)
	grace, _ := lookup(cfg, "apps", "http", "grace_period").(float64) // nanoseconds
	flush, _ := lookup(cfg, "apps", "b2s", "kafka", "flush_timeout").(float64)
	if grace == 0 {
		t.Errorf("%s sets no grace_period: a stop would wait for open connections forever", prodCaddyfile)
	}
	if flush == 0 {
		flush = float64(5 * time.Second) // the plugin's default
	}
	var stop time.Duration
	for line := range strings.Lines(readRepoFile(t, prodUnit)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "TimeoutStopSec="); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("%s: TimeoutStopSec=%s: %v", prodUnit, v, err)
			}
			stop = d
		}
	}
	need := time.Duration(grace + flush)
	if stop <= need {
		t.Errorf("%s: TimeoutStopSec=%v; want more than grace_period + flush_timeout = %v", prodUnit, stop, need)
	}
}
