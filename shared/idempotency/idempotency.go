// Package idempotency defines how a POST's first response is kept for 24 hours so that the same
// Idempotency-Key with the same body replays it (SPEC 4).
package idempotency

import (
	"context"
	"time"
)

// TTL is how long a key is remembered.
const TTL = 24 * time.Hour

// PendingTimeout is how long a claim may stay pending. A request whose function died between
// the claim and its answer (timeout, crash) never completes nor releases its key; after this
// long the key can be claimed again. It is longer than any HTTP function may run (API Gateway
// ends an integration after 29 s, and no function's timeout is longer), so a claim still
// pending past it belongs to a request that can no longer answer.
const PendingTimeout = time.Minute

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
	// key is new, expired, or pending since more than PendingTimeout before now (the caller runs
	// the request and then calls Complete or Release), or the record already held for the key.
	Claim(ctx context.Context, key, bodyHash string, now time.Time) (*Record, error)
	// Complete stores the response of the request that claimed key.
	Complete(ctx context.Context, key string, rec Record, now time.Time) error
	// Release forgets a claim whose request failed before producing a response worth replaying.
	Release(ctx context.Context, key string) error
}
