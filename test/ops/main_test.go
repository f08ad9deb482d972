package ops

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/b2scom/b2s-edge/internal/testproc"
)

// repoRoot is the module's root directory; binDir holds what the tests build.
var repoRoot, binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	out, err := exec.Command(testproc.GoTool(), "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		fmt.Fprintf(os.Stderr, "ops: finding the module root with go env GOMOD: %v\n", err)
		return 1
	}
	repoRoot = filepath.Dir(strings.TrimSpace(string(out)))
	binDir, err = os.MkdirTemp("", "b2s-ops-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "ops: creating a directory for the binaries: %v\n", err)
		return 1
	}
	defer os.RemoveAll(binDir)
	return m.Run()
}

var caddyBuild struct {
	once sync.Once
	path string
	err  error
}

// caddyBinary builds ./cmd/caddy as `make build` does (testproc.Build,
// which also lets the xcaddy test reuse the compiled packages), once per
// run.
func caddyBinary(t *testing.T) string {
	t.Helper()
	caddyBuild.once.Do(func() {
		p := filepath.Join(binDir, "caddy")
		if caddyBuild.err = testproc.Build(p, testproc.CaddyPackage); caddyBuild.err == nil {
			caddyBuild.path = p
		}
	})
	if caddyBuild.err != nil {
		t.Fatal(caddyBuild.err)
	}
	return caddyBuild.path
}

// repoFile is the path of a file given relative to the repository root.
func repoFile(rel string) string {
	return filepath.Join(repoRoot, filepath.FromSlash(rel))
}

// readRepoFile returns the content of a file of the repository.
func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(repoFile(rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// replaceOnce replaces old by new in s and fails the test unless old occurs
// exactly once, so that a test rewriting a config notices when the file
// changes under it.
func replaceOnce(t *testing.T, s, old, new, file string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("%s: want %q exactly once to rewrite it for the test, found it %d times", file, old, n)
	}
	return strings.Replace(s, old, new, 1)
}
