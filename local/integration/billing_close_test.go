package integration_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/period"
)

// The tests of this file bill January, March, April and May 2026, periods no other billing
// test bills; every subscription they create ends with its period, and every late-usage flag
// they raise is billed, so no later period's run finds their tenants.

// lagStore is the billing store of the close tests: it can make the platform-wide invoice
// listing (an index query, eventually consistent in AWS) miss its last entries, and the runs'
// counters agree with the short listing (a close that saw fewer invoices than an earlier one).
type lagStore struct {
	billing.Store
	lag   atomic.Int32
	stale atomic.Bool
}

func (s *lagStore) InvoiceRefs(ctx context.Context, p period.Period, prefix string) ([]billing.InvoiceRef, error) {
	refs, err := s.Store.InvoiceRefs(ctx, p, prefix)
	if n := int(s.lag.Load()); err == nil && n > 0 && prefix == access.PlatformPath {
		refs = refs[:max(len(refs)-n, 0)]
	}
	return refs, err
}

func (s *lagStore) PeriodRuns(ctx context.Context, p period.Period) ([]*billing.Run, error) {
	runs, err := s.Store.PeriodRuns(ctx, p)
	if err == nil && s.stale.Load() {
		left := int(s.lag.Load())
		for _, r := range runs {
			k := min(left, r.InvoicesCreated)
			r.InvoicesCreated -= k
			left -= k
		}
	}
	return runs, err
}

// failQueue is the billing queue of the close tests: it can refuse every send.
type failQueue struct {
	billing.Queue
	fail atomic.Bool
}

func (q *failQueue) Send(ctx context.Context, msgs []billing.Message) error {
	if q.fail.Load() {
		return errors.New("injected queue failure")
	}
	return q.Queue.Send(ctx, msgs)
}

// traceUsage records, per tenant, the order in which billing resolves pending increments and
// reads flags (the usage contract: resolve first).
type traceUsage struct {
	billing.UsageSource
	mu    sync.Mutex
	calls map[string][]string
}

func (u *traceUsage) note(tenant, call string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls[tenant] = append(u.calls[tenant], call)
}

func (u *traceUsage) trace(tenant string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.calls[tenant]...)
}

func (u *traceUsage) Changes(ctx context.Context, tenantID string) ([]billing.UsageChange, error) {
	u.note(tenantID, "changes")
	return u.UsageSource.Changes(ctx, tenantID)
}

func (u *traceUsage) ResolvePending(ctx context.Context, tenantID string) (int, error) {
	u.note(tenantID, "resolve")
	return u.UsageSource.ResolvePending(ctx, tenantID)
}

type closeEnvT struct {
	*billedServer
	store *lagStore
	queue *failQueue
	usage *traceUsage
	// fail holds the stages (billing.Service.Fault) that fail at every delivery.
	fail sync.Map
	// hold, when set, stops the next close to reach its first step (holding the period's lease)
	// until the channel is closed; held is told when it does.
	hold atomic.Pointer[chan struct{}]
	held chan string
}

var (
	closeOnce sync.Once
	closeEnv  *closeEnvT
	closeErr  error
)

// closeMaxReceives is the close tests' queue's maxReceiveCount: above billing's 4 attempts,
// and enough deliveries (one a second) for a test to act while a message is retried.
const closeMaxReceives = 8

// closeServer returns an API server and billing worker like billingServer's (the shared table,
// a test clock, a queue and a versioned exports bucket of their own) whose fan-out lists 3
// subscriptions per page and whose store, queue and usage source the tests can disturb.
func closeServer(t *testing.T) *closeEnvT {
	t.Helper()
	closeOnce.Do(func() {
		e := &closeEnvT{held: make(chan string, 1)}
		if e.billedServer, closeErr = startBilledServer("cms-it-close-", "cms-it-close-exports-", closeMaxReceives, func(d *app.Deps) {
			b := d.Billing
			b.FanoutPage = 3
			e.store = &lagStore{Store: b.Store}
			e.queue = &failQueue{Queue: b.Queue}
			e.usage = &traceUsage{UsageSource: b.Usage, calls: map[string][]string{}}
			b.Store, b.Queue, b.Usage = e.store, e.queue, e.usage
			b.Fault = func(stage, runID string) error {
				if stage == "close" {
					if ch := e.hold.Swap(nil); ch != nil {
						e.held <- runID
						<-*ch
					}
				}
				if _, ok := e.fail.Load(stage); ok {
					return errors.New("injected persistent failure at " + stage)
				}
				return nil
			}
		}); closeErr == nil {
			closeEnv = e
		}
	})
	if closeErr != nil {
		t.Fatal("close server:", closeErr)
	}
	return closeEnv
}

