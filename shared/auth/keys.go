package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/MicahParks/jwkset"
)

// kidBytes is the entropy of a generated key id: 128 bits make collisions irrelevant.
const kidBytes = 16

// SigningKey is one ES256 (ECDSA P-256) key that signs platform access tokens. A key set is an
// ordered slice, newest first: the first key signs, all of them verify (rotation: prepend a new key,
// and drop an old one only once every token it signed has expired).
type SigningKey struct {
	// ID is the key id: the JWT header "kid" and the JWK "kid". Random and URL-safe when generated.
	ID string
	// Private is the P-256 private key.
	Private *ecdsa.PrivateKey
	// CreatedAt is when the key was generated (UTC, whole seconds); rotation policies read it.
	CreatedAt time.Time
}

// GenerateSigningKey returns a new P-256 key with a random URL-safe kid. It returns an error only
// when the system's random source fails.
func GenerateSigningKey() (SigningKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return SigningKey{}, fmt.Errorf("auth: generate signing key: %w", err)
	}
	kid, err := randomURLSafe(kidBytes)
	if err != nil {
		return SigningKey{}, fmt.Errorf("auth: generate key id: %w", err)
	}
	return SigningKey{ID: kid, Private: priv, CreatedAt: time.Now().UTC().Truncate(time.Second)}, nil
}

// storedKey is the serialized form of a SigningKey: a private EC JWK (RFC 7517/7518) plus a
// createdAt member, which JWK readers that do not know it ignore (RFC 7517 section 4).
type storedKey struct {
	jwkset.JWKMarshal
	CreatedAt time.Time `json:"createdAt,omitzero"`
}

type storedKeySet struct {
	Keys []storedKey `json:"keys"`
}

// MarshalSigningKeys returns the keys, in order, as a JSON Web Key Set holding the PRIVATE keys
// (each with kid, alg ES256, use sig and a createdAt member), for storage in a secret or an
// encrypted table item. Never serve it: PublicJWKS is the public form. It returns an error wrapping
// ErrInvalidKey when the slice is empty or a key is unusable (see ValidateSigningKeys).
func MarshalSigningKeys(keys []SigningKey) ([]byte, error) {
	if err := ValidateSigningKeys(keys); err != nil {
		return nil, err
	}
	set := storedKeySet{Keys: make([]storedKey, 0, len(keys))}
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.Private, jwkOptions(k.ID, true))
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %w", ErrInvalidKey, k.ID, err)
		}
		set.Keys = append(set.Keys, storedKey{JWKMarshal: jwk.Marshal(), CreatedAt: k.CreatedAt})
	}
	return json.Marshal(set)
}

// UnmarshalSigningKeys parses what MarshalSigningKeys produced and returns the keys in the same
// order. It returns an error wrapping ErrInvalidKey when the data is not such a set, is empty, or
// holds a key that is not a consistent P-256 private key with a unique kid.
func UnmarshalSigningKeys(data []byte) ([]SigningKey, error) {
	var set storedKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%w: decode key set: %w", ErrInvalidKey, err)
	}
	keys := make([]SigningKey, 0, len(set.Keys))
	for i, sk := range set.Keys {
		k, err := parseStoredKey(sk)
		if err != nil {
			return nil, fmt.Errorf("%w: key %d (%q): %w", ErrInvalidKey, i, sk.KID, err)
		}
		keys = append(keys, k)
	}
	if err := ValidateSigningKeys(keys); err != nil {
		return nil, err
	}
	return keys, nil
}

