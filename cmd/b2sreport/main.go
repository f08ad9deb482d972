// Command b2sreport reads the records b2s-edge ships to Kafka and prints, per
// site, the page views, unique visitors, records by consent and top pages
// over a window of the records' ts, and across the site network the unique
// visitors and signed-in members. It is a worked example of consuming the
// records correctly with the project's Kafka client, segmentio/kafka-go:
//
//   - a consumer group (kafka-go's Reader with a GroupID), so each run goes on
//     from where the last one stopped;
//   - offsets committed only after the records are counted and the report is
//     written (at least once on the consumer's side too);
//   - duplicates dropped by event_id, since the edge delivers at least once;
//   - identifiers taken from full-consent records only, and the records
//     without them counted apart, not dropped;
//   - network IDs joined by prev_network_id merged into one visitor, in
//     whatever order the partitions deliver the records;
//   - records that are malformed or of a newer schema skipped and counted,
//     never guessed at.
//
// Usage:
//
//	b2sreport [-brokers host:port,...] [-topic b2s.events] [-group b2sreport]
//	          [-from committed|beginning] [-window 1h | -since T -until T]
//	          [-top 10] [-json] [-exit-at-end=true] [-dedupe-window 1h]
//
// Run b2sreport -h for the definitions of what it counts. The counting is in
// report.go, which knows nothing of Kafka; this file reads the topic.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

