package tablestore

import (
	"context"
	"crypto/rand"
	"errors"
	"time"

	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/identity"
)

// tokenItem is a refresh token: PK RTOKEN#<sha256>, SK RTOKEN, expiring by TTL.
type tokenItem struct {
	PK, SK    string
	Kind      string
	Family    string
	UserID    string
	ExpiresAt time.Time
	Spent     bool
	TTL       int64
}

// A refresh-token family is the item PK RFAMILY#<id>, SK RFAMILY with attributes Kind, UserID,
// Revoked and TTL; it is only ever written with UpdateItem (see PutRefreshToken).

func tokenPK(hash string) string { return "RTOKEN#" + hash }
func familyPK(fam string) string { return "RFAMILY#" + fam }

func badRefresh() error {
	return apperr.New(apperr.Unauthorized, "invalid_refresh_token", "The refresh token is invalid, expired or already used.")
}

// PutRefreshToken implements identity.Store; the family item is created with the first token.
func (s *Store) PutRefreshToken(ctx context.Context, t identity.RefreshToken) error {
	ttl := t.ExpiresAt.Add(24 * time.Hour).Unix()
	err := s.db.WriteTx().
		Put(s.table.Put(tokenItem{PK: tokenPK(t.Hash), SK: "RTOKEN", Kind: "rtoken", Family: t.Family, UserID: t.UserID, ExpiresAt: t.ExpiresAt, TTL: ttl}).If("attribute_not_exists(PK)")).
		Update(s.table.Update("PK", familyPK(t.Family)).Range("SK", "RFAMILY").Set("Kind", "rfamily").Set("UserID", t.UserID).
			SetIfNotExists("Revoked", false).Set("TTL", ttl)).
		Run(ctx)
	return apperr.Wrap(err, "put refresh token")
}

func (s *Store) getToken(ctx context.Context, hash string) (*tokenItem, error) {
	var it tokenItem
	err := s.table.Get("PK", tokenPK(hash)).Range("SK", dynamo.Equal, "RTOKEN").Consistent(true).One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, badRefresh()
	}
	if err != nil {
		return nil, apperr.Wrap(err, "get refresh token")
	}
	return &it, nil
}

// RotateRefreshToken implements identity.Store.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash string, next identity.RefreshToken, now time.Time) (*identity.RefreshToken, error) {
	old, err := s.getToken(ctx, oldHash)
	if err != nil {
		return nil, err
	}
	if old.Spent {
		// Reuse of a spent token: someone holds a copy. Revoke the whole family.
		if err := s.revokeFamily(ctx, old.Family); err != nil {
			return nil, err
		}
		return nil, badRefresh()
	}
	if !now.Before(old.ExpiresAt) {
		return nil, badRefresh()
	}
	next.Family, next.UserID = old.Family, old.UserID
	ttl := next.ExpiresAt.Add(24 * time.Hour).Unix()
	err = s.db.WriteTx().
		Update(s.table.Update("PK", tokenPK(oldHash)).Range("SK", "RTOKEN").Set("Spent", true).If("'Spent' = ?", false)).
		Put(s.table.Put(tokenItem{PK: tokenPK(next.Hash), SK: "RTOKEN", Kind: "rtoken", Family: next.Family, UserID: next.UserID, ExpiresAt: next.ExpiresAt, TTL: ttl}).If("attribute_not_exists(PK)")).
		Update(s.table.Update("PK", familyPK(old.Family)).Range("SK", "RFAMILY").Set("TTL", ttl).If("'Revoked' = ?", false)).
		Run(ctx)
	failed := failedAt(err)
	switch {
	case err == nil:
		return &identity.RefreshToken{Hash: oldHash, Family: old.Family, UserID: old.UserID, ExpiresAt: old.ExpiresAt, Spent: true}, nil
	case failed[0] || isTxConflict(err):
		// Spent concurrently: two parties hold the token. Treat as reuse.
		if err := s.revokeFamily(ctx, old.Family); err != nil {
			return nil, err
		}
		return nil, badRefresh()
	case failed[2]:
		return nil, badRefresh()
	}
	return nil, apperr.Wrap(err, "rotate refresh token")
}

func (s *Store) revokeFamily(ctx context.Context, fam string) error {
	err := s.table.Update("PK", familyPK(fam)).Range("SK", "RFAMILY").Set("Revoked", true).Run(ctx)
	return apperr.Wrap(err, "revoke token family")
}

