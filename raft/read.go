package raft

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/herald-notify/herald/resource"
)

// Reads come from this node's applied state. On the leader that includes
// every acknowledged write; a follower may lag by the entries in flight.

// seePublished returns once Badger holds every change this node's live
// streams were given: the FSM hands a batch's changes to them before its
// Badger commit (FSM.ApplyBatch), and a client that saw an event must
// find it in the feed, the delta or its cursor's replay. Reads of
// notifications and of the change log call it first; the wait, when there
// is one, is the rest of one Badger commit.
func (s *Store) seePublished() {
	if s.fsm == nil {
		return // a Store made around a bare Badger, in tests
	}
	if p := s.fsm.published.Load(); s.fsm.applied.Load() < p {
		s.fsm.applied.wait(p, nil, s.closing)
	}
}

func (s *Store) getJSON(key []byte, v any) (bool, error) {
	var found bool
	err := s.db.View(func(txn *badger.Txn) error {
		b, ok, err := getValue(txn, key)
		if err != nil || !ok {
			return err
		}
		found = true
		return json.Unmarshal(b, v)
	})
	return found, err
}

func (s *Store) getString(key []byte) (string, bool, error) {
	var out string
	var found bool
	err := s.db.View(func(txn *badger.Txn) error {
		b, ok, err := getValue(txn, key)
		out, found = string(b), ok
		return err
	})
	return out, found, err
}

// Token returns the record stored under a token hash.
func (s *Store) Token(hash string) (*resource.TokenRecord, bool, error) {
	return cached(s.cache, tokens, hash, func() (*resource.TokenRecord, bool, error) {
		var t resource.TokenRecord
		ok, err := s.getJSON(tokenKey(hash), &t)
		return &t, ok, err
	}, cloneToken)
}

// User returns a user by id.
func (s *Store) User(id string) (*resource.UserRecord, bool, error) {
	return cached(s.cache, users, id, s.loadUser(id), cloneUser)
}

// loadUser reads a user's record from Badger, for the cache to keep.
func (s *Store) loadUser(id string) func() (*resource.UserRecord, bool, error) {
	return func() (*resource.UserRecord, bool, error) {
		var u resource.UserRecord
		ok, err := s.getJSON(userKey(id), &u)
		return &u, ok, err
	}
}

// UserEnabled reports whether a user exists and whether its account is
// enabled: what a send reads of its user, without the copy User makes of
// the cached record (cached records are never changed in place, only
// replaced).
func (s *Store) UserEnabled(id string) (enabled, found bool, err error) {
	u, ok, err := cached(s.cache, users, id, s.loadUser(id), func(u *resource.UserRecord) *resource.UserRecord { return u })
	if err != nil || !ok {
		return false, false, err
	}
	return u.AccountEnabled, true, nil
}

// UserByName returns a user by id or userPrincipalName.
func (s *Store) UserByName(idOrUPN string) (*resource.UserRecord, bool, error) {
	if u, ok, err := s.User(idOrUPN); ok || err != nil {
		return u, ok, err
	}
	id, ok, err := s.getString(upnKey(idOrUPN))
	if !ok || err != nil {
		return nil, false, err
	}
	return s.User(id)
}

// App returns an application by object id.
func (s *Store) App(id string) (*resource.ApplicationRecord, bool, error) {
	return cached(s.cache, apps, id, func() (*resource.ApplicationRecord, bool, error) {
		var a resource.ApplicationRecord
		ok, err := s.getJSON(appKey(id), &a)
		return &a, ok, err
	}, cloneApp)
}

// AppBy returns an application by object id, appId or targetHostName.
func (s *Store) AppBy(ref string) (*resource.ApplicationRecord, bool, error) {
	if a, ok, err := s.App(ref); ok || err != nil {
		return a, ok, err
	}
	for _, key := range [][]byte{appIDKey(ref), hostKey(ref)} {
		id, ok, err := s.getString(key)
		if err != nil {
			return nil, false, err
		}
		if ok {
			return s.App(id)
		}
	}
	return nil, false, nil
}

// Subscription returns a subscription by its UNSID.
func (s *Store) Subscription(id string) (*resource.SubscriptionRecord, bool, error) {
	return cached(s.cache, subscriptions, id, func() (*resource.SubscriptionRecord, bool, error) {
		var r resource.SubscriptionRecord
		ok, err := s.getJSON(subKey(id), &r)
		return &r, ok, err
	}, cloneSub)
}

// Notification returns one of a user's notifications.
func (s *Store) Notification(uid, nid string) (*resource.NotificationRecord, bool, error) {
	s.seePublished()
	var n *resource.NotificationRecord
	var ok bool
	err := s.db.View(func(txn *badger.Txn) (err error) {
		n, ok, err = notificationIn(txn, uid, nid)
		return err
	})
	if n == nil {
		n = &resource.NotificationRecord{}
	}
	return n, ok, err
}

// VAPID returns the stored VAPID key pair, if made.
func (s *Store) VAPID() ([]byte, bool, error) {
	v, ok, err := s.getString([]byte(keyVAPID))
	return []byte(v), ok, err
}

