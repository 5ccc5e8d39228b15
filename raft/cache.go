package raft

import (
	"slices"
	"sync"

	"github.com/herald-notify/herald/resource"
)

// recordCache holds decoded tokens, users, applications and subscriptions:
// every authenticated send reads a token, an application and a
// subscription, every user's request its token and user, and
// each read from Badger takes its oracle lock (contended by the FSM's
// commits) and decodes JSON.
//
// The FSM brackets each Badger commit that writes such a record with
// begin and end. From begin to end the record's key is pending: it is not
// served from the cache and no load stores it, so nobody sees the old
// record once the commit is visible. A load stores its result only if no
// commit ended since it began (gen), so a value read before a commit
// cannot be stored after it and outlive it.
type recordCache struct {
	mu      sync.Mutex
	gen     uint64
	pending map[string]int // key (as in keys.go) → commits in progress
	tokens  map[string]*resource.TokenRecord
	users   map[string]*resource.UserRecord
	apps    map[string]*resource.ApplicationRecord
	subs    map[string]*resource.SubscriptionRecord
	// slots holds the decoded slot table under "": asked for every
	// delivery, on the FSM's goroutine among others.
	slots map[string]*[]string
	// views holds encoded notifications for the feed (views.go); it is
	// keyed by version and needs no invalidation, only a reset.
	views *viewCache
	// pages holds the feed's pages (pagecache.go); a write of one of a
	// user's notifications ("n/") drops the user's pages.
	pages *pageCache
}

// cacheLimit bounds each map; a full map is emptied (bounded).
const cacheLimit = 8192

func newRecordCache(viewBytes int) *recordCache {
	return &recordCache{pending: map[string]int{}, tokens: map[string]*resource.TokenRecord{},
		users: map[string]*resource.UserRecord{},
		apps:  map[string]*resource.ApplicationRecord{}, subs: map[string]*resource.SubscriptionRecord{},
		slots: map[string]*[]string{}, views: newViewCache(viewBytes), pages: newPageCache(pageCacheBytes)}
}

// cached returns the record under key in the map pick chooses, or loads
// it; clone gives the caller a copy it may change without touching the
// cached record.
func cached[T any](c *recordCache, pick func(*recordCache) map[string]*T, key string, load func() (*T, bool, error), clone func(*T) *T) (*T, bool, error) {
	if c == nil {
		return load() // a Store made around a bare FSM, in tests
	}
	m := pick(c)
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
	if c.gen == gen && len(c.pending) == 0 {
		bounded(m)[key] = clone(v)
	}
	c.mu.Unlock()
	return v, true, nil
}

// begin is called before a Badger commit that writes keys: they are
// dropped and not cached again until end.
func (c *recordCache) begin(keys []string) {
	if c == nil || len(keys) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		c.pending[k]++
		c.drop(k)
	}
}

// end is called once the commit is visible (or failed).
func (c *recordCache) end(keys []string) {
	if c == nil || len(keys) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, k := range keys {
		if c.pending[k]--; c.pending[k] <= 0 {
			delete(c.pending, k)
		}
	}
}

// reset drops everything (a snapshot was restored).
func (c *recordCache) reset() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.tokens)
	clear(c.users)
	clear(c.apps)
	clear(c.subs)
	clear(c.slots)
	c.views.reset()
	c.pages.reset()
}

func (c *recordCache) drop(k string) {
	switch k[0] {
	case 't':
		delete(c.tokens, k[2:])
	case 'u':
		delete(c.users, k[2:])
	case 'a':
		delete(c.apps, k[2:])
	case 's':
		delete(c.subs, k[2:])
	case 'm':
		clear(c.slots)
	case 'n':
		c.pages.drop(notifKeyUser(k))
	}
}

// cachedKey reports whether a Badger key holds a record the cache keeps:
// "t/", "u/", "a/", "s/", the slot table, or a notification ("n/"), whose
// user's feed pages the cache keeps (see keys.go).
func cachedKey(key []byte) bool {
	return len(key) > 2 && key[1] == '/' && (key[0] == 't' || key[0] == 'u' || key[0] == 'a' || key[0] == 's' || key[0] == 'n' || string(key) == keySlots)
}

func tokens(c *recordCache) map[string]*resource.TokenRecord               { return c.tokens }
func users(c *recordCache) map[string]*resource.UserRecord                 { return c.users }
func apps(c *recordCache) map[string]*resource.ApplicationRecord           { return c.apps }
func subscriptions(c *recordCache) map[string]*resource.SubscriptionRecord { return c.subs }

func slotTables(c *recordCache) map[string]*[]string { return c.slots }

func cloneToken(t *resource.TokenRecord) *resource.TokenRecord { c := *t; return &c }

func cloneUser(u *resource.UserRecord) *resource.UserRecord {
	c := *u
	c.Roles = slices.Clone(u.Roles) // nil stays nil: roles encode as null or []
	return &c
}

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
