// Command demo is `make demo` (SPEC 16): one month of a small channel billed end to end on the
// local stack, then a readable report.
//
// It starts its own emulators (DynamoDB Local and moto, or AWS_ENDPOINT_URL / CMS_USE_AWS like
// `make local`) with a table, event bus, queues and buckets of its own; through local/platform,
// as `make local` does, publishes the outbox from the table's stream, feeds the usage queue,
// stream and file drops to the usage functions' handlers and the billing queue to the billing
// worker; and serves the API through the same runner as `make local`, on a free port. Then, over HTTP as the
// platform admin, it builds a channel (a distributor, two partners, four tenants, two plans on
// two SKUs, subscriptions), pushes usage through the API, the SQS queue and an S3 file drop,
// bills the last closed month, waits for the run, the commission run and the exports, and
// prints the invoices, the commissions and the check platform revenue + commissions = invoice
// totals. Everything it started stops when it ends (or on Ctrl-C).
//
// Past-dated data: prices and markups may only take effect from the current period on (they may
// already be invoiced otherwise), so the demo's services read an injectable clock
// (app.Deps.SetClock, as the billing tests do): it is moved to the first day of the billed month
// while the catalog and the channel's markups are created, and back to the real time for
// everything else (subscriptions may start in the past; usage of a closed, not yet invoiced
// month is accepted; the month has ended, so it can be billed).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/channelbilling/cms/local/emulator"
	"github.com/channelbilling/cms/local/feeders"
	"github.com/channelbilling/cms/local/platform"
	"github.com/channelbilling/cms/local/runner"
	"github.com/channelbilling/cms/local/streams"
	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/tablestore"
	"github.com/channelbilling/cms/shared/usagelambda"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	fmt.Printf("» done in %s; everything the demo started is stopped\n", time.Since(start).Round(100*time.Millisecond))
}

func step(format string, args ...any) { fmt.Printf("» "+format+"\n", args...) }

// stack is what the demo started; close stops it all, newest first.
type stack struct{ stops []func() }

func (s *stack) add(f func()) { s.stops = append(s.stops, f) }

func (s *stack) close() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
}

// env is the running platform: its dependencies, the API's address and the channels' resources.
type env struct {
	deps   *app.Deps
	clock  *platform.Clock
	api    *api
	usage  feeders.Resources
	cli    feeders.Clients
	s3     *s3.Client
	bucket string // exports
}

func run(ctx context.Context) error {
	var st stack
	defer st.close()
	e, err := startPlatform(ctx, &st)
	if err != nil {
		return err
	}
	p := period.Of(time.Now().UTC()).Prev()
	ch, err := buildChannel(e, p)
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	if err := pushUsage(ctx, e, ch, p); err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	runID, err := bill(ctx, e, p)
	if err != nil {
		return fmt.Errorf("billing: %w", err)
	}
	return report(e, ch, p, runID)
}

