package integration_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/local/emulator"
	"github.com/channelbilling/cms/local/feeders"
	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/deadletters"
	"github.com/channelbilling/cms/shared/deadletters/streambatch"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/outbox"
	billingperiod "github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/tablestore"
	"github.com/channelbilling/cms/shared/usage"
	"github.com/channelbilling/cms/shared/usage/usagetest"
	"github.com/channelbilling/cms/shared/usagecatalog"
	"github.com/channelbilling/cms/shared/usagelambda"
)

// The usage channels run in the tests as under `make local`: the queue, the stream and the
// bucket's notifications are fed to the same handlers the usage functions' mains start
// (local/feeders), with a short visibility timeout and grace period so that redeliveries and
// recoveries happen within a test.
var (
	usageAWS      aws.Config
	usageStack    *emulator.Stack
	usageRes      feeders.Resources
	usageClients  feeders.Clients
	usageConsumer *app.UsageConsumers
	streamHandled atomic.Int64 // stream records answered without failure
)

const (
	usageVisibility = 2 * time.Second
	usageGrace      = time.Second
	usageWait       = 60 * time.Second
)

func setupUsage(ctx context.Context, stack *emulator.Stack, awsCfg aws.Config) (func(), error) {
	cfg := deps.Config
	suffix := ids.New("u")[2:]
	cfg.UsageQueue, cfg.UsageDLQ = "cms-it-usage-"+suffix, "cms-it-usage-dlq-"+suffix
	cfg.UsageBucket, cfg.UsageStream = "cms-it-"+suffix, "cms-it-usage-"+suffix
	usageAWS, usageStack = awsCfg, stack
	usageClients = feeders.NewClients(awsCfg)
	var err error
	if usageRes, err = feeders.EnsureUsage(ctx, usageClients, cfg, usageVisibility); err != nil {
		return nil, err
	}
	if usageConsumer, err = app.NewUsageConsumers(ctx, cfg, awsCfg, quiet, stack.DynamoDBOptions()); err != nil {
		return nil, err
	}
	usageConsumer.Deps.UsageStore.Grace = usageGrace
	usageConsumer.Files.Backoff = 50 * time.Millisecond
	deps.UsageStore.Grace = usageGrace
	return feeders.StartUsage(ctx, usageClients, usageRes, usageConsumer, feeders.Options{Log: quiet,
		Queue:  feeders.SQSOptions{VisibilityTimeout: usageVisibility, Concurrency: 2},
		Files:  feeders.SQSOptions{VisibilityTimeout: usageVisibility, Concurrency: 1},
		Stream: feeders.KinesisOptions{PollInterval: 100 * time.Millisecond, OnBatch: func(n, failed int) { streamHandled.Add(int64(n - failed)) }},
	})
}

// usageWorld is a partner (20 % markup, under a distributor with 10 %) with tenants, each with
// one subscription to a plan charging one SKU (0.10 per unit). Its records belong to per, the
// period current when it was made, and its totals are read for that period, so that no test
// depends on the time of day it runs at (records an hour old are last month's on the 1st at
// 00:30; the month may also turn while a test runs).
type usageWorld struct {
	dist, partner entity
	tenants       []entity
	sku           skuOut
	plan          planOut
	subs          []subOut
	per           billingperiod.Period
}

// at returns now+d moved into the world's period: its first second when now+d falls before it,
// its last minute when after (a record of it must not be more than 5 minutes in the future).
func (w *usageWorld) at(d time.Duration) time.Time {
	t := time.Now().UTC().Add(d)
	if start := w.per.Start(); t.Before(start) {
		return start
	}
	if last := w.per.End().Add(-time.Minute); t.After(last) {
		return last
	}
	return t
}

func mkUsageWorld(t *testing.T, tenants int, thresholds ...any) *usageWorld {
	t.Helper()
	a := admin(t)
	w := &usageWorld{per: billingperiod.Of(time.Now())}
	w.dist = create(t, a, "distributors", map[string]any{"name": "UD", "markups": []map[string]any{{"markup": "10", "startDate": "2026-01-01"}}})
	w.partner = create(t, a, "partners", map[string]any{"name": "UP", "parent": parent("distributor", w.dist.ID),
		"markups": []map[string]any{{"markup": "20", "startDate": "2026-01-01"}}})
	body := map[string]any{"code": uniq("gb"), "name": "Storage", "unit": "GB", "model": "per_unit", "unitPrice": "0.10"}
	if len(thresholds) > 0 {
		body["thresholds"] = thresholds
	}
	w.sku = mkSKU(t, a, body)
	w.plan = mkPlan(t, a, uniq("u"), true, w.sku.ID)
	for i := range tenants {
		tn := create(t, a, "tenants", map[string]any{"name": fmt.Sprintf("UT%d", i), "parent": parent("partner", w.partner.ID)})
		var s subOut
		a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": w.plan.ID, "quantity": 1,
			"startDate": monthStart(-1)}, &s)
		w.tenants = append(w.tenants, tn)
		w.subs = append(w.subs, s)
	}
	return w
}

// rec is a usage record as a producer writes it.
type rec struct {
	ID        string `json:"id"`
	TenantID  string `json:"tenantId"`
	SKU       string `json:"sku"`
	Quantity  string `json:"quantity"`
	Timestamp string `json:"timestamp"`
}

// records makes n records over the world's tenants (round robin) with distinct decimal
// quantities, and the expected total per subscription.
func (w *usageWorld) records(prefix string, n int, at time.Time) ([]rec, map[string]money.Decimal) {
	out := make([]rec, n)
	want := map[string]money.Decimal{}
	for i := range out {
		k := i % len(w.tenants)
		q := money.New(int64(100+i*7), 3) // 0.100, 0.107, ...
		out[i] = rec{ID: fmt.Sprintf("%s-%d", prefix, i), TenantID: w.tenants[k].ID, SKU: w.sku.Code, Quantity: q.String(),
			Timestamp: at.Add(time.Duration(i) * time.Second).UTC().Format(time.RFC3339Nano)}
		want[w.subs[k].ID] = want[w.subs[k].ID].Add(q)
	}
	return out, want
}

func addTotals(a, b map[string]money.Decimal) map[string]money.Decimal {
	out := map[string]money.Decimal{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = out[k].Add(v)
	}
	return out
}

type usageLine struct {
	SubscriptionID string `json:"subscriptionId"`
	TenantID       string `json:"tenantId"`
	SKU            string `json:"sku"`
	Quantity       string `json:"quantity"`
	Charge         *struct {
		Amount   string `json:"amount"`
		Currency string `json:"currency"`
	} `json:"charge"`
}

type usageAnswer struct {
	Period string      `json:"period"`
	Items  []usageLine `json:"items"`
}

// totals reads GET /api/v1/usage for the world's tenants.
func (w *usageWorld) totals(t *testing.T, per string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tn := range w.tenants {
		var ans usageAnswer
		q := "/api/v1/usage?tenantId=" + tn.ID
		if per != "" {
			q += "&period=" + per
		}
		admin(t).must(200, "GET", q, nil, &ans)
		for _, l := range ans.Items {
			out[l.SubscriptionID] = l.Quantity
		}
	}
	return out
}

// checkTotals checks that the totals of the world's period are exactly want now.
func (w *usageWorld) checkTotals(t *testing.T, want map[string]money.Decimal) {
	t.Helper()
	got := w.totals(t, w.per.String())
	for sub, q := range want {
		if d, err := money.Parse(got[sub]); err != nil || !d.Equal(q) {
			t.Fatalf("totals %v, want %v", got, want)
		}
	}
}

