package httpapi

import (
	"net/http"

	"github.com/herald-notify/herald/openapi"
	"github.com/herald-notify/herald/resource"
	"github.com/herald-notify/herald/sdk"
)

// routes registers every endpoint of API.md. Paths under /v1.0 are also
// served under /beta.
func (s *Server) routes() {
	rt := &router{s: s, methods: map[string][]string{}}

	rt.handle("POST", "/oauth2/v2.0/token", s.token)
	rt.handle("GET", "/healthz", s.healthz)
	rt.handle("GET", "/readyz", s.readyz)
	rt.handle("GET", "/metrics", s.metricsHandler(s.publicMetricsAccess))

	rt.handle("GET", "/me", s.userOnly(s.me))
	rt.handle("GET", "/me/applications", s.userOnly(s.listAppFaces))

	rt.handle("POST", "/users", s.adminOnly(s.createUser))
	rt.handle("GET", "/users", s.adminOnly(s.listUsers))
	rt.handle("GET", "/users/{id}", s.adminOnly(s.getUser))
	rt.handle("PATCH", "/users/{id}", s.adminOnly(s.patchUser))
	rt.handle("DELETE", "/users/{id}", s.adminOnly(s.deleteUser))
	rt.handle("GET", "/users/{id}/notificationSubscriptions", s.adminOnly(s.listUserSubscriptions))
	rt.handle("POST", "/users/{id}/notifications", s.adminOnly(s.adminSend))

	rt.handle("POST", "/applications", s.adminOnly(s.createApp))
	rt.handle("GET", "/applications", s.adminOnly(s.listApps))
	rt.handle("GET", "/applications/{id}", s.adminOnly(s.getApp))
	rt.handle("PATCH", "/applications/{id}", s.adminOnly(s.patchApp))
	rt.handle("DELETE", "/applications/{id}", s.adminOnly(s.deleteApp))
	rt.handle("POST", "/applications/{id}/addPassword", s.adminOnly(s.addPassword))
	rt.handle("POST", "/applications/{id}/removePassword", s.adminOnly(s.removePassword))

	rt.handle("POST", "/me/notificationSubscriptions", s.userOnly(s.createSubscription))
	rt.handle("GET", "/me/notificationSubscriptions", s.userOnly(s.listMySubscriptions))
	rt.handle("GET", "/me/notificationSubscriptions/{id}", s.userOnly(s.getSubscription))
	rt.handle("PATCH", "/me/notificationSubscriptions/{id}", s.userOnly(s.patchSubscription))
	rt.handle("DELETE", "/me/notificationSubscriptions/{id}", s.userOnly(s.deleteSubscription))

	rt.handle("POST", "/me/notifications", s.authed(s.postNotification))
	rt.handle("GET", "/me/notifications", s.authed(s.listNotifications))
	rt.handle("DELETE", "/me/notifications", s.authed(s.deleteNotifications))
	rt.handle("GET", "/me/notifications/delta", s.userOnly(s.delta))
	rt.handle("GET", "/me/notifications/stream", s.stream)
	rt.handle("GET", "/me/notifications/{id}", s.authed(s.getNotification))
	rt.handle("GET", "/me/notifications/{id}/deliveries", s.authed(s.deliveries))
	rt.handle("GET", "/users/{id}/notifications/{nid}/deliveries", s.adminOnly(s.userDeliveries))
	rt.handle("GET", "/webPush/vapidPublicKey", s.vapidPublicKey)
	rt.handle("PATCH", "/me/notifications/{id}", s.authed(s.patchNotification))
	rt.handle("DELETE", "/me/notifications/{id}", s.authed(s.deleteNotification))

	rt.handle("GET", "/admin/cluster", s.adminOnly(s.cluster))
	rt.handle("POST", "/admin/cluster/nodes", s.adminOnly(s.addNode))
	rt.handle("DELETE", "/admin/cluster/nodes/{id}", s.adminOnly(s.removeNode))
	rt.handle("GET", "/admin/backup", s.adminOnly(s.backup))

	// The description of all of the above (openapi/openapi.yaml).
	describe := openapi.Handler()
	s.handleRoot("GET /openapi.json", "openapi", func(w http.ResponseWriter, r *http.Request) error {
		describe.ServeHTTP(w, r)
		return nil
	})
	// The browser SDK (sdk/herald.js).
	module := sdk.Handler()
	s.handleRoot("GET /sdk/herald.js", "sdk", func(w http.ResponseWriter, r *http.Request) error {
		module.ServeHTTP(w, r)
		return nil
	})
	if ui := s.opts.UI; ui != nil {
		// Files only to read: any other method gets 405 with Allow, not a
		// page (TRACE and extension methods included).
		refuse := s.wrap("405", func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", "GET, HEAD")
			return resource.Errorf(resource.CodeMethodNotAllowed, "%s is not allowed here; use GET, HEAD.", r.Method)
		})
		s.handle("/ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				refuse.ServeHTTP(w, r)
				return
			}
			ui.ServeHTTP(w, r)
		}))
	}
	s.uiRoutes(rt)       // session.go
	s.securityRoutes(rt) // sessions.go, audit.go
	if peer := s.opts.ClusterPeer; peer != nil {
		// The nodes' route, not the API's: Routes (the OpenAPI
		// description's operations) leaves it out.
		const route = "GET /internal/cluster/peer"
		s.handle(route, s.wrap(route, func(w http.ResponseWriter, r *http.Request) error {
			peer.ServeHTTP(w, r)
			return nil
		}))
		rt.methods["/internal/cluster/peer"] = []string{http.MethodGet}
	}
	rt.finish()
}

var _ http.Handler = (*Server)(nil)
