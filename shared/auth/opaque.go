package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// opaqueTokenBytes is the entropy of an opaque token: 256 bits from crypto/rand.
const opaqueTokenBytes = 32

// maxPrefixLen bounds NewOpaqueToken's prefix.
const maxPrefixLen = 16

// NewOpaqueToken returns a new opaque token (refresh token, invitation, API key) and the hash to
// store in its place. plain is prefix + "_" + 43 base64url characters carrying 256 random bits
// (just the 43 characters when prefix is empty); show it once and never store or log it. The
// prefix, which tells token kinds apart to humans and secret scanners, must be at most 16 ASCII
// letters or digits. It returns an error for a bad prefix or when the random source fails.
func NewOpaqueToken(prefix string) (plain string, hash string, err error) {
	if len(prefix) > maxPrefixLen || !isAlphanumeric(prefix) {
		return "", "", fmt.Errorf("auth: token prefix %q: want at most %d ASCII letters or digits", prefix, maxPrefixLen)
	}
	body, err := randomURLSafe(opaqueTokenBytes)
	if err != nil {
		return "", "", fmt.Errorf("auth: opaque token: %w", err)
	}
	plain = body
	if prefix != "" {
		plain = prefix + "_" + body
	}
	return plain, HashOpaqueToken(plain), nil
}

// HashOpaqueToken returns the lowercase hex SHA-256 of plain (prefix included): the value stored
// and looked up. It cannot fail.
//
// A fast unsalted hash is right here, unlike for passwords: the input carries 256 random bits, so
// guessing it from the hash is as hopeless as guessing the token itself, and a slow or salted hash
// (argon2) would add nothing but latency and would prevent looking the token up by its hash.
func HashOpaqueToken(plain string) string {
	sum := sha256.Sum256([]byte(plain))
	return hex.EncodeToString(sum[:])
}

func isAlphanumeric(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