// waitTotals waits until the totals of the world's period are exactly want, then checks that they stay so (nothing
// is counted twice late).
func (w *usageWorld) waitTotals(t *testing.T, want map[string]money.Decimal) {
	t.Helper()
	deadline := time.Now().Add(usageWait)
	equal := func(got map[string]string) bool {
		for sub, q := range want {
			d, err := money.Parse(got[sub])
			if err != nil || !d.Equal(q) {
				return false
			}
		}
		return true
	}
	var got map[string]string
	for time.Now().Before(deadline) {
		if got = w.totals(t, w.per.String()); equal(got) {
			time.Sleep(2 * usageVisibility) // a late duplicate would show now
			if got = w.totals(t, w.per.String()); !equal(got) {
				t.Fatalf("totals moved after being right: %v, want %v", got, want)
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("totals %v, want %v", got, want)
}

func jsonOf(tb testing.TB, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// postUsage posts records until none is left to retry (a well-behaved client resends the
// records answered "retry" or "in_progress"); it returns the first answer.
func postUsage(t *testing.T, c client, recs []rec) UsageAccepted {
	t.Helper()
	var first UsageAccepted
	for attempt := 0; ; attempt++ {
		var ans UsageAccepted
		c.must(202, "POST", "/api/v1/usage", map[string]any{"records": recs}, &ans)
		if attempt == 0 {
			first = ans
		}
		var again []rec
		for _, r := range ans.Rejected {
			if code := r.Errors[0].Code; code == "retry" || code == "in_progress" {
				again = append(again, recs[r.Index])
			}
		}
		if len(again) == 0 {
			return first
		}
		if attempt == 20 {
			t.Fatalf("%d records still not counted: %+v", len(again), ans.Rejected[0])
		}
		time.Sleep(500 * time.Millisecond)
		recs = again
	}
}

// UsageAccepted is the answer of POST /usage.
type UsageAccepted struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	Rejected   []struct {
		Index  int    `json:"index"`
		ID     string `json:"id"`
		Errors []struct {
			Code    string `json:"code"`
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"errors"`
	} `json:"rejected"`
}

func sendMessages(t *testing.T, bodies ...string) {
	t.Helper()
	for start := 0; start < len(bodies); start += 10 {
		in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(usageRes.QueueURL)}
		for i, b := range bodies[start:min(len(bodies), start+10)] {
			in.Entries = append(in.Entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(b)})
		}
		out, err := usageClients.SQS.SendMessageBatch(t.Context(), in)
		if err != nil || len(out.Failed) > 0 {
			t.Fatalf("send: %v %+v", err, out)
		}
	}
}

func putStream(t *testing.T, datas ...[]byte) {
	t.Helper()
	in := &kinesis.PutRecordsInput{StreamName: aws.String(usageRes.Stream)}
	for i, d := range datas {
		in.Records = append(in.Records, ktypes.PutRecordsRequestEntry{Data: d, PartitionKey: aws.String(strconv.Itoa(i))})
	}
	out, err := usageClients.Kinesis.PutRecords(t.Context(), in)
	if err != nil || aws.ToInt32(out.FailedRecordCount) > 0 {
		t.Fatalf("put records: %v", err)
	}
}

func putObject(t *testing.T, key string, body []byte) {
	t.Helper()
	if _, err := usageClients.S3.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(usageRes.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
}

// waitReport waits for the report of a dropped file.
func waitReport(t *testing.T, key string, done func(usagelambda.FileReport) bool) usagelambda.FileReport {
	t.Helper()
	deadline := time.Now().Add(usageWait)
	var last usagelambda.FileReport
	for time.Now().Before(deadline) {
		out, err := usageClients.S3.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(usageRes.Bucket), Key: aws.String(usagelambda.ReportKey(key))})
		if err == nil {
			var r usagelambda.FileReport
			dec := json.NewDecoder(out.Body)
			err = dec.Decode(&r)
			out.Body.Close()
			if err == nil {
				last = r
				if done == nil || done(r) {
					return r
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no report for %s after %s (last %+v)", key, usageWait, last)
	return last
}

// waitStream waits until n more stream records than before were answered without failure.
func waitStream(t *testing.T, before int64, n int) {
	t.Helper()
	deadline := time.Now().Add(usageWait)
	for streamHandled.Load() < before+int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("the stream feeder answered %d of %d records", streamHandled.Load()-before, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitQueueEmpty waits until the usage queue holds no message, visible or in flight.
func waitQueueEmpty(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(usageWait)
	for time.Now().Before(deadline) {
		out, err := usageClients.SQS.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(usageRes.QueueURL),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		if err == nil && out.Attributes["ApproximateNumberOfMessages"] == "0" && out.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("the usage queue never emptied")
}

func csvOf(recs []rec) []byte {
	var b strings.Builder
	b.WriteString("id,tenantId,sku,quantity,timestamp\n")
	for _, r := range recs {
		fmt.Fprintf(&b, "%s,%s,%s,%s,%s\n", r.ID, r.TenantID, r.SKU, r.Quantity, r.Timestamp)
	}
	return []byte(b.String())
}

func jsonlGzipOf(t *testing.T, recs []rec) []byte {
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	for _, r := range recs {
		fmt.Fprintln(z, jsonOf(t, r))
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sqsEvent is the event Lambda would deliver for bodies received receiveCount times.
func sqsEvent(ids []string, bodies []string, receiveCount int) events.SQSEvent {
	ev := events.SQSEvent{}
	for i, b := range bodies {
		ev.Records = append(ev.Records, events.SQSMessage{MessageId: ids[i], ReceiptHandle: "rh-" + ids[i], Body: b,
			Attributes: map[string]string{"ApproximateReceiveCount": strconv.Itoa(receiveCount)}, EventSource: "aws:sqs",
			EventSourceARN: usageRes.QueueARN, AWSRegion: usageAWS.Region})
	}
	return ev
}

// TestUsageExactlyOnceAcrossChannels sends the same records through the API, the queue, the
// stream and two files at once, then all of it again, with redeliveries of queue messages and
// of a stream batch: every total must be exact.
func TestUsageExactlyOnceAcrossChannels(t *testing.T) {
	w := mkUsageWorld(t, 3)
	recs, want := w.records(uniq("x"), 60, w.at(-2*time.Hour))
	var bodies, msgIDs []string
	for i := 0; i < len(recs); i += 20 {
		bodies = append(bodies, jsonOf(t, map[string]any{"records": recs[i : i+20]}))
		msgIDs = append(msgIDs, ids.New("m"))
	}
	for _, r := range recs[:5] {
		bodies = append(bodies, jsonOf(t, r)) // single-record messages too
		msgIDs = append(msgIDs, ids.New("m"))
	}
	var datas [][]byte
	for _, r := range recs {
		datas = append(datas, []byte(jsonOf(t, r)))
	}
	dir := "usage/" + uniq("it") + "/"
	a := admin(t)
	for round := 1; round <= 2; round++ {
		streamBefore := streamHandled.Load()
		var first UsageAccepted
		// The four channels at once, as parallel subtests (a failure stops its own goroutine; the
		// group returns when all four are done).
		t.Run(fmt.Sprintf("Round%d", round), func(t *testing.T) {
			t.Run("API", func(t *testing.T) { t.Parallel(); first = postUsage(t, admin(t), recs) })
			t.Run("Queue", func(t *testing.T) { t.Parallel(); sendMessages(t, bodies...) })
			t.Run("Stream", func(t *testing.T) { t.Parallel(); putStream(t, datas...) })
			t.Run("Files", func(t *testing.T) {
				t.Parallel()
				putObject(t, fmt.Sprintf("%sa-%d.csv", dir, round), csvOf(recs))
				putObject(t, fmt.Sprintf("%sb-%d.jsonl.gz", dir, round), jsonlGzipOf(t, recs))
			})
		})
		if t.Failed() {
			t.FailNow()
		}
		if first.Accepted+first.Duplicates+len(first.Rejected) != len(recs) {
			t.Fatalf("round %d: API answer %+v", round, first)
		}
		if round == 2 && (first.Accepted != 0 || first.Duplicates != len(recs)) {
			t.Fatalf("round 2: API answer %+v, want only duplicates", first)
		}
		for _, name := range []string{fmt.Sprintf("%sa-%d.csv", dir, round), fmt.Sprintf("%sb-%d.jsonl.gz", dir, round)} {
			// The file races the other channels for the same records: a batch still claimed by
			// another channel's delivery after the file handler's retries makes the report failed
			// and the event retried, and the retry rewrites it. Only a completed report is final.
			r := waitReport(t, name, func(r usagelambda.FileReport) bool { return r.Status == usagelambda.StatusCompleted })
			if r.Status != usagelambda.StatusCompleted || r.Records != len(recs) || r.Rejected != 0 || r.Accepted+r.Duplicates != len(recs) {
				t.Fatalf("report of %s: %+v", name, r)
			}
			if round == 2 && r.Accepted != 0 {
				t.Fatalf("round 2 report of %s counted %d records again", name, r.Accepted)
			}
		}
		// Redeliveries, as Lambda makes them: a queue batch received again, a stream batch retried.
		res, err := usageConsumer.Queue.Handle(t.Context(), sqsEvent(msgIDs, bodies, 2))
		if err != nil {
			t.Fatal(err)
		}
		for len(res.BatchItemFailures) > 0 { // in progress elsewhere: comes again later
			time.Sleep(usageVisibility)
			if res, err = usageConsumer.Queue.Handle(t.Context(), sqsEvent(msgIDs, bodies, 3)); err != nil {
				t.Fatal(err)
			}
		}
		kev := events.KinesisEvent{}
		for i, d := range datas {
			kev.Records = append(kev.Records, events.KinesisEventRecord{EventSource: "aws:kinesis", EventSourceArn: usageRes.StreamARN,
				Kinesis: events.KinesisRecord{Data: d, SequenceNumber: fmt.Sprintf("4960%030d", i), PartitionKey: "p"}})
		}
		for {
			kres, err := usageConsumer.Stream.Handle(t.Context(), kev)
			if err != nil {
				t.Fatal(err)
			}
			if len(kres.BatchItemFailures) == 0 {
				break
			}
			time.Sleep(usageVisibility)
		}
		waitStream(t, streamBefore, len(datas))
		waitQueueEmpty(t)
		w.waitTotals(t, want)
	}
	// The answer is the tenant's price: 0.10 x 1.1 x 1.2 = 0.132 per unit.
	var ans usageAnswer
	a.must(200, "GET", "/api/v1/usage?subscriptionId="+w.subs[0].ID+"&period="+w.per.String(), nil, &ans)
	if len(ans.Items) != 1 || ans.Items[0].Charge == nil || ans.Period != w.per.String() {
		t.Fatalf("answer %+v", ans)
	}
	q, _ := money.Parse(ans.Items[0].Quantity)
	wantCharge, _ := money.RoundMoney(q.Mul(money.New(132, 3)), "EUR")
	if ans.Items[0].Charge.Amount != wantCharge.String() || ans.Items[0].Charge.Currency != "EUR" {
		t.Fatalf("charge %+v, want %s EUR", ans.Items[0].Charge, wantCharge)
	}
}

// crashAfter makes a DynamoDB client die after n successful writes: every call after that
// fails, as in a consumer killed between two of its writes.
func crashAfter(n int64) func(*dynamodb.Options) {
	var writes atomic.Int64
	var dead atomic.Bool
	return func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("crash", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if dead.Load() {
					return middleware.InitializeOutput{}, middleware.Metadata{}, errors.New("crashed")
				}
				switch awsmiddleware.GetOperationName(ctx) {
				case "PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem":
					if writes.Add(1) > n {
						dead.Store(true)
						return middleware.InitializeOutput{}, middleware.Metadata{}, errors.New("crashed")
					}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After) // after the SDK's own initialize steps, which name the operation
		})
	}
}

// TestUsageCrashBetweenWrites runs a queue batch through a consumer that dies after k of its
// writes (claims, log entries, flags), for several k, then redelivers the batch to a healthy
// consumer: the totals must be exact every time.
func TestUsageCrashBetweenWrites(t *testing.T) {
	w := mkUsageWorld(t, 3, 5, "50")
	want := map[string]money.Decimal{}
	// 90 records over 3 subscriptions: 90 claims, then 3 log entries (one with a threshold
	// event: a transaction).
	for _, k := range []int64{0, 45, 90, 91, 92, 93, 95} {
		t.Run(fmt.Sprintf("After%dWrites", k), func(t *testing.T) {
			recs, add := w.records(uniq(fmt.Sprintf("c%d", k)), 90, w.at(-time.Hour))
			want = addTotals(want, add)
			bodies := []string{jsonOf(t, map[string]any{"records": recs[:45]}), jsonOf(t, map[string]any{"records": recs[45:]})}
			msgIDs := []string{ids.New("m"), ids.New("m")}
			st := tablestore.NewFromConfig(usageAWS, deps.Config.Table, usageStack.DynamoDBOptions(), crashAfter(k))
			crashing := *usageConsumer.Deps.Usage
			crashing.Store = tablestore.NewUsage(st)
			h := &usagelambda.Queue{Usage: &crashing, DeadLetters: usageConsumer.DeadLetters, Log: quiet}
			cres, err := h.Handle(t.Context(), sqsEvent(msgIDs, bodies, 1))
			if err != nil {
				t.Fatal(err) // a crash is reported per message, never as an error
			}
			// 90 claims, then one log entry per subscription (after the registry items of the
			// first batch of the period): a consumer allowed fewer writes died half way.
			if k < 93 && len(cres.BatchItemFailures) == 0 {
				t.Fatalf("the consumer allowed %d writes did not fail: %+v", k, crashing.Store.(*tablestore.Usage).Capacity())
			}
			// SQS redelivers after the visibility timeout; the healthy consumer finishes the job.
			deadline := time.Now().Add(usageWait)
			for n := 2; ; n++ {
				res, err := usageConsumer.Queue.Handle(t.Context(), sqsEvent(msgIDs, bodies, n))
				if err != nil {
					t.Fatal(err)
				}
				if len(res.BatchItemFailures) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("still failing: %+v", res)
				}
				time.Sleep(usageGrace / 2)
			}
			w.checkTotals(t, want)
		})
	}
	// A threshold crossed by a recovered batch fired once.
	evs, err := deps.Store.Events(t.Context(), outbox.UsageThresholdReached)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range evs {
		var d usage.ThresholdDetail
		if err := json.Unmarshal(e.Detail, &d); err == nil && slices.ContainsFunc(w.subs, func(s subOut) bool { return s.ID == d.SubscriptionID }) {
			seen[d.SubscriptionID+"@"+d.Threshold.String()]++
		}
	}
	if len(seen) == 0 {
		t.Fatal("no threshold event")
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("threshold %s fired %d times", k, n)
		}
	}
}

// deadLetters reads every letter of the dead-letter queue whose record or delivered text
// contains marker.
func deadLetters(t *testing.T, marker string, want int) []deadletters.Message {
	t.Helper()
	q := usageConsumer.DeadLetters
	deadline := time.Now().Add(usageWait)
	found := map[string]deadletters.Message{}
	for time.Now().Before(deadline) {
		msgs, err := q.Receive(t.Context(), 10, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if strings.Contains(m.Body, marker) {
				found[m.ID] = m
			}
		}
		if len(found) >= want {
			break
		}
	}
	out := make([]deadletters.Message, 0, len(found))
	for _, m := range found {
		out = append(out, m)
	}
	if len(out) != want {
		t.Fatalf("%d dead letters with %s, want %d: %+v", len(out), marker, want, out)
	}
	return out
}

// TestUsageMixedValidAndInvalid sends batches mixing valid and invalid records as a queue
// message, a stream batch and a file: the valid ones are counted, every invalid one is
// dead-lettered (queue, stream) or reported (file) with its reasons, none is lost.
func TestUsageMixedValidAndInvalid(t *testing.T) {
	w := mkUsageWorld(t, 1)
	tn := w.tenants[0].ID
	marker := uniq("mix")
	now := w.at(-time.Minute).Format(time.RFC3339)
	valid := func(id, q string) map[string]any {
		return map[string]any{"id": marker + "-" + id, "tenantId": tn, "sku": w.sku.Code, "quantity": q, "timestamp": now}
	}
	bad := func(id string, edit func(m map[string]any)) map[string]any {
		m := valid(id, "1")
		edit(m)
		return m
	}
	sendMessages(t,
		jsonOf(t, map[string]any{"records": []any{
			valid("q1", "1.5"),
			bad("q-neg", func(m map[string]any) { m["quantity"] = "-2" }),
			valid("q2", "2.25"),
			bad("q-field", func(m map[string]any) { m["colour"] = "red" }),
			bad("q-tenant", func(m map[string]any) { m["tenantId"] = "tnt_nobody" }),
			bad("q-sku", func(m map[string]any) { m["sku"] = "no-such-sku" }),
		}}),
		"not json at all "+marker,
		jsonOf(t, valid("q3", "3")),
	)
	before := streamHandled.Load()
	putStream(t, []byte(jsonOf(t, valid("s1", "4"))), []byte(jsonOf(t, bad("s-time", func(m map[string]any) { m["timestamp"] = "yesterday" }))))
	key := "usage/" + marker + ".csv"
	putObject(t, key, []byte("id,tenantId,sku,quantity,timestamp\n"+
		marker+"-f1,"+tn+","+w.sku.Code+",5,"+now+"\n"+
		marker+"-f-neg,"+tn+","+w.sku.Code+",-5,"+now+"\n"+
		marker+"-f-short,"+tn+","+w.sku.Code+"\n"+
		marker+"-f2,"+tn+","+w.sku.Code+",0.75,"+now+"\n"+
		marker+"-f-when,"+tn+","+w.sku.Code+",1,tomorrow\n"))
	waitQueueEmpty(t)
	waitStream(t, before, 2)
	rep := waitReport(t, key, nil)
	if rep.Status != usagelambda.StatusCompleted || rep.Records != 5 || rep.Accepted != 2 || rep.Rejected != 3 || len(rep.RejectedLines) != 3 {
		t.Fatalf("report %+v", rep)
	}
	for i, want := range []struct {
		line        int
		field, code string
	}{{3, "quantity", "negative"}, {4, "", "field_count"}, {6, "timestamp", "invalid"}} {
		got := rep.RejectedLines[i]
		if got.Line != want.line || len(got.Errors) == 0 || got.Errors[0].Field != want.field || got.Errors[0].Code != want.code || got.Errors[0].Message == "" {
			t.Errorf("rejected line %d: %+v, want line %d %s:%s", i, got, want.line, want.field, want.code)
		}
	}
	// 1.5 + 2.25 + 3 (queue) + 4 (stream) + 5 + 0.75 (file)
	w.waitTotals(t, map[string]money.Decimal{w.subs[0].ID: money.New(1650, 2)})

	letters := deadLetters(t, marker, 6)
	reasons := map[string]string{}
	for _, m := range letters {
		if m.Letter == nil {
			t.Fatalf("not a letter: %s", m.Body)
		}
		l := m.Letter
		var id string
		var r map[string]any
		if json.Unmarshal(l.Record, &r) == nil {
			id, _ = r["id"].(string)
		} else {
			id = l.ReplayBody()
		}
		reasons[strings.TrimPrefix(id, marker+"-")] = l.Source.Channel + " " + l.Reason[0].Field + ":" + l.Reason[0].Code
		if l.ReasonText() == "" || (l.Source.MessageID == "" && l.Source.SequenceNumber == "") {
			t.Errorf("letter without reason or source: %+v", l)
		}
	}
	wantReasons := map[string]string{
		"q-neg": "queue quantity:negative", "q-field": "queue colour:unknown_field", "q-tenant": "queue tenantId:not_found",
		"q-sku": "queue sku:unknown_sku", "not json at all " + marker: "queue :invalid_json", "s-time": "stream timestamp:invalid",
	}
	for k, v := range wantReasons {
		if reasons[k] != v {
			t.Errorf("letter %q: %q, want %q (all: %v)", k, reasons[k], v, reasons)
		}
	}

	t.Run("Replay", func(t *testing.T) {
		// A message SQS moved after too many receives holds a valid record: replayed, it counts.
		moved := jsonOf(t, valid("moved", "10"))
		if _, err := usageClients.SQS.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(usageRes.DLQURL), MessageBody: aws.String(moved)}); err != nil {
			t.Fatal(err)
		}
		deadLetters(t, marker, 7)
		q := usageConsumer.DeadLetters
		replayed := 0
		deadline := time.Now().Add(usageWait)
		for replayed < 7 && time.Now().Before(deadline) {
			msgs, err := q.Receive(t.Context(), 10, 30, 1)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if !strings.Contains(m.Body, marker) {
					continue
				}
				if err := q.Replay(t.Context(), usageRes.QueueURL, m); err != nil {
					t.Fatal(err)
				}
				replayed++
			}
		}
		if replayed != 7 {
			t.Fatalf("replayed %d of 7", replayed)
		}
		waitQueueEmpty(t)
		w.waitTotals(t, map[string]money.Decimal{w.subs[0].ID: money.New(2650, 2)})
		// The invalid ones came back, with their reasons: still nothing lost.
		deadLetters(t, marker, 6)
	})
	t.Run("ReplayStreamBatch", func(t *testing.T) {
		// The Kinesis event source's on-failure record names a batch; its records are read back.
		out, err := usageClients.Kinesis.PutRecords(t.Context(), &kinesis.PutRecordsInput{StreamName: aws.String(usageRes.Stream), Records: []ktypes.PutRecordsRequestEntry{
			{Data: []byte(jsonOf(t, valid("k1", "1"))), PartitionKey: aws.String("a")},
			{Data: []byte(jsonOf(t, valid("k2", "2"))), PartitionKey: aws.String("a")},
		}})
		if err != nil {
			t.Fatal(err)
		}
		shard := aws.ToString(out.Records[0].ShardId)
		desc := jsonOf(t, map[string]any{"requestContext": map[string]any{"condition": "RetryAttemptsExhausted"}, "version": "1.0",
			"KinesisBatchInfo": map[string]any{"shardId": shard, "startSequenceNumber": aws.ToString(out.Records[0].SequenceNumber),
				"endSequenceNumber": aws.ToString(out.Records[1].SequenceNumber), "batchSize": 2, "streamArn": usageRes.StreamARN, "marker": marker}})
		if _, err := usageClients.SQS.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(usageRes.DLQURL), MessageBody: aws.String(desc)}); err != nil {
			t.Fatal(err)
		}
		q := usageConsumer.DeadLetters
		deadline := time.Now().Add(usageWait)
		for time.Now().Before(deadline) {
			msgs, err := q.Receive(t.Context(), 10, 30, 1)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if !strings.Contains(m.Body, marker) || m.StreamBatch == nil {
					continue
				}
				if !strings.Contains(m.Reason(), shard) {
					t.Errorf("reason %q", m.Reason())
				}
				if err := q.Replay(t.Context(), usageRes.QueueURL, m); !errors.Is(err, deadletters.ErrStreamBatch) {
					t.Fatalf("Replay of a stream batch: %v", err)
				}
				sent, err := streambatch.Replay(t.Context(), q, usageClients.Kinesis, usageRes.QueueURL, m)
				if err != nil || sent != 2 {
					t.Fatalf("ReplayStream sent %d: %v", sent, err)
				}
				waitQueueEmpty(t)
				// Counted once: through the stream, and as duplicates through the replay.
				w.waitTotals(t, map[string]money.Decimal{w.subs[0].ID: money.New(2950, 2)})
				return
			}
		}
		t.Fatal("the stream batch description never came back from the dead-letter queue")
	})
}

// TestUsageScoping checks what each caller may push and see.
func TestUsageScoping(t *testing.T) {
	w := mkUsageWorld(t, 2)
	a := admin(t)
	other := create(t, a, "partners", map[string]any{"name": "Other", "parent": parent("platform", "platform")})
	_, otherAdmin := mkUser(t, a, "partner_admin", other.ID)
	_, partnerAdmin := mkUser(t, a, "partner_admin", w.partner.ID)
	_, tenantViewer := mkUser(t, a, "tenant_viewer", w.tenants[0].ID)
	recs, _ := w.records(uniq("s"), 4, w.at(-time.Hour))

	var ans UsageAccepted
	otherAdmin.must(202, "POST", "/api/v1/usage", map[string]any{"records": recs}, &ans)
	if ans.Accepted != 0 || len(ans.Rejected) != 4 || ans.Rejected[0].Errors[0].Code != "not_found" || ans.Rejected[0].Errors[0].Field != "tenantId" {
		t.Fatalf("another partner pushed: %+v", ans)
	}
	if got := postUsage(t, partnerAdmin, recs); got.Accepted != 4 {
		t.Fatalf("the tenants' partner pushed: %+v", got)
	}
	if env := otherAdmin.do("GET", "/api/v1/usage?tenantId="+w.tenants[0].ID, nil); env.status != 404 {
		t.Fatalf("another partner read a tenant's usage: %s", env.raw)
	}
	if env := otherAdmin.do("GET", "/api/v1/usage?subscriptionId="+w.subs[0].ID, nil); env.status != 404 {
		t.Fatalf("another partner read a subscription's usage: %s", env.raw)
	}
	var own usageAnswer
	tenantViewer.must(200, "GET", "/api/v1/usage?period="+w.per.String(), nil, &own)
	if len(own.Items) != 1 || own.Items[0].TenantID != w.tenants[0].ID {
		t.Fatalf("a tenant viewer sees %+v", own)
	}
	if env := tenantViewer.do("POST", "/api/v1/usage", map[string]any{"records": recs}); env.status != 403 {
		t.Fatalf("a tenant viewer pushed usage: %s", env.raw)
	}
	// Every list is paged, and the next token keeps the period.
	env := partnerAdmin.do("GET", "/api/v1/usage?page_size=1&period="+w.per.String(), nil)
	var page usageAnswer
	if err := json.Unmarshal(env.Data, &page); err != nil || env.status != 200 || len(page.Items) != 1 || env.Page == nil || env.Page.Next == "" {
		t.Fatalf("first page %s", env.raw)
	}
	env2 := partnerAdmin.do("GET", "/api/v1/usage?next="+env.Page.Next, nil)
	var page2 usageAnswer
	if err := json.Unmarshal(env2.Data, &page2); err != nil || len(page2.Items) != 1 || page2.Items[0].SubscriptionID == page.Items[0].SubscriptionID || page2.Period != page.Period {
		t.Fatalf("second page %s", env2.raw)
	}
	for name, body := range map[string]string{
		"ErrNoRecords": `{}`, "ErrUnknownField": `{"records":[],"x":1}`, "ErrNotJSON": `{`,
		"ErrTooMany": `{"records":[` + strings.TrimSuffix(strings.Repeat(`{},`, 1001), ",") + `]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if env := partnerAdmin.do("POST", "/api/v1/usage", body); env.status != 400 {
				t.Fatalf("%s", env.raw)
			}
		})
	}
	t.Run("ErrTooLarge", func(t *testing.T) {
		big := `{"records":[{"id":"` + strings.Repeat("x", 6<<20) + `"}]}`
		if env := partnerAdmin.do("POST", "/api/v1/usage", big); env.status != 413 {
			t.Fatalf("status %d", env.status)
		}
	})
	t.Run("ErrBadPeriod", func(t *testing.T) {
		if env := partnerAdmin.do("GET", "/api/v1/usage?period=2026-13", nil); env.status != 400 || !env.hasError("invalid", "period") {
			t.Fatalf("%s", env.raw)
		}
	})
}

// TestUsageThresholdsAndLate checks the threshold events and late usage (SPEC 10): a record of
// a period already invoiced is kept, counted in that period and flagged for billing.
func TestUsageThresholdsAndLate(t *testing.T) {
	w := mkUsageWorld(t, 1, 10, "20")
	a := admin(t)
	tn, sub := w.tenants[0].ID, w.subs[0].ID
	at := w.at(-time.Hour).Format(time.RFC3339)
	push := func(id, q, ts string) UsageAccepted {
		t.Helper()
		ans := postUsage(t, a, []rec{{ID: id, TenantID: tn, SKU: w.sku.Code, Quantity: q, Timestamp: ts}})
		if ans.Accepted+ans.Duplicates != 1 {
			t.Fatalf("%s: %+v", id, ans)
		}
		return ans
	}
	push("t1", "6", at)
	push("t2", "6", at) // 12: crosses 10
	push("t2", "6", at) // a duplicate crosses nothing
	push("t3", "9", at) // 21: crosses 20
	evs, err := deps.Store.Events(t.Context(), outbox.UsageThresholdReached)
	if err != nil {
		t.Fatal(err)
	}
	var mine []usage.ThresholdDetail
	for _, e := range evs {
		var d usage.ThresholdDetail
		if json.Unmarshal(e.Detail, &d) == nil && d.SubscriptionID == sub {
			mine = append(mine, d)
		}
	}
	if len(mine) != 2 || mine[0].Threshold.String() != "10" || mine[0].Quantity.String() != "12" || mine[1].Threshold.String() != "20" || mine[1].TenantID != tn {
		t.Fatalf("threshold events %+v", mine)
	}
	waitForEvent(t, outbox.UsageThresholdReached, func(e busEvent) bool { return strings.Contains(string(e.Data), sub) })

	// Billing has invoiced last month: a record of last month is late.
	prev := w.per.Prev()
	if err := deps.Store.Table().Update("PK", "ENT#"+tn).Range("SK", "ENT").Set("InvoicedThrough", prev.String()).Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The API's usage service caches tenants for a minute; billing's write shows at once here.
	deps.Usage.Tenants.(*usagecatalog.Source).Forget(tn)
	late := prev.Start().Add(36 * time.Hour).Format(time.RFC3339)
	if got := push("late1", "50", late); got.Accepted != 1 {
		t.Fatalf("late record %+v", got)
	}
	if got := w.totals(t, prev.String()); got[sub] != "50" {
		t.Fatalf("last month's total %v", got)
	}
	changes, err := deps.UsageStore.Changes(t.Context(), tn)
	if err != nil {
		t.Fatal(err)
	}
	// Only last month's flag matters here: in the last 30 minutes of a month, this month's
	// increments are flagged too (usage.ClosingMargin).
	changes = slices.DeleteFunc(changes, func(c usage.Change) bool { return c.Key.Period != prev })
	if len(changes) != 1 || !changes[0].Late || changes[0].Key.SubscriptionID != sub || len(changes[0].Pending) != 0 {
		t.Fatalf("changes %+v", changes)
	}
}

// TestUsageStoreContract runs the usage.Store contract against DynamoDB Local.
func TestUsageStoreContract(t *testing.T) {
	usagetest.Run(t, func(t *testing.T) usagetest.Harness {
		u := tablestore.NewUsage(deps.Store)
		u.Grace = usageGrace
		return usagetest.Harness{Store: u, Events: func(tb testing.TB, typ string) []outbox.Event {
			evs, err := deps.Store.Events(context.Background(), typ)
			if err != nil {
				tb.Fatal(err)
			}
			return evs
		}}
	})
}

// TestUsageWriteUnits measures the DynamoDB write units of the exactly-once protocol on batches
// of 500 records over 50 subscriptions (docs/performance.md): DynamoDB Local reports the units
// of every successful single write (ReturnConsumedCapacity); the store counts a write refused by
// its condition and a transaction by DynamoDB's rules (1 KB rule; 2 units per KB in a
// transaction), as DynamoDB Local does not.
func TestUsageWriteUnits(t *testing.T) {
	u := tablestore.NewUsage(deps.Store)
	tenant := ids.New("tnt")
	path := "/platform/" + ids.New("prt") + "/" + tenant + "/"
	now := time.Now().UTC()
	aggs := make([]usage.Aggregate, 50)
	for i := range aggs {
		aggs[i] = usage.Aggregate{Key: usage.AggregateKey{SubscriptionID: ids.New("sub"), SKU: "storage-gb", Period: billingperiod.Of(now)},
			TenantID: tenant, TenantPath: path}
	}
	batch := func(prefix string) *usage.Batch {
		b := &usage.Batch{Source: usage.SourceQueue, Now: now, Aggregates: aggs}
		for i := range 500 {
			b.Entries = append(b.Entries, usage.Entry{Aggregate: i % 50, Record: usage.Record{ID: fmt.Sprintf("%s-%d", prefix, i), TenantID: tenant,
				SKU: "storage-gb", Quantity: money.New(int64(i+1), 1), Timestamp: now, Region: "eu-west-1"}})
		}
		return b
	}
	measure := func(name string, b *usage.Batch, want usage.Status) float64 {
		t.Helper()
		u.ResetCapacity()
		res, err := u.Record(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Status != want {
				t.Fatalf("%s: status %s, want %s (%v)", name, r.Status, want, r.Err)
			}
		}
		c := u.Capacity()
		perRecord := c.WriteUnits / float64(len(b.Entries))
		t.Logf("%-46s %4.0f write units (%.3f per record), %4.0f read units (%.3f per record), %d writes, %d refused",
			name, c.WriteUnits, perRecord, c.ReadUnits, c.ReadUnits/float64(len(b.Entries)), c.Writes, c.FailedConditions)
		return perRecord
	}
	measure("first batch of the period (+1 registry item each)", batch("a"), usage.Accepted)
	if wcu := measure("next batch", batch("b"), usage.Accepted); wcu > 1.1 {
		t.Errorf("%.3f write units per accepted record, want at most 1.1", wcu)
	}
	again := batch("b")
	again.Redelivery = true
	if wcu := measure("the same batch redelivered (claims read first)", again, usage.Duplicate); wcu != 0 {
		t.Errorf("a redelivered batch wrote %.3f units per record, want 0", wcu)
	}
	if wcu := measure("the same batch again as new (puts refused)", batch("b"), usage.Duplicate); wcu > 1 {
		t.Errorf("a duplicate batch wrote %.3f units per record, want at most 1", wcu)
	}
}

// isPutOf reports whether an SDK call's input is a PutItem of an item whose key begins with
// prefix.
func isPutOf(params any, prefix string) bool {
	put, ok := params.(*dynamodb.PutItemInput)
	if !ok {
		return false
	}
	pk, ok := put.Item["PK"].(*ddbtypes.AttributeValueMemberS)
	return ok && strings.HasPrefix(pk.Value, prefix)
}

// sdkHook adds fn to a DynamoDB client's requests, before each one is sent.
func sdkHook(name string, fn func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error)) func(*dynamodb.Options) {
	return func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc(name, fn), middleware.After)
		})
	}
}

