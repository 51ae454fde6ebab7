package streams_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/channelbilling/cms/local/streams"
)

const arn = "arn:aws:dynamodb:ddblocal:000000000000:table/t/stream/2026-01-01T00:00:00.000"

// fakeStream is an in-memory DynamoDB stream: shards of records, iterators "<shard>|<position>".
type fakeStream struct {
	mu     sync.Mutex
	shards []*fakeShard
	seq    int
	// failGets fails that many GetRecords calls.
	failGets int
}

type fakeShard struct {
	id, parent string
	records    []types.Record
	closed     bool
}

func (f *fakeStream) addShard(id, parent string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shards = append(f.shards, &fakeShard{id: id, parent: parent})
}

// put appends records with the given PK values to a shard and returns their sequence numbers.
func (f *fakeStream) put(shard string, pks ...string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var seqs []string
	for _, s := range f.shards {
		if s.id != shard {
			continue
		}
		for _, pk := range pks {
			f.seq++
			seq := fmt.Sprintf("%021d", f.seq)
			seqs = append(seqs, seq)
			s.records = append(s.records, types.Record{
				EventID: aws.String("ev-" + seq), EventName: types.OperationTypeInsert, EventSource: aws.String("aws:dynamodb"),
				EventVersion: aws.String("1.1"), AwsRegion: aws.String("ddblocal"),
				Dynamodb: &types.StreamRecord{
					Keys:           map[string]types.AttributeValue{"PK": &types.AttributeValueMemberS{Value: pk}},
					NewImage:       map[string]types.AttributeValue{"PK": &types.AttributeValueMemberS{Value: pk}},
					SequenceNumber: aws.String(seq), SizeBytes: aws.Int64(10), StreamViewType: types.StreamViewTypeNewAndOldImages,
				},
			})
		}
	}
	return seqs
}

func (f *fakeStream) close(shard string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.shards {
		if s.id == shard {
			s.closed = true
		}
	}
}

func (f *fakeStream) shard(id string) *fakeShard {
	for _, s := range f.shards {
		if s.id == id {
			return s
		}
	}
	return nil
}

func (f *fakeStream) DescribeStream(_ context.Context, in *dynamodbstreams.DescribeStreamInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// One shard per page, to exercise the pagination.
	i := 0
	if in.ExclusiveStartShardId != nil {
		for i < len(f.shards) && f.shards[i].id != *in.ExclusiveStartShardId {
			i++
		}
		i++
	}
	d := &types.StreamDescription{StreamArn: in.StreamArn}
	if i < len(f.shards) {
		s := f.shards[i]
		sh := types.Shard{ShardId: aws.String(s.id), SequenceNumberRange: &types.SequenceNumberRange{StartingSequenceNumber: aws.String("0")}}
		if s.parent != "" {
			sh.ParentShardId = aws.String(s.parent)
		}
		if s.closed {
			sh.SequenceNumberRange.EndingSequenceNumber = aws.String("99999999999999999999")
		}
		d.Shards = []types.Shard{sh}
		if i+1 < len(f.shards) {
			d.LastEvaluatedShardId = aws.String(s.id)
		}
	}
	return &dynamodbstreams.DescribeStreamOutput{StreamDescription: d}, nil
}

func (f *fakeStream) GetShardIterator(_ context.Context, in *dynamodbstreams.GetShardIteratorInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.shard(aws.ToString(in.ShardId))
	if s == nil {
		return nil, &types.ResourceNotFoundException{Message: aws.String("no shard")}
	}
	pos := 0
	switch in.ShardIteratorType {
	case types.ShardIteratorTypeTrimHorizon:
	case types.ShardIteratorTypeLatest:
		pos = len(s.records)
	case types.ShardIteratorTypeAfterSequenceNumber, types.ShardIteratorTypeAtSequenceNumber:
		pos = -1
		for i, r := range s.records {
			if aws.ToString(r.Dynamodb.SequenceNumber) == aws.ToString(in.SequenceNumber) {
				pos = i
				if in.ShardIteratorType == types.ShardIteratorTypeAfterSequenceNumber {
					pos++
				}
			}
		}
		if pos < 0 {
			return nil, &types.TrimmedDataAccessException{Message: aws.String("trimmed")}
		}
	}
	return &dynamodbstreams.GetShardIteratorOutput{ShardIterator: aws.String(s.id + "|" + strconv.Itoa(pos))}, nil
}

