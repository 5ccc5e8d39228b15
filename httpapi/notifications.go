package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// appContext resolves an application's X-UNS-ID: the subscription it sends
// through, which must be an active one of the calling application.
func (s *Server) appContext(r *http.Request, p *principal) (*resource.SubscriptionRecord, error) {
	unsid := r.Header.Get("X-UNS-ID")
	if unsid == "" {
		return nil, resource.Invalid("X-UNS-ID", "The X-UNS-ID header, the user notification subscription id, is required.")
	}
	usable := func(sub *resource.SubscriptionRecord, ok bool) bool {
		return ok && sub.AppID == p.app.ID && sub.ActiveAt(time.Now())
	}
	sub, ok, err := s.state.Subscription(unsid)
	if err == nil && !usable(sub, ok) && s.lookAgain(r) {
		// Created, or renewed, through another node a moment ago perhaps.
		sub, ok, err = s.state.Subscription(unsid)
	}
	if err != nil {
		return nil, err
	}
	if !usable(sub, ok) {
		if ok && sub.AppID == p.app.ID {
			return nil, denied(inactiveWhy(sub))
		}
		return nil, denied("The X-UNS-ID is not an active subscription of this application.")
	}
	return sub, nil
}

// inactiveWhy words why the application's own subscription takes no
// sends. The application cannot read subscriptions, and what it does next
// differs: a device a push service called gone must register again, an
// expired subscription may be renewed by its device.
func inactiveWhy(sub *resource.SubscriptionRecord) string {
	if sub.Status == resource.SubDisabled {
		why := ""
		if sub.StatusReason != nil && *sub.StatusReason != "" {
			// Up to the answer's own words: a webhook's are the user's
			// receiver's body, not the application's to read.
			code, _, _ := strings.Cut(*sub.StatusReason, ": ")
			why = " (" + code + ")"
		}
		return "The X-UNS-ID names a subscription that is disabled" + why +
			": the device must register again, and its new UNSID replace this one."
	}
	return "The X-UNS-ID names a subscription that expired at " + sub.ExpirationDateTime.String() +
		": the device must renew it (PATCH expirationDateTime) or register again."
}

func (s *Server) postNotification(w http.ResponseWriter, r *http.Request, p *principal) error {
	if p.app == nil {
		return denied("Sending needs an application's token (client_credentials) and X-UNS-ID; admins send at /v1.0/users/{id}/notifications.")
	}
	sub, err := s.appContext(r, p)
	if err != nil {
		return err
	}
	var in resource.NotificationInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	return s.send(w, r, &in, sub.UserID, p.app, "/v1.0/me/notifications/")
}

func (s *Server) adminSend(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	var in resource.NotificationInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.TargetHostName == "" {
		return resource.Invalid("targetHostName", "targetHostName is required when an admin sends.")
	}
	in.TargetHostName = strings.ToLower(in.TargetHostName) // stored in lower case; DNS ignores case
	app, ok, err := s.state.AppBy(in.TargetHostName)
	if err == nil && (!ok || app.TargetHostName != in.TargetHostName) && s.lookAgain(r) {
		app, ok, err = s.state.AppBy(in.TargetHostName)
	}
	if err != nil {
		return err
	}
	if !ok || app.TargetHostName != in.TargetHostName {
		return resource.Invalid("targetHostName", "No application is registered for %s.", in.TargetHostName)
	}
	return s.send(w, r, &in, u.ID, app, "/v1.0/users/"+url.PathEscape(u.ID)+"/notifications/")
}

// send stores in for uid; the answer's Location is under at, where the
// caller reads the notification back: an application under /me (as
// Graph), an admin under the user's own path.
func (s *Server) send(w http.ResponseWriter, r *http.Request, in *resource.NotificationInput, uid string, app *resource.ApplicationRecord, at string) error {
	now := time.Now()
	if err := in.Validate(now, app.TargetHostName); err != nil {
		return err
	}
	// A disabled account (someone who left) keeps its feed, but its
	// devices get nothing more: its subscriptions would still deliver.
	if enabled, found, err := s.state.UserEnabled(uid); err != nil {
		return err
	} else if found && !enabled {
		return denied("The user's account is disabled: nothing is sent to it until an admin enables it again.")
	}
	rec := &resource.NotificationRecord{Notification: in.NewNotification(resource.NewNotificationID(now), now),
		UserID: uid, AppID: app.ID}
	v, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpSend, Now: now.UnixNano(), Notif: rec,
		MaxItems: s.opts.MaxNotificationsPerUser})
	if err != nil {
		return err
	}
	res := v.(raft.SendResult)
	w.Header().Set("Location", at+res.Notification.ID)
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
		s.metrics.notifications.WithLabelValues("created").Inc()
	} else {
		s.metrics.notifications.WithLabelValues("replaced").Inc()
	}
	if res.Encoded != nil {
		writeBody(w, status, res.Encoded)
	} else {
		writeJSON(w, status, res.Notification)
	}
	return nil
}

// target is whose notification an id names, and which application's view
// applies (empty for the user's own).
func (s *Server) target(r *http.Request, p *principal) (uid, appID string, err error) {
	if p.user != nil {
		return p.user.ID, "", nil
	}
	sub, err := s.appContext(r, p)
	if err != nil {
		return "", "", err
	}
	return sub.UserID, p.app.ID, nil
}

func (s *Server) lookupNotification(r *http.Request, p *principal) (*resource.NotificationRecord, error) {
	uid, appID, err := s.target(r, p)
	if err != nil {
		return nil, err
	}
	n, ok, err := s.state.Notification(uid, r.PathValue("id"))
	if err == nil && !ok && s.lookAgain(r) {
		n, ok, err = s.state.Notification(uid, r.PathValue("id"))
	}
	if err != nil {
		return nil, err
	}
	if !ok || (appID != "" && n.AppID != appID) {
		return nil, resource.NotFound("notification")
	}
	// One past its expiry is gone, whether or not the purge (every
	// purge-interval) took it yet.
	if !n.ExpirationDateTime.After(time.Now()) {
		return nil, errExpiredNotification
	}
	return n, nil
}

