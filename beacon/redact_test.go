package beacon

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

func mustRedactor(tb testing.TB, names ...string) *Redactor {
	tb.Helper()
	rd, err := NewRedactor(names)
	if err != nil {
		tb.Fatal(err)
	}
	return rd
}

func TestRedactEmails(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"a raw address in a query", "https://www.b2s.com/register?email=john.doe@example.com&step=2",
			"https://www.b2s.com/register?email=[email]&step=2"},
		{"an address as a form sends it", "https://www.b2s.com/r?email=john.doe%40example.com&x=1",
			"https://www.b2s.com/r?email=[email]&x=1"},
		{"a lower-case escape in the local part", "/r?e=john%2btag%40Example.COM", "/r?e=[email]"},
		{"an address encoded twice", "/login?return=%2Fr%3Femail%3Djohn%2540example.com%26a%3D1",
			"/login?return=%2Fr%3Femail%3D[email]%26a%3D1"},
		{"an address encoded three times", "/x?r=john%252540example.com", "/x?r=[email]"},
		{"an address whose every byte is encoded", "/x?r=%6A%6F%68%6E%40%65%78%2E%63%6F%6D", "/x?r=[email]"},
		{"an address in form-encoded text takes the word '+' joins to it", "/search?q=contact+john%40example.com+today", "/search?q=[email]+today"},
		{"an address in form-encoded text after a space", "/search?q=contact%20john%40example.com+today", "/search?q=contact%20[email]+today"},
		{"an address in upper case", "/x?E=JOHN.DOE@EXAMPLE.COM", "/x?E=[email]"},
		{"an address with a plus tag", "/x?e=john+news@example.co.uk&y", "/x?e=[email]&y"},
		{"two addresses", "a@example.com,b@example.org", "[email],[email]"},
		{"an address in a path", "/users/jane@example.com/profile", "/users/[email]/profile"},
		{"a mailto link", "mailto:jane@example.com?subject=hi", "mailto:[email]?subject=hi"},
		{"credentials in a URL's userinfo", "https://user:secret@example.com/", "https://user:[email]/"},
		{"an internationalised address", "/x?e=jörg@exämple.de", "/x?e=[email]"},
		{"an escape just before the address stays whole", "/x?q=a%3Djohn@example.com", "/x?q=a%3D[email]"},
		{"an address after a second @", "a@b@example.com", "a@[email]"},
		{"a domain whose last label starts with a letter", "x@10.0.0.example", "[email]"},
		{"a domain that a cut would end at a letter", "x@example.com.1", "[email]"},
		{"a name after a pixel density", "a@2x.png.example/p", "[email]/p"},

		{"control: no address", "https://www.b2s.com/products?id=42&utm_source=news", ""},
		{"control: a CSS at-rule", "/style?q=@media%20screen", ""},
		{"control: a host without a dot", "ssh://user@localhost/", ""},
		{"control: an IP address after @", "user@10.0.0.1", ""},
		{"control: a package version", "https://cdn.example/npm/jquery@3.7.1/dist/jquery.min.js", ""},
		{"control: a high-density image", "/img/logo@2x.png?v=3", ""},
		{"control: a high-density image, cut", "/img/icon@3X.w", ""},
		{"control: an escaped @ without a local part", "/x?q=%40example.com", ""},
		{"control: an @ with a dot only", "a@.example", ""},
		{"control: percent-encoding without an address", "/p?q=caf%C3%A9%20au%20lait%2525", ""},
		{"control: a handle", "/u/@jane", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == "" {
				want = tc.in
			}
			got, n := mustRedactor(t).redact(tc.in, MaxURLLen)
			if got != want {
				t.Errorf("redact(%q) = %q, want %q", tc.in, got, want)
			}
			if wantN := strings.Count(want, RedactedEmail); n != wantN {
				t.Errorf("redact(%q) counted %d, want %d", tc.in, n, wantN)
			}
		})
	}
}

