package billing

import (
	"context"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/listing"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
)

// maxRange is the most periods one commission query spans.
const maxRange = 36

// lastClosed is the default period of the read routes: the last one that has ended.
func (s *Service) lastClosed() period.Period { return period.Of(s.now()).Prev() }

// parsePeriod reads an optional period parameter (default def).
func parsePeriod(f *apperr.Fields, field, v string, def period.Period) period.Period {
	if v == "" {
		return def
	}
	p, err := period.Parse(v)
	if err != nil {
		f.Add(field, "invalid", field+" must be YYYY-MM")
	}
	return p
}

// entityIn returns the entity with id when it lies in the caller's subtree; NotFound naming
// field otherwise.
func (s *Service) entityIn(ctx context.Context, pr access.Principal, id, field string, types ...access.EntityType) (*hierarchy.Entity, error) {
	e, err := s.Entities.GetEntity(ctx, id)
	if apperr.Is(err, apperr.NotFound) || (err == nil && !pr.Covers(e.Path)) {
		return nil, fieldErr(apperr.NotFound, field, "not_found", "No entity with this id.")
	}
	if err != nil {
		return nil, err
	}
	if len(types) > 0 {
		ok := false
		for _, t := range types {
			ok = ok || e.Type == t
		}
		if !ok {
			return nil, fieldErr(apperr.Unprocessable, field, "wrong_type", field+" names a "+string(e.Type)+", which this query does not take")
		}
	}
	return e, nil
}

// InvoiceFields are the searchable and sortable fields of invoices.
var InvoiceFields = listing.Fields[InvoiceRef]{
	ID: func(r InvoiceRef) string { return r.InvoiceID },
	Searchable: map[string]func(InvoiceRef) string{
		"number":   func(r InvoiceRef) string { return r.Number },
		"tenantId": func(r InvoiceRef) string { return r.TenantID },
		"period":   func(r InvoiceRef) string { return r.Period.String() },
		"issuedAt": func(r InvoiceRef) string { return r.IssuedAt.UTC().Format(listing.TimeLayout) },
	},
	DefaultSort: "number",
}

// ListInvoices returns a page of the invoices in the caller's subtree. Filters: "tenantId"
// (in the subtree: NotFound otherwise) and "period"; without either, the period is the last one
// that ended (tenant users: all their invoices), and the next token keeps it. Forbidden,
// Invalid, NotFound.
func (s *Service) ListInvoices(ctx context.Context, pr access.Principal, q *listing.Query, after *listing.Cursor) ([]*Invoice, *listing.Cursor, error) {
	if err := pr.Require(access.InvoicesList); err != nil {
		return nil, nil, err
	}
	if err := InvoiceFields.Validate(q); err != nil {
		return nil, nil, err
	}
	var f apperr.Fields
	tenantID := q.Filters["tenantId"]
	if tenantID == "" && pr.ScopeType == access.Tenant {
		tenantID = pr.ScopeID
	}
	var p period.Period
	if v := q.Filters["period"]; v != "" || tenantID == "" {
		p = parsePeriod(&f, "period", v, s.lastClosed())
		if q.Filters == nil {
			q.Filters = map[string]string{}
		}
		q.Filters["period"] = p.String()
	}
	if err := f.Err(); err != nil {
		return nil, nil, err
	}
	var refs []InvoiceRef
	var err error
	switch {
	case tenantID != "":
		t, err2 := s.entityIn(ctx, pr, tenantID, "tenantId", access.Tenant)
		if err2 != nil {
			return nil, nil, err2
		}
		if p.IsZero() {
			refs, err = s.Store.TenantInvoiceRefs(ctx, t.ID)
		} else {
			refs, err = s.Store.InvoiceRefs(ctx, p, t.Path)
		}
	default:
		refs, err = s.Store.InvoiceRefs(ctx, p, pr.ScopePath)
	}
	if err != nil {
		return nil, nil, err
	}
	kept := refs[:0]
	for _, r := range refs {
		if pr.Covers(r.TenantPath) && (tenantID == "" || r.TenantID == tenantID) {
			kept = append(kept, r)
		}
	}
	page, next := listing.Apply(InvoiceFields, kept, *q, after)
	idList := make([]string, len(page))
	for i, r := range page {
		idList[i] = r.InvoiceID
	}
	// An indexed invoice exists (it and its index entries are written in one transaction): one
	// that cannot be read is an error, never a page silently shorter than its listing.
	out, err := s.Store.LoadInvoices(ctx, idList)
	if err != nil {
		return nil, nil, err
	}
	return out, next, nil
}

