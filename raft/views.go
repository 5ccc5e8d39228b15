package raft

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/herald-notify/herald/internal/jsonread"
	"github.com/herald-notify/herald/resource"
)

// NotificationView is a stored notification as the feed reads it: the
// fields its filters compare and its API form, encoded once. Views are
// shared between requests: nobody may change one.
type NotificationView struct {
	ID, ReadState, UserActionState, Status, TargetHostName, GroupName, AppID string
	// Seq is the change the record is at.
	Seq uint64
	// ExpiresMs is the expirationDateTime in Unix milliseconds.
	ExpiresMs int64
	// JSON is the resource.Notification exactly as json.Marshal writes it
	// (HTML characters escaped), ready to be copied into a response.
	JSON []byte
}

// newNotificationView makes the view of a stored record. A feed whose
// notifications no longer fit the view cache makes fifty a page, and
// encoding/json spent 60 % of the node's CPU on them (BENCHMARKS.md, 4
// December 2026): the record is read and the notification written by
// hand (sendcodec.go), exactly as encoding/json would, and whatever the
// hand-written reader does not know goes to encoding/json as before.
func newNotificationView(b []byte) (*NotificationView, error) {
	var n resource.NotificationRecord
	var out []byte
	if d := (jsonReader{jsonread.Reader{B: b}}); d.notification(&n) && d.End() {
		out = appendNotification(make([]byte, 0, len(b)), &n.Notification)
	} else {
		n = resource.NotificationRecord{}
		if err := json.Unmarshal(b, &n); err != nil {
			return nil, err
		}
		var err error
		if out, err = json.Marshal(&n.Notification); err != nil {
			return nil, err
		}
	}
	return &NotificationView{ID: n.ID, ReadState: intern(n.ReadState), UserActionState: intern(n.UserActionState),
		Status: intern(n.Status), TargetHostName: n.TargetHostName, GroupName: n.GroupName, AppID: n.AppID, Seq: n.Seq,
		ExpiresMs: n.ExpirationDateTime.UnixMilli(), JSON: out}, nil
}

// intern shares the few values the state fields take, so that a cached view
// holds one string per field rather than a copy of "unread".
func intern(s string) string {
	switch s {
	case resource.ReadUnread:
		return resource.ReadUnread
	case resource.ReadRead:
		return resource.ReadRead
	case resource.ActionNone:
		return resource.ActionNone
	case resource.StatusActive:
		return resource.StatusActive
	case resource.StatusDeleted:
		return resource.StatusDeleted
	}
	return s
}

// viewCache holds the views of stored notifications under their Badger key
// and the version Badger gave the value. Badger numbers versions from one
// counter that only grows while the process runs (a restored snapshot is
// written at new versions, never at old ones), so a key at a version names
// one value for good: a view is served only for the very version it was
// made from, and no write needs to invalidate anything. An entry of a
// rewritten or deleted notification is merely dead weight until evicted.
//
// It evicts by generations: views go into the newer of two maps, and when
// that holds half the bound, the older map is dropped whole and the newer
// takes its place. Dropping entries one by one, at random, took a tenth of
// the node's CPU once the feeds read outgrew the cache (BENCHMARKS.md, 4
// December 2026); this costs nothing per put, and a view read in either
// generation is served.
type viewCache struct {
	mu       sync.RWMutex
	cur, old map[string]viewEntry
	curBytes int
	oldBytes int
	limit    int
}

type viewEntry struct {
	version uint64
	view    *NotificationView
}

// viewOverhead approximates an entry's memory beyond its JSON: the map
// slot, the key and the view's fields.
const viewOverhead = 160

func newViewCache(limit int) *viewCache {
	return &viewCache{cur: map[string]viewEntry{}, old: map[string]viewEntry{}, limit: limit}
}

func (c *viewCache) get(key []byte, version uint64) *NotificationView {
	c.mu.RLock()
	e, ok := c.cur[string(key)]
	if !ok || e.version != version {
		e, ok = c.old[string(key)]
	}
	c.mu.RUnlock()
	if ok && e.version == version {
		return e.view
	}
	return nil
}

func (c *viewCache) put(key []byte, version uint64, v *NotificationView) {
	size := len(key) + len(v.JSON) + viewOverhead
	if size > c.limit/2 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.old[string(key)]; ok && e.version >= version {
		return // a reader of an older snapshot came late
	}
	if old, ok := c.cur[string(key)]; ok {
		if old.version >= version {
			return
		}
		c.curBytes -= len(key) + len(old.view.JSON) + viewOverhead
	}
	if c.curBytes+size > c.limit/2 {
		c.old, c.oldBytes = c.cur, c.curBytes
		c.cur, c.curBytes = make(map[string]viewEntry, len(c.old)), 0
	}
	c.cur[string(key)] = viewEntry{version: version, view: v}
	c.curBytes += size
}

func (c *viewCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.cur)
	clear(c.old)
	c.curBytes, c.oldBytes = 0, 0
}

