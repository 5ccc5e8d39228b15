package main

// The container image is FROM scratch and has no CA certificates. These
// roots count only where the system offers none, so that Web Push, FCM,
// APNs and webhooks over HTTPS still verify whom they talk to there.
import _ "golang.org/x/crypto/x509roots/fallback"
