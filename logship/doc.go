// Package logship gets records from the request path to Apache Kafka
// without losing them. It knows nothing of Caddy.
//
// The request path appends each record to a Spool, a checksummed,
// size-bounded log on local disk, before the response is written; a
// record in the spool survives the death of the process. One Shipper
// reads the spool in order and writes batches to Kafka with
// github.com/segmentio/kafka-go, synchronously and acknowledged by every
// in-sync replica, and moves the spool's cursor past a batch only once
// Kafka has it. Delivery is at least once: a record may reach Kafka twice
// (with the same event_id), never zero times while the disk holds.
//
// The files:
//
//	spool.go          the spool's format on disk, SpoolConfig, OpenSpool, Close
//	spool_append.go   Append; creating, preparing, rolling and syncing segments
//	spool_read.go     Read and Ack, the cursor file, parsing entries
//	spool_recover.go  checks and repairs at open: torn tails, zeroed ends
//	config.go         Config (the shipper's), its defaults and Validate
//	compression.go    the codecs, and kafka-go's snappy level
//	shipper.go        Shipper: reads the spool, writes, retries, acknowledges
//	produce.go        producer: a write as produce requests through kafka-go's Transport
//	quarantine.go     records Kafka refuses for good: isolated, kept in a file, counted
//	limit.go          ClientLimiter: what one client may put into the spool
//	security.go       SASL logins
//	stats.go          Stats, the counters
//	ratelog.go        the rate-limited error log
package logship
