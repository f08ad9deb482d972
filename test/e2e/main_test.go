package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Binaries built once for the whole package by TestMain.
var (
	caddyBin   string
	kbrokerBin string
)

// TestMain builds the product binary (what `make build` puts in bin/caddy)
// and the test broker from this checkout, so the tests exercise the code
// they sit beside and a clean checkout needs no prior build step.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "b2s-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: creating a directory for the binaries: %v\n", err)
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
			fmt.Fprintf(os.Stderr, "e2e: go build %s: %v\n%s", b.pkg, err, out)
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