// TestRedactParams checks redact_params in each field that carries a
// query: url, referrer, and params (by key, and in a value that is a URL).
func TestRedactParams(t *testing.T) {
	rd := mustRedactor(t, "email", "Phone", "token", "password", "user[email]")
	for _, tc := range []struct {
		name  string
		field RedactField
		in    Record
		want  Record
	}{
		{"a page's query", RedactURL,
			Record{URL: "https://www.b2s.com/register?name=Jane&phone=%2B86+755+1234&PASSWORD=hunter2&step=2"},
			Record{URL: "https://www.b2s.com/register?name=Jane&phone=[redacted]&PASSWORD=[redacted]&step=2"}},
		{"a name percent-encoded as PHP forms send it", RedactURL,
			Record{URL: "/r?user%5Bemail%5D=jane%40example.com&user%5Bname%5D=Jane"},
			Record{URL: "/r?user%5Bemail%5D=[redacted]&user%5Bname%5D=Jane"}},
		{"a fragment's parameters", RedactURL,
			Record{URL: "https://www.b2s.com/cb#token=abc.def&state=1"},
			Record{URL: "https://www.b2s.com/cb#token=[redacted]&state=1"}},
		{"the query of a referrer URL", RedactReferrer,
			Record{Referrer: "https://www.b2s.com/register?token=s3cr3t&email=&lang=en"},
			Record{Referrer: "https://www.b2s.com/register?token=[redacted]&email=&lang=en"}},
		{"a URL nested in a referrer's query", RedactReferrer,
			Record{Referrer: "https://sso.example/login?next=%2Faccount%3Fphone%3D5551234%26tab%3D2&x=1"},
			Record{Referrer: "https://sso.example/login?next=%2Faccount%3Fphone%3D[redacted]%26tab%3D2&x=1"}},
		{"beacon parameters by key, in any case", RedactParams,
			Record{Params: []Param{{"Email", "jane"}, {"phone", "5551234"}, {"plan", "pro"}, {"token", ""}}},
			Record{Params: []Param{{"Email", "[redacted]"}, {"phone", "[redacted]"}, {"plan", "pro"}, {"token", ""}}}},
		{"a beacon parameter that is a URL", RedactParams,
			Record{Params: []Param{{"landing", "https://www.b2s.com/?password=x&a=b"}}},
			Record{Params: []Param{{"landing", "https://www.b2s.com/?password=[redacted]&a=b"}}}},

		{"control: parameters not named", RedactURL,
			Record{URL: "https://www.b2s.com/p?emails=1&my_phone=2&tokens=3&name=Jane"}, Record{}},
		{"control: a name in a path or a value", RedactURL,
			Record{URL: "https://www.b2s.com/phone/cases?q=phone=1&x=email"}, Record{}},
		{"control: a referrer without named parameters", RedactReferrer,
			Record{Referrer: "https://search.example/?q=phone+cases"}, Record{}},
		{"control: beacon parameters not named", RedactParams,
			Record{Params: []Param{{"emailed", "yes"}, {"x", "my phone=1"}}}, Record{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			control := want.URL == "" && want.Referrer == "" && want.Params == nil
			if control {
				want = tc.in
				want.Params = append([]Param(nil), tc.in.Params...)
			}
			r := tc.in
			n := rd.Record(&r)
			if r.URL != want.URL || r.Referrer != want.Referrer || !equalParams(r.Params, want.Params) {
				t.Errorf("got url %q referrer %q params %v\nwant url %q referrer %q params %v",
					r.URL, r.Referrer, r.Params, want.URL, want.Referrer, want.Params)
			}
			wantN := 0
			for _, s := range append([]string{want.URL, want.Referrer}, paramValues(want.Params)...) {
				wantN += strings.Count(s, RedactedValue)
			}
			var wantCounts Redactions
			wantCounts[tc.field] = wantN
			if n != wantCounts {
				t.Errorf("counted %v, want %v", n, wantCounts)
			}
			if control && n != (Redactions{}) {
				t.Errorf("control counted %v", n)
			}
		})
	}
}

func equalParams(a, b []Param) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func paramValues(ps []Param) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Value)
	}
	return out
}

