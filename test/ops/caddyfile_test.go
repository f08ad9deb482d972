package ops

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/b2scom/b2s-edge/internal/geotest"
)

const (
	prodCaddyfile = "configs/production/Caddyfile"
	prodEnv       = "configs/production/env.example"
	prodUnit      = "configs/production/b2s-edge.service"
)

// caddyfiles lists the Caddyfiles of the working tree, tracked or new but
// not ignored: files named Caddyfile, Caddyfile.<something> or
// <something>.Caddyfile. Caddy's adapt-test inputs (*.caddyfiletest) hold a
// Caddyfile and the JSON it must adapt to, and are not Caddyfiles.
func caddyfiles(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "--cached", "--others", "--exclude-standard")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files (listing the Caddyfiles to check): %v", err)
	}
	var files []string
	for f := range strings.Lines(string(out)) {
		f = strings.TrimSpace(f)
		base := path.Base(f)
		if base == "Caddyfile" || strings.HasPrefix(base, "Caddyfile.") || strings.HasSuffix(base, ".Caddyfile") {
			if _, err := os.Stat(repoFile(f)); err == nil { // not deleted from the work tree
				files = append(files, f)
			}
		}
	}
	return files
}

// caddyFmt runs `caddy fmt --diff` on file; it exits non-zero when the file
// is not formatted.
func caddyFmt(t *testing.T, file string) (diff string, formatted bool) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), caddyBinary(t), "fmt", "--diff", file).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("caddy fmt %s: %v", file, err)
	}
	return string(out), err == nil
}

func TestEveryCaddyfileIsFormatted(t *testing.T) {
	files := caddyfiles(t)
	for _, must := range []string{"Caddyfile", prodCaddyfile} {
		if !slices.Contains(files, must) {
			t.Fatalf("the Caddyfiles found (%v) do not include %s", files, must)
		}
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			if diff, ok := caddyFmt(t, repoFile(f)); !ok {
				t.Errorf("%s is not formatted; run bin/caddy fmt --overwrite %s\n%s", f, f, diff)
			}
		})
	}
	t.Run("a file indented with spaces is caught", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(bad, []byte("localhost {\n    respond ok\n}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, ok := caddyFmt(t, bad); ok {
			t.Fatal("caddy fmt accepted a file indented with spaces; the check above cannot fail")
		}
	})
}

// adaptProduction adapts the production Caddyfile as written and returns
// the JSON config and what Caddy logged.
func adaptProduction(t *testing.T) (map[string]any, string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), caddyBinary(t), "adapt", "--config", repoFile(prodCaddyfile), "--adapter", "caddyfile")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("caddy adapt %s: %v\n%s", prodCaddyfile, err, stderr.String())
	}
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("caddy adapt %s: %v\n%s", prodCaddyfile, err, out)
	}
	return cfg, stderr.String()
}

// The production Caddyfile adapts without a warning, keeps its promises
// to operators (admin and metrics on loopback only, Caddy's HTTP metrics
// on for B2SEdgeNotRecording, keys only from the environment), and every
// variable it reads is in env.example.
func TestProductionCaddyfileAdapts(t *testing.T) {
	cfg, log := adaptProduction(t)
	if strings.Contains(log, `"level":"warn"`) || strings.Contains(log, `"level":"error"`) {
		t.Errorf("caddy adapt %s warned:\n%s", prodCaddyfile, log)
	}

	listen, _ := lookup(cfg, "admin", "listen").(string)
	if host, _, err := net.SplitHostPort(listen); err != nil || (host != "localhost" && !isLoopback(host)) {
		t.Errorf("admin listens on %q; want a loopback address, the admin API and /metrics must not be public", listen)
	}
	if lookup(cfg, "apps", "http", "metrics") == nil {
		t.Error("Caddy's HTTP metrics are off (no metrics global option); B2SEdgeNotRecording needs caddy_http_requests_total")
	}
	secrets, _ := lookup(cfg, "apps", "b2s", "secrets").([]any)
	if len(secrets) == 0 {
		t.Fatal("no b2s secrets in the adapted config")
	}
	placeholder := regexp.MustCompile(`^\{env\.[A-Z0-9_]+\}$`)
	for _, s := range secrets {
		if s, _ := s.(string); !placeholder.MatchString(s) {
			t.Errorf("b2s secret %q is not an {env.*} placeholder; keys must not be written in the Caddyfile", s)
		}
	}

	declared := envFile(t, prodEnv)
	for _, m := range regexp.MustCompile(`\{env\.([A-Za-z0-9_]+)\}`).FindAllStringSubmatch(readRepoFile(t, prodCaddyfile), -1) {
		if _, ok := declared[m[1]]; !ok {
			t.Errorf("%s reads %s, which %s does not list", prodCaddyfile, m[1], prodEnv)
		}
	}
}