// startPlatform does what `make local` does, with names of its own and a clock.
func startPlatform(ctx context.Context, st *stack) (*env, error) {
	step("starting the AWS emulators (the first use installs them)")
	t0 := time.Now()
	emu, err := emulator.Start(ctx, emulator.Options{Log: io.Discard})
	if err != nil {
		return nil, fmt.Errorf("emulators: %w", err)
	}
	st.add(func() { emu.Close() })
	awsCfg, err := emu.AWSConfig(ctx)
	if err != nil {
		return nil, err
	}
	step("emulators up in %s (DynamoDB %s, others %s)", time.Since(t0).Round(100*time.Millisecond), emu.DynamoDBEndpoint, emu.AWSEndpoint)
	cfg, err := app.FromEnv()
	if err != nil {
		return nil, err
	}
	sfx := strings.ToLower(ids.New("d")[2:12])
	cfg.Table = "cms-demo-" + sfx
	cfg.EventBus = "cms-demo-" + sfx
	cfg.BillingQueue, cfg.ExportsBucket = "cms-demo-billing-"+sfx, "cms-demo-exports-"+sfx
	cfg.UsageQueue, cfg.UsageDLQ, cfg.UsageBucket, cfg.UsageStream = "cms-demo-usage-"+sfx, "cms-demo-usage-dlq-"+sfx, "cms-demo-usage-"+sfx, "cms-demo-usage-"+sfx
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("CMS_DEMO_LOG") != "" {
		quiet = app.NewLogger(cfg.LogLevel)
	}
	st1 := tablestore.NewFromConfig(awsCfg, cfg.Table, emu.DynamoDBOptions())
	if err := tablestore.CreateTable(ctx, st1.DB(), cfg.Table); err != nil {
		return nil, err
	}
	deps, err := app.New(ctx, cfg, awsCfg, quiet, emu.DynamoDBOptions())
	if err != nil {
		return nil, err
	}
	e := &env{deps: deps, clock: &platform.Clock{}, s3: s3.NewFromConfig(awsCfg, app.S3Options(awsCfg)), bucket: cfg.ExportsBucket}
	deps.SetClock(e.clock.Now)
	step("table %s created", cfg.Table)

	// The same plumbing as `make local` (local/platform), on the demo's own fresh table, bus,
	// queues and buckets: the outbox from the stream's start, the usage channels, the billing
	// queue fed to the worker (no monthly schedule: the demo starts its run).
	stopOutbox, err := platform.StartOutbox(ctx, emu, awsCfg, cfg, deps, streams.TrimHorizon)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	st.add(stopOutbox)
	u, err := platform.StartUsage(ctx, emu, awsCfg, cfg, deps, 30*time.Second)
	if err != nil {
		return nil, err
	}
	st.add(u.Stop)
	e.cli, e.usage = u.Clients, u.Resources
	stopBilling, err := platform.StartBilling(ctx, awsCfg, cfg, deps, 4, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("billing: %w", err)
	}
	st.add(stopBilling)
	step("event bus, usage queue/stream/bucket and billing queue ready, fed to their functions' handlers")

	const email, password = "demo-admin@example.com", "demo-admin-password"
	if _, err := deps.Bootstrap(ctx, email, password); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	rn, err := runner.New(deps)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: rn, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	st.add(func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(c)
	})
	e.api = &api{base: "http://" + ln.Addr().String()}
	var s struct {
		Token string `json:"token"`
	}
	if err := e.api.call("POST", "/api/v1/auth/login", map[string]string{"email": email, "password": password}, 200, &s); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	e.api.token = s.Token
	step("API at %s, signed in as the platform admin %s", e.api.base, email)
	return e, nil
}

// api is an HTTP client of the platform's API.
type api struct {
	base, token string
}

// call sends a JSON request and decodes the envelope's data into out; a status other than want
// is an error with the envelope's errors.
func (a *api) call(method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, res.StatusCode, want, raw)
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if out != nil {
		return json.Unmarshal(env.Data, out)
	}
	return nil
}

// channel is what the demo built: ids and names.
type channel struct {
	distributor string
	partners    []string // ids
	tenants     []string // ids, in creation order
	names       map[string]string
	storage     string // SKU codes
	calls       string
	// want is the usage pushed per tenant and SKU code.
	want map[string]map[string]money.Decimal
}

type idOut struct {
	ID string `json:"id"`
}