// runState is a run with its close (runOut and closedAt).
type runState struct {
	runOut
	ClosedAt *string `json:"closedAt"`
}

// getRun reads a run.
func getRun(t *testing.T, c client, id string) runState {
	t.Helper()
	var r runState
	c.must(200, "GET", "/api/v1/billing/runs/"+id, nil, &r)
	return r
}

// waitClosed waits until the run's close (commissions and exports) is done.
func waitClosed(t *testing.T, c client, id string) runState {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := getRun(t, c, id)
		if r.ClosedAt != nil {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s not closed: %+v", id, r)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// depth returns how many messages a queue holds, waiting and in flight.
func (e *closeEnvT) depth(t *testing.T, url string) int {
	t.Helper()
	out, err := e.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible} {
		v, _ := strconv.Atoi(out.Attributes[string(k)])
		n += v
	}
	return n
}

// waitIdle waits until the billing queue holds no message (every one done or dead-lettered),
// twice in a row a second apart, and returns how many the dead-letter queue holds.
func (e *closeEnvT) waitIdle(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for idle := 0; idle < 2; {
		if e.depth(t, e.billingQ.URL) == 0 {
			idle++
		} else {
			idle = 0
		}
		if time.Now().After(deadline) {
			t.Fatalf("the billing queue still holds %d messages", e.depth(t, e.billingQ.URL))
		}
		time.Sleep(time.Second)
	}
	return e.depth(t, e.billingQ.DLQURL)
}

// export returns an export's bytes and version ("" when it does not exist).
func (e *closeEnvT) export(t *testing.T, key string) ([]byte, string) {
	t.Helper()
	obj, err := e.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	var nsk *s3types.NoSuchKey
	if errors.As(err, &nsk) {
		return nil, ""
	}
	if err != nil {
		t.Fatalf("export %s: %v", key, err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, aws.ToString(obj.VersionId)
}

func mustPeriod(t *testing.T, s string) period.Period {
	t.Helper()
	p, err := period.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mkTenantSub(t *testing.T, a client, partnerID, planID string, subs int) (string, []string) {
	t.Helper()
	tn := create(t, a, "tenants", map[string]any{"name": uniq("T"), "parent": parent("partner", partnerID)})
	var out []string
	for range subs {
		var s struct {
			ID string `json:"id"`
		}
		a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": planID, "quantity": 1}, &s)
		out = append(out, s.ID)
	}
	return tn.ID, out
}

func cancelAtPeriodEnd(t *testing.T, a client, subs ...string) {
	t.Helper()
	for _, s := range subs {
		a.must(200, "DELETE", "/api/v1/subscriptions/"+s+"?at=period_end", nil, nil)
	}
}

func invoicesOf(t *testing.T, a client, tenant, p string) []invoiceOut {
	t.Helper()
	var invs []invoiceOut
	a.must(200, "GET", "/api/v1/invoices?tenantId="+tenant+"&period="+p, nil, &invs)
	return invs
}

// TestBillingCloseMarch bills March 2026 for seven tenants with one to three subscriptions
// each, the fan-out listing 3 subscriptions per page, and goes through the close's guarantees:
//   - every tenant lies in exactly one fan-out page (the run completes, TenantsTotal is exact);
//   - a close whose invoice listing misses an invoice (index lag) writes nothing and is
//     retried; once the listing is complete it closes with every invoice;
//   - a close whose lease another close holds waits, and takes the lease over once it expired
//     (that close crashed);
//   - a commission total computed from fewer invoices never replaces the stored one;
//   - two deliveries of one run's close exclude each other (the lease is an attempt's);
//   - a close that saw fewer invoices than the last one (the runs' counters agreeing with a
//     short listing) never rewrites the exports.
func TestBillingCloseMarch(t *testing.T) {
	e := closeServer(t)
	a := e.admin(t)
	ctx := context.Background()
	defer e.clock.Set(time.Time{})
	march := mustPeriod(t, "2026-03")
	e.clock.Set(time.Date(2026, 2, 20, 12, 0, 0, 0, time.UTC))
	pr := create(t, a, "partners", map[string]any{"name": "Paged", "billingId": uniq("PG"), "parent": parent("platform", "platform")})
	plan := mkPlan(t, a, uniq("paged"), true)
	e.clock.Set(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	var tenants, subs []string
	for i := range 7 {
		tn, ss := mkTenantSub(t, a, pr.ID, plan.ID, i%3+1)
		tenants, subs = append(tenants, tn), append(subs, ss...)
	}
	e.clock.Set(time.Date(2026, 3, 25, 12, 0, 0, 0, time.UTC))
	cancelAtPeriodEnd(t, a, subs...)
	e.clock.Set(time.Date(2026, 4, 1, 0, 5, 0, 0, time.UTC))
	key := "exports/2026-03/invoices.csv"

	// The index misses the last invoice while the first run closes.
	e.store.lag.Store(1)
	t.Cleanup(func() { e.store.lag.Store(0) })
	run := runBilling(t, a, "2026-03")
	if run.Status != "completed" || run.TenantsTotal != len(tenants) || run.InvoicesCreated != len(tenants) || run.TenantsDone != run.TenantsTotal {
		t.Fatalf("run %+v", run)
	}
	// 1 to 3 subscriptions of one seat at 30.00 for March's 30 days from the 2nd: 30 x 30/31 =
	// 29.03 each.
	for i, tn := range tenants {
		invs := invoicesOf(t, a, tn, "2026-03")
		if want := []string{"29.03", "58.06", "87.09"}[i%3]; len(invs) != 1 || invs[0].Total.Amount != want {
			t.Fatalf("tenant %d: invoices %+v, want one of %s", i, invs, want)
		}
	}
	t.Run("EveryTenantInOnePage", func(t *testing.T) {
		seen := map[string]int{}
		pages := 0
		for n := 0; ; n++ {
			pg, err := e.deps.Store.FanoutPage(ctx, run.ID, n)
			if err != nil {
				t.Fatalf("page %d: %v", n, err)
			}
			pages++
			for _, tn := range pg.Tenants {
				seen[tn]++
			}
			if pg.Next == "" {
				break
			}
		}
		for i, tn := range tenants {
			if seen[tn] != 1 {
				t.Errorf("tenant %d is in %d pages", i, seen[tn])
			}
		}
		// 14 subscriptions of these tenants at 3 per page (extended to a tenant's last one).
		if pages < 4 {
			t.Errorf("%d fan-out pages for %d subscriptions", pages, len(subs))
		}
	})
	t.Run("ErrIncompleteListing", func(t *testing.T) {
		time.Sleep(3 * time.Second)
		if r := getRun(t, a, run.ID); r.ClosedAt != nil {
			t.Fatalf("closed with a listing short of an invoice: %+v", r)
		}
		if b, _ := e.export(t, key); b != nil {
			t.Fatalf("exports written from a short listing:\n%s", b)
		}
		var c commissionOut
		a.must(200, "GET", "/api/v1/commissions/summary?entityId="+pr.ID+"&start_date=2026-03", nil, &c)
		if len(c.Tenants) != 0 {
			t.Fatalf("commissions written from a short listing: %+v", c)
		}
		e.store.lag.Store(0)
		waitClosed(t, a, run.ID)
		b, _ := e.export(t, key)
		for _, tn := range tenants {
			if !bytes.Contains(b, []byte(tn)) {
				t.Errorf("the invoices export misses tenant %s:\n%s", tn, b)
			}
		}
		a.must(200, "GET", "/api/v1/commissions/summary?entityId="+pr.ID+"&start_date=2026-03", nil, &c)
		if len(c.Tenants) != len(tenants) {
			t.Fatalf("commission tenants %+v", c)
		}
	})
	t.Run("LeaseTakenOverAfterExpiry", func(t *testing.T) {
		// A close that crashed holding the lease (taken as soon as a duplicate close message of
		// the first run, which finds the run closed, lets it go).
		now := e.clock.Now()
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := e.deps.Store.AcquireClose(ctx, march, "run_crashedclose", now, now.Add(billing.DefaultCloseLease))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, before := e.export(t, key)
		second := runBilling(t, a, "2026-03")
		if second.Status != "completed" || second.InvoicesCreated != 0 || second.TenantsTotal != len(tenants) {
			t.Fatalf("second run %+v", second)
		}
		time.Sleep(1500 * time.Millisecond)
		if r := getRun(t, a, second.ID); r.ClosedAt != nil {
			t.Fatalf("closed while another close holds the lease: %+v", r)
		}
		if _, v := e.export(t, key); v != before {
			t.Fatal("exports rewritten while another close holds the lease")
		}
		e.clock.Set(now.Add(billing.DefaultCloseLease + time.Minute))
		waitClosed(t, a, second.ID)
		if _, v := e.export(t, key); v == before {
			t.Fatal("the close that took the lease over did not write the exports")
		}
	})
	t.Run("CommissionsMonotonic", func(t *testing.T) {
		one, err := money.Parse("1")
		if err != nil {
			t.Fatal(err)
		}
		stale := billing.CommissionTotal{EntityID: pr.ID, EntityPath: access.PathOf(access.PlatformPath, pr.ID), Period: march, Currency: "EUR",
			Tenants: 1, Raw: billing.CommissionRaw{Revenue: one, Cost: one, Commission: money.Zero}, Digest: "computed from fewer invoices",
			PeriodInvoices: len(tenants) - 1}
		ev, err := outbox.New(billing.EventCommissionEarned, stale.EntityPath, e.clock.Now(), map[string]string{"entityId": pr.ID})
		if err != nil {
			t.Fatal(err)
		}
		wrote, err := e.deps.Store.PutCommission(ctx, stale, nil, ev)
		if err != nil || wrote {
			t.Fatalf("a total from %d invoices replaced one from %d: %v %v", stale.PeriodInvoices, len(tenants), wrote, err)
		}
		var c commissionOut
		a.must(200, "GET", "/api/v1/commissions/summary?entityId="+pr.ID+"&start_date=2026-03", nil, &c)
		if len(c.Tenants) != len(tenants) || c.Revenue.Amount == "1.00" {
			t.Fatalf("commission after a stale write %+v", c)
		}
	})
	t.Run("DuplicateClosesExclusive", func(t *testing.T) {
		// Every worker that sees a run complete queues its close, and a held message is
		// delivered again: the deliveries of one run's close must exclude each other as closes
		// of different runs do, or a later one rewrites the exports after the run is closed.
		_, before := e.export(t, key)
		release := make(chan struct{})
		e.hold.Store(&release)
		defer e.hold.Store(nil)
		run := runBilling(t, a, "2026-03")
		var heldRun string
		select {
		case heldRun = <-e.held:
		case <-time.After(20 * time.Second):
			close(release)
			t.Fatal("no close of the run reached its first step")
		}
		if heldRun != run.ID {
			close(release)
			t.Fatalf("held the close of %s, want %s", heldRun, run.ID)
		}
		if err := e.queue.Send(ctx, []billing.Message{{Kind: billing.KindClose, RunID: run.ID, Period: "2026-03"}}); err != nil {
			close(release)
			t.Fatal(err)
		}
		// The held delivery comes back after the one-second visibility timeout, the duplicate
		// at once: both find the lease taken.
		time.Sleep(2500 * time.Millisecond)
		r := getRun(t, a, run.ID)
		_, v := e.export(t, key)
		close(release)
		if r.ClosedAt != nil || v != before {
			t.Fatalf("a second delivery closed the run while the first held the lease (closed %v, exports rewritten %v)", r.ClosedAt != nil, v != before)
		}
		waitClosed(t, a, run.ID)
		if _, v := e.export(t, key); v == before {
			t.Fatal("the held close did not write the exports")
		}
	})
	t.Run("ErrStaleCloseKeepsExports", func(t *testing.T) {
		body, before := e.export(t, key)
		e.store.lag.Store(1)
		e.store.stale.Store(true)
		t.Cleanup(func() { e.store.lag.Store(0); e.store.stale.Store(false) })
		third := runBilling(t, a, "2026-03")
		time.Sleep(2 * time.Second)
		if r := getRun(t, a, third.ID); r.ClosedAt != nil {
			t.Fatalf("a close that saw %d invoices after one that saw %d closed: %+v", len(tenants)-1, len(tenants), r)
		}
		if b, v := e.export(t, key); v != before || !bytes.Equal(b, body) {
			t.Fatalf("a close that saw fewer invoices rewrote the exports:\n%s", b)
		}
		e.store.lag.Store(0)
		e.store.stale.Store(false)
		waitClosed(t, a, third.ID)
		if b, v := e.export(t, key); v == before || !bytes.Equal(b, body) {
			t.Fatalf("exports after the complete close (version %s, was %s):\n%s\n---\n%s", v, before, b, body)
		}
	})
}

// TestBillingCloseLateUsageAfterCancel bills April 2026 for two tenants whose subscriptions end
// with April, then late usage of April arrives in May: 4 units for T1 (billed in May on an
// invoice of one adjustment line, although T1 has no subscription in May) and 0 units for T2
// (flagged, nothing to bill: no invoice, and the flag is settled). Billing resolves pending
// increments before it reads a tenant's flags. A second May run finds nobody to bill.
func TestBillingCloseLateUsageAfterCancel(t *testing.T) {
	e := closeServer(t)
	a := e.admin(t)
	defer e.clock.Set(time.Time{})
	e.clock.Set(time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC))
	pr := create(t, a, "partners", map[string]any{"name": "Late", "billingId": uniq("LT"), "parent": parent("platform", "platform")})
	code := uniq("api-calls")
	sku := mkSKU(t, a, map[string]any{"code": code, "name": "API calls", "unit": "call", "model": "per_unit", "unitPrice": "0.50",
		"effectiveFrom": "2026-04-01"})
	plan := mkPlan(t, a, uniq("late"), true, sku.ID)
	e.clock.Set(time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC))
	t1, s1 := mkTenantSub(t, a, pr.ID, plan.ID, 1)
	t2, s2 := mkTenantSub(t, a, pr.ID, plan.ID, 1)
	push := func(tenant, q, ts string) {
		t.Helper()
		var res struct {
			Accepted int `json:"accepted"`
		}
		a.must(202, "POST", "/api/v1/usage", map[string]any{"records": []map[string]any{{"id": uniq("u"), "tenantId": tenant, "sku": code,
			"quantity": q, "timestamp": ts}}}, &res)
		if res.Accepted != 1 {
			t.Fatalf("usage not accepted: %+v", res)
		}
	}
	e.clock.Set(time.Date(2026, 4, 10, 12, 0, 0, 0, time.UTC))
	push(t1, "10", "2026-04-10T11:00:00Z")
	e.clock.Set(time.Date(2026, 4, 20, 12, 0, 0, 0, time.UTC))
	cancelAtPeriodEnd(t, a, append(s1, s2...)...)

	e.clock.Set(time.Date(2026, 5, 1, 0, 5, 0, 0, time.UTC))
	april := runBilling(t, a, "2026-04")
	if april.Status != "completed" || april.InvoicesCreated != 2 {
		t.Fatalf("april %+v", april)
	}
	// 30.00 for the whole month plus 10 x 0.50.
	if invs := invoicesOf(t, a, t1, "2026-04"); len(invs) != 1 || invs[0].Total.Amount != "35.00" {
		t.Fatalf("T1 april %+v", invs)
	}

	e.clock.Set(time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC))
	push(t1, "4", "2026-04-25T10:00:00Z")
	push(t2, "0", "2026-04-26T10:00:00Z")

	e.clock.Set(time.Date(2026, 6, 1, 0, 5, 0, 0, time.UTC))
	may := runBilling(t, a, "2026-05")
	if may.Status != "completed" || may.TenantsTotal != 2 || may.InvoicesCreated != 1 || may.TenantsFailed != 0 {
		t.Fatalf("may %+v", may)
	}
	invs := invoicesOf(t, a, t1, "2026-05")
	if len(invs) != 1 {
		t.Fatalf("T1 may invoices %+v", invs)
	}
	inv := invs[0]
	if inv.Total.Amount != "2.00" || len(inv.Lines) != 1 || inv.Lines[0].Kind != "adjustment" || inv.Lines[0].Quantity != "4" ||
		inv.Lines[0].Amount.Amount != "2.00" || inv.Lines[0].OriginalPeriod == nil || *inv.Lines[0].OriginalPeriod != "2026-04" ||
		!strings.HasSuffix(inv.Number, "-000003") {
		t.Fatalf("T1 may invoice %+v", inv)
	}
	if invs := invoicesOf(t, a, t2, "2026-05"); len(invs) != 0 {
		t.Fatalf("T2 got an invoice with nothing to bill: %+v", invs)
	}
	for _, tn := range []string{t1, t2} {
		if tr := e.usage.trace(tn); len(tr) < 2 || fmt.Sprint(tr[len(tr)-2:]) != "[resolve changes]" {
			t.Errorf("tenant %s: usage calls %v, want the flags read right after the pending increments are resolved", tn, tr)
		}
	}
	waitClosed(t, a, may.ID)
	b, _ := e.export(t, "exports/2026-05/invoice_lines.csv")
	if !bytes.Contains(b, []byte(inv.Number)) || !bytes.Contains(b, []byte(",adjustment,")) {
		t.Fatalf("the May invoice lines export misses the adjustment:\n%s", b)
	}

	again := runBilling(t, a, "2026-05")
	if again.Status != "completed" || again.TenantsTotal != 0 || again.InvoicesCreated != 0 {
		t.Fatalf("second may run %+v (the flags should be settled)", again)
	}
	if invs := invoicesOf(t, a, t1, "2026-05"); len(invs) != 1 {
		t.Fatalf("T1 may invoices after the second run %+v", invs)
	}
}

// TestBillingCloseResume bills January 2026 for one tenant through runs that get stuck: a start
// whose fan-out could not be queued (500, the run never fans out), a fan-out that fails at
// every delivery and lands in the dead-letter queue, a close that does too. Starting the period
// again once they are stale (billing.DefaultResumeAfter) resumes each, and all end completed
// and closed, the tenant invoiced once. A scheduled start delivered twice names one run.
func TestBillingCloseResume(t *testing.T) {
	e := closeServer(t)
	a := e.admin(t)
	ctx := context.Background()
	defer e.clock.Set(time.Time{})
	jan := mustPeriod(t, "2026-01")
	e.clock.Set(time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC))
	pr := create(t, a, "partners", map[string]any{"name": "Resume", "billingId": uniq("RS"), "parent": parent("platform", "platform")})
	plan := mkPlan(t, a, uniq("resume"), true)
	tn, subs := mkTenantSub(t, a, pr.ID, plan.ID, 1)
	cancelAtPeriodEnd(t, a, subs...)
	start := time.Date(2026, 2, 1, 0, 5, 0, 0, time.UTC)
	e.clock.Set(start)

	e.queue.fail.Store(true)
	if env := a.do("POST", "/api/v1/billing/runs", map[string]any{"period": "2026-01"}); env.status != 500 {
		t.Fatalf("start with the queue down: %d %s", env.status, env.raw)
	}
	e.queue.fail.Store(false)
	runs, err := e.deps.Store.PeriodRuns(ctx, jan)
	if err != nil || len(runs) != 1 || runs[0].Status != billing.RunRunning || runs[0].Planned {
		t.Fatalf("runs of january after the failed start: %+v %v", runs, err)
	}
	orphan := runs[0].ID

	depth := e.waitIdle(t)
	e.fail.Store("fanout", true)
	var stuck runOut
	a.must(202, "POST", "/api/v1/billing/runs", map[string]any{"period": "2026-01"}, &stuck)
	time.Sleep(time.Second)
	if dead := e.waitIdle(t); dead <= depth {
		t.Fatalf("the failing fan-out is not in the dead-letter queue (%d messages, had %d)", dead, depth)
	} else {
		depth = dead
	}
	e.fail.Delete("fanout")
	if r := getRun(t, a, stuck.ID); r.Status != "running" || r.TenantsTotal != 0 {
		t.Fatalf("run whose fan-out is in the dead-letter queue: %+v", r)
	}

	e.fail.Store("close", true)
	unclosed := runBilling(t, a, "2026-01")
	if unclosed.Status != "completed" || unclosed.InvoicesCreated != 1 {
		t.Fatalf("run %+v", unclosed)
	}
	if dead := e.waitIdle(t); dead <= depth {
		t.Fatalf("the failing close is not in the dead-letter queue (%d messages, had %d)", dead, depth)
	}
	e.fail.Delete("close")
	if r := getRun(t, a, unclosed.ID); r.ClosedAt != nil {
		t.Fatalf("closed although its close failed: %+v", r)
	}

	// Not stale yet: a start leaves them alone.
	e.clock.Set(start.Add(billing.DefaultResumeAfter / 2))
	fresh := runBilling(t, a, "2026-01")
	waitClosed(t, a, fresh.ID)
	if r := getRun(t, a, stuck.ID); r.Status != "running" {
		t.Fatalf("resumed before it was stale: %+v", r)
	}

	e.clock.Set(start.Add(billing.DefaultResumeAfter + time.Minute))
	last := runBilling(t, a, "2026-01")
	for _, id := range []string{orphan, stuck.ID, unclosed.ID, last.ID} {
		r := waitClosed(t, a, id)
		if r.Status != "completed" || r.TenantsTotal != 1 || r.TenantsDone != 1 {
			t.Errorf("run %s after the resume: %+v", id, r)
		}
	}
	if invs := invoicesOf(t, a, tn, "2026-01"); len(invs) != 1 || !strings.HasSuffix(invs[0].Number, "-000001") {
		t.Fatalf("invoices %+v", invs)
	}

	t.Run("ScheduledStartRetried", func(t *testing.T) {
		before, err := e.deps.Store.PeriodRuns(ctx, jan)
		if err != nil {
			t.Fatal(err)
		}
		m := billing.Message{Kind: billing.KindStart, Period: "2026-01", MessageID: "sched-" + ids.New("m"), Attempt: 1}
		for range 2 {
			if err := e.deps.Billing.Process(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		after, err := e.deps.Store.PeriodRuns(ctx, jan)
		if err != nil || len(after) != len(before)+1 {
			t.Fatalf("%d runs of january after a start delivered twice, had %d: %v", len(after), len(before), err)
		}
	})
}

// TestBillingExportsMultipart writes exports through the bucket adapter: a small object in one
// put, one of several parts as a multipart upload (the bytes read back are the bytes written),
// and an aborted one that leaves the object before it in place.
func TestBillingExportsMultipart(t *testing.T) {
	e := closeServer(t)
	ctx := context.Background()
	b := &app.ExportsBucket{Client: e.s3, Bucket: e.bucket, PartSize: 5 << 20}
	write := func(key string, body []byte, commit bool) {
		t.Helper()
		w, err := b.Create(ctx, key, "application/octet-stream")
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(body); off += 777_777 {
			if _, err := w.Write(body[off:min(off+777_777, len(body))]); err != nil {
				t.Fatal(err)
			}
		}
		if !commit {
			w.Abort()
			return
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	small := []byte("id,number\n")
	write("exports/test/small.csv", small, true)
	if got, _ := e.export(t, "exports/test/small.csv"); !bytes.Equal(got, small) {
		t.Fatalf("small object %q", got)
	}
	big := make([]byte, 11<<20+12345)
	for i := range big {
		big[i] = byte('a' + i%23)
	}
	write("exports/test/big.csv", big, true)
	got, _ := e.export(t, "exports/test/big.csv")
	if !bytes.Equal(got, big) {
		t.Fatalf("multipart object: %d bytes read, %d written", len(got), len(big))
	}
	write("exports/test/big.csv", bytes.Repeat([]byte("x"), 6<<20), false)
	if got, _ := e.export(t, "exports/test/big.csv"); !bytes.Equal(got, big) {
		t.Fatalf("an aborted upload replaced the object (%d bytes)", len(got))
	}
}
