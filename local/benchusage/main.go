// Command benchusage is the usage load test (`make bench-usage`): it pushes at least a million
// usage records end to end through the SQS channel into DynamoDB Local, the way production does
// (messages of {"records": [...]} on the usage queue, received by the local event source,
// handed to the usage queue function's handler, counted exactly once in the table), with a
// progress bar, then prints records per second, DynamoDB write units per record, what a
// redelivered batch costs, and checks that every total is exact.
//
// It starts its own emulators (or uses AWS_ENDPOINT_URL) and its own table, queues and channel
// (a partner, -subs tenants with one subscription each). It is not part of `make test`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/local/emulator"
	"github.com/channelbilling/cms/local/feeders"
	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/subscriptions"
	"github.com/channelbilling/cms/shared/tablestore"
	"github.com/channelbilling/cms/shared/usage"
	"github.com/channelbilling/cms/shared/usagelambda"
)

type options struct {
	records, subs, perMessage, consumers, senders int
	cpuProfile                                    string
}

func main() {
	var o options
	flag.IntVar(&o.records, "records", 1_000_000, "records to push (at least 1,000,000 for the published figure)")
	flag.IntVar(&o.subs, "subs", 50, "tenants, one subscription each; records go round robin")
	flag.IntVar(&o.perMessage, "per-message", 500, "records per SQS message ({\"records\": [...]})")
	flag.IntVar(&o.consumers, "consumers", 2, "concurrent queue pollers (Lambda's concurrency)")
	flag.IntVar(&o.senders, "senders", 2, "concurrent producers")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the producers, pollers and handlers) to this file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-usage:", err)
		os.Exit(1)
	}
}

// keys is the table's key schema (tablestore's), for a table without a stream: a million
// stream records would only fill DynamoDB Local's memory.
type keys struct {
	PK     string `dynamo:"PK,hash"`
	SK     string `dynamo:"SK,range"`
	GSI1PK string `dynamo:"GSI1PK" index:"GSI1,hash"`
	GSI1SK string `dynamo:"GSI1SK" index:"GSI1,range"`
}

// counting wraps the rating path to count outcomes for the progress bar.
type counting struct {
	usagelambda.Ingester
	accepted, duplicates, rejected, retry atomic.Int64
}

func (c *counting) Ingest(ctx context.Context, opts usage.Options, items []usage.Item) *usage.Report {
	r := c.Ingester.Ingest(ctx, opts, items)
	c.accepted.Add(int64(r.Accepted))
	c.duplicates.Add(int64(r.Duplicates))
	c.rejected.Add(int64(r.Rejected))
	c.retry.Add(int64(r.Retry))
	return r
}

// world is the channel the records go to.
type world struct {
	tenants []string
	subs    []string
	sku     string
}

func seed(ctx context.Context, d *app.Deps, n int) (*world, error) {
	const email, password = "bench@example.com", "bench-admin-password-1"
	if _, err := d.Bootstrap(ctx, email, password); err != nil {
		return nil, err
	}
	u, err := d.Store.GetUserByEmail(ctx, email)
	if err != nil {
		return nil, err
	}
	p := u.Principal()
	prt, err := d.Hierarchy.Create(ctx, p, access.Partner, hierarchy.CreateInput{Name: "Bench Reseller",
		Parent: &hierarchy.ParentInput{Type: access.Platform, ID: access.PlatformID}, Tier: "standard"})
	if err != nil {
		return nil, err
	}
	w := &world{sku: "bench-gb-" + ids.New("k")[2:12]}
	k, err := d.Catalog.CreateSKU(ctx, p, catalog.SKUInput{Code: w.sku, Name: "Bench storage", Unit: "GB",
		Thresholds: []money.Text{"1000", "100000"}, RateInput: catalog.RateInput{Model: "per_unit", UnitPrice: "0.10"}})
	if err != nil {
		return nil, err
	}
	pl, err := d.Catalog.CreatePlan(ctx, p, catalog.PlanInput{Code: "bench-" + ids.New("p")[2:12], Name: "Bench", BasePrice: "10",
		Charges: []catalog.ChargeInput{{SKUID: k.ID}}})
	if err != nil {
		return nil, err
	}
	if _, err := d.Catalog.PublishPlan(ctx, p, pl.ID); err != nil {
		return nil, err
	}
	start := period.Of(time.Now()).FirstDay()
	for i := range n {
		t, err := d.Hierarchy.Create(ctx, p, access.Tenant, hierarchy.CreateInput{Name: fmt.Sprintf("Bench tenant %d", i),
			Parent: &hierarchy.ParentInput{Type: access.Partner, ID: prt.ID}})
		if err != nil {
			return nil, err
		}
		s, err := d.Subscriptions.Create(ctx, p, subscriptions.CreateInput{TenantID: t.ID, PlanID: pl.ID, Quantity: "1", StartDate: start})
		if err != nil {
			return nil, err
		}
		w.tenants, w.subs = append(w.tenants, t.ID), append(w.subs, s.ID)
	}
	return w, nil
}

