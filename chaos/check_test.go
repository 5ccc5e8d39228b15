//go:build linux

package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Reading each node's own state after the run. Reads without
// ConsistencyLevel are served from the node's own replica (API-NOTES,
// "Consistency across nodes"), and so are replays of the live stream:
// this is how the checks see every node's store rather than the leader's.

// localFeed is a user's whole feed, deleted notifications included, as one
// node holds it.
func localFeed(p *proc, u *user) ([]notif, error) {
	var all []notif
	next := p.url + "/v1.0/me/notifications?status=any&$top=1000"
	for next != "" {
		var page struct {
			Value []notif `json:"value"`
			Next  string  `json:"@odata.nextLink"`
		}
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		err := getJSON(ctx, next, u.token, nil, &page)
		cancel()
		if err != nil {
			return nil, err
		}
		all = append(all, page.Value...)
		next = page.Next
	}
	return all, nil
}

// changeLog is a user's change log as node p holds it: the live stream
// replayed from its very beginning, read up to the change of notification
// last (the user's marker, the newest change).
func changeLog(p *proc, u *user, last string) ([]event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", p.url+"/v1.0/me/notifications/stream", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	req.Header.Set("Last-Event-ID", "c0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: stream from c0: %s", p.id, resp.Status)
	}
	var out []event
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var typ, id, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if typ == "created" || typ == "updated" || typ == "deleted" {
				e, err := newEvent(id, typ, json.RawMessage(data), p.idx)
				if err != nil {
					return nil, err
				}
				out = append(out, e)
				if e.NID == last {
					return out, nil
				}
			}
			typ, id, data = "", "", ""
		case strings.HasPrefix(line, "event:"):
			typ = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "id:"):
			id = strings.TrimSpace(line[3:])
		case strings.HasPrefix(line, "data:"):
			data += strings.TrimPrefix(line[5:], " ")
		}
	}
	return nil, fmt.Errorf("%s: stream of %s ended before the marker (%d events): %v", p.id, u.upn, len(out), sc.Err())
}

// verdict collects what the checks found.
type verdict struct {
	failures   []string
	lost, dups int
	notes      []string // worth reading, not failures
}

func (v *verdict) failf(format string, args ...any) {
	v.failures = append(v.failures, fmt.Sprintf(format, args...))
}

// keyFacts is what the history says about one appNotificationId.
type keyFacts struct {
	user, key        string
	primary          string // the id its first acknowledged put answered
	lastAckedContent string
	contents         []string // of unanswered puts: any may have landed
	unansweredPuts   int
	deleteSent       bool
	deleteAcked      bool
	patches          []*op // acknowledged
	acked            bool  // some put was acknowledged
}

func keyID(userIdx int, k string) string { return fmt.Sprintf("%d/%s", userIdx, k) }

// facts sums up the history per key, in the order the ops started.
func facts(ops []*op) map[string]*keyFacts {
	out := map[string]*keyFacts{}
	get := func(o *op) *keyFacts {
		id := keyID(o.User, o.Key)
		if out[id] == nil {
			out[id] = &keyFacts{user: fmt.Sprint(o.User), key: o.Key}
		}
		return out[id]
	}
	for _, o := range ops {
		switch o.Kind {
		case opPut:
			f := get(o)
			if o.acked() && o.Result != nil {
				if f.primary == "" {
					f.primary = o.Result.ID
				}
				f.acked = true
				f.lastAckedContent = o.Content
			} else if !o.definite() {
				f.unansweredPuts++
				f.contents = append(f.contents, o.Content)
			}
		case opPatch:
			if o.acked() {
				get(o).patches = append(get(o).patches, o)
			}
		case opDelete:
			f := get(o)
			f.deleteSent = true
			f.deleteAcked = f.deleteAcked || o.acked()
		}
	}
	return out
}

func primaries(fs map[string]*keyFacts) map[string]string {
	out := map[string]string{}
	for k, f := range fs {
		if f.primary != "" {
			out[k] = f.primary
		}
	}
	return out
}

