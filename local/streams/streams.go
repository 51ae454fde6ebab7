// Package streams plays, on this machine, the part of Lambda's event source mapping for a
// DynamoDB stream: it reads a table's stream through the DynamoDB Streams API (DynamoDB Local
// serves it), turns the records into the events.DynamoDBEvent Lambda would deliver, calls the
// same handler the function's main passes to lambda.Start, and honours its partial batch
// failures by retrying from the earliest reported sequence number. The local runner
// (`make local`) and the integration tests use it to publish the outbox.
//
// Like the event source mapping, it reads every shard in order, one batch at a time, and a
// child shard only once its parent is read to the end; shards are read concurrently with each
// other. Unlike it, it keeps its position in memory only: a restarted poller starts again from
// its StartingPosition.
package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/guregu/dynamo/v2"
)

// Handler handles one batch of stream records, with the signature of a Lambda handler fed by
// a DynamoDB stream with ReportBatchItemFailures (publisher.Publisher.Handle). A returned error
// fails the whole batch; BatchItemFailures retry from the earliest reported record.
type Handler func(context.Context, events.DynamoDBEvent) (events.DynamoDBEventResponse, error)

// Client is the part of the DynamoDB Streams client the poller uses (*dynamodbstreams.Client).
type Client interface {
	DescribeStream(ctx context.Context, in *dynamodbstreams.DescribeStreamInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error)
	GetShardIterator(ctx context.Context, in *dynamodbstreams.GetShardIteratorInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error)
}

// StartingPosition is where the poller starts reading the shards open when it starts (shards
// that appear later are read from their beginning, as Lambda does).
type StartingPosition string

// Starting positions.
const (
	TrimHorizon StartingPosition = "TRIM_HORIZON" // every record still in the stream (24 h)
	Latest      StartingPosition = "LATEST"       // only records written after the start
)

