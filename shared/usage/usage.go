// Package usage ingests and rates metered usage (SPEC 10): the record and its validation, the
// four channels' formats (API batches, CSV and JSON Lines files, queue messages, stream
// records), the one rating path every channel goes through (parse, validate, resolve the
// subscription, aggregate per subscription, SKU and period, count exactly once), the period's
// totals and the charges they would produce (GET /api/v1/usage), and the threshold events.
//
// It knows nothing of DynamoDB, SQS, S3 or Kinesis: it declares the narrow interfaces it needs
// (Tenants, Resolver, Catalog, Pricer, Subscriptions, Store) and adapters implement them. The
// exactly-once protocol itself belongs to the Store (shared/tablestore/usage.go documents the
// DynamoDB one; docs/data-model.md its items and their cost); usagetest holds the contract
// suite every Store passes and an in-memory Store for unit tests.
package usage

import (
	"context"
	"time"

	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
)

// Source is the channel a record arrived through. Every channel goes through the same path;
// the source is kept with the record for audit and in logs.
type Source string

// The channels.
const (
	SourceAPI    Source = "api"
	SourceFile   Source = "file"
	SourceQueue  Source = "queue"
	SourceStream Source = "stream"
)

// ClosingMargin is how long before its end a period is treated as possibly invoiced: usage
// for a period that ended, or ends within the margin, is flagged for billing (see Aggregate).
// It covers clock skew and the longest a consumer can take between deciding and writing.
const ClosingMargin = 30 * time.Minute

// Tenant is what ingestion needs to know of a tenant. Suspended tenants are ingested like any
// other (nothing is lost, SPEC 3); cancelled ones too (late usage of a cancelled tenant is still
// billable).
type Tenant struct {
	ID string
	// Path is the tenant's hierarchy path ("/platform/dst_1/prt_2/tnt_3/"): scoping is a prefix
	// test on it.
	Path string
	// Currency is the tenant's currency (charges are in it).
	Currency string
	// InvoicedThrough is the last period already invoiced for the tenant ("" when none),
	// written by billing.
	InvoicedThrough string
}

// Invoiced reports whether period p has been invoiced for the tenant.
func (t *Tenant) Invoiced(p period.Period) bool {
	return t.InvoicedThrough != "" && p.String() <= t.InvoicedThrough
}

// Tenants finds tenants.
type Tenants interface {
	// Tenant returns the tenant with id. NotFound when there is no such tenant (or the entity
	// is not a tenant); any other error is transient.
	Tenant(ctx context.Context, id string) (*Tenant, error)
}

// Resolution is where a record is counted.
type Resolution struct {
	// SubscriptionID is the tenant's subscription the record goes to.
	SubscriptionID string
	// SKU is the SKU's code as the catalog writes it (a record may write it in another case).
	SKU string
}

// Resolver finds the subscription a record is counted against.
type Resolver interface {
	// Resolve returns the subscription of tenant t that a record of SKU code sku at instant at
	// goes to. With subscriptionID empty it is the tenant's subscription whose plan (at that
	// instant) charges the SKU and that was active then; with subscriptionID set, that
	// subscription, which must be the tenant's, active then, with a plan charging the SKU.
	// A record that cannot be placed is an Invalid or Unprocessable apperr naming the field
	// ("sku", "subscriptionId", "timestamp"); any other error is transient.
	Resolve(ctx context.Context, t *Tenant, subscriptionID, sku string, at time.Time) (Resolution, error)
}

// Catalog answers what ingestion needs of the catalog.
type Catalog interface {
	// Thresholds returns the thresholds of the SKU with code sku, ascending (nil for none).
	// NotFound when there is no such SKU; any other error is transient.
	Thresholds(ctx context.Context, sku string) ([]money.Decimal, error)
}

// AggregateKey identifies a running total: one subscription, one SKU, one period.
type AggregateKey struct {
	SubscriptionID string
	SKU            string
	Period         period.Period
}

// String returns "<subscription>#<sku>#<YYYY-MM>", the key's stable text form (ids and SKU
// codes never contain '#').
func (k AggregateKey) String() string {
	return k.SubscriptionID + "#" + k.SKU + "#" + k.Period.String()
}

