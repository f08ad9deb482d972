//go:build race

package beacon

// raceEnabled is whether the tests run under the race detector, which
// makes each regular expression run some sixty times slower.
const raceEnabled = true
