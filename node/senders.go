package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/fanout/apns"
	"github.com/herald-notify/herald/fanout/fcm"
	"github.com/herald-notify/herald/fanout/outbound"
	"github.com/herald-notify/herald/fanout/webhook"
	"github.com/herald-notify/herald/fanout/webpush"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// senders builds the delivery channels the config enables.
func (n *Node) senders() (map[string]fanout.Sender, error) {
	out := map[string]fanout.Sender{}
	keys, err := n.vapidKeys()
	if err != nil {
		return nil, err
	}
	// Each sender has a time limit of its own; the operator's
	// --delivery-timeout must be able to raise it, not only cut it short.
	timeout := n.cfg.Delivery.Timeout
	wp, err := webpush.New(webpush.Options{Keys: keys, Subject: n.cfg.WebPush.Subject,
		Client: outbound.NewClient(outbound.Policy{AllowPrivate: n.cfg.WebPush.AllowPrivate, Timeout: timeout})})
	if err != nil {
		return nil, fmt.Errorf("webPush: %w", err)
	}
	out[resource.ChannelWebPush] = wp
	wh, err := webhook.New(webhook.Options{Timeout: max(timeout, 0),
		Client: outbound.NewClient(outbound.Policy{AllowPrivate: n.cfg.Webhook.AllowPrivate, Timeout: timeout})})
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	out[resource.ChannelWebhook] = wh
	if f := n.cfg.FCM; f.CredentialsFile != "" {
		key, err := os.ReadFile(f.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("fcm: %w", err)
		}
		s, err := fcm.New(fcm.Options{ServiceAccountJSON: key, Endpoint: f.Endpoint, TokenURL: f.TokenURL, Timeout: max(timeout, 0)})
		if err != nil {
			return nil, fmt.Errorf("fcm: %w", err)
		}
		out[resource.ChannelFCM] = s
	}
	if a := n.cfg.APNs; a.KeyFile != "" {
		key, err := os.ReadFile(a.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("apns: %w", err)
		}
		var roots *x509.CertPool
		if a.CAFile != "" {
			pem, err := os.ReadFile(a.CAFile)
			if err != nil {
				return nil, fmt.Errorf("apns: %w", err)
			}
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("apns: %s holds no PEM certificate", a.CAFile)
			}
		}
		s, err := apns.New(apns.Options{KeyPEM: key, KeyID: a.KeyID, TeamID: a.TeamID, ProductionURL: a.URL, SandboxURL: a.URL,
			RootCAs: roots, Timeout: max(timeout, 0)})
		if err != nil {
			return nil, fmt.Errorf("apns: %w", err)
		}
		out[resource.ChannelAPNs] = s
	}
	return out, nil
}

// vapidKeys returns the cluster's VAPID key pair, made by the leader on the
// first start and kept in the replicated state so that every node signs
// with the key browsers subscribed with. A new cluster may change leaders
// while it settles: until the key is there, whichever node leads makes it,
// and the others wait for it (bounded).
func (n *Node) vapidKeys() (*webpush.KeyPair, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, ok, err := n.store.VAPID()
		if err != nil {
			return nil, err
		}
		if ok {
			return webpush.ParseKeyPair(b)
		}
		if n.store.IsLeader() {
			kp, err := n.makeVAPID()
			if err == nil || !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrUnknownOutcome) {
				return kp, err
			}
			// Leadership moved while the key was being stored: it may
			// be there or not; look again.
		}
		if time.Now().After(deadline) {
			return nil, errors.New("no VAPID key after 30 s: the cluster's leader did not make one")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// makeVAPID stores a new key pair; if two leaders raced, the first key
// stored wins and is returned.
func (n *Node) makeVAPID() (*webpush.KeyPair, error) {
	kp, err := webpush.GenerateKeyPair()
	if err != nil {
		return nil, err
	}
	b, err := kp.MarshalBinary()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := n.store.Propose(ctx, &raft.Command{Op: raft.OpSetVAPID, Now: time.Now().UnixNano(), VAPID: b})
	if err != nil {
		return nil, err
	}
	return webpush.ParseKeyPair(v.([]byte))
}

// vapidPublicKey is the key browsers pass to PushManager.subscribe.
func (n *Node) vapidPublicKey() (string, error) {
	b, ok, err := n.store.VAPID()
	if err != nil {
		return "", err
	}
	if !ok {
		return "", errors.New("the VAPID key is not made yet")
	}
	kp, err := webpush.ParseKeyPair(b)
	if err != nil {
		return "", err
	}
	return kp.PublicKey(), nil
}
