package tablestore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/subscriptions"
)

// The billing items (docs/data-model.md, "Billing"):
//
//	RUN#<run> / RUN                 the run
//	RUN#<run> / CNT#<nn>            one of 16 counter shards: Done, Created (ADD in the invoice
//	                                transaction; sharded so that concurrent workers rarely conflict)
//	RUN#<run> / TFAIL#<tenant>      a tenant the run gave up on, with the reason (sorts after RUN)
//	RUN#<run> / TPAGE#<nnnnnn>      a recorded fan-out page: its tenants, the listing's cursor
//	                                after it, its last tenant (sorts after RUN)
//	RUNP#<period> / <run>           the period's runs (written with the run)
//	RUNT#<run>#<tenant> / RUNT      the tenant is counted in the run (at most once)
//	CLOSE#<period> / CLOSE          the period's close: the lease (LeaseOwner, LeaseUntil) and what the
//	                                last finished close saw (Invoices)
//	INV#<invoice> / INV             the invoice, immutable
//	TINV#<tenant> / <period>        the invoice's index entry: at most one per tenant and period
//	                                (GSI1: INVP#<period> / <tenant path><invoice>)
//	INVSEQ#<issuer> / <year>        the issuer's last invoice number of the year
//	BILLED#<tenant> / <period>      the ledger: quantities billed per usage aggregate
//	COMM#<entity> / <period>        an entity's commission total of a period
//	COMM#<entity> / <period>#<tenant> one tenant line (GSI1: COMML#<period> / <entity path><tenant>)
const (
	runSK      = "RUN"
	runTSK     = "RUNT"
	failPrefix = "TFAIL#"
	pagePrefix = "TPAGE#"
	closeSK    = "CLOSE"
	invSK      = "INV"
	runShards  = 16
	markerLife = 400 * 24 * time.Hour
)

func runPK(id string) string           { return "RUN#" + id }
func runTPK(run, tenant string) string { return "RUNT#" + run + "#" + tenant }
func runPPK(p string) string           { return "RUNP#" + p }
func closePK(p string) string          { return "CLOSE#" + p }
func pageSK(n int) string              { return fmt.Sprintf("%s%06d", pagePrefix, n) }
func invPK(id string) string           { return "INV#" + id }
func tinvPK(tenant string) string      { return "TINV#" + tenant }
func invGSI(p string) string           { return "INVP#" + p }
func seqPK(issuer string) string       { return "INVSEQ#" + issuer }
func ledgerPK(tenant string) string    { return "BILLED#" + tenant }
func commPK(entity string) string      { return "COMM#" + entity }
func commGSI(p string) string          { return "COMML#" + p }
func shardSK(tenant string) string {
	h := fnv.New32a()
	h.Write([]byte(tenant))
	return fmt.Sprintf("CNT#%02d", h.Sum32()%runShards)
}
func periodText(p period.Period) string        { return p.String() }
func decText(d money.Decimal) string           { return d.String() }
func parseDec(s string) (money.Decimal, error) { return money.Parse(s) }

type runItem struct {
	PK, SK       string
	Kind         string
	ID           string
	Period       string
	Status       string `dynamo:"Status"`
	Trigger      string
	StartedAt    time.Time
	CompletedAt  *time.Time `dynamo:",omitempty"`
	ClosedAt     *time.Time `dynamo:",omitempty"`
	TenantsTotal int
	Planned      bool
	Closed       bool
	Done         int // shard items only
	Created      int // shard items only
	Failed       int // shard items only
}

type runPeriodItem struct {
	PK, SK string
	Kind   string
	RunID  string
}

type fanoutPageItem struct {
	PK, SK  string
	Kind    string
	Page    int
	Tenants []string `dynamo:",omitempty"`
	Next    string   `dynamo:",omitempty"`
	Last    string   `dynamo:",omitempty"`
	TTL     int64
}

type closeItem struct {
	PK, SK     string
	Kind       string
	LeaseOwner string `dynamo:",omitempty"`
	LeaseUntil int64  `dynamo:",omitempty"` // Unix milliseconds: compared as a number
	Invoices   int
	ClosedBy   string     `dynamo:",omitempty"`
	ClosedAt   *time.Time `dynamo:",omitempty"`
}

type runTenantItem struct {
	PK, SK  string
	Kind    string
	Created bool
	Failed  bool `dynamo:",omitempty"`
	TTL     int64
}

type runFailureItem struct {
	PK, SK   string
	Kind     string
	TenantID string
	Code     string
	Reason   string
	Attempts int
	At       time.Time
	TTL      int64
}

type invoiceItem struct {
	PK, SK          string
	Kind            string
	ID              string
	Number          string
	Seq             int64
	TenantID        string
	TenantPath      string
	IssuerID        string
	Period          string
	Status          string `dynamo:"Status"`
	Currency        string
	IssuedAt        time.Time
	Total           string
	PlatformRevenue string
	Lines           string // JSON of []billing.InvoiceLine
	Shares          string // JSON of []billing.EntityShare
	RunID           string
}

