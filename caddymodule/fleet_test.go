package caddymodule

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/b2scom/b2s-edge/beacon"
)

const testKey3 = "t3Gd0b2sEdgeTestKeyNumberThreeZZZZZZZZZZZZZZZZZZ"

func TestFleetOptionsInTheCaddyfile(t *testing.T) {
	var a App
	d := caddyfile.NewTestDispenser(`b2s {
		secret {env.B2S_SECRET} {env.B2S_SECRET_OLD}
		verify_secret {env.B2S_SECRET_NEXT}
		next_secret {env.B2S_SECRET_SCHEDULED} at 2027-01-10T09:00:00Z
		edge_id fra-1
	}`)
	if err := a.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(a.VerifySecrets, " "); got != "{env.B2S_SECRET_NEXT}" {
		t.Errorf("verify_secrets = %q", got)
	}
	if a.NextSecret == nil || *a.NextSecret != (NextSecret{Key: "{env.B2S_SECRET_SCHEDULED}", At: "2027-01-10T09:00:00Z"}) {
		t.Errorf("next_secret = %+v", a.NextSecret)
	}
	if a.EdgeID != "fra-1" {
		t.Errorf("edge_id = %q", a.EdgeID)
	}
	for _, bad := range []struct{ block, want string }{
		{"verify_secret", "verify_secret needs at least one key"},
		{"next_secret {env.K}", "next_secret needs a key and its switch-over time"},
		{"next_secret {env.K} 2027-01-10T09:00:00Z", "next_secret needs a key and its switch-over time"},
		{"next_secret {env.K} at 2027-01-10T09:00:00Z\nnext_secret {env.L} at 2027-01-10T09:00:00Z", "only once"},
		{"edge_id", "wrong argument count"},
	} {
		var a App
		err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("b2s {\n" + bad.block + "\n}"))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want %q", bad.block, err, bad.want)
		}
	}
}

