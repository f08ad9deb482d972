package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/logship"
	"github.com/b2scom/b2s-edge/mailink"
)

// redactCollect is b2s_collect with the default options but for
// redact_params (none: the option left out) and no client limit, and the
// spool its records go to.
func redactCollect(t *testing.T, now *time.Time, params ...string) (*Collect, *logship.Spool) {
	t.Helper()
	app := &App{ClientLimit: &ClientLimit{Off: true}}
	if params != nil {
		app.Privacy = &Privacy{RedactParams: params}
	}
	sp := setUpApp(t, app, func() time.Time { return *now })
	c := new(Collect)
	if err := c.bind(caddy.Context{}, app, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	return c, sp
}

// redactions reads b2s_redactions_total, by field.
func redactions() map[string]float64 {
	out := map[string]float64{}
	for i, f := range beacon.RedactFieldNames {
		out[f] = testutil.ToFloat64(redactionCount[i])
	}
	return out
}

// TestRedactRecords: records of a page view, a beacon (GET and POST), an
// opt-out and a mail click reach the spool without the email addresses
// and named parameters' values their requests carried, and
// b2s_redactions_total counts them; without redact_params, only the
// addresses go.
func TestRedactRecords(t *testing.T) {
	const (
		addr    = "jane.doe@example.com"
		phone   = "5551234"
		pageURL = "https://www.b2s.com/register/done?email=jane.doe%40example.com&phone=" + phone + "&step=3"
	)
	type request struct {
		name string
		req  func() *http.Request
		// what b2s_redactions_total gains, by field, with redact_params
		// email phone and without
		named, unnamed map[string]float64
	}
	requests := []request{
		{"a page view", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, pageURL, nil)
			r.Header.Set("Referer", "https://www.b2s.com/register?phone="+phone+"&email=jane.doe%2540example.com")
			return r
		}, map[string]float64{"url": 2, "referrer": 2}, map[string]float64{"url": 1, "referrer": 1}},
		{"a beacon", func() *http.Request {
			u := strings.ReplaceAll(strings.ReplaceAll(pageURL, "%", "%25"), "&", "%26")
			r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/b.gif?u="+u+"&e=signup&contact=jane.doe%40example.com&Phone="+phone+"&plan=pro", nil)
			r.Header.Set("Referer", "https://www.b2s.com/")
			return r
		}, map[string]float64{"url": 2, "params": 2}, map[string]float64{"url": 1, "params": 1}},
		{"a POST beacon", func() *http.Request {
			body := `{"u":"https://www.b2s.com/account?phone=` + phone + `","e":"edit","note":"reach me at ` + addr + `"}`
			r := httptest.NewRequest(http.MethodPost, "https://www.b2s.com/b.gif", strings.NewReader(body))
			r.Header.Set("Content-Type", "text/plain;charset=UTF-8")
			return r
		}, map[string]float64{"url": 1, "params": 1}, map[string]float64{"params": 1}},
		{"an opt-out", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "https://www.b2s.com/_b2s/optout?email="+addr+"&phone="+phone, nil)
		}, map[string]float64{"url": 2}, map[string]float64{"url": 1}},
	}
	for _, named := range []bool{true, false} {
		now := time.Unix(1_800_000_000, 0)
		var c *Collect
		var sp *logship.Spool
		if named {
			c, sp = redactCollect(t, &now, "email", "phone")
		} else {
			c, sp = redactCollect(t, &now)
		}
		for _, rq := range requests {
			name, want := rq.name+" with redact_params", rq.named
			if !named {
				name, want = rq.name+", control: without redact_params", rq.unnamed
			}
			t.Run(name, func(t *testing.T) {
				before := redactions()
				serveCollect(t, c, rq.req(), nil)
				rec := takeRecord(t, sp)
				js, _ := json.Marshal(rec.rec)
				if strings.Contains(string(js), "jane.doe") || strings.Contains(string(js), "example.com") {
					t.Errorf("record still holds the address: %s", js)
				}
				if got := strings.Contains(string(js), phone); got == named {
					t.Errorf("record holds the named parameter's value: %v, want %v: %s", got, !named, js)
				}
				after := redactions()
				for _, f := range beacon.RedactFieldNames {
					if got := after[f] - before[f]; got != want[f] {
						t.Errorf("b2s_redactions_total{field=%q} rose by %v, want %v (record %s)", f, got, want[f], js)
					}
				}
			})
		}
	}
}

