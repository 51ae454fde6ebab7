package billing

import (
	"context"
	"io"
	"time"

	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/subscriptions"
)

// Event types written by billing (SPEC 13).
const (
	EventInvoiceGenerated = "invoice.generated"
	EventRunCompleted     = "billing.run.completed"
	EventCommissionEarned = "commission.earned"
	InvoiceIssued         = "issued"
	RunRunning            = "running"
	RunCompleted          = "completed"
	RunFailed             = "failed"
	TriggerAPI            = "api"
	TriggerSchedule       = "schedule"
	maxNumberAttempts     = 40
	// DefaultMaxAttempts is how many deliveries of a tenant's message fail before the worker
	// records the tenant as failed in the run instead of failing the message once more. It must
	// stay below the billing queue's maxReceiveCount (5) so that the last delivery records it
	// before SQS moves the message to the dead-letter queue.
	DefaultMaxAttempts = 4
	// MaxFailuresShown is how many of a run's tenant failures GET /billing/runs/{id} lists (by
	// tenant id); TenantsFailed counts them all.
	MaxFailuresShown = 20
	// CodeUnbillable is the code of a permanent failure: the tenant's invoice cannot be computed
	// from the catalog and the channel as they are (e.g. a SKU without a rate in the period).
	CodeUnbillable = "unbillable"
	// CodeAttemptsExhausted is the code of a tenant whose message failed DefaultMaxAttempts
	// deliveries with errors that might have been transient.
	CodeAttemptsExhausted = "attempts_exhausted"
	// DefaultFanoutPage is how many subscriptions one fan-out message lists (extended to the
	// end of its last tenant's subscriptions) before it queues the next page's message.
	DefaultFanoutPage = 1000
	// DefaultResumeAfter is how long after its start (or completion) a run that is not closed
	// counts as stuck: starting its period again then resumes it.
	DefaultResumeAfter = 10 * time.Minute
	// DefaultCloseLease is how long a close holds its period's lease. It is longer than the
	// worker's timeout (5 minutes), so a lease outlives the invocation that took it: once it has
	// expired its holder is dead and another close takes over.
	DefaultCloseLease = 10 * time.Minute
)

// Run is a billing run of one period (SPEC 7.1). Counters are exact: each tenant is counted once
// per run however often its message is delivered. TenantsTotal grows with each fan-out page
// until the last (Planned). A tenant is done when it was invoiced, already had an invoice, had
// nothing to bill, or failed (TenantsFailed, included in TenantsDone). Once every tenant is done
// the run is "completed" when none failed and "failed" otherwise; a later run of the period
// retries the failed tenants.
type Run struct {
	ID              string        `json:"id"`
	Period          period.Period `json:"period"`
	Status          string        `json:"status"`
	Trigger         string        `json:"trigger"`
	TenantsTotal    int           `json:"tenantsTotal"`
	TenantsDone     int           `json:"tenantsDone"`
	TenantsFailed   int           `json:"tenantsFailed"`
	InvoicesCreated int           `json:"invoicesCreated"`
	StartedAt       time.Time     `json:"startedAt"`
	CompletedAt     *time.Time    `json:"completedAt"`
	// Failures lists the first MaxFailuresShown failed tenants by id (TenantsFailed counts all).
	Failures []TenantFailure `json:"failures"`
	// ClosedAt is when the commission run and the finance exports that follow the run were
	// done (null until then).
	ClosedAt *time.Time `json:"closedAt"`
	// Planned reports that the run knows its tenants (TenantsTotal is final): the fan-out has
	// recorded its last page.
	Planned bool `json:"-"`
	// Closed reports that the commission run and the exports that follow the run were done.
	Closed bool `json:"-"`
}

