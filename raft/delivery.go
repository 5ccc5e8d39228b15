package raft

import (
	"time"

	"github.com/herald-notify/herald/resource"
)

// Delivery outcomes the engine (or a live stream) reports.
const (
	OutcomeDelivered = "delivered"
	OutcomeRetry     = "retry"
	OutcomeFailed    = "failed"
	OutcomeSkipped   = "skipped"
	// OutcomeDisable: the endpoint is gone; the subscription is disabled.
	OutcomeDisable = "disable"
)

// DeliveryOutcome is the result of one attempt to send change Seq of a
// notification to a subscription.
type DeliveryOutcome struct {
	UserID         string `json:"userId"`
	NotificationID string `json:"notificationId"`
	SubscriptionID string `json:"subscriptionId"`
	Seq            uint64 `json:"seq"`
	Outcome        string `json:"outcome"`
	Error          string `json:"error,omitempty"`
	// At is when the attempt ended; NextAttempt when a retry is due (Unix ns).
	At          int64 `json:"at"`
	NextAttempt int64 `json:"nextAttempt,omitempty"`
	// Attempted is false for outcomes that made no attempt (a live stream's
	// receipt, a skip), which do not count as attempts.
	Attempted bool `json:"attempted,omitempty"`
	// FallbackAt, with a delivered raw APNs push, schedules the iOS
	// fallback alert (Unix ns): it is sent then unless the device fetched
	// the notification first.
	FallbackAt int64 `json:"fallbackAt,omitempty"`
	// FailingAgain, with a failed attempt, starts the subscription's
	// failing clock again at At: nothing failed or waited for a retry
	// for a long while before it, so the earlier failures and this one
	// are two outages, not one.
	FailingAgain bool `json:"failingAgain,omitempty"`
}

// PendingFallback is the PendingType of a delivery whose iOS fallback
// alert is scheduled.
const PendingFallback = "fallback"

// fanout records a pending delivery of change typ of n to every active
// subscription of n's user and application whose platform n targets.
//
// A pending delivery to a live subscription is kept in n itself
// (n.LiveTargets), which the caller stores after: nothing sends it but a
// stream, and only a stream opened with the subscription's id reports it,
// so most stay pending for the notification's lifetime. Its own record,
// a key beside n's, cost a send about a tenth of the node's CPU under
// ingest (BENCHMARKS.md, 5 December 2026). It gets a record when a stream
// reports it (liveDelivery), and a record, once there, is kept up as any
// other. Nor is a live delivery indexed as pending: the index is what the
// delivery engine reads, every record of it, when it starts or gains users.
// A node of an earlier version still writes and indexes their records;
// the engine skips live ones either way, and reads merge the two forms
// (Store.Deliveries), so replicas of either version answer alike.
func (t *tx) fanout(now int64, n *resource.NotificationRecord, typ string) {
	at := time.Unix(0, now)
	for _, s := range t.userSubs(n.UserID) {
		if s.AppID != n.AppID || !s.ActiveAt(at) || !n.Targets(s.PlatformType) {
			continue
		}
		var d resource.DeliveryRecord
		// A created notification has a new id, so no record yet: skip the read.
		found := typ != resource.ChangeCreated && t.getJSON(deliveryKey(n.UserID, n.ID, s.ID), &d)
		if s.Channel.Type == resource.ChannelLive {
			if !found {
				n.SetLiveTarget(resource.LiveTarget{SubscriptionID: s.ID, PlatformType: s.PlatformType, PendingSeq: t.seq})
				t.deliveries = append(t.deliveries, resource.DeliveryRef{UserID: n.UserID, NotificationID: n.ID,
					SubscriptionID: s.ID, ChannelType: s.Channel.Type, Host: resource.ChannelLive, Seq: t.seq})
				continue
			}
			n.DropLiveTarget(s.ID) // the record stands for it
		}
		if !found {
			d = resource.DeliveryRecord{Delivery: resource.Delivery{SubscriptionID: s.ID,
				ChannelType: s.Channel.Type, PlatformType: s.PlatformType},
				UserID: n.UserID, NotificationID: n.ID, Host: s.Channel.Host()}
		}
		d.State = resource.DeliveryPending
		d.PendingSeq, d.PendingType = t.seq, typ
		d.NextAttempt = resource.At(at)
		t.set(deliveryKey(n.UserID, n.ID, s.ID), encodeDelivery(&d))
		if s.Channel.Type != resource.ChannelLive {
			t.set(pendingKey(n.UserID, n.ID, s.ID), nil)
		}
		t.deliveries = append(t.deliveries, resource.DeliveryRef{UserID: n.UserID, NotificationID: n.ID,
			SubscriptionID: s.ID, ChannelType: s.Channel.Type, Host: d.Host, Seq: t.seq})
	}
}

// liveDelivery makes the record of a pending live delivery that n holds
// (fanout): what fanout wrote for it before live deliveries were kept in
// the notification, less the pending change's type and the time it was
// fanned out, which nothing reads for a live one.
func liveDelivery(n *resource.NotificationRecord, sid string) (resource.DeliveryRecord, bool) {
	lt, ok := n.LiveTarget(sid)
	if !ok {
		return resource.DeliveryRecord{}, false
	}
	return liveRecord(n, lt), true
}

