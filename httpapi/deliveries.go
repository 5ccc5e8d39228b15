package httpapi

import (
	"net/http"

	"github.com/herald-notify/herald/resource"
)

// deliveries is GET /me/notifications/{id}/deliveries: for the owning
// user, or for the sending application with the user's X-UNS-ID.
func (s *Server) deliveries(w http.ResponseWriter, r *http.Request, p *principal) error {
	n, err := s.lookupNotification(r, p)
	if err != nil {
		return err
	}
	return s.writeDeliveries(w, n.UserID, n.ID)
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
