package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

const (
	// MinPasswordChars is the shortest password accepted (SPEC 6), counted in characters.
	MinPasswordChars = 12
	// MaxPasswordBytes is the longest password accepted, in bytes of UTF-8.
	MaxPasswordBytes = 256
)

// Argon2id parameters: OWASP's Password Storage Cheat Sheet minimum for argon2id, m=19 MiB, t=2,
// p=1, sized for a Lambda. 19 MiB per check fits beside a Go handler in the smallest useful
// function, and one lane is right because a function below 1,769 MB gets less than one vCPU.
// BenchmarkCheckPassword measures about 30 ms on one x86 vCPU; Lambda's CPU share grows with
// memory, so give the login functions 1,024 MB or more to keep a check well under 100 ms (at
// 256 MB expect several times that). The parameters are stored in each hash: raising them later
// only needs PasswordNeedsRehash at the next successful login.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonSaltBytes = 16
	argonKeyBytes  = 32
)

// Bounds on parameters read from a stored hash, so a corrupt or planted row cannot make a check
// allocate gigabytes or spin for minutes.
const (
	maxArgonMemoryKiB = 64 * 1024
	maxArgonTime      = 10
	maxArgonThreads   = 8
)

type argonParams struct {
	memory  uint32
	time    uint32
	threads uint8
}

var currentParams = argonParams{memory: argonMemoryKiB, time: argonTime, threads: argonThreads}

// dummyHash is a well-formed hash with the current parameters that no password matches in
// practice (its key is not derived from any password), checked by DummyCheck.
var dummyHash = encodePHC(currentParams, []byte("cms-dummy-salt-1"), []byte("cms-dummy-key-that-never-matches"))

// HashPassword returns an argon2id hash of pw in PHC string format,
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key> (unpadded standard base64, 16-byte random salt,
// 32-byte key). It returns ErrPasswordTooLong above MaxPasswordBytes, ErrPasswordTooShort for an
// empty password, and an error when the random source fails. It does not apply the strength
// policy: call ValidatePasswordStrength first where the policy applies.
func HashPassword(pw string) (string, error) {
	if pw == "" {
		return "", ErrPasswordTooShort
	}
	if len(pw) > MaxPasswordBytes {
		return "", ErrPasswordTooLong
	}
	salt := make([]byte, argonSaltBytes)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: password salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, currentParams.time, currentParams.memory, currentParams.threads, argonKeyBytes)
	return encodePHC(currentParams, salt, key), nil
}

// CheckPassword reports whether pw matches hash, comparing in constant time. It returns
// (false, nil) for a wrong password and (false, error wrapping ErrMalformedHash) when hash is not
// an argon2id PHC string with sane parameters.
func CheckPassword(hash, pw string) (bool, error) {
	p, salt, key, err := decodePHC(hash)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(pw), salt, p.time, p.memory, p.threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// DummyCheck spends the time of a CheckPassword with the current parameters and discards the
// result. Call it when the user does not exist, so that an unknown e-mail and a wrong password take
// the same time and answer the same way (SPEC 5). It cannot fail.
func DummyCheck(pw string) {
	_, _ = CheckPassword(dummyHash, pw)
}

// PasswordNeedsRehash reports whether hash was made with other parameters than HashPassword uses
// now (or cannot be read): after a successful login, hash the password again and store it.
func PasswordNeedsRehash(hash string) bool {
	p, salt, key, err := decodePHC(hash)
	return err != nil || p != currentParams || len(salt) != argonSaltBytes || len(key) != argonKeyBytes
}

// ValidatePasswordStrength returns nil when pw meets the policy: at least MinPasswordChars
// characters (SPEC 6) and at most MaxPasswordBytes bytes. Otherwise it returns ErrPasswordTooShort
// or ErrPasswordTooLong.
func ValidatePasswordStrength(pw string) error {
	if len(pw) > MaxPasswordBytes {
		return ErrPasswordTooLong
	}
	if utf8.RuneCountInString(pw) < MinPasswordChars {
		return ErrPasswordTooShort
	}
	return nil
}

func encodePHC(p argonParams, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// decodePHC parses $argon2id$v=19$m=M,t=T,p=P$salt$key strictly.
func decodePHC(hash string) (argonParams, []byte, []byte, error) {
	malformed := func(format string, args ...any) (argonParams, []byte, []byte, error) {
		return argonParams{}, nil, nil, fmt.Errorf("%w: %s", ErrMalformedHash, fmt.Sprintf(format, args...))
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" {
		return malformed("want 5 $-separated fields")
	}
	if parts[1] != "argon2id" {
		return malformed("algorithm %q is not argon2id", parts[1])
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return malformed("version %q is not v=%d", parts[2], argon2.Version)
	}
	var p argonParams
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return malformed("want parameters m, t and p")
	}
	for i, name := range []string{"m", "t", "p"} {
		value, ok := strings.CutPrefix(fields[i], name+"=")
		if !ok {
			return malformed("parameter %d is not %s", i, name)
		}
		n, err := strconv.ParseUint(value, 10, 32)
		if err != nil {
			return malformed("parameter %s: %v", name, err)
		}
		switch name {
		case "m":
			p.memory = uint32(n)
		case "t":
			p.time = uint32(n)
		case "p":
			if n > maxArgonThreads {
				return malformed("p=%d above %d", n, maxArgonThreads)
			}
			p.threads = uint8(n)
		}
	}
	switch {
	case p.threads < 1:
		return malformed("p=%d below 1", p.threads)
	case p.time < 1 || p.time > maxArgonTime:
		return malformed("t=%d outside 1..%d", p.time, maxArgonTime)
	case p.memory < 8*uint32(p.threads) || p.memory > maxArgonMemoryKiB:
		return malformed("m=%d outside %d..%d", p.memory, 8*uint32(p.threads), maxArgonMemoryKiB)
	}
	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return malformed("salt must be 8 to 64 bytes of unpadded base64")
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return malformed("key must be 16 to 64 bytes of unpadded base64")
	}
	return p, salt, key, nil
}