func parseStoredKey(sk storedKey) (SigningKey, error) {
	if sk.KTY != jwkset.KtyEC || sk.CRV != jwkset.CrvP256 {
		return SigningKey{}, fmt.Errorf("want an EC P-256 key, got kty %q crv %q", sk.KTY, sk.CRV)
	}
	if sk.ALG != "" && sk.ALG != jwkset.AlgES256 {
		return SigningKey{}, fmt.Errorf("want alg ES256, got %q", sk.ALG)
	}
	if sk.D == "" {
		return SigningKey{}, errors.New("private part (d) missing")
	}
	// jwkset checks the JWK's shape; the key itself is rebuilt from the private scalar so that the
	// public point is derived, never trusted, and then compared with the stored x and y.
	jwk, err := jwkset.NewJWKFromMarshal(sk.JWKMarshal, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
	if err != nil {
		return SigningKey{}, err
	}
	stored, ok := jwk.Key().(*ecdsa.PrivateKey)
	if !ok {
		return SigningKey{}, fmt.Errorf("want an ECDSA private key, got %T", jwk.Key())
	}
	d, err := base64.RawURLEncoding.DecodeString(sk.D)
	if err != nil {
		return SigningKey{}, fmt.Errorf("decode d: %w", err)
	}
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		return SigningKey{}, fmt.Errorf("parse d: %w", err)
	}
	if !priv.PublicKey.Equal(&stored.PublicKey) {
		return SigningKey{}, errors.New("x and y do not match d")
	}
	return SigningKey{ID: sk.KID, Private: priv, CreatedAt: sk.CreatedAt}, nil
}

// PublicJWKS returns the JSON Web Key Set served at /.well-known/jwks.json: the public part of
// every key, in order, each with kid, alg ES256 and use sig. It returns an error wrapping
// ErrInvalidKey when the slice is empty or a key is unusable (see ValidateSigningKeys).
func PublicJWKS(keys []SigningKey) ([]byte, error) {
	if err := ValidateSigningKeys(keys); err != nil {
		return nil, err
	}
	set := jwkset.JWKSMarshal{Keys: make([]jwkset.JWKMarshal, 0, len(keys))}
	for _, k := range keys {
		// Built from the public key: the private scalar cannot reach this output whatever the options.
		jwk, err := jwkset.NewJWKFromKey(&k.Private.PublicKey, jwkOptions(k.ID, false))
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %w", ErrInvalidKey, k.ID, err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	return json.Marshal(set)
}

// ValidateSigningKeys returns nil when keys is a usable key set: not empty, every kid present,
// URL-safe and unique, every key a valid P-256 private key. Otherwise it returns an error wrapping
// ErrInvalidKey that lists every problem.
func ValidateSigningKeys(keys []SigningKey) error {
	if len(keys) == 0 {
		return fmt.Errorf("%w: no signing keys", ErrInvalidKey)
	}
	var errs []error
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		switch {
		case k.ID == "":
			errs = append(errs, fmt.Errorf("key %d: kid missing", i))
		case !isURLSafe(k.ID):
			errs = append(errs, fmt.Errorf("key %d: kid is not URL-safe", i))
		case seen[k.ID]:
			errs = append(errs, fmt.Errorf("key %d: kid %q used twice", i, k.ID))
		}
		seen[k.ID] = true
		if err := checkP256(k.Private); err != nil {
			errs = append(errs, fmt.Errorf("key %d (%q): %w", i, k.ID, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidKey, errors.Join(errs...))
	}
	return nil
}

func checkP256(priv *ecdsa.PrivateKey) error {
	if priv == nil {
		return errors.New("private key missing")
	}
	if priv.Curve != elliptic.P256() {
		return errors.New("not a P-256 key")
	}
	if _, err := priv.Bytes(); err != nil {
		return err
	}
	if _, err := priv.PublicKey.Bytes(); err != nil {
		return err
	}
	return nil
}

func jwkOptions(kid string, private bool) jwkset.JWKOptions {
	return jwkset.JWKOptions{
		Marshal: jwkset.JWKMarshalOptions{Private: private},
		Metadata: jwkset.JWKMetadataOptions{
			ALG: jwkset.AlgES256,
			KID: kid,
			USE: jwkset.UseSig,
		},
	}
}

// randomURLSafe returns n bytes from crypto/rand, base64url-encoded without padding.
func randomURLSafe(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// isURLSafe reports whether s is non-empty and made only of RFC 3986 unreserved characters.
func isURLSafe(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.', r == '~':
		default:
			return false
		}
	}
	return true
}
