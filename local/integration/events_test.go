package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/channelbilling/cms/local/emulator"
	"github.com/channelbilling/cms/local/streams"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/publisher"
)

// The outbox in the tests runs as it does under `make local`: the table's stream is polled
// into the publisher's handler, which puts the events on the test's bus. A rule on that bus
// sends every event to an SQS queue, and a collector drains the queue into busEvents, which
// waitForEvent searches. faults sits between the publisher and EventBridge to inject failures.
var (
	busEvents *eventLog
	faults    *faultyBus
)

// eventWait is how long waitForEvent waits: the stream poll, the publisher, the bus and the
// queue's long poll, with room for a retry's backoff.
const eventWait = 20 * time.Second

// busEvent is one delivery read back from the bus: the detail the publisher wrote (id, type,
// time, path, data) and the EventBridge envelope's source and detail type.
type busEvent struct {
	publisher.Detail
	Source     string
	DetailType string
}

// waitForEvent returns the first event of type typ read back from the bus for which match
// holds (nil matches any), waiting up to eventWait. Every event ever delivered in this test run
// is searched, so it does not matter whether it arrived before the call. It fails the test on
// timeout, listing the types that did arrive.
func waitForEvent(tb testing.TB, typ string, match func(busEvent) bool) busEvent {
	tb.Helper()
	deadline := time.NewTimer(eventWait)
	defer deadline.Stop()
	for {
		found, changed := busEvents.find(typ, match)
		if len(found) > 0 {
			return found[0]
		}
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("no %s event on the bus after %s (types seen: %v)", typ, eventWait, busEvents.types())
			return busEvent{}
		}
	}
}

// deliveries returns every delivery of type typ for which match holds, in arrival order:
// more than one with the same id is a duplicate, which consumers drop.
func deliveries(typ string, match func(busEvent) bool) []busEvent {
	found, _ := busEvents.find(typ, match)
	return found
}

// eventLog is every event the collector read from the queue.
type eventLog struct {
	mu      sync.Mutex
	events  []busEvent
	changed chan struct{} // closed and replaced at each arrival
}

func (l *eventLog) add(e busEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *eventLog) find(typ string, match func(busEvent) bool) ([]busEvent, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []busEvent
	for _, e := range l.events {
		if e.Type == typ && (match == nil || match(e)) {
			out = append(out, e)
		}
	}
	return out, l.changed
}

func (l *eventLog) types() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		if !slices.Contains(out, e.Type) {
			out = append(out, e.Type)
		}
	}
	return out
}

// collect drains the queue into l until ctx ends.
func (l *eventLog) collect(ctx context.Context, q *sqs.Client, url string) {
	for ctx.Err() == nil {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			if ctx.Err() == nil {
				quiet.Warn("events queue", "err", err)
				time.Sleep(200 * time.Millisecond)
			}
			continue
		}
		for _, m := range out.Messages {
			var env struct {
				Source     string           `json:"source"`
				DetailType string           `json:"detail-type"`
				Detail     publisher.Detail `json:"detail"`
			}
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &env); err != nil {
				quiet.Warn("events queue: not an EventBridge event", "body", aws.ToString(m.Body))
			} else {
				l.add(busEvent{Detail: env.Detail, Source: env.Source, DetailType: env.DetailType})
			}
			_, _ = q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
		}
	}
}

