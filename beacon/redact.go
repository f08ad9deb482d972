package beacon

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Placeholders that stand in a record for what a Redactor removes. Neither
// holds '%', so it reads the same however often a consumer decodes it, and
// neither holds '@', '=' or '&', so it never forms an address or a
// parameter with what surrounds it.
const (
	// RedactedEmail replaces an email address.
	RedactedEmail = "[email]"
	// RedactedValue replaces the value of a named parameter (the name and
	// '=' stay), and a whole field whose encoding is nested too deep to
	// check (see Redactor).
	RedactedValue = "[redacted]"
)

// RedactField is a record field a Redactor changes, the label of its
// counts.
type RedactField uint8

// The fields a Redactor changes.
const (
	RedactURL RedactField = iota
	RedactReferrer
	RedactEvent
	RedactParams
	RedactDestination

	NumRedactFields = iota
)

// RedactFieldNames are the fields' names, as the record writes them.
var RedactFieldNames = [NumRedactFields]string{"url", "referrer", "event", "params", "destination"}

// Redactions counts a Redactor's replacements in one record, by field.
type Redactions [NumRedactFields]int

// Limits on what a Redactor examines.
const (
	// redactMargin is how far past a field's record limit a value is
	// examined, so that an address the record's cut would split is seen
	// whole, and replaced whole, up to this long as sent (an address of
	// the maximum 254 characters with every one percent-encoded). The
	// rest is dropped: the record never carries it. Whatever the margin,
	// the part of an address a record would keep is never an address
	// itself (see domainEnd). It also bounds the work one value costs:
	// at most maxRedactDepth rounds over max+redactMargin bytes.
	redactMargin = 1 << 10
	// maxRedactDepth is how many rounds of percent-decoding are examined.
	// A value that still decodes further, and could hide an address or a
	// named parameter there, is replaced whole by RedactedValue.
	maxRedactDepth = 16
)

// A Redactor replaces personal data that pages and forms put in the
// record's page and event fields by accident: email addresses, and the
// values of query parameters named in its configuration. It looks at the
// record's url, referrer, event, params (keys and values) and a mail
// click's destination, as sent and at every depth of percent-decoding
// (%40, %2540, ...), and replaces what it finds in the text as sent: an
// address by RedactedEmail, a named parameter's value by RedactedValue.
//
// An email address is, in the text at some depth of decoding, an '@'
// with
//   - before it a local part: the longest run of ASCII letters, digits,
//     the RFC 5322 atext symbols other than those that delimit URLs
//     (! $ ' * + - ^ _ ` { | } ~) and '.', and of non-ASCII characters;
//   - after it a domain: the longest run of labels (ASCII letters,
//     digits, '-' and non-ASCII characters) joined by single dots in
//     which a label after the first starts with a letter or a non-ASCII
//     character, the second label not counting when the first is a
//     pixel density, digits and an x. So 1.2.3.4, a package version such
//     as jquery@3.7.1 and an image's name such as logo@2x.png are not
//     addresses; x@example.com.1 is.
//
// Not caught: an address without a dot after '@' (user@localhost), one
// written with other characters than '@' ("john at example.com", a
// full-width ＠, an HTML entity) or in another encoding (base64, JSON's
// \u0040). A word that '+' (a space in a form) joins to the address goes
// with it. U+FFFD and invalid UTF-8 belong to neither part. No cut of a
// text without an address holds one (see domainEnd), so the record's
// limits make none.
//
// A named parameter is, at some depth of decoding, a name at the start of
// the text or after '?', '&' or '#', equal to a configured name but for
// ASCII case, then '='; its value runs to the next '&' or '#'. An empty
// value is left as it is.
//
// The zero Redactor, and nil, replace email addresses only. A Redactor is
// safe for concurrent use.
type Redactor struct {
	// names are the parameters' names, in lower case.
	names []string
	// hides marks the bytes whose percent-encoding may hide, at a deeper
	// depth, an '@' or a name: '@', '%', the hex digits and the bytes of
	// the names, in either case.
	hides [256]bool
}

// NewRedactor returns a Redactor of email addresses and of the values of
// the query parameters named (in any case; see ValidParamName).
func NewRedactor(params []string) (*Redactor, error) {
	rd := new(Redactor)
	for _, n := range params {
		if err := ValidParamName(n); err != nil {
			return nil, err
		}
		n, _ = lowerASCII(n, false)
		if !rd.named([]byte(n)) {
			rd.names = append(rd.names, n)
		}
	}
	rd.init()
	return rd, nil
}