const usageText = `Usage: b2sreport [flags]

Reads the b2s-edge records from a Kafka topic in a consumer group and prints,
per site (the record's host, as recorded), over a window of the records' ts:

  page views  beacon records whose event is "pageview", which the site's pages
              send with <img src="/b.gif?e=pageview">. Page records are not
              page views: they are every request the site served, stylesheets
              and images included, and a page that carries the beacon would
              be counted twice. A site without the beacon shows 0 page views.
  visitors    distinct cookie_ids among the site's records, pages and beacons;
              a record without a cookie_id counts for no visitor.
  unidentified
              records that identify no visitor: consent other than full
              (only full records carry identifiers), or full without a
              cookie_id (e.g. a cross-site beacon without third-party
              cookies).
  consent     the site's records by consent: full, optout, gpc, child,
              pending (a visitor where the site requires consent who has
              not given it yet). A record without the field was written
              before it existed and is full.
  consent changes
              the site's records marked consent_changed, where it requires
              consent: granted (consent full: the consent endpoint's grant,
              or the first record identified after the consent platform's
              cookie granted it), withdrawn (consent optout: the consent
              endpoint's withdrawal) and refused (consent pending: the
              consent platform's cookie said no to a browser holding the
              edge's identifier cookies, which were deleted). Listed for
              the sites that have any;
              -json gives every site's consent_changes.
  top pages   the paths of those page views (URL without query or fragment),
              most viewed first, ties in path order.
  records     every record of the site that was counted.

and across the sites of the network:

  network visitors
              distinct network_ids among the records of every site; a
              record without one (written before the field existed) counts
              its cookie_id as its network_id. A record's prev_network_id
              says that ID and its network_id are one visitor: they, and IDs
              merged with either, count once, whatever order the records
              are read in and even when the record that merges them is
              outside the window. Only the records a run reads are merged.
  members     distinct member_ids (signed-in members) among the records of
              every site.

and, apart from the visitors, for the records without consent to identify
the visitor (optout, gpc, pending) that carry an anon_id:

  anonymous visitors (anon_id)
              daily: distinct anon_ids of each UTC day, summed over the
              days of the window; sessions: runs of one anon_id's records
              without a pause of 30 minutes; by UTC day when the window
              spans more than one. An anon_id means one browser on one
              network for one site on one UTC day (on one edge, unless the
              edges share anon_id_key): it is never joined across days or
              added to the cookie visitors.

and per campaign of the site's own mail (records of kinds open, click and
unsubscribe, which count in no site):

  opens, clicks
              the pixel fetched and the links followed by the reader, of
              authentic links; a record with a prefetch field (Apple Mail
              Privacy Protection, Gmail's or Yahoo's proxy, a link scanner)
              is never one of them, and counts as prefetched instead.
  openers, clickers
              distinct member_ids among them; an open of a child's link, of
              an unsubscribed member or of an expired link names no one.
  unsubscribes
              one-click unsubscribes, and the member IDs to stop mailing,
              printed as "unsubscribe <campaign> <member_id>" lines (in -json,
              each campaign's unsubscribed list). A mailing system that
              consumes the topic itself acts on each unsubscribe record: they
              are keyed by member, so a member's records come in order.

A record delivered twice (the same event_id) is counted once: event_ids are
remembered for -dedupe-window of ts behind the newest record read. Records
that are not JSON, lack a field the report needs or hold one it cannot use
(malformed: a cookie_id, network_id or prev_network_id that is not 32 hex
digits, an unknown consent, identifiers on a record whose consent is not
full, an anon_id on a full or child record or not of 22 base64url
characters, consent_changed on a mail record, on a consent other than full
or optout, or on a full record without cookie_id), carry a schema version
newer than 1 (unknown schema) or fall outside the window are read and
skipped, and the report says how many.

With -exit-at-end (the default) b2sreport reads each partition up to the end
it had at the start, prints the report and only then commits the group's
offsets: a run that fails or is interrupted commits nothing, and the next run
counts those records again. With -exit-at-end=false it reads until SIGINT or
SIGTERM, then prints and commits. Committed offsets mark what the group has
read, not what it counted: records outside the window are committed too. Run
one b2sreport per group at a time.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "b2sreport: %v\n", err)
		os.Exit(1)
	}
}

// errUsage reports bad flags, which the flag package has already printed.
var errUsage = errors.New("bad usage")

type options struct {
	brokers   []string
	topic     string
	group     string
	beginning bool
	json      bool
	exitAtEnd bool
	cfg       Config
}

// parseArgs reads the flags; now is when the report starts, the end of the
// default window.
func parseArgs(args []string, now time.Time, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("b2sreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	var (
		o       options
		brokers = fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap `brokers`, host:port, comma-separated")
		from    = fs.String("from", "committed", "`where` the group starts: committed (its committed offsets; the start of the topic where it has none) or beginning (resets the group's offsets to the start of the topic first)")
		window  = fs.Duration("window", time.Hour, "length of the window of ts: the last `duration` before now, or after -since, or before -until")
		since   = fs.String("since", "", "start of the window of ts, an RFC 3339 `time`, included (e.g. 2026-11-28T00:00:00Z)")
		until   = fs.String("until", "", "end of the window of ts, an RFC 3339 `time`, excluded (default: none, to the end of the topic)")
	)
	fs.StringVar(&o.topic, "topic", "b2s.events", "Kafka `topic` of the records")
	fs.StringVar(&o.group, "group", "b2sreport", "consumer `group` whose offsets say where to start and are committed after the report")
	fs.IntVar(&o.cfg.Top, "top", 10, "pages listed per site, most viewed first")
	fs.BoolVar(&o.json, "json", false, "print the report as one JSON object")
	fs.BoolVar(&o.exitAtEnd, "exit-at-end", true, "stop at the end each partition had at the start; false: read until SIGINT or SIGTERM")
	fs.DurationVar(&o.cfg.DedupeWindow, "dedupe-window", time.Hour, "how far behind the newest record (by ts) event_ids are remembered to drop duplicates")
	fs.IntVar(&o.cfg.DedupeMax, "dedupe-max", 2_000_000, "most event_ids remembered, about 40 bytes each; past it the oldest are forgotten first")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q: every option is a flag (see -h)", fs.Args())
	}
	windowSet := false
	fs.Visit(func(f *flag.Flag) { windowSet = windowSet || f.Name == "window" })

	for b := range strings.SplitSeq(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			o.brokers = append(o.brokers, b)
		}
	}
	switch {
	case len(o.brokers) == 0:
		return nil, errors.New("-brokers is empty: give at least one host:port")
	case o.topic == "":
		return nil, errors.New("-topic is empty")
	case o.group == "":
		return nil, errors.New("-group is empty: the report needs a group to commit to")
	case *from != "committed" && *from != "beginning":
		return nil, fmt.Errorf("-from %q: use committed or beginning", *from)
	case *window <= 0:
		return nil, fmt.Errorf("-window %v: must be positive", *window)
	case o.cfg.Top < 0:
		return nil, fmt.Errorf("-top %d: must be 0 or more", o.cfg.Top)
	case o.cfg.DedupeWindow <= 0:
		return nil, fmt.Errorf("-dedupe-window %v: must be positive", o.cfg.DedupeWindow)
	case o.cfg.DedupeMax <= 0:
		return nil, fmt.Errorf("-dedupe-max %d: must be positive", o.cfg.DedupeMax)
	}
	o.beginning = *from == "beginning"
	var err error
	o.cfg.Since, o.cfg.Until, err = resolveWindow(now, *since, *until, *window, windowSet)
	if err != nil {
		return nil, err
	}
	return &o, nil
}

// resolveWindow turns -since, -until and -window into [since, until); a
// zero until is open.
func resolveWindow(now time.Time, sinceFlag, untilFlag string, window time.Duration, windowSet bool) (since, until time.Time, err error) {
	if sinceFlag != "" {
		if since, err = time.Parse(time.RFC3339Nano, sinceFlag); err != nil {
			return since, until, fmt.Errorf("-since %q: want an RFC 3339 time such as 2026-11-28T00:00:00Z", sinceFlag)
		}
	}
	if untilFlag != "" {
		if until, err = time.Parse(time.RFC3339Nano, untilFlag); err != nil {
			return since, until, fmt.Errorf("-until %q: want an RFC 3339 time such as 2026-11-29T00:00:00Z", untilFlag)
		}
	}
	switch {
	case sinceFlag != "" && untilFlag != "":
		if windowSet {
			return since, until, errors.New("-window cannot be combined with both -since and -until")
		}
	case sinceFlag != "":
		if windowSet {
			until = since.Add(window)
		}
	case untilFlag != "":
		since = until.Add(-window)
	default:
		since = now.Add(-window)
	}
	if !until.IsZero() && !since.Before(until) {
		return since, until, fmt.Errorf("-since %s is not before -until %s", since.Format(time.RFC3339Nano), until.Format(time.RFC3339Nano))
	}
	if !until.IsZero() {
		until = until.UTC()
	}
	return since.UTC(), until, nil
}

// run is the command: main with its arguments, output and signals as
// parameters, so tests run it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseArgs(args, time.Now().Truncate(time.Second), stderr)
	if err != nil {
		return err
	}
	client := &kafka.Client{Addr: kafka.TCP(o.brokers...), Timeout: 10 * time.Second}
	parts, err := partitions(ctx, client, o.topic)
	if err != nil {
		return err
	}
	first, err := listOffsets(ctx, client, o.topic, parts, kafka.FirstOffset)
	if err != nil {
		return err
	}
	if o.beginning {
		if err := resetOffsets(ctx, client, o.group, o.topic, first); err != nil {
			return err
		}
	}

	// With -exit-at-end, the end of each partition now is where reading
	// stops, and where the group starts says how much there is to read.
	var pos, end map[int]int64
	if o.exitAtEnd {
		if end, err = listOffsets(ctx, client, o.topic, parts, kafka.LastOffset); err != nil {
			return err
		}
		if pos, err = startOffsets(ctx, client, o.group, o.topic, first); err != nil {
			return err
		}
	}

	c := NewCounter(o.cfg)
	var last map[int]kafka.Message
	if !o.exitAtEnd || behind(pos, end) > 0 {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: o.brokers,
			Topic:   o.topic,
			GroupID: o.group,
			// Partitions the group has no offset for start at their
			// first record.
			StartOffset: kafka.FirstOffset,
			MaxBytes:    10 << 20,
			MaxWait:     time.Second,
			// CommitInterval 0: CommitMessages commits before it
			// returns, so an error means the commit did not happen.
			CommitInterval:  0,
			ReadLagInterval: -1,
			ErrorLogger: kafka.LoggerFunc(func(format string, args ...any) {
				fmt.Fprintf(stderr, "b2sreport: kafka: "+format+"\n", args...)
			}),
		})
		// Close leaves the group, so the next run joins without waiting
		// for this member's session to time out.
		defer r.Close()
		if last, err = consume(ctx, r, c, pos, end, o.exitAtEnd, stderr); err != nil {
			return err
		}
		defer func() {
			// Commit what was counted, once the report is out. A run
			// that stops before this point has committed nothing.
			if err != nil || len(last) == 0 {
				return
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			msgs := slices.Collect(maps.Values(last))
			if cerr := r.CommitMessages(cctx, msgs...); cerr != nil {
				err = fmt.Errorf("the report is out, but committing the group's offsets failed, so the next run counts these records again: %w", cerr)
			}
		}()
	}

	rep := c.Report()
	rep.Topic, rep.Group = o.topic, o.group
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = writeText(stdout, rep)
	}
	if err != nil {
		return fmt.Errorf("writing the report (offsets not committed): %w", err)
	}
	return nil
}

// consume reads messages into c. With exitAtEnd it stops once every
// partition is read up to end (pos holds where each one starts) and leaves
// later messages unread; without, it reads until ctx is done. It returns
// the last message read of each partition, for the commit.
func consume(ctx context.Context, r *kafka.Reader, c *Counter, pos, end map[int]int64, exitAtEnd bool, stderr io.Writer) (map[int]kafka.Message, error) {
	const maxShown = 10 // skipped records described on stderr
	shown := 0
	last := make(map[int]kafka.Message)
	remaining := behind(pos, end)
	for !exitAtEnd || remaining > 0 {
		m, err := r.FetchMessage(ctx)
		switch {
		case err != nil && ctx.Err() != nil && !exitAtEnd:
			return last, nil // stopped by a signal: report what was read
		case err != nil && ctx.Err() != nil:
			return nil, fmt.Errorf("interrupted before the end of %s: nothing printed, nothing committed", r.Config().Topic)
		case err != nil:
			return nil, fmt.Errorf("reading %s: %w", r.Config().Topic, err)
		}
		if exitAtEnd {
			e, ok := end[m.Partition]
			if !ok || m.Offset >= e {
				// Written after the start (or to a partition added
				// since): not read, not committed, left for the next
				// run.
				continue
			}
			if m.Offset+1 >= e && pos[m.Partition] < e {
				remaining--
			}
			pos[m.Partition] = m.Offset + 1
		}
		outcome, err := c.Add(m.Value)
		last[m.Partition] = m
		if err != nil {
			if shown < maxShown {
				fmt.Fprintf(stderr, "b2sreport: skipped %s record at partition %d offset %d: %v\n", outcome, m.Partition, m.Offset, err)
			} else if shown == maxShown {
				fmt.Fprintf(stderr, "b2sreport: more skipped records are counted in the report but not shown\n")
			}
			shown++
		}
	}
	return last, nil
}

// behind counts the partitions whose position is short of their end.
func behind(pos, end map[int]int64) int {
	n := 0
	for p, e := range end {
		if pos[p] < e {
			n++
		}
	}
	return n
}

func partitions(ctx context.Context, client *kafka.Client, topic string) ([]int, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("reading the metadata of topic %q: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("reading the metadata of topic %q: %w", topic, t.Error)
		}
		var ps []int
		for _, p := range t.Partitions {
			ps = append(ps, p.ID)
		}
		if len(ps) > 0 {
			return ps, nil
		}
	}
	return nil, fmt.Errorf("topic %q not found: check -topic and -brokers", topic)
}

// listOffsets returns the first (kafka.FirstOffset) or end
// (kafka.LastOffset: the offset the next record will get) of each partition.
func listOffsets(ctx context.Context, client *kafka.Client, topic string, parts []int, which int64) (map[int]int64, error) {
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: nil}}
	for _, p := range parts {
		req.Topics[topic] = append(req.Topics[topic], kafka.OffsetRequest{Partition: p, Timestamp: which})
	}
	resp, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("listing the offsets of topic %q: %w", topic, err)
	}
	offsets := make(map[int]int64, len(parts))
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("listing the offsets of topic %q partition %d: %w", topic, po.Partition, po.Error)
		}
		if which == kafka.FirstOffset {
			offsets[po.Partition] = po.FirstOffset
		} else {
			offsets[po.Partition] = po.LastOffset
		}
	}
	if len(offsets) != len(parts) {
		return nil, fmt.Errorf("listing the offsets of topic %q: %d partitions answered of %d", topic, len(offsets), len(parts))
	}
	return offsets, nil
}

// startOffsets returns where the group will start reading each partition:
// its committed offset, or the first offset where it has none or where
// retention has deleted it (kafka-go's Reader then skips ahead too).
func startOffsets(ctx context.Context, client *kafka.Client, group, topic string, first map[int]int64) (map[int]int64, error) {
	resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{
		GroupID: group,
		Topics:  map[string][]int{topic: slices.Sorted(maps.Keys(first))},
	})
	if err == nil {
		err = resp.Error
	}
	pos := maps.Clone(first)
	if errors.Is(err, kafka.GroupIdNotFound) {
		// Kafka answers this for a group that has never committed;
		// older brokers answer offsets of -1 instead.
		return pos, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the committed offsets of group %q: %w", group, err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("reading the committed offsets of group %q partition %d: %w", group, p.Partition, p.Error)
		}
		if p.CommittedOffset >= 0 {
			pos[p.Partition] = max(p.CommittedOffset, first[p.Partition])
		}
	}
	return pos, nil
}

// resetOffsets commits first as the group's offsets, for -from beginning.
// It is a commit from outside the group (generation -1), which Kafka
// accepts only while the group has no members.
func resetOffsets(ctx context.Context, client *kafka.Client, group, topic string, first map[int]int64) error {
	var commits []kafka.OffsetCommit
	for p, off := range first {
		commits = append(commits, kafka.OffsetCommit{Partition: p, Offset: off})
	}
	resp, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID:      group,
		GenerationID: -1,
		Topics:       map[string][]kafka.OffsetCommit{topic: commits},
	})
	if err != nil {
		return fmt.Errorf("resetting the offsets of group %q for -from beginning: %w", group, err)
	}
	for _, p := range resp.Topics[topic] {
		switch {
		case errors.Is(p.Error, kafka.UnknownMemberId), errors.Is(p.Error, kafka.IllegalGeneration), errors.Is(p.Error, kafka.RebalanceInProgress):
			return fmt.Errorf("resetting the offsets of group %q for -from beginning: the group has active members; stop them or use another -group (%w)", group, p.Error)
		case p.Error != nil:
			return fmt.Errorf("resetting the offsets of group %q for -from beginning: partition %d: %w", group, p.Partition, p.Error)
		}
	}
	return nil
}

// writeText prints rep for people: a table of sites, the network's
// visitors and members, the sites' records by consent and changes of
// consent, then each site's top pages, then what was skipped.
func writeText(w io.Writer, rep Report) error {
	bw := bufio.NewWriter(w) // keeps the first write error for Flush
	from, to := "the start", "the end of the topic"
	if !rep.Since.IsZero() {
		from = rep.Since.Format(time.RFC3339Nano)
	}
	if !rep.Until.IsZero() {
		to = rep.Until.Format(time.RFC3339Nano) + " (excluded)"
	}
	fmt.Fprintf(bw, "topic %s, group %s: records with ts from %s to %s\n\n", rep.Topic, rep.Group, from, to)
	if len(rep.Sites) == 0 {
		fmt.Fprintln(bw, "no records counted")
	} else {
		width := len("site")
		for _, s := range rep.Sites {
			width = max(width, len(s.Host))
		}
		fmt.Fprintf(bw, "%-*s  %10s  %8s  %12s  %8s  %9s\n", width, "site", "page views", "visitors", "unidentified", "records", "bot share")
		for _, s := range rep.Sites {
			fmt.Fprintf(bw, "%-*s  %10d  %8d  %12d  %8d  %8.1f%%\n", width, s.Host, s.PageViews, s.Visitors, s.Unidentified, s.Records, 100*s.BotShare)
		}
		fmt.Fprintf(bw, "\nnetwork visitors %d, members %d\n", rep.Network.Visitors, rep.Network.Members)
		width = max(width, len("records by consent"))
		fmt.Fprintf(bw, "\n%-*s  %8s  %8s  %8s  %8s  %8s\n", width, "records by consent", "full", "optout", "gpc", "child", "pending")
		for _, s := range rep.Sites {
			c := s.Consent
			fmt.Fprintf(bw, "%-*s  %8d  %8d  %8d  %8d  %8d\n", width, s.Host, c.Full, c.OptOut, c.GPC, c.Child, c.Pending)
		}
		writeConsentChanges(bw, rep, width)
	}
	if len(rep.Edges) > 0 {
		width := len("records by edge")
		for _, e := range rep.Edges {
			width = max(width, len(e.Edge))
		}
		fmt.Fprintf(bw, "\n%-*s  %8s\n", width, "records by edge", "records")
		for _, e := range rep.Edges {
			name := e.Edge
			if name == "" {
				name = "(none)" // written before records named their edge
			}
			fmt.Fprintf(bw, "%-*s  %8d\n", width, name, e.Records)
		}
	}
	writeAnonymous(bw, rep)
	for _, s := range rep.Sites {
		if len(s.TopPages) == 0 {
			continue
		}
		fmt.Fprintf(bw, "\ntop pages of %s\n", s.Host)
		width := 0
		for _, p := range s.TopPages {
			width = max(width, len(strconv.FormatInt(p.Views, 10)))
		}
		for _, p := range s.TopPages {
			fmt.Fprintf(bw, "  %*d  %s\n", width, p.Views, p.Path)
		}
	}
	for _, s := range rep.Sites {
		for _, b := range [...]struct {
			what string
			list []Client
		}{{"browser", s.Browsers}, {"OS", s.OSes}, {"device", s.Devices}} {
			if len(b.list) == 0 {
				continue
			}
			width := len(b.what)
			for _, c := range b.list {
				width = max(width, len(c.Name))
			}
			fmt.Fprintf(bw, "\nby %s, %s (no bots)\n", b.what, s.Host)
			fmt.Fprintf(bw, "  %-*s  %10s  %8s\n", width, b.what, "page views", "visitors")
			for _, c := range b.list {
				fmt.Fprintf(bw, "  %-*s  %10d  %8d\n", width, c.Name, c.PageViews, c.Visitors)
			}
		}
	}
	var mail strings.Builder
	writeCampaigns(&mail, rep)
	bw.WriteString(mail.String())
	sk := rep.Skipped
	fmt.Fprintf(bw, "\nread %d records: %d counted; skipped %d duplicates, %d outside the window, %d malformed, %d of an unknown schema version\n",
		rep.Read, rep.Counted, sk.Duplicates, sk.OutsideWindow, sk.Malformed, sk.UnknownSchema)
	if rep.NotDeduplicated > 0 {
		fmt.Fprintf(bw, "%d records were counted without a duplicate check: their ts was further behind the newest record than -dedupe-window (or -dedupe-max) reaches\n", rep.NotDeduplicated)
	}
	return bw.Flush()
}

// writeConsentChanges prints the grants, withdrawals and refusals of the sites that
// have any, in columns width wide like the consent table's.
func writeConsentChanges(bw *bufio.Writer, rep Report, width int) {
	if !slices.ContainsFunc(rep.Sites, func(s Site) bool { return s.ConsentChanges != (ConsentChanges{}) }) {
		return
	}
	fmt.Fprintf(bw, "\n%-*s  %8s  %9s  %8s\n", width, "consent changes", "granted", "withdrawn", "refused")
	for _, s := range rep.Sites {
		if c := s.ConsentChanges; c != (ConsentChanges{}) {
			fmt.Fprintf(bw, "%-*s  %8d  %9d  %8d\n", width, s.Host, c.Granted, c.Withdrawn, c.Refused)
		}
	}
}
