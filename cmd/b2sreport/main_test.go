package main

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFlagsSetTheWindow(t *testing.T) {
	now := time.Date(2026, 11, 28, 21, 30, 0, 0, time.UTC)
	tests := []struct {
		scenario    string
		args        []string
		since, till string // RFC 3339; till "" for an open end
	}{
		{"by default the window is the last hour and open at the end", nil, "2026-11-28T20:30:00Z", ""},
		{"-window sets how far back from now", []string{"-window", "24h"}, "2026-11-27T21:30:00Z", ""},
		{"-since alone leaves the end open", []string{"-since", "2026-11-01T00:00:00Z"}, "2026-11-01T00:00:00Z", ""},
		{"-since and -window end the window after since", []string{"-since", "2026-11-01T00:00:00Z", "-window", "2h"}, "2026-11-01T00:00:00Z", "2026-11-01T02:00:00Z"},
		{"-until alone starts the default window before it", []string{"-until", "2026-11-01T00:00:00Z"}, "2026-10-31T23:00:00Z", "2026-11-01T00:00:00Z"},
		{"-until and -window start the window before until", []string{"-until", "2026-11-01T00:00:00Z", "-window", "30m"}, "2026-10-31T23:30:00Z", "2026-11-01T00:00:00Z"},
		{"-since and -until are taken as given, in UTC", []string{"-since", "2026-11-01T08:00:00+08:00", "-until", "2026-11-01T01:00:00.5Z"}, "2026-11-01T00:00:00Z", "2026-11-01T01:00:00.5Z"},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			o, err := parseArgs(tt.args, now, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got := o.cfg.Since.Format(time.RFC3339Nano); got != tt.since || o.cfg.Since.Location() != time.UTC {
				t.Errorf("since = %s (%v), want %s UTC", got, o.cfg.Since.Location(), tt.since)
			}
			got := ""
			if !o.cfg.Until.IsZero() {
				got = o.cfg.Until.Format(time.RFC3339Nano)
			}
			if got != tt.till {
				t.Errorf("until = %q, want %q", got, tt.till)
			}
		})
	}
}

func TestFlagDefaults(t *testing.T) {
	o, err := parseArgs(nil, time.Now(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.brokers, []string{"127.0.0.1:9092"}) || o.topic != "b2s.events" || o.group != "b2sreport" ||
		o.beginning || o.json || !o.exitAtEnd || o.cfg.Top != 10 || o.cfg.DedupeWindow != time.Hour {
		t.Errorf("defaults: %+v", o)
	}
	o, err = parseArgs([]string{"-brokers", " a:1, b:2 ,", "-from", "beginning"}, time.Now(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.brokers, []string{"a:1", "b:2"}) || !o.beginning {
		t.Errorf("-brokers and -from: %+v", o)
	}
}

func TestBadFlagsAreRefused(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the error
	}{
		{[]string{"-since", "2026-11-01T00:00:00Z", "-until", "2026-11-02T00:00:00Z", "-window", "1h"}, "-window cannot be combined"},
		{[]string{"-since", "2026-11-02T00:00:00Z", "-until", "2026-11-01T00:00:00Z"}, "is not before -until"},
		{[]string{"-since", "2026-11-01T00:00:00Z", "-until", "2026-11-01T00:00:00Z"}, "is not before -until"},
		{[]string{"-since", "yesterday"}, "-since \"yesterday\""},
		{[]string{"-until", "2026-11-01"}, "-until \"2026-11-01\""},
		{[]string{"-from", "latest"}, "use committed or beginning"},
		{[]string{"-window", "0s"}, "must be positive"},
		{[]string{"-top", "-1"}, "-top -1"},
		{[]string{"-dedupe-window", "-1m"}, "-dedupe-window"},
		{[]string{"-dedupe-max", "0"}, "-dedupe-max"},
		{[]string{"-brokers", " , "}, "-brokers is empty"},
		{[]string{"-group", ""}, "-group is empty"},
		{[]string{"report"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		_, err := parseArgs(tt.args, time.Now(), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseArgs(%q) error = %v, want it to mention %q", tt.args, err, tt.want)
		}
	}
	if _, err := parseArgs([]string{"-no-such-flag"}, time.Now(), io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("an unknown flag: error %v, want errUsage", err)
	}
	var help strings.Builder
	if _, err := parseArgs([]string{"-h"}, time.Now(), &help); !errors.Is(err, flag.ErrHelp) ||
		!strings.Contains(help.String(), `beacon records whose event is "pageview"`) || !strings.Contains(help.String(), "network visitors") ||
		!strings.Contains(help.String(), "-dedupe-window") {
		t.Errorf("-h: error %v, help:\n%s", err, help.String())
	}
}
