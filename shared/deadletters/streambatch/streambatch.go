// Package streambatch replays the usage stream batches that Lambda's Kinesis event source gave
// up on: their descriptions (on-failure records) sit in the usage dead-letter queue, their
// records in the stream for its retention period. It is apart from package deadletters so that
// the functions that only send letters do not link the Kinesis client.
package streambatch

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/channelbilling/cms/shared/deadletters"
)

// KinesisAPI is the part of the Kinesis client Replay uses (*kinesis.Client).
type KinesisAPI interface {
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

func seqCmp(a, b string) int {
	x, okx := new(big.Int).SetString(a, 10)
	y, oky := new(big.Int).SetString(b, 10)
	if !okx || !oky {
		return 0
	}
	return x.Cmp(y)
}

// Replay replays a stream batch description m read from the dead-letter queue q: it reads the
// batch's records from the stream (still there within the stream's retention), sends each to
// the usage queue at usageURL as one message, and deletes the description. It returns how many
// records it sent. It fails when the records can no longer be read (expired: the description is
// kept, for the record).
func Replay(ctx context.Context, q *deadletters.Queue, k KinesisAPI, usageURL string, m deadletters.Message) (int, error) {
	b := m.StreamBatch
	if b == nil {
		return 0, errors.New("not a stream batch description")
	}
	it, err := k.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamARN: aws.String(b.StreamARN), ShardId: aws.String(b.ShardID),
		ShardIteratorType: ktypes.ShardIteratorTypeAtSequenceNumber, StartingSequenceNumber: aws.String(b.StartSequenceNumber)})
	if err != nil {
		return 0, fmt.Errorf("read the stream: %w", err)
	}
	iter, sent := it.ShardIterator, 0
	for done := false; !done && iter != nil; {
		out, err := k.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, StreamARN: aws.String(b.StreamARN)})
		if err != nil {
			return sent, fmt.Errorf("read the stream: %w", err)
		}
		in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(usageURL)}
		flush := func() error {
			if len(in.Entries) == 0 {
				return nil
			}
			res, err := q.Client.SendMessageBatch(ctx, in)
			if err != nil {
				return err
			}
			sent += len(in.Entries) - len(res.Failed)
			in.Entries = nil
			if len(res.Failed) > 0 {
				return fmt.Errorf("%d records refused by the usage queue", len(res.Failed))
			}
			return nil
		}
		for _, r := range out.Records {
			seq := aws.ToString(r.SequenceNumber)
			if seqCmp(seq, b.EndSequenceNumber) > 0 {
				done = true
				break
			}
			in.Entries = append(in.Entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(len(in.Entries))), MessageBody: aws.String(string(r.Data)),
				MessageAttributes: map[string]types.MessageAttributeValue{"replayedFrom": {DataType: aws.String("String"), StringValue: aws.String(m.ID + " " + seq)}}})
			if len(in.Entries) == 10 {
				if err := flush(); err != nil {
					return sent, err
				}
			}
			if seq == b.EndSequenceNumber {
				done = true
				break
			}
		}
		if err := flush(); err != nil {
			return sent, err
		}
		if len(out.Records) == 0 {
			break // the end of what the shard holds
		}
		iter = out.NextShardIterator
	}
	return sent, q.Delete(ctx, m)
}