// setupEvents creates the bus, the queue and the rule between them, starts the collector and
// the outbox publisher on the table's stream. The returned teardown stops them and deletes
// what was created.
func setupEvents(ctx context.Context, stack *emulator.Stack, awsCfg aws.Config) (teardown func(), err error) {
	var undo []func()
	teardown = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			teardown()
		}
	}()
	bg := context.Background()
	bus := deps.Config.EventBus
	eb := eventbridge.NewFromConfig(awsCfg)
	if err := streams.EnsureBus(ctx, eb, bus); err != nil {
		return nil, err
	}
	undo = append(undo, func() { _, _ = eb.DeleteEventBus(bg, &eventbridge.DeleteEventBusInput{Name: aws.String(bus)}) })

	q := sqs.NewFromConfig(awsCfg)
	qo, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("cms-it-events-" + ids.New("q")[2:])})
	if err != nil {
		return nil, fmt.Errorf("create queue: %w", err)
	}
	undo = append(undo, func() { _, _ = q.DeleteQueue(bg, &sqs.DeleteQueueInput{QueueUrl: qo.QueueUrl}) })
	qa, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: qo.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return nil, fmt.Errorf("queue arn: %w", err)
	}
	queueARN := qa.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]

	rule := "cms-it-all"
	ro, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(rule), EventBusName: aws.String(bus),
		EventPattern: aws.String(fmt.Sprintf(`{"source":[%q]}`, publisher.Source))})
	if err != nil {
		return nil, fmt.Errorf("put rule: %w", err)
	}
	undo = append(undo, func() {
		_, _ = eb.DeleteRule(bg, &eventbridge.DeleteRuleInput{Name: aws.String(rule), EventBusName: aws.String(bus)})
	})
	// Real EventBridge (CMS_USE_AWS, LocalStack) needs the queue to accept the rule's messages.
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},`+
		`"Action":"sqs:SendMessage","Resource":%q,"Condition":{"ArnEquals":{"aws:SourceArn":%q}}}]}`, queueARN, aws.ToString(ro.RuleArn))
	if _, err := q.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: qo.QueueUrl,
		Attributes: map[string]string{string(sqstypes.QueueAttributeNamePolicy): policy}}); err != nil {
		return nil, fmt.Errorf("queue policy: %w", err)
	}
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(rule), EventBusName: aws.String(bus),
		Targets: []ebtypes.Target{{Id: aws.String("queue"), Arn: aws.String(queueARN)}}}); err != nil {
		return nil, fmt.Errorf("put targets: %w", err)
	}
	undo = append(undo, func() {
		_, _ = eb.RemoveTargets(bg, &eventbridge.RemoveTargetsInput{Rule: aws.String(rule), EventBusName: aws.String(bus), Ids: []string{"queue"}})
	})

	busEvents = &eventLog{changed: make(chan struct{})}
	collectCtx, stopCollect := context.WithCancel(bg)
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		busEvents.collect(collectCtx, q, aws.ToString(qo.QueueUrl))
	}()
	undo = append(undo, func() { stopCollect(); <-collected })

	faults = &faultyBus{next: eb}
	pub := publisher.New(faults, bus, quiet)
	stop, err := streams.StartOutbox(bg, deps.Store.Table(), dynamodbstreams.NewFromConfig(awsCfg, stack.DynamoDBStreamsOptions()), pub.Handle,
		streams.Options{StartingPosition: streams.TrimHorizon, PollInterval: 100 * time.Millisecond, MinBackoff: 100 * time.Millisecond,
			MaxBackoff: time.Second, Log: quiet})
	if err != nil {
		return nil, err
	}
	undo = append(undo, stop)
	return teardown, nil
}

// faultyBus is the publisher's EventBridge client with injectable failures. An armed fault
// fires once, on the first PutEvents carrying an event it matches: it rejects that entry
// (the others go through) or fails the whole call. Then it lets everything through.
type faultyBus struct {
	next   publisher.Client
	mu     sync.Mutex
	armed  []*fault
	counts map[*fault]int
}

// fault is one armed failure.
type fault struct {
	match     func(publisher.Detail) bool
	wholeCall bool
}

// arm adds a fault and returns it, for fired.
func (f *faultyBus) arm(match func(publisher.Detail) bool, wholeCall bool) *fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := &fault{match: match, wholeCall: wholeCall}
	f.armed = append(f.armed, ft)
	return ft
}

// fired returns how many times ft failed a call or an entry.
func (f *faultyBus) fired(ft *fault) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[ft]
}

// PutEvents implements publisher.Client.
func (f *faultyBus) PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	rejected := map[int]bool{}
	wholeCall := false
	f.mu.Lock()
	for i, e := range in.Entries {
		var d publisher.Detail
		if json.Unmarshal([]byte(aws.ToString(e.Detail)), &d) != nil {
			continue
		}
		for _, ft := range f.armed {
			if f.counts[ft] == 0 && ft.match(d) {
				if f.counts == nil {
					f.counts = map[*fault]int{}
				}
				f.counts[ft]++
				rejected[i], wholeCall = true, wholeCall || ft.wholeCall
			}
		}
	}
	f.mu.Unlock()
	if wholeCall {
		return nil, errors.New("injected: EventBridge unavailable")
	}
	if len(rejected) == 0 {
		return f.next.PutEvents(ctx, in, optFns...)
	}
	var forward []ebtypes.PutEventsRequestEntry
	for i, e := range in.Entries {
		if !rejected[i] {
			forward = append(forward, e)
		}
	}
	res := &eventbridge.PutEventsOutput{}
	var passed []ebtypes.PutEventsResultEntry
	if len(forward) > 0 {
		out, err := f.next.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: forward}, optFns...)
		if err != nil {
			return nil, err
		}
		passed, res.FailedEntryCount = out.Entries, out.FailedEntryCount
	}
	for i := range in.Entries {
		if rejected[i] {
			res.Entries = append(res.Entries, ebtypes.PutEventsResultEntry{ErrorCode: aws.String("InternalFailure"), ErrorMessage: aws.String("injected")})
			res.FailedEntryCount++
			continue
		}
		if len(passed) == 0 {
			return nil, errors.New("faultyBus: fewer results than entries")
		}
		res.Entries, passed = append(res.Entries, passed[0]), passed[1:]
	}
	return res, nil
}
