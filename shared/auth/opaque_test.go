package auth_test

import (
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"github.com/channelbilling/cms/shared/auth"
)

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestNewOpaqueToken(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prefix string
		want   *regexp.Regexp
	}{
		{"OK_Prefixed", "rt", regexp.MustCompile(`^rt_[A-Za-z0-9_-]{43}$`)},
		{"OK_NoPrefix", "", regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 1000
			plains, hashes := make(map[string]bool, n), make(map[string]bool, n)
			for range n {
				plain, hash, err := auth.NewOpaqueToken(tc.prefix)
				if err != nil {
					t.Fatalf("NewOpaqueToken: %v", err)
				}
				if !tc.want.MatchString(plain) {
					t.Fatalf("token %q does not match %v", plain, tc.want)
				}
				body := plain
				if tc.prefix != "" {
					body = strings.TrimPrefix(plain, tc.prefix+"_")
				}
				if raw, err := base64.RawURLEncoding.DecodeString(body); err != nil || len(raw) < 32 {
					t.Fatalf("token %q: want >= 32 random bytes, got %d (%v)", plain, len(raw), err)
				}
				if hash != auth.HashOpaqueToken(plain) || !sha256Hex.MatchString(hash) {
					t.Fatalf("hash %q: want HashOpaqueToken(plain), 64 hex digits", hash)
				}
				if plains[plain] || hashes[hash] {
					t.Fatalf("token or hash repeated after %d draws", len(plains))
				}
				plains[plain], hashes[hash] = true, true
			}
		})
	}
	for _, tc := range []struct {
		name   string
		prefix string
	}{
		{"ErrUnderscore", "r_t"},
		{"ErrSpace", "r t"},
		{"ErrNonASCII", "rté"},
		{"ErrTooLong", "abcdefghijklmnopq"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := auth.NewOpaqueToken(tc.prefix); err == nil {
				t.Fatal("NewOpaqueToken: got nil error")
			}
		})
	}
}

func TestHashOpaqueToken(t *testing.T) {
	for _, tc := range []struct {
		name, plain, want string
	}{
		// FIPS 180-2 test vector.
		{"OK_Vector", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		// sha256sum of "rt_abc".
		{"OK_PrefixCounts", "rt_abc", "069d93dc853db1a9c58a1b4ee4bbb256fe68981275e4c98518f241b370461633"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := auth.HashOpaqueToken(tc.plain); got != tc.want {
				t.Fatalf("HashOpaqueToken(%q) = %s, want %s", tc.plain, got, tc.want)
			}
		})
	}
}
