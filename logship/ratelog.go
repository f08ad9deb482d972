package logship

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// rateLimitedLog logs the first error and then at most one line per
// interval, with the number of errors it held back.
type rateLimitedLog struct {
	logger     *zap.Logger
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
	failing    bool
}

// recovered logs msg once after a run of errors.
func (l *rateLimitedLog) recovered(msg string, fields ...zap.Field) {
	l.mu.Lock()
	was := l.failing
	l.failing, l.last, l.suppressed = false, time.Time{}, 0
	l.mu.Unlock()
	if was {
		l.logger.Info(msg, fields...)
	}
}

// log logs err with msg at Error level, rate-limited, and marks a run of
// errors that recovered ends.
func (l *rateLimitedLog) log(msg string, err error, fields ...zap.Field) {
	if n, ok := l.pass(true); ok {
		l.logger.Error(msg, append(fields, zap.Error(err), zap.Int("suppressed", n))...)
	}
}

// warn logs msg at Warn level, rate-limited.
func (l *rateLimitedLog) warn(msg string, fields ...zap.Field) {
	if n, ok := l.pass(false); ok {
		l.logger.Warn(msg, append(fields, zap.Int("suppressed", n))...)
	}
}

// pass reports whether a line may be logged now, and how many were held
// back since the last one; failing marks a run of errors.
func (l *rateLimitedLog) pass(failing bool) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failing = l.failing || failing
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return 0, false
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return n, true
}
