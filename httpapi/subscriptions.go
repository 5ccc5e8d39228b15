package httpapi

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/herald-notify/herald/fanout/outbound"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// subscriptionCreated is the 201 body: the subscription, plus a webhook's
// signing secret, shown this once.
type subscriptionCreated struct {
	resource.Subscription
	Secret string `json:"secret,omitempty"`
}

func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in resource.SubscriptionInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	now := time.Now()
	if err := in.Validate(now); err != nil {
		return err
	}
	if err := s.checkDestination(in.Channel); err != nil {
		return err
	}
	in.TargetHostName = strings.ToLower(in.TargetHostName) // stored in lower case; DNS ignores case
	app, ok, err := s.state.AppBy(in.TargetHostName)
	if err == nil && (!ok || app.TargetHostName != in.TargetHostName) && s.lookAgain(r) {
		// Registered through another node a moment ago, perhaps.
		app, ok, err = s.state.AppBy(in.TargetHostName)
	}
	if err != nil {
		return err
	}
	if !ok || app.TargetHostName != in.TargetHostName {
		return resource.Invalid("targetHostName", "No application is registered for %s.", in.TargetHostName)
	}
	rec := &resource.SubscriptionRecord{Subscription: resource.Subscription{
		ID: resource.NewSecret(18), UserID: p.user.ID, TargetHostName: in.TargetHostName,
		PlatformType: in.PlatformType, DeviceName: in.DeviceName, Channel: *in.Channel,
		Status: resource.SubActive, CreatedDateTime: resource.At(now), ExpirationDateTime: *in.ExpirationDateTime,
	}, AppID: app.ID}
	if rec.Channel.Type == resource.ChannelWebhook {
		// Standard Webhooks secrets are standard base64; 24 bytes need no
		// padding, so libraries that split on '=' or '_' read it too.
		key := make([]byte, 24)
		rand.Read(key)
		rec.WebhookSecret = "whsec_" + base64.StdEncoding.EncodeToString(key)
	}
	if _, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpCreateSub, Now: now.UnixNano(), Sub: rec,
		MaxItems: s.opts.MaxSubscriptionsPerUser}); err != nil {
		return err
	}
	w.Header().Set("Location", "/v1.0/me/notificationSubscriptions/"+rec.ID)
	writeJSON(w, http.StatusCreated, subscriptionCreated{Subscription: rec.View(now), Secret: rec.WebhookSecret})
	return nil
}

// checkDestination applies the outbound policy at registration, with the
// same reading of the host as the sender's (outbound.CheckURL): https only,
// and no spelling of a loopback, private or otherwise non-public address,
// unless the config allows them. The sender checks the resolved address
// again at dial time.
func (s *Server) checkDestination(c *resource.Channel) error {
	var raw, field string
	var allow bool
	switch c.Type {
	case resource.ChannelWebPush:
		raw, field, allow = c.Endpoint, "channel.endpoint", s.opts.AllowPrivateWebPush
	case resource.ChannelWebhook:
		raw, field, allow = c.URL, "channel.url", s.opts.AllowPrivateWebhook
	default:
		return nil
	}
	var refused *outbound.RefusedError
	if err := outbound.CheckURL(raw, outbound.Policy{AllowPrivate: allow}); errors.As(err, &refused) {
		return resource.Invalid(field, "%s is not allowed: %s.", field, refused.Reason)
	} else if err != nil {
		return fmt.Errorf("check %s: %w", field, err)
	}
	return nil
}

func (s *Server) ownSubscription(r *http.Request, uid string) (*resource.SubscriptionRecord, error) {
	sub, ok, err := s.state.Subscription(r.PathValue("id"))
	if err == nil && !ok && s.lookAgain(r) {
		sub, ok, err = s.state.Subscription(r.PathValue("id"))
	}
	if err != nil {
		return nil, err
	}
	if !ok || sub.UserID != uid {
		return nil, resource.NotFound("subscription")
	}
	return sub, nil
}

func (s *Server) listSubscriptionsOf(w http.ResponseWriter, uid string) error {
	subs, err := s.state.ListSubscriptions(uid)
	if err != nil {
		return err
	}
	now := time.Now()
	writeJSON(w, http.StatusOK, collection{Value: views(subs, func(r *resource.SubscriptionRecord) resource.Subscription { return r.View(now) })})
	return nil
}

func (s *Server) listMySubscriptions(w http.ResponseWriter, r *http.Request, p *principal) error {
	return s.listSubscriptionsOf(w, p.user.ID)
}

func (s *Server) listUserSubscriptions(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	return s.listSubscriptionsOf(w, u.ID)
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request, p *principal) error {
	sub, err := s.ownSubscription(r, p.user.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sub.View(time.Now()))
	return nil
}

func (s *Server) patchSubscription(w http.ResponseWriter, r *http.Request, p *principal) error {
	sub, err := s.ownSubscription(r, p.user.ID)
	if err != nil {
		return err
	}
	var in resource.SubscriptionPatch
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	now := time.Now()
	if in.DeviceName == nil && in.ExpirationDateTime == nil {
		return resource.Invalid("", "PATCH takes deviceName and/or expirationDateTime.")
	}
	if in.DeviceName != nil {
		if err := resource.ValidateDeviceName(*in.DeviceName); err != nil {
			return err
		}
	}
	if in.ExpirationDateTime != nil {
		exp, verr := resource.SubscriptionExpiry(in.ExpirationDateTime, now)
		if verr != nil {
			return verr
		}
		in.ExpirationDateTime = &exp
	}
	v, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpUpdateSub, Now: now.UnixNano(),
		UserID: p.user.ID, ID: sub.ID, SubPatch: &in, MaxItems: s.opts.MaxSubscriptionsPerUser})
	if err != nil {
		return err
	}
	rec := v.(resource.SubscriptionRecord)
	writeJSON(w, http.StatusOK, rec.View(now))
	return nil
}

func (s *Server) deleteSubscription(w http.ResponseWriter, r *http.Request, p *principal) error {
	sub, err := s.ownSubscription(r, p.user.ID)
	if err != nil {
		return err
	}
	if _, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpDeleteSub, Now: time.Now().UnixNano(),
		UserID: p.user.ID, ID: sub.ID}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
