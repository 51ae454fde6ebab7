package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"testing"

	"github.com/channelbilling/cms/shared/auth"
)

var urlSafe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func TestGenerateSigningKey(t *testing.T) {
	a, b := MustSigningKey(t), MustSigningKey(t)
	for _, k := range []auth.SigningKey{a, b} {
		if !urlSafe.MatchString(k.ID) || len(k.ID) < 22 {
			t.Errorf("kid %q: want >= 22 URL-safe characters", k.ID)
		}
		if k.Private == nil || k.Private.Curve != elliptic.P256() {
			t.Errorf("key %q: want a P-256 private key", k.ID)
		}
		if k.CreatedAt.IsZero() {
			t.Errorf("key %q: CreatedAt not set", k.ID)
		}
	}
	if a.ID == b.ID {
		t.Errorf("two keys share kid %q", a.ID)
	}
}

// jwkMembers decodes a JWKS into its keys' members.
func jwkMembers(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		t.Fatalf("decode JWKS: %v", err)
	}
	return set.Keys
}

func TestPublicJWKS(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		keys := []auth.SigningKey{MustSigningKey(t), MustSigningKey(t)}
		members := jwkMembers(t, MustJWKS(t, keys...))
		if len(members) != len(keys) {
			t.Fatalf("got %d keys, want %d", len(members), len(keys))
		}
		for i, m := range members {
			want := map[string]string{"kid": keys[i].ID, "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig"}
			for name, value := range want {
				if m[name] != value {
					t.Errorf("key %d: %s = %v, want %q", i, name, m[name], value)
				}
			}
			var names []string
			for name := range m {
				names = append(names, name)
			}
			slices.Sort(names)
			if want := []string{"alg", "crv", "kid", "kty", "use", "x", "y"}; !slices.Equal(names, want) {
				t.Errorf("key %d: members %v, want exactly %v (public parts only)", i, names, want)
			}
		}
	})

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := MustSigningKey(t)
	for _, tc := range []struct {
		name string
		keys []auth.SigningKey
	}{
		{"ErrNoKeys", nil},
		{"ErrDuplicateKid", []auth.SigningKey{k, k}},
		{"ErrNoKid", []auth.SigningKey{{Private: k.Private}}},
		{"ErrKidNotURLSafe", []auth.SigningKey{{ID: "a/b", Private: k.Private}}},
		{"ErrNoPrivateKey", []auth.SigningKey{{ID: "k1"}}},
		{"ErrNotP256", []auth.SigningKey{{ID: "k1", Private: p384}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := auth.PublicJWKS(tc.keys); !errors.Is(err, auth.ErrInvalidKey) {
				t.Fatalf("PublicJWKS: got %v, want ErrInvalidKey", err)
			}
		})
	}
}

func TestMarshalSigningKeys(t *testing.T) {
	keys := []auth.SigningKey{MustSigningKey(t), MustSigningKey(t)}
	data, err := auth.MarshalSigningKeys(keys)
	if err != nil {
		t.Fatalf("MarshalSigningKeys: %v", err)
	}

	t.Run("OK", func(t *testing.T) {
		got, err := auth.UnmarshalSigningKeys(data)
		if err != nil {
			t.Fatalf("UnmarshalSigningKeys: %v", err)
		}
		if len(got) != len(keys) {
			t.Fatalf("got %d keys, want %d", len(got), len(keys))
		}
		for i := range keys {
			if got[i].ID != keys[i].ID || !got[i].CreatedAt.Equal(keys[i].CreatedAt) || !got[i].Private.Equal(keys[i].Private) {
				t.Errorf("key %d: got %q %v, want %q %v (and the same private key)", i, got[i].ID, got[i].CreatedAt, keys[i].ID, keys[i].CreatedAt)
			}
		}
		// A token signed by an unmarshalled key verifies against the original public keys.
		tok := MustIssue(t, MustIssuer(t, got, nil))
		if _, err := MustVerifier(t, keys...).Verify(tok); err != nil {
			t.Errorf("Verify: %v", err)
		}
	})

	// edit returns data with the members of key i changed by f.
	edit := func(t *testing.T, f func(keys []map[string]any) []map[string]any) []byte {
		t.Helper()
		members := f(jwkMembers(t, data))
		out, err := json.Marshal(map[string]any{"keys": members})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		data func(t *testing.T) []byte
	}{
		{"ErrNotJSON", func(*testing.T) []byte { return []byte("-----BEGIN EC PRIVATE KEY-----") }},
		{"ErrEmptySet", func(*testing.T) []byte { return []byte(`{"keys":[]}`) }},
		{"ErrPublicOnly", func(t *testing.T) []byte { return MustJWKS(t, keys...) }},
		{"ErrMismatchedPrivatePart", func(t *testing.T) []byte {
			return edit(t, func(k []map[string]any) []map[string]any { k[0]["d"] = k[1]["d"]; return k })
		}},
		{"ErrDuplicateKid", func(t *testing.T) []byte {
			return edit(t, func(k []map[string]any) []map[string]any { k[1]["kid"] = k[0]["kid"]; return k })
		}},
		{"ErrNoKid", func(t *testing.T) []byte {
			return edit(t, func(k []map[string]any) []map[string]any { delete(k[0], "kid"); return k })
		}},
		{"ErrWrongAlg", func(t *testing.T) []byte {
			return edit(t, func(k []map[string]any) []map[string]any { k[0]["alg"] = "HS256"; return k })
		}},
		{"ErrNotP256", func(t *testing.T) []byte {
			return edit(t, func(k []map[string]any) []map[string]any { k[0]["crv"] = "P-384"; return k })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := auth.UnmarshalSigningKeys(tc.data(t)); !errors.Is(err, auth.ErrInvalidKey) {
				t.Fatalf("UnmarshalSigningKeys: got %v, want ErrInvalidKey", err)
			}
		})
	}
}