type invoiceRefItem struct {
	PK, SK     string
	GSI1PK     string
	GSI1SK     string
	Kind       string
	InvoiceID  string
	Number     string
	TenantID   string
	TenantPath string
	Period     string
	Currency   string
	Total      string
	IssuedAt   time.Time
	SubTotals  map[string]string `dynamo:",omitempty"`
}

type seqItem struct {
	PK, SK string
	Kind   string
	Seq    int64
}

type ledgerItem struct {
	PK, SK  string
	Kind    string
	Billed  map[string]string `dynamo:",omitempty"`
	Version int64
}

type commTotalItem struct {
	PK, SK     string
	Kind       string
	EntityID   string
	EntityPath string
	Period     string
	Currency   string
	Revenue    string
	Cost       string
	Commission string
	Tenants    int
	Digest     string
	// PeriodInvoices is how many invoices of the period the close that wrote it saw.
	PeriodInvoices int
}

type commLineItem struct {
	PK, SK     string
	GSI1PK     string
	GSI1SK     string
	Kind       string
	EntityID   string
	EntityPath string
	Period     string
	TenantID   string
	Currency   string
	Invoices   int
	Revenue    string
	Cost       string
	Commission string
}

// CreateRun implements billing.Store: the run and its period index entry, in one transaction.
func (s *Store) CreateRun(ctx context.Context, r *billing.Run) error {
	it := runItem{PK: runPK(r.ID), SK: runSK, Kind: "billingrun", ID: r.ID, Period: r.Period.String(), Status: r.Status,
		Trigger: r.Trigger, StartedAt: r.StartedAt}
	idx := runPeriodItem{PK: runPPK(r.Period.String()), SK: r.ID, Kind: "billingrunperiod", RunID: r.ID}
	err := s.db.WriteTx().Put(s.table.Put(it).If("attribute_not_exists(PK)")).Put(s.table.Put(idx)).Run(ctx)
	if failedAt(err)[0] {
		return apperr.New(apperr.Conflict, "run_exists", "A billing run with this id exists.")
	}
	return apperr.Wrap(err, "create run")
}

// PeriodRuns implements billing.Store: one strongly consistent query of the period's index,
// then each run (GetRun).
func (s *Store) PeriodRuns(ctx context.Context, p period.Period) ([]*billing.Run, error) {
	var idx []runPeriodItem
	if err := s.table.Get("PK", runPPK(p.String())).Consistent(true).All(ctx, &idx); err != nil {
		return nil, apperr.Wrap(err, "list period runs")
	}
	out := make([]*billing.Run, 0, len(idx))
	for _, it := range idx {
		r, err := s.GetRun(ctx, it.RunID)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// GetRun implements billing.Store: one strongly consistent query of the run's partition up to
// the run item (the counter shards and the run), then, when tenants failed, one query of the
// first billing.MaxFailuresShown failures.
func (s *Store) GetRun(ctx context.Context, id string) (*billing.Run, error) {
	var items []runItem
	if err := s.table.Get("PK", runPK(id)).Range("SK", dynamo.LessOrEqual, runSK).Consistent(true).All(ctx, &items); err != nil {
		return nil, apperr.Wrap(err, "get run")
	}
	var r *billing.Run
	done, created, failed := 0, 0, 0
	for _, it := range items {
		if it.SK == runSK {
			p, err := period.Parse(it.Period)
			if err != nil {
				return nil, apperr.Wrap(err, "decode run")
			}
			r = &billing.Run{ID: it.ID, Period: p, Status: it.Status, Trigger: it.Trigger, StartedAt: it.StartedAt,
				CompletedAt: it.CompletedAt, ClosedAt: it.ClosedAt, TenantsTotal: it.TenantsTotal, Planned: it.Planned, Closed: it.Closed}
			continue
		}
		done += it.Done
		created += it.Created
		failed += it.Failed
	}
	if r == nil {
		return nil, apperr.NotFoundf("No billing run with this id.")
	}
	r.TenantsDone, r.InvoicesCreated, r.TenantsFailed = done, created, failed
	r.Failures = []billing.TenantFailure{}
	if failed > 0 {
		var fs []runFailureItem
		err := s.table.Get("PK", runPK(id)).Range("SK", dynamo.BeginsWith, failPrefix).Consistent(true).
			Limit(billing.MaxFailuresShown).All(ctx, &fs)
		if err != nil {
			return nil, apperr.Wrap(err, "get run failures")
		}
		for _, f := range fs {
			r.Failures = append(r.Failures, billing.TenantFailure{TenantID: f.TenantID, Code: f.Code, Reason: f.Reason,
				Attempts: f.Attempts, At: f.At.UTC()})
		}
	}
	return r, nil
}

// subCursor is the position of a subscription in the GSI1 listing (its table and index keys),
// the ExclusiveStartKey of the next page.
type subCursor struct {
	PK, SK, G1, G2 string
}

func (c subCursor) key() dynamo.PagingKey {
	return dynamo.PagingKey{"PK": &types.AttributeValueMemberS{Value: c.PK}, "SK": &types.AttributeValueMemberS{Value: c.SK},
		"GSI1PK": &types.AttributeValueMemberS{Value: c.G1}, "GSI1SK": &types.AttributeValueMemberS{Value: c.G2}}
}

// SubscriptionPage implements billing.Store: queries of GSI1 (SUB) from the cursor, size+1
// items at a time, until size subscriptions are read and the next one belongs to another
// tenant. The cursor is the last subscription's keys (JSON, base64).
func (s *Store) SubscriptionPage(ctx context.Context, cursor string, size int) ([]*subscriptions.Subscription, string, error) {
	var start dynamo.PagingKey
	if cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cursor)
		var c subCursor
		if err == nil {
			err = json.Unmarshal(raw, &c)
		}
		if err != nil || c.G1 != "SUB" {
			return nil, "", apperr.Field("cursor", "invalid", "The subscription cursor is not valid.")
		}
		start = c.key()
	}
	var out []*subscriptions.Subscription
	var last subItem
	limit := size + 1 // one more than the page: is the next subscription another tenant's?
	for {
		q := s.table.Get("GSI1PK", "SUB").Index(GSI1).Limit(limit)
		if start != nil {
			q = q.StartFrom(start)
		}
		var items []subItem
		lek, err := q.AllWithLastEvaluatedKey(ctx, &items)
		if err != nil {
			return nil, "", apperr.Wrap(err, "list subscriptions page")
		}
		for _, it := range items {
			if len(out) >= size && it.TenantID != out[len(out)-1].TenantID {
				return out, encodeSubCursor(last), nil
			}
			sub, err := it.subscription()
			if err != nil {
				return nil, "", apperr.Wrap(err, "decode subscription")
			}
			out = append(out, sub)
			last = it
		}
		if lek == nil || len(items) == 0 {
			return out, "", nil
		}
		start = subCursor{PK: last.PK, SK: last.SK, G1: last.GSI1PK, G2: last.GSI1SK}.key()
		limit = min(size+1, 100) // the rest of the page's last tenant
	}
}