// crashOnPut makes a DynamoDB client die at its first put of an item whose key begins with
// prefix: that put and every call after it fail.
func crashOnPut(prefix string) func(*dynamodb.Options) {
	var dead atomic.Bool
	return sdkHook("crashOnPut", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		if dead.Load() || isPutOf(in.Parameters, prefix) {
			dead.Store(true)
			return middleware.InitializeOutput{}, middleware.Metadata{}, errors.New("crashed")
		}
		return next.HandleInitialize(ctx, in)
	})
}

// slowWriter holds a client's first aggregate log put (its commit) until released: a writer
// slow between its claims and its commit. reached is closed when the put is held, done once
// DynamoDB has answered it.
type slowWriter struct {
	reached, release, done chan struct{}
	held                   atomic.Bool
	once                   sync.Once
}

func newSlowWriter() *slowWriter {
	return &slowWriter{reached: make(chan struct{}), release: make(chan struct{}), done: make(chan struct{})}
}

func (s *slowWriter) option() func(*dynamodb.Options) {
	return sdkHook("slowWriter", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		if !isPutOf(in.Parameters, "UAGG#") || !s.held.CompareAndSwap(false, true) {
			return next.HandleInitialize(ctx, in)
		}
		defer close(s.done)
		close(s.reached)
		select {
		case <-s.release:
		case <-ctx.Done():
			return middleware.InitializeOutput{}, middleware.Metadata{}, ctx.Err()
		}
		return next.HandleInitialize(ctx, in)
	})
}