func TestRedactRecord(t *testing.T) {
	rd := mustRedactor(t, "email")
	r := Record{Kind: KindBeacon,
		URL:      "https://www.b2s.com/r?email=jane@example.com",
		Referrer: "https://mail.example/#inbox/jane%40example.com",
		Event:    "signup:jane@example.com",
		Params:   []Param{{"a@example.com", "1"}, {"b@example.com", "2"}, {"note", "from x@example.org"}},
		Mail:     &Mail{Link: LinkOK, Destination: "https://www.b2s.com/welcome?u=jane%40example.com"},
	}
	n := rd.Record(&r)
	if want := (Redactions{RedactURL: 1, RedactReferrer: 1, RedactEvent: 1, RedactParams: 3, RedactDestination: 1}); n != want {
		t.Errorf("counted %v, want %v", n, want)
	}
	want := Record{URL: "https://www.b2s.com/r?email=[redacted]", Referrer: "https://mail.example/#inbox/[email]",
		Event: "signup:[email]", Params: []Param{{"[email]", "1"}, {"note", "from [email]"}}}
	if r.URL != want.URL || r.Referrer != want.Referrer || r.Event != want.Event || !equalParams(r.Params, want.Params) ||
		r.Mail.Destination != "https://www.b2s.com/welcome?u=[email]" {
		t.Errorf("got %q %q %q %v %q", r.URL, r.Referrer, r.Event, r.Params, r.Mail.Destination)
	}
	js := string(r.AppendJSON(nil))
	if strings.Contains(js, "example.com") || strings.Contains(js, "example.org") {
		t.Errorf("record still names an address: %s", js)
	}
	if !json.Valid([]byte(js)) {
		t.Errorf("invalid JSON: %s", js)
	}

	// A nil Redactor replaces addresses only.
	r = Record{URL: "/r?email=jane&x=jane@example.com"}
	if n := (*Redactor)(nil).Record(&r); r.URL != "/r?email=jane&x=[email]" || n[RedactURL] != 1 {
		t.Errorf("nil Redactor: %q, %v", r.URL, n)
	}
}

func TestRedactTooDeep(t *testing.T) {
	rd := mustRedactor(t)
	deep := func(levels int, tail string) string {
		s := tail
		for range levels {
			s = strings.ReplaceAll(s, "%", "%25")
		}
		return "/x?e=" + s
	}
	// Within the depth examined, the address is found and the rest kept.
	if got, _ := rd.redact(deep(maxRedactDepth-1, "jane%40example.com"), MaxURLLen); got != "/x?e=[email]" {
		t.Errorf("address %d times encoded: got %q", maxRedactDepth, got)
	}
	// Beyond it, the whole value goes.
	if got, n := rd.redact(deep(maxRedactDepth+1, "jane%40example.com"), MaxURLLen); got != RedactedValue || n != 1 {
		t.Errorf("address %d times encoded: got %q, %d", maxRedactDepth+2, got, n)
	}
	// Control: as deep, but nothing that could become an address.
	in := deep(maxRedactDepth+1, "jane%20example.com")
	if got, n := rd.redact(in, MaxURLLen); got != in || n != 0 {
		t.Errorf("deep value without an address: got %q, %d", got, n)
	}
}

func TestNewRedactorRejects(t *testing.T) {
	for _, name := range []string{"", "e mail", "a=b", "a&b", "a%40", "a+b", "q?", "#x", "naïve", strings.Repeat("x", MaxParamKeyLen+1)} {
		if _, err := NewRedactor([]string{"email", name}); err == nil {
			t.Errorf("NewRedactor accepted %q", name)
		}
	}
	if _, err := NewRedactor([]string{"email", "user[email]", "X-Token", "a.b"}); err != nil {
		t.Errorf("NewRedactor refused good names: %v", err)
	}
}

// The oracle of FuzzRedact: its own decoders and detector, written apart
// from redact.go's, from the definitions in Redactor's documentation.
var (
	escapeRE     = regexp.MustCompile(`%[0-9A-Fa-f]{2}`)
	escapePlusRE = regexp.MustCompile(`%[0-9A-Fa-f]{2}|\+`)
	localRE      = regexp.MustCompile("^(?:[A-Za-z0-9!$'*+\\-^_`{|}~.]|[^\\x00-\\x7F\\x{FFFD}])$")
	domainRE     = regexp.MustCompile(`^(?:[A-Za-z0-9\-]|[^\x00-\x7F\x{FFFD}])+(?:\.(?:[A-Za-z0-9\-]|[^\x00-\x7F\x{FFFD}])+)+`)
	letterRE     = regexp.MustCompile(`^(?:[A-Za-z]|[^\x00-\x7F\x{FFFD}])`)
	densityRE    = regexp.MustCompile(`^[0-9]+[xX]$`)
	// The names FuzzRedact configures, in ASCII case only ((?i) would
	// fold k to the Kelvin sign): as a parameter, with its value, and as a
	// key.
	oracleNames   = `(?:[eE][mM][aA][iI][lL]|[pP][hH][oO][nN][eE]|[tT][oO][kK][eE][nN])`
	oracleParamRE = regexp.MustCompile(`(?:^|[?&#])` + oracleNames + `=([^&#]*)`)
	oracleKeyRE   = regexp.MustCompile(`^` + oracleNames + `$`)
)