// TenantFailure records why a run gave up on one tenant: Code is CodeUnbillable (permanent:
// fix the catalog or the channel, then run the period again) or CodeAttemptsExhausted; Reason
// is a human explanation (internal details stay in the logs).
type TenantFailure struct {
	TenantID string    `json:"tenantId"`
	Code     string    `json:"code"`
	Reason   string    `json:"reason"`
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`
}

// TierAmount is one tier of a usage line as the tenant sees it (SPEC 7.1).
type TierAmount struct {
	UpTo      *money.Decimal `json:"upTo"`
	Quantity  money.Decimal  `json:"quantity"`
	UnitPrice money.Decimal  `json:"unitPrice"`
	Amount    money.Money    `json:"amount"`
}

// InvoiceLine is one line of an issued invoice (SPEC 7.1). OriginalPeriod is set on late-usage
// adjustments only.
type InvoiceLine struct {
	Kind           string        `json:"kind"`
	SubscriptionID string        `json:"subscriptionId"`
	SKU            string        `json:"sku"`
	Description    string        `json:"description"`
	Quantity       money.Decimal `json:"quantity"`
	Amount         money.Money   `json:"amount"`
	Tiers          []TierAmount  `json:"tiers"`
	OriginalPeriod *string       `json:"originalPeriod"`
}

// EntityShare is what one channel entity earned on an invoice (SPEC 12).
type EntityShare struct {
	EntityID   string        `json:"entityId"`
	EntityPath string        `json:"entityPath"`
	Revenue    money.Decimal `json:"revenue"`
	Cost       money.Decimal `json:"cost"`
	Commission money.Decimal `json:"commission"`
}

// Invoice is an issued invoice (SPEC 7.1). It never changes once stored.
type Invoice struct {
	ID         string        `json:"id"`
	Number     string        `json:"number"`
	TenantID   string        `json:"tenantId"`
	IssuerID   string        `json:"issuerId"`
	Period     string        `json:"period"`
	Status     string        `json:"status"`
	Currency   string        `json:"currency"`
	IssuedAt   time.Time     `json:"issuedAt"`
	Total      money.Money   `json:"total"`
	Lines      []InvoiceLine `json:"lines"`
	RunID      string        `json:"runId"`
	TenantPath string        `json:"-"`
	// PlatformRevenue and Shares split the total down the channel (SPEC 12): PlatformRevenue
	// plus every share's Commission equals Total, to the cent.
	PlatformRevenue money.Decimal `json:"-"`
	Shares          []EntityShare `json:"-"`
	// Seq is the invoice's number in its issuer's series for the year of IssuedAt.
	Seq int64 `json:"-"`
}

// InvoiceRef is the small index entry of an invoice: what lists and summaries read without
// loading the lines.
type InvoiceRef struct {
	InvoiceID  string
	Number     string
	TenantID   string
	TenantPath string
	Period     period.Period
	Currency   string
	Total      money.Decimal
	IssuedAt   time.Time
	// SubTotals are the invoice's amounts per subscription.
	SubTotals map[string]money.Decimal
}

// UsageKey identifies a usage aggregate: one subscription, one SKU (code), one period.
type UsageKey struct {
	SubscriptionID string
	SKU            string
	Period         period.Period
}

// UsageTotal is a period's running total of one aggregate.
type UsageTotal struct {
	Key      UsageKey
	Quantity money.Decimal
}

// UsageChange flags an aggregate whose total may have changed while or after its period was
// invoiced (SPEC 10 late usage). Version is what Acknowledge compares.
type UsageChange struct {
	Key     UsageKey
	Version int64
	Pending bool
}

// UsageSource is what billing needs of usage ingestion.
type UsageSource interface {
	// PeriodTotals returns every aggregate of the tenant (at tenantPath) with usage in p.
	PeriodTotals(ctx context.Context, tenantPath string, p period.Period) ([]UsageTotal, error)
	// Totals returns the current totals of keys (absent: no usage).
	Totals(ctx context.Context, keys []UsageKey) (map[UsageKey]money.Decimal, error)
	// Changes returns the tenant's flagged aggregates.
	Changes(ctx context.Context, tenantID string) ([]UsageChange, error)
	// Acknowledge removes a flag that billing accounted for, only if it is still at c.Version and
	// nothing is pending; Conflict otherwise (the flag stays for the next invoice).
	Acknowledge(ctx context.Context, tenantID string, c UsageChange) error
	// ResolvePending finishes the tenant's pending increments older than the usage store's grace
	// period (written ones are kept, ones a crashed writer never wrote are cancelled) and returns
	// how many flags still have some (docs/usage.md, "Late usage: the contract with billing").
	ResolvePending(ctx context.Context, tenantID string) (int, error)
}

// Ledger records what a tenant was billed per usage aggregate of one period: the quantity of
// the period's invoice plus every later adjustment. Late usage is the current total minus it.
type Ledger struct {
	TenantID string
	Period   period.Period
	// Billed maps "<subscription>#<sku>" to the quantity billed so far.
	Billed  map[string]money.Decimal
	Version int64
}

// Issue is everything written atomically when an invoice is issued.
type Issue struct {
	Invoice *Invoice
	// Year and Seq are the issuer's series and the number taken in it: the counter moves from
	// Seq-1 to Seq in the same transaction (gapless).
	Year int
	// Ledgers are the ledgers written with the invoice (the period's, new; late periods',
	// updated under their Version).
	Ledgers []Ledger
	Event   outbox.Event
	// TenantSubs is the tenant's count of subscriptions ever created, as read when the invoice
	// was computed: the write fails (Conflict "tenant_changed") if a subscription was created
	// meanwhile (it may start in the period: the invoice must be computed again).
	TenantSubs int
	// RaiseInvoicedThrough sets the tenant's InvoicedThrough to the invoice's period (false when
	// a later period is already invoiced).
	RaiseInvoicedThrough bool
}

// CommissionLine is what one entity earned on one tenant in one period.
type CommissionLine struct {
	EntityID   string        `json:"entityId"`
	EntityPath string        `json:"-"`
	Period     string        `json:"period"`
	TenantID   string        `json:"tenantId"`
	Currency   string        `json:"currency"`
	Invoices   int           `json:"invoices"`
	Revenue    money.Money   `json:"revenue"`
	Cost       money.Money   `json:"cost"`
	Commission money.Money   `json:"commission"`
	Raw        CommissionRaw `json:"-"`
}

// CommissionRaw holds a line's or total's decimals before they are put in money objects.
type CommissionRaw struct{ Revenue, Cost, Commission money.Decimal }

// CommissionTotal is one entity's commission for one period.
type CommissionTotal struct {
	EntityID   string
	EntityPath string
	EntityType string
	Period     period.Period
	Currency   string
	Tenants    int
	Raw        CommissionRaw
	// Digest identifies the content; a commission run rewrites (and emits commission.earned
	// for) an entity's period only when it changed.
	Digest string
	// PeriodInvoices is how many invoices of the period the close that computed the total saw.
	// A period's invoices are only ever added, so a close that saw more saw a superset: a total
	// is never replaced by one computed from fewer invoices.
	PeriodInvoices int
}

// FanoutPage is one page of a run's fan-out, recorded once: a retried, duplicated or resumed
// page message queues the tenants recorded, never a different listing.
type FanoutPage struct {
	Page int
	// Tenants are the tenants the page queued (each in exactly one page of the run).
	Tenants []string
	// Next is the subscription listing's cursor after the page ("" on the last page).
	Next string
	// Last is the tenant of the page's last subscription; the next page skips its
	// subscriptions (this page decided it).
	Last string
}

// CloseState is a period's close record: what the last finished close saw.
type CloseState struct {
	// Invoices is how many invoices of the period the last finished close saw (0: none yet).
	Invoices int
}

// Store keeps runs, invoices, numbering counters, ledgers and commissions.
type Store interface {
	// CreateRun stores a new run and indexes it under its period. Conflict "run_exists" when
	// a run with its id exists.
	CreateRun(ctx context.Context, r *Run) error
	// GetRun returns the run with its counters. NotFound.
	GetRun(ctx context.Context, id string) (*Run, error)
	// PeriodRuns returns every run of p with its counters, read strongly consistently.
	PeriodRuns(ctx context.Context, p period.Period) ([]*Run, error)
	// SubscriptionPage returns about size subscriptions of the whole platform after cursor (""
	// the first), in listing order (tenant path, then id), extended to the last tenant's last
	// subscription so that a tenant's subscriptions lie in one page, and the cursor after them
	// ("" when the listing ended). Invalid on a bad cursor.
	SubscriptionPage(ctx context.Context, cursor string, size int) ([]*subscriptions.Subscription, string, error)
	// FanoutPage returns a recorded page of the run's fan-out. NotFound when not recorded.
	FanoutPage(ctx context.Context, runID string, page int) (*FanoutPage, error)
	// RecordFanoutPage records a page of the run's fan-out and adds its tenants to the run's
	// TenantsTotal, and when last, marks the run planned, atomically; false (nothing written)
	// when the page was recorded before.
	RecordFanoutPage(ctx context.Context, runID string, pg FanoutPage, last bool) (bool, error)
	// CompleteRun gives a running run its final status (RunCompleted or RunFailed) with its
	// event; false when it was not running.
	CompleteRun(ctx context.Context, id, status string, at time.Time, ev outbox.Event) (bool, error)
	// AcquireClose takes (or renews) the lease of p's close for owner until `until`, when no
	// other owner holds an unexpired one at now, and returns the period's close record.
	// Conflict "close_busy" when another owner holds it. An owner is one close attempt (see
	// closeOwner), not a run: two deliveries of one run's close message exclude each other.
	AcquireClose(ctx context.Context, p period.Period, owner string, now, until time.Time) (CloseState, error)
	// ReleaseClose gives up owner's lease of p's close (nothing when it holds none).
	ReleaseClose(ctx context.Context, p period.Period, owner string) error
	// FinishClose records, atomically, that owner's close of the run saw invoices invoices of p
	// (the period's close record, releasing the lease) and that the run is closed at `at`.
	// Conflict "close_lost" when owner no longer holds the lease.
	FinishClose(ctx context.Context, p period.Period, runID, owner string, invoices int, at time.Time) error
	// TenantCounted reports whether the run has counted the tenant.
	TenantCounted(ctx context.Context, runID, tenantID string) (bool, error)
	// CountedTenants returns which of tenants the run has counted (strongly consistent).
	CountedTenants(ctx context.Context, runID string, tenants []string) (map[string]bool, error)
	// CountTenant counts the tenant in the run (once; a second call changes nothing).
	CountTenant(ctx context.Context, runID, tenantID string, created bool) error
	// FailTenant counts the tenant in the run as done and failed, with its failure (once; nothing
	// changes when the run already counted the tenant, invoiced or failed).
	FailTenant(ctx context.Context, runID string, f TenantFailure) error
	// InvoiceRef returns the tenant's invoice of p. NotFound.
	InvoiceRef(ctx context.Context, tenantID string, p period.Period) (*InvoiceRef, error)
	// LastSeq returns the last number taken in the issuer's series of year (0: none).
	LastSeq(ctx context.Context, issuerID string, year int) (int64, error)
	// IssueInvoice writes the invoice, its index entry (only if the tenant has none for the
	// period), the issuer's counter (from Seq-1 to Seq), the tenant's InvoicedThrough, the
	// ledgers, the event and the run's count of the tenant, atomically. Conflict
	// "invoice_exists" when the tenant already has an invoice for the period; Conflict
	// "number_taken" when the counter moved (take the next number and retry); Conflict
	// "tenant_changed" when the tenant changed (compute again); Conflict "concurrent" when
	// another transaction touched an item (retry).
	IssueInvoice(ctx context.Context, is Issue) error
	// Ledgers returns the tenant's ledgers of the given periods (absent: not invoiced).
	Ledgers(ctx context.Context, tenantID string, periods []period.Period) (map[period.Period]Ledger, error)
	// InvoiceRefs returns the index entries of p's invoices of tenants whose path starts with
	// prefix.
	InvoiceRefs(ctx context.Context, p period.Period, prefix string) ([]InvoiceRef, error)
	// TenantInvoiceRefs returns every index entry of a tenant's invoices.
	TenantInvoiceRefs(ctx context.Context, tenantID string) ([]InvoiceRef, error)
	// GetInvoice returns an invoice. NotFound.
	GetInvoice(ctx context.Context, id string) (*Invoice, error)
	// LoadInvoices returns the invoices with ids, in that order, read strongly consistently;
	// an error when one is missing (nothing is silently left out).
	LoadInvoices(ctx context.Context, ids []string) ([]*Invoice, error)
	// PutCommission stores an entity's period total and tenant lines when the total is new, or
	// its Digest changed and the stored one was computed from no more invoices of the period
	// (PeriodInvoices); then it writes ev with the total and reports true. Otherwise it writes
	// nothing and reports false.
	PutCommission(ctx context.Context, t CommissionTotal, lines []CommissionLine, ev outbox.Event) (bool, error)
	// CommissionLines returns the lines of p whose entity path starts with prefix.
	CommissionLines(ctx context.Context, p period.Period, prefix string) ([]CommissionLine, error)
}

// Entities is the part of the hierarchy store billing reads.
type Entities interface {
	// GetEntity returns the entity with id. NotFound.
	GetEntity(ctx context.Context, id string) (*hierarchy.Entity, error)
	// GetEntities returns the entities found among ids.
	GetEntities(ctx context.Context, ids []string) (map[string]*hierarchy.Entity, error)
}

// Catalog is the part of the catalog store billing reads.
type Catalog interface {
	// ListSKUs returns every SKU.
	ListSKUs(ctx context.Context) ([]*catalog.SKU, error)
	// GetPlan returns the plan with id. NotFound.
	GetPlan(ctx context.Context, id string) (*catalog.Plan, error)
	// GetOverrides returns every price-list override of a tenant.
	GetOverrides(ctx context.Context, tenantID string) ([]*catalog.Override, error)
}

// Subscriptions is the part of the subscriptions store billing reads.
type Subscriptions interface {
	// ListSubscriptions returns the subscriptions of the tenants whose path starts with prefix.
	ListSubscriptions(ctx context.Context, pathPrefix string) ([]*subscriptions.Subscription, error)
	// GetSubscription returns the subscription with id. NotFound.
	GetSubscription(ctx context.Context, id string) (*subscriptions.Subscription, error)
	// History returns a subscription's changes, oldest first.
	History(ctx context.Context, id string) ([]subscriptions.HistoryEntry, error)
}

// Message is one unit of work on the billing queue.
type Message struct {
	// Kind: "start" (the schedule: start a run of Period, default the period that just ended),
	// "fanout" (one page of the run's tenants: queue one "tenant" message each, then the next
	// page's message), "tenant" (invoice one tenant), "close" (the commission run and the
	// finance exports after a run).
	Kind     string `json:"kind"`
	RunID    string `json:"runId,omitempty"`
	Period   string `json:"period,omitempty"`
	TenantID string `json:"tenantId,omitempty"`
	// Page, Cursor and After locate a fan-out page: its number (0 the first), the subscription
	// listing's cursor where it starts, and the previous page's last tenant (skipped).
	Page   int    `json:"page,omitempty"`
	Cursor string `json:"cursor,omitempty"`
	After  string `json:"after,omitempty"`
	// Attempt is the delivery count of the message (SQS ApproximateReceiveCount; 0: unknown),
	// set by the queue adapter, never sent.
	Attempt int `json:"-"`
	// MessageID is the queue's id of the message (the same at every delivery), set by the
	// queue adapter, never sent: a scheduled start derives its run's id from it, so a retried
	// start finds its run instead of leaving an orphan.
	MessageID string `json:"-"`
}

// Message kinds.
const (
	KindStart  = "start"
	KindFanout = "fanout"
	KindTenant = "tenant"
	KindClose  = "close"
)

// Queue sends messages to the billing worker.
type Queue interface {
	// Send queues msgs (any number; the adapter batches them).
	Send(ctx context.Context, msgs []Message) error
}

// Objects writes finance exports.
type Objects interface {
	// Create starts writing the object at key in the exports bucket. Nothing is visible until
	// the writer's Commit, which replaces the object whole; Abort drops what was written.
	Create(ctx context.Context, key, contentType string) (ObjectWriter, error)
}

// ObjectWriter streams one object (see Objects.Create).
type ObjectWriter interface {
	io.Writer
	// Commit makes the object written so far the object at its key.
	Commit() error
	// Abort drops what was written; the object at the key stays as it was.
	Abort()
}