func (rd *Redactor) init() {
	for _, c := range []byte("%@0123456789abcdefABCDEF") {
		rd.hides[c] = true
	}
	for _, n := range rd.names {
		for i := 0; i < len(n); i++ {
			rd.hides[n[i]], rd.hides[upperASCII(n[i])] = true, true
		}
	}
}

// emailsOnly is the Redactor of nil and of the zero Redactor.
var emailsOnly = func() *Redactor { rd := new(Redactor); rd.init(); return rd }()

// ValidParamName reports whether name can be matched as a query
// parameter's name: 1 to MaxParamKeyLen bytes of visible ASCII without
// the bytes that delimit or encode a query (= & ? # % +).
func ValidParamName(name string) error {
	if name == "" || len(name) > MaxParamKeyLen {
		return fmt.Errorf("parameter name %q: want 1 to %d characters", name, MaxParamKeyLen)
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c <= ' ' || c >= 0x7f:
			return fmt.Errorf("parameter name %q: want visible ASCII characters only, as the form names the field", name)
		case c == '=' || c == '&' || c == '?' || c == '#' || c == '%' || c == '+':
			return fmt.Errorf("parameter name %q holds %q: give the name decoded, without = & ? # %% +", name, c)
		}
	}
	return nil
}

// Record redacts r's url, referrer, event, params and mail destination in
// place and returns what it replaced. A parameter whose key becomes that
// of one before it is dropped: the first occurrence of a key wins, as in
// ParseQuery.
func (rd *Redactor) Record(r *Record) (n Redactions) {
	if rd == nil || !rd.hides['@'] {
		rd = emailsOnly
	}
	r.URL, n[RedactURL] = rd.redact(r.URL, MaxURLLen)
	r.Referrer, n[RedactReferrer] = rd.redact(r.Referrer, MaxReferrerLen)
	r.Event, n[RedactEvent] = rd.redact(r.Event, MaxEventLen)
	if m := r.Mail; m != nil {
		m.Destination, n[RedactDestination] = rd.redact(m.Destination, maxDestinationJSON)
	}
	dup := false
	for i := range r.Params {
		p := &r.Params[i]
		var k int
		if p.Value != "" && p.Value != RedactedValue && rd.named(unsafeBytes(p.Key)) {
			p.Value = RedactedValue
			n[RedactParams]++
		}
		p.Value, k = rd.redact(p.Value, MaxParamValLen)
		n[RedactParams] += k
		if p.Key, k = rd.redact(p.Key, MaxParamKeyLen); k > 0 {
			n[RedactParams] += k
			dup = true
		}
	}
	if dup {
		ps := r.Params[:0]
		for _, p := range r.Params {
			if !hasParam(ps, p.Key) {
				ps = append(ps, p)
			}
		}
		r.Params = ps
	}
	return n
}

// redact returns s, a value of at most max bytes in the record, with
// every email address and named parameter's value replaced, and how many
// it replaced. It returns s itself, without allocating, when s holds
// neither '@', nor a percent-encoding that may hide one or a name, nor a
// name followed by '=' or '%' (see suspect).
func (rd *Redactor) redact(s string, max int) (string, int) {
	if !rd.suspect(s) {
		return s, 0
	}
	if lim := max + redactMargin; len(s) > lim {
		s = s[:lim]
	}
	w := redactWalk{out: s, lvl: []byte(s), pos: make([]int, len(s)+1)}
	for i := range w.pos {
		w.pos[i] = i
	}
	n := 0
	for depth := 0; ; depth++ {
		if len(rd.names) > 0 {
			w.spans = rd.paramSpans(w.lvl, w.spans[:0])
			n += w.replace(RedactedValue)
		}
		w.spans = emailSpans(w.lvl, w.spans[:0])
		n += w.replace(RedactedEmail)
		if !w.decode() {
			break
		}
		if depth == maxRedactDepth {
			if rd.suspect(unsafeString(w.lvl)) {
				return RedactedValue, n + 1
			}
			break
		}
	}
	return w.out, n
}

