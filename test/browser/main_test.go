package browser

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Binaries built once for the whole package by TestMain, and the browser.
var (
	caddyBin    string
	kbrokerBin  string
	chromiumBin string
)

// TestMain builds the product binary (what `make build` puts in bin/caddy)
// and the test broker from this checkout, so the tests exercise the code
// they sit beside and a clean checkout needs no prior build step.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if chromiumBin, err = exec.LookPath("chromium"); err != nil {
		fmt.Fprintf(os.Stderr, "browser: Chromium is needed and was not found (%v): apt-get install chromium (or make deps)\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "b2s-browser-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "browser: creating a directory for the binaries: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	caddyBin = filepath.Join(dir, "caddy")
	kbrokerBin = filepath.Join(dir, "kbroker")
	for _, b := range []struct{ out, pkg string }{
		{caddyBin, "github.com/b2scom/b2s-edge/cmd/caddy"},
		{kbrokerBin, "github.com/b2scom/b2s-edge/test/kbroker"},
	} {
		cmd := exec.Command(goTool(), "build", "-o", b.out, b.pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "browser: go build %s: %v\n%s", b.pkg, err, out)
			return 1
		}
	}
	return m.Run()
}

// goTool is the go command running this test: since Go 1.19 `go test`
// puts its own GOROOT/bin first in the test binary's PATH.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}