// errExpiredNotification is the 404 of a notification past its expiry,
// told apart from one not found so that an admin's reading of deliveries
// does not go looking for it among every user's (deliveries.go).
var errExpiredNotification = resource.NotFound("notification")

func (s *Server) getNotification(w http.ResponseWriter, r *http.Request, p *principal) error {
	n, err := s.lookupNotification(r, p)
	if err != nil {
		return err
	}
	// A device that names its subscription fetched the notification as of
	// its last change: that counts as delivered to it, and cancels a pending
	// iOS fallback alert, but not a newer change queued after this read.
	if sid := r.URL.Query().Get("subscriptionId"); sid != "" && p.user != nil && s.opts.ReportDelivery != nil {
		if sub, ok, err := s.state.Subscription(sid); err == nil && ok && sub.UserID == p.user.ID {
			s.opts.ReportDelivery(raft.DeliveryOutcome{UserID: n.UserID, NotificationID: n.ID, SubscriptionID: sid,
				Seq: n.Seq, Outcome: raft.OutcomeDelivered, At: time.Now().UnixNano()})
		}
	}
	writeJSON(w, http.StatusOK, n.Notification)
	return nil
}

func (s *Server) patchNotification(w http.ResponseWriter, r *http.Request, p *principal) error {
	if p.user == nil {
		return denied("Only the user changes readState and userActionState.")
	}
	var in resource.NotificationPatch
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if err := in.Validate(); err != nil {
		return err
	}
	v, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpPatchNotif, Now: time.Now().UnixNano(),
		UserID: p.user.ID, ID: r.PathValue("id"), NotifPatch: &in})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) deleteNotification(w http.ResponseWriter, r *http.Request, p *principal) error {
	uid, appID, err := s.target(r, p)
	if err != nil {
		return err
	}
	if _, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpDeleteNotif, Now: time.Now().UnixNano(),
		UserID: uid, AppID: appID, ID: r.PathValue("id")}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteNotifications is an application's DELETE of everything in a group,
// or of one appNotificationId.
func (s *Server) deleteNotifications(w http.ResponseWriter, r *http.Request, p *principal) error {
	if p.app == nil {
		return denied("Deleting by groupName or appNotificationId is for the sending application.")
	}
	sub, err := s.appContext(r, p)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	group, anid := q.Get("groupName"), q.Get("appNotificationId")
	if (group == "") == (anid == "") {
		return resource.Invalid("groupName", "Give exactly one of groupName and appNotificationId.")
	}
	if group != "" {
		return s.deleteGroup(w, r, sub.UserID, p.app.ID, group)
	}
	if _, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpDeleteNotifsBy, Now: time.Now().UnixNano(),
		UserID: sub.UserID, AppID: p.app.ID, GroupName: group, AppNotifID: anid}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// groupDeleteWorkers is how many deletes of one group are proposed at once.
const groupDeleteWorkers = 16

// deleteGroup deletes an application's active notifications of one group
// for a user. The ids are found here, on the request's goroutine, from the
// feed's views, and deleted one by one (OpDeleteNotif, which checks the
// application again): the FSM's OpDeleteNotifsBy by groupName reads and
// decodes every notification of the user, tombstones included, on the one
// goroutine that applies every write of the cluster, and an application
// that repeated it for a user of 10,000 notifications held every write of
// every node for most of a second each time, within its rate limit.
func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request, uid, appID, group string) error {
	// What this replica holds must include every send answered before
	// this request arrived, whichever node took it; a strong read's
	// barrier (ConsistencyLevel: strong) has made sure of that already.
	if b, _ := r.Context().Value(readBarrierKey{}).(*readBarrier); b == nil || !b.confirmed {
		if err := s.state.Barrier(r.Context()); err != nil {
			s.log.Debug("group delete: barrier failed", "error", err)
			return unavailable("This node could not confirm that it holds the leader's latest state in time; retry.", time.Second)
		}
	}
	keep := func(v *raft.NotificationView) bool {
		return v.Status == resource.StatusActive && v.AppID == appID && v.GroupName == group
	}
	var ids []string
	for after := ""; ; {
		// Unbounded: it reads to the end either way.
		page, err := s.state.NotificationViews(uid, after, 1000, 0, "", keep)
		if err != nil {
			return err
		}
		for _, v := range page.Items {
			ids = append(ids, v.ID)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if err := s.deleteEach(r.Context(), uid, appID, ids); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteEach proposes the deletes of ids, a few at a time, and returns the
// first failure other than a notification gone meanwhile.
func (s *Server) deleteEach(ctx context.Context, uid, appID string, ids []string) error {
	var (
		mu    sync.Mutex
		first error
		next  int
		wg    sync.WaitGroup
	)
	work := func() {
		defer wg.Done()
		for {
			mu.Lock()
			if first != nil || next == len(ids) {
				mu.Unlock()
				return
			}
			id := ids[next]
			next++
			mu.Unlock()
			_, err := s.state.Propose(ctx, &raft.Command{Op: raft.OpDeleteNotif, Now: time.Now().UnixNano(),
				UserID: uid, AppID: appID, ID: id})
			var re *resource.Error
			if err != nil && !(errors.As(err, &re) && re.Code == resource.CodeNotFound) {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}
	}
	for range min(groupDeleteWorkers, len(ids)) {
		wg.Add(1)
		go work()
	}
	wg.Wait()
	return first
}
