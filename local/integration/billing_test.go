package integration_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/channelbilling/cms/shared/app"
)

type billingEnvT struct {
	*billedServer
	faults sync.Map // tenant id -> stage to fail once
}

var (
	billingOnce sync.Once
	billingEnv  *billingEnvT
	billingErr  error
)

// billingServer returns a second API server on the shared table whose services read a test
// clock, with its own billing queue (fed to the billing worker like Lambda's event source) and
// exports bucket.
func billingServer(t *testing.T) *billingEnvT {
	t.Helper()
	billingOnce.Do(func() {
		e := &billingEnvT{}
		// A fault fails the tenant's message once at its stage; a stage ending in "*" fails it
		// at every delivery until the test removes it.
		fault := func(stage, tenant string) error {
			v, ok := e.faults.Load(tenant)
			if !ok {
				return nil
			}
			switch v.(string) {
			case stage:
				e.faults.Delete(tenant)
				return errors.New("injected failure at " + stage)
			case stage + "*":
				return errors.New("injected persistent failure at " + stage)
			}
			return nil
		}
		if e.billedServer, billingErr = startBilledServer("cms-it-billing-", "cms-it-exports-", 5, func(d *app.Deps) {
			d.Billing.Fault = fault
		}); billingErr == nil {
			billingEnv = e
		}
	})
	if billingErr != nil {
		t.Fatal("billing server:", billingErr)
	}
	return billingEnv
}

type moneyOut struct {
	Amount   string `json:"amount"`
	Currency string `json:"currency"`
}

type invoiceOut struct {
	ID       string   `json:"id"`
	Number   string   `json:"number"`
	TenantID string   `json:"tenantId"`
	IssuerID string   `json:"issuerId"`
	Period   string   `json:"period"`
	Status   string   `json:"status"`
	Total    moneyOut `json:"total"`
	Lines    []struct {
		Kind           string   `json:"kind"`
		SubscriptionID string   `json:"subscriptionId"`
		SKU            string   `json:"sku"`
		Description    string   `json:"description"`
		Quantity       string   `json:"quantity"`
		Amount         moneyOut `json:"amount"`
		OriginalPeriod *string  `json:"originalPeriod"`
		Tiers          []struct {
			UpTo      *string  `json:"upTo"`
			Quantity  string   `json:"quantity"`
			UnitPrice string   `json:"unitPrice"`
			Amount    moneyOut `json:"amount"`
		} `json:"tiers"`
	} `json:"lines"`
}

type runOut struct {
	ID              string  `json:"id"`
	Period          string  `json:"period"`
	Status          string  `json:"status"`
	TenantsTotal    int     `json:"tenantsTotal"`
	TenantsDone     int     `json:"tenantsDone"`
	TenantsFailed   int     `json:"tenantsFailed"`
	InvoicesCreated int     `json:"invoicesCreated"`
	CompletedAt     *string `json:"completedAt"`
	Failures        []struct {
		TenantID string `json:"tenantId"`
		Code     string `json:"code"`
		Reason   string `json:"reason"`
		Attempts int    `json:"attempts"`
	} `json:"failures"`
}

// runBilling starts a run of period and waits until it has completed.
func runBilling(t *testing.T, c client, period string) runOut {
	t.Helper()
	var r runOut
	c.must(202, "POST", "/api/v1/billing/runs", map[string]any{"period": period}, &r)
	return waitRun(t, c, r.ID)
}

