package billing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/period"
)

// close runs what follows a completed billing run: the commission run of the period, then
// the finance exports. Both are recomputed from the stored invoices, so repeating them writes
// the same items and the same bytes.
func (s *Service) close(ctx context.Context, runID string) error {
	r, err := s.Store.GetRun(ctx, runID)
	if err != nil {
		return err
	}
	invs, err := s.periodInvoices(ctx, r.Period)
	if err != nil {
		return err
	}
	totals, lines := Commissions(r.Period, invs)
	changed := 0
	for _, t := range totals {
		ls := lines[t.EntityID]
		ev, err := outbox.New(EventCommissionEarned, t.EntityPath, s.now(), CommissionEvent{EntityID: t.EntityID, Period: t.Period.String(),
			Currency: t.Currency, Revenue: money.Money{Amount: t.Raw.Revenue, Currency: t.Currency},
			Cost: money.Money{Amount: t.Raw.Cost, Currency: t.Currency}, Commission: money.Money{Amount: t.Raw.Commission, Currency: t.Currency},
			Tenants: t.Tenants})
		if err != nil {
			return apperr.Wrap(err, "commission event")
		}
		ok, err := s.Store.PutCommission(ctx, t, ls, ev)
		if err != nil {
			return err
		}
		if ok {
			changed++
		}
	}
	s.log().Info("commission run", "run", r.ID, "period", r.Period.String(), "entities", len(totals), "changed", changed)
	if s.Exports == nil {
		s.log().Warn("finance exports skipped: no exports bucket configured", "period", r.Period.String())
	} else {
		files, err := Exports(r.Period, invs, lines)
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := s.Exports.Put(ctx, f.Key, f.Body, f.ContentType); err != nil {
				return apperr.Wrap(err, "write export "+f.Key)
			}
		}
		s.log().Info("finance exports written", "period", r.Period.String(), "files", len(files), "invoices", len(invs))
	}
	return s.Store.CloseRun(ctx, r.ID)
}

