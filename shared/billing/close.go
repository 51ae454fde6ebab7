package billing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/period"
)

// Bounds of the close step.
const (
	// closeChunk is how many invoices the close loads at once: what it holds in memory besides
	// the period's small index entries and commission lines.
	closeChunk = 500
	// closeListAttempts is how many times the close lists the period's invoices before it
	// gives up (the message is retried) when the listing does not match the runs' counters.
	closeListAttempts = 6
	// commissionConcurrency is how many entities' commissions are written at once.
	commissionConcurrency = 4
)

// close runs what follows a completed billing run: the commission run of the period, then
// the finance exports, both recomputed from the stored invoices, so repeating them writes the
// same items and the same bytes.
//
// It is complete: the period's invoices are listed and checked against the exact count the
// runs' counters hold (every invoice's transaction adds one to its run's Created), then loaded
// strongly consistently; a listing that falls short fails the message (retried), and a missing
// invoice is an error, never skipped. It is exclusive: one close per period at a time holds
// the period's lease (expiring, so that a crashed close is taken over), and what it writes is
// never replaced by a close that saw fewer invoices (commission totals carry the count they
// were computed from; the exports are committed under the renewed lease only). It is bounded:
// invoices are loaded closeChunk at a time and streamed into the exports, and the commission
// lines are written in parallel batches.
func (s *Service) close(ctx context.Context, runID string) (err error) {
	r, err := s.Store.GetRun(ctx, runID)
	if err != nil {
		return err
	}
	if r.Closed || r.Status == RunRunning {
		return nil // done already, or a stray message of a run not yet completed
	}
	lease := s.CloseLease
	if lease <= 0 {
		lease = DefaultCloseLease
	}
	// The lease is this attempt's, not the run's: duplicate close messages of one run (every
	// worker that sees the run complete queues one) would otherwise close it side by side, and
	// the later one would rewrite the exports after the run was closed.
	owner := closeOwner(r.ID)
	now := s.now()
	st, err := s.Store.AcquireClose(ctx, r.Period, owner, now, now.Add(lease))
	if err != nil {
		return err // close_busy: another close of the period runs; this one is retried after it
	}
	// The close ends before its lease, whatever clock the service reads.
	ctx, cancel := context.WithTimeout(ctx, lease-lease/10)
	defer cancel()
	defer func() {
		if err == nil {
			return
		}
		rctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer stop()
		if rerr := s.Store.ReleaseClose(rctx, r.Period, owner); rerr != nil {
			s.log().Warn("close lease not released (it expires)", "run", r.ID, "period", r.Period.String(), "err", rerr)
		}
	}()
	// A duplicate close message may have waited for the lease while the run's close finished.
	if again, err := s.Store.GetRun(ctx, r.ID); err != nil {
		return err
	} else if again.Closed {
		rctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer stop()
		return s.Store.ReleaseClose(rctx, r.Period, owner)
	}
	if err := s.fault("close", r.ID); err != nil {
		return err
	}
	refs, err := s.closeSnapshot(ctx, r.Period)
	if err != nil {
		return err
	}
	n := len(refs)
	if st.Invoices > n {
		return apperr.New(apperr.Conflict, "close_stale", fmt.Sprintf("The close saw %d invoices of %s, fewer than the %d of the last close; it writes nothing.", n, r.Period, st.Invoices))
	}
	sortRefs(refs)
	var exp *exportSet
	if s.Exports == nil {
		s.log().Warn("finance exports skipped: no exports bucket configured", "period", r.Period.String())
	} else {
		if exp, err = newExportSet(ctx, s.Exports, r.Period); err != nil {
			return err
		}
		defer func() {
			if err != nil {
				exp.abort()
			}
		}()
	}
	acc := newCommissionAcc(r.Period)
	idList := make([]string, 0, closeChunk)
	for start := 0; start < n; start += closeChunk {
		idList = idList[:0]
		for _, ref := range refs[start:min(start+closeChunk, n)] {
			idList = append(idList, ref.InvoiceID)
		}
		invs, err := s.Store.LoadInvoices(ctx, idList)
		if err != nil {
			return err
		}
		for _, inv := range invs {
			acc.add(inv)
			if exp != nil {
				if err := exp.invoice(inv); err != nil {
					return err
				}
			}
		}
	}
	totals, lines := acc.result(n)
	changed, err := s.putCommissions(ctx, totals, lines)
	if err != nil {
		return err
	}
	s.log().Info("commission run", "run", r.ID, "period", r.Period.String(), "invoices", n, "entities", len(totals), "changed", changed)
	if exp != nil {
		if err := exp.commissions(lines); err != nil {
			return err
		}
		// The exports replace the period's only while this close holds the lease: renew it
		// (Conflict if another close took it over) and check no close saw more meanwhile.
		now := s.now()
		st, err := s.Store.AcquireClose(ctx, r.Period, owner, now, now.Add(lease))
		if err != nil {
			return err
		}
		if st.Invoices > n {
			return apperr.New(apperr.Conflict, "close_stale", "A close that saw more invoices finished meanwhile.")
		}
		if err := exp.commit(); err != nil {
			return err
		}
		s.log().Info("finance exports written", "period", r.Period.String(), "files", len(exp.files), "invoices", n)
	}
	return s.Store.FinishClose(ctx, r.Period, r.ID, owner, n, s.now())
}

