package browser

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/b2scom/b2s-edge/internal/testproc"
)

// The product binary and the test broker, built once for the whole
// package by TestMain, and the browser.
var (
	bin         testproc.Binaries
	chromiumBin string
)

func TestMain(m *testing.M) {
	var err error
	if chromiumBin, err = exec.LookPath("chromium"); err != nil {
		fmt.Fprintf(os.Stderr, "browser: Chromium is needed and was not found (%v): apt-get install chromium (or make deps)\n", err)
		os.Exit(1)
	}
	os.Exit(testproc.Main(m, "browser", &bin))
}
