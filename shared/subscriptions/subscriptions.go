// Package subscriptions holds tenants' subscriptions to plans (SPEC 9): their lifecycle, the
// history of every change, the customer.* events written with each change, and the rules the
// service applies for a caller. It knows nothing of DynamoDB or HTTP.
package subscriptions

import (
	"context"
	"time"

	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/outbox"
)

// Subscription states. A subscription whose cancellation is scheduled for the end of the period
// stays active until then.
const (
	StatusActive    = "active"
	StatusCancelled = "cancelled"
)

// Cancellation modes of DELETE /subscriptions/{id}?at=.
const (
	CancelNow       = "now"
	CancelPeriodEnd = "period_end"
)

// History actions.
const (
	ActionCreate     = "create"
	ActionUpdate     = "update"
	ActionCancel     = "cancel"
	ActionLicenseKey = "license_key"
	// ActionCancelEffective is recorded by the system when a cancellation scheduled for the end
	// of a period takes effect.
	ActionCancelEffective = "cancel_effective"
)

// SystemActor is the actor of changes nobody asked for at that moment (a scheduled cancellation
// taking effect).
const SystemActor = "system"

// Subscription is a tenant's subscription to a plan. Quantity is the number of seats, an integer
// of at least 1, written as a decimal string like every quantity (SPEC 4). CancelAt is when the
// subscription ends (the cancel instant, or the first instant of the next period for a
// cancellation at period end); it is null while none is scheduled.
type Subscription struct {
	ID         string        `json:"id"`
	TenantID   string        `json:"tenantId"`
	PlanID     string        `json:"planId"`
	Quantity   money.Decimal `json:"quantity"`
	Status     string        `json:"status"`
	StartDate  time.Time     `json:"startDate"`
	CancelAt   *time.Time    `json:"cancelAt"`
	LicenseKey *string       `json:"licenseKey"`
	CreatedAt  time.Time     `json:"createdAt"`
	UpdatedAt  time.Time     `json:"updatedAt"`
	// TenantPath is the tenant's hierarchy path: scoping is a prefix test on it, and listing a
	// channel entity's subtree is one query.
	TenantPath string `json:"-"`
	Version    int64  `json:"-"`
}

// StatusAt returns the subscription's status at instant now: cancelled once its cancellation has
// taken effect, even if that has not been recorded yet.
func (s *Subscription) StatusAt(now time.Time) string {
	if s.Status == StatusCancelled || s.due(now) {
		return StatusCancelled
	}
	return StatusActive
}

// due reports a recorded-active subscription whose scheduled cancellation has taken effect.
func (s *Subscription) due(now time.Time) bool {
	return s.Status == StatusActive && s.CancelAt != nil && !now.Before(*s.CancelAt)
}

// State is what a history entry records before and after a change: everything about a
// subscription that a change can touch.
type State struct {
	PlanID     string        `json:"planId"`
	Quantity   money.Decimal `json:"quantity"`
	Status     string        `json:"status"`
	StartDate  time.Time     `json:"startDate"`
	CancelAt   *time.Time    `json:"cancelAt"`
	LicenseKey *string       `json:"licenseKey"`
}

// State returns a snapshot of the subscription that shares no memory with it.
func (s *Subscription) State() *State {
	st := &State{PlanID: s.PlanID, Quantity: s.Quantity, Status: s.Status, StartDate: s.StartDate}
	if s.CancelAt != nil {
		t := *s.CancelAt
		st.CancelAt = &t
	}
	if s.LicenseKey != nil {
		k := *s.LicenseKey
		st.LicenseKey = &k
	}
	return st
}

// HistoryEntry is one change of a subscription. Before is null for the creation. Seq numbers
// the entries of a subscription 1, 2, 3... in the order they were recorded (it is the
// subscription's version after the change; the store sets it).
type HistoryEntry struct {
	ID     string    `json:"id"`
	Seq    int64     `json:"seq"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Before *State    `json:"before"`
	After  *State    `json:"after"`
}

// EventDetail is the detail of the customer.created, customer.upgraded and customer.cancelled
// events.
type EventDetail struct {
	SubscriptionID string        `json:"subscriptionId"`
	TenantID       string        `json:"tenantId"`
	PlanID         string        `json:"planId"`
	PreviousPlanID string        `json:"previousPlanId,omitempty"`
	Quantity       money.Decimal `json:"quantity"`
	StartDate      time.Time     `json:"startDate"`
	CancelAt       *time.Time    `json:"cancelAt,omitempty"`
	// Mode is the cancellation mode (customer.cancelled only): now or period_end.
	Mode  string `json:"mode,omitempty"`
	Actor string `json:"actor"`
}

// Change is what a store writes along with a subscription, in the same transaction.
type Change struct {
	// History is appended to the subscription's history.
	History HistoryEntry
	// Events go to the outbox.
	Events []outbox.Event
	// ActiveDelta is added to the tenant's count of active subscriptions (-1 when the change
	// cancels the subscription).
	ActiveDelta int
	// PublishedPlan, when set, names a plan that must still be published when the change commits.
	PublishedPlan string
}

// Store keeps subscriptions and their history. Every change is atomic with its history entry,
// its events and the tenant's counters.
type Store interface {
	// CreateSubscription stores s with c's history entry and events and counts it on its tenant
	// (Subscriptions and ActiveSubs + 1), atomically, provided that, when the transaction commits,
	// the tenant exists, is not cancelled, has not been invoiced for s's start period, and (when
	// tenantSubs >= 0) still counts exactly tenantSubs subscriptions, and c.PublishedPlan is
	// published. Conflict "tenant_changed" when a tenant condition fails (read the tenant again
	// to tell why); Unprocessable "plan_not_published" when the plan condition fails.
	CreateSubscription(ctx context.Context, s *Subscription, c Change, tenantSubs int) error
	// GetSubscription returns the subscription with id. NotFound.
	GetSubscription(ctx context.Context, id string) (*Subscription, error)
	// ListSubscriptions returns every subscription of the tenants whose path starts with
	// pathPrefix.
	ListSubscriptions(ctx context.Context, pathPrefix string) ([]*Subscription, error)
	// UpdateSubscription reads the subscription and calls fn with it; fn changes it in place and
	// returns the Change to write with it (nil: nothing to write). The write happens only if
	// nobody changed the subscription meanwhile (fn is retried a few times) and c.PublishedPlan
	// is still published. fn's error, NotFound, Unprocessable "plan_not_published", Conflict
	// "concurrent_update".
	UpdateSubscription(ctx context.Context, id string, fn func(*Subscription) (*Change, error)) (*Subscription, error)
	// History returns every history entry of the subscription, oldest first.
	History(ctx context.Context, id string) ([]HistoryEntry, error)
}

// Entities is the part of the hierarchy store the service reads.
type Entities interface {
	// GetEntity returns the entity with id. NotFound.
	GetEntity(ctx context.Context, id string) (*hierarchy.Entity, error)
}

// Plans is the part of the catalog store the service reads.
type Plans interface {
	// GetPlan returns the plan with id. NotFound.
	GetPlan(ctx context.Context, id string) (*catalog.Plan, error)
}