func (f *fakeStream) GetRecords(_ context.Context, in *dynamodbstreams.GetRecordsInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failGets > 0 {
		f.failGets--
		return nil, &types.ExpiredIteratorException{Message: aws.String("expired")}
	}
	id, p, _ := strings.Cut(aws.ToString(in.ShardIterator), "|")
	pos, _ := strconv.Atoi(p)
	s := f.shard(id)
	end := min(pos+int(aws.ToInt32(in.Limit)), len(s.records))
	out := &dynamodbstreams.GetRecordsOutput{Records: append([]types.Record(nil), s.records[pos:end]...)}
	if !s.closed || end < len(s.records) {
		out.NextShardIterator = aws.String(id + "|" + strconv.Itoa(end))
	}
	return out, nil
}

// recorder is a handler that records every call and answers with respond (nil: success).
type recorder struct {
	mu      sync.Mutex
	calls   [][]string // sequence numbers of each call
	respond func(call int, seqs []string) (events.DynamoDBEventResponse, error)
}

func (r *recorder) handle(_ context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	var seqs []string
	for _, rec := range ev.Records {
		if rec.EventSourceArn != arn || rec.EventSource != "aws:dynamodb" {
			return events.DynamoDBEventResponse{}, fmt.Errorf("record %+v", rec)
		}
		seqs = append(seqs, rec.Change.SequenceNumber)
	}
	r.mu.Lock()
	n := len(r.calls)
	r.calls = append(r.calls, seqs)
	r.mu.Unlock()
	if r.respond != nil {
		return r.respond(n, seqs)
	}
	return events.DynamoDBEventResponse{}, nil
}

// delivered returns every sequence number handed to the handler, in call order.
func (r *recorder) delivered() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.calls {
		out = append(out, c...)
	}
	return out
}

// fastOptions are options with short waits, for tests.
func fastOptions(log *slog.Logger) streams.Options {
	return streams.Options{PollInterval: 2 * time.Millisecond, DiscoveryInterval: 5 * time.Millisecond,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Log: log}
}

func quietLog() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewJSONHandler(&lockedWriter{w: &buf}, nil)), &buf
}

// logMu guards the log buffers of quietLog.
var logMu sync.Mutex

type lockedWriter struct{ w *bytes.Buffer }

func (l *lockedWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return l.w.Write(p)
}

// logged returns what the logger wrote so far.
func logged(buf *bytes.Buffer) string {
	logMu.Lock()
	defer logMu.Unlock()
	return buf.String()
}

// eventually waits until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func run(t *testing.T, fs *fakeStream, r *recorder, opts streams.Options) {
	t.Helper()
	stop := streams.New(fs, arn, r.handle, opts).Start(context.Background())
	t.Cleanup(stop)
}

