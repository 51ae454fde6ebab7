package publisher_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/publisher"
	"github.com/channelbilling/cms/shared/tablestore"
)

const bus = "test-bus"

// fakeBus records every PutEvents call; answer, when set, decides the result of call n (0-based).
type fakeBus struct {
	mu     sync.Mutex
	calls  [][]types.PutEventsRequestEntry
	answer func(call int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error)
}

func (f *fakeBus) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	f.mu.Lock()
	n := len(f.calls)
	f.calls = append(f.calls, append([]types.PutEventsRequestEntry(nil), in.Entries...))
	f.mu.Unlock()
	if f.answer != nil {
		return f.answer(n, in.Entries)
	}
	return accepted(in.Entries, nil), nil
}

// accepted answers every entry as published except those at the indexes in fail.
func accepted(entries []types.PutEventsRequestEntry, fail map[int]string) *eventbridge.PutEventsOutput {
	out := &eventbridge.PutEventsOutput{}
	for i := range entries {
		if code, ok := fail[i]; ok {
			out.Entries = append(out.Entries, types.PutEventsResultEntry{ErrorCode: aws.String(code), ErrorMessage: aws.String("injected")})
			out.FailedEntryCount++
			continue
		}
		out.Entries = append(out.Entries, types.PutEventsResultEntry{EventId: aws.String(fmt.Sprintf("eb-%d", i))})
	}
	return out
}

// details decodes the detail of every entry put on the bus, in order.
func (f *fakeBus) details(t *testing.T) []publisher.Detail {
	t.Helper()
	var out []publisher.Detail
	for _, c := range f.calls {
		for _, e := range c {
			var d publisher.Detail
			if err := json.Unmarshal([]byte(aws.ToString(e.Detail)), &d); err != nil {
				t.Fatalf("detail %s: %v", aws.ToString(e.Detail), err)
			}
			out = append(out, d)
		}
	}
	return out
}

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)

func mkEvent(t *testing.T, i int) outbox.Event {
	t.Helper()
	e, err := outbox.New("customer.created", fmt.Sprintf("/platform/dst_%d/", i), t0.Add(time.Duration(i)*time.Second), map[string]any{"n": i})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func seq(i int) string { return fmt.Sprintf("%021d", 1000+i) }

func record(i int, name events.DynamoDBOperationType, newImage, oldImage map[string]events.DynamoDBAttributeValue) events.DynamoDBEventRecord {
	img := newImage
	if img == nil {
		img = oldImage
	}
	return events.DynamoDBEventRecord{
		EventID: fmt.Sprintf("id-%d", i), EventName: string(name), EventSource: "aws:dynamodb", EventVersion: "1.1",
		AWSRegion: "eu-west-1", EventSourceArn: "arn:aws:dynamodb:eu-west-1:123456789012:table/cms/stream/2026-05-01T00:00:00.000",
		Change: events.DynamoDBStreamRecord{
			Keys:     map[string]events.DynamoDBAttributeValue{"PK": img["PK"], "SK": img["SK"]},
			NewImage: newImage, OldImage: oldImage, SequenceNumber: seq(i), SizeBytes: 100,
			StreamViewType: string(events.DynamoDBStreamViewTypeNewAndOldImages),
		},
	}
}

// outboxBatch is a stream batch of n outbox INSERTs, with the events it carries.
func outboxBatch(t *testing.T, n int) (events.DynamoDBEvent, []outbox.Event) {
	var ev events.DynamoDBEvent
	var es []outbox.Event
	for i := range n {
		e := mkEvent(t, i)
		es = append(es, e)
		ev.Records = append(ev.Records, record(i, events.DynamoDBOperationTypeInsert, tablestore.OutboxImage(e), nil))
	}
	return ev, es
}

func entityImage(id string) map[string]events.DynamoDBAttributeValue {
	return map[string]events.DynamoDBAttributeValue{
		"PK": events.NewStringAttribute("ENT#" + id), "SK": events.NewStringAttribute("ENT"),
		"Kind": events.NewStringAttribute("entity"), "Name": events.NewStringAttribute("Acme"),
	}
}

// logged is a JSON logger into a buffer, and its lines.
type logged struct{ buf bytes.Buffer }

func (l *logged) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(&l.buf, nil)) }