// suspect reports whether s may hold an address or a named parameter at
// some depth of decoding. At depth d+1, an '@' or a name's byte comes
// from the same byte at depth d or from its escape there, and an escape
// %XY from the same three bytes at depth d (which depth d would have
// decoded) or from one at least of them escaped: so by induction s holds
// '@' or an escape of a byte in hides, or the name itself followed by '='
// or by '%' (an escaped '=') and preceded by the start, '?', '&', '#' or
// a hex digit (the end of an escape).
func (rd *Redactor) suspect(s string) bool {
	if strings.IndexByte(s, '@') >= 0 {
		return true
	}
	for i := 0; ; i++ {
		k := strings.IndexByte(s[i:], '%')
		if k < 0 {
			break
		}
		i += k
		if i+2 < len(s) {
			if b, ok := unhexPair(s[i+1], s[i+2]); ok && rd.hides[b] {
				return true
			}
		}
		if rd.nameBefore(s, i) {
			return true
		}
	}
	if len(rd.names) == 0 {
		return false
	}
	for i := 0; ; i++ {
		k := strings.IndexByte(s[i:], '=')
		if k < 0 {
			return false
		}
		i += k
		if rd.nameBefore(s, i) {
			return true
		}
	}
}

// nameBefore reports whether a name ends at s[i], preceded by the start,
// '?', '&', '#' or a hex digit.
func (rd *Redactor) nameBefore(s string, i int) bool {
	for _, n := range rd.names {
		j := i - len(n)
		if j >= 0 && (j == 0 || paramStart(s[j-1]) || unhex(s[j-1]) <= 0xf) && equalFoldASCII(s[j:i], n) {
			return true
		}
	}
	return false
}

// named reports whether k is one of the names, but for ASCII case.
func (rd *Redactor) named(k []byte) bool {
	for _, n := range rd.names {
		if len(k) == len(n) && equalFoldASCII(unsafeString(k), n) {
			return true
		}
	}
	return false
}

func paramStart(c byte) bool { return c == '?' || c == '&' || c == '#' }

// paramSpans appends the values of named parameters in b to spans.
func (rd *Redactor) paramSpans(b []byte, spans []span) []span {
	for p := 0; p <= len(b); {
		j := p
		for j < len(b) && b[j] != '=' && !paramStart(b[j]) {
			j++
		}
		if j < len(b) && b[j] == '=' && rd.named(b[p:j]) {
			v := j + 1
			e := v
			for e < len(b) && b[e] != '&' && b[e] != '#' {
				e++
			}
			if e > v && unsafeString(b[v:e]) != RedactedValue {
				spans = append(spans, span{v, e})
			}
			j = e
		}
		for j < len(b) && !paramStart(b[j]) {
			j++
		}
		p = j + 1
	}
	return spans
}

// emailSpans appends the email addresses in b to spans.
func emailSpans(b []byte, spans []span) []span {
	prev := 0 // the end of the last address
	for i := prev; i < len(b); i++ {
		if b[i] != '@' {
			continue
		}
		start := localStart(b, prev, i)
		if start == i {
			continue
		}
		end, ok := domainEnd(b, i+1)
		if !ok {
			continue
		}
		spans = append(spans, span{start, end})
		prev = end
		i = end - 1
	}
	return spans
}

// localStart returns where the local part that ends at b[at] starts, no
// earlier than from; at when there is none. A run that starts inside an
// escape (%XY) starts after it instead, when that leaves a local part,
// so that the escape stays whole.
func localStart(b []byte, from, at int) int {
	i := at
	for i > from {
		c := b[i-1]
		if c < utf8.RuneSelf {
			if !localASCII(c) {
				break
			}
			i--
			continue
		}
		r, size := utf8.DecodeLastRune(b[from:i])
		if r == utf8.RuneError {
			break
		}
		i -= size
	}
	// The run stops at '%', which it cannot hold: it can start only in
	// the hex digits of an escape whose '%' is just before it.
	if i > from && b[i-1] == '%' && i+1 < at {
		if _, ok := unhexPair(b[i], b[i+1]); ok && i+2 < at {
			return i + 2
		}
	}
	return i
}

// domainEnd returns where the domain that starts at b[i] ends, and
// whether there is one (see Redactor): whether the run of labels there
// starts with one that qualifies. Judging every leading run, not the
// longest only, means that no cut of a text (a record's limit) makes an
// address of what was none: a cut keeps or drops whole leading labels,
// and a label it cuts keeps its first character.
func domainEnd(b []byte, i int) (int, bool) {
	end, first, labels, ok := i, 0, 0, false
	for j := i; ; {
		k := labelEnd(b, j)
		if k == j {
			break
		}
		end = k
		labels++
		if labels == 1 {
			first = k
		} else if c := b[j]; (c >= utf8.RuneSelf || 'a' <= c|0x20 && c|0x20 <= 'z') && (labels > 2 || !densityLabel(b[i:first])) {
			ok = true
		}
		if k+1 < len(b) && b[k] == '.' && labelEnd(b, k+1) > k+1 {
			j = k + 1
			continue
		}
		break
	}
	return end, ok
}