// GetInvoice returns an invoice of the caller's subtree. Forbidden, NotFound.
func (s *Service) GetInvoice(ctx context.Context, pr access.Principal, id string) (*Invoice, error) {
	if err := pr.Require(access.InvoicesRead); err != nil {
		return nil, err
	}
	inv, err := s.Store.GetInvoice(ctx, id)
	if apperr.Is(err, apperr.NotFound) || (err == nil && !pr.Covers(inv.TenantPath)) {
		return nil, apperr.NotFoundf("No invoice with this id.")
	}
	return inv, err
}

// Scope names what a summary covers.
type Scope struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// SubscriptionTotal is one subscription's invoiced amount in a summary.
type SubscriptionTotal struct {
	SubscriptionID string      `json:"subscriptionId"`
	TenantID       string      `json:"tenantId"`
	Total          money.Money `json:"total"`
}

// Summary is the answer of GET /api/v1/billing/summary (SPEC 7.1).
type Summary struct {
	Scope         Scope               `json:"scope"`
	Period        string              `json:"period"`
	Currency      string              `json:"currency"`
	InvoiceCount  int                 `json:"invoiceCount"`
	Total         money.Money         `json:"total"`
	Subscriptions []SubscriptionTotal `json:"subscriptions"`
}

// SummaryInput selects a billing summary: at most one of TenantID, SubscriptionID, EntityID
// (none: the caller's scope entity), and a period (default the last one that ended).
type SummaryInput struct {
	TenantID, SubscriptionID, EntityID, Period string
}

func (s *Service) currencyOf(e *hierarchy.Entity) string {
	if e != nil && e.Currency != "" {
		return e.Currency
	}
	return s.PlatformCurrency
}

// Summary totals the invoices of a tenant, a subscription or a channel entity's subtree for a
// period. Forbidden; Invalid (two selectors, bad period); NotFound (outside the subtree);
// Unprocessable "mixed_currencies" when the subtree invoices in several currencies.
func (s *Service) Summary(ctx context.Context, pr access.Principal, in SummaryInput) (*Summary, error) {
	if err := pr.Require(access.BillingSummaryRead); err != nil {
		return nil, err
	}
	var f apperr.Fields
	n := 0
	for _, v := range []string{in.TenantID, in.SubscriptionID, in.EntityID} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		f.Add("tenantId", "exclusive", "give at most one of tenantId, subscriptionId and entityId")
	}
	p := parsePeriod(&f, "period", in.Period, s.lastClosed())
	if err := f.Err(); err != nil {
		return nil, err
	}
	out := &Summary{Period: p.String(), Subscriptions: []SubscriptionTotal{}}
	var refs []InvoiceRef
	var err error
	var scopeEntity *hierarchy.Entity
	switch {
	case in.SubscriptionID != "":
		sub, err2 := s.Subscriptions.GetSubscription(ctx, in.SubscriptionID)
		if apperr.Is(err2, apperr.NotFound) || (err2 == nil && !pr.Covers(sub.TenantPath)) {
			return nil, fieldErr(apperr.NotFound, "subscriptionId", "not_found", "No subscription with this id.")
		}
		if err2 != nil {
			return nil, err2
		}
		out.Scope = Scope{Type: "subscription", ID: sub.ID}
		if scopeEntity, err = s.Entities.GetEntity(ctx, sub.TenantID); err != nil {
			return nil, err
		}
		ref, err2 := s.Store.InvoiceRef(ctx, sub.TenantID, p)
		if err2 != nil && !apperr.Is(err2, apperr.NotFound) {
			return nil, err2
		}
		if ref != nil {
			if _, ok := ref.SubTotals[sub.ID]; ok {
				r := *ref
				r.SubTotals = map[string]money.Decimal{sub.ID: ref.SubTotals[sub.ID]}
				r.Total = ref.SubTotals[sub.ID]
				refs = []InvoiceRef{r}
			}
		}
	default:
		id, field := in.EntityID, "entityId"
		if in.TenantID != "" {
			id, field = in.TenantID, "tenantId"
		}
		if id == "" {
			id = pr.ScopeID
		}
		types := []access.EntityType{access.Platform, access.Distributor, access.Partner, access.Tenant}
		if field == "tenantId" {
			types = []access.EntityType{access.Tenant}
		}
		if scopeEntity, err = s.entityIn(ctx, pr, id, field, types...); err != nil {
			return nil, err
		}
		out.Scope = Scope{Type: string(scopeEntity.Type), ID: scopeEntity.ID}
		if refs, err = s.Store.InvoiceRefs(ctx, p, scopeEntity.Path); err != nil {
			return nil, err
		}
	}
	out.Currency = s.currencyOf(scopeEntity)
	total := money.Zero
	for i, r := range refs {
		if i == 0 {
			out.Currency = r.Currency
		} else if r.Currency != out.Currency {
			return nil, apperr.New(apperr.Unprocessable, "mixed_currencies", "The invoices of this scope are in several currencies; ask per partner or tenant.")
		}
		total = total.Add(r.Total)
		out.InvoiceCount++
		for _, sid := range sortedKeys(r.SubTotals) {
			out.Subscriptions = append(out.Subscriptions, SubscriptionTotal{SubscriptionID: sid, TenantID: r.TenantID,
				Total: money.Money{Amount: r.SubTotals[sid], Currency: r.Currency}})
		}
	}
	out.Total = money.Money{Amount: total, Currency: out.Currency}
	return out, nil
}