// closeOwner names one close attempt of the run: the run's id and a random suffix.
func closeOwner(runID string) string {
	return ids.New(runID + "/close")
}

// closeSnapshot lists every invoice of p and proves the list complete: the sum of the
// Created counters of p's runs (strongly consistent; each invoice's transaction adds one)
// read before and after the listing must be equal and equal the listing's length. The
// listing is an index query (eventually consistent in AWS), so it can only fall short, never
// hold an invoice that is not counted: equal numbers mean equal sets. A listing that stays
// short (index lag) or counters that keep moving (a concurrent run still invoicing) fail the
// close after a few attempts; its message is retried.
func (s *Service) closeSnapshot(ctx context.Context, p period.Period) ([]InvoiceRef, error) {
	var before, after int
	var refs []InvoiceRef
	for attempt := 0; attempt < closeListAttempts; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
			}
		}
		var err error
		if before, err = s.periodInvoices(ctx, p); err != nil {
			return nil, err
		}
		if refs, err = s.Store.InvoiceRefs(ctx, p, access.PlatformPath); err != nil {
			return nil, err
		}
		if after, err = s.periodInvoices(ctx, p); err != nil {
			return nil, err
		}
		if before == after && len(refs) == after {
			return refs, nil
		}
		s.log().Info("close: the invoice listing does not match the runs' counters yet", "period", p.String(), "listed", len(refs),
			"counted", after, "countedBefore", before, "attempt", attempt+1)
	}
	return nil, apperr.New(apperr.Conflict, "close_incomplete", fmt.Sprintf("The listing of %s holds %d invoices, the runs counted %d (then %d); retry.",
		p, len(refs), before, after))
}

// periodInvoices returns how many invoices of p exist: the sum of its runs' Created counters.
func (s *Service) periodInvoices(ctx context.Context, p period.Period) (int, error) {
	runs, err := s.Store.PeriodRuns(ctx, p)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range runs {
		n += r.InvoicesCreated
	}
	return n, nil
}

