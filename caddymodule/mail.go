package caddymodule

import (
	"errors"
	"html"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/logship"
	"github.com/b2scom/b2s-edge/mailink"
)

// mailLinks is what the edge needs to serve the site's own mail links
// (package mailink): the sealer, keyed from the cookie secret, and the
// members who unsubscribed through this edge.
type mailLinks struct {
	sealer *mailink.Sealer
	unsub  *mailink.Unsubscribed
}

// unsubscribedFile is the file in the spool directory (which one process
// holds at a time) that remembers the members who unsubscribed.
const unsubscribedFile = "mail-unsubscribed"

// newMailLinks derives the mail link keys from the cookie keys (the first
// seals, all open) and reads the unsubscribed members kept beside the
// spool; without a spool (tests) they are kept in memory.
func newMailLinks(keys [][]byte, spool *logship.Spool) (*mailLinks, error) {
	s, err := mailink.New(keys...)
	if err != nil {
		return nil, err
	}
	path := ""
	if spool != nil {
		path = filepath.Join(spool.Dir(), unsubscribedFile)
	}
	u, err := mailink.OpenUnsubscribed(path, s)
	if err != nil {
		return nil, err
	}
	return &mailLinks{sealer: s, unsub: u}, nil
}

// Indexes of recordsMail and mailLinkResults, in their order.
var (
	recordsMail     = children(recordsTotal, beacon.KindOpen, beacon.KindClick, beacon.KindUnsubscribe)
	mailLinkResults = children(mailLinksTotal, beacon.LinkOK, beacon.LinkExpired, beacon.LinkWrongHost, beacon.LinkInvalid)
	mailLinksTotal  = counterVec("mail_links_total",
		"Mail links (open pixel, click, unsubscribe) requested, by result: ok, expired, wrong_host or invalid.", "result")
)

// serveMail answers a mail link: kind and token come from the path under
// mailink.PathPrefix. The record of an open, click or unsubscribe names
// the link's campaign, and its member when the policy allows (see
// mailPolicy); it is keyed in Kafka by that member, and never carries the
// browser's cookie ID: a mail link does not join the browser to the
// member, and sets or deletes no cookie.
func (c *Collect) serveMail(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr, kind mailink.Kind, token string, now time.Time) {
	a := c.app
	// The token is the credential of the link (an unsubscribe's above
	// all): records name the endpoint, not the token.
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	rec.URL = scheme + r.Host + mailink.PathPrefix + kind.String()
	rec.Referrer = r.Header.Get("Referer")
	rec.Kind = kind.String()
	m := &beacon.Mail{}
	rec.Mail = m
	l, err := a.mail.sealer.Open(kind, hostname(r.Host), token, now)
	authentic := err == nil || errors.Is(err, mailink.ErrExpired)
	switch {
	case err == nil:
		m.Link = beacon.LinkOK
		mailLinkResults[0].Inc()
	case errors.Is(err, mailink.ErrExpired):
		m.Link = beacon.LinkExpired
		mailLinkResults[1].Inc()
	case errors.Is(err, mailink.ErrHost):
		m.Link = beacon.LinkWrongHost
		mailLinkResults[2].Inc()
	default:
		m.Link = beacon.LinkInvalid
		mailLinkResults[3].Inc()
	}
	since := time.Duration(-1)
	if authentic {
		m.Campaign = l.Campaign
		m.Destination = l.Destination
		since = now.Sub(l.Issued)
	}
	m.Prefetch = mailink.Prefetcher(mailink.Fetch{Kind: kind, UserAgent: rec.UserAgent, IP: ip,
		ASN: rec.ASN.Number, Hosting: rec.Anon&beacon.AnonHosting != 0, SinceIssued: since})
	c.mailPolicy(rec, ip, l, err, kind)

	switch kind {
	case mailink.Open:
		c.serveMailPixel(w, r, rec, ip)
	case mailink.Click:
		c.serveMailClick(w, r, rec, ip, l, err)
	case mailink.Unsubscribe:
		c.serveUnsubscribe(w, r, rec, ip, l, authentic)
	}
}

// mailPolicy decides whether the record names the link's member:
//   - only for an authentic link within its lifetime (an unsubscribe is
//     honoured past it: the recipient asks to stop, and the link is
//     authentic);
//   - never for a child's link (consent child) or a member who
//     unsubscribed through this edge (consent optout), except in the
//     unsubscribe itself, which must name whom to stop mailing;
//   - never when the browser's own choice excludes identifiers (the
//     site's opt-out cookie, Sec-GPC, the do-not-collect mark, a collect
//     off path): the consent computed for the request stands.
//
// IPs of records without full consent are truncated, as everywhere.
func (c *Collect) mailPolicy(rec *beacon.Record, ip netip.Addr, l mailink.Link, err error, kind mailink.Kind) {
	switch {
	case kind == mailink.Unsubscribe && (err == nil || errors.Is(err, mailink.ErrExpired)):
		rec.Mail.Member = l.Member
	case err != nil:
	case l.Child:
		rec.Consent = beacon.ConsentChild
	case rec.Consent.Identifying() && c.app.mail.unsub.Has(l.Member):
		rec.Consent = beacon.ConsentOptOut
	default:
		rec.Mail.Member = l.Member
	}
	if l.Child && rec.Consent.Identifying() {
		rec.Consent = beacon.ConsentChild
	}
	c.protectIP(rec, ip)
}