func encodeSubCursor(it subItem) string {
	b, _ := json.Marshal(subCursor{PK: it.PK, SK: it.SK, G1: it.GSI1PK, G2: it.GSI1SK}) // strings only: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// FanoutPage implements billing.Store.
func (s *Store) FanoutPage(ctx context.Context, runID string, page int) (*billing.FanoutPage, error) {
	var it fanoutPageItem
	err := s.table.Get("PK", runPK(runID)).Range("SK", dynamo.Equal, pageSK(page)).Consistent(true).One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, apperr.NotFoundf("The fan-out page is not recorded.")
	}
	if err != nil {
		return nil, apperr.Wrap(err, "get fan-out page")
	}
	return &billing.FanoutPage{Page: it.Page, Tenants: it.Tenants, Next: it.Next, Last: it.Last}, nil
}

// RecordFanoutPage implements billing.Store: the page (only if absent) and the run's
// TenantsTotal (ADD; Planned on the last page), in one transaction.
func (s *Store) RecordFanoutPage(ctx context.Context, runID string, pg billing.FanoutPage, last bool) (bool, error) {
	it := fanoutPageItem{PK: runPK(runID), SK: pageSK(pg.Page), Kind: "billingrunpage", Page: pg.Page, Tenants: pg.Tenants, Next: pg.Next,
		Last: pg.Last, TTL: s.now().Add(markerLife).Unix()}
	up := s.table.Update("PK", runPK(runID)).Range("SK", runSK).Add("TenantsTotal", len(pg.Tenants)).If("attribute_exists(PK)")
	if last {
		up = up.Set("Planned", true)
	}
	for range 20 {
		err := s.db.WriteTx().Put(s.table.Put(it).If("attribute_not_exists(PK)")).Update(up).Run(ctx)
		if err == nil {
			return true, nil
		}
		failed := failedAt(err)
		if failed[0] {
			return false, nil
		}
		if failed[1] {
			return false, apperr.NotFoundf("No billing run with this id.")
		}
		if !isTxConflict(err) {
			return false, apperr.Wrap(err, "record fan-out page")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false, apperr.New(apperr.Conflict, "concurrent", "The run is busy; retry.")
}

// CompleteRun implements billing.Store.
func (s *Store) CompleteRun(ctx context.Context, id, status string, at time.Time, ev outbox.Event) (bool, error) {
	up := s.table.Update("PK", runPK(id)).Range("SK", runSK).Set("Status", status).Set("CompletedAt", at).
		If("'Status' = ?", billing.RunRunning)
	err := s.db.WriteTx().Update(up).Put(eventPut(s.table, ev)).Run(ctx)
	if failedAt(err)[0] {
		return false, nil
	}
	if err != nil {
		return false, apperr.Wrap(err, "complete run")
	}
	return true, nil
}

// AcquireClose implements billing.Store: one conditional update of the period's close item
// (absent, expired at now, or held by owner), returning the item.
func (s *Store) AcquireClose(ctx context.Context, p period.Period, owner string, now, until time.Time) (billing.CloseState, error) {
	var it closeItem
	err := s.table.Update("PK", closePK(p.String())).Range("SK", closeSK).Set("Kind", "billingclose").
		Set("LeaseOwner", owner).Set("LeaseUntil", until.UnixMilli()).SetIfNotExists("Invoices", 0).
		If("attribute_not_exists(PK) OR attribute_not_exists(LeaseOwner) OR LeaseOwner = ? OR LeaseUntil < ?", owner, now.UnixMilli()).
		Value(ctx, &it)
	if dynamo.IsCondCheckFailed(err) {
		return billing.CloseState{}, apperr.New(apperr.Conflict, "close_busy", "Another close of this period is running; retry after it.")
	}
	if err != nil {
		return billing.CloseState{}, apperr.Wrap(err, "acquire close lease")
	}
	return billing.CloseState{Invoices: it.Invoices}, nil
}

// ReleaseClose implements billing.Store.
func (s *Store) ReleaseClose(ctx context.Context, p period.Period, owner string) error {
	err := s.table.Update("PK", closePK(p.String())).Range("SK", closeSK).Remove("LeaseOwner", "LeaseUntil").
		If("LeaseOwner = ?", owner).Run(ctx)
	if dynamo.IsCondCheckFailed(err) {
		return nil
	}
	return apperr.Wrap(err, "release close lease")
}

// FinishClose implements billing.Store: the close item (Invoices, lease removed; condition: the
// owner holds the lease and no close saw more) and the run (Closed, ClosedAt), in one
// transaction.
func (s *Store) FinishClose(ctx context.Context, p period.Period, runID, owner string, invoices int, at time.Time) error {
	cl := s.table.Update("PK", closePK(p.String())).Range("SK", closeSK).Set("Invoices", invoices).Set("ClosedBy", runID).
		Set("ClosedAt", at).Remove("LeaseOwner", "LeaseUntil").If("LeaseOwner = ? AND Invoices <= ?", owner, invoices)
	run := s.table.Update("PK", runPK(runID)).Range("SK", runSK).Set("Closed", true).Set("ClosedAt", at).If("attribute_exists(PK)")
	for range 20 {
		err := s.db.WriteTx().Update(cl).Update(run).Run(ctx)
		if err == nil {
			return nil
		}
		if failedAt(err)[0] {
			return apperr.New(apperr.Conflict, "close_lost", "The close no longer holds its period's lease; it is run again.")
		}
		if !isTxConflict(err) {
			return apperr.Wrap(err, "finish close")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return apperr.New(apperr.Conflict, "concurrent", "The close is busy; retry.")
}

// TenantCounted implements billing.Store.
func (s *Store) TenantCounted(ctx context.Context, runID, tenantID string) (bool, error) {
	var it runTenantItem
	err := s.table.Get("PK", runTPK(runID, tenantID)).Range("SK", dynamo.Equal, runTSK).Consistent(true).One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, apperr.Wrap(err, "get run tenant")
	}
	return true, nil
}

// CountedTenants implements billing.Store: strongly consistent BatchGets of the markers.
func (s *Store) CountedTenants(ctx context.Context, runID string, tenants []string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(tenants); start += 100 {
		end := min(start+100, len(tenants))
		ks := make([]dynamo.Keyed, 0, end-start)
		for _, t := range tenants[start:end] {
			ks = append(ks, dynamo.Keys{runTPK(runID, t), runTSK})
		}
		var items []runTenantItem
		err := s.table.Batch("PK", "SK").Get(ks...).Consistent(true).All(ctx, &items)
		if err != nil && !errors.Is(err, dynamo.ErrNotFound) {
			return nil, apperr.Wrap(err, "get run tenants")
		}
		prefix := runTPK(runID, "")
		for _, it := range items {
			out[strings.TrimPrefix(it.PK, prefix)] = true
		}
	}
	return out, nil
}

// countPuts returns the tenant's marker in the run (only if absent) and the ADD to its counter
// shard: Done, and Created when an invoice was created or Failed when the tenant failed.
func (s *Store) countPuts(runID, tenantID string, created, failed bool, now time.Time) (*dynamo.Put, *dynamo.Update) {
	mark := s.table.Put(runTenantItem{PK: runTPK(runID, tenantID), SK: runTSK, Kind: "runtenant", Created: created, Failed: failed,
		TTL: now.Add(markerLife).Unix()}).If("attribute_not_exists(PK)")
	up := s.table.Update("PK", runPK(runID)).Range("SK", shardSK(tenantID)).Add("Done", 1)
	if created {
		up = up.Add("Created", 1)
	}
	if failed {
		up = up.Add("Failed", 1)
	}
	return mark, up
}

// CountTenant implements billing.Store.
func (s *Store) CountTenant(ctx context.Context, runID, tenantID string, created bool) error {
	for range 20 {
		mark, up := s.countPuts(runID, tenantID, created, false, s.now())
		err := s.db.WriteTx().Put(mark).Update(up).Run(ctx)
		if err == nil || failedAt(err)[0] {
			return nil
		}
		if !isTxConflict(err) {
			return apperr.Wrap(err, "count tenant")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return apperr.New(apperr.Conflict, "concurrent", "The run's counters are busy; retry.")
}

// FailTenant implements billing.Store: the marker (only if absent), the shard's Done and Failed
// and the failure item, in one transaction; a marker already there (the tenant was counted)
// cancels it and changes nothing.
func (s *Store) FailTenant(ctx context.Context, runID string, f billing.TenantFailure) error {
	for range 20 {
		mark, up := s.countPuts(runID, f.TenantID, false, true, s.now())
		fail := s.table.Put(runFailureItem{PK: runPK(runID), SK: failPrefix + f.TenantID, Kind: "runfailure", TenantID: f.TenantID,
			Code: f.Code, Reason: f.Reason, Attempts: f.Attempts, At: f.At, TTL: s.now().Add(markerLife).Unix()})
		err := s.db.WriteTx().Put(mark).Update(up).Put(fail).Run(ctx)
		if err == nil || failedAt(err)[0] {
			return nil
		}
		if !isTxConflict(err) {
			return apperr.Wrap(err, "fail tenant")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return apperr.New(apperr.Conflict, "concurrent", "The run's counters are busy; retry.")
}

func (it invoiceRefItem) ref() (billing.InvoiceRef, error) {
	p, err := period.Parse(it.Period)
	if err != nil {
		return billing.InvoiceRef{}, err
	}
	total, err := parseDec(it.Total)
	if err != nil {
		return billing.InvoiceRef{}, err
	}
	r := billing.InvoiceRef{InvoiceID: it.InvoiceID, Number: it.Number, TenantID: it.TenantID, TenantPath: it.TenantPath,
		Period: p, Currency: it.Currency, Total: total, IssuedAt: it.IssuedAt, SubTotals: map[string]money.Decimal{}}
	for k, v := range it.SubTotals {
		if r.SubTotals[k], err = parseDec(v); err != nil {
			return billing.InvoiceRef{}, err
		}
	}
	return r, nil
}

// InvoiceRef implements billing.Store.
func (s *Store) InvoiceRef(ctx context.Context, tenantID string, p period.Period) (*billing.InvoiceRef, error) {
	var it invoiceRefItem
	err := s.table.Get("PK", tinvPK(tenantID)).Range("SK", dynamo.Equal, p.String()).Consistent(true).One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, apperr.NotFoundf("No invoice for this tenant and period.")
	}
	if err != nil {
		return nil, apperr.Wrap(err, "get invoice ref")
	}
	r, err := it.ref()
	if err != nil {
		return nil, apperr.Wrap(err, "decode invoice ref")
	}
	return &r, nil
}

// LastSeq implements billing.Store.
func (s *Store) LastSeq(ctx context.Context, issuerID string, year int) (int64, error) {
	var it seqItem
	err := s.table.Get("PK", seqPK(issuerID)).Range("SK", dynamo.Equal, fmt.Sprintf("%04d", year)).Consistent(true).One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, apperr.Wrap(err, "get invoice counter")
	}
	return it.Seq, nil
}

func toInvoiceItem(inv *billing.Invoice) (invoiceItem, error) {
	lines, err := json.Marshal(inv.Lines)
	if err != nil {
		return invoiceItem{}, err
	}
	shares, err := json.Marshal(inv.Shares)
	if err != nil {
		return invoiceItem{}, err
	}
	return invoiceItem{PK: invPK(inv.ID), SK: invSK, Kind: "invoice", ID: inv.ID, Number: inv.Number, Seq: inv.Seq, TenantID: inv.TenantID,
		TenantPath: inv.TenantPath, IssuerID: inv.IssuerID, Period: inv.Period, Status: inv.Status, Currency: inv.Currency,
		IssuedAt: inv.IssuedAt, Total: decText(inv.Total.Amount), PlatformRevenue: decText(inv.PlatformRevenue),
		Lines: string(lines), Shares: string(shares), RunID: inv.RunID}, nil
}

func (it invoiceItem) invoice() (*billing.Invoice, error) {
	total, err := parseDec(it.Total)
	if err != nil {
		return nil, err
	}
	pr, err := parseDec(it.PlatformRevenue)
	if err != nil {
		return nil, err
	}
	inv := &billing.Invoice{ID: it.ID, Number: it.Number, Seq: it.Seq, TenantID: it.TenantID, TenantPath: it.TenantPath, IssuerID: it.IssuerID,
		Period: it.Period, Status: it.Status, Currency: it.Currency, IssuedAt: it.IssuedAt.UTC(),
		Total: money.Money{Amount: total, Currency: it.Currency}, PlatformRevenue: pr, RunID: it.RunID}
	if err := json.Unmarshal([]byte(it.Lines), &inv.Lines); err != nil {
		return nil, err
	}
	if it.Shares != "" && it.Shares != "null" {
		if err := json.Unmarshal([]byte(it.Shares), &inv.Shares); err != nil {
			return nil, err
		}
	}
	return inv, nil
}

func ledgerRecord(l billing.Ledger) ledgerItem {
	it := ledgerItem{PK: ledgerPK(l.TenantID), SK: l.Period.String(), Kind: "ledger", Billed: map[string]string{}, Version: l.Version + 1}
	for k, v := range l.Billed {
		it.Billed[k] = decText(v)
	}
	return it
}

// IssueInvoice implements billing.Store: one transaction (see billing.Store).
func (s *Store) IssueInvoice(ctx context.Context, is billing.Issue) error {
	inv := is.Invoice
	item, err := toInvoiceItem(inv)
	if err != nil {
		return apperr.Wrap(err, "encode invoice")
	}
	ref := invoiceRefItem{PK: tinvPK(inv.TenantID), SK: inv.Period, GSI1PK: invGSI(inv.Period), GSI1SK: inv.TenantPath + inv.ID,
		Kind: "invoiceref", InvoiceID: inv.ID, Number: inv.Number, TenantID: inv.TenantID, TenantPath: inv.TenantPath, Period: inv.Period,
		Currency: inv.Currency, Total: decText(inv.Total.Amount), IssuedAt: inv.IssuedAt, SubTotals: map[string]string{}}
	sub := map[string]money.Decimal{}
	for _, l := range inv.Lines {
		cur, ok := sub[l.SubscriptionID]
		if !ok {
			cur = money.Zero
		}
		sub[l.SubscriptionID] = cur.Add(l.Amount.Amount)
	}
	for k, v := range sub {
		ref.SubTotals[k] = decText(v)
	}
	tx := s.db.WriteTx()
	names := []string{}
	add := func(name string) { names = append(names, name) }
	tx.Put(s.table.Put(item).If("attribute_not_exists(PK)"))
	add("invoice")
	tx.Put(s.table.Put(ref).If("attribute_not_exists(PK)"))
	add("ref")
	year := fmt.Sprintf("%04d", is.Year)
	if inv.Seq == 1 {
		tx.Put(s.table.Put(seqItem{PK: seqPK(inv.IssuerID), SK: year, Kind: "invoiceseq", Seq: 1}).If("attribute_not_exists(PK)"))
	} else {
		tx.Update(s.table.Update("PK", seqPK(inv.IssuerID)).Range("SK", year).Set("Seq", inv.Seq).If("Seq = ?", inv.Seq-1))
	}
	add("seq")
	tenant := s.table.Update("PK", entityPK(inv.TenantID)).Range("SK", entitySK)
	if is.RaiseInvoicedThrough {
		tenant = tenant.Set("InvoicedThrough", inv.Period).
			If("attribute_exists(PK) AND 'Subscriptions' = ? AND (attribute_not_exists('InvoicedThrough') OR 'InvoicedThrough' < ?)", is.TenantSubs, inv.Period)
		tx.Update(tenant)
	} else {
		tx.Check(s.table.Check("PK", entityPK(inv.TenantID)).Range("SK", entitySK).If("'Subscriptions' = ?", is.TenantSubs))
	}
	add("tenant")
	for _, l := range is.Ledgers {
		put := s.table.Put(ledgerRecord(l))
		if l.Version == 0 {
			put = put.If("attribute_not_exists(PK)")
		} else {
			put = put.If("'Version' = ?", l.Version)
		}
		tx.Put(put)
		add("ledger")
	}
	tx.Put(eventPut(s.table, is.Event))
	add("event")
	mark, count := s.countPuts(inv.RunID, inv.TenantID, true, false, inv.IssuedAt)
	tx.Put(mark)
	add("marker")
	tx.Update(count)
	add("count")
	err = tx.Run(ctx)
	if err == nil {
		return nil
	}
	failed := failedAt(err)
	for i, n := range names {
		if !failed[i] {
			continue
		}
		switch n {
		case "ref", "invoice":
			return apperr.New(apperr.Conflict, "invoice_exists", "The tenant already has an invoice for this period.")
		case "seq":
			return apperr.New(apperr.Conflict, "number_taken", "The invoice number was taken meanwhile.")
		case "tenant", "ledger":
			return apperr.New(apperr.Conflict, "tenant_changed", "The tenant changed meanwhile; compute again.")
		case "marker":
			return apperr.New(apperr.Conflict, "invoice_exists", "The run already counted this tenant.")
		}
	}
	if isTxConflict(err) {
		return apperr.New(apperr.Conflict, "concurrent", "Another write touched the invoice's items; retry.")
	}
	return apperr.Wrap(err, "issue invoice")
}

// Ledgers implements billing.Store.
func (s *Store) Ledgers(ctx context.Context, tenantID string, periods []period.Period) (map[period.Period]billing.Ledger, error) {
	out := map[period.Period]billing.Ledger{}
	if len(periods) == 0 {
		return out, nil
	}
	ks := make([]dynamo.Keyed, 0, len(periods))
	for _, p := range periods {
		ks = append(ks, dynamo.Keys{ledgerPK(tenantID), p.String()})
	}
	var items []ledgerItem
	err := s.table.Batch("PK", "SK").Get(ks...).Consistent(true).All(ctx, &items)
	if err != nil && !errors.Is(err, dynamo.ErrNotFound) {
		return nil, apperr.Wrap(err, "get ledgers")
	}
	for _, it := range items {
		p, err := period.Parse(it.SK)
		if err != nil {
			return nil, apperr.Wrap(err, "decode ledger")
		}
		l := billing.Ledger{TenantID: tenantID, Period: p, Billed: map[string]money.Decimal{}, Version: it.Version}
		for k, v := range it.Billed {
			if l.Billed[k], err = parseDec(v); err != nil {
				return nil, apperr.Wrap(err, "decode ledger")
			}
		}
		out[p] = l
	}
	return out, nil
}

func refsOf(items []invoiceRefItem) ([]billing.InvoiceRef, error) {
	out := make([]billing.InvoiceRef, 0, len(items))
	for _, it := range items {
		r, err := it.ref()
		if err != nil {
			return nil, apperr.Wrap(err, "decode invoice ref")
		}
		out = append(out, r)
	}
	return out, nil
}

// InvoiceRefs implements billing.Store: one query on GSI1 (INVP#<period>, begins_with path).
func (s *Store) InvoiceRefs(ctx context.Context, p period.Period, prefix string) ([]billing.InvoiceRef, error) {
	var items []invoiceRefItem
	err := s.table.Get("GSI1PK", invGSI(p.String())).Index(GSI1).Range("GSI1SK", dynamo.BeginsWith, prefix).All(ctx, &items)
	if err != nil {
		return nil, apperr.Wrap(err, "list invoices")
	}
	return refsOf(items)
}

// TenantInvoiceRefs implements billing.Store: one query of TINV#<tenant>.
func (s *Store) TenantInvoiceRefs(ctx context.Context, tenantID string) ([]billing.InvoiceRef, error) {
	var items []invoiceRefItem
	if err := s.table.Get("PK", tinvPK(tenantID)).All(ctx, &items); err != nil {
		return nil, apperr.Wrap(err, "list tenant invoices")
	}
	return refsOf(items)
}

// GetInvoice implements billing.Store.
func (s *Store) GetInvoice(ctx context.Context, id string) (*billing.Invoice, error) {
	if id == "" || strings.ContainsAny(id, "#") {
		return nil, apperr.NotFoundf("No invoice with this id.")
	}
	var it invoiceItem
	err := s.table.Get("PK", invPK(id)).Range("SK", dynamo.Equal, invSK).One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, apperr.NotFoundf("No invoice with this id.")
	}
	if err != nil {
		return nil, apperr.Wrap(err, "get invoice")
	}
	inv, err := it.invoice()
	return inv, apperr.Wrap(err, "decode invoice")
}

// LoadInvoices implements billing.Store: strongly consistent BatchGets of 100 keys, 8 at once.
func (s *Store) LoadInvoices(ctx context.Context, idList []string) ([]*billing.Invoice, error) {
	got := make([]map[string]*billing.Invoice, (len(idList)+99)/100)
	errs := make([]error, len(got))
	parallel(len(got), 8, func(b int) {
		part := idList[b*100 : min(b*100+100, len(idList))]
		ks := make([]dynamo.Keyed, 0, len(part))
		for _, id := range part {
			ks = append(ks, dynamo.Keys{invPK(id), invSK})
		}
		var items []invoiceItem
		err := s.table.Batch("PK", "SK").Get(ks...).Consistent(true).All(ctx, &items)
		if err != nil && !errors.Is(err, dynamo.ErrNotFound) {
			errs[b] = apperr.Wrap(err, "load invoices")
			return
		}
		got[b] = map[string]*billing.Invoice{}
		for _, it := range items {
			inv, err := it.invoice()
			if err != nil {
				errs[b] = apperr.Wrap(err, "decode invoice")
				return
			}
			got[b][inv.ID] = inv
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make([]*billing.Invoice, 0, len(idList))
	for i, id := range idList {
		inv, ok := got[i/100][id]
		if !ok {
			return nil, apperr.Wrap(fmt.Errorf("invoice %s is indexed but not found", id), "load invoices")
		}
		out = append(out, inv)
	}
	return out, nil
}

// PutCommission implements billing.Store: a strongly consistent read of the stored total; when
// it is absent, or differs and was computed from no more invoices of the period, the lines
// (idempotent puts, 25 per batch, 8 batches at once), then the total with its event in one
// transaction under the same condition (a concurrent close that saw more wins).
func (s *Store) PutCommission(ctx context.Context, t billing.CommissionTotal, lines []billing.CommissionLine, ev outbox.Event) (bool, error) {
	p := t.Period.String()
	items := make([]any, 0, len(lines))
	for _, l := range lines {
		items = append(items, commLineItem{PK: commPK(l.EntityID), SK: p + "#" + l.TenantID, GSI1PK: commGSI(p), GSI1SK: l.EntityPath + l.TenantID,
			Kind: "commissionline", EntityID: l.EntityID, EntityPath: l.EntityPath, Period: p, TenantID: l.TenantID, Currency: l.Currency,
			Invoices: l.Invoices, Revenue: decText(l.Raw.Revenue), Cost: decText(l.Raw.Cost), Commission: decText(l.Raw.Commission)})
	}
	tot := commTotalItem{PK: commPK(t.EntityID), SK: p, Kind: "commission", EntityID: t.EntityID, EntityPath: t.EntityPath, Period: p,
		Currency: t.Currency, Revenue: decText(t.Raw.Revenue), Cost: decText(t.Raw.Cost), Commission: decText(t.Raw.Commission),
		Tenants: t.Tenants, Digest: t.Digest, PeriodInvoices: t.PeriodInvoices}
	var cur commTotalItem
	err := s.table.Get("PK", tot.PK).Range("SK", dynamo.Equal, tot.SK).Consistent(true).One(ctx, &cur)
	switch {
	case errors.Is(err, dynamo.ErrNotFound):
	case err != nil:
		return false, apperr.Wrap(err, "get commission")
	case cur.Digest == t.Digest || cur.PeriodInvoices > t.PeriodInvoices:
		return false, nil // written already, or by a close that saw more: nothing to do
	}
	if err := s.putBatches(ctx, items); err != nil {
		return false, apperr.Wrap(err, "put commission lines")
	}
	err = s.db.WriteTx().
		Put(s.table.Put(tot).If("attribute_not_exists(PK) OR (Digest <> ? AND (attribute_not_exists(PeriodInvoices) OR PeriodInvoices <= ?))",
			t.Digest, t.PeriodInvoices)).
		Put(eventPut(s.table, ev)).Run(ctx)
	if failedAt(err)[0] {
		return false, nil
	}
	if err != nil {
		return false, apperr.Wrap(err, "put commission")
	}
	return true, nil
}

// putBatches puts items with BatchWriteItem, 25 per call, 8 calls at once (guregu retries the
// unprocessed items).
func (s *Store) putBatches(ctx context.Context, items []any) error {
	errs := make([]error, (len(items)+24)/25)
	parallel(len(errs), 8, func(b int) {
		_, errs[b] = s.table.Batch("PK", "SK").Write().Put(items[b*25 : min(b*25+25, len(items))]...).Run(ctx)
	})
	return errors.Join(errs...)
}

// CommissionLines implements billing.Store: one query on GSI1 (COMML#<period>, begins_with).
func (s *Store) CommissionLines(ctx context.Context, p period.Period, prefix string) ([]billing.CommissionLine, error) {
	var items []commLineItem
	err := s.table.Get("GSI1PK", commGSI(periodText(p))).Index(GSI1).Range("GSI1SK", dynamo.BeginsWith, prefix).All(ctx, &items)
	if err != nil {
		return nil, apperr.Wrap(err, "list commission lines")
	}
	out := make([]billing.CommissionLine, 0, len(items))
	for _, it := range items {
		l := billing.CommissionLine{EntityID: it.EntityID, EntityPath: it.EntityPath, Period: it.Period, TenantID: it.TenantID,
			Currency: it.Currency, Invoices: it.Invoices}
		var err error
		if l.Raw.Revenue, err = parseDec(it.Revenue); err == nil {
			if l.Raw.Cost, err = parseDec(it.Cost); err == nil {
				l.Raw.Commission, err = parseDec(it.Commission)
			}
		}
		if err != nil {
			return nil, apperr.Wrap(err, "decode commission line")
		}
		l.Revenue = money.Money{Amount: l.Raw.Revenue, Currency: l.Currency}
		l.Cost = money.Money{Amount: l.Raw.Cost, Currency: l.Currency}
		l.Commission = money.Money{Amount: l.Raw.Commission, Currency: l.Currency}
		out = append(out, l)
	}
	return out, nil
}

var _ billing.Store = (*Store)(nil)