// putCommissions writes the entities' totals and lines, commissionConcurrency entities at a
// time, and returns how many changed.
func (s *Service) putCommissions(ctx context.Context, totals []CommissionTotal, lines map[string][]CommissionLine) (int, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	changed := 0
	sem := make(chan struct{}, commissionConcurrency)
	for _, t := range totals {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ev, err := outbox.New(EventCommissionEarned, t.EntityPath, s.now(), CommissionEvent{EntityID: t.EntityID, Period: t.Period.String(),
				Currency: t.Currency, Revenue: money.Money{Amount: t.Raw.Revenue, Currency: t.Currency},
				Cost: money.Money{Amount: t.Raw.Cost, Currency: t.Currency}, Commission: money.Money{Amount: t.Raw.Commission, Currency: t.Currency},
				Tenants: t.Tenants})
			ok := false
			if err == nil {
				ok, err = s.Store.PutCommission(ctx, t, lines[t.EntityID], ev)
			} else {
				err = apperr.Wrap(err, "commission event")
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else if ok {
				changed++
			}
		}()
	}
	wg.Wait()
	return changed, errors.Join(errs...)
}

// issuerOf returns the issuer of a tenant's invoices: its parent, the partner (the id before
// the tenant's on its path), as the invoice records it.
func issuerOf(tenantPath string) string {
	ids := access.IDsOnPath(tenantPath)
	if len(ids) < 2 {
		return ""
	}
	return ids[len(ids)-2]
}

// sortRefs orders index entries as the exports order invoices (sortInvoices).
func sortRefs(refs []InvoiceRef) {
	sort.Slice(refs, func(i, j int) bool {
		a, b := issuerOf(refs[i].TenantPath), issuerOf(refs[j].TenantPath)
		if a != b {
			return a < b
		}
		if refs[i].Number != refs[j].Number {
			return refs[i].Number < refs[j].Number
		}
		return refs[i].InvoiceID < refs[j].InvoiceID
	})
}

func sortInvoices(invs []*Invoice) {
	sort.Slice(invs, func(i, j int) bool {
		if invs[i].IssuerID != invs[j].IssuerID {
			return invs[i].IssuerID < invs[j].IssuerID
		}
		if invs[i].Number != invs[j].Number {
			return invs[i].Number < invs[j].Number
		}
		return invs[i].ID < invs[j].ID
	})
}

// CommissionEvent is the detail of commission.earned.
type CommissionEvent struct {
	EntityID   string      `json:"entityId"`
	Period     string      `json:"period"`
	Currency   string      `json:"currency"`
	Revenue    money.Money `json:"revenue"`
	Cost       money.Money `json:"cost"`
	Commission money.Money `json:"commission"`
	Tenants    int         `json:"tenants"`
}

// Commissions aggregates the shares of a period's invoices per channel entity (SPEC 12): each
// entity's total and one line per tenant, in entity then tenant order.
func Commissions(p period.Period, invs []*Invoice) ([]CommissionTotal, map[string][]CommissionLine) {
	acc := newCommissionAcc(p)
	for _, inv := range invs {
		acc.add(inv)
	}
	return acc.result(len(invs))
}

// commissionAcc sums invoices' shares per entity and tenant, one invoice at a time.
type commissionAcc struct {
	p        period.Period
	byEntity map[string]*entityAcc
}

type entityAcc struct {
	t     CommissionTotal
	lines map[string]*CommissionLine
}

func newCommissionAcc(p period.Period) *commissionAcc {
	return &commissionAcc{p: p, byEntity: map[string]*entityAcc{}}
}

func (c *commissionAcc) add(inv *Invoice) {
	for _, sh := range inv.Shares {
		a := c.byEntity[sh.EntityID]
		if a == nil {
			a = &entityAcc{t: CommissionTotal{EntityID: sh.EntityID, EntityPath: sh.EntityPath, Period: c.p, Currency: inv.Currency,
				Raw: CommissionRaw{Revenue: money.Zero, Cost: money.Zero, Commission: money.Zero}}, lines: map[string]*CommissionLine{}}
			c.byEntity[sh.EntityID] = a
		}
		l := a.lines[inv.TenantID]
		if l == nil {
			l = &CommissionLine{EntityID: sh.EntityID, EntityPath: sh.EntityPath, Period: c.p.String(), TenantID: inv.TenantID,
				Currency: inv.Currency, Raw: CommissionRaw{Revenue: money.Zero, Cost: money.Zero, Commission: money.Zero}}
			a.lines[inv.TenantID] = l
		}
		l.Invoices++
		l.Raw.Revenue = l.Raw.Revenue.Add(sh.Revenue)
		l.Raw.Cost = l.Raw.Cost.Add(sh.Cost)
		l.Raw.Commission = l.Raw.Commission.Add(sh.Commission)
		a.t.Raw.Revenue = a.t.Raw.Revenue.Add(sh.Revenue)
		a.t.Raw.Cost = a.t.Raw.Cost.Add(sh.Cost)
		a.t.Raw.Commission = a.t.Raw.Commission.Add(sh.Commission)
	}
}

