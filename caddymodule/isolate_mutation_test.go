package caddymodule

import (
	"strings"
	"testing"

	"go.uber.org/zap"
)

// Tests pinning the edges of b2s_isolate that its other tests leave
// open: each case sits on one side of a limit, its neighbour on the other
// side is its control (docs/privacy-mutation.md).

// TestFilterCookiesLimits: an allowed cookie passes whatever letters of
// either case, digits and token symbols its name holds, up to the ends
// of each range; a value with DEL (0x7f) is no cookie-value, one with
// "~" (0x7e) is; exactly as many cookies as net/http reads pass, one more
// and none does.
func TestFilterCookiesLimits(t *testing.T) {
	iso := newIsolate(t, zap.NewNop(), "az", "AZ", "n09", "!x", "x~", "ad")
	for _, tc := range []struct {
		name    string
		lines   []string
		want    string
		removed int
	}{
		{"names with a, z, A, Z, 0, 9 and token symbols pass", []string{"az=1; AZ=2; n09=3; !x=4; x~=5"}, "az=1; AZ=2; n09=3; !x=4; x~=5", 0},
		{"a value with ~ passes", []string{"ad=a~b"}, "ad=a~b", 0},
		{"a value with DEL is removed", []string{"ad=a\x7fb; az=1"}, "az=1", 1},
		{"a value with a byte below space is removed", []string{"ad=a\x1fb; az=1"}, "az=1", 1},
		{"a quoted empty value passes", []string{`ad=""`}, `ad=""`, 0},
		{"exactly as many cookies as net/http reads pass", []string{strings.Repeat("ad=1; ", maxCookiePairs-1) + "ad=1"}, strings.Repeat("ad=1; ", maxCookiePairs-1) + "ad=1", 0},
		{"as many over two lines pass", []string{strings.Repeat("ad=1; ", maxCookiePairs/2-1) + "ad=1", strings.Repeat("ad=1; ", maxCookiePairs/2-1) + "ad=1"}, strings.Repeat("ad=1; ", maxCookiePairs-1) + "ad=1", 0},
		{"one more over two lines passes nothing", []string{strings.Repeat("ad=1; ", maxCookiePairs/2) + "ad=1", strings.Repeat("ad=1; ", maxCookiePairs/2-1) + "ad=1"}, "", maxCookiePairs + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, removed := filterCookies(tc.lines, iso.allows)
			if got != tc.want || removed != tc.removed {
				t.Errorf("filterCookies = %.60q, %d removed; want %.60q, %d removed", got, removed, tc.want, tc.removed)
			}
		})
	}
}