func TestPoller(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		fs := &fakeStream{}
		fs.addShard("s1", "")
		want := fs.put("s1", "a", "b", "c", "d", "e")
		r := &recorder{}
		log, _ := quietLog()
		opts := fastOptions(log)
		opts.BatchSize = 2
		run(t, fs, r, opts)
		eventually(t, "five records", func() bool { return len(r.delivered()) == 5 })
		want = append(want, fs.put("s1", "f")...) // written while polling
		eventually(t, "the sixth", func() bool { return len(r.delivered()) == 6 })
		if got := r.delivered(); !reflect.DeepEqual(got, want) {
			t.Fatalf("delivered %v, want %v", got, want)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.calls[0]) != 2 {
			t.Fatalf("first batch of %d records, want BatchSize 2", len(r.calls[0]))
		}
	})

	t.Run("PartialFailureRetriesFromTheEarliest", func(t *testing.T) {
		fs := &fakeStream{}
		fs.addShard("s1", "")
		seqs := fs.put("s1", "a", "b", "c", "d", "e")
		r := &recorder{respond: func(call int, got []string) (events.DynamoDBEventResponse, error) {
			if call == 0 { // d and b failed: retry from b
				return events.DynamoDBEventResponse{BatchItemFailures: []events.DynamoDBBatchItemFailure{{ItemIdentifier: got[3]}, {ItemIdentifier: got[1]}}}, nil
			}
			return events.DynamoDBEventResponse{}, nil
		}}
		log, _ := quietLog()
		run(t, fs, r, fastOptions(log))
		eventually(t, "the retry", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.calls) >= 2 })
		r.mu.Lock()
		defer r.mu.Unlock()
		if !reflect.DeepEqual(r.calls[1], seqs[1:]) {
			t.Fatalf("retried %v, want %v (from the earliest failure on)", r.calls[1], seqs[1:])
		}
	})

	t.Run("HandlerErrorRetriesTheWholeBatch", func(t *testing.T) {
		for name, tc := range map[string]struct {
			respond func(int, []string) (events.DynamoDBEventResponse, error)
			okCall  int // the first call that succeeds
		}{
			"Error": {func(call int, _ []string) (events.DynamoDBEventResponse, error) {
				if call < 2 {
					return events.DynamoDBEventResponse{}, errors.New("boom")
				}
				return events.DynamoDBEventResponse{}, nil
			}, 2},
			"Panic": {func(call int, _ []string) (events.DynamoDBEventResponse, error) {
				if call == 0 {
					panic("boom")
				}
				return events.DynamoDBEventResponse{}, nil
			}, 1},
			"UnknownIdentifier": {func(call int, _ []string) (events.DynamoDBEventResponse, error) {
				if call == 0 {
					return events.DynamoDBEventResponse{BatchItemFailures: []events.DynamoDBBatchItemFailure{{ItemIdentifier: "not-in-batch"}}}, nil
				}
				return events.DynamoDBEventResponse{}, nil
			}, 1},
		} {
			t.Run(name, func(t *testing.T) {
				fs := &fakeStream{}
				fs.addShard("s1", "")
				seqs := fs.put("s1", "a", "b", "c")
				r := &recorder{respond: tc.respond}
				log, _ := quietLog()
				run(t, fs, r, fastOptions(log))
				eventually(t, "a successful call", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.calls) > tc.okCall })
				r.mu.Lock()
				defer r.mu.Unlock()
				for i, c := range r.calls[:tc.okCall+1] {
					if !reflect.DeepEqual(c, seqs) {
						t.Fatalf("call %d got %v, want the whole batch %v", i, c, seqs)
					}
				}
			})
		}
	})

	t.Run("MaxRetriesGivesUpLoudly", func(t *testing.T) {
		fs := &fakeStream{}
		fs.addShard("s1", "")
		seqs := fs.put("s1", "a", "b", "c")
		r := &recorder{respond: func(_ int, got []string) (events.DynamoDBEventResponse, error) {
			for _, s := range got {
				if s == seqs[1] {
					return events.DynamoDBEventResponse{BatchItemFailures: []events.DynamoDBBatchItemFailure{{ItemIdentifier: s}}}, nil
				}
			}
			return events.DynamoDBEventResponse{}, nil
		}}
		log, buf := quietLog()
		opts := fastOptions(log)
		opts.MaxRetries = 2
		run(t, fs, r, opts)
		eventually(t, "the records given up", func() bool { return strings.Count(logged(buf), "record given up") == 2 })
		later := fs.put("s1", "d")
		eventually(t, "the record after the given-up ones", func() bool {
			d := r.delivered()
			return len(d) > 0 && d[len(d)-1] == later[0]
		})
		r.mu.Lock()
		calls := r.calls
		r.mu.Unlock()
		if len(calls) != 1+2+1 || !reflect.DeepEqual(calls[1], seqs[1:]) || !reflect.DeepEqual(calls[2], seqs[1:]) {
			t.Fatalf("calls %v, want the batch, 2 retries from b, then d", calls)
		}
		out := logged(buf)
		for _, s := range seqs[1:] {
			if !strings.Contains(out, `"sequenceNumber":"`+s+`"`) {
				t.Errorf("given-up record %s not logged:\n%s", s, out)
			}
		}
	})

	t.Run("ReopensAfterGetRecordsFailure", func(t *testing.T) {
		fs := &fakeStream{}
		fs.addShard("s1", "")
		first := fs.put("s1", "a", "b")
		r := &recorder{}
		log, _ := quietLog()
		run(t, fs, r, fastOptions(log))
		eventually(t, "the first records", func() bool { return len(r.delivered()) == 2 })
		fs.mu.Lock()
		fs.failGets = 2
		fs.mu.Unlock()
		next := fs.put("s1", "c")
		eventually(t, "the record after the failures", func() bool { return len(r.delivered()) == 3 })
		time.Sleep(20 * time.Millisecond)
		if got, want := r.delivered(), append(first, next...); !reflect.DeepEqual(got, want) {
			t.Fatalf("delivered %v, want %v: nothing twice, nothing lost", got, want)
		}
	})

	t.Run("ParentBeforeChild", func(t *testing.T) {
		fs := &fakeStream{}
		fs.addShard("parent", "")
		fs.addShard("child", "parent")
		p := fs.put("parent", "a", "b", "c")
		c := fs.put("child", "d", "e")
		r := &recorder{}
		log, _ := quietLog()
		opts := fastOptions(log)
		opts.BatchSize = 1
		run(t, fs, r, opts)
		time.Sleep(30 * time.Millisecond)
		if got := r.delivered(); !reflect.DeepEqual(got, p) {
			t.Fatalf("delivered %v before the parent closed, want only the parent's %v", got, p)
		}
		fs.close("parent")
		eventually(t, "the child's records", func() bool { return len(r.delivered()) == 5 })
		if got, want := r.delivered(), append(p, c...); !reflect.DeepEqual(got, want) {
			t.Fatalf("delivered %v, want %v", got, want)
		}
	})

	t.Run("Latest", func(t *testing.T) {
		fs := &fakeStream{}
		fs.addShard("old", "")
		fs.put("old", "a")
		fs.close("old")
		fs.addShard("open", "old")
		fs.put("open", "b")
		r := &recorder{}
		log, _ := quietLog()
		opts := fastOptions(log)
		opts.StartingPosition = streams.Latest
		run(t, fs, r, opts)
		time.Sleep(30 * time.Millisecond)
		want := fs.put("open", "c")
		fs.addShard("new", "open") // a shard appearing later is read from its start
		fs.close("open")
		want = append(want, fs.put("new", "d")...)
		eventually(t, "the new records", func() bool { return len(r.delivered()) == 2 })
		time.Sleep(20 * time.Millisecond)
		if got := r.delivered(); !reflect.DeepEqual(got, want) {
			t.Fatalf("delivered %v, want only the records written after the start %v", got, want)
		}
	})
}

