package hierarchy

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/money"
)

// ParentInput names the parent on create.
type ParentInput struct {
	Type access.EntityType `json:"type"`
	ID   string            `json:"id"`
}

// MarkupInput adds an entry to a markup history.
type MarkupInput struct {
	Markup    money.Text `json:"markup"`
	StartDate string     `json:"startDate"`
}

// Validate reports every bad field at once.
func (in MarkupInput) Validate() error {
	var f apperr.Fields
	validateMarkup(&f, "", in)
	return f.Err()
}

func validateMarkup(f *apperr.Fields, prefix string, in MarkupInput) {
	d, err := money.Parse(string(in.Markup))
	switch {
	case in.Markup == "":
		f.Required(prefix+"markup", true)
	case err != nil:
		f.Add(prefix+"markup", "invalid", "markup must be a decimal percentage such as \"10.0\"")
	case d.IsNeg() || d.Cmp(money.NewFromInt(1000)) > 0:
		f.Add(prefix+"markup", "out_of_range", "markup must be between 0 and 1000 percent")
	case !d.Round(4).Equal(d):
		f.Add(prefix+"markup", "invalid", "markup has at most 4 decimal places")
	}
	if in.StartDate == "" {
		f.Required(prefix+"startDate", true)
	} else if _, err := time.Parse(time.DateOnly, in.StartDate); err != nil || !dateRe.MatchString(in.StartDate) {
		f.Add(prefix+"startDate", "invalid", "startDate must be a date YYYY-MM-DD")
	}
}

// CreateInput creates a distributor, partner or tenant. Fields that do not apply to the type are
// refused by Validate.
type CreateInput struct {
	Name         string        `json:"name"`
	Parent       *ParentInput  `json:"parent,omitempty"`
	BillingID    string        `json:"billingId,omitempty"`
	Currency     string        `json:"currency,omitempty"`
	ContactEmail string        `json:"contactEmail,omitempty"`
	ContactName  string        `json:"contactName,omitempty"`
	Phone        string        `json:"phone,omitempty"`
	Tier         string        `json:"tier,omitempty"`
	BillingCycle string        `json:"billingCycle,omitempty"`
	Markups      []MarkupInput `json:"markups,omitempty"`
}

// Validate checks the input for an entity of type t and reports every bad field at once.
func (in *CreateInput) Validate(t access.EntityType) error {
	var f apperr.Fields
	in.Name = strings.TrimSpace(in.Name)
	f.Required("name", in.Name == "")
	checkText(&f, "name", in.Name, 200)
	if in.Parent != nil {
		f.Required("parent.type", in.Parent.Type == "")
		f.Required("parent.id", in.Parent.ID == "")
	}
	validateCommon(&f, t, in.BillingID, in.Currency, in.ContactEmail, in.ContactName, in.Phone, in.Tier, in.BillingCycle)
	if len(in.Markups) > 0 && t == access.Tenant {
		f.Add("markups", "not_allowed", "tenants have no markups; use a price-list override")
	}
	for i, m := range in.Markups {
		validateMarkup(&f, "markups["+itoa(i)+"].", m)
	}
	return f.Err()
}

func validateCommon(f *apperr.Fields, t access.EntityType, billingID, currency, email, contactName, phone, tier, cycle string) {
	if billingID != "" && !billingRe.MatchString(billingID) {
		f.Add("billingId", "invalid", "billingId has 1 to 64 letters, digits or . _ : -")
	}
	if currency != "" && !money.ValidCurrency(currency) {
		f.Add("currency", "invalid", "currency must be an ISO 4217 code such as EUR")
	}
	if email != "" && !ValidEmail(email) {
		f.Add("contactEmail", "invalid", "contactEmail must be an e-mail address")
	}
	checkText(f, "contactName", contactName, 200)
	checkText(f, "phone", phone, 40)
	if tier != "" {
		if t != access.Partner {
			f.Add("tier", "not_allowed", "only partners have a tier")
		} else if tier != TierStandard && tier != TierPremium && tier != TierEnterprise {
			f.Add("tier", "invalid", "tier must be standard, premium or enterprise")
		}
	}
	if cycle != "" {
		if t != access.Tenant {
			f.Add("billingCycle", "not_allowed", "only tenants have a billing cycle")
		} else if cycle != "monthly" {
			f.Add("billingCycle", "invalid", "billingCycle must be monthly")
		}
	}
	if (contactName != "" || phone != "") && t != access.Tenant {
		if contactName != "" {
			f.Add("contactName", "not_allowed", "only tenants have a contact name")
		}
		if phone != "" {
			f.Add("phone", "not_allowed", "only tenants have a phone")
		}
	}
}

// UpdateInput changes an entity; nil fields are left alone. Parent and Status are listed only to
// refuse them with a clear error: the parent never changes, and status changes go through
// suspension.
type UpdateInput struct {
	Name         *string          `json:"name,omitempty"`
	BillingID    *string          `json:"billingId,omitempty"`
	Currency     *string          `json:"currency,omitempty"`
	ContactEmail *string          `json:"contactEmail,omitempty"`
	ContactName  *string          `json:"contactName,omitempty"`
	Phone        *string          `json:"phone,omitempty"`
	Tier         *string          `json:"tier,omitempty"`
	BillingCycle *string          `json:"billingCycle,omitempty"`
	Parent       *json.RawMessage `json:"parent,omitempty"`
	Status       *json.RawMessage `json:"status,omitempty"`
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Validate checks the input for an entity of type t and reports every bad field at once.
func (in *UpdateInput) Validate(t access.EntityType) error {
	var f apperr.Fields
	if in.Name != nil {
		*in.Name = strings.TrimSpace(*in.Name)
		f.Required("name", *in.Name == "")
		checkText(&f, "name", *in.Name, 200)
	}
	if in.Parent != nil {
		f.Add("parent", "immutable", "the parent of an entity cannot be changed")
	}
	if in.Status != nil {
		f.Add("status", "immutable", "status changes through the suspension endpoint")
	}
	validateCommon(&f, t, str(in.BillingID), str(in.Currency), str(in.ContactEmail), str(in.ContactName), str(in.Phone), str(in.Tier), str(in.BillingCycle))
	return f.Err()
}

// SuspensionInput suspends or reinstates an entity.
type SuspensionInput struct {
	Suspended *bool  `json:"suspended"`
	Reason    string `json:"reason,omitempty"`
}

// Validate reports every bad field at once.
func (in SuspensionInput) Validate() error {
	var f apperr.Fields
	f.Required("suspended", in.Suspended == nil)
	if in.Suspended != nil && *in.Suspended && strings.TrimSpace(in.Reason) == "" {
		f.Add("reason", "required", "reason is required when suspending")
	}
	checkText(&f, "reason", in.Reason, 500)
	return f.Err()
}
