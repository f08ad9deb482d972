package mailink

import (
	"bufio"
	"bytes"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestWriteEMLIsAMessageAMailClientReads(t *testing.T) {
	s := mustNew(t, keyA)
	dests := []string{"https://www.b2s.com/deals?a=1&b=2", "https://www.b2smade.com/" + strings.Repeat("p", 1500)}
	u, err := s.URLsFor(Message{Origin: "https://www.b2s.com", Campaign: "c1", Member: "m1", Destinations: dests, Issued: t0, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteEML(&b, Envelope{From: "B2S <news@b2s.com>", To: "reader@example.net", Subject: "Déals", Date: t0}, u, dests); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) > 998 {
			t.Fatalf("a line of %d bytes, over SMTP's 998", len(sc.Bytes()))
		}
	}
	m, err := mail.ReadMessage(&b)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get("List-Unsubscribe"); got != "<"+u.Unsubscribe+">" {
		t.Errorf("List-Unsubscribe %q", got)
	}
	if got := m.Header.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post %q", got)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	links := regexp.MustCompile(`(?:href|src)="([^"]+)"`).FindAllStringSubmatch(string(body), -1)
	var got []string
	for _, l := range links {
		got = append(got, strings.ReplaceAll(l[1], "&amp;", "&"))
	}
	want := append(append([]string{}, u.Clicks...), u.Unsubscribe, u.Open)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("links of the body:\n%q\nwant\n%q", got, want)
	}
	if err := WriteEML(io.Discard, Envelope{From: "not an address", To: "reader@example.net", Date: t0}, u, dests); err == nil {
		t.Error("a bad From is accepted")
	}
}
