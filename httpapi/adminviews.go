package httpapi

// Read models for the admin console that the contract does not name: an
// admin can send to any user and read any user's subscriptions and delivery
// records, but had no way to read what a user received, or to see when a
// subscription last got something. All are read-only and admin-only.

import (
	"net/http"

	"github.com/herald-notify/herald/resource"
)

// activityWindow is how many of a user's newest notifications
// lastDeliveries looks through: enough for a console, bounded in cost.
const activityWindow = 200

func (s *Server) adminViewRoutes(rt *router) {
	rt.handle("GET", "/users/{id}/notifications", s.adminOnly(s.userFeed))
	rt.handle("GET", "/users/{id}/notifications/{nid}", s.adminOnly(s.userNotification))
	rt.handle("GET", "/admin/users/{id}/lastDeliveries", s.adminOnly(s.lastDeliveries))
}

// userFeed is GET /v1.0/users/{id}/notifications: a user's feed as the user
// sees it at /me/notifications, with the same filters and paging.
func (s *Server) userFeed(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	f, err := parseFeedFilter(r)
	if err != nil {
		return err
	}
	return s.writeFeed(w, r, u.ID, f)
}

// userNotification is GET /v1.0/users/{id}/notifications/{nid}, deleted
// ones included, as the delivery log shows what happened to them too.
func (s *Server) userNotification(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	n, ok, err := s.state.Notification(u.ID, r.PathValue("nid"))
	if err == nil && !ok && s.lookAgain(r) { // consistency.go
		n, ok, err = s.state.Notification(u.ID, r.PathValue("nid"))
	}
	if err != nil {
		return err
	}
	if !ok {
		return resource.NotFound("notification")
	}
	writeJSON(w, http.StatusOK, n.Notification)
	return nil
}

// lastDelivery is the most recent delivery record of one subscription.
type lastDelivery struct {
	NotificationID string `json:"notificationId"`
	resource.Delivery
}

// lastDeliveries is GET /v1.0/admin/users/{id}/lastDeliveries: for each of
// the user's subscriptions that has a delivery among the user's newest
// notifications, the newest such delivery.
func (s *Server) lastDeliveries(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	page, err := s.state.ListNotifications(u.ID, "", activityWindow, func(*resource.NotificationRecord) bool { return true })
	if err != nil {
		return err
	}
	out := []lastDelivery{}
	seen := map[string]bool{}
	// The feed is newest first, so the first delivery met per
	// subscription is its latest.
	for _, n := range page.Items {
		ds, err := s.state.Deliveries(u.ID, n.ID)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if !seen[d.SubscriptionID] {
				seen[d.SubscriptionID] = true
				out = append(out, lastDelivery{NotificationID: n.ID, Delivery: d.Delivery})
			}
		}
	}
	writeJSON(w, http.StatusOK, collection{Value: out})
	return nil
}
