package streams_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/local/emulator"
	"github.com/channelbilling/cms/local/streams"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/tablestore"
)

func TestMain(m *testing.M) { os.Exit(emulator.Main(m, nil)) }

// TestDynamoDBLocal reads a real table's stream (DynamoDB Local, or AWS_ENDPOINT_URL): the
// records reach the handler as Lambda would deliver them, and a reported failure is delivered
// again from that record.
func TestDynamoDBLocal(t *testing.T) {
	stack := emulator.ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := stack.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db := dynamo.New(cfg, stack.DynamoDBOptions())
	name := "streams-test-" + ids.New("t")
	if err := tablestore.CreateTable(ctx, db, name); err != nil {
		t.Fatal(err)
	}
	table := db.Table(name)
	defer func() { _ = table.DeleteTable().Run(context.Background()) }()

	var (
		mu       sync.Mutex
		got      []events.DynamoDBEventRecord
		failedAt string
	)
	handler := func(_ context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range ev.Records {
			// Fail the MODIFY once: it and the REMOVE after it must come again.
			if r.EventName == "MODIFY" && failedAt == "" {
				failedAt = r.Change.SequenceNumber
				return events.DynamoDBEventResponse{BatchItemFailures: []events.DynamoDBBatchItemFailure{{ItemIdentifier: failedAt}}}, nil
			}
			got = append(got, r)
		}
		return events.DynamoDBEventResponse{}, nil
	}
	log, _ := quietLog()
	opts := fastOptions(log)
	stop, err := streams.StartOutbox(ctx, table, dynamodbstreams.NewFromConfig(cfg, stack.DynamoDBStreamsOptions()), handler, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	arn, err := streams.StreamARN(ctx, table)
	if err != nil {
		t.Fatal(err)
	}

	type item struct {
		PK, SK string
		Count  int
		Tags   []string `dynamo:",set"`
		Nested map[string]any
	}
	if err := table.Put(item{PK: "A", SK: "A", Count: 1, Tags: []string{"x"}, Nested: map[string]any{"k": "v"}}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := table.Update("PK", "A").Range("SK", "A").Set("Count", 2).Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := table.Delete("PK", "A").Range("SK", "A").Run(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "three records", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 })
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("%d records handled, want 3: each exactly once after the retry", len(got))
	}
	for i, want := range []string{"INSERT", "MODIFY", "REMOVE"} {
		r := got[i]
		if r.EventName != want || r.EventSource != "aws:dynamodb" || r.EventSourceArn != arn || r.EventID == "" || r.AWSRegion == "" ||
			r.Change.StreamViewType != "NEW_AND_OLD_IMAGES" || r.Change.Keys["PK"].String() != "A" || r.Change.SizeBytes == 0 {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if got[1].Change.SequenceNumber != failedAt {
		t.Errorf("the retry started at %s, want the reported %s", got[1].Change.SequenceNumber, failedAt)
	}
	ins, mod, rem := got[0].Change, got[1].Change, got[2].Change
	if ins.OldImage != nil || ins.NewImage["Count"].Number() != "1" || ins.NewImage["Tags"].StringSet()[0] != "x" ||
		ins.NewImage["Nested"].Map()["k"].String() != "v" {
		t.Errorf("INSERT images: %+v", ins)
	}
	if mod.OldImage["Count"].Number() != "1" || mod.NewImage["Count"].Number() != "2" {
		t.Errorf("MODIFY images: %+v", mod)
	}
	if rem.NewImage != nil || rem.OldImage["Count"].Number() != "2" {
		t.Errorf("REMOVE images: %+v", rem)
	}
}
