package tablestore

import (
	"context"
	"errors"
	"time"

	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/idempotency"
)

// idemItem remembers one Idempotency-Key: PK IDEM#<caller>#<key>, expiring by TTL. ClaimedAt
// (epoch milliseconds) dates a pending claim.
type idemItem struct {
	PK, SK    string
	Kind      string
	BodyHash  string
	Pending   bool
	ClaimedAt int64  `dynamo:",omitempty"`
	Status    int    `dynamo:",omitempty"`
	Body      []byte `dynamo:",omitempty"`
	TTL       int64
}

// Claim implements idempotency.Store. The put wins over an absent key, an expired one (TTL
// deletes lazily) and a claim left pending for longer than idempotency.PendingTimeout; two
// requests taking over one stale claim race on the same condition and only one wins.
func (s *Store) Claim(ctx context.Context, key, bodyHash string, now time.Time) (*idempotency.Record, error) {
	it := idemItem{PK: "IDEM#" + key, SK: "IDEM", Kind: "idem", BodyHash: bodyHash, Pending: true, ClaimedAt: now.UnixMilli(),
		TTL: now.Add(idempotency.TTL).Unix()}
	err := s.table.Put(it).If("attribute_not_exists(PK) OR 'TTL' < ? OR ('Pending' = ? AND 'ClaimedAt' < ?)",
		now.Unix(), true, now.Add(-idempotency.PendingTimeout).UnixMilli()).Run(ctx)
	if err == nil {
		return nil, nil
	}
	if !dynamo.IsCondCheckFailed(err) {
		return nil, apperr.Wrap(err, "claim idempotency key")
	}
	var cur idemItem
	err = s.table.Get("PK", it.PK).Range("SK", dynamo.Equal, "IDEM").Consistent(true).One(ctx, &cur)
	if errors.Is(err, dynamo.ErrNotFound) {
		return s.Claim(ctx, key, bodyHash, now) // released meanwhile
	}
	if err != nil {
		return nil, apperr.Wrap(err, "read idempotency key")
	}
	return &idempotency.Record{BodyHash: cur.BodyHash, Pending: cur.Pending, Status: cur.Status, Body: cur.Body}, nil
}

// Complete implements idempotency.Store.
func (s *Store) Complete(ctx context.Context, key string, rec idempotency.Record, now time.Time) error {
	it := idemItem{PK: "IDEM#" + key, SK: "IDEM", Kind: "idem", BodyHash: rec.BodyHash, Status: rec.Status, Body: rec.Body, TTL: now.Add(idempotency.TTL).Unix()}
	return apperr.Wrap(s.table.Put(it).Run(ctx), "complete idempotency key")
}

// Release implements idempotency.Store.
func (s *Store) Release(ctx context.Context, key string) error {
	return apperr.Wrap(s.table.Delete("PK", "IDEM#"+key).Range("SK", "IDEM").Run(ctx), "release idempotency key")
}
