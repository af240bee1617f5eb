package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Nothing a test runs may use the real user config directory (key
	// files, the default document store): a private one for this binary.
	cfg, err := os.MkdirTemp("", "peer-test-config-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CONFIG_HOME", cfg)
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(cfg)
		if binDir != "" {
			os.RemoveAll(binDir) // the peer binary built by process tests
		}
		os.Exit(code)
	}))
}