// TestRedactMailClick: a mail click's destination loses its address too.
func TestRedactMailClick(t *testing.T) {
	e := &mailEdge{now: time.Unix(1_800_000_000, 0)}
	e.c, e.sp = redactCollect(t, &e.now, "phone")
	var err error
	if e.sealer, err = mailink.New([]byte(testKey1)); err != nil {
		t.Fatal(err)
	}
	const dest = "https://www.b2s.com/welcome?u=jane%40example.com&phone=5551234"
	before := redactions()
	w, rec := e.do(t, http.MethodGet, e.url(t, mailink.Click, "m-1001", func(l *mailink.Link) { l.Destination = dest }), nil)
	if loc := w.Header().Get("Location"); loc != dest {
		t.Errorf("redirected to %q, want the sealed destination %q", loc, dest)
	}
	if got, want := rec.str("destination"), "https://www.b2s.com/welcome?u=[email]&phone=[redacted]"; got != want {
		t.Errorf("record destination %q, want %q", got, want)
	}
	if got := redactions()["destination"] - before["destination"]; got != 2 {
		t.Errorf("b2s_redactions_total{field=\"destination\"} rose by %v, want 2", got)
	}
}

func TestRedactParamsOption(t *testing.T) {
	t.Run("redact_params on several lines adds every name", func(t *testing.T) {
		var a App
		d := caddyfile.NewTestDispenser("b2s {\n\tprivacy {\n\t\tredact_params email phone\n\t\tredact_params token\n\t}\n}")
		if err := a.UnmarshalCaddyfile(d); err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(a.Privacy.RedactParams, " "), "email phone token"; got != want {
			t.Errorf("redact_params = %q, want %q", got, want)
		}
	})
	t.Run("redact_params adapts to the privacy block's JSON", func(t *testing.T) {
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("{\n\tb2s {\n\t\tprivacy {\n\t\t\tredact_params email user[email]\n\t\t}\n\t}\n}\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := `"privacy":{"redact_params":["email","user[email]"]}`; !strings.Contains(string(out), want) {
			t.Errorf("adapted to %s, want it to hold %s", out, want)
		}
	})
	t.Run("redact_params without a name is refused", func(t *testing.T) {
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("{\n\tb2s {\n\t\tprivacy {\n\t\t\tredact_params\n\t\t}\n\t}\n}\n"), nil)
		if err == nil || !strings.Contains(err.Error(), "b2s: privacy: redact_params needs at least one") || !strings.Contains(err.Error(), "Caddyfile:4") {
			t.Errorf("error %v, want one naming redact_params and its line", err)
		}
	})
	for _, tc := range []struct {
		name  string
		names []string
		want  string // "" for accepted
	}{
		{"a name with a space is refused", []string{"email", "e mail"}, `b2s: privacy: redact_params: parameter name "e mail"`},
		{"an encoded name is refused", []string{"user%5Bemail%5D"}, "give the name decoded"},
		{"a name with = is refused", []string{"email="}, "e.g. redact_params email phone"},
		{"control: good names are accepted", []string{"email", "Phone", "user[email]", "x-token"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &App{Privacy: &Privacy{RedactParams: tc.names}}
			a.setDefaults()
			sp, err := logship.OpenSpool(logship.SpoolConfig{Dir: t.TempDir(), Fsync: logship.FsyncNever})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			if err := a.setup([][]byte{[]byte(testKey1)}, sp); err != nil {
				t.Fatal(err)
			}
			err = a.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