// Options tunes a Poller. The zero value is ready to use.
type Options struct {
	// StartingPosition: default TrimHorizon.
	StartingPosition StartingPosition
	// BatchSize is the most records per handler call (GetRecords' limit, at most 1000).
	// Default 100, Lambda's default for DynamoDB streams.
	BatchSize int
	// PollInterval is the wait after reading nothing from an open shard. Default 200ms.
	PollInterval time.Duration
	// DiscoveryInterval is the wait between looks for new shards. Default 1s.
	DiscoveryInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait before retrying a failed batch or API call: it
	// doubles from MinBackoff up to MaxBackoff. Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetries is how often a failed batch is retried before its unprocessed records are
	// given up: each is then logged at error level with its sequence number (the local stand-in
	// for the event source mapping's on-failure destination). 0 retries until the context ends:
	// nothing is ever skipped.
	MaxRetries int
	// Log receives retries, failures and given-up records (nil: slog.Default()).
	Log *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.StartingPosition == "" {
		o.StartingPosition = TrimHorizon
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	o.BatchSize = min(o.BatchSize, 1000)
	if o.PollInterval <= 0 {
		o.PollInterval = 200 * time.Millisecond
	}
	if o.DiscoveryInterval <= 0 {
		o.DiscoveryInterval = time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o
}

// Poller feeds one stream to a handler.
type Poller struct {
	client  Client
	arn     string
	handler Handler
	opts    Options
}

// New returns a poller of the stream streamARN that calls h with each batch.
func New(client Client, streamARN string, h Handler, opts Options) *Poller {
	return &Poller{client: client, arn: streamARN, handler: h, opts: opts.withDefaults()}
}

// StreamARN returns the ARN of the table's current stream. It fails when the table cannot be
// described or has no stream enabled.
func StreamARN(ctx context.Context, table dynamo.Table) (string, error) {
	d, err := table.Describe().Run(ctx)
	if err != nil {
		return "", fmt.Errorf("describe table %s: %w", table.Name(), err)
	}
	if !d.StreamEnabled || d.LatestStreamARN == "" {
		return "", fmt.Errorf("table %s has no stream", table.Name())
	}
	return d.LatestStreamARN, nil
}

// Start runs Run in the background. stop ends it and waits until no handler call is running.
func (p *Poller) Start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// shard is what the poller knows of one shard.
type shard struct {
	id, parent string
	from       types.ShardIteratorType // where to start reading it
	skip       bool                    // closed before a LATEST start: nothing to read
	started    bool
	done       chan struct{} // closed once read to its end (or the poller stopped)
}

func (s *shard) finished() bool {
	if s.skip {
		return true
	}
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Run polls the stream until ctx ends, then waits for the handler calls under way. API errors
// are logged and retried; it never gives up on the stream.
func (p *Poller) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	log := p.opts.Log.With("stream", p.arn)
	known := map[string]*shard{}
	first, failures := true, 0
	for {
		all, err := p.shards(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			log.Warn("streams: describe stream failed; retrying", "err", err)
			if !sleep(ctx, p.backoff(failures)) {
				return
			}
			continue
		}
		failures = 0
		for _, s := range all {
			id := aws.ToString(s.ShardId)
			if _, ok := known[id]; ok {
				continue
			}
			sh := &shard{id: id, parent: aws.ToString(s.ParentShardId), from: types.ShardIteratorTypeTrimHorizon, done: make(chan struct{})}
			if first && p.opts.StartingPosition == Latest {
				if s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil {
					sh.skip = true
				} else {
					sh.from = types.ShardIteratorTypeLatest
				}
			}
			known[id] = sh
		}
		first = false
		for _, sh := range known {
			if sh.started || sh.skip {
				continue
			}
			if parent, ok := known[sh.parent]; ok && !parent.finished() {
				continue
			}
			sh.started = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(sh.done)
				p.readShard(ctx, log.With("shard", sh.id), sh)
			}()
		}
		if !sleep(ctx, p.opts.DiscoveryInterval) {
			return
		}
	}
}

// shards returns every shard of the stream, across DescribeStream's pages.
func (p *Poller) shards(ctx context.Context) ([]types.Shard, error) {
	var out []types.Shard
	var after *string
	for {
		d, err := p.client.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(p.arn), ExclusiveStartShardId: after})
		if err != nil {
			return nil, err
		}
		if d.StreamDescription == nil {
			return out, nil
		}
		out = append(out, d.StreamDescription.Shards...)
		after = d.StreamDescription.LastEvaluatedShardId
		if after == nil {
			return out, nil
		}
	}
}

// readShard reads one shard to its end (or until ctx ends), handing each batch to deliver.
// checkpoint is the sequence number of the last record handled: a new iterator starts after it.
func (p *Poller) readShard(ctx context.Context, log *slog.Logger, sh *shard) {
	checkpoint := ""
	iter, ok := p.iterator(ctx, log, sh, &checkpoint)
	for ok {
		out, err := p.client.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: aws.String(iter), Limit: aws.Int32(int32(p.opts.BatchSize))})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("streams: get records failed; reopening the shard", "err", err, "after", checkpoint)
			if !sleep(ctx, p.opts.MinBackoff) {
				return
			}
			iter, ok = p.iterator(ctx, log, sh, &checkpoint)
			continue
		}
		if len(out.Records) > 0 {
			batch := make([]events.DynamoDBEventRecord, len(out.Records))
			for i, r := range out.Records {
				batch[i] = LambdaRecord(p.arn, r)
			}
			if !p.deliver(ctx, log, batch) {
				return
			}
			checkpoint = batch[len(batch)-1].Change.SequenceNumber
		}
		if out.NextShardIterator == nil {
			return // the shard is closed and read to its end
		}
		iter = aws.ToString(out.NextShardIterator)
		if len(out.Records) == 0 && !sleep(ctx, p.opts.PollInterval) {
			return
		}
	}
}