func liveRecord(n *resource.NotificationRecord, lt resource.LiveTarget) resource.DeliveryRecord {
	return resource.DeliveryRecord{Delivery: resource.Delivery{SubscriptionID: lt.SubscriptionID,
		ChannelType: resource.ChannelLive, PlatformType: lt.PlatformType, State: resource.DeliveryPending},
		UserID: n.UserID, NotificationID: n.ID, PendingSeq: lt.PendingSeq, Host: resource.ChannelLive}
}

func (t *tx) deleteDeliveries(uid, nid string) {
	prefix := deliveryPrefix(uid, nid)
	for _, k := range t.keys(prefix, 0) {
		t.del(k)
		t.del(pendingKey(uid, nid, string(k[len(prefix):])))
	}
}

// deliveryOutcomes applies a batch of attempt results. An outcome for an
// older change than the one now pending counts the attempt but leaves the
// newer message pending.
func (t *tx) deliveryOutcomes(c *Command) Result {
	for _, o := range c.Outcomes {
		var d resource.DeliveryRecord
		if !t.getJSON(deliveryKey(o.UserID, o.NotificationID, o.SubscriptionID), &d) {
			var n resource.NotificationRecord
			var found bool
			if t.getJSON(notifKey(o.UserID, o.NotificationID), &n) {
				d, found = liveDelivery(&n, o.SubscriptionID)
			}
			if !found {
				continue // purged or deleted meanwhile
			}
		}
		at := resource.At(time.Unix(0, o.At))
		if o.Attempted {
			d.Attempts++
			d.LastAttemptDateTime = at
			d.AttemptHistory = append(d.AttemptHistory, resource.Attempt{DateTime: at, Outcome: o.Outcome, Error: o.Error})
			if n := len(d.AttemptHistory); n > resource.MaxAttemptHistory {
				d.AttemptHistory = append([]resource.Attempt(nil), d.AttemptHistory[n-resource.MaxAttemptHistory:]...)
			}
		}
		if o.Error != "" {
			e := o.Error
			d.LastError = &e
		}
		current := d.PendingSeq != 0 && o.Seq >= d.PendingSeq
		switch {
		case !current:
		case o.Outcome == OutcomeDelivered && o.FallbackAt != 0:
			d.State, d.DeliveredDateTime, d.LastError = resource.DeliveryDelivered, at, nil
			d.PendingType = PendingFallback
			d.NextAttempt = resource.At(time.Unix(0, o.FallbackAt))
			t.setJSON(deliveryKey(o.UserID, o.NotificationID, o.SubscriptionID), d)
			continue
		case o.Outcome == OutcomeDelivered:
			d.State, d.DeliveredDateTime, d.LastError = resource.DeliveryDelivered, at, nil
		case o.Outcome == OutcomeRetry:
			d.NextAttempt = resource.At(time.Unix(0, o.NextAttempt))
		case o.Outcome == OutcomeSkipped:
			d.State = resource.DeliverySkipped
		default: // failed, disable
			d.State = resource.DeliveryFailed
		}
		if current && o.Outcome != OutcomeRetry {
			d.PendingSeq, d.PendingType = 0, ""
			t.del(pendingKey(o.UserID, o.NotificationID, o.SubscriptionID))
		}
		t.setJSON(deliveryKey(o.UserID, o.NotificationID, o.SubscriptionID), d)
		if o.Outcome == OutcomeDisable {
			t.disableSub(o.SubscriptionID, o.Error)
		} else if o.Attempted {
			t.trackFailing(o.SubscriptionID, o.Outcome == OutcomeDelivered, o.FailingAgain, o.At, o.NextAttempt)
		}
	}
	return ok(nil)
}

// trackFailing starts a subscription's failing clock at its first failed
// attempt (or again, when the engine says the failures are a new outage)
// and stops it at a success. Each failure also moves FailingUntil, by
// which the engine tells a continuing outage from a new one.
func (t *tx) trackFailing(sid string, delivered, again bool, at, next int64) {
	var s resource.SubscriptionRecord
	if !t.getJSON(subKey(sid), &s) {
		return
	}
	if t.rules() < 3 {
		// As before level 3: no FailingUntil, so the engine keeps one
		// clock for all failures (Engine.failingAgain).
		if (s.FailingSince != 0) != delivered {
			return
		}
		s.FailingSince = 0
		if !delivered {
			s.FailingSince = at
		}
		t.putSub(&s)
		return
	}
	switch {
	case delivered && s.FailingSince == 0:
		return
	case delivered:
		s.FailingSince, s.FailingUntil = 0, 0
	default:
		if s.FailingSince == 0 || again {
			s.FailingSince = at
		}
		s.FailingUntil = max(s.FailingUntil, at, next)
	}
	t.putSub(&s)
}

func (t *tx) disableSub(sid, reason string) {
	var s resource.SubscriptionRecord
	if !t.getJSON(subKey(sid), &s) || s.Status == resource.SubDisabled {
		return
	}
	s.Status = resource.SubDisabled
	s.StatusReason = &reason
	t.putSub(&s)
}