// checkStores is checks 1 and 3 on every node's own store: every
// acknowledged create there exactly once with its content, every
// acknowledged delete reflected, nothing the harness did not send, and
// every node holding the same feed.
func checkStores(v *verdict, users []*user, feeds [][][]notif, fs map[string]*keyFacts) {
	for ui, u := range users {
		for ni := range feeds {
			feed := feeds[ni][ui]
			byKey := map[string][]notif{}
			for _, n := range feed {
				byKey[n.AppNotificationID] = append(byKey[n.AppNotificationID], n)
			}
			for k, ns := range byKey {
				f := fs[keyID(ui, k)]
				if f == nil {
					v.failf("n%d %s: notification %s with appNotificationId %q the harness never sent", ni+1, u.upn, ns[0].ID, k)
					continue
				}
				allowed := 1
				if f.deleteSent {
					allowed += f.unansweredPuts
				}
				if len(ns) > allowed {
					v.dups++
					v.failf("n%d %s: key %s appears %d times (%d unanswered puts): %v", ni+1, u.upn, k, len(ns), f.unansweredPuts, ns)
				}
			}
			for _, f := range fs {
				if f.user != fmt.Sprint(ui) || !f.acked {
					continue
				}
				var got *notif
				for i := range byKey[f.key] {
					if byKey[f.key][i].ID == f.primary {
						got = &byKey[f.key][i]
					}
				}
				switch {
				case got == nil:
					v.lost++
					v.failf("n%d %s: LOST: acknowledged notification %s (key %s) is missing", ni+1, u.upn, f.primary, f.key)
				case f.deleteAcked && got.Status != "deleted":
					v.lost++
					v.failf("n%d %s: LOST DELETE: %s (key %s) was deleted (acknowledged) but is %s", ni+1, u.upn, f.primary, f.key, got.Status)
				case !f.deleteSent && got.Status != "active":
					v.failf("n%d %s: %s (key %s) is %s though no delete was sent", ni+1, u.upn, f.primary, f.key, got.Status)
				case !f.deleteSent && got.Payload.RawContent != f.lastAckedContent && !slices.Contains(f.contents, got.Payload.RawContent):
					v.lost++
					v.failf("n%d %s: LOST UPDATE: %s (key %s) holds %q; the last acknowledged put was %q, unanswered ones %v",
						ni+1, u.upn, f.primary, f.key, got.Payload.RawContent, f.lastAckedContent, f.contents)
				}
			}
		}
		// Every node the same feed.
		ref := feedIndex(feeds[0][ui])
		for ni := 1; ni < len(feeds); ni++ {
			other := feedIndex(feeds[ni][ui])
			for id, s := range ref {
				if other[id] != s {
					v.failf("%s: n1 holds %s as %q, n%d as %q", u.upn, id, s, ni+1, other[id])
				}
			}
			for id, s := range other {
				if _, ok := ref[id]; !ok {
					v.failf("%s: n%d holds %s (%q), n1 does not", u.upn, ni+1, id, s)
				}
			}
		}
	}
}

func feedIndex(feed []notif) map[string]string {
	m := map[string]string{}
	for _, n := range feed {
		m[n.ID] = n.state()
	}
	return m
}

// checkLogs is check 2 (every node's change log of each user identical,
// in the same order) and the log's half of check 3 (every acknowledged
// write is a change in it).
func checkLogs(v *verdict, users []*user, logs [][][]event, fs map[string]*keyFacts) {
	for ui, u := range users {
		ref := logs[0][ui]
		for ni := 1; ni < len(logs); ni++ {
			got := logs[ni][ui]
			for i := range max(len(ref), len(got)) {
				if i >= len(ref) || i >= len(got) {
					v.failf("%s: change log of n1 has %d changes, of n%d %d", u.upn, len(ref), ni+1, len(got))
					break
				}
				a, b := ref[i], got[i]
				if a.Seq != b.Seq || a.Type != b.Type || a.NID != b.NID || string(a.Data) != string(b.Data) {
					v.failf("%s: change %d differs: n1 %s %s %s %s, n%d %s %s %s %s", u.upn, i, a.Cursor, a.Type, a.NID, a.Data,
						ni+1, b.Cursor, b.Type, b.NID, b.Data)
					break
				}
			}
		}
		for i := 1; i < len(ref); i++ {
			if ref[i].Seq <= ref[i-1].Seq {
				v.failf("%s: change log out of order at %d: %s after %s", u.upn, i, ref[i].Cursor, ref[i-1].Cursor)
			}
		}
		// The log's states per notification.
		states := map[string][]notif{}
		deleted := map[string]bool{}
		for _, e := range ref {
			if e.Type == "deleted" {
				deleted[e.NID] = true
				continue
			}
			var n notif
			json.Unmarshal(e.Data, &n)
			states[e.NID] = append(states[e.NID], n)
		}
		for _, f := range fs {
			if f.user != fmt.Sprint(ui) || !f.acked {
				continue
			}
			if len(states[f.primary]) == 0 {
				v.lost++
				v.failf("%s: LOST: acknowledged %s (key %s) has no change in the log", u.upn, f.primary, f.key)
			}
			if f.deleteAcked && !deleted[f.primary] {
				v.lost++
				v.failf("%s: LOST DELETE: acknowledged delete of %s (key %s) is not in the log", u.upn, f.primary, f.key)
			}
			for _, p := range f.patches {
				found := false
				for _, n := range states[p.NID] {
					found = found || (n.ReadState == p.Read && n.UserActionState == p.Action)
				}
				if !found {
					v.lost++
					v.failf("%s: LOST PATCH: %s", u.upn, p)
				}
			}
		}
	}
}

