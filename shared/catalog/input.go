package catalog

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/pricing"
)

var codeRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$`)

// TierInput is one tier of a graduated or volume rate as it arrives in a body. A missing (or
// null) upTo marks the open last tier.
type TierInput struct {
	UpTo      money.Text `json:"upTo"`
	UnitPrice money.Text `json:"unitPrice"`
	FlatFee   money.Text `json:"flatFee,omitempty"`
}

// RateInput is a rate as it arrives in a body (SPEC 8.1): decimals may be JSON strings or
// numbers. Fields the model does not use must be left out.
type RateInput struct {
	Model            pricing.Model `json:"model"`
	UnitPrice        money.Text    `json:"unitPrice,omitempty"`
	Tiers            []TierInput   `json:"tiers,omitempty"`
	PackageSize      money.Text    `json:"packageSize,omitempty"`
	PackagePrice     money.Text    `json:"packagePrice,omitempty"`
	IncludedQuantity money.Text    `json:"includedQuantity,omitempty"`
}

// parseRate converts the input into a pricing.Rate and records every bad field in f under prefix
// ("" or "override."): decimals that do not parse, then the rules of pricing.Rate.Validate
// (tiers ordered and contiguous, last tier open, no negative price, fields the model does not
// use). A field is reported once.
func (in *RateInput) parseRate(f *apperr.Fields, prefix string) pricing.Rate {
	bad := map[string]bool{}
	dec := func(field string, t money.Text) *money.Decimal {
		if t == "" {
			return nil
		}
		d, err := t.Decimal()
		if err != nil {
			bad[field] = true
			f.Add(prefix+field, "invalid", prefix+field+" must be a decimal number such as \"0.10\"")
			return nil
		}
		return &d
	}
	r := pricing.Rate{Model: in.Model}
	r.UnitPrice = dec("unitPrice", in.UnitPrice)
	r.PackageSize = dec("packageSize", in.PackageSize)
	r.PackagePrice = dec("packagePrice", in.PackagePrice)
	if q := dec("includedQuantity", in.IncludedQuantity); q != nil {
		r.IncludedQuantity = *q
	}
	if len(in.Tiers) > MaxTiers {
		f.Add(prefix+"tiers", "too_many", fmt.Sprintf("%stiers holds at most %d tiers", prefix, MaxTiers))
		bad["tiers"] = true
	}
	for i, t := range in.Tiers {
		field := func(name string) string { return fmt.Sprintf("tiers[%d].%s", i, name) }
		tier := pricing.Tier{UpTo: dec(field("upTo"), t.UpTo)}
		if t.UnitPrice == "" {
			bad[field("unitPrice")] = true
			f.Add(prefix+field("unitPrice"), "required", prefix+field("unitPrice")+" is required (0 for a free tier)")
		} else if p := dec(field("unitPrice"), t.UnitPrice); p != nil {
			tier.UnitPrice = *p
		}
		if fee := dec(field("flatFee"), t.FlatFee); fee != nil {
			tier.FlatFee = *fee
		}
		r.Tiers = append(r.Tiers, tier)
	}
	for _, fe := range pricing.FieldErrors(r.Validate()) {
		if bad[fe.Field] || (strings.HasPrefix(fe.Field, "tiers") && bad["tiers"]) {
			continue
		}
		f.Add(prefix+fe.Field, fe.Code, prefix+fe.Field+" "+fe.Message)
	}
	return r
}

func checkText(f *apperr.Fields, field, v string, max int) {
	if len(v) > max {
		f.Add(field, "too_long", fmt.Sprintf("%s must be at most %d characters", field, max))
	}
	if strings.ContainsAny(v, "\x00\r\n\t") {
		f.Add(field, "invalid", field+" must not contain control characters")
	}
}

func checkCode(f *apperr.Fields, code string) {
	switch {
	case code == "":
		f.Required("code", true)
	case !codeRe.MatchString(code):
		f.Add("code", "invalid", "code has 1 to 64 letters, digits or . _ : - and starts with a letter or digit")
	}
}

func checkCurrency(f *apperr.Fields, currency string) {
	if currency != "" && !money.ValidCurrency(currency) {
		f.Add("currency", "invalid", "currency must be an ISO 4217 code such as EUR")
	}
}

func checkDate(f *apperr.Fields, field, v string) {
	if v == "" {
		return
	}
	if _, err := period.ParseDate(v); err != nil {
		f.Add(field, "invalid", field+" must be a date YYYY-MM-DD")
	}
}

// parseThresholds reads thresholds: positive decimals in strictly ascending order.
func parseThresholds(f *apperr.Fields, in []money.Text) []money.Decimal {
	if len(in) > MaxThresholds {
		f.Add("thresholds", "too_many", fmt.Sprintf("thresholds holds at most %d values", MaxThresholds))
		return nil
	}
	out := make([]money.Decimal, 0, len(in))
	var prev *money.Decimal
	for i, t := range in {
		field := fmt.Sprintf("thresholds[%d]", i)
		d, err := t.Decimal()
		switch {
		case t == "" || err != nil:
			f.Add(field, "invalid", field+" must be a decimal number")
			continue
		case d.Sign() <= 0:
			f.Add(field, "invalid", field+" must be greater than 0")
		case prev != nil && d.Cmp(*prev) <= 0:
			f.Add(field, "not_ascending", fmt.Sprintf("%s must be greater than thresholds[%d] (%s)", field, i-1, prev))
		}
		out = append(out, d)
		prev = &d
	}
	return out
}

// SKUInput is the body of POST /pricing: the SKU and its first rate.
type SKUInput struct {
	Code       string       `json:"code"`
	Name       string       `json:"name"`
	Unit       string       `json:"unit,omitempty"`
	Currency   string       `json:"currency,omitempty"`
	Thresholds []money.Text `json:"thresholds,omitempty"`
	// EffectiveFrom dates the first rate; default: the current period's first day, so that a new
	// SKU can be used at once.
	EffectiveFrom string `json:"effectiveFrom,omitempty"`
	RateInput

	rate       pricing.Rate
	thresholds []money.Decimal
}

// Validate reports every bad field at once (Invalid).
func (in *SKUInput) Validate() error {
	var f apperr.Fields
	in.Code = strings.TrimSpace(in.Code)
	in.Name = strings.TrimSpace(in.Name)
	checkCode(&f, in.Code)
	f.Required("name", in.Name == "")
	checkText(&f, "name", in.Name, 200)
	checkText(&f, "unit", in.Unit, 50)
	checkCurrency(&f, in.Currency)
	checkDate(&f, "effectiveFrom", in.EffectiveFrom)
	in.thresholds = parseThresholds(&f, in.Thresholds)
	in.rate = in.RateInput.parseRate(&f, "")
	return f.Err()
}

// SKUUpdateInput is the body of PUT /pricing/{id}; nil fields are left alone. Any rate field
// records a new rate version, a complete replacement rate (model required) effective from
// EffectiveFrom (default: the next period's first day). Code and currency never change.
type SKUUpdateInput struct {
	Name          *string          `json:"name,omitempty"`
	Unit          *string          `json:"unit,omitempty"`
	Thresholds    *[]money.Text    `json:"thresholds,omitempty"`
	EffectiveFrom string           `json:"effectiveFrom,omitempty"`
	Code          *json.RawMessage `json:"code,omitempty"`
	Currency      *json.RawMessage `json:"currency,omitempty"`
	*RateInput

	rate       *pricing.Rate
	thresholds []money.Decimal
}

// Validate reports every bad field at once (Invalid).
func (in *SKUUpdateInput) Validate() error {
	var f apperr.Fields
	if in.Name != nil {
		*in.Name = strings.TrimSpace(*in.Name)
		f.Required("name", *in.Name == "")
		checkText(&f, "name", *in.Name, 200)
	}
	if in.Unit != nil {
		checkText(&f, "unit", *in.Unit, 50)
	}
	if in.Code != nil {
		f.Add("code", "immutable", "the code of a SKU never changes (usage refers to it)")
	}
	if in.Currency != nil {
		f.Add("currency", "immutable", "the currency of a SKU never changes; create another SKU")
	}
	if in.Thresholds != nil {
		in.thresholds = parseThresholds(&f, *in.Thresholds)
	}
	checkDate(&f, "effectiveFrom", in.EffectiveFrom)
	if in.RateInput != nil {
		r := in.RateInput.parseRate(&f, "")
		in.rate = &r
	} else if in.EffectiveFrom != "" {
		f.Add("effectiveFrom", "not_allowed", "effectiveFrom dates a rate change: send the new rate with it")
	}
	return f.Err()
}

// ChargeInput is one usage charge of a plan.
type ChargeInput struct {
	SKUID            string     `json:"skuId"`
	IncludedQuantity money.Text `json:"includedQuantity,omitempty"`
}

// PlanInput is the body of POST /plans. A plan is created as a draft.
type PlanInput struct {
	Code         string        `json:"code"`
	Name         string        `json:"name"`
	Currency     string        `json:"currency,omitempty"`
	BillingCycle string        `json:"billingCycle,omitempty"`
	BasePrice    money.Text    `json:"basePrice"`
	Charges      []ChargeInput `json:"charges,omitempty"`

	basePrice money.Decimal
	charges   []PlanCharge
}

func parseCharges(f *apperr.Fields, in []ChargeInput) []PlanCharge {
	if len(in) > MaxCharges {
		f.Add("charges", "too_many", fmt.Sprintf("a plan charges at most %d SKUs", MaxCharges))
		return nil
	}
	seen := map[string]int{}
	out := make([]PlanCharge, 0, len(in))
	for i, c := range in {
		field := fmt.Sprintf("charges[%d]", i)
		c.SKUID = strings.TrimSpace(c.SKUID)
		f.Required(field+".skuId", c.SKUID == "")
		if j, dup := seen[c.SKUID]; dup && c.SKUID != "" {
			f.Add(field+".skuId", "duplicate", fmt.Sprintf("%s.skuId repeats charges[%d].skuId", field, j))
		}
		seen[c.SKUID] = i
		pc := PlanCharge{SKUID: c.SKUID}
		if c.IncludedQuantity != "" {
			q, err := c.IncludedQuantity.Decimal()
			switch {
			case err != nil:
				f.Add(field+".includedQuantity", "invalid", field+".includedQuantity must be a decimal number")
			case q.IsNeg():
				f.Add(field+".includedQuantity", "invalid", field+".includedQuantity must not be negative")
			default:
				pc.IncludedQuantity = &q
			}
		}
		out = append(out, pc)
	}
	return out
}

func parseBasePrice(f *apperr.Fields, t money.Text) money.Decimal {
	d, err := t.Decimal()
	switch {
	case t == "":
		f.Required("basePrice", true)
	case err != nil:
		f.Add("basePrice", "invalid", "basePrice must be a decimal number such as \"30.00\"")
	case d.IsNeg():
		f.Add("basePrice", "invalid", "basePrice must not be negative")
	}
	return d
}

func checkCycle(f *apperr.Fields, cycle string) {
	if cycle != "" && cycle != "monthly" {
		f.Add("billingCycle", "invalid", "billingCycle must be monthly")
	}
}

// Validate reports every bad field at once (Invalid).
func (in *PlanInput) Validate() error {
	var f apperr.Fields
	in.Code = strings.TrimSpace(in.Code)
	in.Name = strings.TrimSpace(in.Name)
	checkCode(&f, in.Code)
	f.Required("name", in.Name == "")
	checkText(&f, "name", in.Name, 200)
	checkCurrency(&f, in.Currency)
	checkCycle(&f, in.BillingCycle)
	in.basePrice = parseBasePrice(&f, in.BasePrice)
	in.charges = parseCharges(&f, in.Charges)
	return f.Err()
}

// PlanUpdateInput is the body of PUT /plans/{id}, accepted on drafts only; nil fields are left
// alone and Charges, when given, replaces the whole list. Code and status are refused: the code
// never changes, the status changes through publish and retire.
type PlanUpdateInput struct {
	Name         *string          `json:"name,omitempty"`
	Currency     *string          `json:"currency,omitempty"`
	BillingCycle *string          `json:"billingCycle,omitempty"`
	BasePrice    *money.Text      `json:"basePrice,omitempty"`
	Charges      *[]ChargeInput   `json:"charges,omitempty"`
	Code         *json.RawMessage `json:"code,omitempty"`
	Status       *json.RawMessage `json:"status,omitempty"`

	basePrice money.Decimal
	charges   []PlanCharge
}

// Validate reports every bad field at once (Invalid).
func (in *PlanUpdateInput) Validate() error {
	var f apperr.Fields
	if in.Name != nil {
		*in.Name = strings.TrimSpace(*in.Name)
		f.Required("name", *in.Name == "")
		checkText(&f, "name", *in.Name, 200)
	}
	if in.Currency != nil {
		f.Required("currency", *in.Currency == "")
		checkCurrency(&f, *in.Currency)
	}
	if in.BillingCycle != nil {
		checkCycle(&f, *in.BillingCycle)
	}
	if in.BasePrice != nil {
		in.basePrice = parseBasePrice(&f, *in.BasePrice)
	}
	if in.Charges != nil {
		in.charges = parseCharges(&f, *in.Charges)
	}
	if in.Code != nil {
		f.Add("code", "immutable", "the code of a plan never changes")
	}
	if in.Status != nil {
		f.Add("status", "immutable", "the status changes through /publish and /retire")
	}
	return f.Err()
}

// OverrideInput is the body of PUT /pricelists/{tenantId}/{skuId}: the complete rate the tenant
// pays for the SKU instead of its partner's sell price, effective from EffectiveFrom (default:
// the next period's first day).
type OverrideInput struct {
	RateInput
	EffectiveFrom string `json:"effectiveFrom,omitempty"`

	rate pricing.Rate
}

// Validate reports every bad field at once (Invalid).
func (in *OverrideInput) Validate() error {
	var f apperr.Fields
	checkDate(&f, "effectiveFrom", in.EffectiveFrom)
	in.rate = in.RateInput.parseRate(&f, "")
	return f.Err()
}
