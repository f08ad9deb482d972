package logship

import "sync/atomic"

// Stats counts what happened to records. One Stats may be shared by many
// spools and shippers (successive configurations of one process), so that
// counters never go backwards across a reload. The zero value is ready to
// use.
type Stats struct {
	// Accepted counts records appended to the spool.
	Accepted atomic.Uint64
	// Shipped counts records Kafka acknowledged (a record sent again
	// after a failure that Kafka had in fact stored counts twice).
	Shipped atomic.Uint64
	// DroppedFull counts records refused because the spool was full.
	DroppedFull atomic.Uint64
	// DroppedError counts records that could not be appended: a disk
	// error, or a spool already closed.
	DroppedError atomic.Uint64
	// Writes counts writes to Kafka that were acknowledged, in full or in
	// part: one per spool read, plus one per retry that got records
	// through. Shipped / Writes is the records per write, which
	// Config.BatchTimeout raises.
	Writes atomic.Uint64
	// WriteErrors counts failed Kafka write attempts (each is retried).
	WriteErrors atomic.Uint64
	// SpoolRepairs counts damaged spool segments truncated at their last
	// intact record (a torn tail after a crash, or corruption).
	SpoolRepairs atomic.Uint64
	// Quarantined counts records Kafka refused for good (too large for
	// the topic, invalid), written to the quarantine file instead, so the
	// records behind them shipped on.
	Quarantined atomic.Uint64
	// QuarantineDropped counts records Kafka refused for good that the
	// quarantine file could not take either (full, or a disk error): they
	// are lost.
	QuarantineDropped atomic.Uint64
}
