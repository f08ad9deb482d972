package logship

import (
	"flag"
	"os"
	"testing"
)

// TestMain runs up to 8 tests at a time unless -parallel says otherwise.
// Most of this package's tests wait on a broker, a linger or a retry
// rather than compute, so the default of GOMAXPROCS (2 on a small CI
// machine) would leave the package's run time the sum of those waits.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "8")
	}
	os.Exit(m.Run())
}
