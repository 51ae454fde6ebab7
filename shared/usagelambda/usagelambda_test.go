package usagelambda_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/deadletters"
	"github.com/channelbilling/cms/shared/usage"
	"github.com/channelbilling/cms/shared/usagelambda"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeIngester answers by id: "bad..." is rejected, "retry..." is retried (failLeft times, or
// always when failLeft < 0), anything else accepted; items with decoding errors are rejected.
type fakeIngester struct {
	mu       sync.Mutex
	calls    int
	failLeft int
	seen     []string
}

func (f *fakeIngester) Ingest(_ context.Context, _ usage.Options, items []usage.Item) *usage.Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	r := &usage.Report{}
	retrying := false
	for _, it := range items {
		o := usage.Outcome{Ref: it.Ref, ID: it.Input.ID}
		f.seen = append(f.seen, it.Input.ID)
		switch {
		case len(it.Errs) > 0:
			o.Status, o.Errors = usage.Rejected, it.Errs
		case strings.HasPrefix(it.Input.ID, "bad"):
			o.Status, o.Errors = usage.Rejected, []apperr.FieldError{{Field: "quantity", Code: "negative", Message: "quantity must not be negative"}}
		case strings.HasPrefix(it.Input.ID, "retry") && f.failLeft != 0:
			o.Status, o.Errors = usage.Retry, []apperr.FieldError{{Code: "retry", Message: "try again"}}
			retrying = true
		default:
			o.Status = usage.Accepted
		}
		r.Outcomes = append(r.Outcomes, o)
	}
	if retrying && f.failLeft > 0 {
		f.failLeft--
	}
	return r
}

type fakeLetters struct {
	sent []deadletters.Letter
	fail error
}

func (f *fakeLetters) Send(_ context.Context, l []deadletters.Letter) error {
	if f.fail != nil {
		return f.fail
	}
	f.sent = append(f.sent, l...)
	return nil
}

func rec(id string) string {
	return `{"id":"` + id + `","tenantId":"tnt_1","sku":"gb","quantity":1,"timestamp":"2026-11-01T00:00:00Z"}`
}

func msg(id, body string) events.SQSMessage {
	return events.SQSMessage{MessageId: id, Body: body, Attributes: map[string]string{"ApproximateReceiveCount": "1"}, EventSourceARN: "arn:q"}
}

