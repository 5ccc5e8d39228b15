package credential

import "testing"

func TestPasswordHashRoundTrip(t *testing.T) {
	h := HashPassword("correct horse")
	if !CheckPassword(h, "correct horse") {
		t.Fatal("the right password was refused")
	}
	if CheckPassword(h, "correct horsE") {
		t.Fatal("a wrong password was accepted")
	}
	if HashPassword("correct horse") == h {
		t.Fatal("two hashes of one password share a salt")
	}
	for _, bad := range []string{"", "$argon2id$", "$bcrypt$v=1$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=99999999,t=1,p=1$AA$AA"} {
		if CheckPassword(bad, "x") {
			t.Fatalf("malformed hash %q accepted", bad)
		}
	}
}

func TestHashTokenIsStable(t *testing.T) {
	if HashToken("abc") != HashToken("abc") || HashToken("abc") == HashToken("abd") {
		t.Fatal("HashToken must be a function of its input")
	}
	if !SameHash(HashToken("x"), HashToken("x")) || SameHash(HashToken("x"), HashToken("y")) {
		t.Fatal("SameHash disagrees with equality")
	}
}