func waitRun(t *testing.T, c client, id string) runOut {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var r runOut
		c.must(200, "GET", "/api/v1/billing/runs/"+id, nil, &r)
		if r.Status != "running" {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still running: %+v", id, r)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type commissionOut struct {
	EntityID   string   `json:"entityId"`
	Revenue    moneyOut `json:"revenue"`
	Cost       moneyOut `json:"cost"`
	Commission moneyOut `json:"commission"`
	Tenants    []struct {
		TenantID   string   `json:"tenantId"`
		Commission moneyOut `json:"commission"`
	} `json:"tenants"`
}

// waitCommission waits for the commission run after a billing run to have stored want for the
// entity in the period.
func waitCommission(t *testing.T, c client, entity, period, want string) commissionOut {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var s commissionOut
		c.must(200, "GET", "/api/v1/commissions/summary?entityId="+entity+"&start_date="+period, nil, &s)
		if s.Commission.Amount == want || time.Now().After(deadline) {
			return s
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// exportFile is one finance export as read from the (versioned) exports bucket.
type exportFile struct {
	version  string
	modified time.Time
	body     []byte
}

// exports waits until every finance export of period exists and, when after is given, until
// each has been written again since: a version other than after's, modified at or after since
// (S3 times are whole seconds). It returns the latest version of each. A run's close writes the
// exports after the run reports completed, so reading them right then would read the files of
// the close before; the versions make the rewrite observable although its bytes are the same.
func (e *billingEnvT) exports(t *testing.T, period string, after map[string]exportFile, since time.Time) map[string]exportFile {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, missing := map[string]exportFile{}, ""
		for _, name := range []string{"invoices", "invoice_lines", "commissions"} {
			for _, ext := range []string{"csv", "json"} {
				key := "exports/" + period + "/" + name + "." + ext
				obj, err := e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
				if err != nil {
					missing = key + ": " + err.Error()
					continue
				}
				b, err := io.ReadAll(obj.Body)
				obj.Body.Close()
				if err != nil {
					t.Fatalf("export %s: %v", key, err)
				}
				f := exportFile{version: aws.ToString(obj.VersionId), modified: aws.ToTime(obj.LastModified), body: b}
				if f.version == "" || f.version == "null" || f.modified.IsZero() {
					t.Fatalf("export %s has no version (%q) or modification time: the exports bucket must be versioned", key, f.version)
				}
				if prev, ok := after[key]; ok && (f.version == prev.version || f.modified.Before(since.Truncate(time.Second))) {
					missing = key + " not rewritten yet (version " + f.version + ")"
					continue
				}
				out[key] = f
			}
		}
		if missing == "" {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("exports of %s: %s", period, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestBillingWorkedExample runs SPEC 15 through the API: the catalog and markups effective
// from 2026-01-01, the subscription from 2026-10-11, 1,250 GB in October, the October run
// (invoice 389.70, D 29.52, P 64.95), exports reproduced byte for byte by a second run, then a
// late 50 GB billed on the November invoice as 3.30.
func TestBillingWorkedExample(t *testing.T) {
	e := billingServer(t)
	a := e.admin(t)
	e.clock.Set(time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC))
	d := create(t, a, "distributors", map[string]any{"name": "D"})
	p := create(t, a, "partners", map[string]any{"name": "P", "billingId": uniq("PB"), "parent": parent("distributor", d.ID)})
	a.must(201, "POST", "/api/v1/distributors/"+d.ID+"/markups", map[string]any{"markup": "10", "startDate": "2026-01-01"}, nil)
	a.must(201, "POST", "/api/v1/partners/"+p.ID+"/markups", map[string]any{"markup": "20", "startDate": "2026-01-01"}, nil)
	code := uniq("storage-gb")
	body := storageSKU(code)
	body["effectiveFrom"] = "2026-01-01"
	sku := mkSKU(t, a, body)
	plan := mkPlan(t, a, uniq("pro"), true, sku.ID)
	// The subscription and the October usage are sent in November, when October is over and
	// November is not.
	e.clock.Set(time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC))
	tn := create(t, a, "tenants", map[string]any{"name": "T", "parent": parent("partner", p.ID)})
	var sub struct {
		ID string `json:"id"`
	}
	a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": plan.ID, "quantity": 10,
		"startDate": "2026-10-11T09:30:00Z"}, &sub)
	push := func(q int, ts string) {
		var res struct {
			Accepted int `json:"accepted"`
		}
		a.must(202, "POST", "/api/v1/usage", map[string]any{"records": []map[string]any{{"id": uniq("u"), "tenantId": tn.ID, "sku": code,
			"quantity": q, "timestamp": ts}}}, &res)
		if res.Accepted != 1 {
			t.Fatalf("usage not accepted: %+v", res)
		}
	}
	push(1250, "2026-10-20T10:00:00Z")

	t.Run("ErrPeriodNotClosed", func(t *testing.T) {
		env := a.do("POST", "/api/v1/billing/runs", map[string]any{"period": "2026-11"})
		if env.status != 422 || !env.hasError("period_not_closed", "period") {
			t.Fatalf("%d %s", env.status, env.raw)
		}
	})

	run := runBilling(t, a, "2026-10")
	if run.Status != "completed" || run.TenantsDone != run.TenantsTotal {
		t.Fatalf("run %+v", run)
	}
	var invs []invoiceOut
	a.must(200, "GET", "/api/v1/invoices?tenantId="+tn.ID, nil, &invs)
	if len(invs) != 1 {
		t.Fatalf("invoices %+v", invs)
	}
	inv := invs[0]
	if inv.Total.Amount != "389.70" || inv.Total.Currency != "EUR" || inv.Period != "2026-10" || inv.IssuerID != p.ID {
		t.Fatalf("invoice %+v", inv)
	}
	if !strings.HasPrefix(inv.Number, p.BillingID+"-2026-") || !strings.HasSuffix(inv.Number, "-000001") {
		t.Fatalf("number %s", inv.Number)
	}
	if len(inv.Lines) != 2 || inv.Lines[0].Amount.Amount != "268.26" || inv.Lines[1].Amount.Amount != "121.44" || len(inv.Lines[1].Tiers) != 3 {
		t.Fatalf("lines %+v", inv.Lines)
	}
	var one invoiceOut
	a.must(200, "GET", "/api/v1/invoices/"+inv.ID, nil, &one)
	if one.Number != inv.Number {
		t.Fatalf("get invoice %+v", one)
	}
	if s := waitCommission(t, a, d.ID, "2026-10", "29.52"); s.Commission.Amount != "29.52" || s.Revenue.Amount != "324.75" || s.Cost.Amount != "295.23" {
		t.Fatalf("D commission %+v", s)
	}
	if s := waitCommission(t, a, p.ID, "2026-10", "64.95"); s.Commission.Amount != "64.95" || len(s.Tenants) != 1 || s.Tenants[0].TenantID != tn.ID {
		t.Fatalf("P commission %+v", s)
	}
	var sum struct {
		InvoiceCount  int      `json:"invoiceCount"`
		Total         moneyOut `json:"total"`
		Subscriptions []struct {
			SubscriptionID string   `json:"subscriptionId"`
			Total          moneyOut `json:"total"`
		} `json:"subscriptions"`
	}
	a.must(200, "GET", "/api/v1/billing/summary?entityId="+p.ID+"&period=2026-10", nil, &sum)
	if sum.InvoiceCount != 1 || sum.Total.Amount != "389.70" || len(sum.Subscriptions) != 1 || sum.Subscriptions[0].SubscriptionID != sub.ID {
		t.Fatalf("summary %+v", sum)
	}
	a.must(200, "GET", "/api/v1/billing/summary?subscriptionId="+sub.ID+"&period=2026-10", nil, &sum)
	if sum.Total.Amount != "389.70" {
		t.Fatalf("subscription summary %+v", sum)
	}

	// A second run of October creates nothing and rewrites the exports byte for byte: every
	// export gets a new version, written after the second run started (so by its close, not the
	// first run's), with the very bytes of the first run's.
	first := e.exports(t, "2026-10", nil, time.Time{})
	started := time.Now() // S3's clock is the machine's, not the test clock
	again := runBilling(t, a, "2026-10")
	if again.InvoicesCreated != 0 || again.Status != "completed" {
		t.Fatalf("second run %+v", again)
	}
	second := e.exports(t, "2026-10", first, started)
	for key, f := range first {
		if !bytes.Equal(f.body, second[key].body) {
			t.Errorf("%s differs after the second run (version %s, then %s):\n%s\n---\n%s", key, f.version, second[key].version, f.body, second[key].body)
		}
	}
	if len(first["exports/2026-10/invoices.csv"].body) == 0 || !bytes.Contains(first["exports/2026-10/invoices.csv"].body, []byte(inv.Number)) {
		t.Fatalf("the invoices export does not list %s:\n%s", inv.Number, first["exports/2026-10/invoices.csv"].body)
	}

	// Late: 50 GB for October after the run, billed on November's invoice.
	push(50, "2026-10-28T10:00:00Z")
	e.clock.Set(time.Date(2026, 12, 1, 0, 10, 0, 0, time.UTC))
	defer e.clock.Set(time.Time{})
	nov := runBilling(t, a, "2026-11")
	if nov.Status != "completed" {
		t.Fatalf("november %+v", nov)
	}
	a.must(200, "GET", "/api/v1/invoices?tenantId="+tn.ID+"&period=2026-11", nil, &invs)
	if len(invs) != 1 {
		t.Fatalf("november invoices %+v", invs)
	}
	var late, seats string
	for _, l := range invs[0].Lines {
		switch l.Kind {
		case "adjustment":
			if l.OriginalPeriod == nil || *l.OriginalPeriod != "2026-10" || l.Quantity != "50" {
				t.Fatalf("adjustment %+v", l)
			}
			late = l.Amount.Amount
		case "seats":
			seats = l.Amount.Amount
		}
	}
	// November: 10 seats x 30.00 x 1.32 = 396.00, plus the late 3.30.
	if late != "3.30" || seats != "396.00" || invs[0].Total.Amount != "399.30" || !strings.HasSuffix(invs[0].Number, "-000002") {
		t.Fatalf("november invoice %+v", invs[0])
	}
}

// TestBillingConcurrentRunsAndRetries starts two runs of one period at once while workers fail
// half way (before storing an invoice, and after storing it but before finishing the message):
// every tenant gets exactly one invoice and the issuer's numbers are 1..n without a gap.
func TestBillingConcurrentRunsAndRetries(t *testing.T) {
	e := billingServer(t)
	a := e.admin(t)
	e.clock.Set(time.Date(2026, 8, 5, 0, 0, 0, 0, time.UTC))
	pr := create(t, a, "partners", map[string]any{"name": "Solo", "parent": parent("platform", "platform")})
	plan := mkPlan(t, a, uniq("seat"), true)
	const n = 12
	var tenants []string
	for i := range n {
		tn := create(t, a, "tenants", map[string]any{"name": fmt.Sprintf("T%d", i), "parent": parent("partner", pr.ID)})
		a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": plan.ID, "quantity": i + 1,
			"startDate": "2026-08-01T00:00:00Z"}, nil)
		tenants = append(tenants, tn.ID)
	}
	for i, tn := range tenants[:6] {
		e.faults.Store(tn, map[bool]string{true: "before_issue", false: "after_issue"}[i%2 == 0])
	}
	e.clock.Set(time.Date(2026, 9, 1, 0, 5, 0, 0, time.UTC))
	defer e.clock.Set(time.Time{})
	var wg sync.WaitGroup
	runs := make([]runOut, 2)
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.must(202, "POST", "/api/v1/billing/runs", map[string]any{"period": "2026-08"}, &runs[i])
		}()
	}
	wg.Wait()
	created := 0
	for _, r := range runs {
		done := waitRun(t, a, r.ID)
		if done.Status != "completed" || done.TenantsDone != done.TenantsTotal {
			t.Fatalf("run %+v", done)
		}
		created += done.InvoicesCreated
	}
	if created != n {
		t.Fatalf("the two runs created %d invoices, want %d", created, n)
	}
	var seqs []int
	for i, tn := range tenants {
		var invs []invoiceOut
		a.must(200, "GET", "/api/v1/invoices?tenantId="+tn+"&period=2026-08", nil, &invs)
		if len(invs) != 1 {
			t.Fatalf("tenant %d: %d invoices", i, len(invs))
		}
		// 10.00... the plan's base price is 30.00 per seat, full month, no markup.
		if want := fmt.Sprintf("%d.00", 30*(i+1)); invs[0].Total.Amount != want {
			t.Fatalf("tenant %d total %s, want %s", i, invs[0].Total.Amount, want)
		}
		var seq int
		fmt.Sscanf(invs[0].Number[strings.LastIndex(invs[0].Number, "-")+1:], "%d", &seq)
		seqs = append(seqs, seq)
	}
	sort.Ints(seqs)
	for i, s := range seqs {
		if s != i+1 {
			t.Fatalf("numbers not gapless: %v", seqs)
		}
	}
	pending := 0
	e.faults.Range(func(any, any) bool { pending++; return true })
	if pending != 0 {
		t.Fatalf("%d injected failures never happened", pending)
	}
}