// checkSubscribers is check 4: after dropping duplicates by event id, a
// subscriber saw its user's whole change log, each change once, in order,
// or was told resyncRequired.
func checkSubscribers(v *verdict, subs []*subscriber, logs [][][]event) (resyncs int) {
	for _, s := range subs {
		s.mu.Lock()
		evs, resync, serr := append([]event(nil), s.events...), s.resync, s.err
		s.mu.Unlock()
		if serr != nil {
			v.failf("subscriber %s: %v", s.name, serr)
			continue
		}
		if resync {
			resyncs++
			v.notes = append(v.notes, fmt.Sprintf("subscriber %s told to resync: %s", s.name, s.lastErr))
			continue
		}
		seen := map[string]event{}
		var uniq []event
		for _, e := range evs {
			if prev, ok := seen[e.Cursor]; ok {
				if string(prev.Data) != string(e.Data) {
					v.failf("subscriber %s: event %s came twice with different data: %s and %s", s.name, e.Cursor, prev.Data, e.Data)
				}
				continue
			}
			seen[e.Cursor] = e
			uniq = append(uniq, e)
		}
		want := logs[0][s.u.idx]
		for i := range max(len(uniq), len(want)) {
			if i >= len(uniq) {
				v.failf("subscriber %s: MISSED %d changes from %s (%s %s) on; %d connects", s.name, len(want)-i, want[i].Cursor, want[i].Type, want[i].NID, s.connects)
				break
			}
			if i >= len(want) {
				v.failf("subscriber %s: %d events beyond the change log, from %s", s.name, len(uniq)-i, uniq[i].Cursor)
				break
			}
			a, b := want[i], uniq[i]
			if a.Seq != b.Seq || a.Type != b.Type || a.NID != b.NID || string(a.Data) != string(b.Data) {
				v.failf("subscriber %s: event %d is %s %s %s (from n%d), the log has %s %s %s", s.name, i, b.Cursor, b.Type, b.NID, b.Node+1,
					a.Cursor, a.Type, a.NID)
				break
			}
		}
	}
	return resyncs
}

// webhookPending lists the notifications of webhook users whose final
// state no acknowledged delivery carried yet.
func webhookPending(users []*user, feeds [][]notif, ds []delivery) []string {
	var pending []string
	for ui, u := range users {
		if u.hookSub == "" {
			continue
		}
		for _, n := range feeds[ui] {
			ok := false
			for _, d := range ds {
				if d.User != ui || d.N.ID != n.ID || d.Answered != http.StatusOK {
					continue
				}
				if n.Status == "deleted" {
					ok = ok || d.Type == "notification.deleted"
				} else {
					ok = ok || (d.Type != "notification.deleted" && d.N.state() == n.state())
				}
			}
			if !ok {
				pending = append(pending, fmt.Sprintf("%s %s %s", u.upn, n.ID, n.state()))
			}
		}
	}
	return pending
}

// checkWebhooks is check 6: every final state delivered at least once
// (webhookPending), every delivery signed, and the deliveries that share a
// webhook-id are the same message.
func checkWebhooks(v *verdict, users []*user, feeds [][]notif, ds []delivery) (dupDeliveries int) {
	byID := map[string]delivery{}
	for _, d := range ds {
		if !d.SigOK {
			v.failf("webhook delivery %s to %s: bad signature", d.WebhookID, users[d.User].upn)
		}
		if prev, ok := byID[d.WebhookID]; ok {
			dupDeliveries++
			if prev.Body != d.Body {
				v.failf("webhook-id %s carried two messages:\n%s\n%s", d.WebhookID, prev.Body, d.Body)
			}
			continue
		}
		byID[d.WebhookID] = d
	}
	for _, p := range webhookPending(users, feeds, ds) {
		v.failf("webhook: final state never delivered: %s", p)
	}
	return dupDeliveries
}