func sortedKeys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// TenantCommission is one tenant's part of a commission summary.
type TenantCommission struct {
	TenantID   string      `json:"tenantId"`
	Revenue    money.Money `json:"revenue"`
	Cost       money.Money `json:"cost"`
	Commission money.Money `json:"commission"`
}

// CommissionSummary is the answer of GET /api/v1/commissions/summary (SPEC 7.1): what the
// entity's children paid it (revenue), what it paid its parent (cost) and the difference.
type CommissionSummary struct {
	EntityID   string             `json:"entityId"`
	StartDate  string             `json:"startDate"`
	EndDate    string             `json:"endDate"`
	Currency   string             `json:"currency"`
	Revenue    money.Money        `json:"revenue"`
	Cost       money.Money        `json:"cost"`
	Commission money.Money        `json:"commission"`
	Tenants    []TenantCommission `json:"tenants"`
}

// CommissionQuery selects commissions: an entity (default the caller's scope entity), a range
// of periods (default the last one that ended) and optionally one tenant (customer).
type CommissionQuery struct {
	EntityID, StartDate, EndDate, CustomerID string
}

// commissionLines reads the lines selected by q in the caller's subtree. When entity is true
// the lines are the entity's own (summary); otherwise every line under the entity (list).
func (s *Service) commissionLines(ctx context.Context, pr access.Principal, q CommissionQuery, own bool) (*hierarchy.Entity, period.Period, period.Period, []CommissionLine, error) {
	var f apperr.Fields
	def := s.lastClosed()
	from := parsePeriod(&f, "start_date", q.StartDate, def)
	to := from
	if q.EndDate != "" || q.StartDate == "" {
		to = parsePeriod(&f, "end_date", q.EndDate, def)
	}
	if f.Empty() {
		if to.Before(from) {
			f.Add("end_date", "out_of_range", "end_date must not be before start_date")
		} else if n := (to.Year-from.Year)*12 + int(to.Month) - int(from.Month); n >= maxRange {
			f.Add("end_date", "out_of_range", "a query spans at most 36 periods")
		}
	}
	if err := f.Err(); err != nil {
		return nil, from, to, nil, err
	}
	id := q.EntityID
	if id == "" {
		id = pr.ScopeID
	}
	types := []access.EntityType{access.Distributor, access.Partner}
	if !own {
		types = append(types, access.Platform)
	}
	e, err := s.entityIn(ctx, pr, id, "entityId", types...)
	if err != nil {
		return nil, from, to, nil, err
	}
	if q.CustomerID != "" {
		if _, err := s.entityIn(ctx, pr, q.CustomerID, "customer_id", access.Tenant); err != nil {
			return nil, from, to, nil, err
		}
	}
	var out []CommissionLine
	for p := from; !to.Before(p); p = p.Next() {
		ls, err := s.Store.CommissionLines(ctx, p, e.Path)
		if err != nil {
			return nil, from, to, nil, err
		}
		for _, l := range ls {
			if own && l.EntityID != e.ID {
				continue
			}
			if q.CustomerID != "" && l.TenantID != q.CustomerID {
				continue
			}
			if !pr.Covers(l.EntityPath) {
				continue
			}
			out = append(out, l)
		}
	}
	return e, from, to, out, nil
}

