// Package usagekeys says which API Gateway API key meters a caller, and what that key's value
// is, without any lookup per request.
//
// Every channel entity (the platform, each distributor, each partner) owns one API key. A caller
// is metered on the key of the nearest channel entity at or above its scope: a partner's users
// and its tenants' users on the partner's key, a distributor's users on the distributor's, the
// platform's users on the platform's. A partner's key belongs to the usage plan of its tier;
// distributors and the platform, which have no tier, are on the enterprise plan.
//
// A key's value is derived: the hex HMAC-SHA256 of the owner's id under a secret kept in the
// table, so the authorizer computes the caller's usageIdentifierKey from ids it already holds,
// and the provisioner (shared/keyprovisioner) creates exactly that value in API Gateway. Nobody
// ever sends the value: the API's key source is AUTHORIZER.
package usagekeys

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/hierarchy"
)

// SecretName is the name of the table secret (tablestore.Store.Secret) the values derive from.
const SecretName = "usage-key"

// MinSecretBytes is the shortest secret NewDeriver accepts.
const MinSecretBytes = 32

// ValuePrefix starts every key value; the rest is 64 hex digits (API Gateway wants 20 to 128
// characters).
const ValuePrefix = "cmsk"

// The usage plans: one per partner tier, named after it.
const (
	PlanStandard   = hierarchy.TierStandard
	PlanPremium    = hierarchy.TierPremium
	PlanEnterprise = hierarchy.TierEnterprise
)

// Plans lists every usage plan, cheapest first.
var Plans = []string{PlanStandard, PlanPremium, PlanEnterprise}

// Deriver computes key values. It is safe for concurrent use.
type Deriver struct {
	secret []byte
}

// NewDeriver returns a Deriver on secret; it fails when the secret is shorter than
// MinSecretBytes.
func NewDeriver(secret []byte) (*Deriver, error) {
	if len(secret) < MinSecretBytes {
		return nil, errors.New("usage key secret: too short")
	}
	return &Deriver{secret: append([]byte(nil), secret...)}, nil
}

// Value returns the API key value of a channel entity: the same for the same id and secret,
// different for every other id.
func (d *Deriver) Value(ownerID string) string {
	m := hmac.New(sha256.New, d.secret)
	m.Write([]byte("cms usage key\x00" + ownerID))
	return ValuePrefix + hex.EncodeToString(m.Sum(nil))
}

// Entity is what decides an owner's key: its id, its level and, for a partner, its tier.
type Entity struct {
	ID   string
	Type access.EntityType
	Tier string
}

// Owns reports whether an entity of type t owns a key: the platform, distributors and partners.
func Owns(t access.EntityType) bool {
	return t == access.Platform || t == access.Distributor || t == access.Partner
}

// Plan returns the usage plan of an owner: its tier for a partner (standard when the tier is
// empty or unknown, the cheapest), enterprise for a distributor or the platform, "" for anything
// that owns no key.
func Plan(e Entity) string {
	switch e.Type {
	case access.Partner:
		switch e.Tier {
		case PlanPremium, PlanEnterprise:
			return e.Tier
		}
		return PlanStandard
	case access.Distributor, access.Platform:
		return PlanEnterprise
	}
	return ""
}

// Owner returns the id of the entity whose key meters a caller: the nearest entity that owns a
// key, walking the caller's scope path up from the scope entity. path lists the ids on the
// scope path, top first (access.IDsOnPath); types gives each one's level. ok is false when no
// entity on the path owns a key (a path whose entities are unknown).
func Owner(path []string, types map[string]access.EntityType) (id string, ok bool) {
	for i := len(path) - 1; i >= 0; i-- {
		if Owns(types[path[i]]) {
			return path[i], true
		}
	}
	return "", false
}
