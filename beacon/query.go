package beacon

// Limits on what a beacon query contributes to a record. They bound the
// work and memory one request can cause and the size of one record.
const (
	// MaxQueryLen is how much of a raw query string is parsed, in bytes;
	// the rest is ignored.
	MaxQueryLen = 8192
	// MaxParams is how many extra parameters a record keeps; later ones
	// are ignored.
	MaxParams = 32
)

// Param is one extra beacon parameter, in the order it was sent.
type Param struct {
	Key, Value string
}

// Query is what a beacon's query string reports.
type Query struct {
	// URL is the page the beacon reports (parameter u).
	URL string
	// Referrer is that page's referrer (parameter r).
	Referrer string
	// Event is an event name (parameter e).
	Event string
	// Params holds every other parameter, first occurrence of a key only,
	// at most MaxParams of them. Keys are as the record writes them (see
	// Bound), so that keys it would write alike are one; values are
	// bounded when encoded.
	Params []Param
}

// ParseQuery parses a raw (still escaped) query string leniently: it never
// fails. Malformed escapes are kept as sent, empty keys are skipped, the
// first occurrence of a key wins, and input beyond MaxQueryLen is ignored.
// Params is appended to, so a caller may pass a Query whose Params has
// spare capacity.
func ParseQuery(raw string, q *Query) {
	var s seen
	parseQuery(raw, q, &s)
}

// seen records which of u, r and e a Query already holds, so that the
// first occurrence wins across a beacon's body and query string.
type seen struct{ u, r, e bool }

func parseQuery(raw string, q *Query, s *seen) {
	if len(raw) > MaxQueryLen {
		raw = raw[:MaxQueryLen]
	}
	for len(raw) > 0 {
		var pair string
		if i := indexByte(raw, '&'); i >= 0 {
			pair, raw = raw[:i], raw[i+1:]
		} else {
			pair, raw = raw, ""
		}
		if pair == "" {
			continue
		}
		k, v := pair, ""
		if i := indexByte(pair, '='); i >= 0 {
			k, v = pair[:i], pair[i+1:]
		}
		q.add(unescape(k), v, true, s)
	}
}

// add sets parameter k (already decoded) to v, decoding v first when
// escaped is set and the value is kept: unwanted values cost nothing.
func (q *Query) add(k, v string, escaped bool, s *seen) {
	dec := func(v string) string {
		if escaped {
			return unescape(v)
		}
		return v
	}
	switch {
	case k == "":
	case k == "u":
		if !s.u {
			q.URL, s.u = dec(v), true
		}
	case k == "r":
		if !s.r {
			q.Referrer, s.r = dec(v), true
		}
	case k == "e":
		if !s.e {
			q.Event, s.e = dec(v), true
		}
	default:
		if len(q.Params) >= MaxParams {
			return
		}
		// Bound the key as the record will, so that two keys the
		// record would write alike are one key here.
		k = Bound(k, MaxParamKeyLen)
		if hasParam(q.Params, k) {
			return
		}
		q.Params = append(q.Params, Param{Key: k, Value: dec(v)})
	}
}

func hasParam(ps []Param, k string) bool {
	for _, p := range ps {
		if p.Key == k {
			return true
		}
	}
	return false
}

// unescape decodes form encoding (+ is a space), keeping s as sent when it
// holds a malformed escape. It returns s itself when nothing needs decoding.
// It decodes as url.QueryUnescape does, in one pass and one allocation
// (the page and referrer URLs of every beacon come escaped).
func unescape(s string) string {
	i := 0
	for i < len(s) && s[i] != '%' && s[i] != '+' {
		i++
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, i, len(s))
	copy(b, s)
	for ; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b = append(b, ' ')
		case '%':
			if i+2 >= len(s) {
				return s
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi > 0xf || lo > 0xf {
				return s
			}
			b = append(b, hi<<4|lo)
			i += 2
		default:
			b = append(b, c)
		}
	}
	return unsafeString(b) // b is not written again
}

// unhex is the value of a hex digit, or 0xff for another byte.
func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 0xff
}
