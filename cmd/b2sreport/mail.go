package main

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The records of the site's own mail links: kinds open, click and
// unsubscribe. They are counted per campaign, not in the sites: they are
// fetches of a mail's links, not visits.

// mailKinds are the record kinds of mail links.
var mailKinds = map[string]bool{"open": true, "click": true, "unsubscribe": true}

// validateMail checks a mail record: it names no visitor (no cookie_id,
// network_id or prev_network_id); its member_id comes under consent full,
// or in an unsubscribe whatever the consent; its link says whether it
// opened.
func (r *record) validateMail(f fields) (fields, error) {
	f.mail = true
	switch {
	case r.CookieID != "" || r.NetworkID != "" || r.PrevNetworkID != "":
		return f, errors.New("a mail record with a cookie_id, network_id or prev_network_id")
	case r.Link != "ok" && r.Link != "expired" && r.Link != "wrong_host" && r.Link != "invalid":
		return f, fmt.Errorf("link %q is none of ok, expired, wrong_host, invalid", r.Link)
	case (r.Link == "ok" || r.Link == "expired") && r.Campaign == "":
		return f, errors.New("an authentic mail link without campaign")
	case r.MemberID == nil:
		return f, nil
	case f.consent != consentFull && r.Kind != "unsubscribe":
		return f, fmt.Errorf("consent %s, yet the %s record carries a member_id", r.Consent, r.Kind)
	case len(*r.MemberID) < 1 || len(*r.MemberID) > maxMemberLen:
		return f, fmt.Errorf("member_id of %d bytes, want 1 to %d", len(*r.MemberID), maxMemberLen)
	}
	f.member, f.hasMember = memberKey(*r.MemberID), true
	return f, nil
}

// campaignTally counts one campaign's records.
type campaignTally struct {
	opens, clicks, prefetched, unsubscribes int64
	openers, clickers                       map[[16]byte]struct{}
	unsubscribed                            map[string]struct{}
}

// addMail counts a valid mail record.
func (c *Counter) addMail(r *record, f fields) {
	if r.Link != "ok" && r.Link != "expired" {
		c.mailInvalid++
		return
	}
	if c.campaigns == nil {
		c.campaigns = make(map[string]*campaignTally)
	}
	t := c.campaigns[r.Campaign]
	if t == nil {
		t = &campaignTally{openers: map[[16]byte]struct{}{}, clickers: map[[16]byte]struct{}{}, unsubscribed: map[string]struct{}{}}
		c.campaigns[r.Campaign] = t
	}
	switch {
	case r.Kind == "unsubscribe":
		// Honoured past the link's expiry: the recipient asked.
		t.unsubscribes++
		if f.hasMember {
			t.unsubscribed[*r.MemberID] = struct{}{}
		}
	case r.Prefetch != "":
		// A proxy or scanner fetched it, not the reader: never an open
		// or a click.
		t.prefetched++
	case r.Kind == "open":
		t.opens++
		if f.hasMember {
			t.openers[f.member] = struct{}{}
		}
	case r.Kind == "click":
		t.clicks++
		if f.hasMember {
			t.clickers[f.member] = struct{}{}
		}
	}
}

// Campaign is the report of one mail campaign.
type Campaign struct {
	Campaign string `json:"campaign"`
	// Opens counts the open pixel's records fetched by a reader's mail
	// client (not by a proxy or scanner: see Prefetched); Openers the
	// distinct members among them (an open without member_id, of a child,
	// an unsubscribed member or an expired link, is an open of no one).
	Opens   int64 `json:"opens"`
	Openers int64 `json:"openers"`
	// Clicks and Clickers are the same of click records.
	Clicks   int64 `json:"clicks"`
	Clickers int64 `json:"clickers"`
	// Prefetched counts the opens and clicks of a proxy or scanner
	// (Apple Mail Privacy Protection, Gmail's image proxy, a link
	// scanner): the record's prefetch field.
	Prefetched int64 `json:"prefetched"`
	// Unsubscribes counts the one-click unsubscribes; Unsubscribed lists
	// their member IDs, sorted: what the mailing system stops mailing.
	Unsubscribes int64    `json:"unsubscribes"`
	Unsubscribed []string `json:"unsubscribed"`
}

// campaignReport returns the campaigns, by name; nil when there are none.
func (c *Counter) campaignReport() []Campaign {
	if len(c.campaigns) == 0 {
		return nil
	}
	out := make([]Campaign, 0, len(c.campaigns))
	for name, t := range c.campaigns {
		cp := Campaign{Campaign: name, Opens: t.opens, Openers: int64(len(t.openers)), Clicks: t.clicks,
			Clickers: int64(len(t.clickers)), Prefetched: t.prefetched, Unsubscribes: t.unsubscribes,
			Unsubscribed: make([]string, 0, len(t.unsubscribed))}
		for m := range t.unsubscribed {
			cp.Unsubscribed = append(cp.Unsubscribed, m)
		}
		slices.Sort(cp.Unsubscribed)
		out = append(out, cp)
	}
	slices.SortFunc(out, func(a, b Campaign) int { return cmp.Compare(a.Campaign, b.Campaign) })
	return out
}

// writeCampaigns writes the campaigns' table and the members to stop
// mailing.
func writeCampaigns(w *strings.Builder, rep Report) {
	if len(rep.Campaigns) == 0 && rep.MailLinksInvalid == 0 {
		return
	}
	width := len("campaign")
	for _, c := range rep.Campaigns {
		width = max(width, len(c.Campaign))
	}
	fmt.Fprintf(w, "\n%-*s  %8s  %8s  %8s  %8s  %10s  %12s\n", width, "campaign", "opens", "openers", "clicks", "clickers", "prefetched", "unsubscribes")
	for _, c := range rep.Campaigns {
		fmt.Fprintf(w, "%-*s  %8d  %8d  %8d  %8d  %10d  %12d\n", width, c.Campaign, c.Opens, c.Openers, c.Clicks, c.Clickers, c.Prefetched, c.Unsubscribes)
	}
	if rep.MailLinksInvalid > 0 {
		fmt.Fprintf(w, "%d mail link records were of links that did not open (forged, altered or for another host)\n", rep.MailLinksInvalid)
	}
	for _, c := range rep.Campaigns {
		for _, m := range c.Unsubscribed {
			fmt.Fprintf(w, "unsubscribe %s %s\n", c.Campaign, m)
		}
	}
}