// TestBillingRunFailed bills June 2026 (a period no other test bills) for three tenants of one
// partner: one with seats only, one with usage of a SKU whose first rate takes effect on
// 2026-06-15 (so no rate is in effect in June: permanently unbillable) and one whose worker
// fails at every delivery (given up at the fourth, from ApproximateReceiveCount). The run ends
// "failed" with both reasons; a second run retries the failed tenants and invoices the one that
// recovered; once the catalog has a June rate a third run invoices the last one and completes.
// Every tenant has one invoice in the end, numbered without gaps.
func TestBillingRunFailed(t *testing.T) {
	e := billingServer(t)
	a := e.admin(t)
	defer e.clock.Set(time.Time{})
	e.clock.Set(time.Date(2026, 6, 2, 12, 0, 0, 0, time.UTC))
	pr := create(t, a, "partners", map[string]any{"name": "Failing", "parent": parent("platform", "platform")})
	code := uniq("late-rate")
	body := storageSKU(code)
	body["effectiveFrom"] = "2026-06-15"
	sku := mkSKU(t, a, body)
	plan := mkPlan(t, a, uniq("fail"), true, sku.ID)
	e.clock.Set(time.Date(2026, 6, 25, 12, 0, 0, 0, time.UTC))
	var tenants []string
	for _, name := range []string{"Good", "NoRate", "Flaky"} {
		tn := create(t, a, "tenants", map[string]any{"name": name, "parent": parent("partner", pr.ID)})
		a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": plan.ID, "quantity": 2,
			"startDate": "2026-06-01T00:00:00Z"}, nil)
		tenants = append(tenants, tn.ID)
	}
	good, noRate, flaky := tenants[0], tenants[1], tenants[2]
	var res struct {
		Accepted int `json:"accepted"`
	}
	a.must(202, "POST", "/api/v1/usage", map[string]any{"records": []map[string]any{{"id": uniq("u"), "tenantId": noRate, "sku": code,
		"quantity": 10, "timestamp": "2026-06-20T10:00:00Z"}}}, &res)
	if res.Accepted != 1 {
		t.Fatalf("usage not accepted: %+v", res)
	}
	e.faults.Store(flaky, "before_issue*")
	defer e.faults.Delete(flaky)

	e.clock.Set(time.Date(2026, 7, 1, 0, 5, 0, 0, time.UTC))
	run := runBilling(t, a, "2026-06")
	if run.Status != "failed" || run.TenantsDone != run.TenantsTotal || run.TenantsFailed != 2 || run.InvoicesCreated != run.TenantsTotal-2 ||
		run.CompletedAt == nil || len(run.Failures) != 2 {
		t.Fatalf("run %+v", run)
	}
	reasons := map[string]string{}
	for _, f := range run.Failures {
		reasons[f.TenantID] = f.Code + ": " + f.Reason
		if f.TenantID == flaky && f.Attempts < 4 {
			t.Errorf("flaky tenant given up after %d attempts", f.Attempts)
		}
	}
	if !strings.HasPrefix(reasons[noRate], "unbillable: SKU "+code+" has no rate in effect in 2026-06") ||
		!strings.HasPrefix(reasons[flaky], "attempts_exhausted: ") {
		t.Fatalf("failures %v", reasons)
	}
	count := func(tenant string) []invoiceOut {
		var invs []invoiceOut
		a.must(200, "GET", "/api/v1/invoices?tenantId="+tenant+"&period=2026-06", nil, &invs)
		return invs
	}
	if len(count(good)) != 1 || len(count(noRate)) != 0 || len(count(flaky)) != 0 {
		t.Fatal("invoices after the failed run")
	}

	// The flaky worker recovers: a second run invoices it and fails the unbillable tenant again.
	e.faults.Delete(flaky)
	e.clock.Set(time.Date(2026, 7, 1, 1, 0, 0, 0, time.UTC))
	second := runBilling(t, a, "2026-06")
	if second.Status != "failed" || second.TenantsFailed != 1 || second.InvoicesCreated != 1 || second.Failures[0].TenantID != noRate {
		t.Fatalf("second run %+v", second)
	}

	// A June rate fixes the catalog (set in May, when June had not started); the next run
	// invoices the last tenant and completes. (The worker caches the catalog for a minute of
	// its clock: the run is an hour later.)
	e.clock.Set(time.Date(2026, 5, 20, 0, 0, 0, 0, time.UTC))
	a.must(200, "PUT", "/api/v1/pricing/"+sku.ID, map[string]any{"model": "per_unit", "unitPrice": "0.50", "effectiveFrom": "2026-06-01"}, nil)
	e.clock.Set(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	third := runBilling(t, a, "2026-06")
	if third.Status != "completed" || third.TenantsFailed != 0 || third.InvoicesCreated != 1 || len(third.Failures) != 0 {
		t.Fatalf("third run %+v", third)
	}
	var seqs []int
	for _, tn := range tenants {
		invs := count(tn)
		if len(invs) != 1 {
			t.Fatalf("tenant %s: %d invoices", tn, len(invs))
		}
		var seq int
		fmt.Sscanf(invs[0].Number[strings.LastIndex(invs[0].Number, "-")+1:], "%d", &seq)
		seqs = append(seqs, seq)
	}
	sort.Ints(seqs)
	if fmt.Sprint(seqs) != "[1 2 3]" {
		t.Fatalf("numbers %v", seqs)
	}
	// 2 seats x 30.00, plus 10 units at the new rate's 0.50 (it includes no quantity): 65.00.
	if inv := count(noRate)[0]; inv.Total.Amount != "65.00" || len(inv.Lines) != 2 || inv.Lines[1].Amount.Amount != "5.00" {
		t.Fatalf("no-rate tenant's invoice %+v", inv)
	}
}