// result returns the totals (computed from periodInvoices invoices) by entity and the lines by
// entity then tenant.
func (c *commissionAcc) result(periodInvoices int) ([]CommissionTotal, map[string][]CommissionLine) {
	entities := make([]string, 0, len(c.byEntity))
	for id := range c.byEntity {
		entities = append(entities, id)
	}
	sort.Strings(entities)
	totals := make([]CommissionTotal, 0, len(entities))
	lines := map[string][]CommissionLine{}
	for _, id := range entities {
		a := c.byEntity[id]
		tenants := make([]string, 0, len(a.lines))
		for t := range a.lines {
			tenants = append(tenants, t)
		}
		sort.Strings(tenants)
		h := sha256.New()
		fmt.Fprintf(h, "%s|%s|%s|%s|%s|%s\n", a.t.Currency, c.p, a.t.EntityPath, a.t.Raw.Revenue, a.t.Raw.Cost, a.t.Raw.Commission)
		for _, t := range tenants {
			l := a.lines[t]
			l.Revenue = money.Money{Amount: l.Raw.Revenue, Currency: l.Currency}
			l.Cost = money.Money{Amount: l.Raw.Cost, Currency: l.Currency}
			l.Commission = money.Money{Amount: l.Raw.Commission, Currency: l.Currency}
			fmt.Fprintf(h, "%s|%d|%s|%s|%s\n", t, l.Invoices, l.Raw.Revenue, l.Raw.Cost, l.Raw.Commission)
			lines[id] = append(lines[id], *l)
		}
		a.t.Tenants = len(tenants)
		a.t.Digest = hex.EncodeToString(h.Sum(nil))
		a.t.PeriodInvoices = periodInvoices
		totals = append(totals, a.t)
	}
	return totals, lines
}

// ExportFile is one finance export object.
type ExportFile struct {
	Key         string
	Body        []byte
	ContentType string
}

// Exports renders the period's finance exports (SPEC 14) in memory: invoices, invoice lines
// and commissions, each as CSV and JSON, under exports/<YYYY-MM>/. The output depends only on
// the stored invoices and commissions: fixed column and field order, rows ordered by issuer and
// invoice number (lines in invoice order; commissions by entity and tenant), decimals as
// written, timestamps in RFC 3339 UTC, LF line ends. Re-running a period gives the same bytes.
// The close streams the same bytes to the exports bucket (exportSet) without holding them.
func Exports(p period.Period, invs []*Invoice, lines map[string][]CommissionLine) ([]ExportFile, error) {
	sorted := append([]*Invoice(nil), invs...)
	sortInvoices(sorted)
	mem := &memObjects{}
	e, err := newExportSet(context.Background(), mem, p)
	if err != nil {
		return nil, err
	}
	for _, inv := range sorted {
		if err := e.invoice(inv); err != nil {
			return nil, err
		}
	}
	if err := e.commissions(lines); err != nil {
		return nil, err
	}
	if err := e.commit(); err != nil {
		return nil, err
	}
	return mem.files, nil
}

// memObjects collects objects in memory (Exports).
type memObjects struct{ files []ExportFile }

type memObject struct {
	o    *memObjects
	key  string
	ct   string
	body bytes.Buffer
}

