package raft

import (
	"strconv"
	"strings"
)

// pageCache holds the feed pages NotificationViews answered, per user:
// which notifications each page held (their ids and the versions of their
// views, which viewCache keeps) and where the next page starts. A page
// served from it skips Badger's newest-first walk of the user's keys,
// which is most of a page's cost when the keys sit in a memtable: its
// skip list has no links backwards, so every step back is a search from
// the top (BENCHMARKS.md, 4 December 2026).
//
// It follows the record cache's rule (recordCache): every commit that
// writes one of a user's notifications drops the user's pages when it
// begins, and a page read from Badger is stored only if no commit ended
// or was under way since the read began. A user who is sent notifications
// while reading gains little; one reading a feed that holds still (many
// devices, or pages after the first) reads from memory.
type pageCache struct {
	users map[string]map[string]*cachedPage // uid → pageKey → page
	bytes int
	limit int
}

type cachedPage struct {
	ids      []string
	versions []uint64
	next     string
	size     int
}

// pageCacheBytes bounds the cache: about 800 pages of 50.
const pageCacheBytes = 2 << 20

// pageOverhead approximates a page's memory beyond its ids and versions.
const pageOverhead = 128

func newPageCache(limit int) *pageCache {
	return &pageCache{users: map[string]map[string]*cachedPage{}, limit: limit}
}

// pageKey names a page: the filter that picked its items, where it
// starts, how many it holds at most and how many notifications its read
// could examine (NotificationViews).
func pageKey(filter, after string, limit, examine int) string {
	// Built in place: strconv.Itoa allocates for numbers from 100 up, and
	// a page from the cache makes a handful of allocations in all.
	var buf [128]byte
	b := append(append(buf[:0], filter...), 0)
	b = append(append(b, after...), 0)
	b = append(strconv.AppendInt(b, int64(limit), 10), 0)
	return string(strconv.AppendInt(b, int64(examine), 10))
}

// page returns the cached page, or nil and the generation a reader must
// pass to putPage once it has read the page from Badger.
func (c *recordCache) page(uid, key string) (*cachedPage, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pages.users[uid][key], c.gen
}

func (c *recordCache) putPage(uid, key string, gen uint64, p *cachedPage) {
	p.size = pageOverhead + len(key) + len(p.next) + 8*len(p.versions)
	for _, id := range p.ids {
		p.size += 16 + len(id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || len(c.pending) != 0 {
		return // a commit may have changed what the reader saw
	}
	pc := c.pages
	if p.size > pc.limit/4 {
		return
	}
	// Over the bound, drop users' pages at random (map order): no
	// recency bookkeeping on the read path.
	for uid := range pc.users {
		if pc.bytes+p.size <= pc.limit {
			break
		}
		pc.drop(uid)
	}
	m := pc.users[uid]
	if m == nil {
		m = map[string]*cachedPage{}
		pc.users[uid] = m
	}
	if old := m[key]; old != nil {
		pc.bytes -= old.size
	}
	m[key] = p
	pc.bytes += p.size
}

func (pc *pageCache) drop(uid string) {
	for _, p := range pc.users[uid] {
		pc.bytes -= p.size
	}
	delete(pc.users, uid)
}

func (pc *pageCache) reset() {
	clear(pc.users)
	pc.bytes = 0
}

// notifKeyUser is the user of a notification's key ("n/<uid>/<nid>").
func notifKeyUser(k string) string {
	uid, _, _ := strings.Cut(k[len("n/"):], "/")
	return uid
}
