package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/mailink"
)

// The command reads the secret the edge reads, from the same config and
// environment: what it seals, the edge's sealer opens; an older key left
// unset is skipped, as the app skips it.
func TestLinkCommandUsesTheEdgesSecret(t *testing.T) {
	dir := t.TempDir()
	cf := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cf, []byte("{\n\tb2s {\n\t\tsecret {env.B2S_LINK_TEST_NEW}\n\t\tsecret {env.B2S_LINK_TEST_OLD}\n\t\tkafka {\n\t\t\tbrokers 127.0.0.1:1\n\t\t}\n\t}\n}\n:0 {\n\tb2s_collect\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("B2S_LINK_TEST_NEW", testKey2)
	t.Setenv("B2S_LINK_TEST_OLD", "")
	s, err := linkSealerFromConfig(cf, "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	u, err := s.URLsFor(mailink.Message{Origin: "https://www.b2s.com", Campaign: "c", Member: "m", Issued: now, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, tok, _ := mailink.ParsePath(strings.TrimPrefix(u.Open, "https://www.b2s.com"))
	edge, _ := newMailLinks([][]byte{[]byte(testKey2), []byte(testKey1)}, nil)
	if _, err := edge.sealer.Open(mailink.Open, "www.b2s.com", tok, now); err != nil {
		t.Fatalf("the edge does not open the command's link: %v", err)
	}
	// Control: an edge of another secret does not.
	other, _ := newMailLinks([][]byte{[]byte(testKey1)}, nil)
	if _, err := other.sealer.Open(mailink.Open, "www.b2s.com", tok, now); err == nil {
		t.Fatal("an edge of another secret opens the link")
	}
	t.Setenv("B2S_LINK_TEST_NEW", "")
	if _, err := linkSealerFromConfig(cf, ""); err == nil || !strings.Contains(err.Error(), "B2S_LINK_TEST_NEW") {
		t.Fatalf("an unset secret: %v, want an error naming the variable", err)
	}
	if _, err := linkSealerFromConfig(filepath.Join(dir, "missing"), ""); err == nil {
		t.Fatal("a missing config is accepted")
	}
}
