package usagelambda

import (
	"context"
	"log/slog"
	"math/big"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/channelbilling/cms/shared/deadletters"
	"github.com/channelbilling/cms/shared/usage"
)

// Stream is the handler of the usage stream's event source mapping (ReportBatchItemFailures):
// each Kinesis record carries one usage record.
type Stream struct {
	Usage       Ingester
	DeadLetters DeadLetters
	Log         *slog.Logger
	Now         func() time.Time

	// retried holds the records of this instance's earlier batches that Lambda delivers again
	// (from the lowest sequence number reported failed on). Kinesis events carry no receive count;
	// a shard's batches go to one instance at a time, so a retried batch usually comes back here,
	// and its records are marked Redelivered: their claims are read first instead of paying a
	// refused put each. Only the cost depends on it, never what counts.
	mu      sync.Mutex
	retried map[string]bool
}

// maxRetried bounds the records remembered for redelivery (a few batches' worth).
const maxRetried = 10000

func retryKey(r events.KinesisEventRecord) string {
	id := r.EventID // "<shard>:<sequence number>"
	if id == "" {
		id = r.Kinesis.SequenceNumber
	}
	return r.EventSourceArn + " " + id
}

// markRedelivered sets Redelivered on the items whose records were reported for retry before,
// and forgets them.
func (h *Stream) markRedelivered(ev events.KinesisEvent, items []usage.Item) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, r := range ev.Records {
		if k := retryKey(r); h.retried[k] {
			items[i].Redelivered = true
			delete(h.retried, k)
		}
	}
}

// remember records the records Lambda delivers again after this answer: every record of the
// batch from the lowest sequence number reported on (Lambda resumes the shard from there).
func (h *Stream) remember(ev events.KinesisEvent, resp events.KinesisEventResponse) {
	if len(resp.BatchItemFailures) == 0 {
		return
	}
	lowest := resp.BatchItemFailures[0].ItemIdentifier
	for _, f := range resp.BatchItemFailures[1:] {
		if seqLess(f.ItemIdentifier, lowest) {
			lowest = f.ItemIdentifier
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.retried == nil || len(h.retried)+len(ev.Records) > maxRetried {
		h.retried = map[string]bool{}
	}
	for _, r := range ev.Records {
		if !seqLess(r.Kinesis.SequenceNumber, lowest) {
			h.retried[retryKey(r)] = true
		}
	}
}

// seqLess orders Kinesis sequence numbers (decimal strings of up to 128 bits).
func seqLess(a, b string) bool {
	if len(a) != len(b) {
		x, _ := new(big.Int).SetString(a, 10)
		y, _ := new(big.Int).SetString(b, 10)
		if x != nil && y != nil {
			return x.Cmp(y) < 0
		}
		return len(a) < len(b)
	}
	return a < b
}

// Handle counts the records of the batch. Lambda retries a shard from the lowest sequence
// number reported, so every record that could not be counted for a transient reason is
// reported by its sequence number; an invalid record is dead-lettered when it lies before the
// first such failure (a later one is delivered again with the retry and dead-lettered then).
// A dead letter that cannot be sent is reported like a transient failure. It returns an error
// only for a batch it cannot answer for, which Lambda then retries whole.
func (h *Stream) Handle(ctx context.Context, ev events.KinesisEvent) (events.KinesisEventResponse, error) {
	items := make([]usage.Item, len(ev.Records))
	for i, r := range ev.Records {
		items[i] = usage.Item{Ref: "sequence " + r.Kinesis.SequenceNumber, Raw: r.Kinesis.Data}
		items[i].Input, items[i].Errs = usage.DecodeRecord(r.Kinesis.Data)
	}
	h.markRedelivered(ev, items)
	rep := h.Usage.Ingest(ctx, usage.Options{Source: usage.SourceStream, Name: "kinesis " + strconv.Itoa(len(ev.Records)) + " records"}, items)
	lowest := ""
	for i, o := range rep.Outcomes {
		if seq := ev.Records[i].Kinesis.SequenceNumber; o.Status == usage.Retry && (lowest == "" || seqLess(seq, lowest)) {
			lowest = seq
		}
	}
	var letters []deadletters.Letter
	var letterSeq []string
	now := nowOf(h.Now)
	for i, o := range rep.Outcomes {
		r := ev.Records[i]
		if o.Status != usage.Rejected || (lowest != "" && !seqLess(r.Kinesis.SequenceNumber, lowest)) {
			continue
		}
		letters = append(letters, letter(o, items[i], deadletters.Source{Channel: string(usage.SourceStream), SequenceNumber: r.Kinesis.SequenceNumber,
			PartitionKey: r.Kinesis.PartitionKey, EventSourceARN: r.EventSourceArn}, now))
		letterSeq = append(letterSeq, r.Kinesis.SequenceNumber)
	}
	failures := map[string]bool{}
	for i, o := range rep.Outcomes {
		if o.Status == usage.Retry {
			failures[ev.Records[i].Kinesis.SequenceNumber] = true
		}
	}
	if len(letters) > 0 {
		if err := h.DeadLetters.Send(ctx, letters); err != nil {
			logger(h.Log).Error("usage dead letters", "channel", "stream", "letters", len(letters), "err", err)
			for _, s := range letterSeq {
				failures[s] = true
			}
		}
	}
	resp := events.KinesisEventResponse{BatchItemFailures: []events.KinesisBatchItemFailure{}}
	for _, r := range ev.Records { // in stream order
		if failures[r.Kinesis.SequenceNumber] {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.KinesisBatchItemFailure{ItemIdentifier: r.Kinesis.SequenceNumber})
		}
	}
	h.remember(ev, resp)
	if len(resp.BatchItemFailures) > 0 || len(letters) > 0 {
		logger(h.Log).Debug("usage stream batch", "records", len(ev.Records), "deadLetters", len(letters), "failed", len(resp.BatchItemFailures))
	}
	return resp, nil
}