func TestFleetLoadErrors(t *testing.T) {
	const unset = "B2S_TEST_UNSET_VARIABLE"
	app := func(opts map[string]any) string {
		m := map[string]any{"secrets": []string{testKey1}, "spool": t.TempDir(), "kafka": map[string]any{"brokers": []string{"127.0.0.1:9"}}}
		for k, v := range opts {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	for _, tc := range []struct {
		name string
		opts map[string]any
		want []string
	}{
		{"a verify-only key loads", map[string]any{"verify_secrets": []string{testKey2}}, nil},
		{"a verify-only key whose placeholder resolves to nothing is skipped", map[string]any{"verify_secrets": []string{"{env." + unset + "}"}}, nil},
		{"a next key with its time loads", map[string]any{"next_secret": map[string]any{"key": testKey2, "at": "2027-01-10T09:00:00Z"}}, nil},
		{"a next key whose placeholder resolves to nothing is off", map[string]any{"next_secret": map[string]any{"key": "{env." + unset + "}", "at": ""}}, nil},
		{"an edge_id loads", map[string]any{"edge_id": "fra-1.b2s"}, nil},
		{"a short verify-only key is named", map[string]any{"verify_secrets": []string{"short"}}, []string{"b2s: verify_secret 1 is 5 bytes", "openssl rand"}},
		{"a short next key is named", map[string]any{"next_secret": map[string]any{"key": "short", "at": "2027-01-10T09:00:00Z"}}, []string{"b2s: next_secret is 5 bytes"}},
		{"a next key without a time says how to give one", map[string]any{"next_secret": map[string]any{"key": testKey2}}, []string{"b2s: next_secret: at", "RFC 3339", "next_secret {env.B2S_SECRET_NEXT} at 2027-"}},
		{"a next key with a time that is not RFC 3339", map[string]any{"next_secret": map[string]any{"key": testKey2, "at": "10/01/2027 9:00"}}, []string{"not an RFC 3339 time"}},
		{"the same key twice among the secrets is one key", map[string]any{"secrets": []string{testKey1, testKey1}}, nil},
		{"a key in two roles is refused", map[string]any{"verify_secrets": []string{testKey1}}, []string{"b2s: secret", "listed twice", "one role"}},
		{"a key signing now and next is refused", map[string]any{"secrets": []string{testKey1, testKey2}, "next_secret": map[string]any{"key": testKey2, "at": "2027-01-10T09:00:00Z"}}, []string{"listed twice"}},
		{"an edge_id with a space is refused", map[string]any{"edge_id": "fra 1"}, []string{"b2s: edge_id \"fra 1\"", "letters, digits"}},
		{"an edge_id too long is refused", map[string]any{"edge_id": strings.Repeat("e", 65)}, []string{"b2s: edge_id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLoad(t, app(tc.opts), "", tc.want)
		})
	}
}

// gatherFleet returns the fleet metrics of the config in force, as text.
func gatherFleet(t *testing.T) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(fleetCollector{})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			b.WriteString(mf.GetName())
			for _, l := range m.Label {
				b.WriteString(" " + l.GetName() + "=" + l.GetValue())
			}
			if len(m.Label) == 0 {
				b.WriteString(" " + strconv.FormatFloat(m.GetGauge().GetValue(), 'f', -1, 64))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func TestFleetMetricsNameTheKeysWithoutRevealingThem(t *testing.T) {
	at := time.Date(2027, 1, 10, 9, 0, 0, 0, time.UTC)
	a := provisionApp(t, &App{Secrets: []string{testKey1, testKey2}, VerifySecrets: []string{testKey3},
		NextSecret: &NextSecret{Key: "t4Gd0b2sEdgeTestKeyNumberFourWWWWWWWWWWWWWWWWWWW", At: at.Format(time.RFC3339)},
		EdgeID:     "fra-1", Spool: t.TempDir(), Kafka: &KafkaConfig{Brokers: []string{deadBroker(t)}}})
	clock := at.Add(-time.Minute)
	a.now = func() time.Time { return clock }
	a.publishFleet()
	fp := beacon.Fingerprint
	got := gatherFleet(t)
	for _, want := range []string{
		"b2s_key_info fingerprint=" + fp([]byte(testKey1)) + " role=sign",
		"b2s_key_info fingerprint=" + fp([]byte(testKey2)) + " role=older",
		"b2s_key_info fingerprint=" + fp([]byte(testKey3)) + " role=verify",
		"b2s_key_info fingerprint=" + fp([]byte("t4Gd0b2sEdgeTestKeyNumberFourWWWWWWWWWWWWWWWWWWW")) + " role=next",
		"b2s_config_info edge=fra-1 network=" + fingerprint(nil) + " privacy=" + a.privacyFingerprint(),
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, got)
		}
	}
	if want := "b2s_key_next_switch_timestamp_seconds " + strconv.FormatInt(at.Unix(), 10) + "\n"; !strings.Contains(got, want) {
		t.Errorf("metrics lack %q:\n%s", want, got)
	}
	for _, k := range []string{testKey1, testKey2, testKey3, "t4Gd0b2sEdge"} {
		if strings.Contains(got, k[:12]) {
			t.Errorf("the metrics show a key: %s", got)
		}
	}
	// At the switch-over time the next key signs and the secrets are older.
	clock = at
	got = gatherFleet(t)
	for _, want := range []string{
		"fingerprint=" + fp([]byte(testKey1)) + " role=older",
		"fingerprint=" + fp([]byte("t4Gd0b2sEdgeTestKeyNumberFourWWWWWWWWWWWWWWWWWWW")) + " role=sign",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("after the switch the metrics lack %q:\n%s", want, got)
		}
	}
}

// hostName is the edge ID of an edge without edge_id.
func hostName(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatalf("no host name on this machine: %v", err)
	}
	return h
}

func TestEdgeIDDefaultsToTheHostName(t *testing.T) {
	a := provisionApp(t, &App{Secrets: []string{testKey1}, Spool: t.TempDir(), Kafka: &KafkaConfig{Brokers: []string{deadBroker(t)}}})
	if h := hostName(t); a.edgeID != h {
		t.Errorf("edge ID = %q, want the host name %q", a.edgeID, h)
	}
}