// serveMailPixel answers the open pixel: the GIF, whatever the link, for
// GET and HEAD.
func (c *Collect) serveMailPixel(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr) {
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		c.finishMail(w, r, rec, ip, http.StatusMethodNotAllowed, "", "")
		return
	}
	h["Content-Type"] = hdrGIF
	h["Cache-Control"] = hdrNoStore
	h["Pragma"] = hdrPragma
	h["Expires"] = hdrExpiresPast
	h["X-Content-Type-Options"] = hdrNoSniff
	c.finishMail(w, r, rec, ip, http.StatusOK, "", string(beacon.Pixel))
}

// serveMailClick redirects an authentic click within its lifetime to its
// sealed destination, and nowhere else. An expired one gets a page naming
// its destination as a link the reader may follow; anything else a plain
// page. Neither is a redirect.
func (c *Collect) serveMailClick(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr, l mailink.Link, err error) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	// The landing page learns nothing of the mail's URL.
	h.Set("Referrer-Policy", "no-referrer")
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		h.Set("Allow", "GET, HEAD")
		c.finishMail(w, r, rec, ip, http.StatusMethodNotAllowed, "", "")
	case err == nil && mailink.CheckDestination(l.Destination) == nil:
		h.Set("Location", l.Destination)
		c.finishMail(w, r, rec, ip, http.StatusFound, "", "")
	case errors.Is(err, mailink.ErrExpired):
		c.finishMail(w, r, rec, ip, http.StatusGone, "text/html; charset=utf-8",
			"<!doctype html><meta charset=utf-8><title>Link expired</title><p>This link from our mail has expired. It led to <a rel=noreferrer href=\""+
				html.EscapeString(l.Destination)+"\">"+html.EscapeString(l.Destination)+"</a>.</p>\n")
	default:
		c.finishMail(w, r, rec, ip, http.StatusBadRequest, "text/plain; charset=utf-8", mailBadLink)
	}
}

// mailBadLink is the page of a mail link that does not open.
const mailBadLink = "b2s: this mail link is not valid: it was changed, cut short or made for another site. Open the site from your address bar instead.\n"

// serveUnsubscribe answers the one-click unsubscribe. A POST (RFC 8058:
// the mailbox provider's one-click, or the confirmation form) of an
// authentic link unsubscribes: the record of kind unsubscribe names the
// member, and this edge stops tracking the member's mail links. A GET
// only shows the confirmation form, and records a page: link scanners
// and previews follow GETs.
func (c *Collect) serveUnsubscribe(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr, l mailink.Link, authentic bool) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	switch {
	case r.Method == http.MethodPost:
		if r.Body != nil {
			// RFC 8058's body is "List-Unsubscribe=One-Click"; the link
			// authorises, so the body is read (bounded) and not judged.
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 4<<10))
		}
		if !authentic {
			c.finishMail(w, r, rec, ip, http.StatusBadRequest, "text/plain; charset=utf-8", mailBadLink)
			return
		}
		if err := c.app.mail.unsub.Add(l.Member); err != nil {
			// The record still goes to the mailing system, which acts on it.
			c.logger.Warn("remembering an unsubscribe", zap.Error(err))
		}
		c.finishMail(w, r, rec, ip, http.StatusOK, "text/html; charset=utf-8", unsubscribedPage)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		// Asking is no unsubscribe: recorded as a page, without member.
		rec.Kind, rec.Mail = beacon.KindPage, nil
		if !authentic {
			h.Set("Content-Type", "text/plain; charset=utf-8")
			c.finishEndpoint(w, r, rec, ip, http.StatusBadRequest, mailBadLink)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		c.finishEndpoint(w, r, rec, ip, http.StatusOK, unsubscribeFormStart+html.EscapeString(r.URL.EscapedPath())+unsubscribeFormEnd)
	default:
		h.Set("Allow", "GET, HEAD, POST")
		c.finishMail(w, r, rec, ip, http.StatusMethodNotAllowed, "", "")
	}
}

// Pages of the unsubscribe.
const (
	unsubscribeFormStart = "<!doctype html><meta charset=utf-8><title>Unsubscribe</title><p>Stop receiving these mails?</p><form method=post action=\""
	unsubscribeFormEnd   = "\"><input type=hidden name=List-Unsubscribe value=One-Click><button type=submit>Unsubscribe</button></form>\n"
	unsubscribedPage     = "<!doctype html><meta charset=utf-8><title>Unsubscribed</title><p>You are unsubscribed: you will receive no more of these mails, and the links in those you have are no longer tracked.</p>\n"
)

// finishMail records a mail link's response, then writes it. The record
// is keyed in Kafka by the member it names (none: no key), so that a
// consumer sees each recipient's opens, clicks and unsubscribe in order.
// An authentic unsubscribe is exempt from the client limit: a request to
// stop mailing is never dropped.
func (c *Collect) finishMail(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr, status int, ctype, body string) {
	rec.Status = status
	if r.Method != http.MethodHead {
		rec.Bytes = int64(len(body))
	}
	m := rec.Mail
	unsubscribe := rec.Kind == beacon.KindUnsubscribe && m.Member != ""
	if unsubscribe || c.admit(rec, ip) {
		key := ""
		if rec.MailMemberWritten() {
			key = m.Member
		}
		c.app.redact(rec)
		bp := encodeBufs.Get().(*[]byte)
		*bp = rec.AppendJSON((*bp)[:0])
		_ = c.app.spool.Append(key, *bp)
		if cap(*bp) <= 64<<10 {
			encodeBufs.Put(bp)
		}
	}
	switch rec.Kind {
	case beacon.KindOpen:
		recordsMail[0].Inc()
	case beacon.KindClick:
		recordsMail[1].Inc()
	default:
		recordsMail[2].Inc()
	}
	h := w.Header()
	if ctype != "" {
		h.Set("Content-Type", ctype)
	}
	if body != "" {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	if body != "" && r.Method != http.MethodHead {
		_, _ = io.WriteString(w, body)
	}
}
