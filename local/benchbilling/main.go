// Command benchbilling is the billing run benchmark (`make bench-billing`): a run over -tenants
// tenants (default 10,000) with two subscriptions and three SKUs each on the local stack, through
// the production path (the run's fan-out and one SQS message per tenant, fed to the billing
// worker's handler like the Lambda event source mapping), then the wall time, invoices per
// second, DynamoDB read and write units per invoice, SQS requests and worker time per invoice,
// and the cost per 1,000 invoices at on-demand prices.
//
// It starts its own emulators (or uses AWS_ENDPOINT_URL) with a table, queue and bucket of its
// own, and creates the data through the services (not HTTP) with a progress bar: a distributor,
// -partners partners with the tenants spread over them, plans "core" (SKUs A and B) and "addon"
// (SKU C), each tenant subscribed to both with usage of the three SKUs. The catalog, markups,
// subscriptions and usage are dated in the last closed month with the services' injectable
// clock (app.Deps.SetClock); the run bills that month at the real time.
//
// DynamoDB capacity is counted by a middleware on every DynamoDB request of the run: it asks for
// ReturnConsumedCapacity=TOTAL and sums what the response reports, per operation. It is not part
// of `make test`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsmw "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/local/emulator"
	"github.com/channelbilling/cms/local/feeders"
	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/subscriptions"
	"github.com/channelbilling/cms/shared/tablestore"
	"github.com/channelbilling/cms/shared/usage"
)

// Prices (us-east-1, on demand).
const (
	usdPerMillionWRU    = 1.25
	usdPerMillionRRU    = 0.25
	usdPerMillionSQS    = 0.40
	usdPerGBSecondArm   = 0.0000133334
	usdPerMillionLambda = 0.20
)

type options struct {
	tenants, partners, pollers, seeders int
	memoryMB                            int
}

func main() {
	var o options
	flag.IntVar(&o.tenants, "tenants", 10_000, "tenants to bill (two subscriptions and three SKUs each)")
	flag.IntVar(&o.partners, "partners", 100, "partners (invoice issuers) the tenants are spread over")
	flag.IntVar(&o.pollers, "pollers", 8, "concurrent billing worker invocations (queue pollers)")
	flag.IntVar(&o.seeders, "seeders", 8, "concurrent seeding goroutines")
	// The default is the billing worker's memory in the stack (infra/stack.go, Functions).
	flag.IntVar(&o.memoryMB, "memory", 1024, "Lambda memory assumed for the worker's cost estimate, MB")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "\nbench-billing:", err)
		os.Exit(1)
	}
}

// keys is the table's key schema (tablestore's), without a stream: nothing reads the outbox here.
type keys struct {
	PK     string `dynamo:"PK,hash"`
	SK     string `dynamo:"SK,range"`
	GSI1PK string `dynamo:"GSI1PK" index:"GSI1,hash"`
	GSI1SK string `dynamo:"GSI1SK" index:"GSI1,range"`
}

// opStats is what one DynamoDB operation consumed.
type opStats struct {
	Requests   int64
	Units      float64
	Unreported int64 // successful requests whose response reported no capacity
	Failed     int64 // requests that returned an error (conditions, cancelled transactions)
}

// meter counts requests per service and operation and DynamoDB's reported capacity.
type meter struct {
	mu  sync.Mutex
	ops map[string]*opStats // "DynamoDB.GetItem", "SQS.ReceiveMessage", ...
}

func (m *meter) reset() {
	m.mu.Lock()
	m.ops = map[string]*opStats{}
	m.mu.Unlock()
}

func (m *meter) snapshot() map[string]opStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]opStats{}
	for k, v := range m.ops {
		out[k] = *v
	}
	return out
}

// middleware asks DynamoDB for ReturnConsumedCapacity=TOTAL (unless the caller asked already)
// and records every request's outcome and reported units.
func (m *meter) middleware(st *middleware.Stack) error {
	return st.Initialize.Add(middleware.InitializeMiddlewareFunc("bench-meter", func(ctx context.Context, in middleware.InitializeInput,
		next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		svc, op := awsmw.GetServiceID(ctx), awsmw.GetOperationName(ctx)
		if svc == "DynamoDB" {
			setField(in.Parameters, "ReturnConsumedCapacity", types.ReturnConsumedCapacityTotal)
		}
		out, md, err := next.HandleInitialize(ctx, in)
		units, reported := 0.0, false
		if err == nil && svc == "DynamoDB" {
			units, reported = consumed(out.Result)
		}
		m.mu.Lock()
		s := m.ops[svc+"."+op]
		if s == nil {
			s = &opStats{}
			m.ops[svc+"."+op] = s
		}
		s.Requests++
		s.Units += units
		if err != nil {
			s.Failed++
		} else if svc == "DynamoDB" && !reported {
			s.Unreported++
		}
		m.mu.Unlock()
		return out, md, err
	}), middleware.After)
}