// land lets the held commit go and waits until it has landed (or been refused).
func (s *slowWriter) land(tb testing.TB) {
	s.once.Do(func() { close(s.release) })
	select {
	case <-s.done:
	case <-time.After(usageWait):
		tb.Error("the slow writer's commit was never answered")
	}
}

// beforeCall runs fn once, just before a DynamoDB client's k-th request.
func beforeCall(k int64, fn func()) func(*dynamodb.Options) {
	var n atomic.Int64
	return sdkHook("beforeCall", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		if n.Add(1) == k {
			fn()
		}
		return next.HandleInitialize(ctx, in)
	})
}

// logEntry is an aggregate log entry as stored (docs/data-model.md).
type logEntry struct {
	SK, Op, Chunk, Delta, Total string
}

// checkUsageLog checks an aggregate's log and the claims of ids against the protocol's
// invariants: sequence numbers without gaps, running totals that add up, no chunk both committed
// and aborted (or committed twice), and every claim naming a chunk committed in it. It returns
// the total.
func checkUsageLog(t *testing.T, key usage.AggregateKey, tenant string, ids []string) money.Decimal {
	t.Helper()
	var entries []logEntry
	if err := deps.Store.Table().Get("PK", "UAGG#"+key.String()).Consistent(true).All(t.Context(), &entries); err != nil {
		t.Fatal(err)
	}
	var total money.Decimal
	ops := map[string][]string{}
	for i, e := range entries {
		if want := fmt.Sprintf("L#%012d", i+1); e.SK != want {
			t.Fatalf("entry %s where %s was expected: %+v", e.SK, want, entries)
		}
		d, err1 := money.Parse(e.Delta)
		tot, err2 := money.Parse(e.Total)
		if err1 != nil || err2 != nil {
			t.Fatalf("entry %+v", e)
		}
		if e.Op == "commit" {
			total = total.Add(d)
		}
		if !tot.Equal(total) {
			t.Fatalf("entry %s carries the total %s, the entries add up to %s: %+v", e.SK, tot, total, entries)
		}
		ops[e.Chunk] = append(ops[e.Chunk], e.Op+"@"+e.SK)
	}
	for chunk, o := range ops {
		if len(o) > 1 {
			t.Errorf("chunk %s appears %d times in the log: %v", chunk, len(o), o)
		}
	}
	for _, id := range ids {
		var claim struct{ Chunk string }
		if err := deps.Store.Table().Get("PK", "UREC#"+tenant+"#"+id).Range("SK", dynamo.Equal, "UREC").Consistent(true).One(t.Context(), &claim); err != nil {
			t.Fatalf("claim of %s: %v", id, err)
		}
		if o := ops[claim.Chunk]; len(o) == 0 || !strings.HasPrefix(o[0], "commit@") {
			t.Errorf("the claim of %s names chunk %s, which the log records as %v", id, claim.Chunk, o)
		}
	}
	return total
}