// buildChannel creates the channel over the API: the catalog and the markups effective from the
// billed month's first day (with the clock in that month), then tenants and subscriptions.
func buildChannel(e *env, p period.Period) (*channel, error) {
	a := e.api
	first := p.FirstDay()
	e.clock.Set(p.Start().Add(time.Hour))
	defer e.clock.Set(time.Time{})
	ch := &channel{names: map[string]string{}, want: map[string]map[string]money.Decimal{}}
	sfx := strings.ToLower(ids.New("x")[2:8])
	ch.storage, ch.calls = "storage-gb-"+sfx, "api-calls-"+sfx
	var storage, calls, d idOut
	if err := a.call("POST", "/api/v1/pricing", map[string]any{"code": ch.storage, "name": "Storage", "unit": "GB", "model": "graduated",
		"includedQuantity": 50, "effectiveFrom": first, "tiers": []map[string]any{{"upTo": 100, "unitPrice": "0.10"},
			{"upTo": 1000, "unitPrice": "0.08"}, {"upTo": nil, "unitPrice": "0.05"}}}, 201, &storage); err != nil {
		return nil, err
	}
	if err := a.call("POST", "/api/v1/pricing", map[string]any{"code": ch.calls, "name": "API calls", "unit": "call", "model": "per_unit",
		"unitPrice": "0.0004", "effectiveFrom": first}, 201, &calls); err != nil {
		return nil, err
	}
	plans := map[string]string{}
	for _, pl := range []struct {
		code, price string
		skus        []string
	}{{"starter-" + sfx, "12.00", []string{storage.ID}}, {"pro-" + sfx, "30.00", []string{storage.ID, calls.ID}}} {
		var charges []map[string]any
		for _, k := range pl.skus {
			charges = append(charges, map[string]any{"skuId": k})
		}
		var out idOut
		if err := a.call("POST", "/api/v1/plans", map[string]any{"code": pl.code, "name": strings.Split(pl.code, "-")[0], "basePrice": pl.price,
			"charges": charges}, 201, &out); err != nil {
			return nil, err
		}
		if err := a.call("POST", "/api/v1/plans/"+out.ID+"/publish", nil, 200, nil); err != nil {
			return nil, err
		}
		plans[strings.Split(pl.code, "-")[0]] = out.ID
	}
	step("catalog: SKUs %s (graduated, 50 GB included) and %s (0.0004 per call); plans starter 12.00/seat and pro 30.00/seat, effective %s",
		ch.storage, ch.calls, first)

	if err := a.call("POST", "/api/v1/distributors", map[string]any{"name": "Northwind Distribution",
		"markups": []map[string]any{{"markup": "10", "startDate": first}}}, 201, &d); err != nil {
		return nil, err
	}
	ch.distributor, ch.names[d.ID] = d.ID, "Northwind Distribution (distributor, +10%)"
	for _, pt := range []struct{ name, billing, markup string }{{"Acme Cloud", "ACME-" + sfx, "20"}, {"Globex IT", "GLOBEX-" + sfx, "15"}} {
		var out idOut
		if err := a.call("POST", "/api/v1/partners", map[string]any{"name": pt.name, "billingId": pt.billing,
			"parent": map[string]string{"type": "distributor", "id": d.ID}, "markups": []map[string]any{{"markup": pt.markup, "startDate": first}}},
			201, &out); err != nil {
			return nil, err
		}
		ch.partners = append(ch.partners, out.ID)
		ch.names[out.ID] = fmt.Sprintf("%s (partner, +%s%%)", pt.name, pt.markup)
	}
	step("channel: Northwind Distribution (+10%%) with partners Acme Cloud (+20%%) and Globex IT (+15%%), markups from %s", first)

	e.clock.Set(time.Time{})
	mid := p.Start().AddDate(0, 0, 10).Format(time.RFC3339) // the 11th: a prorated month
	for _, tn := range []struct {
		name    string
		partner int
		plan    string
		seats   int
		start   string
	}{
		{"Contoso Ltd", 0, "pro", 10, p.Start().Format(time.RFC3339)},
		{"Fabrikam GmbH", 0, "starter", 4, mid},
		{"Initech SA", 1, "pro", 6, p.Start().Format(time.RFC3339)},
		{"Umbrella BV", 1, "starter", 2, p.Start().Format(time.RFC3339)},
	} {
		var out idOut
		if err := a.call("POST", "/api/v1/tenants", map[string]any{"name": tn.name,
			"parent": map[string]string{"type": "partner", "id": ch.partners[tn.partner]}}, 201, &out); err != nil {
			return nil, err
		}
		if err := a.call("POST", "/api/v1/subscriptions", map[string]any{"tenantId": out.ID, "planId": plans[tn.plan], "quantity": tn.seats,
			"startDate": tn.start}, 201, nil); err != nil {
			return nil, err
		}
		ch.tenants = append(ch.tenants, out.ID)
		ch.names[out.ID] = tn.name
		step("tenant %-14s under %-10s: %s x %d seats from %s", tn.name, short(ch.names[ch.partners[tn.partner]]), tn.plan, tn.seats, tn.start[:10])
	}
	return ch, nil
}

