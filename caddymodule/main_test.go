package caddymodule

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// testDataHome is XDG_DATA_HOME for the whole test binary: the default
// spool directory, b2s/spool under caddy.AppDataDir(), lands in it.
var testDataHome string

// TestMain points Caddy's data and config directories at a temporary
// directory before any test runs, so that no test writes into (or flock()s
// the spool of) a Caddy that runs on this machine, and removes it after.
// caddy.AppDataDir() reads XDG_DATA_HOME at each call, but the autosave
// path and the default storage were computed from the real directories
// when package caddy was initialised: they are set again here.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "b2s-caddymodule-test-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "caddymodule: creating a temporary XDG_DATA_HOME: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	testDataHome = filepath.Join(dir, "data")
	for k, v := range map[string]string{
		"XDG_DATA_HOME": testDataHome,
		// The in-process Caddy that caddytest starts autosaves each
		// config it loads under caddy.AppConfigDir().
		"XDG_CONFIG_HOME": filepath.Join(dir, "config"),
	} {
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintf(os.Stderr, "caddymodule: setting %s: %v\n", k, err)
			return 1
		}
	}
	caddy.ConfigAutosavePath = filepath.Join(caddy.AppConfigDir(), "autosave.json")
	caddy.DefaultStorage.Path = caddy.AppDataDir()
	return m.Run()
}