// TestUsageAbortRacesSlowWriter makes a writer slow between its claims and its commit while
// another party aborts its chunk (grace 0): a redelivery of the same records (Record) or
// billing's ResolvePending. The writer's commit lands just before the recoverer's first request,
// then its second, and so on, so that every interleaving of the two is tried: the log never holds
// a commit and an abort of one chunk, every record counts once, and each is accepted once.
func TestUsageAbortRacesSlowWriter(t *testing.T) {
	healthy := tablestore.NewUsage(deps.Store)
	healthy.Grace = 0 // every writer has returned when it runs
	per := billingperiod.Of(time.Now())
	for _, recoverer := range []string{"Record", "ResolvePending"} {
		for k := int64(1); k <= 14; k++ {
			t.Run(fmt.Sprintf("%sCommitBeforeCall%d", recoverer, k), func(t *testing.T) {
				tenant := ids.New("tnt")
				agg := usage.Aggregate{Key: usage.AggregateKey{SubscriptionID: ids.New("sub"), SKU: "gb", Period: per}, TenantID: tenant,
					TenantPath: "/platform/" + ids.New("prt") + "/" + tenant + "/", Closing: recoverer == "ResolvePending"}
				batch := func(prefix string, n int) *usage.Batch {
					b := &usage.Batch{Source: usage.SourceQueue, Now: time.Now().UTC(), Aggregates: []usage.Aggregate{agg}}
					for i := range n {
						b.Entries = append(b.Entries, usage.Entry{Record: usage.Record{ID: fmt.Sprintf("%s-%d", prefix, i), TenantID: tenant,
							SKU: "gb", Quantity: money.New(int64(i+1), 0), Timestamp: b.Now}})
					}
					return b
				}
				accepted := map[string]int{}
				count := func(b *usage.Batch, res []usage.EntryResult) (retry int) {
					for i, r := range res {
						switch r.Status {
						case usage.Accepted:
							accepted[b.Entries[i].ID]++
						case usage.Retry:
							retry++
						}
					}
					return retry
				}
				// A first batch, so that the claims of the next record a head above 0.
				first := batch("p", 1)
				if res, err := healthy.Record(t.Context(), first); err != nil || count(first, res) > 0 {
					t.Fatalf("first batch: %v %+v", err, res)
				}
				slow := newSlowWriter()
				defer slow.land(t)
				writer := tablestore.NewUsage(tablestore.NewFromConfig(usageAWS, deps.Config.Table, usageStack.DynamoDBOptions(), slow.option()))
				wb := batch("r", 2)
				var wres []usage.EntryResult
				werr := make(chan error, 1)
				go func() {
					var err error
					wres, err = writer.Record(context.WithoutCancel(t.Context()), wb)
					werr <- err
				}()
				select {
				case <-slow.reached:
				case <-time.After(usageWait):
					t.Fatal("the writer never reached its commit")
				}
				rec := tablestore.NewUsage(tablestore.NewFromConfig(usageAWS, deps.Config.Table, usageStack.DynamoDBOptions(),
					beforeCall(k, func() { slow.land(t) })))
				rec.Grace = 0
				switch recoverer {
				case "Record":
					rb := batch("r", 2)
					res, err := rec.Record(t.Context(), rb)
					if err != nil {
						t.Fatal(err)
					}
					count(rb, res)
				case "ResolvePending":
					if _, err := rec.ResolvePending(t.Context(), tenant); err != nil {
						t.Fatal(err)
					}
				}
				slow.land(t)
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
				count(wb, wres)
				// Deliver again until nothing is left to retry (a chunk left unfinished is aborted).
				for attempt := 0; ; attempt++ {
					b := batch("r", 2)
					res, err := healthy.Record(t.Context(), b)
					if err != nil {
						t.Fatal(err)
					}
					if count(b, res) == 0 {
						break
					}
					if attempt == 5 {
						t.Fatalf("still not counted: %+v", res)
					}
				}
				if total := checkUsageLog(t, agg.Key, tenant, []string{"p-0", "r-0", "r-1"}); !total.Equal(money.New(4, 0)) {
					t.Errorf("total %s, want 4 (1 + 1 + 2)", total)
				}
				for _, id := range []string{"p-0", "r-0", "r-1"} {
					if accepted[id] != 1 {
						t.Errorf("%s accepted %d times", id, accepted[id])
					}
				}
				if recoverer == "ResolvePending" {
					if n, err := healthy.ResolvePending(t.Context(), tenant); err != nil || n != 0 {
						t.Errorf("pending increments left: %d, %v", n, err)
					}
				}
			})
		}
	}
}

