// Package publisher publishes the outbox (SPEC 13): it receives the table's DynamoDB stream
// batches, the way Lambda delivers them, keeps the outbox event items that were inserted, and
// puts them on the EventBridge bus. It knows no domain: an event is an id, a type, a time, a
// hierarchy path and an opaque JSON payload.
//
// Publication is at least once. A batch that is not fully published reports the sequence number
// of its earliest unpublished record (a partial batch failure); the stream then delivers that
// record and every later one again, so an event can reach the bus more than once. Every event
// carries its outbox id: consumers drop the ids they have seen.
package publisher

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/tablestore"
)

// Source is the source of every event the publisher puts on the bus; its detail type is the
// event type ("user.invited").
const Source = "cms"

// EventBridge limits of one PutEvents call.
const (
	MaxEntries      = 10         // entries per call
	MaxRequestBytes = 256 * 1024 // total size of the entries of one call, as EventBridge counts it
)

// Detail is the detail of every event on the bus. ID is the outbox event's id: the same on every
// delivery of one event, so consumers drop duplicates by it. Data is the event's own payload
// (outbox.Event.Detail).
type Detail struct {
	ID   string          `json:"id"`
	Type string          `json:"type"`
	Time time.Time       `json:"time"`
	Path string          `json:"path"`
	Data json.RawMessage `json:"data"`
}

// DetailOf returns the bus detail of an outbox event.
func DetailOf(e outbox.Event) Detail {
	return Detail{ID: e.ID, Type: e.Type, Time: e.Time.UTC(), Path: e.Path, Data: e.Detail}
}

// Event returns the outbox event a bus detail carries.
func (d Detail) Event() outbox.Event {
	return outbox.Event{ID: d.ID, Type: d.Type, Time: d.Time, Path: d.Path, Detail: d.Data}
}

// Client is the part of the EventBridge client the publisher uses (*eventbridge.Client).
type Client interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// Publisher puts the outbox events of stream batches on one bus. It is safe for concurrent use.
type Publisher struct {
	client Client
	bus    string
	log    *slog.Logger
}

// New returns a publisher to bus (a bus name or ARN) through client; log gets one line per batch
// and one per failure (nil: slog.Default()).
func New(client Client, bus string, log *slog.Logger) *Publisher {
	if log == nil {
		log = slog.Default()
	}
	return &Publisher{client: client, bus: bus, log: log}
}

// pending is an outbox event of the batch, ready to be put on the bus.
type pending struct {
	record int // index in the batch
	id     string
	entry  types.PutEventsRequestEntry
	size   int
}

// Handle is the Lambda handler of the stream's event source mapping (which must enable
// ReportBatchItemFailures). It publishes the outbox events inserted by the batch's records, in
// order, and ignores every other record (other items, MODIFY, REMOVE). When a record cannot be
// published (an unreadable outbox item, an event too large for EventBridge, a PutEvents call or
// entry that failed) it stops there and reports that record's sequence number, the earliest
// failure of the batch, as the only batch item failure: the stream retries from it. It never
// returns an error, so no record is retried as part of a whole-batch failure once published.
func (p *Publisher) Handle(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	start := time.Now()
	var (
		queue   []pending
		failed  = -1 // index of the earliest record that could not be published
		ignored int
	)
	for i, r := range ev.Records {
		if r.EventName != string(events.DynamoDBOperationTypeInsert) {
			ignored++
			continue
		}
		e, ok, err := tablestore.OutboxEvent(r.Change.NewImage)
		if !ok {
			ignored++
			continue
		}
		if err != nil {
			p.log.ErrorContext(ctx, "outbox: unreadable event item", "sequenceNumber", r.Change.SequenceNumber, "eventId", e.ID, "err", err)
			failed = i
			break
		}
		pe, err := p.pending(i, e)
		if err != nil {
			p.log.ErrorContext(ctx, "outbox: event not publishable", "sequenceNumber", r.Change.SequenceNumber, "eventId", e.ID, "type", e.Type, "err", err)
			failed = i
			break
		}
		queue = append(queue, pe)
	}

	published, calls := 0, 0
	for len(queue) > 0 {
		n, size := 0, 0
		for n < len(queue) && n < MaxEntries && size+queue[n].size <= MaxRequestBytes {
			size += queue[n].size
			n++
		}
		batch := queue[:n]
		calls++
		sent, at := p.put(ctx, batch, ev.Records)
		published += sent
		if at >= 0 {
			failed = batch[at].record // earlier than any record left out of queue
			break
		}
		queue = queue[n:]
	}

	res := events.DynamoDBEventResponse{BatchItemFailures: []events.DynamoDBBatchItemFailure{}}
	attrs := []any{"records", len(ev.Records), "published", published, "ignored", ignored, "putEventsCalls", calls,
		"ms", time.Since(start).Milliseconds()}
	if len(ev.Records) > 0 {
		attrs = append(attrs, "firstSequenceNumber", ev.Records[0].Change.SequenceNumber,
			"lastSequenceNumber", ev.Records[len(ev.Records)-1].Change.SequenceNumber)
	}
	if failed >= 0 {
		seq := ev.Records[failed].Change.SequenceNumber
		res.BatchItemFailures = []events.DynamoDBBatchItemFailure{{ItemIdentifier: seq}}
		attrs = append(attrs, "retryFrom", seq, "retried", len(ev.Records)-failed)
		p.log.WarnContext(ctx, "outbox batch partly published", attrs...)
	} else {
		p.log.InfoContext(ctx, "outbox batch", attrs...)
	}
	return res, nil
}

