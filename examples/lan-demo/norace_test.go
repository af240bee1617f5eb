//go:build !race

package landemo

const raceEnabled = false