// TestBillingMidPeriodChanges bills February 2026 (28 days; a period no other test bills or
// subscribes in) over HTTP for a tenant whose subscription changes seats and plan mid-month,
// whose usage is priced with the plan it has at the month's end, and which has a price-list
// override (a complete rate: its own included quantity, not the plan's). Every step runs on the
// test clock. Both subscriptions end in February, so they are billed in no later period.
//
// Channel: D (10 %) > P (20 %) > T, so the tenant pays list x 1.32 where it has no override.
// storage: graduated 0.10 to 100, 0.08 to 1000, 0.05 above, includes 50. vm: per_unit 0.60.
// basic: 20.00/seat, storage includes 200, vm as the SKU. pro: 40.00/seat, storage as the SKU
// (50), vm includes 10. T's override of vm from 2026-02-01: per_unit 0.80 including 5.
//
// S: basic, 4 seats from 3 Feb 09:00; 6 seats from 10 Feb 10:00; pro from 17 Feb 15:00;
// cancelled on 24 Feb for the period's end (1 Mar). S2: pro, 1 seat from 3 Feb 09:00, cancelled
// now on 12 Feb 08:00. Usage of S: storage 700 + 550 = 1,250 GB, vm 30 h.
//
//	line                       list (platform)               D sells (x1.1)   T pays
//	S basic 4 seats, 3-9 Feb   20 x 4 x 7/28 = 20.00          22.00            26.40
//	S basic 6 seats, 10-16 Feb 20 x 6 x 7/28 = 30.00          33.00            39.60
//	S pro 6 seats, 17-28 Feb   40 x 6 x 12/28 = 102.857.. ->  113.142.. ->     135.771.. ->
//	                           102.86                         113.14           135.77
//	S2 pro 1 seat, 3-11 Feb    40 x 1 x 9/28 = 12.857.. ->    14.142.. ->      16.971.. ->
//	                           12.86                          14.14            16.97
//	S storage 1,250 GB (pro: includes 50; basic's 200 would give 84.50):
//	                           100 x 0.10 + 900 x 0.08 + 200 x 0.05 = 92.00    101.20   121.44
//	S vm 30 h (pro: includes 10): 20 x 0.60 = 12.00           13.20
//	                           T pays its override (own 5 included): 25 x 0.80 = 20.00
//	                           (the plan's 10 imposed would give 16.00; no override 15.84)
//
// Invoice total 26.40 + 39.60 + 135.77 + 16.97 + 121.44 + 20.00 = 360.18. Platform revenue
// 20.00 + 30.00 + 102.86 + 12.86 + 92.00 + 12.00 = 269.72. D sells at 22.00 + 33.00 + 113.14 +
// 14.14 + 101.20 + 13.20 = 296.68: commission 296.68 - 269.72 = 26.96. P: 360.18 - 296.68 =
// 63.50. 269.72 + 26.96 + 63.50 = 360.18.
func TestBillingMidPeriodChanges(t *testing.T) {
	e := billingServer(t)
	a := e.admin(t)
	defer e.clock.Set(time.Time{})
	at := func(day, hour int) time.Time { return time.Date(2026, 2, day, hour, 0, 0, 0, time.UTC) }

	// The channel, the catalog and the override, in January (February has not started).
	e.clock.Set(time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC))
	d := create(t, a, "distributors", map[string]any{"name": "D2"})
	p := create(t, a, "partners", map[string]any{"name": "P2", "billingId": uniq("P2B"), "parent": parent("distributor", d.ID)})
	a.must(201, "POST", "/api/v1/distributors/"+d.ID+"/markups", map[string]any{"markup": "10", "startDate": "2026-01-01"}, nil)
	a.must(201, "POST", "/api/v1/partners/"+p.ID+"/markups", map[string]any{"markup": "20", "startDate": "2026-01-01"}, nil)
	storageBody := storageSKU(uniq("storage-gb"))
	storageBody["effectiveFrom"] = "2026-02-01"
	storage := mkSKU(t, a, storageBody)
	vm := mkSKU(t, a, map[string]any{"code": uniq("vm-hours"), "name": "VM", "unit": "hour", "model": "per_unit", "unitPrice": "0.60",
		"effectiveFrom": "2026-02-01"})
	plan := func(code, base string, charges ...map[string]any) planOut {
		var pl planOut
		a.must(201, "POST", "/api/v1/plans", map[string]any{"code": uniq(code), "name": code, "basePrice": base, "charges": charges}, &pl)
		a.must(200, "POST", "/api/v1/plans/"+pl.ID+"/publish", nil, &pl)
		return pl
	}
	basic := plan("basic", "20.00", map[string]any{"skuId": storage.ID, "includedQuantity": 200}, map[string]any{"skuId": vm.ID})
	pro := plan("pro", "40.00", map[string]any{"skuId": storage.ID}, map[string]any{"skuId": vm.ID, "includedQuantity": "10"})
	tn := create(t, a, "tenants", map[string]any{"name": "T2", "parent": parent("partner", p.ID)})
	a.must(200, "PUT", "/api/v1/pricelists/"+tn.ID+"/"+vm.ID, map[string]any{"model": "per_unit", "unitPrice": "0.80", "includedQuantity": 5,
		"effectiveFrom": "2026-02-01"}, nil)

	// February: the subscriptions and what happens to them, each at its instant.
	var s, s2 struct {
		ID string `json:"id"`
	}
	e.clock.Set(at(3, 9))
	a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": basic.ID, "quantity": 4}, &s)
	a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": pro.ID, "quantity": 1}, &s2)
	push := func(code, q, ts string) {
		var res struct {
			Accepted int `json:"accepted"`
		}
		a.must(202, "POST", "/api/v1/usage", map[string]any{"records": []map[string]any{{"id": uniq("u"), "tenantId": tn.ID,
			"subscriptionId": s.ID, "sku": code, "quantity": q, "timestamp": ts}}}, &res)
		if res.Accepted != 1 {
			t.Fatalf("usage not accepted: %+v", res)
		}
	}
	e.clock.Set(at(5, 12))
	push(storage.Code, "700", "2026-02-05T11:00:00Z")
	e.clock.Set(at(10, 10))
	a.must(200, "PUT", "/api/v1/subscriptions/"+s.ID, map[string]any{"quantity": 6}, nil)
	e.clock.Set(at(12, 8))
	a.must(200, "DELETE", "/api/v1/subscriptions/"+s2.ID+"?at=now", nil, nil)
	e.clock.Set(at(17, 15))
	a.must(200, "PUT", "/api/v1/subscriptions/"+s.ID, map[string]any{"planId": pro.ID}, nil)
	e.clock.Set(at(20, 18))
	push(storage.Code, "550", "2026-02-20T17:00:00Z")
	push(vm.Code, "30", "2026-02-20T17:30:00Z")
	e.clock.Set(at(24, 12))
	var cancelled struct {
		CancelAt *time.Time `json:"cancelAt"`
	}
	a.must(200, "DELETE", "/api/v1/subscriptions/"+s.ID+"?at=period_end", nil, &cancelled)
	if cancelled.CancelAt == nil || !cancelled.CancelAt.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("cancel at period end: %+v", cancelled)
	}

	e.clock.Set(time.Date(2026, 3, 1, 0, 5, 0, 0, time.UTC))
	// What the usage would cost now (GET /usage) is what the invoice bills: the plan at the
	// period's end, the override with its own included quantity.
	var use struct {
		Items []usageLine `json:"items"`
	}
	a.must(200, "GET", "/api/v1/usage?tenantId="+tn.ID+"&period=2026-02", nil, &use)
	charges := map[string]string{}
	for _, it := range use.Items {
		if it.Charge != nil {
			charges[it.SKU+" "+it.Quantity] = it.Charge.Amount
		}
	}
	if len(use.Items) != 2 || charges[storage.Code+" 1250"] != "121.44" || charges[vm.Code+" 30"] != "20.00" {
		t.Fatalf("usage charges %v", charges)
	}

	run := runBilling(t, a, "2026-02")
	if run.Status != "completed" || run.TenantsFailed != 0 || run.TenantsDone != run.TenantsTotal {
		t.Fatalf("run %+v", run)
	}
	var invs []invoiceOut
	a.must(200, "GET", "/api/v1/invoices?tenantId="+tn.ID+"&period=2026-02", nil, &invs)
	if len(invs) != 1 {
		t.Fatalf("invoices %+v", invs)
	}
	var inv invoiceOut
	a.must(200, "GET", "/api/v1/invoices/"+invs[0].ID, nil, &inv)
	type line struct{ kind, sub, sku, desc, qty, amount string }
	// Seat lines by subscription then start, usage lines by subscription then SKU (the codes
	// sort storage before vm).
	seatsS := []line{
		{"seats", s.ID, "", basic.Code + ": 4 seats, 7/28 days", "4", "26.40"},
		{"seats", s.ID, "", basic.Code + ": 6 seats, 7/28 days", "6", "39.60"},
		{"seats", s.ID, "", pro.Code + ": 6 seats, 12/28 days", "6", "135.77"},
	}
	seatsS2 := []line{{"seats", s2.ID, "", pro.Code + ": 1 seats, 9/28 days", "1", "16.97"}}
	want := append(append([]line{}, seatsS...), seatsS2...)
	if s2.ID < s.ID {
		want = append(append([]line{}, seatsS2...), seatsS...)
	}
	want = append(want,
		line{"usage", s.ID, storage.Code, storage.Code + " usage", "1250", "121.44"},
		line{"usage", s.ID, vm.Code, vm.Code + " usage", "30", "20.00"})
	if len(inv.Lines) != len(want) {
		t.Fatalf("%d lines, want %d: %+v", len(inv.Lines), len(want), inv.Lines)
	}
	for i, w := range want {
		l := inv.Lines[i]
		got := line{l.Kind, l.SubscriptionID, l.SKU, l.Description, l.Quantity, l.Amount.Amount}
		if got != w || l.Amount.Currency != "EUR" || l.OriginalPeriod != nil {
			t.Errorf("line %d: %+v, want %+v", i, got, w)
		}
	}
	// The storage line's tiers as the tenant sees them (unit prices x 1.1 x 1.2, scale kept): 100 x 0.1320 =
	// 13.20, 900 x 0.1056 = 95.04, 200 x 0.0660 = 13.20. The vm line is the override's
	// per-unit charge: no tiers.
	tierText := func(i int) string {
		var parts []string
		for _, tr := range inv.Lines[i].Tiers {
			up := "open"
			if tr.UpTo != nil {
				up = *tr.UpTo
			}
			parts = append(parts, up+":"+tr.Quantity+"x"+tr.UnitPrice+"="+tr.Amount.Amount)
		}
		return strings.Join(parts, " ")
	}
	if got := tierText(len(want) - 2); got != "100:100x0.1320=13.20 1000:900x0.1056=95.04 open:200x0.0660=13.20" {
		t.Errorf("storage tiers %s", got)
	}
	if got := tierText(len(want) - 1); got != "" {
		t.Errorf("vm tiers %s", got)
	}
	if inv.Total.Amount != "360.18" || inv.Total.Currency != "EUR" || inv.IssuerID != p.ID || inv.Number != p.BillingID+"-2026-000001" {
		t.Fatalf("invoice %s %s %s %s", inv.Total.Amount, inv.Total.Currency, inv.IssuerID, inv.Number)
	}
	if c := waitCommission(t, a, d.ID, "2026-02", "26.96"); c.Commission.Amount != "26.96" || c.Revenue.Amount != "296.68" || c.Cost.Amount != "269.72" {
		t.Fatalf("D commission %+v", c)
	}
	if c := waitCommission(t, a, p.ID, "2026-02", "63.50"); c.Commission.Amount != "63.50" || c.Revenue.Amount != "360.18" || c.Cost.Amount != "296.68" ||
		len(c.Tenants) != 1 || c.Tenants[0].TenantID != tn.ID {
		t.Fatalf("P commission %+v", c)
	}
	// Neither subscription is active after February: the tenant is not billed in March.
	var subs []struct {
		ID       string     `json:"id"`
		CancelAt *time.Time `json:"cancelAt"`
	}
	a.must(200, "GET", "/api/v1/subscriptions?tenantId="+tn.ID, nil, &subs)
	for _, sb := range subs {
		if sb.CancelAt == nil || sb.CancelAt.After(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("subscription %s runs past February: %+v", sb.ID, sb.CancelAt)
		}
	}
}