// periodInvoices loads every invoice of p, ordered by number.
func (s *Service) periodInvoices(ctx context.Context, p period.Period) ([]*Invoice, error) {
	refs, err := s.Store.InvoiceRefs(ctx, p, access.PlatformPath)
	if err != nil {
		return nil, err
	}
	idList := make([]string, len(refs))
	for i, r := range refs {
		idList[i] = r.InvoiceID
	}
	got, err := s.Store.GetInvoices(ctx, idList)
	if err != nil {
		return nil, err
	}
	out := make([]*Invoice, 0, len(got))
	for _, id := range idList {
		if inv, ok := got[id]; ok {
			out = append(out, inv)
		}
	}
	sortInvoices(out)
	return out, nil
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
	type acc struct {
		t     CommissionTotal
		lines map[string]*CommissionLine
	}
	byEntity := map[string]*acc{}
	for _, inv := range invs {
		for _, sh := range inv.Shares {
			a := byEntity[sh.EntityID]
			if a == nil {
				a = &acc{t: CommissionTotal{EntityID: sh.EntityID, EntityPath: sh.EntityPath, Period: p, Currency: inv.Currency,
					Raw: CommissionRaw{Revenue: money.Zero, Cost: money.Zero, Commission: money.Zero}}, lines: map[string]*CommissionLine{}}
				byEntity[sh.EntityID] = a
			}
			l := a.lines[inv.TenantID]
			if l == nil {
				l = &CommissionLine{EntityID: sh.EntityID, EntityPath: sh.EntityPath, Period: p.String(), TenantID: inv.TenantID,
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
	entities := make([]string, 0, len(byEntity))
	for id := range byEntity {
		entities = append(entities, id)
	}
	sort.Strings(entities)
	totals := make([]CommissionTotal, 0, len(entities))
	lines := map[string][]CommissionLine{}
	for _, id := range entities {
		a := byEntity[id]
		tenants := make([]string, 0, len(a.lines))
		for t := range a.lines {
			tenants = append(tenants, t)
		}
		sort.Strings(tenants)
		h := sha256.New()
		fmt.Fprintf(h, "%s|%s|%s|%s|%s|%s\n", a.t.Currency, p, a.t.EntityPath, a.t.Raw.Revenue, a.t.Raw.Cost, a.t.Raw.Commission)
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

// Exports renders the period's finance exports (SPEC 14): invoices, invoice lines and
// commissions, each as CSV and JSON, under exports/<YYYY-MM>/. The output depends only on the
// stored invoices and commissions: fixed column and field order, rows ordered by issuer and
// invoice number (lines in invoice order; commissions by entity and tenant), decimals as
// written, timestamps in RFC 3339 UTC, LF line ends. Re-running a period gives the same bytes.
func Exports(p period.Period, invs []*Invoice, lines map[string][]CommissionLine) ([]ExportFile, error) {
	sorted := append([]*Invoice(nil), invs...)
	sortInvoices(sorted)
	prefix := "exports/" + p.String() + "/"
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
	invRows := []invRow{}
	lineRows := []lineRow{}
	for _, inv := range sorted {
		invRows = append(invRows, invRow{ID: inv.ID, Number: inv.Number, IssuerID: inv.IssuerID, TenantID: inv.TenantID, Period: inv.Period,
			Status: inv.Status, Currency: inv.Currency, IssuedAt: inv.IssuedAt.UTC().Format("2006-01-02T15:04:05.000000000Z"),
			Total: inv.Total.Amount.String(), PlatformRevenue: inv.PlatformRevenue.String(), Lines: len(inv.Lines)})
		for i, l := range inv.Lines {
			op := ""
			if l.OriginalPeriod != nil {
				op = *l.OriginalPeriod
			}
			lineRows = append(lineRows, lineRow{InvoiceID: inv.ID, InvoiceNumber: inv.Number, Line: i + 1, Kind: l.Kind, SubscriptionID: l.SubscriptionID,
				SKU: l.SKU, Description: l.Description, Quantity: l.Quantity.String(), Amount: l.Amount.Amount.String(), Currency: l.Amount.Currency, OriginalPeriod: op})
		}
	}
	entities := make([]string, 0, len(lines))
	for id := range lines {
		entities = append(entities, id)
	}
	sort.Strings(entities)
	commRows := []commRow{}
	for _, id := range entities {
		for _, l := range lines[id] {
			commRows = append(commRows, commRow{EntityID: l.EntityID, Period: l.Period, TenantID: l.TenantID, Currency: l.Currency, Invoices: l.Invoices,
				Revenue: l.Raw.Revenue.String(), Cost: l.Raw.Cost.String(), Commission: l.Raw.Commission.String()})
		}
	}
	var files []ExportFile
	add := func(name string, header []string, rows [][]string, all any) error {
		var buf bytes.Buffer
		w := csv.NewWriter(&buf)
		if err := w.Write(header); err != nil {
			return err
		}
		if err := w.WriteAll(rows); err != nil {
			return err
		}
		files = append(files, ExportFile{Key: prefix + name + ".csv", Body: buf.Bytes(), ContentType: "text/csv; charset=utf-8"})
		j, err := json.MarshalIndent(all, "", "  ")
		if err != nil {
			return err
		}
		files = append(files, ExportFile{Key: prefix + name + ".json", Body: append(j, '\n'), ContentType: "application/json"})
		return nil
	}
	var rows [][]string
	for _, r := range invRows {
		rows = append(rows, []string{r.ID, r.Number, r.IssuerID, r.TenantID, r.Period, r.Status, r.Currency, r.IssuedAt, r.Total, r.PlatformRevenue, strconv.Itoa(r.Lines)})
	}
	if err := add("invoices", []string{"id", "number", "issuerId", "tenantId", "period", "status", "currency", "issuedAt", "total", "platformRevenue", "lines"}, rows, invRows); err != nil {
		return nil, apperr.Wrap(err, "export invoices")
	}
	rows = nil
	for _, r := range lineRows {
		rows = append(rows, []string{r.InvoiceID, r.InvoiceNumber, strconv.Itoa(r.Line), r.Kind, r.SubscriptionID, r.SKU, r.Description, r.Quantity, r.Amount, r.Currency, r.OriginalPeriod})
	}
	if err := add("invoice_lines", []string{"invoiceId", "invoiceNumber", "line", "kind", "subscriptionId", "sku", "description", "quantity", "amount", "currency", "originalPeriod"}, rows, lineRows); err != nil {
		return nil, apperr.Wrap(err, "export invoice lines")
	}
	rows = nil
	for _, r := range commRows {
		rows = append(rows, []string{r.EntityID, r.Period, r.TenantID, r.Currency, strconv.Itoa(r.Invoices), r.Revenue, r.Cost, r.Commission})
	}
	if err := add("commissions", []string{"entityId", "period", "tenantId", "currency", "invoices", "revenue", "cost", "commission"}, rows, commRows); err != nil {
		return nil, apperr.Wrap(err, "export commissions")
	}
	return files, nil
}