// setField sets the string-kinded field name of *struct v to val when it is empty.
func setField(v any, name string, val types.ReturnConsumedCapacity) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return
	}
	f := rv.Elem().FieldByName(name)
	if f.IsValid() && f.CanSet() && f.Kind() == reflect.String && f.String() == "" {
		f.SetString(string(val))
	}
}

// consumed sums the ConsumedCapacity of a DynamoDB output (one value or a list).
func consumed(out any) (float64, bool) {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return 0, false
	}
	f := rv.Elem().FieldByName("ConsumedCapacity")
	if !f.IsValid() {
		return 0, false
	}
	switch c := f.Interface().(type) {
	case *types.ConsumedCapacity:
		if c == nil || c.CapacityUnits == nil {
			return 0, false
		}
		return *c.CapacityUnits, true
	case []types.ConsumedCapacity:
		total, ok := 0.0, false
		for _, x := range c {
			if x.CapacityUnits != nil {
				total += *x.CapacityUnits
				ok = true
			}
		}
		return total, ok
	}
	return 0, false
}

// world is the seeded channel.
type world struct {
	principal access.Principal
	partners  []string
	core, add string // plan ids
	skus      []string
}

func run(ctx context.Context, o options) error {
	if o.tenants < 1 || o.partners < 1 || o.pollers < 1 || o.seeders < 1 {
		return fmt.Errorf("bad flags")
	}
	fmt.Printf("» machine: %d CPUs (%s), load average %s\n", runtime.NumCPU(), cpuModel(), loadAvg())
	fmt.Println("» starting the emulators")
	stack, err := emulator.Start(ctx, emulator.Options{Log: io.Discard})
	if err != nil {
		return err
	}
	defer stack.Close()
	plainCfg, err := stack.AWSConfig(ctx)
	if err != nil {
		return err
	}
	m := &meter{}
	m.reset()
	awsCfg := plainCfg.Copy()
	awsCfg.APIOptions = append(awsCfg.APIOptions, m.middleware)

	cfg := app.Defaults()
	sfx := strings.ToLower(ids.New("b")[2:12])
	cfg.Table, cfg.BillingQueue, cfg.ExportsBucket = "cms-benchbill-"+sfx, "cms-benchbill-"+sfx, "cms-benchbill-"+sfx
	db := dynamo.New(plainCfg, stack.DynamoDBOptions())
	if err := db.CreateTable(cfg.Table, keys{}).OnDemand(true).Project(tablestore.GSI1, dynamo.AllProjection).Wait(ctx); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("CMS_BENCH_LOG") != "" {
		quiet = app.NewLogger("info")
	}
	d, err := app.New(ctx, cfg, awsCfg, quiet, stack.DynamoDBOptions())
	if err != nil {
		return err
	}
	p := period.Of(time.Now().UTC()).Prev()
	var clockAt atomic.Int64
	d.SetClock(func() time.Time {
		if at := clockAt.Load(); at != 0 {
			return time.Unix(0, at).UTC()
		}
		return time.Now().UTC()
	})
	// Seeding: the catalog and markups from p's first day, usage on p's 20th.
	clockAt.Store(p.Start().AddDate(0, 0, 20).UnixNano())
	t0 := time.Now()
	w, err := seedChannel(ctx, d, o, p)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := seedTenants(ctx, d, w, o, p); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	fmt.Printf("\n» seeded %d tenants, %d subscriptions, %d usage records in %s\n", o.tenants, 2*o.tenants, 3*o.tenants,
		time.Since(t0).Round(time.Second))
	clockAt.Store(0)

	sqsc := sqs.NewFromConfig(awsCfg)
	q, err := feeders.EnsureQueue(ctx, sqsc, cfg.BillingQueue, cfg.BillingQueue+"-dlq", 5, 30*time.Second)
	if err != nil {
		return err
	}
	if _, err := s3.NewFromConfig(plainCfg, app.S3Options(plainCfg)).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(cfg.ExportsBucket)}); err != nil {
		return err
	}
	var invocations, handlerNanos atomic.Int64
	worker := d.BillingWorker()
	handle := func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		start := time.Now()
		r, err := worker.Handle(ctx, ev)
		invocations.Add(1)
		handlerNanos.Add(int64(time.Since(start)))
		return r, err
	}
	stopFeed := feeders.NewSQS(sqsc, q.URL, q.ARN, handle, feeders.SQSOptions{Concurrency: o.pollers,
		VisibilityTimeout: 30 * time.Second, Region: awsCfg.Region, Log: quiet, Detach: true}).Start(ctx)
	defer stopFeed()
	// The bench reads the run's progress through an unmetered store.
	watch := tablestore.NewFromConfig(plainCfg, cfg.Table, stack.DynamoDBOptions())

	m.reset()
	load0 := loadAvg()
	start := time.Now()
	r, err := d.Billing.StartRun(ctx, w.principal, billing.RunInput{Period: p.String()})
	if err != nil {
		return fmt.Errorf("start run: %w", err)
	}
	fmt.Printf("» billing run %s of %s: %d pollers (concurrent worker invocations), batches of up to 10 messages\n", r.ID, p, o.pollers)
	var invoiced time.Duration
	var invoicedOps map[string]opStats
	var invoicedNanos int64
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		cur, err := watch.GetRun(ctx, r.ID)
		if err != nil {
			return err
		}
		el := time.Since(start)
		if invoiced == 0 {
			bar(cur.TenantsDone, max(cur.TenantsTotal, o.tenants), el)
		}
		if invoiced == 0 && cur.Status != billing.RunRunning {
			invoiced = el
			invoicedOps, invoicedNanos = m.snapshot(), handlerNanos.Load()
			fmt.Printf("\n» run %s: %d tenants, %d invoices, %d failed in %s; waiting for the commission run and the exports\n",
				cur.Status, cur.TenantsTotal, cur.InvoicesCreated, cur.TenantsFailed, el.Round(time.Millisecond))
			r = cur
		}
		if cur.Closed {
			break
		}
	}
	total := time.Since(start)
	all := m.snapshot()
	load1 := loadAvg()
	n := float64(r.InvoicesCreated)
	if n == 0 {
		return fmt.Errorf("no invoice created: %+v", r)
	}
	fmt.Printf("» commission run and exports done: %s after the start (close step %s)\n", total.Round(time.Millisecond), (total - invoiced).Round(time.Millisecond))

	fmt.Printf("\n── Invoicing phase (start → run completed): %s, %.1f invoices/s ──\n", invoiced.Round(time.Millisecond), n/invoiced.Seconds())
	rru, wru := printOps(invoicedOps, n)
	fmt.Printf("\n── Whole run (with the commission run and the exports): %s ──\n", total.Round(time.Millisecond))
	rruAll, wruAll := printOps(all, n)
	sqsReq := 0.0
	for k, v := range all {
		if strings.HasPrefix(k, "SQS.") {
			sqsReq += float64(v.Requests)
		}
	}
	gbs := float64(handlerNanos.Load()) / 1e9 * float64(o.memoryMB) / 1024
	fmt.Printf("\n── Per invoice ──\n")
	fmt.Printf("  DynamoDB: %.2f RRU + %.2f WRU (invoicing), %.2f RRU + %.2f WRU (whole run)\n", rru/n, wru/n, rruAll/n, wruAll/n)
	fmt.Printf("  SQS: %.3f requests (sends, receives incl. empty polls, deletes)\n", sqsReq/n)
	fmt.Printf("  worker: %d invocations (%.3f per invoice), %.1f ms of handler time per invoice (%d ms invoicing only)\n",
		invocations.Load(), float64(invocations.Load())/n, float64(handlerNanos.Load())/1e6/n, invoicedNanos/1e6/max(int64(n), 1))
	ddb := (rruAll*usdPerMillionRRU + wruAll*usdPerMillionWRU) / 1e6
	sq := sqsReq * usdPerMillionSQS / 1e6
	lam := gbs*usdPerGBSecondArm + float64(invocations.Load())*usdPerMillionLambda/1e6
	per := 1000 / n
	fmt.Printf("\n── Cost per 1,000 invoices (us-east-1 on demand) ──\n")
	fmt.Printf("  DynamoDB  $%.5f  (%.0f RRU x $0.25/M + %.0f WRU x $1.25/M, whole run)\n", ddb*per, rruAll*per, wruAll*per)
	fmt.Printf("  SQS       $%.5f  (%.0f requests x $0.40/M)\n", sq*per, sqsReq*per)
	fmt.Printf("  Lambda    $%.5f  (estimate: arm64 %d MB, %.1f GB-s x $0.0000133334 + %.0f invocations x $0.20/M; local handler time)\n",
		lam*per, o.memoryMB, gbs*per, float64(invocations.Load())*per)
	fmt.Printf("  total     $%.5f\n", (ddb+sq+lam)*per)
	fmt.Printf("» load average before %s, after %s\n", load0, load1)
	return nil
}

