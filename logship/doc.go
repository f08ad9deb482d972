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
package logship
