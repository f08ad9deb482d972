// Package testrecord is the record as analysts decode it, for tests only:
// one struct with every field of configs/record.schema.json and of
// beacon/record.go's encoder, under the same JSON names. Because it holds
// every field, a test that decodes strictly (DisallowUnknownFields) still
// fails on a field the schema does not know.
package testrecord

// Record is one record as JSON decodes it. A field the record leaves out
// decodes as its zero value: "", false, 0 or nil.
type Record struct {
	Schema  int    `json:"schema"`
	EventID string `json:"event_id"`
	// TS is as written: RFC 3339 UTC with microseconds; parse it with
	// time.RFC3339Nano.
	TS            string `json:"ts"`
	Kind          string `json:"kind"`
	Host          string `json:"host"`
	Edge          string `json:"edge"`
	IP            string `json:"ip"`
	IPTruncated   bool   `json:"ip_truncated"`
	Consent       string `json:"consent"`
	CookieID      string `json:"cookie_id"`
	CookieState   string `json:"cookie_state"`
	NetworkID     string `json:"network_id"`
	PrevNetworkID string `json:"prev_network_id"`
	MemberID      string `json:"member_id"`
	AnonID        string `json:"anon_id"` // records without identifying consent only
	LinkedFrom    string `json:"linked_from"`
	CrossSite     bool   `json:"cross_site"`
	Method        string `json:"method"`
	URL           string `json:"url"`
	Referrer      string `json:"referrer"`
	UserAgent     string `json:"user_agent"`
	Status        int    `json:"status"`
	Bytes         int64  `json:"bytes"`
	Event         string `json:"event"`
	Bot           string `json:"bot"`
	UA            *UA    `json:"ua"`
	Geo           *Geo   `json:"geo"`
	ASN           *ASN   `json:"asn"`
	// Anon holds the flags written, each true.
	Anon   map[string]bool   `json:"anon"`
	Params map[string]string `json:"params"`
	// Truncated names the fields cut to their limits.
	Truncated []string `json:"truncated"`

	// The fields of the mail kinds (open, click, unsubscribe).
	Link        string `json:"link"`
	Campaign    string `json:"campaign"`
	Destination string `json:"destination"`
	Prefetch    string `json:"prefetch"`

	// ConsentChanged marks the record at which the visitor's consent
	// changed (require_consent's grant or withdrawal).
	ConsentChanged bool `json:"consent_changed"`
}

// Geo is the record's geo object. Its tags leave out what is absent, so
// that it marshals as the record carries it.
type Geo struct {
	Country     string   `json:"country,omitempty"`
	Subdivision string   `json:"subdivision,omitempty"`
	City        string   `json:"city,omitempty"`
	Lat         *float64 `json:"lat,omitempty"`
	Lon         *float64 `json:"lon,omitempty"`
}

// UA is the record's ua object.
type UA struct {
	Browser        string `json:"browser,omitempty"`
	BrowserVersion string `json:"browser_version,omitempty"`
	OS             string `json:"os,omitempty"`
	OSVersion      string `json:"os_version,omitempty"`
	Device         string `json:"device,omitempty"`
	Model          string `json:"model,omitempty"`
}

// ASN is the record's asn object.
type ASN struct {
	Number uint32 `json:"number"`
	Org    string `json:"org"`
}