// printOps prints the operations' requests and units and returns the read and write units.
func printOps(ops map[string]opStats, n float64) (rru, wru float64) {
	names := make([]string, 0, len(ops))
	for k := range ops {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Printf("  %-36s %9s %9s %10s %9s %9s\n", "operation", "requests", "per inv.", "units", "per inv.", "no units")
	for _, k := range names {
		s := ops[k]
		fmt.Printf("  %-36s %9d %9.3f %10.0f %9.3f %9d", k, s.Requests, float64(s.Requests)/n, s.Units, s.Units/n, s.Unreported)
		if s.Failed > 0 {
			fmt.Printf("  (%d failed)", s.Failed)
		}
		fmt.Println()
		op := strings.TrimPrefix(k, "DynamoDB.")
		if op == k {
			continue
		}
		switch op {
		case "GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems":
			rru += s.Units
		default:
			wru += s.Units
		}
	}
	return rru, wru
}

func bar(done, total int, el time.Duration) {
	const width = 40
	frac := float64(done) / float64(max(total, 1))
	fill := min(int(frac*width), width)
	rate := float64(done) / max(el.Seconds(), 0.001)
	eta := "-"
	if rate > 0 && done < total {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	fmt.Printf("\r  [%s%s] %5.1f%% %6d/%d tenants %6.1f invoices/s  %s elapsed, eta %s   ", strings.Repeat("#", fill),
		strings.Repeat(".", width-fill), 100*frac, done, total, rate, el.Round(time.Second), eta)
}

// seedChannel creates the admin, the distributor, the partners, the SKUs and the plans.
func seedChannel(ctx context.Context, d *app.Deps, o options, p period.Period) (*world, error) {
	const email, password = "bench@example.com", "bench-admin-password-1"
	if _, err := d.Bootstrap(ctx, email, password); err != nil {
		return nil, err
	}
	u, err := d.Store.GetUserByEmail(ctx, email)
	if err != nil {
		return nil, err
	}
	w := &world{principal: u.Principal()}
	pr := w.principal
	first := p.FirstDay()
	dist, err := d.Hierarchy.Create(ctx, pr, access.Distributor, hierarchy.CreateInput{Name: "Bench Distribution",
		Markups: []hierarchy.MarkupInput{{Markup: "10", StartDate: first}}})
	if err != nil {
		return nil, err
	}
	for i := range o.partners {
		pt, err := d.Hierarchy.Create(ctx, pr, access.Partner, hierarchy.CreateInput{Name: fmt.Sprintf("Bench Partner %d", i),
			Parent: &hierarchy.ParentInput{Type: access.Distributor, ID: dist.ID}, Markups: []hierarchy.MarkupInput{{Markup: "20", StartDate: first}}})
		if err != nil {
			return nil, err
		}
		w.partners = append(w.partners, pt.ID)
	}
	sfx := strings.ToLower(ids.New("k")[2:10])
	rates := []catalog.RateInput{
		{Model: "per_unit", UnitPrice: "0.0004"},
		{Model: "graduated", IncludedQuantity: "50", Tiers: []catalog.TierInput{{UpTo: "100", UnitPrice: "0.10"}, {UpTo: "1000", UnitPrice: "0.08"}, {UnitPrice: "0.05"}}},
		{Model: "per_unit", UnitPrice: "0.035"},
	}
	var skuIDs []string
	for i, r := range rates {
		code := fmt.Sprintf("bench-%c-%s", 'a'+i, sfx)
		k, err := d.Catalog.CreateSKU(ctx, pr, catalog.SKUInput{Code: code, Name: "Bench " + code, Unit: "unit", EffectiveFrom: first, RateInput: r})
		if err != nil {
			return nil, err
		}
		w.skus, skuIDs = append(w.skus, code), append(skuIDs, k.ID)
	}
	mk := func(code, price string, skus ...string) (string, error) {
		var ch []catalog.ChargeInput
		for _, s := range skus {
			ch = append(ch, catalog.ChargeInput{SKUID: s})
		}
		pl, err := d.Catalog.CreatePlan(ctx, pr, catalog.PlanInput{Code: code + "-" + sfx, Name: code, BasePrice: money.Text(price), Charges: ch})
		if err != nil {
			return "", err
		}
		_, err = d.Catalog.PublishPlan(ctx, pr, pl.ID)
		return pl.ID, err
	}
	if w.core, err = mk("core", "30.00", skuIDs[0], skuIDs[1]); err != nil {
		return nil, err
	}
	if w.add, err = mk("addon", "7.50", skuIDs[2]); err != nil {
		return nil, err
	}
	return w, nil
}

// seedTenants creates the tenants with their two subscriptions and usage of the three SKUs,
// o.seeders at a time, with a progress bar.
func seedTenants(ctx context.Context, d *app.Deps, w *world, o options, p period.Period) error {
	pr := w.principal
	var next, done atomic.Int64
	errc := make(chan error, o.seeders)
	start := time.Now()
	var wg sync.WaitGroup
	const perBatch = 50 // tenants whose usage is ingested in one call (150 records)
	for range o.seeders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				first := int(next.Add(perBatch)) - perBatch
				if first >= o.tenants || ctx.Err() != nil {
					return
				}
				var recs []map[string]any
				for i := first; i < min(first+perBatch, o.tenants); i++ {
					t, err := d.Hierarchy.Create(ctx, pr, access.Tenant, hierarchy.CreateInput{Name: fmt.Sprintf("Bench tenant %d", i),
						Parent: &hierarchy.ParentInput{Type: access.Partner, ID: w.partners[i%len(w.partners)]}})
					if err != nil {
						errc <- err
						return
					}
					for _, pl := range []struct {
						id string
						q  money.Text
					}{{w.core, money.Text(fmt.Sprint(1 + i%20))}, {w.add, "1"}} {
						if _, err := d.Subscriptions.Create(ctx, pr, subscriptions.CreateInput{TenantID: t.ID, PlanID: pl.id, Quantity: pl.q,
							StartDate: p.FirstDay()}); err != nil {
							errc <- err
							return
						}
					}
					ts := p.Start().AddDate(0, 0, 1+i%18).Format(time.RFC3339)
					for k, q := range []string{fmt.Sprint(1000 + 37*i%50000), fmt.Sprintf("%d.%02d", 40+i%1500, i%100), fmt.Sprint(1 + i%300)} {
						recs = append(recs, map[string]any{"id": fmt.Sprintf("seed-%d-%d", i, k), "tenantId": t.ID, "sku": w.skus[k],
							"quantity": q, "timestamp": ts})
					}
				}
				body, _ := json.Marshal(map[string]any{"records": recs})
				items, err := usage.DecodeBatch(body)
				if err != nil {
					errc <- err
					return
				}
				rep := d.Usage.Ingest(ctx, usage.Options{Source: usage.SourceAPI, Name: "bench-seed"}, items)
				if rep.Accepted != len(recs) {
					errc <- fmt.Errorf("usage: %d of %d accepted: %+v", rep.Accepted, len(recs), rep.Outcomes[0])
					return
				}
				n := done.Add(int64(min(first+perBatch, o.tenants) - first))
				seedBar(int(n), o.tenants, time.Since(start))
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

func seedBar(done, total int, el time.Duration) {
	const width = 40
	fill := min(done*width/max(total, 1), width)
	fmt.Printf("\r  seeding [%s%s] %6d/%d tenants %5.0f tenants/s   ", strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		done, total, float64(done)/max(el.Seconds(), 0.001))
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "?"
}