func (l *logged) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, ln := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if ln == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(ln), &m); err != nil {
			t.Fatalf("log line is not JSON: %s", ln)
		}
		out = append(out, m)
	}
	return out
}

// batchLine returns the one per-batch line; it fails unless there is exactly one.
func (l *logged) batchLine(t *testing.T) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, m := range l.lines(t) {
		if msg, _ := m["msg"].(string); strings.HasPrefix(msg, "outbox batch") {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d batch lines, want 1:\n%s", len(found), l.buf.String())
	}
	return found[0]
}

func handle(t *testing.T, fb *fakeBus, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, *logged) {
	t.Helper()
	var l logged
	res, err := publisher.New(fb, bus, l.logger()).Handle(t.Context(), ev)
	if err != nil {
		t.Fatalf("Handle returned an error (the whole batch would be retried): %v", err)
	}
	return res, &l
}

func failures(res events.DynamoDBEventResponse) []string {
	var out []string
	for _, f := range res.BatchItemFailures {
		out = append(out, f.ItemIdentifier)
	}
	return out
}

func TestHandle(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		ev, es := outboxBatch(t, 3)
		fb := &fakeBus{}
		res, l := handle(t, fb, ev)
		if len(res.BatchItemFailures) != 0 {
			t.Fatalf("failures %v", failures(res))
		}
		if len(fb.calls) != 1 || len(fb.calls[0]) != 3 {
			t.Fatalf("calls %v", fb.calls)
		}
		for i, e := range fb.calls[0] {
			if aws.ToString(e.EventBusName) != bus || aws.ToString(e.Source) != publisher.Source || aws.ToString(e.DetailType) != es[i].Type ||
				!aws.ToTime(e.Time).Equal(es[i].Time) || len(e.Resources) != 0 {
				t.Errorf("entry %d: %+v", i, e)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal([]byte(aws.ToString(e.Detail)), &raw); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf(`{"id":%q,"type":%q,"time":%q,"path":%q,"data":%s}`, es[i].ID, es[i].Type,
				es[i].Time.Format(time.RFC3339Nano), es[i].Path, es[i].Detail)
			if aws.ToString(e.Detail) != want {
				t.Errorf("entry %d detail\n got %s\nwant %s", i, aws.ToString(e.Detail), want)
			}
		}
		line := l.batchLine(t)
		if line["level"] != "INFO" || line["records"] != 3.0 || line["published"] != 3.0 || line["ignored"] != 0.0 || line["putEventsCalls"] != 1.0 ||
			line["firstSequenceNumber"] != seq(0) || line["lastSequenceNumber"] != seq(2) {
			t.Errorf("batch line %v", line)
		}
	})

	t.Run("Batching", func(t *testing.T) {
		ev, es := outboxBatch(t, 25)
		fb := &fakeBus{}
		res, l := handle(t, fb, ev)
		if len(res.BatchItemFailures) != 0 {
			t.Fatalf("failures %v", failures(res))
		}
		if len(fb.calls) != 3 || len(fb.calls[0]) != 10 || len(fb.calls[1]) != 10 || len(fb.calls[2]) != 5 {
			t.Fatalf("%d calls, want 10+10+5 entries", len(fb.calls))
		}
		for i, d := range fb.details(t) {
			if d.ID != es[i].ID {
				t.Fatalf("entry %d is %s, want %s: order lost", i, d.ID, es[i].ID)
			}
		}
		if line := l.batchLine(t); line["published"] != 25.0 || line["putEventsCalls"] != 3.0 {
			t.Errorf("batch line %v", line)
		}
	})

	t.Run("BatchingBySize", func(t *testing.T) {
		// Three events of ~100 KB: two fit in one 256 KB request, the third goes alone.
		var ev events.DynamoDBEvent
		for i := range 3 {
			e, err := outbox.New("big", "/platform/", t0, map[string]string{"blob": strings.Repeat("x", 100*1024)})
			if err != nil {
				t.Fatal(err)
			}
			ev.Records = append(ev.Records, record(i, events.DynamoDBOperationTypeInsert, tablestore.OutboxImage(e), nil))
		}
		fb := &fakeBus{}
		if res, _ := handle(t, fb, ev); len(res.BatchItemFailures) != 0 {
			t.Fatalf("failures %v", failures(res))
		}
		if len(fb.calls) != 2 || len(fb.calls[0]) != 2 || len(fb.calls[1]) != 1 {
			t.Fatalf("calls of %d entries", len(fb.calls))
		}
	})

	t.Run("PartialFailureReportsTheEarliest", func(t *testing.T) {
		// 25 events with other records in between: entries 3 and 7 of the second call fail.
		var ev events.DynamoDBEvent
		var seqOf []string // sequence number of the record of each event
		for i := range 25 {
			if i%4 == 0 {
				n := len(ev.Records)
				ev.Records = append(ev.Records, record(n, events.DynamoDBOperationTypeInsert, entityImage(fmt.Sprint("dst_", i)), nil))
			}
			n := len(ev.Records)
			ev.Records = append(ev.Records, record(n, events.DynamoDBOperationTypeInsert, tablestore.OutboxImage(mkEvent(t, i)), nil))
			seqOf = append(seqOf, seq(n))
		}
		fb := &fakeBus{answer: func(call int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
			if call == 1 {
				return accepted(entries, map[int]string{7: "ThrottlingException", 3: "InternalFailure"}), nil
			}
			return accepted(entries, nil), nil
		}}
		res, l := handle(t, fb, ev)
		if got := failures(res); len(got) != 1 || got[0] != seqOf[13] {
			t.Fatalf("failures %v, want only the record of event 13 (%s)", got, seqOf[13])
		}
		if len(fb.calls) != 2 {
			t.Fatalf("%d calls: the batch after a failure must wait for the retry", len(fb.calls))
		}
		line := l.batchLine(t)
		if line["level"] != "WARN" || line["retryFrom"] != seqOf[13] || line["published"] != 18.0 {
			t.Errorf("batch line %v", line)
		}
		rejected := 0
		for _, m := range l.lines(t) {
			if m["msg"] == "outbox: event rejected by EventBridge" {
				rejected++
			}
		}
		if rejected != 2 {
			t.Errorf("%d rejection lines, want 2:\n%s", rejected, l.buf.String())
		}
	})

	t.Run("CallFailure", func(t *testing.T) {
		ev, _ := outboxBatch(t, 25)
		fb := &fakeBus{answer: func(call int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
			if call == 1 {
				return nil, errors.New("connection reset")
			}
			return accepted(entries, nil), nil
		}}
		res, l := handle(t, fb, ev)
		if got := failures(res); len(got) != 1 || got[0] != seq(10) {
			t.Fatalf("failures %v, want the first record of the failed call %s", got, seq(10))
		}
		if len(fb.calls) != 2 {
			t.Fatalf("%d calls", len(fb.calls))
		}
		if line := l.batchLine(t); line["published"] != 10.0 || line["retried"] != 15.0 {
			t.Errorf("batch line %v", line)
		}
	})

	t.Run("FirstCallFailure", func(t *testing.T) {
		ev, _ := outboxBatch(t, 3)
		fb := &fakeBus{answer: func(int, []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
			return nil, context.DeadlineExceeded
		}}
		if got := failures(func() events.DynamoDBEventResponse { r, _ := handle(t, fb, ev); return r }()); len(got) != 1 || got[0] != seq(0) {
			t.Fatalf("failures %v", got)
		}
	})

	t.Run("FailureCountWithoutFailedEntry", func(t *testing.T) {
		ev, _ := outboxBatch(t, 3)
		fb := &fakeBus{answer: func(_ int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
			out := accepted(entries, nil)
			out.FailedEntryCount = 1
			return out, nil
		}}
		if res, _ := handle(t, fb, ev); len(failures(res)) != 1 || failures(res)[0] != seq(0) {
			t.Fatalf("failures %v", failures(res))
		}
	})

	t.Run("ResultsMismatch", func(t *testing.T) {
		ev, _ := outboxBatch(t, 3)
		fb := &fakeBus{answer: func(_ int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
			return accepted(entries[:2], nil), nil
		}}
		if res, _ := handle(t, fb, ev); len(failures(res)) != 1 || failures(res)[0] != seq(0) {
			t.Fatalf("failures %v", failures(res))
		}
	})

	t.Run("IgnoresOtherRecords", func(t *testing.T) {
		e := mkEvent(t, 1)
		img := tablestore.OutboxImage(e)
		ev := events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{
			record(0, events.DynamoDBOperationTypeInsert, entityImage("dst_1"), nil),
			record(1, events.DynamoDBOperationTypeModify, entityImage("dst_1"), entityImage("dst_1")),
			record(2, events.DynamoDBOperationTypeModify, img, img), // an outbox item changed: not a new event
			record(3, events.DynamoDBOperationTypeRemove, nil, img), // the TTL deleting an old event
			record(4, events.DynamoDBOperationTypeInsert, map[string]events.DynamoDBAttributeValue{"PK": events.NewStringAttribute("X")}, nil),
		}}
		fb := &fakeBus{}
		res, l := handle(t, fb, ev)
		if len(res.BatchItemFailures) != 0 || len(fb.calls) != 0 {
			t.Fatalf("failures %v, calls %d", failures(res), len(fb.calls))
		}
		if line := l.batchLine(t); line["ignored"] != 5.0 || line["published"] != 0.0 || line["putEventsCalls"] != 0.0 {
			t.Errorf("batch line %v", line)
		}
	})

	t.Run("ErrUnreadableItem", func(t *testing.T) {
		ev, _ := outboxBatch(t, 8)
		ev.Records[5].Change.NewImage["Detail"] = events.NewStringAttribute("{broken")
		fb := &fakeBus{}
		res, l := handle(t, fb, ev)
		if got := failures(res); len(got) != 1 || got[0] != seq(5) {
			t.Fatalf("failures %v, want %s", got, seq(5))
		}
		if d := fb.details(t); len(d) != 5 {
			t.Fatalf("%d published, want the 5 before the unreadable one", len(d))
		}
		if !strings.Contains(l.buf.String(), "unreadable event item") {
			t.Errorf("no error line:\n%s", l.buf.String())
		}
	})

	t.Run("ErrTooLarge", func(t *testing.T) {
		ev, _ := outboxBatch(t, 2)
		big, err := outbox.New("big", "/platform/", t0, map[string]string{"blob": strings.Repeat("x", publisher.MaxRequestBytes)})
		if err != nil {
			t.Fatal(err)
		}
		ev.Records = append(ev.Records, record(2, events.DynamoDBOperationTypeInsert, tablestore.OutboxImage(big), nil))
		fb := &fakeBus{}
		res, _ := handle(t, fb, ev)
		if got := failures(res); len(got) != 1 || got[0] != seq(2) {
			t.Fatalf("failures %v", got)
		}
		if d := fb.details(t); len(d) != 2 {
			t.Fatalf("%d published", len(d))
		}
	})

	t.Run("Empty", func(t *testing.T) {
		fb := &fakeBus{}
		if res, _ := handle(t, fb, events.DynamoDBEvent{}); len(res.BatchItemFailures) != 0 || len(fb.calls) != 0 {
			t.Fatalf("failures %v, calls %d", failures(res), len(fb.calls))
		}
	})

	t.Run("LogsNoPayload", func(t *testing.T) {
		e, err := outbox.New(outbox.UserInvited, "/platform/", t0, map[string]string{"inviteToken": "inv_secret-token"})
		if err != nil {
			t.Fatal(err)
		}
		ev := events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{record(0, events.DynamoDBOperationTypeInsert, tablestore.OutboxImage(e), nil)}}
		fb := &fakeBus{answer: func(_ int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
			return accepted(entries, map[int]string{0: "InternalFailure"}), nil
		}}
		_, l := handle(t, fb, ev)
		if strings.Contains(l.buf.String(), "secret-token") {
			t.Fatalf("the event payload reached the logs:\n%s", l.buf.String())
		}
	})
}

