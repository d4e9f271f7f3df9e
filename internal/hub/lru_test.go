package hub

import (
	"testing"
	"time"
)

// TestLRUDropsTheLeastRecentlyUsedAndTheExpired: a full cache makes room by
// dropping the entry read or written longest ago; an entry past its expiry is not
// found and is dropped; a zero expiry never expires.
func TestLRUDropsTheLeastRecentlyUsedAndTheExpired(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newLRU[string, int](2)
	c.put("a", 1, time.Time{})
	c.put("b", 2, now.Add(time.Minute))
	if v, ok := c.get("a", now); !ok || v != 1 {
		t.Fatalf("get a = %d, %v; want 1, true", v, ok)
	}
	c.put("c", 3, time.Time{}) // b was used longest ago
	if _, ok := c.get("b", now); ok {
		t.Error("b is still there after c took its room")
	}
	if c.len() != 2 {
		t.Errorf("len %d, want 2", c.len())
	}
	c.put("c", 4, now.Add(time.Second))
	if _, ok := c.get("c", now.Add(time.Second)); ok {
		t.Error("c is found at its expiry")
	}
	if c.len() != 1 {
		t.Errorf("len %d after the expired c was read, want 1", c.len())
	}
	if v, ok := c.get("a", now.Add(24*time.Hour)); !ok || v != 1 {
		t.Errorf("get a a day later = %d, %v; want 1, true (no expiry)", v, ok)
	}
}
