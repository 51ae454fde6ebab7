// Package tablestore is the DynamoDB adapter: one table, single-table design, through
// guregu/dynamo. Item structs live here only; they convert to and from the domain types at the
// edge. docs/data-model.md lists every access pattern with its key condition and index.
package tablestore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/outbox"
)

// Index and attribute names of the table.
const (
	GSI1    = "GSI1"
	TTLAttr = "TTL"
)

// keys is the key schema of the table; CreateTable reads its tags.
type keys struct {
	PK     string `dynamo:"PK,hash"`
	SK     string `dynamo:"SK,range"`
	GSI1PK string `dynamo:"GSI1PK" index:"GSI1,hash"`
	GSI1SK string `dynamo:"GSI1SK" index:"GSI1,range"`
}

// Store implements the domain stores on one DynamoDB table.
type Store struct {
	db    *dynamo.DB
	table dynamo.Table
	now   func() time.Time
}

// New returns a Store on the named table.
func New(db *dynamo.DB, table string) *Store {
	return &Store{db: db, table: db.Table(table), now: time.Now}
}

// NewFromConfig returns a Store on the named table using an AWS configuration and optional
// DynamoDB client options (such as a base endpoint). The client retries with NewRetryer (also
// transactions cancelled by a TransactionConflict); opts come after it and may replace it. Every
// function and the local runner build their store here.
func NewFromConfig(cfg aws.Config, table string, opts ...func(*dynamodb.Options)) *Store {
	return New(dynamo.New(cfg, append([]func(*dynamodb.Options){withRetryer}, opts...)...), table)
}

// DB returns the underlying guregu/dynamo handle, for the stores of other packages.
func (s *Store) DB() *dynamo.DB { return s.db }

// Table returns the table handle.
func (s *Store) Table() dynamo.Table { return s.table }

// CreateTable creates the table with its index, stream and TTL, and waits until it is active. It
// is used by the local stack and the tests; in AWS the CDK stack creates the table.
// It does nothing when the table exists.
func CreateTable(ctx context.Context, db *dynamo.DB, name string) error {
	if _, err := db.Table(name).Describe().Run(ctx); err == nil {
		return nil
	}
	err := db.CreateTable(name, keys{}).
		OnDemand(true).
		Stream(dynamo.NewAndOldImagesView).
		Project(GSI1, dynamo.AllProjection).
		Wait(ctx)
	if err != nil {
		var inUse *types.ResourceInUseException
		if errors.As(err, &inUse) {
			return nil
		}
		return fmt.Errorf("create table %s: %w", name, err)
	}
	if err := db.Table(name).UpdateTTL(TTLAttr, true).Run(ctx); err != nil {
		return fmt.Errorf("enable ttl on %s: %w", name, err)
	}
	return nil
}

// eventItem is an outbox event, written in the transaction of the change that caused it.
type eventItem struct {
	PK     string `dynamo:"PK"`
	SK     string `dynamo:"SK"`
	Kind   string
	Type   string
	Time   string
	Path   string
	Detail string
	TTL    int64 `dynamo:",omitempty"`
}

// outboxRetention is how long an event item stays in the table after it was written; the stream
// publishes it long before.
const outboxRetention = 7 * 24 * time.Hour

func eventPut(t dynamo.Table, e outbox.Event) *dynamo.Put {
	return t.Put(eventRecord(e)).If("attribute_not_exists(PK)")
}

// eventRecord is the item of an outbox event; OutboxEvent (stream.go) reads it back from the
// table's stream.
func eventRecord(e outbox.Event) eventItem {
	return eventItem{
		PK: eventPKPrefix + e.ID, SK: eventSK, Kind: eventKind, Type: e.Type, Time: e.Time.Format(time.RFC3339Nano),
		Path: e.Path, Detail: string(e.Detail), TTL: e.Time.Add(outboxRetention).Unix(),
	}
}

// Events returns the outbox events of one type still in the table, oldest first. The publisher
// reads the stream instead; this exists for tests and the local tooling.
func (s *Store) Events(ctx context.Context, typ string) ([]outbox.Event, error) {
	var items []eventItem
	err := s.table.Scan().Filter("'Kind' = ? AND 'Type' = ?", "event", typ).All(ctx, &items)
	if err != nil {
		return nil, apperr.Wrap(err, "scan events")
	}
	out := make([]outbox.Event, 0, len(items))
	for _, it := range items {
		tm, _ := time.Parse(time.RFC3339Nano, it.Time)
		out = append(out, outbox.Event{ID: it.PK[len("EVENT#"):], Type: it.Type, Time: tm, Path: it.Path, Detail: []byte(it.Detail)})
	}
	sortEvents(out)
	return out, nil
}

// failedAt returns the indexes of the transaction items whose condition failed.
func failedAt(err error) map[int]bool {
	var txe *types.TransactionCanceledException
	if !errors.As(err, &txe) {
		return nil
	}
	out := map[int]bool{}
	for i, r := range txe.CancellationReasons {
		if r.Code != nil && *r.Code == "ConditionalCheckFailed" {
			out[i] = true
		}
	}
	return out
}

// isTxConflict reports a transaction cancelled because another transaction touched its items.
func isTxConflict(err error) bool {
	var txe *types.TransactionCanceledException
	if !errors.As(err, &txe) {
		return false
	}
	for _, r := range txe.CancellationReasons {
		if r.Code != nil && *r.Code == "TransactionConflict" {
			return true
		}
	}
	return false
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func lower(s string) string { return strings.ToLower(s) }