// Scan calls fn with each value under prefix in key order (reverse when
// asked), starting after the key prefix+after when after is set, until fn
// returns false.
func (s *Store) scan(prefix []byte, after string, reverse bool, fn func(key, val []byte) (bool, error)) error {
	return s.db.View(func(txn *badger.Txn) error { return scanTxn(txn, prefix, after, reverse, fn) })
}

// scanTxn is scan within txn, for a caller that reads more in the same
// transaction.
func scanTxn(txn *badger.Txn, prefix []byte, after string, reverse bool, fn func(key, val []byte) (bool, error)) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.Reverse = reverse
	opts.PrefetchSize = 16
	it := txn.NewIterator(opts)
	defer it.Close()
	start := append([]byte{}, prefix...)
	switch {
	case after != "":
		start = append(start, after...)
	case reverse:
		start = append(start, 0xff)
	}
	for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
		k := it.Item().Key()
		if after != "" && string(k[len(prefix):]) == after {
			continue
		}
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			return err
		}
		more, err := fn(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// Page is one page of a listing; Next is the key to continue after, empty on
// the last page.
type Page[T any] struct {
	Items []T
	Next  string
}

func list[T any](s *Store, prefix []byte, after string, reverse bool, limit int, keep func(*T) bool) (Page[T], error) {
	var p Page[T]
	var last string
	err := s.scan(prefix, after, reverse, func(k, v []byte) (bool, error) {
		var item T
		if err := json.Unmarshal(v, &item); err != nil {
			return false, fmt.Errorf("decode %q: %w", k, err)
		}
		if keep != nil && !keep(&item) {
			return true, nil
		}
		if len(p.Items) == limit {
			p.Next = last // one more exists: continue after the last returned
			return false, nil
		}
		p.Items = append(p.Items, item)
		last = string(k[len(prefix):])
		return true, nil
	})
	return p, err
}

// ListUsers pages through users in id order.
func (s *Store) ListUsers(after string, limit int) (Page[resource.UserRecord], error) {
	return list[resource.UserRecord](s, []byte("u/"), after, false, limit, nil)
}

// ListApps pages through applications in id order.
func (s *Store) ListApps(after string, limit int) (Page[resource.ApplicationRecord], error) {
	return list[resource.ApplicationRecord](s, []byte("a/"), after, false, limit, nil)
}

// ListSubscriptions returns all of a user's subscriptions (a quota bounds
// how many there are).
func (s *Store) ListSubscriptions(uid string) ([]resource.SubscriptionRecord, error) {
	var out []resource.SubscriptionRecord
	prefix := []byte("us/" + uid + "/")
	err := s.db.View(func(txn *badger.Txn) error {
		for _, k := range scanKeys(txn, prefix, 0) {
			b, ok, err := getValue(txn, subKey(string(k[len(prefix):])))
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			var r resource.SubscriptionRecord
			if err := json.Unmarshal(b, &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// ListNotifications pages through a user's notifications newest first,
// keeping those keep accepts. after is the last id of the previous page.
func (s *Store) ListNotifications(uid, after string, limit int, keep func(*resource.NotificationRecord) bool) (Page[resource.NotificationRecord], error) {
	s.seePublished()
	return list(s, notifPrefix(uid), after, true, limit, keep)
}

// LastSeq is the newest change-log sequence number of the whole state.
func (s *Store) LastSeq() (uint64, error) {
	s.seePublished()
	v, _, err := s.getString([]byte(keySeq))
	return getUint64([]byte(v)), err
}

// ChangeFloor is the highest sequence number trimmed from a user's change
// log: a cursor below it has lost changes.
func (s *Store) ChangeFloor(uid string) (uint64, error) {
	s.seePublished()
	v, _, err := s.getString(changeTrimKey(uid))
	return getUint64([]byte(v)), err
}

// Changes returns up to limit of a user's changes after seq, oldest first,
// each with the notification as it was at that change.
//
// The log stores a created or updated change without its seq and user,
// which its key holds, and without the notification while the
// notification's record holds it (record, in apply.go): Changes reads it
// there, through the view cache. Before the record changes the FSM writes
// the notification into the change (keepChangeData).
func (s *Store) Changes(uid string, after uint64, limit int) ([]resource.Change, error) {
	return s.changes(uid, after, limit, true)
}

// ChangeHeads is Changes without the notifications, for a delta, which
// answers with each notification as it is now: the data of a created or
// updated change may be empty.
func (s *Store) ChangeHeads(uid string, after uint64, limit int) ([]resource.Change, error) {
	return s.changes(uid, after, limit, false)
}

func (s *Store) changes(uid string, after uint64, limit int, withData bool) ([]resource.Change, error) {
	s.seePublished()
	var out []resource.Change
	prefix := changePrefix(uid)
	err := s.db.View(func(txn *badger.Txn) error {
		return scanTxn(txn, prefix, fmt.Sprintf("%016x", after), false, func(k, v []byte) (bool, error) {
			var c resource.Change
			if err := json.Unmarshal(v, &c); err != nil {
				return false, err
			}
			if c.Seq == 0 {
				seq, err := strconv.ParseUint(string(k[len(prefix):]), 16, 64)
				if err != nil {
					return false, fmt.Errorf("change key %q: %w", k, err)
				}
				c.Seq, c.UserID = seq, uid
			}
			if withData && c.Data == nil && (c.Type == resource.ChangeCreated || c.Type == resource.ChangeUpdated) {
				item, err := txn.Get(notifKey(uid, c.NotificationID))
				if err != nil {
					return false, fmt.Errorf("change %d of %s without its notification: %w", c.Seq, uid, err)
				}
				v, err := s.view(item)
				if err != nil {
					return false, err
				}
				if v.Seq != c.Seq {
					return false, fmt.Errorf("change %d of %s without its notification, whose record is at change %d", c.Seq, uid, v.Seq)
				}
				c.Data = v.JSON
			}
			out = append(out, c)
			return len(out) < limit, nil
		})
	})
	return out, err
}

// Deliveries returns the delivery records of one notification in
// subscription id order, with those of its pending live deliveries that
// the notification holds (fanout).
func (s *Store) Deliveries(uid, nid string) ([]resource.DeliveryRecord, error) {
	s.seePublished()
	var out []resource.DeliveryRecord
	err := s.db.View(func(txn *badger.Txn) error {
		err := scanTxn(txn, deliveryPrefix(uid, nid), "", false, func(k, v []byte) (bool, error) {
			var d resource.DeliveryRecord
			if err := json.Unmarshal(v, &d); err != nil {
				return false, fmt.Errorf("decode %q: %w", k, err)
			}
			out = append(out, d)
			return true, nil
		})
		if err != nil {
			return err
		}
		n, found, err := notificationIn(txn, uid, nid)
		if err != nil || !found || len(n.LiveTargets) == 0 {
			return err
		}
		recorded := len(out)
		for _, lt := range n.LiveTargets {
			if !slices.ContainsFunc(out[:recorded], func(d resource.DeliveryRecord) bool { return d.SubscriptionID == lt.SubscriptionID }) {
				out = append(out, liveRecord(n, lt))
			}
		}
		slices.SortFunc(out, func(a, b resource.DeliveryRecord) int { return strings.Compare(a.SubscriptionID, b.SubscriptionID) })
		return nil
	})
	return out, err
}

// Delivery returns one delivery record, or that of a pending live delivery
// its notification holds.
func (s *Store) Delivery(uid, nid, sid string) (*resource.DeliveryRecord, bool, error) {
	s.seePublished()
	var d resource.DeliveryRecord
	var found bool
	err := s.db.View(func(txn *badger.Txn) error {
		b, ok, err := getValue(txn, deliveryKey(uid, nid, sid))
		if err != nil {
			return err
		}
		if ok {
			found = true
			return json.Unmarshal(b, &d)
		}
		n, ok, err := notificationIn(txn, uid, nid)
		if err != nil || !ok {
			return err
		}
		d, found = liveDelivery(n, sid)
		return nil
	})
	return &d, found, err
}

// notificationIn reads a stored notification within txn.
func notificationIn(txn *badger.Txn, uid, nid string) (*resource.NotificationRecord, bool, error) {
	b, ok, err := getValue(txn, notifKey(uid, nid))
	if err != nil || !ok {
		return nil, false, err
	}
	var n resource.NotificationRecord
	if err := json.Unmarshal(b, &n); err != nil {
		return nil, false, fmt.Errorf("decode %q: %w", notifKey(uid, nid), err)
	}
	return &n, true, nil
}

// PendingDeliveries calls fn with every delivery that has a message still
// to send, until fn returns false. The engine resumes from it at start.
func (s *Store) PendingDeliveries(fn func(*resource.DeliveryRecord) bool) error {
	return s.db.View(func(txn *badger.Txn) error {
		for _, k := range scanKeys(txn, []byte("dp/"), 0) {
			parts := strings.SplitN(string(k), "/", 4)
			if len(parts) != 4 {
				continue
			}
			b, ok, err := getValue(txn, deliveryKey(parts[1], parts[2], parts[3]))
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			var d resource.DeliveryRecord
			if err := json.Unmarshal(b, &d); err != nil {
				return err
			}
			if !fn(&d) {
				return nil
			}
		}
		return nil
	})
}

// Node returns one member's recorded addresses: a point read, for the
// forwarding of every batch of a follower's writes, where reading every
// member's record was 40–60 % of what forwarding cost a follower.
func (s *Store) Node(id string) (NodeRecord, bool, error) {
	var n NodeRecord
	ok, err := s.getJSON(nodeKey(id), &n)
	return n, ok, err
}

// Nodes returns the cluster members' recorded addresses, by id.
func (s *Store) Nodes() (map[string]NodeRecord, error) {
	out := map[string]NodeRecord{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("cn/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var n NodeRecord
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &n) }); err != nil {
				return err
			}
			out[n.ID] = n
		}
		return nil
	})
	return out, err
}