// RevokeFamilyOf implements identity.Store.
func (s *Store) RevokeFamilyOf(ctx context.Context, hash string) error {
	old, err := s.getToken(ctx, hash)
	if err != nil {
		return err
	}
	return s.revokeFamily(ctx, old.Family)
}

// failureItem counts failed logins of one e-mail in a window: PK LOGINFAIL#<email>.
type failureItem struct {
	PK, SK      string
	Kind        string
	Count       int
	WindowStart time.Time
	TTL         int64
}

// RecordLoginFailure implements identity.Store.
func (s *Store) RecordLoginFailure(ctx context.Context, email string, now time.Time, window time.Duration) (int, error) {
	pk := "LOGINFAIL#" + lower(email)
	start := now.Add(-window)
	var out failureItem
	// Count within the current window; a failure after the window starts a new one.
	err := s.table.Update("PK", pk).Range("SK", "LOGINFAIL").Add("Count", 1).Set("Kind", "loginfail").
		If("'WindowStart' > ?", start).Value(ctx, &out)
	if dynamo.IsCondCheckFailed(err) {
		err = s.table.Put(failureItem{PK: pk, SK: "LOGINFAIL", Kind: "loginfail", Count: 1, WindowStart: now, TTL: now.Add(window).Unix()}).Run(ctx)
		return 1, apperr.Wrap(err, "record login failure")
	}
	if err != nil {
		return 0, apperr.Wrap(err, "record login failure")
	}
	return out.Count, nil
}

// LoginFailures implements identity.Store. The window length is the one RecordLoginFailure used;
// an item older than its TTL no longer counts.
func (s *Store) LoginFailures(ctx context.Context, email string, now time.Time) (int, error) {
	var it failureItem
	err := s.table.Get("PK", "LOGINFAIL#"+lower(email)).Range("SK", dynamo.Equal, "LOGINFAIL").Consistent(true).One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, apperr.Wrap(err, "get login failures")
	}
	if now.Unix() >= it.TTL {
		return 0, nil
	}
	return it.Count, nil
}

// ResetLoginFailures implements identity.Store.
func (s *Store) ResetLoginFailures(ctx context.Context, email string) error {
	return apperr.Wrap(s.table.Delete("PK", "LOGINFAIL#"+lower(email)).Range("SK", "LOGINFAIL").Run(ctx), "reset login failures")
}

type linkItem struct {
	PK, SK string
	Kind   string
	UserID string
}

// LinkedUser implements identity.Store.
func (s *Store) LinkedUser(ctx context.Context, issuer, subject string) (string, error) {
	var it linkItem
	err := s.table.Get("PK", "IDENT#"+issuer+"#"+subject).Range("SK", dynamo.Equal, "IDENT").One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return "", apperr.NotFoundf("No linked identity.")
	}
	if err != nil {
		return "", apperr.Wrap(err, "get identity link")
	}
	return it.UserID, nil
}

// LinkIdentity implements identity.Store.
func (s *Store) LinkIdentity(ctx context.Context, issuer, subject, userID string) error {
	err := s.table.Put(linkItem{PK: "IDENT#" + issuer + "#" + subject, SK: "IDENT", Kind: "ident", UserID: userID}).Run(ctx)
	return apperr.Wrap(err, "link identity")
}

// secretItem holds a generated secret: PK SECRET#<name>.
type secretItem struct {
	PK, SK string
	Kind   string
	Value  []byte
}

// Secret returns the secret with name, creating it with gen (or 32 random bytes when gen is nil)
// on first use. Concurrent first uses agree on one value.
func (s *Store) Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	pk := "SECRET#" + name
	var it secretItem
	err := s.table.Get("PK", pk).Range("SK", dynamo.Equal, "SECRET").Consistent(true).One(ctx, &it)
	if err == nil {
		return it.Value, nil
	}
	if !errors.Is(err, dynamo.ErrNotFound) {
		return nil, apperr.Wrap(err, "get secret")
	}
	if gen == nil {
		gen = func() ([]byte, error) {
			b := make([]byte, 32)
			_, err := rand.Read(b)
			return b, err
		}
	}
	v, err := gen()
	if err != nil {
		return nil, apperr.Wrap(err, "generate secret")
	}
	err = s.table.Put(secretItem{PK: pk, SK: "SECRET", Kind: "secret", Value: v}).If("attribute_not_exists(PK)").Run(ctx)
	if dynamo.IsCondCheckFailed(err) {
		return s.Secret(ctx, name, gen)
	}
	if err != nil {
		return nil, apperr.Wrap(err, "put secret")
	}
	return v, nil
}