// decodeOnce percent-decodes every well-formed escape (and '+', when plus
// is set), leaving malformed ones as they are.
func decodeOnce(s string, plus bool) string {
	re := escapeRE
	if plus {
		re = escapePlusRE
	}
	return re.ReplaceAllStringFunc(s, func(m string) string {
		if m == "+" {
			return " "
		}
		var b byte
		for _, c := range []byte(m[1:]) {
			b <<= 4
			switch {
			case c <= '9':
				b |= c - '0'
			case c <= 'F':
				b |= c - 'A' + 10
			default:
				b |= c - 'a' + 10
			}
		}
		return string([]byte{b})
	})
}

// decodings returns s and every percent-decoding of it, then every
// form-decoding, until either stops changing.
func decodings(s string) (out []string, depth int) {
	out = append(out, s)
	for _, plus := range []bool{false, true} {
		d := s
		for i := 0; ; i++ {
			next := decodeOnce(d, plus)
			if next == d {
				if !plus {
					depth = i
				}
				break
			}
			out = append(out, next)
			d = next
		}
	}
	return out, depth
}

// oracleEmail returns an email address in s, as Redactor's documentation
// defines one, or "".
func oracleEmail(s string) string {
	// before[i] is the character before s[i], where a character starts,
	// as range decodes s (an invalid byte is U+FFFD).
	before := make([]rune, len(s)+1)
	last := rune(-1)
	for j, r := range s {
		before[j] = last
		last = r
	}
	before[len(s)] = last
	for i := 0; i < len(s); i++ {
		if s[i] != '@' || i == 0 || !localRE.MatchString(string(before[i])) {
			continue
		}
		d := domainRE.FindString(s[i+1:])
		labels := strings.Split(d, ".")
		for k := 1; d != "" && k < len(labels); k++ {
			if letterRE.MatchString(labels[k]) && (k > 1 || !densityRE.MatchString(labels[0])) {
				return s[max(0, i-20) : i+1+len(d)]
			}
		}
	}
	return ""
}

// FuzzRedact checks that no email address survives redaction, however
// often the output is percent- or form-decoded, that text without one is
// left as it was, and that the parameters named are left without their
// values.
func FuzzRedact(f *testing.F) {
	for _, seed := range []string{
		"", "https://www.b2s.com/p?id=42", "jane@example.com", "/r?email=jane%40example.com&x=1",
		"/l?next=%2Fr%3Femail%3Djane%2540example.com", "%%34%30", "a%%34%30b.co", "q=contact+j%40x.io+now",
		"a@b@c.d", "logo@2x.png", "jquery@3.7.1", "user@localhost", "@media", "j%C3%B6rg%40ex%C3%A4mple.de",
		"?Phone=1&token=%26&password", "#token=x", "user%5Bemail%5D=x", "a%3Dj@x.co", "\xff@x.co", "\u00e9@x.co",
	} {
		f.Add(seed, "email")
	}
	f.Add("?to\u212Aen=1&emai%6C=2", "to\u212Aen")
	f.Add("x@example.com.1", "Phone")
	f.Add(strings.Repeat("a", 47)+"jane@example.com.1", "k") // the event cut after .com
	plain := mustRedactor(f)
	named := mustRedactor(f, "email", "phone", "token")
	// hasNamed reports whether s holds a named parameter with a value.
	hasNamed := func(s string) bool {
		for _, m := range oracleParamRE.FindAllStringSubmatch(s, -1) {
			if m[1] != "" && m[1] != RedactedValue {
				return true
			}
		}
		return false
	}
	f.Fuzz(func(t *testing.T, in, key string) {
		inLevels, depth := decodings(in)
		hasEmail, named1 := false, false
		for _, d := range inLevels {
			hasEmail = hasEmail || oracleEmail(d) != ""
			named1 = named1 || hasNamed(d)
		}
		checkRedactedRecord(t, named, in, key)
		for _, rd := range []*Redactor{plain, named} {
			out, n := rd.redact(in, MaxURLLen)
			same := out == in || out == in[:min(len(in), MaxURLLen+redactMargin)]
			if n < 0 || (n == 0) != same {
				t.Fatalf("redact(%q) = %q, counting %d", in, out, n)
			}
			levels, _ := decodings(out)
			for _, d := range levels {
				if e := oracleEmail(d); e != "" {
					t.Fatalf("redact(%q) = %q, whose decoding %q holds the address %q", in, out, d, e)
				}
			}
			if again, n := rd.redact(out, MaxURLLen); again != out || n != 0 {
				t.Fatalf("redact(%q) = %q, then %q (%d): not settled", in, out, again, n)
			}
			if !hasEmail && (rd == plain || !named1) && depth <= maxRedactDepth {
				// Only what a record carries counts: redact looks no
				// further than a margin past the limit.
				if cut := func(s string) string { return s[:min(len(s), MaxURLLen)] }; cut(out) != cut(in) {
					t.Fatalf("redact(%q) = %q, though it holds no address nor named parameter", in, out)
				}
			}
			if rd == named {
				for _, d := range levels {
					if hasNamed(d) {
						t.Fatalf("redact(%q) = %q, whose decoding %q keeps a named parameter's value", in, out, d)
					}
				}
			}
		}
	})
}