// iterator returns an iterator of the shard after *checkpoint (at the shard's starting point
// when it is empty), retrying until ctx ends (ok false). When the records after the checkpoint
// were trimmed from the stream it logs the loss and starts from the oldest record left.
func (p *Poller) iterator(ctx context.Context, log *slog.Logger, sh *shard, checkpoint *string) (string, bool) {
	for attempt := 1; ; attempt++ {
		in := &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(p.arn), ShardId: aws.String(sh.id), ShardIteratorType: sh.from}
		if *checkpoint != "" {
			in.ShardIteratorType, in.SequenceNumber = types.ShardIteratorTypeAfterSequenceNumber, aws.String(*checkpoint)
		}
		out, err := p.client.GetShardIterator(ctx, in)
		if err == nil && out.ShardIterator != nil {
			return *out.ShardIterator, true
		}
		if ctx.Err() != nil {
			return "", false
		}
		var trimmed *types.TrimmedDataAccessException
		if errors.As(err, &trimmed) && *checkpoint != "" {
			log.Error("streams: records after the checkpoint were trimmed from the stream before being handled", "after", *checkpoint)
			*checkpoint, sh.from = "", types.ShardIteratorTypeTrimHorizon
			continue
		}
		var gone *types.ResourceNotFoundException
		if errors.As(err, &gone) {
			log.Warn("streams: shard no longer exists", "err", err)
			return "", false
		}
		log.Warn("streams: get shard iterator failed; retrying", "err", err)
		if !sleep(ctx, p.backoff(attempt)) {
			return "", false
		}
	}
}

// deliver hands a batch to the handler until it is handled, as the event source mapping does:
// a handler error retries the whole batch, batch item failures retry from the earliest reported
// record (the records before it are done). It returns false when ctx ended first.
func (p *Poller) deliver(ctx context.Context, log *slog.Logger, recs []events.DynamoDBEventRecord) bool {
	for retry := 0; ; retry++ {
		res, err := p.invoke(ctx, recs)
		from := -1
		switch {
		case err != nil:
			from = 0
			log.Warn("streams: handler failed; the whole batch is retried", "err", err, "records", len(recs))
		case len(res.BatchItemFailures) > 0:
			from = earliest(recs, res.BatchItemFailures)
		}
		if from < 0 {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		recs = recs[from:]
		if p.opts.MaxRetries > 0 && retry >= p.opts.MaxRetries {
			for _, r := range recs {
				log.Error("streams: record given up after retries", "sequenceNumber", r.Change.SequenceNumber, "eventID", r.EventID,
					"eventName", r.EventName, "retries", retry)
			}
			return true
		}
		delay := p.backoff(retry + 1)
		log.Info("streams: retrying from the earliest failed record", "sequenceNumber", recs[0].Change.SequenceNumber,
			"records", len(recs), "retry", retry+1, "in", delay.String())
		if !sleep(ctx, delay) {
			return false
		}
	}
}

// invoke calls the handler; a panic is a failed invocation, as in Lambda.
func (p *Poller) invoke(ctx context.Context, recs []events.DynamoDBEventRecord) (res events.DynamoDBEventResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return p.handler(ctx, events.DynamoDBEvent{Records: recs})
}

// earliest returns the index of the earliest record reported failed. A failure naming no record
// of the batch fails the whole batch (index 0), as Lambda treats it.
func earliest(recs []events.DynamoDBEventRecord, failures []events.DynamoDBBatchItemFailure) int {
	at := map[string]int{}
	for i, r := range recs {
		at[r.Change.SequenceNumber] = i
	}
	first := len(recs)
	for _, f := range failures {
		i, ok := at[f.ItemIdentifier]
		if !ok {
			return 0
		}
		first = min(first, i)
	}
	return first
}

// backoff is the wait before attempt n (1, 2, ...): MinBackoff doubled up to MaxBackoff.
func (p *Poller) backoff(n int) time.Duration {
	d := p.opts.MinBackoff
	for i := 1; i < n && d < p.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.opts.MaxBackoff)
}

// sleep waits d, returning false when ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