// TestUsageRegistryAfterAborts lets two consumers die just before writing the registry item of
// an aggregate's first commit: the first leaves only claims; the second, after the grace period,
// aborts the first one's chunk, takes the claims over and dies at the same point. The log then
// begins with an abort and no registry item exists: the delivery that finally commits must
// write it, or the aggregate never shows in GET /usage nor in billing.
func TestUsageRegistryAfterAborts(t *testing.T) {
	w := mkUsageWorld(t, 1)
	recs, want := w.records(uniq("g"), 10, w.at(-time.Hour))
	bodies := []string{jsonOf(t, map[string]any{"records": recs})}
	msgIDs := []string{ids.New("m")}
	for n := 1; n <= 2; n++ {
		store := tablestore.NewUsage(tablestore.NewFromConfig(usageAWS, deps.Config.Table, usageStack.DynamoDBOptions(), crashOnPut("UREG#")))
		store.Grace = usageGrace
		crashing := *usageConsumer.Deps.Usage
		crashing.Store = store
		h := &usagelambda.Queue{Usage: &crashing, DeadLetters: usageConsumer.DeadLetters, Log: quiet}
		res, err := h.Handle(t.Context(), sqsEvent(msgIDs, bodies, n))
		if err != nil || len(res.BatchItemFailures) != 1 {
			t.Fatalf("delivery %d: %+v %v, want the message failed", n, res, err)
		}
		time.Sleep(usageGrace)
	}
	key := usage.AggregateKey{SubscriptionID: w.subs[0].ID, SKU: w.sku.Code, Period: w.per}
	var entries []logEntry
	if err := deps.Store.Table().Get("PK", "UAGG#"+key.String()).Consistent(true).All(t.Context(), &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Op != "abort" {
		t.Fatalf("log %+v, want one abort", entries)
	}
	for n := 3; ; n++ {
		res, err := usageConsumer.Queue.Handle(t.Context(), sqsEvent(msgIDs, bodies, n))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.BatchItemFailures) == 0 {
			break
		}
		if n == 10 {
			t.Fatalf("still failing: %+v", res)
		}
		time.Sleep(usageGrace)
	}
	w.checkTotals(t, want)
	// What billing lists (PeriodTotals goes through Aggregates) holds it too.
	refs, err := deps.UsageStore.Aggregates(t.Context(), w.per, "/")
	if err != nil || !slices.ContainsFunc(refs, func(r usage.AggregateRef) bool { return r.Key == key && r.TenantID == w.tenants[0].ID }) {
		t.Fatalf("the period's aggregates do not list %s: %v", key, err)
	}
}

