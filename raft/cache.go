package raft

import (
	"sync"

	"github.com/herald-notify/herald/resource"
)

// recordCache holds decoded tokens, applications and subscriptions: every
// authenticated send reads a token, an application and a subscription, and
// each read from Badger takes its oracle lock (contended by the FSM's
// commits) and decodes JSON. The FSM drops an entry after the Badger commit
// that changed it and before the write is acknowledged, so a cached record
// is never older than what a read from Badger at the same moment could see.
//
// A reader that loaded a record from Badger stores it only if no
// invalidation happened since it began (gen), so a value read before a
// commit cannot be stored after the commit's invalidation and outlive it.
type recordCache struct {
	mu     sync.Mutex
	gen    uint64
	tokens map[string]*resource.TokenRecord
	apps   map[string]*resource.ApplicationRecord
	subs   map[string]*resource.SubscriptionRecord
}

// cacheLimit bounds each map; a full map is emptied (misses only cost a
// Badger read), which keeps memory bounded without an LRU's bookkeeping.
const cacheLimit = 8192

func newRecordCache() *recordCache {
	return &recordCache{tokens: map[string]*resource.TokenRecord{},
		apps: map[string]*resource.ApplicationRecord{}, subs: map[string]*resource.SubscriptionRecord{}}
}

// cached returns m[key] or loads it; clone gives the caller a copy it may
// change without touching the cached record.
func cached[T any](c *recordCache, m map[string]*T, key string, load func() (*T, bool, error), clone func(*T) *T) (*T, bool, error) {
	c.mu.Lock()
	v, ok := m[key]
	gen := c.gen
	c.mu.Unlock()
	if ok {
		return clone(v), true, nil
	}
	v, ok, err := load()
	if err != nil || !ok {
		return v, ok, err
	}
	c.mu.Lock()
	if c.gen == gen {
		if len(m) >= cacheLimit {
			clear(m)
		}
		m[key] = clone(v)
	}
	c.mu.Unlock()
	return v, true, nil
}

// invalidate drops the records stored under keys (Badger keys, as the FSM
// wrote them); all drops everything (a snapshot was restored).
func (c *recordCache) invalidate(keys []string, all bool) {
	if c == nil || (len(keys) == 0 && !all) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if all {
		clear(c.tokens)
		clear(c.apps)
		clear(c.subs)
		return
	}
	for _, k := range keys {
		switch k[0] {
		case 't':
			delete(c.tokens, k[2:])
		case 'a':
			delete(c.apps, k[2:])
		case 's':
			delete(c.subs, k[2:])
		}
	}
}

// cachedKey reports whether a Badger key holds a record the cache keeps:
// "t/", "a/" or "s/" (see keys.go).
func cachedKey(key []byte) bool {
	return len(key) > 2 && key[1] == '/' && (key[0] == 't' || key[0] == 'a' || key[0] == 's')
}

func cloneToken(t *resource.TokenRecord) *resource.TokenRecord { c := *t; return &c }

func cloneApp(a *resource.ApplicationRecord) *resource.ApplicationRecord {
	c := *a
	c.Credentials = append([]resource.CredentialRecord(nil), a.Credentials...)
	return &c
}

func cloneSub(s *resource.SubscriptionRecord) *resource.SubscriptionRecord {
	c := *s
	if s.StatusReason != nil {
		r := *s.StatusReason
		c.StatusReason = &r
	}
	if s.Channel.Keys != nil {
		k := *s.Channel.Keys
		c.Channel.Keys = &k
	}
	return &c
}