// record is one usage record as every channel takes it.
type record struct {
	ID        string `json:"id"`
	TenantID  string `json:"tenantId"`
	SKU       string `json:"sku"`
	Quantity  string `json:"quantity"`
	Timestamp string `json:"timestamp"`
}

// pushUsage sends the month's usage through three channels (the API, the SQS queue, an S3 file
// drop) and waits until the platform has counted all of it.
func pushUsage(ctx context.Context, e *env, ch *channel, p period.Period) error {
	at := func(day, hour int) string {
		return p.Start().AddDate(0, 0, day-1).Add(time.Duration(hour) * time.Hour).Format(time.RFC3339)
	}
	n := 0
	rec := func(tenant int, sku, q string, day int) record {
		n++
		d, _ := money.Parse(q)
		t := ch.tenants[tenant]
		if ch.want[t] == nil {
			ch.want[t] = map[string]money.Decimal{}
		}
		cur, ok := ch.want[t][sku]
		if !ok {
			cur = money.Zero
		}
		ch.want[t][sku] = cur.Add(d)
		return record{ID: fmt.Sprintf("demo-%d-%s", n, ids.New("u")[2:10]), TenantID: t, SKU: sku, Quantity: q, Timestamp: at(day, 9+n%8)}
	}
	// 1. The API.
	apiRecs := []record{rec(0, ch.storage, "700", 5), rec(0, ch.calls, "120000", 12), rec(1, ch.storage, "80", 15), rec(2, ch.storage, "1500", 3)}
	var res struct {
		Accepted int `json:"accepted"`
	}
	if err := e.api.call("POST", "/api/v1/usage", map[string]any{"records": apiRecs}, 202, &res); err != nil {
		return err
	}
	step("usage via the API (POST /api/v1/usage): %d records, %d accepted", len(apiRecs), res.Accepted)
	// 2. The SQS queue: one message {"records": [...]}, as a producer would send.
	sqsRecs := []record{rec(0, ch.storage, "550", 20), rec(0, ch.calls, "30000", 21), rec(2, ch.calls, "45250", 9), rec(3, ch.storage, "20", 25)}
	body, _ := json.Marshal(map[string]any{"records": sqsRecs})
	if _, err := e.cli.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(e.usage.QueueURL), MessageBody: aws.String(string(body))}); err != nil {
		return fmt.Errorf("send to the usage queue: %w", err)
	}
	step("usage via the SQS queue: 1 message of %d records", len(sqsRecs))
	// 3. An S3 file drop (CSV), under usage/.
	fileRecs := []record{rec(1, ch.storage, "45.5", 27), rec(2, ch.storage, "250", 28), rec(3, ch.storage, "64.25", 28)}
	var csv strings.Builder
	csv.WriteString("id,tenantId,sku,quantity,timestamp\n")
	for _, r := range fileRecs {
		fmt.Fprintf(&csv, "%s,%s,%s,%s,%s\n", r.ID, r.TenantID, r.SKU, r.Quantity, r.Timestamp)
	}
	key := fmt.Sprintf("%s%04d/%02d/demo-%s.csv", usagelambda.UsagePrefix, p.Year, p.Month, ids.New("f")[2:10])
	if _, err := e.cli.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(e.usage.Bucket), Key: aws.String(key),
		Body: strings.NewReader(csv.String()), ContentType: aws.String("text/csv")}); err != nil {
		return fmt.Errorf("file drop: %w", err)
	}
	step("usage via an S3 file drop: s3://%s/%s, %d records", e.usage.Bucket, key, len(fileRecs))
	step("usage via the Kinesis stream: not used by the demo (the stream is fed like the others; `make local` serves it)")

	// Wait until every total is what was sent.
	deadline := time.Now().Add(45 * time.Second)
	for {
		var ans struct {
			Items []struct {
				TenantID string `json:"tenantId"`
				SKU      string `json:"sku"`
				Quantity string `json:"quantity"`
			} `json:"items"`
		}
		if err := e.api.call("GET", "/api/v1/usage?period="+p.String()+"&page_size=100", nil, 200, &ans); err != nil {
			return err
		}
		got := map[string]string{}
		for _, it := range ans.Items {
			got[it.TenantID+"/"+it.SKU] = it.Quantity
		}
		missing := 0
		for t, m := range ch.want {
			for sku, q := range m {
				g, err := money.Parse(got[t+"/"+sku])
				if err != nil || !g.Equal(q) {
					missing++
				}
			}
		}
		if missing == 0 {
			step("usage counted: %d aggregates match the %d records sent through 3 channels", len(ans.Items), n)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d usage totals still differ from what was sent: %v", missing, got)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

type runOut struct {
	ID              string `json:"id"`
	Status          string `json:"status"`
	TenantsTotal    int    `json:"tenantsTotal"`
	TenantsDone     int    `json:"tenantsDone"`
	TenantsFailed   int    `json:"tenantsFailed"`
	InvoicesCreated int    `json:"invoicesCreated"`
	Failures        []struct {
		TenantID, Code, Reason string
	} `json:"failures"`
}

// bill starts the run of p over the API and waits for it, then for the commission run and the
// exports (the exports are written last).
func bill(ctx context.Context, e *env, p period.Period) (string, error) {
	var r runOut
	if err := e.api.call("POST", "/api/v1/billing/runs", map[string]any{"period": p.String()}, 202, &r); err != nil {
		return "", err
	}
	step("billing run %s of %s started (POST /api/v1/billing/runs)", r.ID, p)
	deadline := time.Now().Add(60 * time.Second)
	last := -1
	for r.Status == "running" || r.Status == "" {
		if err := e.api.call("GET", "/api/v1/billing/runs/"+r.ID, nil, 200, &r); err != nil {
			return "", err
		}
		if r.TenantsDone != last {
			step("  run %s: %s, %d/%d tenants done, %d invoices", r.ID, r.Status, r.TenantsDone, r.TenantsTotal, r.InvoicesCreated)
			last = r.TenantsDone
		}
		if time.Now().After(deadline) {
			return "", errors.New("the run did not finish within a minute")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r.Status != "completed" {
		return "", fmt.Errorf("run %s ended %s: %+v", r.ID, r.Status, r.Failures)
	}
	key := "exports/" + p.String() + "/commissions.json"
	for {
		_, err := e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return "", errors.New("the commission run and exports did not finish within a minute")
		}
		time.Sleep(200 * time.Millisecond)
	}
	step("commission run done, finance exports written to s3://%s/exports/%s/", e.bucket, p)
	return r.ID, nil
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
	Total    moneyOut `json:"total"`
	Lines    []struct {
		Kind        string   `json:"kind"`
		Description string   `json:"description"`
		Quantity    string   `json:"quantity"`
		Amount      moneyOut `json:"amount"`
		Tiers       []struct {
			Quantity  string   `json:"quantity"`
			UnitPrice string   `json:"unitPrice"`
			Amount    moneyOut `json:"amount"`
		} `json:"tiers"`
	} `json:"lines"`
}

type commissionOut struct {
	Revenue    moneyOut `json:"revenue"`
	Cost       moneyOut `json:"cost"`
	Commission moneyOut `json:"commission"`
	Tenants    []struct {
		TenantID   string   `json:"tenantId"`
		Commission moneyOut `json:"commission"`
	} `json:"tenants"`
}

func dec(s string) money.Decimal {
	d, err := money.Parse(s)
	if err != nil {
		return money.Zero
	}
	return d
}

// report prints the invoices with their lines, the commissions per entity, the platform's
// revenue and the SPEC 12 check, all read back over the API.
func report(e *env, ch *channel, p period.Period, runID string) error {
	a := e.api
	var refs []invoiceOut
	if err := a.call("GET", "/api/v1/invoices?period="+p.String()+"&page_size=100", nil, 200, &refs); err != nil {
		return err
	}
	byTenant := map[string]invoiceOut{}
	for _, r := range refs {
		var inv invoiceOut
		if err := a.call("GET", "/api/v1/invoices/"+r.ID, nil, 200, &inv); err != nil {
			return err
		}
		byTenant[inv.TenantID] = inv
	}
	fmt.Printf("\n══ Invoices of %s (run %s) ══\n", p, runID)
	invoiced := money.Zero
	cur := ""
	for _, t := range ch.tenants {
		inv, ok := byTenant[t]
		if !ok {
			return fmt.Errorf("tenant %s has no invoice", ch.names[t])
		}
		cur = inv.Total.Currency
		fmt.Printf("\n%s — invoice %s, issued by %s\n", ch.names[t], inv.Number, short(ch.names[inv.IssuerID]))
		for _, l := range inv.Lines {
			fmt.Printf("  %-8s %-44s %12s %12s %s\n", l.Kind, trim(l.Description, 44), l.Quantity, l.Amount.Amount, l.Amount.Currency)
			for _, tr := range l.Tiers {
				fmt.Printf("  %8s   tier: %s x %s = %s\n", "", tr.Quantity, tr.UnitPrice, tr.Amount.Amount)
			}
		}
		fmt.Printf("  %-8s %-44s %12s %12s %s\n", "TOTAL", "", "", inv.Total.Amount, inv.Total.Currency)
		invoiced = invoiced.Add(dec(inv.Total.Amount))
	}
	fmt.Printf("\n══ Commissions of %s ══\n", p)
	fmt.Printf("  %-40s %12s %12s %12s\n", "entity", "revenue", "cost", "commission")
	commissions := money.Zero
	platform := money.Zero
	entities := append([]string{ch.distributor}, ch.partners...)
	for _, id := range entities {
		var c commissionOut
		if err := a.call("GET", "/api/v1/commissions/summary?entityId="+id+"&start_date="+p.String(), nil, 200, &c); err != nil {
			return err
		}
		fmt.Printf("  %-40s %12s %12s %12s %s\n", ch.names[id], c.Revenue.Amount, c.Cost.Amount, c.Commission.Amount, c.Commission.Currency)
		sort.Slice(c.Tenants, func(i, j int) bool { return ch.names[c.Tenants[i].TenantID] < ch.names[c.Tenants[j].TenantID] })
		for _, tc := range c.Tenants {
			fmt.Printf("    %-38s %38s\n", "· "+ch.names[tc.TenantID], tc.Commission.Amount)
		}
		commissions = commissions.Add(dec(c.Commission.Amount))
		if id == ch.distributor {
			// The distributor is the only entity under the platform: what it pays the platform
			// is the platform's revenue.
			platform = dec(c.Cost.Amount)
		}
	}
	sum := platform.Add(commissions)
	fmt.Printf("\n══ Check (SPEC 12) ══\n")
	fmt.Printf("  %-58s %12s %s\n", "platform revenue (what the distributor pays the platform)", platform, cur)
	fmt.Printf("  %-58s %12s %s\n", "+ commissions of the distributor and the partners", commissions, cur)
	fmt.Printf("  %-58s %12s %s\n", "=", sum, cur)
	fmt.Printf("  %-58s %12s %s\n", "invoice totals", invoiced, cur)
	if !sum.Equal(invoiced) {
		return fmt.Errorf("the invariant does not hold: %s + %s != %s", platform, commissions, invoiced)
	}
	fmt.Printf("  ✓ platform revenue + commissions = invoice totals, to the cent\n\n")
	return nil
}

// short returns a display name without its parenthesised role.
func short(name string) string { return strings.SplitN(name, " (", 2)[0] }

// trim cuts s to n characters with an ellipsis.
func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
