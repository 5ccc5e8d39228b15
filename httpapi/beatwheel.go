package httpapi

import "time"

// beatWheel holds every live stream until it ends, by the sweep interval
// its next heartbeat falls in, so that a sweep touches only the streams
// whose beat is due; shutdown and the wait for streams to end read the
// whole wheel. Looking at every stream's last beat on every sweep cost a node
// with 10,000 streams 2-3 ms of CPU ten times a second, under the lock
// that opening and ending a stream take, each stream a cache miss (a
// CPU profile of the latency bench put it at 2.4-4 % of the node,
// BENCHMARKS.md).
//
// Interval k is [epoch + k·every, epoch + (k+1)·every). A stream due in
// interval k beats when the sweep reaches k, at most one interval early,
// and is put back period intervals later, so it beats every period·every,
// the heartbeat. The wheel has one slot more than period: a stream put
// back lands in the slot of the interval just swept, never in one still
// to sweep. The caller serializes every method.
type beatWheel struct {
	every  time.Duration
	epoch  time.Time
	period int64
	slots  []map[*liveStream]struct{}
	next   int64 // the first interval not yet swept
}

// newBeatWheel is the wheel of a server whose streams beat every
// heartbeat, swept every sweepEvery(heartbeat) from now.
func newBeatWheel(heartbeat time.Duration, now time.Time) *beatWheel {
	every := sweepEvery(heartbeat)
	period := max(int64((heartbeat+every/2)/every), 1)
	w := &beatWheel{every: every, epoch: now, period: period,
		slots: make([]map[*liveStream]struct{}, period+1)}
	for i := range w.slots {
		w.slots[i] = map[*liveStream]struct{}{}
	}
	return w
}

// interval is the interval that holds t.
func (w *beatWheel) interval(t time.Time) int64 {
	return int64(t.Sub(w.epoch) / w.every)
}

// add schedules ls's first beat at t (no earlier than the next sweep, no
// later than a period from now).
func (w *beatWheel) add(ls *liveStream, t time.Time) {
	k := min(max(w.interval(t), w.next), w.next+w.period-1)
	w.put(ls, k)
}

func (w *beatWheel) put(ls *liveStream, k int64) {
	slot := int(k % int64(len(w.slots)))
	w.slots[slot][ls] = struct{}{}
	ls.beatSlot = slot
}

// remove drops ls; a stream that ended before it went live was never
// added, and no wheel may exist yet.
func (w *beatWheel) remove(ls *liveStream) {
	if w != nil {
		delete(w.slots[ls.beatSlot], ls)
	}
}

// all appends every stream to dst, leaving the wheel as it is; no wheel
// may exist yet.
func (w *beatWheel) all(dst []*liveStream) []*liveStream {
	if w == nil {
		return dst
	}
	for _, slot := range w.slots {
		for ls := range slot {
			dst = append(dst, ls)
		}
	}
	return dst
}

// len is the number of streams the wheel holds.
func (w *beatWheel) len() int {
	if w == nil {
		return 0
	}
	n := 0
	for _, slot := range w.slots {
		n += len(slot)
	}
	return n
}

// due appends to dst the streams whose beat fell due by now, each once,
// and schedules their next beats.
func (w *beatWheel) due(now time.Time, dst []*liveStream) []*liveStream {
	upto := w.interval(now)
	if upto-w.next >= w.period {
		// A heartbeat late or more (the process stalled): every stream is
		// due. Each beats now and next within a heartbeat, spread over it
		// again.
		from := len(dst)
		for _, slot := range w.slots {
			dst = take(slot, dst)
		}
		w.next = upto + 1
		for i, ls := range dst[from:] {
			w.put(ls, w.next+int64(i)%w.period)
		}
		return dst
	}
	// A stream swept in interval k goes to k+period, past upto.
	for ; w.next <= upto; w.next++ {
		from := len(dst)
		dst = take(w.slots[w.next%int64(len(w.slots))], dst)
		for _, ls := range dst[from:] {
			w.put(ls, w.next+w.period)
		}
	}
	return dst
}

// take empties slot into dst.
func take(slot map[*liveStream]struct{}, dst []*liveStream) []*liveStream {
	for ls := range slot {
		dst = append(dst, ls)
	}
	clear(slot)
	return dst
}