// TestUsageClaimTTL checks when claims expire: 400 days after their period's end, and never
// less than 400 days after they are made (a record of a long-closed period, timestamps back to
// 2000 being accepted, must not get a claim already expired, or a replay would count it again).
func TestUsageClaimTTL(t *testing.T) {
	u := tablestore.NewUsage(deps.Store)
	keep := 400 * 24 * time.Hour
	now := time.Now().UTC()
	for name, ts := range map[string]time.Time{"Old": time.Date(2001, 3, 15, 12, 0, 0, 0, time.UTC), "Current": now} {
		t.Run(name, func(t *testing.T) {
			tenant := ids.New("tnt")
			per := billingperiod.Of(ts)
			b := &usage.Batch{Source: usage.SourceAPI, Now: now, Aggregates: []usage.Aggregate{{Key: usage.AggregateKey{SubscriptionID: ids.New("sub"),
				SKU: "gb", Period: per}, TenantID: tenant, TenantPath: "/platform/" + tenant + "/", Late: name == "Old", Closing: name == "Old"}},
				Entries: []usage.Entry{{Record: usage.Record{ID: "r1", TenantID: tenant, SKU: "gb", Quantity: money.New(1, 0), Timestamp: ts}}}}
			before := time.Now()
			res, err := u.Record(t.Context(), b)
			after := time.Now()
			if err != nil || res[0].Status != usage.Accepted {
				t.Fatalf("%+v %v", res, err)
			}
			var claim struct{ TTL int64 }
			if err := deps.Store.Table().Get("PK", "UREC#"+tenant+"#r1").Range("SK", dynamo.Equal, "UREC").Consistent(true).One(t.Context(), &claim); err != nil {
				t.Fatal(err)
			}
			lo, hi := before.Add(keep).Unix()-1, after.Add(keep).Unix()+1
			if end := per.End().Add(keep).Unix(); end > lo {
				lo, hi = end, end
			}
			if claim.TTL < lo || claim.TTL > hi {
				t.Fatalf("TTL %s, want within [%s, %s]", time.Unix(claim.TTL, 0).UTC(), time.Unix(lo, 0).UTC(), time.Unix(hi, 0).UTC())
			}
		})
	}
}

