//go:build race

package landemo

// raceEnabled: this test binary was built with -race, so the script builds
// peer with -race too, reusing the race-built packages in the build cache.
const raceEnabled = true