// Aggregate is one running total touched by a batch, with what the store needs to count into
// it.
type Aggregate struct {
	Key        AggregateKey
	TenantID   string
	TenantPath string
	// Thresholds of the SKU, ascending: crossing one writes a usage.threshold_reached event in
	// the same write as the increment.
	Thresholds []money.Decimal
	// Late reports that the tenant has already been invoiced for the period (SPEC 10): the
	// quantity is kept and billed as an adjustment on the next invoice.
	Late bool
	// Closing reports that the period is invoiced or may be by the time the increment lands
	// (it ended, or ends within ClosingMargin): the store flags the change for billing before
	// writing it, so that billing never misses an increment it did not read.
	Closing bool
}

// Entry is one valid record placed in an aggregate of its batch.
type Entry struct {
	Record
	// Aggregate is the index of the entry's aggregate in Batch.Aggregates.
	Aggregate int
}

// Batch is what the store counts in one call.
type Batch struct {
	Source     Source
	Aggregates []Aggregate
	Entries    []Entry
	// Redelivery reports that the batch was probably seen before (a message received more than
	// once, a retried stream batch): the store may check for duplicates by reading first, which
	// costs reads instead of failed conditional writes.
	Redelivery bool
	Now        time.Time
}

// Status is what became of one record.
type Status uint8

// The statuses of a record.
const (
	// Accepted: counted now.
	Accepted Status = iota + 1
	// Duplicate: already counted (same tenant and id, any channel); not counted again.
	Duplicate
	// Rejected: invalid; never counted, reported with the reasons.
	Rejected
	// Retry: not counted because of a transient condition (storage unavailable, another
	// delivery of the same record still in progress); the record must be delivered again.
	Retry
)

// String returns the status's name.
func (s Status) String() string {
	switch s {
	case Accepted:
		return "accepted"
	case Duplicate:
		return "duplicate"
	case Rejected:
		return "rejected"
	case Retry:
		return "retry"
	}
	return "unknown"
}

// EntryResult is the store's answer for one entry.
type EntryResult struct {
	Status Status
	// Err explains a Retry (for logs).
	Err error
}

// Total is an aggregate's running total.
type Total struct {
	Quantity money.Decimal
	// Seq numbers the increments applied so far (0: none); billing records it with what it
	// invoiced.
	Seq int64
}

// AggregateRef is an aggregate known to have usage in a period: the listing of GET /usage
// and of billing.
type AggregateRef struct {
	Key        AggregateKey
	TenantID   string
	TenantPath string
}

// Change flags an aggregate whose total may have changed after, or while, its period was
// invoiced (the late-usage contract with billing, docs/data-model.md).
type Change struct {
	Key        AggregateKey
	TenantID   string
	TenantPath string
	// Late reports that at least one increment arrived after the period was invoiced.
	Late bool
	// Pending lists increments started but not known to be finished; billing must not act on
	// the flag while any is pending (ResolvePending finishes them).
	Pending []string
	// Version changes with every touch; AcknowledgeChange removes the flag only at the version
	// billing read.
	Version   int64
	UpdatedAt time.Time
}

// Store counts records exactly once per (tenant id, record id), whatever the channel, the
// retries, the redeliveries or a crash between two of its writes, and keeps the running totals.
type Store interface {
	// Record counts every entry of b into its aggregate unless a record with the same tenant
	// and id was counted before: one result per entry, in order (Accepted, Duplicate or Retry).
	// Crossing a threshold writes its event (ThresholdEvent) with the increment. An error means
	// nothing can be said of any entry (all must be retried).
	Record(ctx context.Context, b *Batch) ([]EntryResult, error)
	// Totals returns the current totals of keys (a key without usage is absent from the map).
	Totals(ctx context.Context, keys []AggregateKey) (map[AggregateKey]Total, error)
	// Aggregates returns every aggregate of period p with usage whose tenant path starts with
	// pathPrefix, in key order ("<tenant path><subscription>#<sku>"). It reads consistently: an
	// aggregate whose first increment landed before the call is listed (billing relies on it).
	Aggregates(ctx context.Context, p period.Period, pathPrefix string) ([]AggregateRef, error)
	// Changes returns the flagged aggregates of a tenant (see Change).
	Changes(ctx context.Context, tenantID string) ([]Change, error)
	// ResolvePending finishes the pending increments of a tenant's flags that are older than
	// the store's grace period: an increment written is kept, one never written is cancelled
	// for good (its records count again when they are redelivered). It returns how many flags
	// still have pending increments.
	ResolvePending(ctx context.Context, tenantID string) (int, error)
	// AcknowledgeChange removes a flag once billing has accounted for its aggregate's total,
	// only if the flag is still at version and has nothing pending. Conflict when it changed.
	AcknowledgeChange(ctx context.Context, tenantID string, key AggregateKey, version int64) error
}
