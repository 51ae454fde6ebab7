package auth_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/channelbilling/cms/shared/auth"
)

var phc = regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)

// MustHash hashes pw or fails the test.
func MustHash(tb testing.TB, pw string) string {
	tb.Helper()
	h, err := auth.HashPassword(pw)
	if err != nil {
		tb.Fatalf("HashPassword: %v", err)
	}
	return h
}

func TestHashPassword(t *testing.T) {
	const pw = "correct horse battery staple"
	a, b := MustHash(t, pw), MustHash(t, pw)
	for _, h := range []string{a, b} {
		if !phc.MatchString(h) {
			t.Errorf("hash %q is not a PHC argon2id string with m=19456,t=2,p=1", h)
		}
		if strings.Contains(h, pw) {
			t.Errorf("hash %q contains the password", h)
		}
	}
	if a == b {
		t.Error("two hashes of one password are equal: salt not random")
	}
	for _, tc := range []struct {
		name    string
		pw      string
		wantErr error
	}{
		{"ErrEmpty", "", auth.ErrPasswordTooShort},
		{"ErrTooLong", strings.Repeat("a", auth.MaxPasswordBytes+1), auth.ErrPasswordTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := auth.HashPassword(tc.pw); !errors.Is(err, tc.wantErr) {
				t.Fatalf("HashPassword: got %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestCheckPassword(t *testing.T) {
	const pw = "correct horse battery staple"
	hash := MustHash(t, pw)
	// Reference vectors from the argon2 reference implementation (libargon2 20171227, through
	// argon2id_hash_encoded): HashPassword's parameters, and OWASP's alternative m=46 MiB, t=1 with
	// a non-ASCII password (its UTF-8 bytes are hashed).
	const (
		reference      = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$K13EBUiG7JV+9ZxztmHFTdb7J0WQsnj2V8bZaqyPptE"
		referenceOWASP = "$argon2id$v=19$m=47104,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$pQqYm4W0SwrEOpGF42UD3FGdONLpqqN140UnRqBuJk0"
	)
	for _, tc := range []struct {
		name      string
		hash, pw  string
		wantMatch bool
		wantErr   error
	}{
		{"OK", hash, pw, true, nil},
		{"OK_ReferenceVector", reference, "password", true, nil},
		{"OK_ReferenceVectorOtherParameters", referenceOWASP, "pässwörd ünïcode", true, nil},
		{"ErrWrongPassword", hash, "correct horse battery stapler", false, nil},
		{"ErrEmptyPassword", hash, "", false, nil},
		{"ErrCaseMatters", hash, strings.ToUpper(pw), false, nil},
		{"ErrEmptyHash", "", pw, false, auth.ErrMalformedHash},
		{"ErrBcryptHash", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy", pw, false, auth.ErrMalformedHash},
		{"ErrArgon2i", strings.Replace(hash, "argon2id", "argon2i", 1), pw, false, auth.ErrMalformedHash},
		{"ErrVersion16", strings.Replace(hash, "v=19", "v=16", 1), pw, false, auth.ErrMalformedHash},
		{"ErrHugeMemory", strings.Replace(hash, "m=19456", "m=4194304", 1), pw, false, auth.ErrMalformedHash},
		{"ErrHugeTime", strings.Replace(hash, "t=2", "t=100000", 1), pw, false, auth.ErrMalformedHash},
		{"ErrZeroThreads", strings.Replace(hash, "p=1", "p=0", 1), pw, false, auth.ErrMalformedHash},
		{"ErrParamsReordered", strings.Replace(hash, "m=19456,t=2", "t=2,m=19456", 1), pw, false, auth.ErrMalformedHash},
		{"ErrBadSalt", strings.Replace(hash, "$", "$!", 4), pw, false, auth.ErrMalformedHash},
		{"ErrTruncatedKey", hash[:len(hash)-30], pw, false, auth.ErrMalformedHash},
	} {
		t.Run(tc.name, func(t *testing.T) {
			match, err := auth.CheckPassword(tc.hash, tc.pw)
			if match != tc.wantMatch || !errors.Is(err, tc.wantErr) {
				t.Fatalf("CheckPassword: got %v, %v; want %v, %v", match, err, tc.wantMatch, tc.wantErr)
			}
		})
	}
}

func TestPasswordNeedsRehash(t *testing.T) {
	hash := MustHash(t, "correct horse battery staple")
	for _, tc := range []struct {
		name string
		hash string
		want bool
	}{
		{"OK_Current", hash, false},
		{"OK_OlderParameters", strings.Replace(hash, "t=2", "t=1", 1), true},
		{"OK_Unreadable", "$2a$10$abc", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := auth.PasswordNeedsRehash(tc.hash); got != tc.want {
				t.Fatalf("PasswordNeedsRehash: got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestValidatePasswordStrength(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pw      string
		wantErr error
	}{
		{"OK_12Chars", "abcdefghijkl", nil},
		{"OK_12MultibyteChars", "ééééééééééé€", nil},
		{"OK_MaxBytes", strings.Repeat("a", auth.MaxPasswordBytes), nil},
		{"ErrEmpty", "", auth.ErrPasswordTooShort},
		{"ErrElevenChars", "abcdefghijk", auth.ErrPasswordTooShort},
		{"ErrElevenMultibyteChars", "ééééééééééé", auth.ErrPasswordTooShort},
		{"ErrTooLong", strings.Repeat("a", auth.MaxPasswordBytes+1), auth.ErrPasswordTooLong},
		{"ErrTooLongMultibyte", strings.Repeat("é", auth.MaxPasswordBytes/2+1), auth.ErrPasswordTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := auth.ValidatePasswordStrength(tc.pw); !errors.Is(err, tc.wantErr) {
				t.Fatalf("ValidatePasswordStrength: got %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func BenchmarkHashPassword(b *testing.B) {
	for b.Loop() {
		if _, err := auth.HashPassword("correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckPassword(b *testing.B) {
	hash := MustHash(b, "correct horse battery staple")
	for b.Loop() {
		if _, err := auth.CheckPassword(hash, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDummyCheck(b *testing.B) {
	for b.Loop() {
		auth.DummyCheck("correct horse battery staple")
	}
}
