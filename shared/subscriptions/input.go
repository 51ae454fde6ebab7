package subscriptions

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
)

// MaxQuantity bounds the seats of one subscription, to catch typos before they are billed.
const MaxQuantity = 1_000_000_000

// parseQuantity reads a seat count: an integer between 1 and MaxQuantity, as a JSON number or a
// decimal string ("10", 10, 10.0).
func parseQuantity(f *apperr.Fields, t money.Text) money.Decimal {
	d, err := t.Decimal()
	switch {
	case t == "":
		f.Required("quantity", true)
	case err != nil:
		f.Add("quantity", "invalid", "quantity must be a whole number of seats")
	case !d.IsInteger():
		f.Add("quantity", "invalid", "quantity must be a whole number of seats")
	case d.Cmp(money.NewFromInt(1)) < 0 || d.Cmp(money.NewFromInt(MaxQuantity)) > 0:
		f.Add("quantity", "out_of_range", "quantity must be between 1 and 1000000000")
	default:
		return d.Round(0)
	}
	return money.Decimal{}
}

// parseStart reads a start date: an RFC 3339 timestamp, or a date YYYY-MM-DD meaning its first
// instant in UTC.
func parseStart(f *apperr.Fields, s string) *time.Time {
	if s == "" {
		return nil
	}
	if t, err := period.ParseDate(s); err == nil {
		return &t
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		f.Add("startDate", "invalid", "startDate must be an RFC 3339 timestamp or a date YYYY-MM-DD")
		return nil
	}
	t = t.UTC()
	return &t
}

func checkLicenseKey(f *apperr.Fields, k string, required bool) {
	if required {
		f.Required("licenseKey", strings.TrimSpace(k) == "")
	}
	if len(k) > 512 {
		f.Add("licenseKey", "too_long", "licenseKey must be at most 512 characters")
	}
	if strings.ContainsAny(k, "\x00\r\n\t") {
		f.Add("licenseKey", "invalid", "licenseKey must not contain control characters")
	}
}

// CreateInput is the body of POST /subscriptions. TenantID defaults to the caller's own tenant
// for tenant users; StartDate defaults to now and may be earlier (imports), but not in the
// future nor in a period already invoiced for the tenant.
type CreateInput struct {
	TenantID   string     `json:"tenantId,omitempty"`
	PlanID     string     `json:"planId"`
	Quantity   money.Text `json:"quantity"`
	StartDate  string     `json:"startDate,omitempty"`
	LicenseKey string     `json:"licenseKey,omitempty"`

	quantity money.Decimal
	start    *time.Time
}

// Validate reports every bad field at once (Invalid).
func (in *CreateInput) Validate() error {
	var f apperr.Fields
	in.TenantID = strings.TrimSpace(in.TenantID)
	in.PlanID = strings.TrimSpace(in.PlanID)
	f.Required("planId", in.PlanID == "")
	in.quantity = parseQuantity(&f, in.Quantity)
	in.start = parseStart(&f, in.StartDate)
	checkLicenseKey(&f, in.LicenseKey, false)
	return f.Err()
}

// UpdateInput is the body of PUT /subscriptions/{id}: the seats and/or the plan. The other
// fields are listed only to refuse them with a clear error.
type UpdateInput struct {
	Quantity   *money.Text      `json:"quantity,omitempty"`
	PlanID     *string          `json:"planId,omitempty"`
	TenantID   *json.RawMessage `json:"tenantId,omitempty"`
	Status     *json.RawMessage `json:"status,omitempty"`
	StartDate  *json.RawMessage `json:"startDate,omitempty"`
	CancelAt   *json.RawMessage `json:"cancelAt,omitempty"`
	LicenseKey *json.RawMessage `json:"licenseKey,omitempty"`

	quantity *money.Decimal
}

// Validate reports every bad field at once (Invalid).
func (in *UpdateInput) Validate() error {
	var f apperr.Fields
	if in.Quantity == nil && in.PlanID == nil {
		f.Add("quantity", "required", "give quantity and/or planId")
	}
	if in.Quantity != nil {
		q := parseQuantity(&f, *in.Quantity)
		in.quantity = &q
	}
	if in.PlanID != nil {
		*in.PlanID = strings.TrimSpace(*in.PlanID)
		f.Required("planId", *in.PlanID == "")
	}
	if in.TenantID != nil {
		f.Add("tenantId", "immutable", "a subscription never moves to another tenant")
	}
	if in.Status != nil {
		f.Add("status", "not_allowed", "cancel through DELETE /subscriptions/{id}?at=now|period_end")
	}
	if in.CancelAt != nil {
		f.Add("cancelAt", "not_allowed", "cancel through DELETE /subscriptions/{id}?at=now|period_end")
	}
	if in.StartDate != nil {
		f.Add("startDate", "immutable", "the start date of a subscription never changes")
	}
	if in.LicenseKey != nil {
		f.Add("licenseKey", "not_allowed", "set the key through PUT /subscriptions/{id}/license-key")
	}
	return f.Err()
}

// LicenseKeyInput is the body of PUT /subscriptions/{id}/license-key.
type LicenseKeyInput struct {
	LicenseKey string `json:"licenseKey"`
}

// Validate reports every bad field at once (Invalid).
func (in LicenseKeyInput) Validate() error {
	var f apperr.Fields
	checkLicenseKey(&f, in.LicenseKey, true)
	return f.Err()
}

// validCancelMode checks the ?at= of a cancellation ("" is now).
func validCancelMode(at string) (string, error) {
	switch at {
	case "", CancelNow:
		return CancelNow, nil
	case CancelPeriodEnd:
		return at, nil
	}
	return "", apperr.Field("at", "invalid", "at must be now or period_end")
}