func (m *memObjects) Create(_ context.Context, key, contentType string) (ObjectWriter, error) {
	return &memObject{o: m, key: key, ct: contentType}, nil
}

func (w *memObject) Write(b []byte) (int, error) { return w.body.Write(b) }
func (w *memObject) Abort()                      {}
func (w *memObject) Commit() error {
	w.o.files = append(w.o.files, ExportFile{Key: w.key, Body: w.body.Bytes(), ContentType: w.ct})
	return nil
}

type invRow struct {
	ID              string `json:"id"`
	Number          string `json:"number"`
	IssuerID        string `json:"issuerId"`
	TenantID        string `json:"tenantId"`
	Period          string `json:"period"`
	Status          string `json:"status"`
	Currency        string `json:"currency"`
	IssuedAt        string `json:"issuedAt"`
	Total           string `json:"total"`
	PlatformRevenue string `json:"platformRevenue"`
	Lines           int    `json:"lines"`
}

type lineRow struct {
	InvoiceID      string `json:"invoiceId"`
	InvoiceNumber  string `json:"invoiceNumber"`
	Line           int    `json:"line"`
	Kind           string `json:"kind"`
	SubscriptionID string `json:"subscriptionId"`
	SKU            string `json:"sku"`
	Description    string `json:"description"`
	Quantity       string `json:"quantity"`
	Amount         string `json:"amount"`
	Currency       string `json:"currency"`
	OriginalPeriod string `json:"originalPeriod"`
}

type commRow struct {
	EntityID   string `json:"entityId"`
	Period     string `json:"period"`
	TenantID   string `json:"tenantId"`
	Currency   string `json:"currency"`
	Invoices   int    `json:"invoices"`
	Revenue    string `json:"revenue"`
	Cost       string `json:"cost"`
	Commission string `json:"commission"`
}

// exportSet streams a period's six export objects: rows are written as invoices come, in the
// order they come (the caller's: by issuer and number), and nothing replaces the stored
// objects before commit.
type exportSet struct {
	files                 []ObjectWriter
	invoices, lines, comm exportPair
}

// exportPair is one export as CSV and as a JSON array. The JSON is written element by
// element with the bytes json.MarshalIndent(rows, "", "  ") would give for the whole array.
type exportPair struct {
	csv   *csv.Writer
	json  io.Writer
	count int
}

func newExportSet(ctx context.Context, objs Objects, p period.Period) (*exportSet, error) {
	e := &exportSet{}
	prefix := "exports/" + p.String() + "/"
	open := func(pair *exportPair, name string, header []string) error {
		c, err := objs.Create(ctx, prefix+name+".csv", "text/csv; charset=utf-8")
		if err != nil {
			return apperr.Wrap(err, "export "+name)
		}
		e.files = append(e.files, c)
		j, err := objs.Create(ctx, prefix+name+".json", "application/json")
		if err != nil {
			return apperr.Wrap(err, "export "+name)
		}
		e.files = append(e.files, j)
		pair.csv, pair.json = csv.NewWriter(c), j
		return pair.csv.Write(header)
	}
	err := open(&e.invoices, "invoices", []string{"id", "number", "issuerId", "tenantId", "period", "status", "currency", "issuedAt", "total", "platformRevenue", "lines"})
	if err == nil {
		err = open(&e.lines, "invoice_lines", []string{"invoiceId", "invoiceNumber", "line", "kind", "subscriptionId", "sku", "description", "quantity", "amount", "currency", "originalPeriod"})
	}
	if err == nil {
		err = open(&e.comm, "commissions", []string{"entityId", "period", "tenantId", "currency", "invoices", "revenue", "cost", "commission"})
	}
	if err != nil {
		e.abort()
		return nil, err
	}
	return e, nil
}

func (x *exportPair) row(rec []string, v any) error {
	if err := x.csv.Write(rec); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		return err
	}
	sep := ",\n  "
	if x.count == 0 {
		sep = "[\n  "
	}
	x.count++
	if _, err := io.WriteString(x.json, sep); err != nil {
		return err
	}
	_, err = x.json.Write(b)
	return err
}

