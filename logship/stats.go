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
	// SpoolRepairs counts damage found in spool segments, each run of
	// damaged bytes once: skipped in the middle of a segment, cut off at
	// its end (a torn tail after a crash), or a damaged segment header.
	SpoolRepairs atomic.Uint64
	// DroppedDamaged counts records lost to damage on disk: appended, then
	// unreadable. Counted by the gap in sequence numbers around the
	// damage; a damaged end of the newest segment, which nothing after it
	// bounds, counts as one record (a torn append), as does damage in a
	// segment written by a version before sequence numbers.
	DroppedDamaged atomic.Uint64
	// SpoolRefused counts files in the spool directory named as segments
	// but refused at open, left untouched and unread: a symbolic link or
	// anything else that is not a regular file.
	SpoolRefused atomic.Uint64
	// Quarantined counts records Kafka refused for good (too large for
	// the topic, invalid), written to the quarantine file instead, so the
	// records behind them shipped on.
	Quarantined atomic.Uint64
	// QuarantineDropped counts records Kafka refused for good that the
	// quarantine file could not take either (full, or a disk error): they
	// are lost.
	QuarantineDropped atomic.Uint64
}
