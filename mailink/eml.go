package mailink

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
)

// Envelope is the header of a message that WriteEML writes.
type Envelope struct {
	From, To, Subject string
	Date              time.Time
}

// WriteEML writes an RFC 5322 message (an .eml file) with the links of u:
// the List-Unsubscribe and List-Unsubscribe-Post headers of one-click
// unsubscribe (RFC 8058; the header is what mailbox providers show as
// their unsubscribe button), an HTML body linking each destination
// through its click URL, the unsubscribe URL in the footer, and the open
// pixel. dests are the destinations of u.Clicks, in order, shown as the
// links' text. The body is quoted-printable, so no line passes the 78
// characters RFC 5322 asks for, however long the URLs.
func WriteEML(w io.Writer, env Envelope, u URLs, dests []string) error {
	if len(dests) != len(u.Clicks) {
		return fmt.Errorf("%d destinations for %d click URLs", len(dests), len(u.Clicks))
	}
	for _, a := range []string{env.From, env.To} {
		if _, err := mail.ParseAddress(a); err != nil {
			return fmt.Errorf("address %q: %v", a, err)
		}
	}
	var id [12]byte
	_, _ = rand.Read(id[:])
	domain := env.From[strings.LastIndexByte(env.From, '@')+1:]
	domain = strings.TrimRight(domain, "> ")
	var b bytes.Buffer
	header := func(name, value string) { fmt.Fprintf(&b, "%s: %s\r\n", name, value) }
	header("From", env.From)
	header("To", env.To)
	header("Subject", mime.QEncoding.Encode("utf-8", env.Subject))
	header("Date", env.Date.Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(id[:])+"@"+domain+">")
	header("MIME-Version", "1.0")
	// A URL is never folded: the header is one line, within SMTP's 998.
	header("List-Unsubscribe", "<"+u.Unsubscribe+">")
	header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
	header("Content-Type", `text/html; charset="utf-8"`)
	header("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	var body strings.Builder
	body.WriteString("<!doctype html>\n<html><body>\n")
	for i, c := range u.Clicks {
		fmt.Fprintf(&body, "<p><a href=\"%s\">%s</a></p>\n", html.EscapeString(c), html.EscapeString(dests[i]))
	}
	fmt.Fprintf(&body, "<p style=\"font-size:small\"><a href=\"%s\">Unsubscribe</a></p>\n", html.EscapeString(u.Unsubscribe))
	fmt.Fprintf(&body, "<img src=\"%s\" width=\"1\" height=\"1\" alt=\"\">\n</body></html>\n", html.EscapeString(u.Open))
	if _, err := io.WriteString(qp, strings.ReplaceAll(body.String(), "\n", "\r\n")); err != nil {
		return err
	}
	if err := qp.Close(); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}
