// Package idempotency defines how a POST's first response is kept for 24 hours so that the same
// Idempotency-Key with the same body replays it (SPEC 4).
package idempotency

import (
	"context"
	"time"
)

// TTL is how long a key is remembered.
const TTL = 24 * time.Hour

// Record is what is remembered for one key. Pending is true between the claim and the end of
// the first request.
type Record struct {
	BodyHash string
	Pending  bool
	Status   int
	Body     []byte
}

// Store remembers keys.
type Store interface {
	// Claim reserves key for a request whose body hashes to bodyHash. It returns nil when the
	// key is new (the caller runs the request and then calls Complete or Release), or the record
	// already held for the key.
	Claim(ctx context.Context, key, bodyHash string, now time.Time) (*Record, error)
	// Complete stores the response of the request that claimed key.
	Complete(ctx context.Context, key string, rec Record, now time.Time) error
	// Release forgets a claim whose request failed before producing a response worth replaying.
	Release(ctx context.Context, key string) error
}
