package testproc

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestAProcessLogsAndReportsHowItExited(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "sh.log")
	first := Start(t, "first", logPath, []string{"B2S_TESTPROC=from the environment"}, "/bin/sh", "-c", `echo "one: $B2S_TESTPROC"; exit 3`)
	<-first.Done
	if !first.Exited() || first.WaitErr == nil || !strings.Contains(first.WaitErr.Error(), "exit status 3") {
		t.Fatalf("exited %v with %v, want exit status 3", first.Exited(), first.WaitErr)
	}

	second := Start(t, "second", logPath, nil, "/bin/sh", "-c", "echo two")
	<-second.Done
	if second.WaitErr != nil {
		t.Fatalf("second process: %v", second.WaitErr)
	}
	if log := second.Log(); !strings.Contains(log, "one: from the environment\n") || !strings.Contains(log, "two\n") {
		t.Errorf("log %q does not hold what both processes wrote", log)
	}
	if own := second.OwnLog(); strings.Contains(own, "one:") || !strings.HasPrefix(own, "=== ") || !strings.HasSuffix(own, "two\n") {
		t.Errorf("second process's own log %q holds more, or less, than its start line and its output", own)
	}
}

func TestStopEndsAProcessAndWaitReadyWaitsForIt(t *testing.T) {
	p := Start(t, "sleep", filepath.Join(t.TempDir(), "sleep.log"), nil, "/bin/sh", "-c", "echo ready; exec sleep 60")
	if p.Exited() {
		t.Fatal("exited at once")
	}
	calls := 0
	p.WaitReady(t, 10*time.Second, func() error {
		calls++
		if !strings.Contains(p.OwnLog(), "ready\n") {
			return fmt.Errorf("not ready after %d calls", calls)
		}
		return nil
	})
	start := time.Now()
	p.Stop(t)
	if !p.Exited() || time.Since(start) > 5*time.Second {
		t.Fatalf("Stop returned after %v, exited %v", time.Since(start), p.Exited())
	}
	p.Stop(t) // a second Stop does nothing
}

func TestFreePortCanBeListenedOn(t *testing.T) {
	port := FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("listening on the free port %d: %v", port, err)
	}
	l.Close()
}

// TestFreePortIsNeverGivenTwice: ports held by a test are not given to
// another claimant until it ends. 300 draws from the ~12,000 ports below
// the ephemeral range would repeat one with a probability above 97% if
// the claims did not hold, so the test fails when they do not.
func TestFreePortIsNeverGivenTwice(t *testing.T) {
	seen := make(map[int]bool)
	for range 300 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d given twice while held", p)
		}
		if p >= ephemeralStart() {
			t.Fatalf("port %d is in the kernel's ephemeral range, from %d", p, ephemeralStart())
		}
		seen[p] = true
	}
}

func TestTopicIsAValidKafkaNameOfItsOwn(t *testing.T) {
	t.Run("a name with spaces/and slashes", func(t *testing.T) {
		a, b := Topic(t, "e2e"), Topic(t, "e2e")
		if !regexp.MustCompile(`^e2e\.TestTopicIsAValidKafkaNameOfItsOwn_a_name_with_spaces_and_slashes\.[0-9a-f]{8}$`).MatchString(a) {
			t.Errorf("topic %q", a)
		}
		if a == b {
			t.Errorf("two calls gave the same topic %q", a)
		}
	})
}