// The config fingerprints are of the settings in force: the same
// settings written differently agree, a different site or privacy
// setting does not.
func TestConfigFingerprints(t *testing.T) {
	off, on := false, true
	fps := func(a *App) (string, string) {
		a.setDefaults()
		if err := a.setup([][]byte{[]byte(testKey1)}, nil); err != nil {
			t.Fatal(err)
		}
		return a.networkFingerprint(), a.privacyFingerprint()
	}
	baseN, baseP := fps(&App{Network: &Network{Sites: []string{"b2s.com", "b2smade.com"}}})
	for _, tc := range []struct {
		name         string
		app          *App
		sameN, sameP bool
	}{
		{"the defaults written out", &App{Network: &Network{Sites: []string{"B2S.com", ".b2smade.com"}, LinkPath: DefaultLinkPath, TokenTTL: DefaultTokenTTL},
			Privacy: &Privacy{OptOutPath: DefaultOptOutPath, IPv4Prefix: 24}, CookieName: "b2sid"}, true, true},
		{"a site missing", &App{Network: &Network{Sites: []string{"b2s.com"}}}, false, true},
		{"another token lifetime", &App{Network: &Network{Sites: []string{"b2s.com", "b2smade.com"}, TokenTTL: DefaultTokenTTL * 2}}, false, true},
		{"GPC off", &App{Network: &Network{Sites: []string{"b2s.com", "b2smade.com"}}, Privacy: &Privacy{GPC: &off}}, true, false},
		{"IPs truncated", &App{Network: &Network{Sites: []string{"b2s.com", "b2smade.com"}}, Privacy: &Privacy{TruncateIP: true}}, true, false},
		{"another cookie lifetime", &App{Network: &Network{Sites: []string{"b2s.com", "b2smade.com"}}, CookieMaxAge: DefaultCookieMaxAge / 2}, true, false},
		{"anon_id on, written out", &App{Network: &Network{Sites: []string{"b2s.com", "b2smade.com"}}, Privacy: &Privacy{AnonID: &on}}, true, true},
		{"anon_id off", &App{Network: &Network{Sites: []string{"b2s.com", "b2smade.com"}}, Privacy: &Privacy{AnonID: &off}}, true, false},
		{"a shared anon_id key", &App{Network: &Network{Sites: []string{"b2s.com", "b2smade.com"}}, Privacy: &Privacy{AnonIDKey: testKey1 + testKey1}}, true, false},
		{"parameters redacted", &App{Network: &Network{Sites: []string{"b2s.com", "b2smade.com"}}, Privacy: &Privacy{RedactParams: []string{"email"}}}, true, false},
	} {
		n, p := fps(tc.app)
		if (n == baseN) != tc.sameN || (p == baseP) != tc.sameP {
			t.Errorf("%s: network %s (base %s, same wanted %v), privacy %s (base %s, same wanted %v)", tc.name, n, baseN, tc.sameN, p, baseP, tc.sameP)
		}
	}
}

// TestRecordSettingsFingerprint checks the part of the privacy
// fingerprint that says what records carry besides identifiers: the same
// for the same redacted parameters in any case, order or repetition, and
// for the same anon_id key on two edges; different for another list,
// another key, and a random salt against a key.
func TestRecordSettingsFingerprint(t *testing.T) {
	fp := func(p *Privacy) string {
		a := &App{Privacy: p}
		a.setDefaults()
		if err := a.setup([][]byte{[]byte(testKey1)}, nil); err != nil {
			t.Fatal(err)
		}
		return a.privacyFingerprint()
	}
	keyA, keyB := strings.Repeat("a", 40), strings.Repeat("b", 40)
	same := [][2]*Privacy{
		{{RedactParams: []string{"email", "Phone"}}, {RedactParams: []string{"PHONE", "email", "Email"}}},
		{{AnonIDKey: keyA}, {AnonIDKey: keyA}},
		{{}, {}}, // random salts: two edges' differ, the fingerprint does not
	}
	for _, c := range same {
		if a, b := fp(c[0]), fp(c[1]); a != b {
			t.Errorf("%+v and %+v: fingerprints %s and %s, want the same", *c[0], *c[1], a, b)
		}
	}
	differ := [][2]*Privacy{
		{{RedactParams: []string{"email"}}, {RedactParams: []string{"email", "phone"}}},
		{{AnonIDKey: keyA}, {AnonIDKey: keyB}},
		{{AnonIDKey: keyA}, {}},
	}
	for _, c := range differ {
		if a, b := fp(c[0]), fp(c[1]); a == b {
			t.Errorf("%+v and %+v: both fingerprint %s, want them told apart", *c[0], *c[1], a)
		}
	}
}
