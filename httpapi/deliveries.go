package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/herald-notify/herald/resource"
)

// deliveries is GET /me/notifications/{id}/deliveries: for the owning
// user, for the sending application with the user's X-UNS-ID, and for an
// admin, whose reading may name any user's notification (API.md §7).
func (s *Server) deliveries(w http.ResponseWriter, r *http.Request, p *principal) error {
	n, err := s.lookupNotification(r, p)
	var re *resource.Error
	if errors.As(err, &re) && re.Code == resource.CodeNotFound && p.isAdmin() && re != errExpiredNotification {
		n, err = s.findAnyNotification(r, r.PathValue("id"))
	}
	if err != nil {
		return err
	}
	return s.writeDeliveries(w, n.UserID, n.ID)
}

// findAnyNotification looks for nid among every user's notifications. The
// store keys notifications by user, so this costs one read per user; it
// serves the admin's reading of the contract's path, and
// /users/{id}/notifications/{nid}/deliveries is the direct form.
func (s *Server) findAnyNotification(r *http.Request, nid string) (*resource.NotificationRecord, error) {
	for again := false; ; again = true {
		after := ""
		for {
			page, err := s.state.ListUsers(after, 500)
			if err != nil {
				return nil, err
			}
			for _, u := range page.Items {
				n, ok, err := s.state.Notification(u.ID, nid)
				if err != nil {
					return nil, err
				}
				if ok {
					if !n.ExpirationDateTime.After(time.Now()) {
						return nil, errExpiredNotification // gone, as lookupNotification says
					}
					return n, nil
				}
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		// Sent through another node a moment ago, perhaps.
		if again || !s.lookAgain(r) { // consistency.go
			return nil, resource.NotFound("notification")
		}
	}
}

// userDeliveries is the admin's view of any user's notification.
func (s *Server) userDeliveries(w http.ResponseWriter, r *http.Request, p *principal) error {
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
	return s.writeDeliveries(w, u.ID, n.ID)
}

func (s *Server) writeDeliveries(w http.ResponseWriter, uid, nid string) error {
	ds, err := s.state.Deliveries(uid, nid)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, collection{Value: views(ds, func(d *resource.DeliveryRecord) resource.Delivery {
		v := d.Delivery
		if v.AttemptHistory == nil {
			v.AttemptHistory = []resource.Attempt{}
		}
		return v
	})})
	return nil
}

// vapidPublicKey is GET /v1.0/webPush/vapidPublicKey: the key a browser
// passes to PushManager.subscribe as applicationServerKey. It is public.
func (s *Server) vapidPublicKey(w http.ResponseWriter, r *http.Request) error {
	if s.opts.VAPIDPublicKey == nil {
		return resource.Errorf(resource.CodeNotFound, "Web Push is not configured on this server.")
	}
	key, err := s.opts.VAPIDPublicKey()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"publicKey": key})
	return nil
}
