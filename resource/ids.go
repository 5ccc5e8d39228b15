package resource

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// sortable is base32hex in lower case: its alphabet sorts like the bytes it
// encodes, so a time-prefixed id sorts by time as a string.
var sortable = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// NewGUID returns a random version-4 UUID, the id shape of Graph users and
// applications.
func NewGUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// IsGUID reports whether s has the shape of a UUID (8-4-4-4-12 hex digits,
// either case): the shape of user and application ids.
func IsGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// NewNotificationID returns an id that sorts by creation time (to the
// nanosecond) followed by 64 random bits, so the feed, newest first, is a
// reverse scan of the ids.
func NewNotificationID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	rand.Read(b[8:])
	return sortable.EncodeToString(b[:])
}

// IsNotificationID reports whether s has the shape of NewNotificationID's
// ids: 26 characters of its sortable alphabet.
func IsNotificationID(s string) bool {
	if len(s) != 26 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'v') {
			return false
		}
	}
	return true
}

// NewSecret returns n random bytes in base64url, for UNSIDs, tokens and
// client secrets.
func NewSecret(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