func (x *exportPair) end() error {
	x.csv.Flush()
	if err := x.csv.Error(); err != nil {
		return err
	}
	tail := "\n]\n"
	if x.count == 0 {
		tail = "[]\n"
	}
	_, err := io.WriteString(x.json, tail)
	return err
}

// invoice adds an invoice and its lines.
func (e *exportSet) invoice(inv *Invoice) error {
	r := invRow{ID: inv.ID, Number: inv.Number, IssuerID: inv.IssuerID, TenantID: inv.TenantID, Period: inv.Period,
		Status: inv.Status, Currency: inv.Currency, IssuedAt: inv.IssuedAt.UTC().Format("2006-01-02T15:04:05.000000000Z"),
		Total: inv.Total.Amount.String(), PlatformRevenue: inv.PlatformRevenue.String(), Lines: len(inv.Lines)}
	if err := e.invoices.row([]string{r.ID, r.Number, r.IssuerID, r.TenantID, r.Period, r.Status, r.Currency, r.IssuedAt, r.Total,
		r.PlatformRevenue, strconv.Itoa(r.Lines)}, r); err != nil {
		return apperr.Wrap(err, "export invoices")
	}
	for i, l := range inv.Lines {
		op := ""
		if l.OriginalPeriod != nil {
			op = *l.OriginalPeriod
		}
		lr := lineRow{InvoiceID: inv.ID, InvoiceNumber: inv.Number, Line: i + 1, Kind: l.Kind, SubscriptionID: l.SubscriptionID,
			SKU: l.SKU, Description: l.Description, Quantity: l.Quantity.String(), Amount: l.Amount.Amount.String(), Currency: l.Amount.Currency, OriginalPeriod: op}
		if err := e.lines.row([]string{lr.InvoiceID, lr.InvoiceNumber, strconv.Itoa(lr.Line), lr.Kind, lr.SubscriptionID, lr.SKU, lr.Description,
			lr.Quantity, lr.Amount, lr.Currency, lr.OriginalPeriod}, lr); err != nil {
			return apperr.Wrap(err, "export invoice lines")
		}
	}
	return nil
}

// commissions adds the commission lines (by entity, then tenant) and ends every export.
func (e *exportSet) commissions(lines map[string][]CommissionLine) error {
	entities := make([]string, 0, len(lines))
	for id := range lines {
		entities = append(entities, id)
	}
	sort.Strings(entities)
	for _, id := range entities {
		for _, l := range lines[id] {
			r := commRow{EntityID: l.EntityID, Period: l.Period, TenantID: l.TenantID, Currency: l.Currency, Invoices: l.Invoices,
				Revenue: l.Raw.Revenue.String(), Cost: l.Raw.Cost.String(), Commission: l.Raw.Commission.String()}
			if err := e.comm.row([]string{r.EntityID, r.Period, r.TenantID, r.Currency, strconv.Itoa(r.Invoices), r.Revenue, r.Cost, r.Commission}, r); err != nil {
				return apperr.Wrap(err, "export commissions")
			}
		}
	}
	for _, x := range []*exportPair{&e.invoices, &e.lines, &e.comm} {
		if err := x.end(); err != nil {
			return apperr.Wrap(err, "end export")
		}
	}
	return nil
}

// commit makes every export the stored one, in order; on a failure the rest are dropped (a
// retried close writes them all again).
func (e *exportSet) commit() error {
	for i, f := range e.files {
		if err := f.Commit(); err != nil {
			for _, rest := range e.files[i+1:] {
				rest.Abort()
			}
			e.files = nil
			return apperr.Wrap(err, "commit export")
		}
	}
	return nil
}

// abort drops every export not committed.
func (e *exportSet) abort() {
	for _, f := range e.files {
		f.Abort()
	}
}
