package caddymodule

import (
	"testing"
)

func TestMakePrivate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		want   string
	}{
		{"a response without Cache-Control becomes private", nil, "private"},
		{"public becomes private and keeps max-age", []string{"public, max-age=600"}, "private, max-age=600"},
		{"s-maxage and proxy-revalidate, which only shared caches obey, are removed", []string{"public, s-maxage=3600, max-age=60, proxy-revalidate"}, "private, max-age=60"},
		{"an already private response stays private once", []string{"private, max-age=60"}, "private, max-age=60"},
		{"no-store wins over everything", []string{"public, max-age=600, no-store"}, "no-store"},
		{"directives are matched without regard to case", []string{"Public, S-MaxAge=10, NO-STORE"}, "no-store"},
		{"directives spread over several header lines are merged", []string{"public", "max-age=600", "must-revalidate"}, "private, max-age=600, must-revalidate"},
		{"empty directives and spaces are dropped", []string{" ,public,, max-age=5 ,"}, "private, max-age=5"},
		{"no-cache and immutable are kept for the browser", []string{"no-cache, immutable"}, "private, no-cache, immutable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := makePrivate(tc.values); got != tc.want {
				t.Errorf("makePrivate(%q) = %q, want %q", tc.values, got, tc.want)
			}
		})
	}
}
