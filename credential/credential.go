// Package credential makes and checks secrets: argon2id password hashes, and
// the SHA-256 hashes under which bearer tokens and client secrets are stored.
package credential

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: OWASP's minimum recommendation (19 MiB, 2 passes),
// which keeps a sign-in near 30 ms on a small on-prem machine.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPassword returns an encoded argon2id hash of pw with a random salt.
func HashPassword(pw string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := deriveKey(pw, salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// CheckPassword reports whether pw matches an encoded hash.
func CheckPassword(encoded, pw string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 1<<20 || t > 16 || p == 0 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := deriveKey(pw, salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// derivations counts the argon2id runs of this process (Derivations).
var derivations atomic.Uint64

// deriveKey is the one place that runs argon2id, so that every hash is
// counted and the memory it leaves behind is handed back (trim.go).
func deriveKey(pw string, salt []byte, t, m uint32, p uint8, keyLen uint32) []byte {
	derivations.Add(1)
	hashing.begin()
	defer hashing.end()
	return argon2.IDKey([]byte(pw), salt, t, m, p, keyLen)
}

// Derivations is how many argon2id hashes this process has computed, each
// costing argonMemory KiB and tens of milliseconds.
func Derivations() uint64 { return derivations.Load() }

var (
	decoyOnce sync.Once
	decoy     string
)

// DecoyHash is a password hash of no account, for checking a sign-in of an
// unknown user at the cost of a known one. It is made at its first use,
// not when the package loads: a hash at start-up costs every process that
// imports the package (the CLI, tests) 19 MiB and tens of milliseconds, and
// leaves the heap grown before the server has done anything.
func DecoyHash() string {
	decoyOnce.Do(func() { decoy = HashPassword("herald-timing-equaliser") })
	return decoy
}

// HashToken is the storage key of a high-entropy secret (a bearer token or a
// client secret): a plain SHA-256 suffices, since such secrets cannot be
// guessed, and it keeps authentication to one hash per request.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// SameHash compares two hex hashes in constant time.
func SameHash(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