// TestSampleEvent feeds the handler a stream event in the exact shape Lambda delivers
// (testdata/dynamodb-stream.json: an outbox INSERT, an entity MODIFY, an outbox REMOVE by TTL).
func TestSampleEvent(t *testing.T) {
	raw, err := os.ReadFile("testdata/dynamodb-stream.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.DynamoDBEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	fb := &fakeBus{}
	res, l := handle(t, fb, ev)
	if len(res.BatchItemFailures) != 0 {
		t.Fatalf("failures %v", failures(res))
	}
	d := fb.details(t)
	if len(d) != 1 || d[0].ID != "evt_01JTQ3ZK9V8WQ6M2T4R5Y7X8ZA" || d[0].Type != outbox.UserInvited || d[0].Path != "/platform/dst_01JTQ3Y5B2C3D4E5F6G7H8J9KA/" {
		t.Fatalf("published %+v", d)
	}
	var data map[string]any
	if err := json.Unmarshal(d[0].Data, &data); err != nil || data["userId"] != "usr_01JTQ3ZK9V8WQ6M2T4R5Y7X8ZB" {
		t.Fatalf("data %s (%v)", d[0].Data, err)
	}
	if line := l.batchLine(t); line["records"] != 3.0 || line["ignored"] != 2.0 {
		t.Errorf("batch line %v", line)
	}
	// The response is what Lambda reads: {"batchItemFailures":[]} with nothing to retry.
	b, _ := json.Marshal(res)
	if string(b) != `{"batchItemFailures":[]}` {
		t.Errorf("response %s", b)
	}
}

func TestDetailRoundTrip(t *testing.T) {
	e := mkEvent(t, 7)
	d := publisher.DetailOf(e)
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back publisher.Detail
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	got := back.Event()
	if got.ID != e.ID || got.Type != e.Type || !got.Time.Equal(e.Time) || got.Path != e.Path || string(got.Detail) != string(e.Detail) {
		t.Fatalf("got %+v, want %+v", got, e)
	}
}

// TestRepositorySamples feeds each sample of events/publisher (the events a deployed function
// receives) to the handler: every outbox INSERT in it is published, nothing fails.
func TestRepositorySamples(t *testing.T) {
	files, err := filepath.Glob("../../events/publisher/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no sample events in events/publisher (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var ev events.DynamoDBEvent
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Fatal(err)
			}
			want := 0
			for _, r := range ev.Records {
				if _, ok, err := tablestore.OutboxEvent(r.Change.NewImage); ok && err == nil && r.EventName == "INSERT" {
					want++
				}
			}
			fb := &fakeBus{}
			res, _ := handle(t, fb, ev)
			if len(res.BatchItemFailures) != 0 {
				t.Fatalf("failures %v", failures(res))
			}
			if got := len(fb.details(t)); got != want || want == 0 {
				t.Fatalf("published %d, want the %d outbox inserts", got, want)
			}
		})
	}
}
