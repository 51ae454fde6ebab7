package feeders

import (
	"context"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// KinesisHandler handles one batch of records, with the signature of a Lambda handler fed by
// Kinesis with ReportBatchItemFailures (usagelambda.Stream.Handle).
type KinesisHandler func(context.Context, events.KinesisEvent) (events.KinesisEventResponse, error)

// KinesisAPI is the part of the Kinesis client the feeder uses (*kinesis.Client).
type KinesisAPI interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

// KinesisOptions tunes a Kinesis feeder. The zero value is ready to use.
type KinesisOptions struct {
	// Latest starts the shards open at start from their newest records (LATEST); the default is
	// their oldest (TRIM_HORIZON).
	Latest bool
	// BatchSize is the most records per handler call. Default 100 (Lambda's default).
	BatchSize int32
	// PollInterval is the wait after reading nothing. Default 200ms.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait before retrying a failed batch. Defaults 100ms, 5s.
	MinBackoff, MaxBackoff time.Duration
	Region                 string
	Log                    *slog.Logger
	// OnBatch, when set, is called after each handler call with the records handled and how many
	// were reported failed.
	OnBatch func(records, failed int)
}

func (o KinesisOptions) withDefaults() KinesisOptions {
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 200 * time.Millisecond
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

// KinesisFeeder reads every shard of one stream into a handler, each shard in order, one batch
// at a time, as Lambda's event source mapping does. Like it, after a handler reports failures
// it reads the shard again from the lowest failed sequence number (so later records of that
// batch are delivered again); after a handler error, the whole batch again. Its position is in
// memory only. Shards are listed once at start (the usage stream does not reshard locally).
type KinesisFeeder struct {
	client    KinesisAPI
	name, arn string
	handler   KinesisHandler
	opts      KinesisOptions
}

// NewKinesis returns a feeder of stream name (ARN arn) into h.
func NewKinesis(client KinesisAPI, name, arn string, h KinesisHandler, opts KinesisOptions) *KinesisFeeder {
	return &KinesisFeeder{client: client, name: name, arn: arn, handler: h, opts: opts.withDefaults()}
}

// Start lists the shards and reads each in the background. stop ends the reading and waits
// for the handler calls under way. It fails when the shards cannot be listed.
func (f *KinesisFeeder) Start(ctx context.Context) (stop func(), err error) {
	out, err := f.client.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(f.name)})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, sh := range out.Shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.shard(ctx, aws.ToString(sh.ShardId))
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}, nil
}

func (f *KinesisFeeder) iterator(ctx context.Context, shard string, typ types.ShardIteratorType, seq string) (string, error) {
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String(f.name), ShardId: aws.String(shard), ShardIteratorType: typ}
	if seq != "" {
		in.StartingSequenceNumber = aws.String(seq)
	}
	out, err := f.client.GetShardIterator(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ShardIterator), nil
}

func (f *KinesisFeeder) shard(ctx context.Context, shard string) {
	start := types.ShardIteratorTypeTrimHorizon
	if f.opts.Latest {
		start = types.ShardIteratorTypeLatest
	}
	backoff := f.opts.MinBackoff
	retry := func(err error) {
		f.opts.Log.Warn("kinesis feeder", "stream", f.name, "shard", shard, "err", err)
		sleep(ctx, backoff)
		backoff = min(2*backoff, f.opts.MaxBackoff)
	}
	it := ""
	for ctx.Err() == nil && it == "" {
		var err error
		if it, err = f.iterator(ctx, shard, start, ""); err != nil {
			retry(err)
		}
	}
	for ctx.Err() == nil && it != "" {
		out, err := f.client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String(it), Limit: aws.Int32(f.opts.BatchSize)})
		if err != nil {
			if ctx.Err() == nil {
				retry(err)
			}
			continue
		}
		if len(out.Records) == 0 {
			it = aws.ToString(out.NextShardIterator)
			sleep(ctx, f.opts.PollInterval)
			continue
		}
		ev := events.KinesisEvent{Records: make([]events.KinesisEventRecord, len(out.Records))}
		for i, r := range out.Records {
			ev.Records[i] = LambdaRecord(r, shard, f.arn, f.opts.Region)
		}
		res, err := f.handler(ctx, ev)
		failedFrom := ""
		switch {
		case err != nil:
			failedFrom = aws.ToString(out.Records[0].SequenceNumber)
			f.opts.Log.Error("kinesis feeder: handler failed, the batch comes again", "stream", f.name, "shard", shard, "err", err)
		default:
			for _, bf := range res.BatchItemFailures {
				if failedFrom == "" || seqLess(bf.ItemIdentifier, failedFrom) {
					failedFrom = bf.ItemIdentifier
				}
			}
		}
		if f.opts.OnBatch != nil {
			n := len(res.BatchItemFailures)
			if err != nil {
				n = len(ev.Records)
			}
			f.opts.OnBatch(len(ev.Records), n)
		}
		if failedFrom == "" {
			backoff = f.opts.MinBackoff
			it = aws.ToString(out.NextShardIterator)
			continue
		}
		// Read again from the lowest failed record, after a pause.
		sleep(ctx, backoff)
		backoff = min(2*backoff, f.opts.MaxBackoff)
		for ctx.Err() == nil {
			next, err := f.iterator(ctx, shard, types.ShardIteratorTypeAtSequenceNumber, failedFrom)
			if err == nil {
				it = next
				break
			}
			retry(err)
		}
	}
}

// LambdaRecord converts a record read with GetRecords into the record Lambda's Kinesis event
// source delivers: eventSource aws:kinesis, eventID "<shard>:<sequence>", eventName
// aws:kinesis:record, the stream ARN, and the kinesis fields (data, partitionKey,
// sequenceNumber, approximateArrivalTimestamp, kinesisSchemaVersion).
func LambdaRecord(r types.Record, shard, streamARN, region string) events.KinesisEventRecord {
	seq := aws.ToString(r.SequenceNumber)
	out := events.KinesisEventRecord{
		AwsRegion: region, EventID: shard + ":" + seq, EventName: "aws:kinesis:record", EventSource: "aws:kinesis",
		EventSourceArn: streamARN, EventVersion: "1.0", InvokeIdentityArn: "arn:aws:iam::000000000000:role/usagestream",
		Kinesis: events.KinesisRecord{Data: r.Data, PartitionKey: aws.ToString(r.PartitionKey), SequenceNumber: seq,
			KinesisSchemaVersion: "1.0", EncryptionType: string(r.EncryptionType)},
	}
	if r.ApproximateArrivalTimestamp != nil {
		out.Kinesis.ApproximateArrivalTimestamp = events.SecondsEpochTime{Time: *r.ApproximateArrivalTimestamp}
	}
	return out
}

// seqLess orders Kinesis sequence numbers (decimal strings of up to 128 bits).
func seqLess(a, b string) bool {
	x, okx := new(big.Int).SetString(a, 10)
	y, oky := new(big.Int).SetString(b, 10)
	if okx && oky {
		return x.Cmp(y) < 0
	}
	return a < b
}
