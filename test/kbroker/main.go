// Command kbroker runs a single in-process Kafka-protocol broker, built on
// franz-go's pkg/kfake, for local runs and end-to-end tests of b2s-edge.
//
// It is a development tool: it lives under test/ so that it is never linked
// into the product binary, and it has no authentication, no TLS and one
// broker. Usage:
//
//	go run ./test/kbroker [-addr 127.0.0.1:9092] [-topic b2s.events] [-partitions 3] [-data-dir DIR]
//
// When the listener is bound and the topics exist it prints one line to
// stderr, for scripts and tests to wait on:
//
//	kbroker: listening on 127.0.0.1:9092, topics b2s.events (3 partitions)
//
// It runs until SIGINT or SIGTERM, then closes the cluster (which, with
// -data-dir, saves its state) and exits 0. A second signal forces an exit.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

// topicList is a flag.Value that accepts -topic several times and
// comma-separated lists, so both `-topic a -topic b` and `-topic a,b` work.
type topicList []string

func (l *topicList) String() string { return strings.Join(*l, ",") }

func (l *topicList) Set(s string) error {
	for t := range strings.SplitSeq(s, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			return fmt.Errorf("empty topic name in %q", s)
		}
		*l = append(*l, t)
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "kbroker: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		addr       = flag.String("addr", "127.0.0.1:9092", "`host:port` to listen on; host must be an IP address, port 0 picks a free port")
		partitions = flag.Int("partitions", 3, "partitions of each topic created at start")
		dataDir    = flag.String("data-dir", "", "`directory` to persist topics and records in, so a restarted broker keeps them (default: memory only)")
		logLevel   = flag.String("log-level", "none", "kfake's log level on stderr: none, error, warn, info or debug")
		topics     topicList
	)
	flag.Var(&topics, "topic", "topic to create at start; repeatable or comma-separated (default b2s.events)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if len(topics) == 0 {
		topics = topicList{"b2s.events"}
	}
	if *partitions < 1 {
		return fmt.Errorf("-partitions must be at least 1, got %d", *partitions)
	}
	level, err := parseLogLevel(*logLevel)
	if err != nil {
		return err
	}
	listenAddr, err := parseAddr(*addr)
	if err != nil {
		return err
	}

	opts := []kfake.Opt{
		// One port means one broker; kfake starts three by default.
		kfake.Ports(int(listenAddr.Port())),
		// kfake always asks its listen function for "127.0.0.1:<port>".
		// Listening on our own address instead honours any host in -addr
		// (::1, 127.0.0.2) and never a wildcard. The broker advertises the
		// listener's real address in metadata, so clients that bootstrap
		// from -addr keep talking to the same host.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, listenAddr.String())
		}),
		kfake.SeedTopics(int32(*partitions), topics...),
		// A CreateTopics request that leaves the count to the broker gets
		// the same count; kfake's own default is 10. Topics are not
		// created on first use, so a misspelt topic fails loudly.
		kfake.DefaultNumPartitions(*partitions),
		kfake.WithLogger(kfake.BasicLogger(os.Stderr, level)),
	}
	if *dataDir != "" {
		// kfake does not lock its directory, and two brokers writing one
		// directory corrupt each other's state; hold a lock for our life.
		unlock, err := lockDir(*dataDir)
		if err != nil {
			return err
		}
		defer unlock()
		// SyncWrites fsyncs every produced batch: slower, but a record
		// that was acknowledged survives even a kill -9, which is what a
		// restart test wants to rely on.
		opts = append(opts, kfake.DataDir(*dataDir), kfake.SyncWrites())
	}

	// NewCluster has bound the listener when it returns; connections made
	// before its accept loop starts wait in the kernel's backlog, so the
	// broker is ready as soon as this returns.
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("starting broker on %s: %w", listenAddr, err)
	}

	// kfake seeds topics only into an empty data directory; on a restart
	// it loads the saved topics and ignores SeedTopics. Create the ones
	// the saved state lacks so -topic means the same thing either way.
	var desc []string
	for _, t := range topics {
		if c.TopicInfo(t) == nil {
			if err := c.CreateTopic(t, int32(*partitions), nil); err != nil {
				c.Close()
				return fmt.Errorf("creating topic %q: %w", t, err)
			}
		}
		// A restarted broker keeps the partition count it saved, which
		// may differ from -partitions: report what clients will see.
		desc = append(desc, fmt.Sprintf("%s (%d partitions)", t, len(c.PartitionInfos(t))))
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)

	fmt.Fprintf(os.Stderr, "kbroker: listening on %s, topics %s\n",
		strings.Join(c.ListenAddrs(), ","), strings.Join(desc, ", "))

	<-sigs
	// Close saves state to -data-dir and may take a moment; a second
	// signal is the way out if it hangs.
	done := make(chan struct{})
	go func() {
		c.Close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-sigs:
		return errors.New("forced exit before the broker closed")
	}
}

// parseAddr accepts host:port with an IP literal host. A wildcard host is
// refused: kfake advertises the listener's own address to clients, and
// 0.0.0.0 or :: is not an address a client can connect to, besides
// exposing a broker without authentication to the network.
func parseAddr(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("parsing -addr %q: %w", s, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("parsing -addr %q: host must be an IP address such as 127.0.0.1", s)
	}
	if ip.IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("parsing -addr %q: a wildcard host cannot be advertised to clients; use 127.0.0.1", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("parsing -addr %q: bad port: %w", s, err)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(p)), nil
}

// lockDir creates dir if needed and takes an exclusive, non-blocking flock
// on a file in it. The kernel drops the lock if the process dies, so a
// kill -9 leaves no stale lock behind.
func lockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating -data-dir: %w", err)
	}
	path := filepath.Join(dir, "kbroker.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking -data-dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking -data-dir %q: another kbroker is using it (%w)", dir, err)
	}
	return func() { f.Close() }, nil
}

func parseLogLevel(s string) (kfake.LogLevel, error) {
	switch strings.ToLower(s) {
	case "none", "":
		return kfake.LogLevelNone, nil
	case "error":
		return kfake.LogLevelError, nil
	case "warn":
		return kfake.LogLevelWarn, nil
	case "info":
		return kfake.LogLevelInfo, nil
	case "debug":
		return kfake.LogLevelDebug, nil
	}
	return 0, fmt.Errorf("unknown -log-level %q: use none, error, warn, info or debug", s)
}