// CommissionSummary totals what a distributor or partner earned over a range of periods, per
// tenant. Forbidden; Invalid (bad or reversed periods); NotFound (entity or customer outside
// the subtree); Unprocessable "mixed_currencies".
func (s *Service) CommissionSummary(ctx context.Context, pr access.Principal, q CommissionQuery) (*CommissionSummary, error) {
	if err := pr.Require(access.CommissionsRead); err != nil {
		return nil, err
	}
	e, from, to, lines, err := s.commissionLines(ctx, pr, q, true)
	if err != nil {
		return nil, err
	}
	cur := s.currencyOf(e)
	if len(lines) > 0 {
		cur = lines[0].Currency
	}
	out := &CommissionSummary{EntityID: e.ID, StartDate: from.String(), EndDate: to.String(), Currency: cur, Tenants: []TenantCommission{}}
	sum := CommissionRaw{Revenue: money.Zero, Cost: money.Zero, Commission: money.Zero}
	per := map[string]*CommissionRaw{}
	for _, l := range lines {
		if l.Currency != cur {
			return nil, apperr.New(apperr.Unprocessable, "mixed_currencies", "The commissions of this entity are in several currencies.")
		}
		sum.Revenue, sum.Cost, sum.Commission = sum.Revenue.Add(l.Raw.Revenue), sum.Cost.Add(l.Raw.Cost), sum.Commission.Add(l.Raw.Commission)
		t := per[l.TenantID]
		if t == nil {
			t = &CommissionRaw{Revenue: money.Zero, Cost: money.Zero, Commission: money.Zero}
			per[l.TenantID] = t
		}
		t.Revenue, t.Cost, t.Commission = t.Revenue.Add(l.Raw.Revenue), t.Cost.Add(l.Raw.Cost), t.Commission.Add(l.Raw.Commission)
	}
	m := func(d money.Decimal) money.Money { return money.Money{Amount: d, Currency: cur} }
	out.Revenue, out.Cost, out.Commission = m(sum.Revenue), m(sum.Cost), m(sum.Commission)
	for _, id := range sortedKeys(per) {
		t := per[id]
		out.Tenants = append(out.Tenants, TenantCommission{TenantID: id, Revenue: m(t.Revenue), Cost: m(t.Cost), Commission: m(t.Commission)})
	}
	return out, nil
}

// CommissionFields are the searchable and sortable fields of commission lines.
var CommissionFields = listing.Fields[CommissionLine]{
	ID: func(l CommissionLine) string { return l.Period + "#" + l.EntityID + "#" + l.TenantID },
	Searchable: map[string]func(CommissionLine) string{
		"period":   func(l CommissionLine) string { return l.Period },
		"entityId": func(l CommissionLine) string { return l.EntityID },
		"tenantId": func(l CommissionLine) string { return l.TenantID },
	},
	DefaultSort: "period",
}

// ListCommissions returns a page of commission lines (per entity, tenant and period) under an
// entity of the caller's subtree (default the caller's scope). Filters: "entityId",
// "customer_id", "start_date", "end_date"; the next token keeps the periods. Forbidden,
// Invalid, NotFound.
func (s *Service) ListCommissions(ctx context.Context, pr access.Principal, q *listing.Query, after *listing.Cursor) ([]CommissionLine, *listing.Cursor, error) {
	if err := pr.Require(access.CommissionsRead); err != nil {
		return nil, nil, err
	}
	if err := CommissionFields.Validate(q); err != nil {
		return nil, nil, err
	}
	cq := CommissionQuery{EntityID: q.Filters["entityId"], StartDate: q.Filters["start_date"], EndDate: q.Filters["end_date"], CustomerID: q.Filters["customer_id"]}
	_, from, to, lines, err := s.commissionLines(ctx, pr, cq, false)
	if err != nil {
		return nil, nil, err
	}
	if q.Filters == nil {
		q.Filters = map[string]string{}
	}
	q.Filters["start_date"], q.Filters["end_date"] = from.String(), to.String()
	page, next := listing.Apply(CommissionFields, lines, *q, after)
	if page == nil {
		page = []CommissionLine{}
	}
	return page, next, nil
}

// fieldErr returns an error of kind naming one field.
func fieldErr(kind apperr.Kind, field, code, message string) error {
	return &apperr.Error{Kind: kind, Code: code, Message: message, Fields: []apperr.FieldError{{Field: field, Code: code, Message: message}}}
}