func TestLambdaRecord(t *testing.T) {
	when := time.Unix(1777626927, 0).UTC()
	rec := types.Record{
		EventID: aws.String("e1"), EventName: types.OperationTypeModify, EventSource: aws.String("aws:dynamodb"),
		EventVersion: aws.String("1.1"), AwsRegion: aws.String("eu-west-1"),
		UserIdentity: &types.Identity{Type: aws.String("Service"), PrincipalId: aws.String("dynamodb.amazonaws.com")},
		Dynamodb: &types.StreamRecord{
			ApproximateCreationDateTime: &when,
			Keys:                        map[string]types.AttributeValue{"PK": &types.AttributeValueMemberS{Value: "ENT#1"}},
			NewImage: map[string]types.AttributeValue{
				"S": &types.AttributeValueMemberS{Value: "s"}, "N": &types.AttributeValueMemberN{Value: "1.5"},
				"B": &types.AttributeValueMemberB{Value: []byte{1, 2}}, "BOOL": &types.AttributeValueMemberBOOL{Value: true},
				"NULL": &types.AttributeValueMemberNULL{Value: true}, "SS": &types.AttributeValueMemberSS{Value: []string{"x", "y"}},
				"NS": &types.AttributeValueMemberNS{Value: []string{"1", "2"}}, "BS": &types.AttributeValueMemberBS{Value: [][]byte{{3}}},
				"L": &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberS{Value: "i"}, &types.AttributeValueMemberN{Value: "2"}}},
				"M": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"k": &types.AttributeValueMemberS{Value: "v"}}},
			},
			OldImage:       map[string]types.AttributeValue{"S": &types.AttributeValueMemberS{Value: "old"}},
			SequenceNumber: aws.String("000000000000000000042"), SizeBytes: aws.Int64(99), StreamViewType: types.StreamViewTypeNewAndOldImages,
		},
	}
	got, err := json.Marshal(events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{streams.LambdaRecord(arn, rec)}})
	if err != nil {
		t.Fatal(err)
	}
	// What Lambda delivers for that record (the shape of aws-lambda-go's testdata).
	want := `{"Records":[{"awsRegion":"eu-west-1","dynamodb":{"ApproximateCreationDateTime":1777626927,
		"Keys":{"PK":{"S":"ENT#1"}},
		"NewImage":{"B":{"B":"AQI="},"BOOL":{"BOOL":true},"BS":{"BS":["Aw=="]},"L":{"L":[{"S":"i"},{"N":"2"}]},"M":{"M":{"k":{"S":"v"}}},
			"N":{"N":"1.5"},"NS":{"NS":["1","2"]},"NULL":{"NULL":true},"S":{"S":"s"},"SS":{"SS":["x","y"]}},
		"OldImage":{"S":{"S":"old"}},
		"SequenceNumber":"000000000000000000042","SizeBytes":99,"StreamViewType":"NEW_AND_OLD_IMAGES"},
		"eventID":"e1","eventName":"MODIFY","eventSource":"aws:dynamodb","eventVersion":"1.1","eventSourceARN":"` + arn + `",
		"userIdentity":{"type":"Service","principalId":"dynamodb.amazonaws.com"}}]}`
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// And it reads back as the event type Lambda handlers take.
	var back events.DynamoDBEvent
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if back.Records[0].Change.NewImage["M"].Map()["k"].String() != "v" {
		t.Fatalf("round trip: %+v", back.Records[0].Change.NewImage)
	}
}