// densityLabel reports whether l is an image's pixel density, digits and
// an x, as in logo@2x.png.
func densityLabel(l []byte) bool {
	if len(l) < 2 || l[len(l)-1]|0x20 != 'x' {
		return false
	}
	for _, c := range l[:len(l)-1] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// labelEnd returns where the domain label that starts at b[j] ends (j
// when none does).
func labelEnd(b []byte, j int) int {
	for j < len(b) {
		c := b[j]
		if c < utf8.RuneSelf {
			if !domainASCII(c) {
				break
			}
			j++
			continue
		}
		r, size := utf8.DecodeRune(b[j:])
		if r == utf8.RuneError {
			break
		}
		j += size
	}
	return j
}

// localASCII reports whether an email address's local part may hold c.
func localASCII(c byte) bool {
	switch {
	case 'a' <= c|0x20 && c|0x20 <= 'z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '$', '\'', '*', '+', '-', '^', '_', '`', '{', '|', '}', '~', '.':
		return true
	}
	return false
}

// domainASCII reports whether a domain label may hold c.
func domainASCII(c byte) bool {
	return 'a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9' || c == '-'
}

// span is a range of bytes [a, b).
type span struct{ a, b int }

// redactWalk is a value as sent (out), what has been replaced in it so
// far included, and the same value percent-decoded some number of times
// (lvl), with where each byte of lvl comes from in out: pos[i] is where
// the bytes of out that decoded to lvl[i] start, pos[len(lvl)] is
// len(out). An escape decodes whole or not at all, so the bytes of out
// that a range of lvl comes from are a range too.
type redactWalk struct {
	out   string
	lvl   []byte
	pos   []int
	spans []span
}

// replace replaces the spans of lvl (in order, apart) with tok, in lvl
// and in out, and returns how many it replaced.
func (w *redactWalk) replace(tok string) int {
	if len(w.spans) == 0 {
		return 0
	}
	grow := len(w.spans) * len(tok)
	out := make([]byte, 0, len(w.out)+grow)
	lvl := make([]byte, 0, len(w.lvl)+grow)
	pos := make([]int, 0, len(w.pos)+grow)
	keep := func(from, to int) { // lvl[from:to] unchanged
		shift := len(out) - w.pos[from]
		out = append(out, w.out[w.pos[from]:w.pos[to]]...)
		lvl = append(lvl, w.lvl[from:to]...)
		for _, p := range w.pos[from:to] {
			pos = append(pos, p+shift)
		}
	}
	prev := 0
	for _, s := range w.spans {
		keep(prev, s.a)
		for i := 0; i < len(tok); i++ {
			pos = append(pos, len(out)+i)
		}
		out = append(out, tok...)
		lvl = append(lvl, tok...)
		prev = s.b
	}
	keep(prev, len(w.lvl))
	pos = append(pos, len(out))
	w.out, w.lvl, w.pos = unsafeString(out), lvl, pos
	return len(w.spans)
}

// decode percent-decodes lvl once, in place, leaving malformed escapes as
// they are (as most decoders do), and reports whether it decoded any.
// '+' stays: a space joins nothing into an address or a name, so decoding
// it can only take matches away.
func (w *redactWalk) decode() bool {
	b, pos := w.lvl, w.pos
	j := 0
	for i := 0; i < len(b); j++ {
		if b[i] == '%' && i+2 < len(b) {
			if c, ok := unhexPair(b[i+1], b[i+2]); ok {
				b[j], pos[j] = c, pos[i]
				i += 3
				continue
			}
		}
		b[j], pos[j] = b[i], pos[i]
		i++
	}
	if j == len(b) {
		return false
	}
	pos[j] = pos[len(b)]
	w.lvl, w.pos = b[:j], pos[:j+1]
	return true
}

// unhexPair decodes the hex digits of an escape.
func unhexPair(hi, lo byte) (byte, bool) {
	h, l := unhex(hi), unhex(lo)
	return h<<4 | l, h <= 0xf && l <= 0xf
}

func upperASCII(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// equalFoldASCII reports whether s equals lower, a lower-case string, but
// for ASCII case.
func equalFoldASCII(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
