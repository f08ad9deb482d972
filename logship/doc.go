// Package logship ships encoded records from the request path to Apache
// Kafka with github.com/segmentio/kafka-go. It knows nothing of Caddy.
//
// The request path only ever hands a record to a bounded in-memory queue
// and never waits on Kafka; one background shipper drains the queue in
// batches with synchronous, acknowledged writes and retries a failed batch
// until it is delivered or the shipper is closed. A full queue drops the
// newest record and counts it.
package logship
