package e2e

import (
	"os"
	"testing"

	"github.com/b2scom/b2s-edge/internal/testproc"
)

// bin are the product binary and the test broker, built once for the
// whole package by TestMain.
var bin testproc.Binaries

func TestMain(m *testing.M) {
	os.Exit(testproc.Main(m, "e2e", &bin))
}