// staleReads makes a DynamoDB client's eventually consistent reads answer from a replica that has
// seen none of the writes yet, as DynamoDB allows for a moment after each write: a Query or
// GetItem without ConsistentRead finds nothing, a BatchGetItem returns no item. Strongly
// consistent reads go through.
func staleReads() func(*dynamodb.Options) {
	return sdkHook("staleReads", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		switch p := in.Parameters.(type) {
		case *dynamodb.QueryInput:
			if !aws.ToBool(p.ConsistentRead) {
				return middleware.InitializeOutput{Result: &dynamodb.QueryOutput{Items: []map[string]ddbtypes.AttributeValue{}}}, middleware.Metadata{}, nil
			}
		case *dynamodb.GetItemInput:
			if !aws.ToBool(p.ConsistentRead) {
				return middleware.InitializeOutput{Result: &dynamodb.GetItemOutput{}}, middleware.Metadata{}, nil
			}
		case *dynamodb.BatchGetItemInput:
			return middleware.InitializeOutput{Result: &dynamodb.BatchGetItemOutput{Responses: map[string][]map[string]ddbtypes.AttributeValue{}}}, middleware.Metadata{}, nil
		}
		return next.HandleInitialize(ctx, in)
	})
}

// TestUsageAggregatesReadConsistently records usage for a period that is closing (as a consumer
// does in the last seconds of a month) and lists the period's aggregates through a client whose
// eventually consistent reads are stale. Billing lists a tenant's usage this way (PeriodTotals,
// after reading the tenant's flags) and acknowledges the flags it read: an aggregate missed by a
// stale listing would be acknowledged unbilled and never invoiced.
func TestUsageAggregatesReadConsistently(t *testing.T) {
	st := tablestore.NewUsage(tablestore.NewFromConfig(usageAWS, deps.Config.Table, usageStack.DynamoDBOptions(), staleReads()))
	tenant := ids.New("tnt")
	path := "/platform/" + ids.New("prt") + "/" + tenant + "/"
	now := time.Now().UTC()
	per := billingperiod.Of(now)
	agg := usage.Aggregate{Key: usage.AggregateKey{SubscriptionID: ids.New("sub"), SKU: "gb", Period: per}, TenantID: tenant, TenantPath: path, Closing: true}
	b := &usage.Batch{Source: usage.SourceQueue, Now: now, Aggregates: []usage.Aggregate{agg},
		Entries: []usage.Entry{{Record: usage.Record{ID: "r1", TenantID: tenant, SKU: "gb", Quantity: money.New(125, 1), Timestamp: now}}}}
	if res, err := st.Record(t.Context(), b); err != nil || res[0].Status != usage.Accepted {
		t.Fatalf("record: %+v %v", res, err)
	}
	changes, err := st.Changes(t.Context(), tenant)
	if err != nil || len(changes) != 1 || len(changes[0].Pending) != 0 {
		t.Fatalf("flags %+v %v, want one settled flag", changes, err)
	}
	refs, err := st.Aggregates(t.Context(), per, path)
	if err != nil || len(refs) != 1 || refs[0].Key != agg.Key {
		t.Fatalf("aggregates %+v %v, want %s", refs, err, agg.Key)
	}
	totals, err := (&app.BillingUsage{Store: st}).PeriodTotals(t.Context(), path, per)
	if err != nil || len(totals) != 1 || !totals[0].Quantity.Equal(money.New(125, 1)) {
		t.Fatalf("billing's period totals %+v %v, want 12.5", totals, err)
	}
}
