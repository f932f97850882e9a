package resolver

import "time"

// SetCacheClock replaces a Cache's clock in tests.
func SetCacheClock(c *Cache, now func() time.Time) { c.now = now }