// pending builds the bus entry of an outbox event. It fails when the entry alone is over
// EventBridge's request size limit: that event can never be published.
func (p *Publisher) pending(record int, e outbox.Event) (pending, error) {
	d := DetailOf(e)
	if len(d.Data) == 0 {
		d.Data = json.RawMessage("null")
	}
	b, err := json.Marshal(d)
	if err != nil {
		return pending{}, fmt.Errorf("marshal detail: %w", err)
	}
	entry := types.PutEventsRequestEntry{
		EventBusName: aws.String(p.bus), Source: aws.String(Source), DetailType: aws.String(e.Type),
		Detail: aws.String(string(b)), Time: aws.Time(e.Time),
	}
	// EventBridge's entry size: Time counts 14 bytes, then Source, DetailType and Detail.
	size := 14 + len(Source) + len(e.Type) + len(b)
	if size > MaxRequestBytes {
		return pending{}, fmt.Errorf("entry of %d bytes is over EventBridge's %d", size, MaxRequestBytes)
	}
	return pending{record: record, id: e.ID, entry: entry, size: size}, nil
}

// put puts one batch on the bus. It returns how many entries were published and the index in
// batch of the first entry that was not (-1: all were).
func (p *Publisher) put(ctx context.Context, batch []pending, records []events.DynamoDBEventRecord) (published, failedAt int) {
	entries := make([]types.PutEventsRequestEntry, len(batch))
	for i, pe := range batch {
		entries[i] = pe.entry
	}
	out, err := p.client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries})
	if err != nil {
		first := batch[0]
		p.log.ErrorContext(ctx, "outbox: PutEvents failed", "entries", len(batch), "sequenceNumber", records[first.record].Change.SequenceNumber,
			"eventId", first.id, "err", err)
		return 0, 0
	}
	if len(out.Entries) != len(batch) {
		// Results cannot be matched to entries: count none as published, retry them all.
		p.log.ErrorContext(ctx, "outbox: PutEvents results do not match the entries", "entries", len(batch), "results", len(out.Entries),
			"failedEntryCount", out.FailedEntryCount)
		return 0, 0
	}
	failedAt = -1
	for i, r := range out.Entries {
		if r.ErrorCode == nil {
			published++
			continue
		}
		pe := batch[i]
		p.log.ErrorContext(ctx, "outbox: event rejected by EventBridge", "sequenceNumber", records[pe.record].Change.SequenceNumber,
			"eventId", pe.id, "errorCode", aws.ToString(r.ErrorCode), "errorMessage", aws.ToString(r.ErrorMessage))
		if failedAt < 0 {
			failedAt = i
		}
	}
	if failedAt < 0 && out.FailedEntryCount > 0 {
		// A failure count without a failed entry: trust the count, retry the whole batch.
		p.log.ErrorContext(ctx, "outbox: PutEvents reported failures on no entry", "failedEntryCount", out.FailedEntryCount)
		return 0, 0
	}
	return published, failedAt
}
