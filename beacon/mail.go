package beacon

// Record kinds of the site's own mail links (see package mailink): the
// open pixel, a click and a one-click unsubscribe.
const (
	KindOpen        = "open"
	KindClick       = "click"
	KindUnsubscribe = "unsubscribe"
)

// Mail link states, the record's "link": whether the link's seal opened.
const (
	// LinkOK: an authentic link of this host within its lifetime.
	LinkOK = "ok"
	// LinkExpired: an authentic link past its expiry; the record carries
	// its campaign (and, for a click, its destination) but no member.
	LinkExpired = "expired"
	// LinkWrongHost: an authentic link served on another host than the
	// one it was made for; nothing of it is recorded.
	LinkWrongHost = "wrong_host"
	// LinkInvalid: forged, altered, cut short, of another kind or under a
	// key the edge does not hold; nothing of it is recorded.
	LinkInvalid = "invalid"
)

// Limits of the mail fields in the record's JSON. A sealed link bounds
// them already (64 and 2048 visible ASCII characters, a destination
// without '"' or '\\'); the room of campaign and member is twice that,
// for the escapes of '"' and '\\', so they are never cut. The
// destination, written last, is cut only to keep the record within
// MaxRecordLen, when every other field is at its limit.
const (
	maxCampaignJSON    = 2 * 64
	maxDestinationJSON = 2048
	maxLinkStateLen    = 16
)

// Mail is what a record of a mail link (kinds open, click and
// unsubscribe) carries besides the request.
type Mail struct {
	// Link is the link's state: LinkOK, LinkExpired, LinkWrongHost or
	// LinkInvalid.
	Link string
	// Campaign is the campaign the link was made for.
	Campaign string
	// Member is the recipient's member ID. It is written as member_id
	// under the record's consent full, and in every unsubscribe: the
	// request to stop mailing names the member it is for.
	Member string
	// Destination is a click's signed destination.
	Destination string
	// Prefetch names the fetcher that opened or clicked on the reader's
	// behalf (an image proxy, a link scanner), or "" for the reader.
	Prefetch string
}

// appendJSON writes the mail fields of r, comma first, and returns cut
// with what it cut: the destination is cut to leave room, within
// MaxRecordLen of the record's start in b, for the closing brace and the
// "truncated" list.
func (m *Mail) appendJSON(b []byte, r *Record, start int, cut cutSet) ([]byte, cutSet) {
	limit := start + MaxRecordLen - len(`}`) - (cut | cutDestination).listLen()
	b = append(b, `,"link":`...)
	b, _ = appendString(b, m.Link, maxLinkStateLen)
	if m.Campaign != "" {
		b = append(b, `,"campaign":`...)
		b, _ = appendString(b, m.Campaign, maxCampaignJSON)
	}
	if r.MailMemberWritten() {
		b = append(b, `,"member_id":`...)
		b, _ = appendString(b, m.Member, 2*MaxMemberLen)
	}
	if m.Prefetch != "" {
		b = append(b, `,"prefetch":`...)
		b, _ = appendString(b, m.Prefetch, MaxBotLen)
	}
	if m.Destination != "" {
		b = append(b, `,"destination":`...)
		room := min(maxDestinationJSON, max(0, limit-len(b)-len(`""`)))
		var c bool
		if b, c = appendString(b, m.Destination, room); c {
			cut |= cutDestination
		}
	}
	return b, cut
}

// MailMemberWritten reports whether r's JSON carries its mail member as
// member_id: a mail record's member under consent full, and always in an
// unsubscribe.
func (r *Record) MailMemberWritten() bool {
	m := r.Mail
	return m != nil && m.Member != "" && r.CookieID == "" && (r.Consent.Identifying() || r.Kind == KindUnsubscribe)
}
