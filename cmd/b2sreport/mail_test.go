package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// mailRec is a mail record: kind, link, campaign, member (""), consent
// (""), prefetch ("").
func mailRec(t *testing.T, id int, kind, link, campaign, member, consent, prefetch string) string {
	t.Helper()
	m := map[string]any{
		"schema": 1, "event_id": eventID(id), "ts": t0.Add(time.Minute).Format("2006-01-02T15:04:05.000000Z"),
		"kind": kind, "host": "www.b2s.com", "ip": "203.0.113.7", "method": "GET",
		"url": "https://www.b2s.com/_b2s/mail/" + kind, "referrer": "", "user_agent": "test", "status": 200, "bytes": 43, "link": link,
	}
	for k, v := range map[string]string{"campaign": campaign, "member_id": member, "consent": consent, "prefetch": prefetch} {
		if v != "" {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCampaignsCountReadersNotProxies(t *testing.T) {
	c := NewCounter(Config{Since: t0, Until: t0.Add(time.Hour), Top: 10, DedupeWindow: time.Hour, DedupeMax: 1000})
	recs := []string{
		mailRec(t, 1, "open", "ok", "dec", "m-1", "", ""),
		mailRec(t, 2, "open", "ok", "dec", "m-1", "", ""),            // the same reader again
		mailRec(t, 3, "open", "ok", "dec", "m-2", "", "apple_mpp"),   // Apple's proxy: no open
		mailRec(t, 4, "open", "ok", "dec", "m-3", "", "gmail_proxy"), // Gmail's proxy: no open
		mailRec(t, 5, "click", "ok", "dec", "m-1", "", ""),
		mailRec(t, 6, "click", "ok", "dec", "m-4", "", "scanner"),
		mailRec(t, 7, "open", "ok", "dec", "", "child", ""), // a child's: an open of no one
		mailRec(t, 8, "unsubscribe", "ok", "dec", "m-1", "", ""),
		mailRec(t, 9, "unsubscribe", "expired", "dec", "kid-7", "child", ""),
		mailRec(t, 10, "open", "ok", "dec", "", "optout", ""), // after the unsubscribe
		mailRec(t, 11, "click", "invalid", "", "", "", ""),
		mailRec(t, 12, "open", "ok", "jan", "m-1", "", ""),
		mailRec(t, 12, "open", "ok", "jan", "m-1", "", ""), // delivered twice
	}
	for _, r := range recs {
		if o, err := c.Add([]byte(r)); o != Counted && o != Duplicate {
			t.Fatalf("%s: %v %v", r, o, err)
		}
	}
	rep := c.Report()
	want := []Campaign{
		{Campaign: "dec", Opens: 4, Openers: 1, Clicks: 1, Clickers: 1, Prefetched: 3, Unsubscribes: 2, Unsubscribed: []string{"kid-7", "m-1"}},
		{Campaign: "jan", Opens: 1, Openers: 1, Unsubscribed: []string{}},
	}
	if !reflect.DeepEqual(rep.Campaigns, want) {
		t.Errorf("campaigns\n%+v\nwant\n%+v", rep.Campaigns, want)
	}
	if rep.MailLinksInvalid != 1 || len(rep.Sites) != 0 {
		t.Errorf("invalid %d, sites %v; want 1 and none (mail records count in no site)", rep.MailLinksInvalid, rep.Sites)
	}
	var out strings.Builder
	if err := writeText(&out, rep); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"unsubscribe dec kid-7\n", "unsubscribe dec m-1\n", fmt.Sprintf("%-8s  %8d  %8d  %8d  %8d  %10d  %12d\n", "dec", 4, 1, 1, 1, 3, 2)} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("report lacks %q:\n%s", line, out.String())
		}
	}
}

func TestMailRecordsThatContradictThePolicyAreMalformed(t *testing.T) {
	c := NewCounter(Config{DedupeWindow: time.Hour, DedupeMax: 1000})
	for name, r := range map[string]string{
		"a member under opt-out":         mailRec(t, 1, "open", "ok", "dec", "m-1", "optout", ""),
		"an authentic link, no campaign": mailRec(t, 2, "click", "ok", "", "", "", ""),
		"an unknown link state":          mailRec(t, 3, "open", "forged", "dec", "", "", ""),
		"a cookie_id":                    strings.Replace(mailRec(t, 4, "open", "ok", "dec", "", "", ""), `"link"`, `"cookie_id":"0123456789abcdef0123456789abcdef","link"`, 1),
	} {
		if o, _ := c.Add([]byte(r)); o != Malformed {
			t.Errorf("%s: %v, want malformed", name, o)
		}
	}
	// Control: an unsubscribe names its member whatever the consent.
	if o, err := c.Add([]byte(mailRec(t, 5, "unsubscribe", "ok", "dec", "m-1", "gpc", ""))); o != Counted {
		t.Errorf("an unsubscribe under gpc: %v %v", o, err)
	}
}

// The mailing system's view: mail records read from a broker, keyed by
// member as the edge writes them, counted per campaign, and the members to
// stop mailing printed.
func TestCampaignsAgainstABroker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	addr := startBroker(t)
	keyed := func(member, value string) *kgo.Record {
		r := &kgo.Record{Value: []byte(value)}
		if member != "" {
			r.Key = []byte(member)
		}
		return r
	}
	produce(t, addr,
		keyed("m-1", mailRec(t, 1, "open", "ok", "dec", "m-1", "", "")),
		keyed("m-2", mailRec(t, 2, "open", "ok", "dec", "m-2", "", "apple_mpp")),
		keyed("m-1", mailRec(t, 3, "click", "ok", "dec", "m-1", "", "")),
		keyed("m-1", mailRec(t, 4, "unsubscribe", "ok", "dec", "m-1", "", "")),
		keyed("", mailRec(t, 5, "open", "ok", "dec", "", "optout", "")),
		keyed("", mailRec(t, 6, "click", "invalid", "", "", "", "")),
		keyed("m-1", mailRec(t, 4, "unsubscribe", "ok", "dec", "m-1", "", "")), // delivered twice
		rec{id: 7, at: "2m", kind: "beacon", cookie: "ann", url: "https://www.b2s.com/", event: "pageview"},
	)
	window := []string{"-brokers", addr, "-topic", e2eTopic, "-since", t0.Format(time.RFC3339), "-until", t0.Add(time.Hour).Format(time.RFC3339)}
	got := report(t, append(window, "-group", "g", "-json"))
	want := Report{
		Sites:            []Site{{Host: "www.b2s.com", Records: 1, PageViews: 1, Visitors: 1, Consent: Consents{Full: 1}, TopPages: []Page{{"/", 1}}}},
		Network:          Network{Visitors: 1},
		Campaigns:        []Campaign{{Campaign: "dec", Opens: 2, Openers: 1, Clicks: 1, Clickers: 1, Prefetched: 1, Unsubscribes: 1, Unsubscribed: []string{"m-1"}}},
		MailLinksInvalid: 1,
		Read:             8,
		Counted:          7,
		Skipped:          Skipped{Duplicates: 1},
	}
	checkReport(t, "mail", got, want, "g")
	// The text report, from the beginning in another group.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, append(window, "-group", "text"), &out, testWriter{t}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\nunsubscribe dec m-1\n") || strings.Contains(out.String(), "unsubscribe dec m-2") {
		t.Errorf("the text report does not list exactly m-1 to stop mailing:\n%s", out.String())
	}
}