// view returns the view of the notification item holds, from the cache
// or decoded and encoded once.
func (s *Store) view(item *badger.Item) (*NotificationView, error) {
	var c *viewCache
	if s.cache != nil {
		c = s.cache.views
	}
	if c != nil {
		if v := c.get(item.Key(), item.Version()); v != nil {
			return v, nil
		}
	}
	var v *NotificationView
	err := item.Value(func(b []byte) error {
		var err error
		v, err = newNotificationView(b)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("decode %q: %w", item.Key(), err)
	}
	if c != nil {
		c.put(item.Key(), item.Version(), v)
	}
	return v, nil
}

// ViewPage is a page of notification views; Next is the id to continue
// after, empty on the last page.
type ViewPage struct {
	Items []*NotificationView
	Next  string
	// Examined is how many notifications this read passed to keep: none
	// when the page came from the page cache.
	Examined int
}

// NotificationViews pages through a user's notifications newest first, as
// ListNotifications does, keeping those keep accepts; it reads only the
// keys of notifications whose view is cached. filter names keep for the
// page cache (pagecache.go): equal names for equal filters; a page of an
// empty name is neither served from it nor kept.
//
// examine, when above zero, bounds the notifications the read passes to
// keep. A filter that matches few of a large feed otherwise walks all of
// it for every page (20-100 ms over 10,000 notifications whose views are
// cached, more when they are not: memory.go), and the page cache holds
// such a page only until the user's next write. Reaching the bound ends
// the page short, even empty, with Next the last notification examined
// rather than the last kept, so that the next page goes on from there:
// paging to the end still returns every match once, newest first.
func (s *Store) NotificationViews(uid, after string, limit, examine int, filter string, keep func(*NotificationView) bool) (ViewPage, error) {
	s.seePublished()
	c := s.cache
	if filter == "" || c == nil {
		p, _, err := s.readViews(uid, after, limit, examine, keep, false)
		return p, err
	}
	key := pageKey(filter, after, limit, examine)
	cp, gen := c.page(uid, key)
	if cp != nil {
		if p, ok := c.viewsOf(uid, cp); ok {
			return p, nil
		}
	}
	p, cp, err := s.readViews(uid, after, limit, examine, keep, true)
	if err != nil {
		return p, err
	}
	c.putPage(uid, key, gen, cp)
	return p, nil
}

// viewsOf returns the views of a cached page's items, if viewCache still
// holds every one at its version.
func (c *recordCache) viewsOf(uid string, cp *cachedPage) (ViewPage, bool) {
	p := ViewPage{Next: cp.next}
	if len(cp.ids) == 0 {
		return p, true
	}
	p.Items = make([]*NotificationView, len(cp.ids))
	key := notifPrefix(uid)
	n := len(key)
	for i, id := range cp.ids {
		key = append(key[:n], id...)
		v := c.views.get(key, cp.versions[i])
		if v == nil {
			return ViewPage{}, false
		}
		p.Items[i] = v
	}
	return p, true
}

// readViews is NotificationViews from Badger; with record, it also
// returns the page as pageCache keeps it.
func (s *Store) readViews(uid, after string, limit, examine int, keep func(*NotificationView) bool, record bool) (ViewPage, *cachedPage, error) {
	var p ViewPage
	var cp *cachedPage
	if record {
		cp = &cachedPage{}
	}
	prefix := notifPrefix(uid)
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.Reverse = true
		// Values are read one by one, and only on a cache miss.
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		start := make([]byte, 0, len(prefix)+max(len(after), 1))
		start = append(start, prefix...)
		if after != "" {
			start = append(start, after...)
		} else {
			start = append(start, 0xff)
		}
		// last is the last notification returned, seen the last examined.
		var last, seen []byte
		for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			id := item.Key()[len(prefix):]
			if after != "" && string(id) == after {
				continue
			}
			if p.Examined == examine && examine > 0 {
				// One more exists, unexamined: the page ends here, and
				// what seen passed over matched nothing or is on it.
				p.Next = string(seen)
				return nil
			}
			v, err := s.view(item)
			if err != nil {
				return err
			}
			p.Examined++
			seen = append(seen[:0], id...)
			if keep != nil && !keep(v) {
				continue
			}
			if len(p.Items) == limit {
				p.Next = string(last) // one more exists: continue after the last returned
				return nil
			}
			if p.Items == nil {
				p.Items = make([]*NotificationView, 0, min(limit, 128))
			}
			p.Items = append(p.Items, v)
			last = append(last[:0], id...)
			if cp != nil {
				cp.ids = append(cp.ids, string(id))
				cp.versions = append(cp.versions, item.Version())
			}
		}
		return nil
	})
	if cp != nil {
		cp.next = p.Next
	}
	return p, cp, err
}

// NotificationView returns the view of one of a user's notifications.
func (s *Store) NotificationView(uid, nid string) (*NotificationView, bool, error) {
	s.seePublished()
	var v *NotificationView
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(notifKey(uid, nid))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err = s.view(item)
		return err
	})
	return v, v != nil, err
}
