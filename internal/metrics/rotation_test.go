package metrics

import "testing"

func TestWatchRotations(t *testing.T) {
	m := New(testReasons)
	n := map[string]int{"pending-publication": 2}
	m.WatchRotations(func() map[string]int { return n })
	body, _ := scrape(t, m.Handler(), "/metrics")
	wantLine(t, body, `sealgate_dkim_rotations{state="pending-publication"} 2`)
	wantLine(t, body, `sealgate_dkim_rotations{state="remove-record"} 0`)
	n = map[string]int{"retiring": 1}
	body, _ = scrape(t, m.Handler(), "/metrics")
	wantLine(t, body, `sealgate_dkim_rotations{state="pending-publication"} 0`)
	wantLine(t, body, `sealgate_dkim_rotations{state="retiring"} 1`)
}
