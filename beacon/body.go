package beacon

import (
	"bytes"
	"encoding/json"
	"strings"
)

// MaxBodyLen is the largest POST beacon body accepted, in bytes.
// navigator.sendBeacon payloads are small; a larger body is refused whole
// rather than cut, since a cut JSON document says little.
const MaxBodyLen = 16 << 10

// ParseBeacon parses a POST beacon (navigator.sendBeacon): its body, then
// its raw query string, into q, leniently: it never fails and keeps what
// it could read of a malformed body. The body is read according to
// contentType: a JSON object for application/json and text/plain (what
// sendBeacon sends for a string), whose string, number and boolean
// members count as parameters, numbers and booleans as written, other
// members ignored; a form for application/x-www-form-urlencoded, or for
// text/plain that is not a JSON object. Other types contribute nothing.
// The body comes first, so it wins over the query string for u, r, e and
// any other parameter; bounds are those of ParseQuery, and body beyond
// MaxBodyLen is ignored.
func ParseBeacon(rawQuery, contentType string, body []byte, q *Query) {
	if len(body) > MaxBodyLen {
		body = body[:MaxBodyLen]
	}
	var s seen
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(mt)
	switch {
	case strings.EqualFold(mt, "application/json"):
		parseJSONObject(body, q, &s)
	case strings.EqualFold(mt, "text/plain"):
		if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '{' {
			parseJSONObject(t, q, &s)
		} else {
			parseQuery(string(body), q, &s)
		}
	case strings.EqualFold(mt, "application/x-www-form-urlencoded"):
		parseQuery(string(body), q, &s)
	}
	parseQuery(rawQuery, q, &s)
}

// parseJSONObject adds the scalar members of a JSON object to q, stopping
// at the first syntax error with what came before it kept.
func parseJSONObject(body []byte, q *Query, s *seen) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		k, ok := tok.(string)
		if !ok {
			return
		}
		tok, err = dec.Token()
		if err != nil {
			return
		}
		switch v := tok.(type) {
		case string:
			q.add(k, v, false, s)
		case json.Number:
			q.add(k, v.String(), false, s)
		case bool:
			if v {
				q.add(k, "true", false, s)
			} else {
				q.add(k, "false", false, s)
			}
		case json.Delim: // a nested object or array: skipped whole
			for depth := 1; depth > 0; {
				tok, err := dec.Token()
				if err != nil {
					return
				}
				switch tok {
				case json.Delim('{'), json.Delim('['):
					depth++
				case json.Delim('}'), json.Delim(']'):
					depth--
				}
			}
		}
		// null: ignored
	}
}
