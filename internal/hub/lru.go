package hub

import (
	"container/list"
	"time"
)

// lru is a bounded map that drops its least recently used entry to make room, and
// an entry past its expiry when it is read. Its owner holds the lock.
type lru[K comparable, V any] struct {
	max     int
	entries map[K]*list.Element
	order   *list.List // front = most recently used
}

type lruEntry[K comparable, V any] struct {
	key     K
	value   V
	expires time.Time // zero: until evicted
}

func newLRU[K comparable, V any](maxEntries int) *lru[K, V] {
	return &lru[K, V]{max: maxEntries, entries: map[K]*list.Element{}, order: list.New()}
}

// get returns key's value and marks it used; an absent key, or one expired at
// now (which it drops), is not found.
func (c *lru[K, V]) get(key K, now time.Time) (V, bool) {
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*lruEntry[K, V])
		if e.expires.IsZero() || now.Before(e.expires) {
			c.order.MoveToFront(el)
			return e.value, true
		}
		c.order.Remove(el)
		delete(c.entries, key)
	}
	var zero V
	return zero, false
}

// put stores value under key until expires (zero: until evicted).
func (c *lru[K, V]) put(key K, value V, expires time.Time) {
	e := &lruEntry[K, V]{key: key, value: value, expires: expires}
	if el, ok := c.entries[key]; ok {
		el.Value = e
		c.order.MoveToFront(el)
		return
	}
	for c.order.Len() >= c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.entries, last.Value.(*lruEntry[K, V]).key)
	}
	c.entries[key] = c.order.PushFront(e)
}

func (c *lru[K, V]) len() int { return c.order.Len() }
