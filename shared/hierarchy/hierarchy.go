// Package hierarchy holds the channel entities (platform, distributors, partners, tenants), their
// rules and the service that applies them for a caller. It knows nothing of DynamoDB or HTTP.
package hierarchy

import (
	"context"
	"regexp"
	"strings"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/period"
)

// Status values of an entity.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
	StatusCancelled = "cancelled" // tenants only
)

// Partner tiers; each maps to an API usage plan.
const (
	TierStandard   = "standard"
	TierPremium    = "premium"
	TierEnterprise = "enterprise"
)

// Ref points at an entity: its type, id and (on output) name. Only type and id are stored; the
// name is the entity's current one, set by NameRef or NameRefs when an answer is made.
type Ref struct {
	Type access.EntityType `json:"type"`
	ID   string            `json:"id"`
	Name string            `json:"name,omitempty"`
}

// Markup is one entry of an entity's effective-dated markup history (percent). It applies from
// the first billing period that starts on or after StartDate (SPEC 8.3).
type Markup struct {
	Markup    string    `json:"markup"`
	StartDate string    `json:"startDate"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
}

// Suspension records why and when an entity was suspended.
type Suspension struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	By     string    `json:"by"`
}

// Entity is a node of the channel hierarchy. Path lists the ids from the platform down to the
// entity itself ("/platform/dst_1/prt_2/"), so a subtree is every entity whose path has a prefix.
type Entity struct {
	ID                string            `json:"id"`
	Type              access.EntityType `json:"type"`
	Name              string            `json:"name"`
	Status            string            `json:"status"`
	Parent            *Ref              `json:"parent,omitempty"`
	BillingID         string            `json:"billingId,omitempty"`
	Currency          string            `json:"currency,omitempty"`
	ContactEmail      string            `json:"contactEmail,omitempty"`
	ContactName       string            `json:"contactName,omitempty"`
	Phone             string            `json:"phone,omitempty"`
	Tier              string            `json:"tier,omitempty"`
	BillingCycle      string            `json:"billingCycle,omitempty"`
	Markups           []Markup          `json:"markups,omitempty"`
	NbOfTenants       *int              `json:"nbOfTenants,omitempty"`
	NbOfSubscriptions *int              `json:"nbOfSubscriptions,omitempty"`
	Suspension        *Suspension       `json:"suspension,omitempty"`
	CreatedAt         time.Time         `json:"createdAt"`
	UpdatedAt         time.Time         `json:"updatedAt"`

	Path string `json:"-"`
	// Children counts direct child entities; Users counts users scoped here. Both guard delete.
	Children int `json:"-"`
	Users    int `json:"-"`
	// ActiveSubscriptions counts a tenant's non-cancelled subscriptions; it guards delete.
	ActiveSubscriptions int `json:"-"`
	// InvoicedThrough is the last period ("YYYY-MM") already invoiced for a tenant, "" when none.
	// Billing (issue 5) sets it when it issues an invoice; nothing in this package writes it.
	// Subscriptions may not start inside an invoiced period.
	InvoicedThrough string `json:"-"`
	Version         int64  `json:"-"`
}

// MarkupAt returns the markup (percent) in effect in period p: the newest entry whose startDate
// is on or before p's first instant (SPEC 8.3: a change takes effect from the first period that
// starts on or after its startDate). It returns "" when no entry is in effect yet, which prices
// as no markup (the entity sells at its buy price).
func (e *Entity) MarkupAt(p period.Period) string {
	first := p.FirstDay()
	for _, m := range e.Markups { // newest first
		if m.StartDate <= first {
			return m.Markup
		}
	}
	return ""
}

// ParentTypes lists which parent types each child type may hang under (SPEC 3).
var ParentTypes = map[access.EntityType][]access.EntityType{
	access.Distributor: {access.Platform},
	access.Partner:     {access.Platform, access.Distributor},
	access.Tenant:      {access.Partner},
}

// Store keeps entities. Implementations make every multi-item change atomic.
type Store interface {
	// CreateEntity stores e, reserves its billingId, and increments the parent's child count and
	// every channel ancestor's tenant count, atomically. Conflict "billing_id_taken" when the
	// billingId is held; NotFound when the parent no longer exists.
	CreateEntity(ctx context.Context, e *Entity) error
	// GetEntity returns the entity with id (strongly consistent), NotFound when there is none.
	// Its Parent carries the parent's type and id, no name (see NameRef).
	GetEntity(ctx context.Context, id string) (*Entity, error)
	// GetEntities returns the entities found among ids, keyed by id; missing ids are left out.
	// One BatchGet (eventually consistent, like the list queries).
	GetEntities(ctx context.Context, ids []string) (map[string]*Entity, error)
	// UpdateEntity reads the entity, calls fn on it, and writes it back only if nobody changed it
	// meanwhile (retrying fn a few times), moving the billingId reservation when it changed.
	// Returns fn's error, NotFound, Conflict "billing_id_taken", or Conflict "concurrent_update".
	UpdateEntity(ctx context.Context, id string, fn func(*Entity) error) (*Entity, error)
	// DeleteEntity removes the entity, its billingId reservation, and decrements the counters of
	// its ancestors, atomically, only while it has no children, users or active subscriptions:
	// Conflict "has_children" otherwise.
	DeleteEntity(ctx context.Context, id string) error
	// ListSubtree returns every entity of type t whose path starts with pathPrefix (one query;
	// parents without names, like GetEntity).
	ListSubtree(ctx context.Context, t access.EntityType, pathPrefix string) ([]*Entity, error)
}

var (
	emailRe   = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	dateRe    = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	billingRe = regexp.MustCompile(`^[A-Za-z0-9._:\-]{1,64}$`)
)

// ValidEmail reports whether s looks like an e-mail address.
func ValidEmail(s string) bool { return len(s) <= 254 && emailRe.MatchString(s) }

func checkText(f *apperr.Fields, field, v string, max int) {
	if len(v) > max {
		f.Add(field, "too_long", field+" must be at most "+itoa(max)+" characters")
	}
	if strings.ContainsAny(v, "\x00\r\n") {
		f.Add(field, "invalid", field+" must not contain control characters")
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