func TestQueue(t *testing.T) {
	ev := events.SQSEvent{Records: []events.SQSMessage{
		msg("m1", `{"records":[`+rec("a")+`,`+rec("bad-1")+`]}`),
		msg("m2", rec("retry-1")),
		msg("m3", `{"records":[`+rec("bad-2")+`,`+rec("retry-2")+`]}`),
		msg("m4", "not json"),
	}}
	t.Run("OK", func(t *testing.T) {
		ing, dl := &fakeIngester{failLeft: -1}, &fakeLetters{}
		h := &usagelambda.Queue{Usage: ing, DeadLetters: dl, Log: quiet}
		res, err := h.Handle(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		var failed []string
		for _, f := range res.BatchItemFailures {
			failed = append(failed, f.ItemIdentifier)
		}
		// m2 and m3 hold records to retry; m3's invalid record waits for the retry (never twice).
		if strings.Join(failed, ",") != "m2,m3" {
			t.Fatalf("failures %v", failed)
		}
		if len(dl.sent) != 2 || dl.sent[0].Source.MessageID != "m1" || dl.sent[0].Reason[0].Code != "negative" ||
			dl.sent[1].Source.MessageID != "m4" || dl.sent[1].ReplayBody() != "not json" || dl.sent[1].Source.Channel != "queue" {
			t.Fatalf("letters %+v", dl.sent)
		}
		var r map[string]any
		if err := json.Unmarshal(dl.sent[0].Record, &r); err != nil || r["id"] != "bad-1" {
			t.Fatalf("letter record %s", dl.sent[0].Record)
		}
	})
	t.Run("ErrLettersNotSent", func(t *testing.T) {
		h := &usagelambda.Queue{Usage: &fakeIngester{failLeft: -1}, DeadLetters: &fakeLetters{fail: errors.New("throttled")}, Log: quiet}
		res, _ := h.Handle(context.Background(), ev)
		if len(res.BatchItemFailures) != 4 {
			t.Fatalf("failures %+v: every message whose letters were not sent must come back", res.BatchItemFailures)
		}
	})
	t.Run("RedeliveryFlag", func(t *testing.T) {
		var got []bool
		h := &usagelambda.Queue{Usage: ingestFunc(func(items []usage.Item) {
			for _, it := range items {
				got = append(got, it.Redelivered)
			}
		}), DeadLetters: &fakeLetters{}, Log: quiet}
		m := msg("m1", rec("a"))
		m.Attributes["ApproximateReceiveCount"] = "2"
		_, _ = h.Handle(context.Background(), events.SQSEvent{Records: []events.SQSMessage{msg("m0", rec("b")), m}})
		if len(got) != 2 || got[0] || !got[1] {
			t.Fatalf("redelivered %v", got)
		}
	})
}

// ingestCtx is an Ingester from a function of the context and the items.
type ingestCtx func(ctx context.Context, items []usage.Item) *usage.Report

func (f ingestCtx) Ingest(ctx context.Context, _ usage.Options, items []usage.Item) *usage.Report {
	return f(ctx, items)
}

type ingestFunc func(items []usage.Item)

func (f ingestFunc) Ingest(_ context.Context, _ usage.Options, items []usage.Item) *usage.Report {
	f(items)
	r := &usage.Report{}
	for range items {
		r.Outcomes = append(r.Outcomes, usage.Outcome{Status: usage.Accepted})
	}
	return r
}

// spyIngester shows each batch to see before answering as its Ingester does.
type spyIngester struct {
	usagelambda.Ingester
	see func(items []usage.Item)
}

func (s spyIngester) Ingest(ctx context.Context, opts usage.Options, items []usage.Item) *usage.Report {
	s.see(items)
	return s.Ingester.Ingest(ctx, opts, items)
}

func kin(seq, body string) events.KinesisEventRecord {
	return events.KinesisEventRecord{EventSourceArn: "arn:s", Kinesis: events.KinesisRecord{SequenceNumber: seq, Data: []byte(body), PartitionKey: "p"}}
}

func TestStream(t *testing.T) {
	ev := events.KinesisEvent{Records: []events.KinesisEventRecord{
		kin("100", rec("a")), kin("101", rec("bad-1")), kin("102", rec("retry-1")), kin("103", rec("bad-2")), kin("1000", rec("retry-2")),
	}}
	ing, dl := &fakeIngester{failLeft: -1}, &fakeLetters{}
	h := &usagelambda.Stream{Usage: ing, DeadLetters: dl, Log: quiet}
	res, err := h.Handle(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.BatchItemFailures) != 2 || res.BatchItemFailures[0].ItemIdentifier != "102" || res.BatchItemFailures[1].ItemIdentifier != "1000" {
		t.Fatalf("failures %+v", res.BatchItemFailures)
	}
	// Only the invalid record before the first failure is dead-lettered now; 103 comes again.
	if len(dl.sent) != 1 || dl.sent[0].Source.SequenceNumber != "101" || dl.sent[0].Source.Channel != "stream" {
		t.Fatalf("letters %+v", dl.sent)
	}
	t.Run("RedeliveryFlag", func(t *testing.T) {
		// Kinesis events carry no receive count: the handler remembers what it reported for retry.
		ing := &fakeIngester{failLeft: 1}
		var got []string
		h := &usagelambda.Stream{Usage: spyIngester{ing, func(items []usage.Item) {
			for _, it := range items {
				got = append(got, it.Input.ID+"="+strconv.FormatBool(it.Redelivered))
			}
		}}, DeadLetters: &fakeLetters{}, Log: quiet}
		res, _ := h.Handle(context.Background(), events.KinesisEvent{Records: []events.KinesisEventRecord{kin("200", rec("a")), kin("201", rec("retry-1")), kin("202", rec("b"))}})
		if len(res.BatchItemFailures) != 1 || res.BatchItemFailures[0].ItemIdentifier != "201" {
			t.Fatalf("failures %+v", res.BatchItemFailures)
		}
		// Lambda resumes the shard from 201.
		res, _ = h.Handle(context.Background(), events.KinesisEvent{Records: []events.KinesisEventRecord{kin("201", rec("retry-1")), kin("202", rec("b")), kin("203", rec("c"))}})
		if len(res.BatchItemFailures) != 0 {
			t.Fatalf("failures %+v", res.BatchItemFailures)
		}
		if want := "a=false,retry-1=false,b=false,retry-1=true,b=true,c=false"; strings.Join(got, ",") != want {
			t.Fatalf("redelivered %v, want %s", got, want)
		}
	})
	t.Run("ErrLettersNotSent", func(t *testing.T) {
		h := &usagelambda.Stream{Usage: &fakeIngester{}, DeadLetters: &fakeLetters{fail: errors.New("down")}, Log: quiet}
		res, _ := h.Handle(context.Background(), events.KinesisEvent{Records: []events.KinesisEventRecord{kin("5", rec("a")), kin("6", rec("bad"))}})
		if len(res.BatchItemFailures) != 1 || res.BatchItemFailures[0].ItemIdentifier != "6" {
			t.Fatalf("failures %+v", res.BatchItemFailures)
		}
	})
}

type fakeObjects struct {
	mu   sync.Mutex
	objs map[string][]byte
	// cut makes the next read of an object fail after that many bytes (a dropped connection).
	cut map[string]int
}

func (f *fakeObjects) Open(_ context.Context, bucket, key string) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.objs[bucket+"/"+key]
	if !ok {
		return nil, apperr.NotFoundf("No such object.")
	}
	if n, ok := f.cut[bucket+"/"+key]; ok {
		delete(f.cut, bucket+"/"+key)
		return io.NopCloser(io.MultiReader(bytes.NewReader(b[:n]), errReader{errors.New("connection reset by peer")})), nil
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func (f *fakeObjects) Put(ctx context.Context, bucket, key string, body []byte, _ string) error {
	if err := ctx.Err(); err != nil {
		return err // as the S3 client does with a context that has ended
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objs[bucket+"/"+key] = append([]byte(nil), body...)
	return nil
}

func (f *fakeObjects) report(t *testing.T, key string) usagelambda.FileReport {
	t.Helper()
	var r usagelambda.FileReport
	if err := json.Unmarshal(f.objs["b/"+usagelambda.ReportKey(key)], &r); err != nil {
		t.Fatalf("report of %s: %v", key, err)
	}
	return r
}

func s3event(keys ...string) events.S3Event {
	var ev events.S3Event
	for _, k := range keys {
		var r events.S3EventRecord
		r.EventName = "ObjectCreated:Put"
		r.S3.Bucket.Name = "b"
		r.S3.Object.Key = k
		ev.Records = append(ev.Records, r)
	}
	return ev
}

func TestFiles(t *testing.T) {
	csv := "id,tenantId,sku,quantity,timestamp\na,tnt_1,gb,1,2026-11-01T00:00:00Z\nbad-1,tnt_1,gb,-1,2026-11-01T00:00:00Z\nshort,tnt_1\n"
	t.Run("OK", func(t *testing.T) {
		objs := &fakeObjects{objs: map[string][]byte{"b/usage/x y.csv": []byte(csv), "b/other/z.csv": []byte(csv)}}
		h := &usagelambda.Files{Usage: &fakeIngester{}, Objects: objs, Log: quiet}
		if err := h.Handle(context.Background(), s3event("usage/x+y.csv", "other/z.csv")); err != nil {
			t.Fatal(err)
		}
		r := objs.report(t, "usage/x y.csv")
		if r.Status != usagelambda.StatusCompleted || r.Records != 3 || r.Accepted != 1 || r.Rejected != 2 || r.Format != "csv" ||
			len(r.RejectedLines) != 2 || r.RejectedLines[0].Line != 3 || r.RejectedLines[0].ID != "bad-1" || r.RejectedLines[1].Errors[0].Code != "field_count" {
			t.Fatalf("report %+v", r)
		}
		if _, ok := objs.objs["b/"+usagelambda.ReportKey("other/z.csv")]; ok {
			t.Fatal("a file outside usage/ was read")
		}
	})
	t.Run("TransientThenOK", func(t *testing.T) {
		objs := &fakeObjects{objs: map[string][]byte{"b/usage/r.csv": []byte("id,tenantId,sku,quantity,timestamp\nretry-1,tnt_1,gb,1,2026-11-01T00:00:00Z\n")}}
		h := &usagelambda.Files{Usage: &fakeIngester{failLeft: 2}, Objects: objs, Log: quiet, Backoff: 1}
		if err := h.Handle(context.Background(), s3event("usage/r.csv")); err != nil {
			t.Fatal(err)
		}
		if r := objs.report(t, "usage/r.csv"); r.Status != usagelambda.StatusCompleted || r.Accepted != 1 {
			t.Fatalf("report %+v", r)
		}
	})
	t.Run("ErrStillFailing", func(t *testing.T) {
		objs := &fakeObjects{objs: map[string][]byte{"b/usage/r.csv": []byte("id,tenantId,sku,quantity,timestamp\nretry-1,tnt_1,gb,1,2026-11-01T00:00:00Z\na,tnt_1,gb,1,2026-11-01T00:00:00Z\n")}}
		h := &usagelambda.Files{Usage: &fakeIngester{failLeft: -1}, Objects: objs, Log: quiet, Backoff: 1, Retries: 2}
		if err := h.Handle(context.Background(), s3event("usage/r.csv")); err == nil {
			t.Fatal("no error: the event would not be retried")
		}
		if r := objs.report(t, "usage/r.csv"); r.Status != usagelambda.StatusFailed || r.NotCounted != 1 || r.Accepted != 1 || r.Records != 2 {
			t.Fatalf("report %+v", r)
		}
	})
	t.Run("ErrReadMidFile", func(t *testing.T) {
		// The connection drops after the third line: the lines read are counted, the event must be
		// retried for the rest, and the retry reads the whole file.
		body := "id,tenantId,sku,quantity,timestamp\na,tnt_1,gb,1,2026-11-01T00:00:00Z\nb,tnt_1,gb,1,2026-11-01T00:00:00Z\nc,tnt_1,gb,1,2026-11-01T00:00:00Z\n"
		cut := strings.Index(body, "\nc,") + 1
		objs := &fakeObjects{objs: map[string][]byte{"b/usage/m.csv": []byte(body)}, cut: map[string]int{"b/usage/m.csv": cut}}
		ing := &fakeIngester{}
		h := &usagelambda.Files{Usage: ing, Objects: objs, Log: quiet}
		if err := h.Handle(context.Background(), s3event("usage/m.csv")); err == nil {
			t.Fatal("no error: the event would not be retried and line 4 never counted")
		}
		if r := objs.report(t, "usage/m.csv"); r.Status != usagelambda.StatusFailed || r.Error == "" || r.Accepted != 2 || r.Records != 2 {
			t.Fatalf("report %+v", r)
		}
		if err := h.Handle(context.Background(), s3event("usage/m.csv")); err != nil {
			t.Fatal(err)
		}
		if r := objs.report(t, "usage/m.csv"); r.Status != usagelambda.StatusCompleted || r.Records != 3 || r.Error != "" {
			t.Fatalf("report of the retry %+v", r)
		}
		if strings.Join(ing.seen, ",") != "a,b,a,b,c" {
			t.Fatalf("ingested %v", ing.seen)
		}
	})
	t.Run("ErrTimeout", func(t *testing.T) {
		// The function's deadline comes while a batch is being counted (a file too long for one
		// invocation): the report must still be written, saying failed, before Lambda stops the
		// function, and the event retried.
		var lines strings.Builder
		lines.WriteString("id,tenantId,sku,quantity,timestamp\n")
		for i := range 3 * usagelambda.FileBatch {
			lines.WriteString("r" + strconv.Itoa(i) + ",tnt_1,gb,1,2026-11-01T00:00:00Z\n")
		}
		objs := &fakeObjects{objs: map[string][]byte{"b/usage/long.csv": []byte(lines.String())}}
		var batches int
		slow := ingestCtx(func(ctx context.Context, items []usage.Item) *usage.Report {
			batches++
			r := &usage.Report{}
			if batches > 1 {
				<-ctx.Done() // the second batch is still being counted at the deadline
			}
			for _, it := range items {
				o := usage.Outcome{Ref: it.Ref, ID: it.Input.ID, Status: usage.Accepted}
				if ctx.Err() != nil {
					o.Status, o.Errors = usage.Retry, []apperr.FieldError{{Code: "retry", Message: ctx.Err().Error()}}
				}
				r.Outcomes = append(r.Outcomes, o)
			}
			return r
		})
		h := &usagelambda.Files{Usage: slow, Objects: objs, Log: quiet, Backoff: 1, ReportMargin: time.Second}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := h.Handle(ctx, s3event("usage/long.csv")); err == nil {
			t.Fatal("no error: the event would not be retried and the rest of the file never counted")
		}
		if ctx.Err() != nil {
			t.Fatal("the handler ran to the function's deadline: Lambda would have stopped it before its report")
		}
		r := objs.report(t, "usage/long.csv")
		if r.Status != usagelambda.StatusFailed || r.Error == "" || r.Accepted != usagelambda.FileBatch || r.NotCounted != usagelambda.FileBatch {
			t.Fatalf("report %+v", r)
		}
		if batches != 2 {
			t.Fatalf("%d batches ingested, want 2 (nothing after the time ran out)", batches)
		}
	})
	t.Run("ErrGone", func(t *testing.T) {
		objs := &fakeObjects{objs: map[string][]byte{}}
		h := &usagelambda.Files{Usage: &fakeIngester{}, Objects: objs, Log: quiet}
		if err := h.Handle(context.Background(), s3event("usage/gone.csv")); err != nil {
			t.Fatal(err)
		}
		if r := objs.report(t, "usage/gone.csv"); r.Status != usagelambda.StatusFailed || r.Error == "" {
			t.Fatalf("report %+v", r)
		}
	})
	t.Run("ErrCorruptGzip", func(t *testing.T) {
		objs := &fakeObjects{objs: map[string][]byte{"b/usage/c.csv.gz": {0x1f, 0x8b, 0, 1, 2}}}
		h := &usagelambda.Files{Usage: &fakeIngester{}, Objects: objs, Log: quiet}
		if err := h.Handle(context.Background(), s3event("usage/c.csv.gz")); err != nil {
			t.Fatal(err) // permanent: retrying would not help
		}
		if r := objs.report(t, "usage/c.csv.gz"); r.Status != usagelambda.StatusFailed {
			t.Fatalf("report %+v", r)
		}
	})
}
