package ops

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/internal/testproc"
)

const (
	xcaddyModule = "github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5"
	caddyVersion = "v2.11.9" // go.mod's
)

// Caddy users build the plugin with xcaddy, naming the module (its root
// package registers the modules), here replaced by this checkout:
//
//	xcaddy build v2.11.9 --with github.com/b2scom/b2s-edge=<checkout>
//
// The binary must list the plugin's three modules.
func TestPluginBuildsWithXcaddy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy with xcaddy (a minute or more); skipped with -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	// The packages `make build` compiles are the ones xcaddy compiles, with
	// the same -trimpath: building them first fills the build cache.
	caddyBinary(t)

	dir := t.TempDir()
	env := append(os.Environ(),
		"GOBIN="+filepath.Join(dir, "bin"),
		"GOTOOLCHAIN=local", // build with this Go, never download another
		"XCADDY_WHICH_GO="+testproc.GoTool(),
		"GOPROXY="+replacedModuleProxy(t),
	)
	start := time.Now()
	install := exec.CommandContext(ctx, testproc.GoTool(), "install", xcaddyModule)
	install.Env = env
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("go install %s: %v\n%s", xcaddyModule, err, out)
	}
	t.Logf("go install %s: %v", xcaddyModule, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	caddy := filepath.Join(dir, "caddy")
	build := exec.CommandContext(ctx, filepath.Join(dir, "bin", "xcaddy"), "build", caddyVersion,
		"--with", "github.com/b2scom/b2s-edge="+repoRoot,
		"--output", caddy)
	build.Dir = dir
	build.Env = env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("xcaddy build: %v\n%s", err, out)
	}
	t.Logf("xcaddy build %s: %v", caddyVersion, time.Since(start).Round(time.Millisecond))

	out, err := exec.CommandContext(ctx, caddy, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), caddyVersion+" ") {
		t.Errorf("caddy version: %q, %v; want %s", out, err, caddyVersion)
	}
	out, err = exec.CommandContext(ctx, caddy, "list-modules").Output()
	if err != nil {
		t.Fatalf("caddy list-modules: %v\n%s", err, out)
	}
	modules := strings.Fields(string(out))
	for _, m := range []string{"b2s", "http.handlers.b2s_collect", "http.handlers.b2s_health", "http.handlers.b2s_isolate", "http.handlers.reverse_proxy"} {
		if !slices.Contains(modules, m) {
			t.Errorf("caddy list-modules does not list %s:\n%s", m, out)
		}
	}
}

// replacedModuleProxy is the GOPROXY for the xcaddy build. `go get` asks
// the proxy about github.com/b2scom/b2s-edge even though go.mod replaces it
// by a directory, and takes the replacement only when the answer is "no
// such module" (404 or 410). A proxy that refuses unknown modules with
// another status (403), or a private repository behind `direct`, fails the
// build instead. Each proxy of GOPROXY is kept, "|" makes any failure fall
// through to the next, and "off" answers "no such module" in the end.
func replacedModuleProxy(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(testproc.GoTool(), "env", "GOPROXY").Output()
	if err != nil {
		t.Fatalf("go env GOPROXY: %v", err)
	}
	var proxies []string
	for _, p := range strings.FieldsFunc(strings.TrimSpace(string(out)), func(r rune) bool { return r == ',' || r == '|' }) {
		if p != "direct" && p != "off" {
			proxies = append(proxies, p)
		}
	}
	return strings.Join(append(proxies, "off"), "|")
}