// checkRedactedRecord checks a record made of in and key, redacted by
// rd (which names email, phone and token): its JSON, as a consumer
// decodes it, holds no address in any field however often decoded, nor a
// named parameter's value, even where the record's limits cut a value.
func checkRedactedRecord(t *testing.T, rd *Redactor, in, key string) {
	t.Helper()
	r := Record{EventID: testEventID, Status: 200, Kind: KindBeacon, URL: in, Referrer: key + in, Event: key + in,
		Params: []Param{{key, in}, {"x", key + "=" + in}}}
	if !strings.EqualFold(key, "phone") {
		r.Params = append(r.Params, Param{"Phone", key})
	}
	rd.Record(&r)
	js := r.AppendJSON(nil)
	var rec struct {
		URL      string            `json:"url"`
		Referrer string            `json:"referrer"`
		Event    string            `json:"event"`
		Params   map[string]string `json:"params"`
	}
	if err := json.Unmarshal(js, &rec); err != nil {
		t.Fatalf("record %s: %v", js, err)
	}
	fields := []string{rec.URL, rec.Referrer, rec.Event}
	for k, v := range rec.Params {
		fields = append(fields, k, v)
		if oracleKeyRE.MatchString(k) && v != "" && !strings.HasPrefix(RedactedValue, v) {
			t.Fatalf("record %s keeps parameter %q's value", js, k)
		}
	}
	for _, f := range fields {
		levels, _ := decodings(f)
		for _, d := range levels {
			if e := oracleEmail(d); e != "" {
				t.Fatalf("record %s holds the address %q in %q", js, e, d)
			}
		}
	}
}

func BenchmarkRedactRecord(b *testing.B) {
	rd := mustRedactor(b, "email", "phone", "token", "password")
	for _, bc := range []struct {
		name string
		r    Record
	}{
		{"no personal data", Record{
			URL:      "https://www.b2s.com/products/shoes?id=42&utm_source=newsletter&utm_medium=email%20footer",
			Referrer: "https://www.google.com/search?q=b2s+running+shoes&hl=en",
			Event:    "pageview",
			Params:   []Param{{"product", "42"}, {"lang", "zh-CN"}, {"title", "Running shoes | B2S"}},
		}},
		{"an address and a named parameter", Record{
			URL:      "https://www.b2s.com/register/done?email=jane.doe%40example.com&phone=%2B86+755+1234&step=3",
			Referrer: "https://www.b2s.com/register?step=2&name=Jane",
			Event:    "signup",
			Params:   []Param{{"product", "42"}, {"lang", "zh-CN"}, {"contact", "jane.doe@example.com"}},
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			params := make([]Param, len(bc.r.Params))
			b.ReportAllocs()
			for b.Loop() {
				r := bc.r
				copy(params, bc.r.Params)
				r.Params = params
				rd.Record(&r)
			}
		})
	}
}
