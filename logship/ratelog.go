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

func (l *rateLimitedLog) log(msg string, err error, fields ...zap.Field) {
	l.mu.Lock()
	l.failing = true
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	l.logger.Error(msg, append(fields, zap.Error(err), zap.Int("suppressed", n))...)
}