// `caddy validate` provisions every module: it opens the GeoIP database
// and the spool. It runs on a copy of the production Caddyfile whose two
// paths point into a temporary directory, with a generated City database,
// and the environment filled in as an operator would from env.example.
func TestProductionCaddyfileValidates(t *testing.T) {
	caddy := caddyBinary(t)
	dir := t.TempDir()
	mmdb := filepath.Join(dir, "GeoLite2-City.mmdb")
	if err := geotest.WriteCityDB(mmdb, geotest.Demo()); err != nil {
		t.Fatal(err)
	}
	config := readRepoFile(t, prodCaddyfile)
	config = replaceOnce(t, config, " /var/lib/GeoIP/GeoLite2-City.mmdb\n", " "+mmdb+"\n", prodCaddyfile)
	config = replaceOnce(t, config, " /var/lib/b2s-edge/spool\n", " "+filepath.Join(dir, "spool")+"\n", prodCaddyfile)
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}

	key, oldKey := randomKey(), randomKey()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string // "" for a valid configuration
	}{
		{"is valid with both keys set", map[string]string{"B2S_SECRET": key, "B2S_SECRET_OLD": oldKey}, ""},
		{"is valid with the same key twice (no rotation under way)", map[string]string{"B2S_SECRET": key, "B2S_SECRET_OLD": key}, ""},
		// Caddy logs JSON: the quotes of the message are escaped.
		{"is refused with env.example as shipped, naming the empty key", envFile(t, prodEnv), `secret 1 (\"{env.B2S_SECRET}\") is empty`},
		{"is refused with a key shorter than 32 bytes", map[string]string{"B2S_SECRET": "too-short", "B2S_SECRET_OLD": key}, "secret 1 is 9 bytes"},
		{"is valid in a rotation's first step (a new key verify-only)", map[string]string{"B2S_SECRET": key, "B2S_SECRET_NEXT": oldKey, "B2S_EDGE_ID": "fra-1"}, ""},
		{"is refused with B2S_SECRET_NEXT left set once the key signs", map[string]string{"B2S_SECRET": key, "B2S_SECRET_OLD": oldKey, "B2S_SECRET_NEXT": key}, "listed twice"},
		{"is refused with an edge ID that is not a name", map[string]string{"B2S_SECRET": key, "B2S_EDGE_ID": "fra 1"}, "edge_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			cmd := exec.CommandContext(t.Context(), caddy, "validate", "--config", file, "--adapter", "caddyfile")
			cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
			for k, v := range tc.env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			out, err := cmd.CombinedOutput()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("caddy validate: %v\n%s", err, out)
			case tc.wantErr == "" && !strings.Contains(string(out), "Valid configuration"):
				t.Fatalf("caddy validate did not say the configuration is valid:\n%s", out)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("caddy validate accepted the configuration; want an error containing %q\n%s", tc.wantErr, out)
			case tc.wantErr != "" && !strings.Contains(string(out), tc.wantErr):
				t.Fatalf("caddy validate: want an error containing %q, got:\n%s", tc.wantErr, out)
			}
		})
	}
}

// envFile reads a systemd EnvironmentFile of NAME=value lines.
func envFile(t *testing.T, rel string) map[string]string {
	t.Helper()
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(readRepoFile(t, rel)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not NAME=value", rel, line)
		}
		env[k] = v
	}
	if len(env) == 0 {
		t.Fatalf("%s sets no variable", rel)
	}
	return env
}

func randomKey() string {
	b := make([]byte, 48)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// lookup walks nested JSON objects along keys.
func lookup(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func isLoopback(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
