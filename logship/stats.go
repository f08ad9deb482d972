package logship

import "sync/atomic"

// Stats counts what happened to records. One Stats may be shared by many
// shippers (successive configurations of one process), so that counters
// never go backwards across a reload. The zero value is ready to use.
type Stats struct {
	// Accepted counts records taken into the queue.
	Accepted atomic.Uint64
	// Shipped counts records Kafka acknowledged.
	Shipped atomic.Uint64
	// DroppedFull counts records refused because the queue was full.
	DroppedFull atomic.Uint64
	// DroppedClosed counts records lost at shutdown: still queued when
	// the flush timeout ran out, or offered after close.
	DroppedClosed atomic.Uint64
	// WriteErrors counts failed write attempts (each is retried).
	WriteErrors atomic.Uint64
	// Queued is the number of records waiting in queues now.
	Queued atomic.Int64
}
