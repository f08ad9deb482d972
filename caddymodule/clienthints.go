package caddymodule

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/b2scom/b2s-edge/beacon"
)

// classify puts the bot class and the client in rec, from the
// User-Agent and the Client Hints of r. The hints a site must ask for
// (the full version list, platform version and model) are taken only
// when consent allows identifiers: a browser keeps sending them to a
// site that once asked, after its visitor opted out too.
func (c *Collect) classify(r *http.Request, rec *beacon.Record) {
	h := readHints(r)
	if !rec.Consent.Identifying() {
		h.FullVersionList, h.PlatformVersion, h.Model = "", "", ""
	}
	agent := c.app.agents().ClassifyWithHints(rec.UserAgent, &h)
	rec.Bot, rec.Client = agent.Bot, agent.Client
}

// askedHints are the hints client_hints may name: those the record
// takes. The first three are high-entropy (sent only when asked for).
var askedHints = beacon.HintHeaders

// checkClientHints refuses a hint the record does not take.
func checkClientHints(hints []string) error {
	for _, h := range hints {
		ok := false
		for _, a := range askedHints {
			ok = ok || strings.EqualFold(h, a)
		}
		if !ok {
			return fmt.Errorf("b2s_collect: client_hints: %q is not a hint the record takes; use %s", h, strings.Join(askedHints[:], ", "))
		}
	}
	return nil
}

// acceptCH is the Accept-CH value that asks for hints, in their
// documented spelling, each once; "" for none.
func acceptCH(hints []string) string {
	var names []string
	for _, a := range askedHints {
		for _, h := range hints {
			if strings.EqualFold(h, a) {
				names = append(names, a)
				break
			}
		}
	}
	return strings.Join(names, ", ")
}

// askForHints adds Accept-CH to a final response header h when the site
// asks for hints, the response is HTML (a page, whose next requests
// would carry them) and the visitor's consent allows identifiers.
func (c *Collect) askForHints(h http.Header, consent beacon.Consent) {
	if c.acceptCH == "" || !consent.Identifying() || !isHTML(h) {
		return
	}
	h.Add("Accept-CH", c.acceptCH)
}

// isHTML reports whether h's Content-Type is text/html. A response
// without one is not taken for HTML.
func isHTML(h http.Header) bool {
	ct := h.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), "text/html")
}

// readHints returns the User-Agent Client Hints of r. Browsers that send
// hints send Sec-CH-UA (the brands) with every request, so a request
// without it has none to read: one lookup for the other browsers. The
// header names are in Go's canonical form, so that reading them costs no
// allocation.
func readHints(r *http.Request) (h beacon.Hints) {
	if _, ok := r.Header["Sec-Ch-Ua"]; !ok {
		return h
	}
	get := func(name string) string {
		if v := r.Header[name]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	h.FullVersionList = get("Sec-Ch-Ua-Full-Version-List")
	h.Platform = get("Sec-Ch-Ua-Platform")
	h.PlatformVersion = get("Sec-Ch-Ua-Platform-Version")
	h.Model = get("Sec-Ch-Ua-Model")
	h.Mobile = get("Sec-Ch-Ua-Mobile")
	return h
}