// body returns message m: records [m*per, (m+1)*per) and adds their quantities to want.
func body(w *world, m, per, total int, at time.Time, run string) (string, []money.Decimal) {
	var b strings.Builder
	add := make([]money.Decimal, len(w.subs))
	b.WriteString(`{"records":[`)
	for i := m * per; i < min(total, (m+1)*per); i++ {
		if i > m*per {
			b.WriteByte(',')
		}
		k := i % len(w.subs)
		q := money.New(int64(1+i%997), 2) // 0.01 .. 9.97
		add[k] = add[k].Add(q)
		fmt.Fprintf(&b, `{"id":"%s-%d","tenantId":"%s","sku":"%s","quantity":"%s","timestamp":"%s","region":"eu-west-1"}`,
			run, i, w.tenants[k], w.sku, q, at.Add(time.Duration(i%3600)*time.Second).Format(time.RFC3339))
	}
	b.WriteString(`]}`)
	return b.String(), add
}

func run(ctx context.Context, o options) error {
	if o.records < 1 || o.subs < 1 || o.perMessage < 1 || o.perMessage*180 > 256<<10 {
		return errors.New("bad flags: records, subs >= 1; per-message between 1 and about 1400 (256 KB messages)")
	}
	fmt.Println("» starting the emulators")
	stack, err := emulator.Start(ctx, emulator.Options{})
	if err != nil {
		return err
	}
	defer stack.Close()
	awsCfg, err := stack.AWSConfig(ctx)
	if err != nil {
		return err
	}
	cfg := app.Defaults()
	suffix := ids.New("b")[2:]
	cfg.Table = "cms-bench-" + suffix
	cfg.UsageQueue, cfg.UsageDLQ, cfg.UsageBucket, cfg.UsageStream = "cms-bench-"+suffix, "cms-bench-dlq-"+suffix, "cms-bench-"+suffix, "cms-bench-"+suffix
	db := dynamo.New(awsCfg, stack.DynamoDBOptions())
	if err := db.CreateTable(cfg.Table, keys{}).OnDemand(true).Project(tablestore.GSI1, dynamo.AllProjection).Wait(ctx); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := app.New(ctx, cfg, awsCfg, quiet, stack.DynamoDBOptions())
	if err != nil {
		return err
	}
	fmt.Printf("» seeding %d tenants with one subscription each\n", o.subs)
	w, err := seed(ctx, d, o.subs)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	clients := feeders.NewClients(awsCfg)
	res, err := feeders.EnsureUsage(ctx, clients, cfg, 120*time.Second)
	if err != nil {
		return err
	}
	consumers, err := app.NewUsageConsumers(ctx, cfg, awsCfg, quiet, stack.DynamoDBOptions())
	if err != nil {
		return err
	}
	store := consumers.Deps.UsageStore
	count := &counting{Ingester: consumers.Deps.Usage}
	handler := &usagelambda.Queue{Usage: count, DeadLetters: consumers.DeadLetters, Log: quiet}

	messages := (o.records + o.perMessage - 1) / o.perMessage
	want := make([]money.Decimal, len(w.subs))
	var wantMu sync.Mutex
	at := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	if period.Of(at) != period.Of(time.Now()) {
		at = period.Of(time.Now()).Start()
	}
	runID := "bench-" + suffix[:8]
	fmt.Printf("» pushing %d records (%d messages of %d) through the SQS channel, %d consumers; CPUs %d\n",
		o.records, messages, o.perMessage, o.consumers, runtime.NumCPU())
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	var sent atomic.Int64
	sendErr := make(chan error, o.senders)
	next := atomic.Int64{}
	// The producers keep at most backlog messages ahead of the consumers: a queue of thousands of
	// 85 KB messages makes moto (which scans its queue on every receive) the bottleneck, which SQS
	// is not.
	backlog := int64(20 * o.consumers)
	var handled atomic.Int64
	for range o.senders {
		go func() {
			for {
				for sent.Load()-handled.Load() > backlog && ctx.Err() == nil {
					time.Sleep(20 * time.Millisecond)
				}
				first := int(next.Add(10)) - 10
				if first >= messages || ctx.Err() != nil {
					sendErr <- nil
					return
				}
				in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(res.QueueURL)}
				for m := first; m < min(messages, first+10); m++ {
					b, add := body(w, m, o.perMessage, o.records, at, runID)
					wantMu.Lock()
					for k := range want {
						want[k] = want[k].Add(add[k])
					}
					wantMu.Unlock()
					in.Entries = append(in.Entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(m)), MessageBody: aws.String(b)})
				}
				out, err := clients.SQS.SendMessageBatch(ctx, in)
				if err == nil && len(out.Failed) > 0 {
					err = fmt.Errorf("%d messages refused: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
				}
				if err != nil {
					sendErr <- err
					return
				}
				sent.Add(int64(len(in.Entries)))
			}
		}()
	}
	feeder := feeders.NewSQS(clients.SQS, res.QueueURL, res.QueueARN, handler.Handle, feeders.SQSOptions{Concurrency: o.consumers,
		VisibilityTimeout: 120 * time.Second, Region: awsCfg.Region, Log: quiet,
		OnBatch: func(received, deleted int) { handled.Add(int64(deleted)) }})
	stopFeed := feeder.Start(ctx)
	total := int64(o.records)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	senders := o.senders
	for done := false; !done; {
		select {
		case <-ctx.Done():
			stopFeed()
			return ctx.Err()
		case err := <-sendErr:
			if err != nil {
				stopFeed()
				return fmt.Errorf("send: %w", err)
			}
			senders--
		case <-tick.C:
		}
		n := count.accepted.Load() + count.duplicates.Load() + count.rejected.Load()
		progress(n, total, time.Since(start), store.Capacity(), count.accepted.Load())
		done = n >= total && senders == 0
	}
	stopFeed()
	elapsed := time.Since(start)
	fmt.Println()
	c := store.Capacity()
	acc := count.accepted.Load()
	fmt.Printf("» %d records in %s: %.0f records/s end to end (%d accepted, %d duplicates, %d rejected, %d retried)\n",
		total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), acc, count.duplicates.Load(), count.rejected.Load(), count.retry.Load())
	fmt.Printf("» DynamoDB: %.0f write units (%d writes, %d transactions, %d refused by their condition): %.4f write units per accepted record; %.0f read units (%.4f per record)\n",
		c.WriteUnits, c.Writes, c.Transactions, c.FailedConditions, c.WriteUnits/float64(acc), c.ReadUnits, c.ReadUnits/float64(acc))

	// What a redelivered batch costs: ten messages (SQS's batch) received again, as Lambda would
	// deliver them after a lost delete (receive count 2: the store reads the claims first), and
	// the same records arriving again as new messages (another channel, a producer's retry).
	for _, rc := range []int{2, 1} {
		store.ResetCapacity()
		ev := events.SQSEvent{}
		for m := range min(10, messages) {
			b, _ := body(w, m, o.perMessage, o.records, at, runID)
			ev.Records = append(ev.Records, events.SQSMessage{MessageId: ids.New("m"), Body: b, EventSourceARN: res.QueueARN,
				Attributes: map[string]string{"ApproximateReceiveCount": strconv.Itoa(rc)}})
		}
		before := count.duplicates.Load()
		t0 := time.Now()
		if _, err := handler.Handle(ctx, ev); err != nil {
			return err
		}
		dups := count.duplicates.Load() - before
		c := store.Capacity()
		what := "redelivered (receive count 2: claims read first)"
		if rc == 1 {
			what = "sent again as new messages (conditional puts refused)"
		}
		fmt.Printf("» %d records %s: %d duplicates, %.0f write units (%.3f per record), %.0f read units (%.3f per record), %s\n",
			dups, what, dups, c.WriteUnits, c.WriteUnits/float64(max(dups, 1)), c.ReadUnits, c.ReadUnits/float64(max(dups, 1)), time.Since(t0).Round(time.Millisecond))
	}

	// Every total exact.
	keysOf := make([]usage.AggregateKey, len(w.subs))
	for i, s := range w.subs {
		keysOf[i] = usage.AggregateKey{SubscriptionID: s, SKU: w.sku, Period: period.Of(at)}
	}
	got, err := store.Totals(ctx, keysOf)
	if err != nil {
		return err
	}
	bad := 0
	var sum money.Decimal
	for i, k := range keysOf {
		sum = sum.Add(got[k].Quantity)
		if !got[k].Quantity.Equal(want[i]) {
			bad++
			fmt.Printf("  ✗ %s: total %s, want %s\n", k.SubscriptionID, got[k].Quantity, want[i])
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d totals are wrong", bad, len(keysOf))
	}
	fmt.Printf("» exact: all %d subscription totals equal the sums of the records sent (grand total %s)\n", len(keysOf), sum)
	return nil
}

func progress(n, total int64, elapsed time.Duration, c tablestore.UsageCapacity, accepted int64) {
	const width = 40
	frac := float64(n) / float64(total)
	fill := int(frac * width)
	rate := float64(n) / max(elapsed.Seconds(), 0.001)
	wcu := 0.0
	if accepted > 0 {
		wcu = c.WriteUnits / float64(accepted)
	}
	eta := "-"
	if rate > 0 && n < total {
		eta = (time.Duration(float64(total-n) / rate * float64(time.Second))).Round(time.Second).String()
	}
	fmt.Printf("\r[%s%s] %5.1f%% %9d/%d records %7.0f rec/s  %.3f WCU/rec  eta %s   ",
		strings.Repeat("#", min(fill, width)), strings.Repeat(".", width-min(fill, width)), 100*frac, n, total, rate, wcu, eta)
}
