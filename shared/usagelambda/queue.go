package usagelambda

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/channelbilling/cms/shared/deadletters"
	"github.com/channelbilling/cms/shared/usage"
)

// Queue is the handler of the usage queue's event source mapping (batch size up to 10
// messages, ReportBatchItemFailures). A message is one record or {"records": [...]}.
type Queue struct {
	Usage       Ingester
	DeadLetters DeadLetters
	Log         *slog.Logger
	Now         func() time.Time
}

// Handle counts the records of every message. A message is reported as failed (retried after
// its visibility timeout) only when one of its records could not be counted for a transient
// reason or its dead letters could not be sent; its invalid records go to the dead-letter queue
// once the rest of it has succeeded, so that a retry never sends them twice. It returns an
// error only for a batch it cannot answer for, which Lambda then retries whole.
func (h *Queue) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var items []usage.Item
	var owner []int
	for mi, m := range ev.Records {
		n, _ := strconv.Atoi(m.Attributes["ApproximateReceiveCount"])
		for _, it := range usage.DecodeMessage("message "+m.MessageId, []byte(m.Body)) {
			it.Redelivered = n > 1
			items = append(items, it)
			owner = append(owner, mi)
		}
	}
	rep := h.Usage.Ingest(ctx, usage.Options{Source: usage.SourceQueue, Name: "sqs " + strconv.Itoa(len(ev.Records)) + " messages"}, items)
	failed := make([]bool, len(ev.Records))
	for i, o := range rep.Outcomes {
		if o.Status == usage.Retry {
			failed[owner[i]] = true
		}
	}
	var letters []deadletters.Letter
	var letterOwner []int
	now := nowOf(h.Now)
	for i, o := range rep.Outcomes {
		if o.Status != usage.Rejected || failed[owner[i]] {
			continue
		}
		m := ev.Records[owner[i]]
		letters = append(letters, letter(o, items[i], deadletters.Source{Channel: string(usage.SourceQueue), MessageID: m.MessageId,
			EventSourceARN: m.EventSourceARN}, now))
		letterOwner = append(letterOwner, owner[i])
	}
	if len(letters) > 0 {
		if err := h.DeadLetters.Send(ctx, letters); err != nil {
			logger(h.Log).Error("usage dead letters", "channel", "queue", "letters", len(letters), "err", err)
			for _, mi := range letterOwner {
				failed[mi] = true
			}
		}
	}
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	for mi, f := range failed {
		if f {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: ev.Records[mi].MessageId})
		}
	}
	if len(resp.BatchItemFailures) > 0 || len(letters) > 0 {
		logger(h.Log).Debug("usage queue batch", "messages", len(ev.Records), "records", len(items), "deadLetters", len(letters),
			"failedMessages", len(resp.BatchItemFailures))
	}
	return resp, nil
}
