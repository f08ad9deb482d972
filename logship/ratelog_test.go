package logship

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestARateLimitedLogCountsTheLinesItHeldBack(t *testing.T) {
	t.Parallel()
	// The first line is logged; those within the interval after it are
	// held back, and the next line logged after the interval says how
	// many were.
	core, logs := observer.New(zapcore.InfoLevel)
	l := &rateLimitedLog{logger: zap.New(core), every: time.Minute}
	for range 5 {
		l.warn("refused")
	}
	l.mu.Lock()
	l.last = l.last.Add(-l.every) // the interval over
	l.mu.Unlock()
	l.warn("refused")
	got := logs.All()
	if len(got) != 2 {
		t.Fatalf("logged %d lines, want the first and the one after the interval", len(got))
	}
	if n := got[0].ContextMap()["suppressed"]; n != int64(0) {
		t.Errorf("the first line says %v held back, want 0", n)
	}
	if n := got[1].ContextMap()["suppressed"]; n != int64(4) {
		t.Errorf("the line after the interval says %v held back, want 4", n)
	}
}
